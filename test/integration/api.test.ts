// The API against a real kube-apiserver: the generated CRDs install, the examples apply,
// kubectl shows the printer columns and explains the fields, and invalid manifests are
// rejected with their expected messages.
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type ControlPlane, startControlPlane } from '../support/controlplane.ts';
import { requires } from '../support/tools.ts';

const repository = new URL('../../', import.meta.url).pathname;
const invalid = join(repository, 'test/fixtures/invalid');

describe('API on a real kube-apiserver', requires('etcd', 'kube-apiserver', 'kubectl'), () => {
  let cluster: ControlPlane;

  before(async () => {
    cluster = await startControlPlane();
    await cluster.installCrds();
  });
  after(async () => cluster?.stop());

  test('the users have their names and groups', async () => {
    const whoami = JSON.parse(await cluster.kubectl(['auth', 'whoami', '-o', 'json'], { as: 'approver' }));
    assert.equal(whoami.status.userInfo.username, 'alice');
    assert.ok(whoami.status.userInfo.groups.includes('dba-oncall'));
    const denied = cluster.kubectl(['get', 'secrets', '-n', 'default'], { as: 'user' });
    await assert.rejects(denied, /forbidden: User "bob" cannot list resource "secrets"/);
  });

  test('TokenRequest issues an audience-bound token that TokenReview accepts', async () => {
    await cluster.kubectl(['create', 'serviceaccount', 'token-test', '-n', 'default']);
    const token = (
      await cluster.kubectl(['create', 'token', 'token-test', '-n', 'default', '--audience', 'airlock'])
    ).trim();
    const review = (audience: string) =>
      JSON.stringify({
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenReview',
        spec: { token, audiences: [audience] },
      });
    const accepted = JSON.parse(
      await cluster.kubectl(['create', '-o', 'json', '-f', '-'], { input: review('airlock') }),
    );
    assert.equal(accepted.status.authenticated, true);
    assert.equal(accepted.status.user.username, 'system:serviceaccount:default:token-test');
    const refused = JSON.parse(
      await cluster.kubectl(['create', '-o', 'json', '-f', '-'], { input: review('other') }),
    );
    assert.notEqual(refused.status.authenticated, true);
  });

  test('the examples apply cleanly and show their printer columns', async () => {
    const applied = await cluster.kubectl(['apply', '-f', join(repository, 'examples')]);
    assert.match(applied, /connection\.airlock\.dev\/orders-db created/);
    assert.match(applied, /accesspolicy\.airlock\.dev\/support-agent-orders created/);
    const connections = await cluster.kubectl(['get', 'conn', '-n', 'agents']);
    assert.match(connections.split('\n')[0]!, /^NAME\s+PROTOCOL\s+HOST\s+PORT\s+READY\s+AGE$/);
    assert.match(connections, /orders-db\s+postgres\s+orders-db\.data\.svc\.cluster\.local\s+5432/);
    const policies = await cluster.kubectl(['get', 'ap', '-n', 'agents']);
    assert.match(policies.split('\n')[0]!, /^NAME\s+MODE\s+CONNECTIONS\s+READY\s+AGE$/);
    assert.match(policies, /support-agent-orders\s+enforce\s+\["orders-db"\]/);
    const all = await cluster.kubectl(['get', 'airlock', '-n', 'agents', '-o', 'name']);
    assert.match(all, /connection\.airlock\.dev\/bastion/);
    assert.match(all, /accesspolicy\.airlock\.dev\/support-agent-billing/);
  });

  test('defaults are applied by the API server', async () => {
    const policy = JSON.parse(
      await cluster.kubectl(['get', 'ap', 'deploy-bot-bastion', '-n', 'agents', '-o', 'json']),
    );
    assert.equal(policy.spec.mode, 'enforce');
    assert.deepEqual(policy.spec.recording, { enabled: true, results: 'summary' });
    assert.equal(policy.spec.masking[0].strategy, 'redact');
    assert.equal(policy.spec.masking[0].indirectUse, 'deny');
    assert.equal(policy.spec.rules[1].approval.scope, 'statement');
    const bastion = JSON.parse(
      await cluster.kubectl(['get', 'conn', 'bastion', '-n', 'agents', '-o', 'json']),
    );
    assert.equal(bastion.spec.tls.mode, 'verify-full');
  });

  test('AccessRequests show requester, connection, request and phase; a decision cannot change', async () => {
    const request = {
      apiVersion: 'airlock.dev/v1alpha1',
      kind: 'AccessRequest',
      metadata: { name: 'delete-order-42', namespace: 'agents' },
      spec: {
        connection: 'orders-db',
        policy: 'support-agent-orders',
        rule: 'writes-need-approval',
        requester: { pod: 'support-agent-7d9f', serviceAccount: 'support-agent' },
        request: 'DELETE FROM orders WHERE id = $1',
        reasons: ['statement DELETE'],
      },
    };
    await cluster.kubectl(['create', '-f', '-'], { input: JSON.stringify(request) });
    const listed = await cluster.kubectl(['get', 'ar', '-n', 'agents']);
    assert.match(listed.split('\n')[0]!, /^NAME\s+REQUESTER\s+CONNECTION\s+REQUEST\s+PHASE\s+AGE$/);
    assert.match(
      listed,
      /delete-order-42\s+support-agent-7d9f\s+orders-db\s+DELETE FROM orders WHERE id = \$1/,
    );
    const decide = (action: string) =>
      cluster.kubectl([
        'patch',
        'ar',
        'delete-order-42',
        '-n',
        'agents',
        '--type=merge',
        '-p',
        JSON.stringify({ spec: { decision: { action } } }),
      ]);
    await decide('approve');
    await assert.rejects(decide('deny'), /a decision cannot be changed/);
    await assert.rejects(
      cluster.kubectl([
        'patch',
        'ar',
        'delete-order-42',
        '-n',
        'agents',
        '--type=merge',
        '-p',
        '{"spec":{"request":"DROP TABLE orders"}}',
      ]),
      /request is immutable/,
    );
  });

  test('kubectl explain teaches the API', async () => {
    const tls = await cluster.kubectl(['explain', 'connection.spec.tls']);
    assert.match(tls, /How the sidecar secures the connection to the target/);
    assert.match(tls, /verify-full \(encrypted, certificate and name verified\)/);
    assert.match(tls, /caSecretRef/);
    // kubectl wraps descriptions at its own width: read them as one line.
    const rules = (await cluster.kubectl(['explain', 'accesspolicy.spec.rules.sql'])).replace(/\s+/g, ' ');
    assert.match(rules, /unboundedWrites/);
    assert.match(rules, /UPDATE and DELETE without a WHERE clause/);
    const decision = await cluster.kubectl(['explain', 'ar.spec.decision']);
    assert.match(decision, /never from this field/);
  });

  describe('invalid manifests are rejected with a clear message', async () => {
    const files = (await readdir(invalid)).filter((f) => f.endsWith('.yaml')).sort();
    test('there are invalid fixtures', () => assert.ok(files.length >= 10));
    for (const file of files) {
      test(file, async () => {
        const text = await readFile(join(invalid, file), 'utf8');
        const expected = /^# expect: (.*)$/m.exec(text)?.[1];
        assert.ok(expected, `${file} names its expected message in a "# expect:" line`);
        const result = cluster.kubectl(['apply', '-f', join(invalid, file)]);
        await assert.rejects(result, (error: Error) => {
          assert.ok(error.message.includes(expected), `expected "${expected}" in:\n${error.message}`);
          return true;
        });
      });
    }
  });
});
