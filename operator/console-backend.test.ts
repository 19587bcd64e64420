import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConsoleRefusal } from '../console/server.ts';
import { clusterConsoleBackend } from './console-backend.ts';
import type { ApiCall, ApiReply } from './impersonation.ts';

const session = (namespace: string, id: string, started: string) => ({
  apiVersion: 'audit.airlock.dev/v1alpha1',
  kind: 'Session',
  metadata: { name: id, namespace, creationTimestamp: started },
  connection: { namespace, name: 'orders-db', protocol: 'postgres' },
  identity: `system:serviceaccount:${namespace}:agent`,
  started,
  requests: 1,
  blocked: 0,
  masked: 0,
});

const request = (namespace: string, name: string, extra: object = {}) => ({
  metadata: { namespace, name, creationTimestamp: '2026-01-01T00:00:00Z' },
  spec: {
    connection: 'orders-db',
    policy: 'p',
    rule: 'writes',
    requester: { pod: 'agent-0', serviceAccount: 'agent' },
    request: 'UPDATE orders SET x = 1',
  },
  status: { phase: 'Pending', expiresAt: '2026-01-01T00:02:00Z' },
  ...extra,
});

/** An API server where the person may list in `agents` and `ops` only. */
function apiServer(calls: string[]): ApiCall {
  const reply = (status: number, body: unknown): ApiReply => ({ status, body });
  return async (method, path, body) => {
    calls.push(`${method} ${path}`);
    if (path.endsWith('/selfsubjectaccessreviews')) {
      const { namespace } = (body as { spec: { resourceAttributes: { namespace: string } } }).spec
        .resourceAttributes;
      return reply(201, { status: { allowed: namespace === 'agents' || namespace === 'ops' } });
    }
    if (!path.includes('/namespaces/')) return reply(403, { message: 'forbidden at the cluster scope' });
    if (path.includes('/namespaces/payments/')) return reply(403, { message: 'forbidden in payments' });
    if (path.includes('/accessrequests/')) {
      if (path.endsWith('/missing')) return reply(404, { message: 'not found' });
      return reply(403, {
        message:
          'admission webhook denied the request: airlock: oidc:alice requested mine and cannot decide it',
      });
    }
    if (path.includes('/accessrequests'))
      return reply(200, {
        items: path.includes('/agents/')
          ? [
              request('agents', 'ar-1'),
              request('agents', 'decided', {
                spec: { ...request('a', 'b').spec, decision: { action: 'approve' } },
              }),
            ]
          : [request('ops', 'ar-2')],
      });
    const namespace = path.includes('/agents/') ? 'agents' : 'ops';
    return reply(200, {
      items: [
        session(
          namespace,
          `${namespace}-1`,
          namespace === 'agents' ? '2026-01-01T00:00:02Z' : '2026-01-01T00:00:01Z',
        ),
      ],
      metadata: { continue: 'eyJ2IjoxLCJiZWZvcmUiOjV9' },
    });
  };
}

const backend = (calls: string[]) =>
  clusterConsoleBackend({
    user: 'oidc:alice',
    csrfToken: 't',
    signOut: '/auth/sign-out',
    call: apiServer(calls),
    namespaces: async () => ['agents', 'ops', 'payments'],
  });

describe('the console acting as a signed-in person', () => {
  it('lists sessions of the namespaces RBAC lets them read when the cluster scope is refused', async () => {
    const calls: string[] = [];
    const page = await backend(calls).sessions({ limit: 10 });
    assert.deepEqual(
      page.sessions.map((s) => s.id),
      ['agents-1', 'ops-1'],
    );
    assert.equal(page.next, undefined, 'a merge of several namespaces does not page');
    assert.ok(!calls.some((c) => c.includes('/namespaces/payments/sessions')));
  });

  it('pages one namespace with the sessions API continue token', async () => {
    const page = await backend([]).sessions({ limit: 10, namespace: 'agents', before: 9 });
    assert.equal(page.next, 5);
  });

  it('passes RBAC refusals on with their words', async () => {
    await assert.rejects(backend([]).sessions({ limit: 10, namespace: 'payments' }), (error: unknown) => {
      assert.ok(error instanceof ConsoleRefusal);
      assert.equal(error.status, 403);
      assert.equal(error.message, 'forbidden in payments');
      return true;
    });
  });

  it('lists pending, undecided AccessRequests by namespace/name', async () => {
    const approvals = await backend([]).approvals();
    assert.deepEqual(
      approvals.map((a) => [a.id, a.requester, a.request.text]),
      [
        ['agents/ar-1', 'agent (pod agent-0)', 'UPDATE orders SET x = 1'],
        ['ops/ar-2', 'agent (pod agent-0)', 'UPDATE orders SET x = 1'],
      ],
    );
  });

  it('decides with a merge patch as the person; the webhook refusal reaches the page', async () => {
    const calls: string[] = [];
    const person = backend(calls);
    await assert.rejects(person.decide('agents/mine', true, 'ok'), /cannot decide it/);
    assert.equal(calls.at(-1), 'PATCH /apis/airlock.dev/v1alpha1/namespaces/agents/accessrequests/mine');
    assert.equal(await person.decide('agents/missing', false), false);
    assert.equal(await person.decide('no-namespace', false), false);
  });
});
