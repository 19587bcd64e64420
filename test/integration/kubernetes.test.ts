// The Kubernetes enforcer between the real kubectl (as the agent, with a kubeconfig that names
// only the enforcer and holds no credential) and a real kube-apiserver: decisions on what the
// API server reads a request as, approvals, Secrets redacted in every response shape kubectl
// asks for, exec commands refused, tokens refused, and the recorded events. The exec and attach
// streams: kubernetes-streams.test.ts; they and logs -f through a real kubelet:
// test/e2e/kubernetes.test.ts.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import type { RequestEvent } from '../../api/events.ts';
import type { ApprovalRequest } from '../../sidecar/core/enforcer.ts';
import { redactedData } from '../../sidecar/kubernetes/objects.ts';
import { policy } from '../../sidecar/policy/fixtures.ts';
import { type ControlPlane, startControlPlane } from '../support/controlplane.ts';
import { agentToken, type EnforcedCluster, enforceCluster } from '../support/kubernetes.ts';
import { requires, tool } from '../support/tools.ts';

const password = 'hunter2-correct-horse';
const encoded = Buffer.from(password).toString('base64');

const agents = policy({
  name: 'cluster-agents',
  masking: [{ name: 'pii', detectors: ['email'], strategy: 'redact', indirectUse: 'deny' }],
  rules: [
    {
      name: 'no-namespace-deletes',
      action: 'deny',
      message: 'namespaces are not deleted by agents',
      kubernetes: { verbs: ['delete', 'deletecollection'], resources: ['/namespaces'] },
    },
    {
      name: 'approve-scaling',
      action: 'require-approval',
      kubernetes: { subresources: ['scale'] },
      approval: { approvers: { groups: ['ops'] }, timeout: '1m', scope: 'statement' },
    },
    { name: 'no-file-deletion', action: 'deny', ssh: { classes: ['file-deletion'] } },
  ],
});

const leaks = (text: string) => text.includes(password) || text.includes(encoded);

