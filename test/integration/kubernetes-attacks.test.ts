// Requests kubectl would not send, straight to the Kubernetes enforcer: URL forms the API
// server could read otherwise than a naive parser (double slashes, encoded and dot segments,
// case), query parameters and headers that change who acts or what happens (dryRun,
// fieldManager, Impersonate-*, X-Remote-*, the agent's own Authorization), and response shapes
// kubectl rarely asks for (tables with whole objects, watches by the old path prefix).
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, it } from 'node:test';
import type { RequestEvent } from '../../api/events.ts';
import { redactedData } from '../../sidecar/kubernetes/objects.ts';
import { policy } from '../../sidecar/policy/fixtures.ts';
import { type ControlPlane, startControlPlane } from '../support/controlplane.ts';
import { agentToken, type EnforcedCluster, enforceCluster } from '../support/kubernetes.ts';
import { requires } from '../support/tools.ts';

const password = 'hunter2-correct-horse';
const encoded = Buffer.from(password).toString('base64');

const agents = policy({
  name: 'cluster-agents',
  rules: [
    {
      name: 'no-namespace-deletes',
      action: 'deny',
      kubernetes: { verbs: ['delete', 'deletecollection'], resources: ['/namespaces'] },
    },
    { name: 'no-prod-secrets', action: 'deny', kubernetes: { resources: ['secrets'], namespaces: ['prod'] } },
  ],
});

interface Answer {
  status: number;
  body: string;
  json: { kind?: string; message?: string; reason?: string; [key: string]: unknown };
}

const held = policy({
  name: 'held-deletes',
  rules: [
    {
      name: 'approve-deletes',
      action: 'require-approval',
      kubernetes: { verbs: ['delete'] },
      approval: { approvers: { groups: ['ops'] }, timeout: '1m', scope: 'statement' },
    },
  ],
});

