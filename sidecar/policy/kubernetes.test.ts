import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { PolicyRule } from '../../api/v1alpha1.ts';
import { policy } from './fixtures.ts';
import { decideKubernetes, kubernetesAllowances, refusedByConnection } from './kubernetes.ts';
import { type KubernetesRequest, parseKubernetesRequest } from './kubernetes-request.ts';

const parse = (method: string, target: string): KubernetesRequest => {
  const parsed = parseKubernetesRequest(method, target);
  assert.ok(parsed.ok, `${method} ${target}: ${parsed.ok ? '' : parsed.reason}`);
  return parsed.request;
};
const info = (method: string, target: string) => {
  const r = parse(method, target);
  return [r.verb, r.group, r.resource, r.subresource, r.namespace, r.name].join('|');
};

describe('the request-info reading of a Kubernetes API URL', () => {
  it('reads verbs from the method, and list, watch and deletecollection from the missing name', () => {
    assert.equal(
      info('GET', '/api/v1/namespaces/default/pods'),
      'list||pods|||default|'.replace('|||', '||'),
    );
    assert.equal(info('GET', '/api/v1/namespaces/default/pods/web'), 'get||pods||default|web');
    assert.equal(info('GET', '/api/v1/namespaces/default/pods?watch=true'), 'watch||pods||default|');
    assert.equal(info('GET', '/api/v1/pods?watch=1'), 'watch||pods|||');
    assert.equal(info('GET', '/api/v1/pods?watch='), 'watch||pods|||');
    assert.equal(info('GET', '/api/v1/pods?watch=FALSE&watch=true'), 'list||pods|||');
    assert.equal(info('DELETE', '/api/v1/namespaces/default/pods'), 'deletecollection||pods||default|');
    assert.equal(
      info('POST', '/apis/apps/v1/namespaces/default/deployments'),
      'create|apps|deployments||default|',
    );
    assert.equal(
      info('PATCH', '/apis/apps/v1/namespaces/default/deployments/web/scale'),
      'patch|apps|deployments|scale|default|web',
    );
    assert.equal(info('PUT', '/api/v1/namespaces/prod/finalize'), 'update||namespaces|finalize|prod|prod');
    assert.equal(info('DELETE', '/api/v1/namespaces/prod'), 'delete||namespaces||prod|prod');
    assert.equal(info('GET', '/api/v1/watch/namespaces/default/secrets'), 'watch||secrets||default|');
    assert.equal(info('GET', '/api/v1/proxy/namespaces/default/pods/web/x/y'), 'proxy||pods||default|web');
    assert.equal(info('OPTIONS', '/api/v1/pods'), '||pods|||');
  });

  it('takes the name a list or watch narrows to with a metadata.name field selector', () => {
    assert.equal(
      info('GET', '/api/v1/namespaces/default/secrets?fieldSelector=metadata.name%3Ddb&watch=true'),
      'watch||secrets||default|db',
    );
    assert.equal(
      info('GET', '/api/v1/secrets?fieldSelector=metadata.name%3Da%2Cmetadata.name%3Db'),
      'list||secrets|||',
    );
    // Where the parser would take none, or its reading is not certain, no name: every names rule matches.
    for (const query of [
      'fieldSelector=metadata.name%3Dweb%2C',
      'fieldSelector=metadata.name%3D%20web',
      'fieldSelector=metadata.name%3Dweb&limit=abc',
      'fieldSelector=metadata.name%3Dweb&labelSelector=app%3Dx',
      'fieldSelector=metadata.name!%3Dweb',
      'fieldSelector=metadata.name%3Da%2Fb',
    ])
      assert.equal(info('GET', `/api/v1/secrets?${query}`), 'list||secrets|||', query);
    assert.equal(
      info('GET', '/api/v1/secrets?fieldSelector=type%3DOpaque%2Cmetadata.name%3D%3Dweb&limit=10'),
      'list||secrets|||web',
    );
  });

  it('reads non-resource URLs as the method on a path', () => {
    for (const path of [
      '/version',
      '/api',
      '/apis',
      '/apis/apps',
      '/apis/apps/v1',
      '/openapi/v3',
      '/API/v1/pods',
    ]) {
      const r = parse('GET', path);
      assert.equal(r.resourceRequest, false, path);
      assert.equal(r.verb, 'get');
    }
  });

  it('decodes the path as Go does and refuses what a router could read two ways', () => {
    assert.equal(info('DELETE', '/api/v1/namespaces/pr%6fd'), 'delete||namespaces||prod|prod');
    for (const target of [
      '//api/v1/namespaces/prod',
      '/api//v1/namespaces/prod',
      '/api/v1/namespaces/prod//',
      '/api/v1/namespaces/default/secrets/../pods',
      '/api/v1/namespaces/default/secrets/%2e%2e',
      '/api/v1/namespaces/default%2Fsecrets',
      '/api/v1/namespaces/default/pods/%zz',
      '/api/v1/namespaces/default/pods/a%00b',
      '/api/v1/pods?watch=true;x=1',
      '/api/v1/pods#x',
      'http://example.com/api/v1/pods',
    ])
      assert.equal(parseKubernetesRequest('GET', target).ok, false, target);
  });
});