describe('Kubernetes enforcer', requires('kube-apiserver', 'etcd', 'kubectl'), () => {
  let plane: ControlPlane;
  let cluster: EnforcedCluster;
  const held: ApprovalRequest[] = [];
  const requests = () => cluster.events.filter((e): e is RequestEvent => e.type === 'request');

  before(async () => {
    plane = await startControlPlane();
    const token = await agentToken(plane);
    await plane.kubectl(['create', 'namespace', 'prod']);
    // Applied, so the Secret also sits in its last-applied-configuration annotation.
    await plane.kubectl(['apply', '-f', '-'], {
      input: JSON.stringify({
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: 'db', namespace: 'default', labels: { app: 'orders' } },
        data: { password: encoded },
        stringData: { owner: 'ops@example.com' },
      }),
    });
    await plane.kubectl(['create', 'configmap', 'contacts', '--from-literal=owner=ada@example.com']);
    await plane.kubectl(['create', 'deployment', 'web', '--image=registry.example/web:1']);
    await plane.kubectl(['apply', '-f', '-'], {
      input: JSON.stringify({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'shell', namespace: 'default' },
        spec: {
          serviceAccountName: 'agent',
          automountServiceAccountToken: false,
          containers: [{ name: 'main', image: 'registry.example/shell:1' }],
        },
      }),
    });
    cluster = await enforceCluster(plane, token, [agents], {
      approvals: {
        request: async (request) => {
          held.push(request);
          return { approved: true, outcome: 'approved', decidedBy: 'alice', request: 'ar-1' };
        },
      },
    });
  });
  after(async () => {
    await cluster?.enforcer.close();
    await plane?.stop();
  });

  it('lets kubectl get pods through, with the held token and none of the agent', async () => {
    const out = await cluster.kubectl(['get', 'pods']);
    assert.match(out, /shell/);
    const who = JSON.parse(await cluster.kubectl(['auth', 'whoami', '-o', 'json']));
    assert.equal(who.status.userInfo.username, 'system:serviceaccount:default:agent');
    const event = requests().find((e) => e.text === 'list pods in namespace default');
    assert.equal(event?.outcome, 'allowed');
    assert.equal(event?.status, 200);
  });

  it("keeps kubectl's everyday commands working: apply client- and server-side, explain, label, rollout", async () => {
    const config = (value: string) =>
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: 'agent-config' },
        data: { value },
      });
    await cluster.kubectl(['apply', '-f', '-'], config('one'));
    await cluster.kubectl(['apply', '-f', '-'], config('two'));
    await cluster.kubectl(['apply', '--server-side', '-f', '-'], config('three'));
    assert.equal(
      await plane.kubectl(['get', 'configmap', 'agent-config', '-o', 'jsonpath={.data.value}']),
      'three',
    );
    assert.match(await cluster.kubectl(['explain', 'deployment.spec.replicas']), /replicas/);
    await cluster.kubectl(['label', 'configmap', 'agent-config', 'team=platform']);
    await cluster.kubectl(['rollout', 'restart', 'deployment', 'web']);
    assert.match(await cluster.kubectl(['api-resources', '--api-group=apps']), /deployments/);
  });

  it('refuses kubectl delete namespace with the rule, as a Status kubectl prints', async () => {
    const result = await cluster.attempt(['delete', 'namespace', 'prod']);
    assert.notEqual(result.code, 0);
    assert.match(
      result.err,
      /Error from server \(Forbidden\): airlock: request denied by AccessPolicy "cluster-agents" rule "no-namespace-deletes": namespaces are not deleted by agents/,
    );
    await plane.kubectl(['get', 'namespace', 'prod']);
    const event = requests().find((e) => e.text === 'delete namespaces prod');
    assert.equal(event?.outcome, 'blocked');
    assert.equal(event?.rule, 'no-namespace-deletes');
    assert.equal(event?.error?.code, 'policy-denied');
  });

  it('redacts Secret data in every shape kubectl reads it', async () => {
    for (const args of [
      ['get', 'secret', 'db', '-o', 'yaml'],
      ['get', 'secret', 'db', '-o', 'json'],
      ['get', 'secrets', '-o', 'yaml'],
      ['get', 'secrets', '-o', 'wide'],
      ['get', 'secrets', '--show-labels'],
      ['get', 'secret', 'db', '-o', 'jsonpath={.data.password}'],
      ['describe', 'secret', 'db'],
      ['get', '--raw', '/api/v1/secrets'],
      ['get', '--raw', '/api/v1/namespaces/default/secrets?includeObject=Object'],
    ]) {
      const out = await cluster.kubectl(args);
      assert.ok(!leaks(out), `kubectl ${args.join(' ')} shows the password:\n${out}`);
      assert.ok(!out.includes('ops@example.com'), `kubectl ${args.join(' ')} shows stringData`);
    }
    const secret = JSON.parse(await cluster.kubectl(['get', 'secret', 'db', '-o', 'json']));
    assert.equal(secret.data.password, redactedData);
    const applied = secret.metadata.annotations['kubectl.kubernetes.io/last-applied-configuration'];
    assert.ok(applied && !leaks(applied) && applied.includes(redactedData), applied);
    // Tables from the server (kubectl get's own format) with the objects in them.
    const table = await cluster.kubectl([
      'get',
      '--raw',
      '/api/v1/namespaces/default/secrets?includeObject=Object',
    ]);
    assert.ok(!leaks(table));
    const masked = requests().find((e) => e.text === 'get secrets db in namespace default' && e.masked);
    assert.equal(masked?.outcome, 'masked');
    assert.ok((masked?.masked?.['secrets/data'] ?? 0) >= 2);
  });

  it('refuses to write a redacted Secret back, and lets other Secret writes through', async () => {
    const redacted = await cluster.kubectl(['get', 'secret', 'db', '-o', 'json']);
    await assert.rejects(
      cluster.kubectl(['replace', '-f', '-'], redacted),
      /Forbidden.*carries a value Airlock redacted/,
    );
    const kept = await plane.kubectl(['get', 'secret', 'db', '-o', 'jsonpath={.data.password}']);
    assert.equal(kept, encoded);
    await cluster.kubectl(['create', 'secret', 'generic', 'agent-made', '--from-literal=key=value']);
    const made = await plane.kubectl(['get', 'secret', 'agent-made', '-o', 'jsonpath={.data.key}']);
    assert.equal(made, Buffer.from('value').toString('base64'));
  });

  it('masks Secrets and detected values in watch events as they stream', async () => {
    const watch = spawn(tool('kubectl'), ['get', 'secrets', '--watch', '-o', 'json'], {
      env: {
        ...process.env,
        KUBECONFIG: `${plane.directory}/agent-cluster.kubeconfig`,
        HOME: plane.directory,
      },
    });
    let out = '';
    watch.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
    });
    try {
      await until(() => out.includes('"name": "db"'));
      await plane.kubectl(['patch', 'secret', 'db', '-p', JSON.stringify({ data: { token: encoded } })]);
      await until(() => (out.match(/"name": "db"/g) ?? []).length >= 2);
      assert.ok(!leaks(out), out);
      assert.ok(out.includes(redactedData));
    } finally {
      watch.kill();
    }
    const configmaps = await cluster.kubectl(['get', 'configmap', 'contacts', '-o', 'yaml']);
    assert.ok(!configmaps.includes('ada@example.com'));
    assert.match(configmaps, /\[REDACTED:email\]/);
  });

  it('holds kubectl scale for approval and lets it through once approved', async () => {
    await cluster.kubectl(['scale', 'deployment', 'web', '--replicas=3']);
    assert.equal(held.length, 1);
    assert.equal(held[0]!.rule, 'approve-scaling');
    assert.match(held[0]!.text, /^patch apps\/deployments\/scale web in namespace default/);
    const replicas = await plane.kubectl(['get', 'deployment', 'web', '-o', 'jsonpath={.spec.replicas}']);
    assert.equal(replicas, '3');
    const event = requests().find((e) => e.rule === 'approve-scaling');
    assert.equal(event?.outcome, 'approved');
    assert.deepEqual(event?.approval, { request: 'ar-1', decidedBy: 'alice' });
  });

  it('refuses kubectl exec -- rm -rf / by the command rule', async () => {
    const denied = await cluster.attempt(['exec', 'shell', '--', 'rm', '-rf', '/']);
    assert.notEqual(denied.code, 0);
    assert.match(
      denied.err,
      /airlock: request denied by AccessPolicy "cluster-agents" rule "no-file-deletion"/,
    );
  });

  it('refuses kubectl create token: a live cluster credential only a rule naming the token subresource grants', async () => {
    const refused = await cluster.attempt(['create', 'token', 'agent']);
    assert.notEqual(refused.code, 0);
    assert.match(
      refused.err,
      /ServiceAccount token requests are refused unless a rule names the token subresource/,
    );
    const event = requests().find(
      (e) => e.text === 'create serviceaccounts/token agent in namespace default',
    );
    assert.equal(event?.outcome, 'blocked');
  });
});

async function until(done: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