describe(
  'Kubernetes enforcer against crafted requests',
  requires('kube-apiserver', 'etcd', 'kubectl'),
  () => {
    let plane: ControlPlane;
    let cluster: EnforcedCluster;
    let token: string;

    const send = (
      method: string,
      path: string,
      headers: Record<string, string> = {},
      body?: string,
      { watchFor }: { watchFor?: (text: string) => boolean } = {},
    ) =>
      new Promise<Answer>((resolve, reject) => {
        const url = new URL(cluster.url);
        const req = request(
          { host: url.hostname, port: url.port, method, path, headers, agent: false },
          (res) => {
            let text = '';
            res.on('data', (chunk: Buffer) => {
              text += chunk.toString();
              if (watchFor?.(text)) res.destroy();
            });
            const done = () => {
              let json = {};
              try {
                json = JSON.parse(text);
              } catch {}
              resolve({ status: res.statusCode ?? 0, body: text, json });
            };
            res.on('end', done);
            res.on('close', done);
          },
        );
        req.on('error', reject);
        req.end(body);
      });

    before(async () => {
      plane = await startControlPlane();
      token = await agentToken(plane);
      await plane.kubectl(['create', 'namespace', 'prod']);
      for (const namespace of ['default', 'prod'])
        await plane.kubectl([
          'create',
          'secret',
          'generic',
          'db',
          '-n',
          namespace,
          `--from-literal=password=${password}`,
        ]);
      cluster = await enforceCluster(plane, token, [agents]);
    });
    after(async () => {
      await cluster?.enforcer.close();
      await plane?.stop();
    });

    it('refuses paths the API server could read another way, with a Status', async () => {
      for (const path of [
        '//api/v1/namespaces/prod',
        '/api//v1/namespaces/prod',
        '/api/v1/namespaces/default/secrets/../../namespaces/prod',
        '/api/v1/namespaces/default/secrets/%2e%2e/%2e%2e/prod/secrets/db',
        '/api/v1/namespaces/default%2Fsecrets',
        '/api/v1/namespaces/prod/secrets/db%ZZ',
        '/api/v1/namespaces/prod/secrets/db?x=1;y=2',
      ]) {
        const answer = await send('DELETE', path);
        assert.equal(answer.status, 400, path);
        assert.equal(answer.json.kind, 'Status', path);
        assert.equal(answer.json.reason, 'BadRequest', path);
        assert.match(answer.json.message ?? '', /^airlock: ambiguous request/, path);
      }
      await plane.kubectl(['get', 'namespace', 'prod']);
    });

    it('decides on the decoded path as the API server reads it', async () => {
      const spelled = await send('DELETE', '/api/v1/namespaces/pr%6fd');
      assert.equal(spelled.status, 403);
      assert.equal(spelled.json.reason, 'Forbidden');
      const collection = await send('DELETE', '/api/v1/namespaces');
      assert.equal(collection.status, 403);
      const old = await send('GET', '/api/v1/watch/namespaces/prod/secrets');
      assert.equal(old.status, 403);
      const across = await send('GET', '/api/v1/secrets?limit=1');
      assert.equal(across.status, 403, 'a list across namespaces may return prod Secrets');
      // Another case is another (non-resource) path: the API server has no such route.
      const upper = await send('DELETE', '/API/v1/namespaces/prod');
      assert.equal(upper.status, 404);
      await plane.kubectl(['get', 'namespace', 'prod']);
    });

    it('refuses dry runs, foreign field managers and impersonation unless the Connection allows them', async () => {
      const pod = JSON.stringify({
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: 'probe' },
        data: { a: 'b' },
      });
      const json = { 'content-type': 'application/json' };
      const dry = await send('POST', '/api/v1/namespaces/default/configmaps?dryRun=All', json, pod);
      assert.equal(dry.status, 403);
      assert.match(dry.json.message ?? '', /dry-run requests are not allowed/);
      const manager = await send(
        'POST',
        '/api/v1/namespaces/default/configmaps?fieldManager=helm',
        json,
        pod,
      );
      assert.equal(manager.status, 403);
      assert.match(manager.json.message ?? '', /field manager "helm" is not allowed/);
      const impersonating = await send('GET', '/api/v1/namespaces/default/configmaps', {
        'Impersonate-User': 'system:admin',
      });
      assert.equal(impersonating.status, 403);
      assert.match(impersonating.json.message ?? '', /impersonation \(impersonate-user\)/);
      const kubectlManager = await send(
        'POST',
        '/api/v1/namespaces/default/configmaps?fieldManager=kubectl-create',
        json,
        pod,
      );
      assert.equal(kubectlManager.status, 201);
    });

    it("sends the held token, never the agent's credential or front-proxy headers", async () => {
      const review = JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' });
      const answer = await send(
        'POST',
        '/apis/authentication.k8s.io/v1/selfsubjectreviews',
        {
          'content-type': 'application/json',
          authorization: 'Bearer not-the-agents-to-give',
          'x-remote-user': 'system:admin',
          'x-remote-group': 'system:masters',
        },
        review,
      );
      assert.equal(answer.status, 201, answer.body);
      const status = answer.json.status as { userInfo: { username: string; groups: string[] } };
      assert.equal(status.userInfo.username, 'system:serviceaccount:default:agent');
      assert.ok(!status.userInfo.groups.includes('system:masters'));
    });

    it('redacts Secrets in tables with whole objects, YAML and protobuf requests, and raw watches', async () => {
      const table = await send('GET', '/api/v1/namespaces/default/secrets?includeObject=Object', {
        accept: 'application/json;as=Table;v=v1;g=meta.k8s.io',
      });
      assert.equal(table.status, 200);
      assert.equal(table.json.kind, 'Table');
      assert.ok(!table.body.includes(encoded), table.body);
      assert.ok(table.body.includes(redactedData), 'the rows carry the whole (redacted) Secrets');
      const yaml = await send('GET', '/api/v1/namespaces/default/secrets/db', {
        accept: 'application/yaml, application/vnd.kubernetes.protobuf',
      });
      // Only JSON is asked for, whatever the agent accepts.
      assert.equal(yaml.status, 200);
      assert.equal(yaml.json.kind, 'Secret');
      assert.ok(!yaml.body.includes(encoded));
      const any = await send('GET', '/api/v1/namespaces/default/secrets/db', { accept: '*/*' });
      assert.equal(any.status, 200);
      assert.ok(!any.body.includes(encoded));
      const watch = await send(
        'GET',
        '/api/v1/namespaces/default/secrets?watch=1&fieldSelector=metadata.name%3Ddb',
        { accept: 'application/vnd.kubernetes.protobuf;stream=watch, application/json' },
        undefined,
        { watchFor: (text) => text.includes('"ADDED"') && text.includes('\n') },
      );
      assert.equal(watch.status, 200);
      assert.match(watch.body, /"ADDED"/);
      assert.ok(!watch.body.includes(encoded), watch.body);
      const tableWatch = await send(
        'GET',
        '/api/v1/namespaces/default/secrets?watch=true&includeObject=Object',
        { accept: 'application/json;as=Table;v=v1;g=meta.k8s.io' },
        undefined,
        { watchFor: (text) => text.includes('"ADDED"') && text.includes('\n') },
      );
      assert.match(tableWatch.body, /"kind":"Table"/);
      assert.ok(!tableWatch.body.includes(encoded), tableWatch.body);
      assert.ok(tableWatch.body.includes(redactedData), 'the rows carry the whole (redacted) Secret');
      const gzip = await send('GET', '/api/v1/namespaces/default/secrets', { 'accept-encoding': 'gzip' });
      assert.equal(gzip.status, 200);
      assert.ok(!gzip.body.includes(encoded));
    });

    it('refuses every request while the audit trail cannot record it, and what an approver denies', async () => {
      let full: string | undefined = 'the audit spool is full';
      const guarded = await enforceCluster(plane, token, [held], {
        name: 'guarded',
        refusal: () => full,
        approvals: {
          request: async () => ({
            approved: false,
            outcome: 'denied',
            decidedBy: 'alice',
            reason: 'not today',
          }),
        },
      });
      try {
        const refused = await guarded.attempt(['get', 'configmaps']);
        assert.notEqual(refused.code, 0);
        // kubectl shows its own words for a 503.
        assert.match(refused.err, /ServiceUnavailable/);
        const raw = await fetch(`${guarded.url}/api/v1/namespaces/default/configmaps`);
        assert.equal(raw.status, 503);
        assert.equal(((await raw.json()) as { message: string }).message, 'the audit spool is full');
        full = undefined;
        await guarded.kubectl(['get', 'configmaps']);
        const denied = await guarded.attempt(['delete', 'configmap', 'probe']);
        assert.notEqual(denied.code, 0);
        assert.match(denied.err, /Forbidden.*airlock: request denied by approver alice .*: not today/);
        await plane.kubectl(['get', 'configmap', 'probe']);
      } finally {
        await guarded.enforcer.close();
      }
    });

    it('records each refusal with its reason and code', () => {
      const requests = cluster.events.filter((e): e is RequestEvent => e.type === 'request');
      const ambiguous = requests.find((e) => e.error?.code === 'protocol-violation');
      assert.equal(ambiguous?.outcome, 'blocked');
      assert.equal(ambiguous?.status, 400);
      const denied = requests.find((e) => e.rule === 'no-namespace-deletes');
      assert.equal(denied?.text, 'delete namespaces prod');
      assert.equal(denied?.error?.wire, '403');
    });
  },
);