const rules: PolicyRule[] = [
  {
    name: 'no-namespace-deletes',
    action: 'deny',
    kubernetes: { verbs: ['delete', 'deletecollection'], resources: ['/namespaces'] },
  },
  {
    name: 'approve-scaling',
    action: 'require-approval',
    kubernetes: { subresources: ['scale'] },
    approval: { approvers: { groups: ['ops'] }, timeout: '1m', scope: 'statement' },
  },
  { name: 'no-prod-secrets', action: 'deny', kubernetes: { resources: ['secrets'], namespaces: ['prod'] } },
  {
    name: 'no-web-deletes',
    action: 'deny',
    kubernetes: { verbs: ['delete', 'deletecollection'], names: ['web-*'] },
  },
  { name: 'no-file-deletion', action: 'deny', ssh: { classes: ['file-deletion'] } },
];
const agents = policy({ name: 'agents', rules });
const decide = (method: string, target: string) => decideKubernetes([agents], parse(method, target));

describe('Kubernetes rules', () => {
  it('decide on verb, group/resource, namespace, name and subresource', () => {
    assert.equal(decide('GET', '/api/v1/namespaces/default/pods').action, 'allow');
    assert.equal(decide('DELETE', '/api/v1/namespaces/prod').rule, 'no-namespace-deletes');
    assert.equal(decide('DELETE', '/api/v1/namespaces').rule, 'no-namespace-deletes');
    // A group glob with no group is the core group only.
    assert.ok(
      !decide('DELETE', '/apis/example.com/v1/namespaces').reasons.some((r) =>
        r.includes('no-namespace-deletes'),
      ),
    );
    assert.equal(
      decide('PATCH', '/apis/apps/v1/namespaces/default/deployments/web/scale').action,
      'require-approval',
    );
    assert.equal(decide('PUT', '/apis/apps/v1/namespaces/default/deployments/web').action, 'allow');
    assert.equal(decide('GET', '/api/v1/namespaces/prod/secrets/db').rule, 'no-prod-secrets');
    assert.equal(decide('GET', '/api/v1/namespaces/dev/secrets/db').action, 'allow');
  });

  it('match what a request cannot name: lists across namespaces, collections, creates', () => {
    assert.equal(decide('GET', '/api/v1/secrets').rule, 'no-prod-secrets');
    assert.equal(decide('GET', '/api/v1/watch/secrets').rule, 'no-prod-secrets');
    assert.equal(decide('DELETE', '/api/v1/namespaces/default/pods').rule, 'no-web-deletes');
    assert.equal(decide('DELETE', '/api/v1/namespaces/default/pods/api-0').action, 'allow');
    assert.equal(decide('DELETE', '/api/v1/namespaces/default/pods/web-0').rule, 'no-web-deletes');
    // Non-resource URLs are not in any namespace or resource.
    assert.equal(decide('GET', '/version').action, 'allow');
  });

  it('decide an exec command as an SSH exec is', () => {
    const denied = decide(
      'POST',
      '/api/v1/namespaces/default/pods/web/exec?command=rm&command=-rf&command=%2F',
    );
    assert.equal(denied.action, 'deny');
    assert.equal(denied.rule, 'no-file-deletion');
    const wrapped = decide(
      'GET',
      '/api/v1/namespaces/default/pods/web/exec?command=sh&command=-c&command=cd+/+%26%26+rm+-rf+*',
    );
    assert.equal(wrapped.action, 'deny');
    assert.equal(
      decide('GET', '/api/v1/namespaces/default/pods/web/exec?command=ls&command=-la').action,
      'allow',
    );
    // Nothing to verify under command rules: refused.
    assert.equal(decide('GET', '/api/v1/namespaces/default/pods/web/exec').action, 'deny');
  });

  it('decide an exec or attach with stdin as an interactive shell, reading stdin as the API server does', () => {
    const exec = '/api/v1/namespaces/default/pods/web/exec?command=ls';
    for (const stdin of ['true', '1', 'TRUE', 't', 'yes', '', 'false2'])
      assert.equal(decide('POST', `${exec}&stdin=${stdin}`).action, 'deny', `stdin=${stdin}`);
    for (const stdin of ['false', 'FALSE', 'False', '0'])
      assert.equal(decide('POST', `${exec}&stdin=${stdin}`).action, 'allow', `stdin=${stdin}`);
    // The first value is the one read.
    assert.equal(decide('POST', `${exec}&stdin=true&stdin=false`).action, 'deny');
    assert.equal(decide('POST', `${exec}&stdin=false&stdin=true`).action, 'allow');
    const attach = decide('POST', '/api/v1/namespaces/default/pods/web/attach?stdin=true&tty=true');
    assert.equal(attach.action, 'deny');
    assert.match(attach.message!, /interactive exec or attach/);
    assert.equal(decide('POST', '/api/v1/namespaces/default/pods/web/attach?stdout=true').action, 'allow');
    // With no command rules, an interactive shell is decided by the rules on interactive sessions.
    const shells = policy({
      name: 'shells',
      rules: [
        {
          name: 'hold-shells',
          action: 'require-approval',
          ssh: { interactive: true },
          approval: { approvers: { groups: ['ops'] }, timeout: '1m', scope: 'statement' },
        },
      ],
    });
    const held = decideKubernetes([shells], parse('POST', `${exec}&stdin=true`));
    assert.equal(held.action, 'require-approval');
    assert.equal(decideKubernetes([shells], parse('POST', exec)).action, 'allow');
  });

  it('grant a ServiceAccount token or a port-forward only by a hold whose rule names the subresource', () => {
    const token = parse('POST', '/api/v1/namespaces/default/serviceaccounts/agent/token');
    const forward = parse('POST', '/api/v1/namespaces/default/pods/web/portforward?ports=80');
    const open = policy({ name: 'open', rules: [] });
    for (const request of [token, forward]) {
      const refused = decideKubernetes([open], request);
      assert.equal(refused.action, 'deny');
      assert.match(refused.message!, /unless a rule names the (token|portforward) subresource/);
    }
    const hold = (subresources: string[] | undefined) =>
      policy({
        name: 'holds',
        rules: [
          {
            name: 'hold-credentials',
            action: 'require-approval',
            approval: { approvers: { groups: ['ops'] }, timeout: '1m', scope: 'statement' },
            ...(subresources ? { kubernetes: { subresources } } : { kubernetes: { verbs: ['create'] } }),
          },
        ],
      });
    // A glob, a rule with no subresources, or another spelling does not name it.
    for (const subresources of [['*'], ['tok*'], ['t?ken'], undefined, ['Token'], ['exec']])
      assert.equal(decideKubernetes([hold(subresources)], token).action, 'deny', String(subresources));
    assert.equal(decideKubernetes([hold(['token'])], token).action, 'require-approval');
    assert.equal(decideKubernetes([hold(['portforward'])], forward).action, 'require-approval');
    assert.equal(decideKubernetes([hold(['portforward'])], token).action, 'deny');
    // In audit mode a naming rule grants nothing.
    assert.equal(decideKubernetes([{ ...hold(['token']), mode: 'audit' }], token).action, 'deny');
    // A node's proxy is the kubelet's API: /run runs a command in any pod of the node.
    for (const [method, target] of [
      ['POST', '/api/v1/nodes/n1/proxy/run/default/web/web?cmd=rm+-rf+/'],
      ['POST', '/api/v1/proxy/nodes/n1/run/default/web/web?cmd=rm+-rf+/'],
      ['GET', '/api/v1/nodes/n1:10250/proxy/metrics'],
    ] as const) {
      const request = parse(method, target);
      assert.equal(decideKubernetes([open], request).action, 'deny', target);
      assert.match(decideKubernetes([open], request).message!, /node proxy \(kubelet API\)/);
      assert.equal(decideKubernetes([hold(['*'])], request).action, 'deny', target);
      assert.equal(decideKubernetes([hold(['proxy'])], request).action, 'require-approval', target);
    }
    // A pod's or service's proxy is HTTP to whatever listens in the cluster, past the
    // Connections that govern it; an ephemeral container (kubectl debug) runs any command.
    for (const [method, target, what] of [
      ['GET', '/api/v1/namespaces/default/pods/web/proxy/', /pod proxy/],
      ['GET', '/api/v1/namespaces/default/pods/web:8080/proxy/admin', /pod proxy/],
      ['GET', '/api/v1/proxy/namespaces/default/pods/web/admin', /pod proxy/],
      ['POST', '/api/v1/namespaces/default/services/https:billing:443/proxy/admin/users', /service proxy/],
      ['GET', '/api/v1/proxy/namespaces/default/services/billing/', /service proxy/],
      ['PATCH', '/api/v1/namespaces/default/pods/web/ephemeralcontainers', /ephemeral container/],
      ['PUT', '/api/v1/namespaces/default/pods/web/ephemeralcontainers', /ephemeral container/],
    ] as const) {
      const request = parse(method, target);
      assert.equal(decideKubernetes([open], request).action, 'deny', target);
      assert.match(decideKubernetes([open], request).message!, what, target);
      assert.equal(decideKubernetes([hold(['*'])], request).action, 'deny', target);
      const name = target.includes('ephemeral') ? 'ephemeralcontainers' : 'proxy';
      assert.equal(decideKubernetes([hold([name])], request).action, 'require-approval', target);
    }
    // Reading a pod's ephemeral containers runs nothing.
    assert.equal(
      decideKubernetes([open], parse('GET', '/api/v1/namespaces/default/pods/web/ephemeralcontainers'))
        .action,
      'allow',
    );
    // Another group's "serviceaccounts" is not the core one.
    const other = parse('POST', '/apis/example.com/v1/namespaces/default/serviceaccounts/a/token');
    assert.equal(decideKubernetes([open], other).action, 'allow');
  });

  it('refuse impersonation, dry runs and foreign field managers unless the Connection allows them', () => {
    const strict = kubernetesAllowances({});
    const write = parse(
      'PATCH',
      '/apis/apps/v1/namespaces/default/deployments/web?fieldManager=kubectl-edit',
    );
    assert.equal(refusedByConnection(write, [], strict), undefined);
    assert.match(refusedByConnection(write, ['impersonate-user'], strict)!, /impersonation/);
    const helm = parse('PATCH', '/apis/apps/v1/namespaces/default/deployments/web?fieldManager=helm');
    assert.match(refusedByConnection(helm, [], strict)!, /field manager "helm"/);
    const dry = parse('POST', '/api/v1/namespaces/default/pods?dryRun=All');
    assert.match(refusedByConnection(dry, [], strict)!, /dry-run/);
    const lenient = kubernetesAllowances({
      kubernetes: { dryRun: true, fieldManagers: ['*'], impersonation: true },
    });
    assert.equal(refusedByConnection(dry, ['impersonate-user'], lenient), undefined);
    assert.equal(refusedByConnection(helm, [], lenient), undefined);
  });
});
