import assert from 'node:assert/strict';
import { once } from 'node:events';
import { type AddressInfo, connect, createServer } from 'node:net';
import { afterEach, beforeEach, describe, it } from 'node:test';
import type { SessionEvent } from '../api/events.ts';
import { Registry } from '../metrics/registry.ts';
import { noApprovals } from './core/enforcer.ts';
import { ApprovalGate, type ApprovalWait, approvalChannel } from './core/gate.ts';
import { eventChannel } from './core/recorder.ts';
import { maskedBy, subscribeDataPathMetrics } from './metrics.ts';
import { policy } from './policy/fixtures.ts';
import { serveTcp } from './tcp/enforcer.ts';

const base = {
  version: 1,
  sessionId: 's-1',
  time: '2026-01-01T00:00:00.000Z',
  identity: { namespace: 'default', serviceAccount: 'agent' },
} as const;

let seq = 0;
function publish(protocol: string, event: Record<string, unknown>): void {
  eventChannel.publish({
    ...base,
    id: `e-${seq}`,
    seq: seq++,
    connection: { name: 'orders', namespace: 'default', protocol },
    ...event,
  } as unknown as SessionEvent);
}

function request(protocol: string, fields: Record<string, unknown>): void {
  publish(protocol, {
    type: 'request',
    text: 'GET /customers/42?email=alice@example.com',
    durationMs: 3,
    ...fields,
  });
}

describe('data-path metrics', () => {
  let registry: Registry;
  let unsubscribe: () => void;
  beforeEach(() => {
    registry = new Registry();
    unsubscribe = subscribeDataPathMetrics(registry);
  });
  afterEach(() => unsubscribe());

  /** The registry's exposition lines that start with `prefix`. */
  function lines(prefix: string): string[] {
    return registry
      .metrics()
      .split('\n')
      .filter((line) => line.startsWith(prefix));
  }

  it('counts decisions by protocol, outcome, policy and rule, never by request text', async () => {
    request('http', { outcome: 'allowed' });
    request('http', { outcome: 'allowed' });
    request('http', {
      outcome: 'blocked',
      policy: 'api-agents',
      rule: 'no-admin',
      error: { code: 'policy-denied', message: 'admin endpoints are off limits', wire: '403' },
    });
    request('postgres', { outcome: 'masked', text: 'SELECT email FROM customers' });
    assert.deepEqual(lines('airlock_sidecar_requests_total{'), [
      'airlock_sidecar_requests_total{protocol="http",outcome="allowed",policy="",rule=""} 2',
      'airlock_sidecar_requests_total{protocol="http",outcome="blocked",policy="api-agents",rule="no-admin"} 1',
      'airlock_sidecar_requests_total{protocol="postgres",outcome="masked",policy="",rule=""} 1',
    ]);
    assert.deepEqual(lines('airlock_sidecar_request_errors_total{'), [
      'airlock_sidecar_request_errors_total{protocol="http",code="policy-denied"} 1',
    ]);
    const text = registry.metrics();
    assert.doesNotMatch(text, /customers|alice|SELECT/);
  });

  it('observes request durations in seconds by protocol', async () => {
    request('tcp', { outcome: 'allowed', durationMs: 4 });
    request('tcp', { outcome: 'allowed', durationMs: 700 });
    const tcp = lines('airlock_sidecar_request_duration_seconds_');
    assert.ok(tcp.includes('airlock_sidecar_request_duration_seconds_bucket{le="0.005",protocol="tcp"} 1'));
    assert.ok(tcp.includes('airlock_sidecar_request_duration_seconds_bucket{le="1",protocol="tcp"} 2'));
    assert.ok(tcp.includes('airlock_sidecar_request_duration_seconds_sum{protocol="tcp"} 0.704'));
    assert.ok(tcp.includes('airlock_sidecar_request_duration_seconds_count{protocol="tcp"} 2'));
  });

  it('counts masked values by detector, and columns, JSON paths and key globs by their kind', async () => {
    request('postgres', {
      outcome: 'masked',
      masked: { 'pii/email': 2, 'pii/credit-card': 1, 'cols/public.customers.ssn': 5, 'cols/*.phone': 1 },
    });
    request('http', {
      outcome: 'masked',
      masked: { 'pii/email': 3, 'names/$.customer.name': 1, 'ids/employee-id': 4, 'pii/iban': 0 },
    });
    request('redis', { outcome: 'masked', masked: { 'sessions/session:*': 2 } });
    assert.deepEqual(lines('airlock_sidecar_masked_values_total{'), [
      'airlock_sidecar_masked_values_total{protocol="postgres",detector="email"} 2',
      'airlock_sidecar_masked_values_total{protocol="postgres",detector="credit-card"} 1',
      'airlock_sidecar_masked_values_total{protocol="postgres",detector="column"} 6',
      'airlock_sidecar_masked_values_total{protocol="http",detector="email"} 3',
      'airlock_sidecar_masked_values_total{protocol="http",detector="json-path"} 1',
      'airlock_sidecar_masked_values_total{protocol="http",detector="employee-id"} 4',
      'airlock_sidecar_masked_values_total{protocol="redis",detector="key"} 2',
    ]);
  });

  it('counts sessions, the bytes they relayed each way, and protocol errors by code', async () => {
    publish('ssh', { type: 'session.start', client: { address: '10.0.0.7' } });
    publish('ssh', { type: 'session.start', client: { address: '10.0.0.7' } });
    publish('ssh', { type: 'data', stream: 'output', at: 0.1, data: 'hello\r\n' });
    publish('ssh', { type: 'protocol.error', code: 'connect-failed', message: 'ECONNREFUSED 10.0.0.9:22' });
    publish('ssh', { type: 'session.end', reason: 'closed', bytesIn: 120, bytesOut: 4096 });
    assert.deepEqual(lines('airlock_sidecar_sessions_started_total{'), [
      'airlock_sidecar_sessions_started_total{protocol="ssh"} 2',
    ]);
    assert.deepEqual(lines('airlock_sidecar_sessions_ended_total{'), [
      'airlock_sidecar_sessions_ended_total{protocol="ssh"} 1',
    ]);
    assert.deepEqual(lines('airlock_sidecar_relayed_bytes_total{'), [
      'airlock_sidecar_relayed_bytes_total{protocol="ssh",direction="in"} 120',
      'airlock_sidecar_relayed_bytes_total{protocol="ssh",direction="out"} 4096',
    ]);
    assert.deepEqual(lines('airlock_sidecar_protocol_errors_total{'), [
      'airlock_sidecar_protocol_errors_total{protocol="ssh",code="connect-failed"} 1',
    ]);
  });

  it('observes approval waits in seconds by how the hold ended', async () => {
    const wait = (outcome: ApprovalWait['outcome'], waitMs: number) =>
      approvalChannel.publish({
        connection: 'orders',
        policy: 'p',
        rule: 'r',
        outcome,
        waitMs,
      } satisfies ApprovalWait);
    wait('approved', 12_000);
    wait('approved', 40_000);
    wait('expired', 300_000);
    const waits = lines('airlock_sidecar_approval_wait_seconds_');
    assert.ok(waits.includes('airlock_sidecar_approval_wait_seconds_bucket{le="15",outcome="approved"} 1'));
    assert.ok(waits.includes('airlock_sidecar_approval_wait_seconds_bucket{le="60",outcome="approved"} 2'));
    assert.ok(waits.includes('airlock_sidecar_approval_wait_seconds_sum{outcome="approved"} 52'));
    assert.ok(waits.includes('airlock_sidecar_approval_wait_seconds_count{outcome="expired"} 1'));
    assert.ok(!waits.some((line) => line.includes('outcome="denied"')));
  });

  it('counts what a real enforcer publishes through the core: a TCP session to an echo target', async () => {
    const echo = createServer((socket) => socket.pipe(socket));
    echo.listen(0, '127.0.0.1');
    await once(echo, 'listening');
    const enforcer = await serveTcp({
      connection: {
        name: 'echo',
        namespace: 'default',
        protocol: 'tcp',
        host: '127.0.0.1',
        port: (echo.address() as AddressInfo).port,
        tls: { mode: 'disable' },
        credentials: {},
        policies: [policy({ name: 'echo-users' })],
      },
      identity: { namespace: 'default', serviceAccount: 'agent' },
      listen: { host: '127.0.0.1', port: 0 },
      events: { emit: () => {} },
      approvals: noApprovals,
    });
    try {
      const agent = connect(enforcer.address.port, '127.0.0.1');
      agent.end('hello');
      let echoed = '';
      for await (const chunk of agent) echoed += chunk;
      assert.equal(echoed, 'hello');
      for (let i = 0; i < 100 && lines('airlock_sidecar_sessions_ended_total{').length === 0; i++)
        await new Promise((resolve) => setTimeout(resolve, 10));
    } finally {
      await enforcer.close();
      echo.close();
    }
    assert.deepEqual(lines('airlock_sidecar_requests_total{'), [
      'airlock_sidecar_requests_total{protocol="tcp",outcome="allowed",policy="echo-users",rule=""} 1',
    ]);
    assert.deepEqual(lines('airlock_sidecar_sessions_started_total{'), [
      'airlock_sidecar_sessions_started_total{protocol="tcp"} 1',
    ]);
    assert.deepEqual(lines('airlock_sidecar_sessions_ended_total{'), [
      'airlock_sidecar_sessions_ended_total{protocol="tcp"} 1',
    ]);
    assert.deepEqual(lines('airlock_sidecar_relayed_bytes_total{'), [
      'airlock_sidecar_relayed_bytes_total{protocol="tcp",direction="in"} 5',
      'airlock_sidecar_relayed_bytes_total{protocol="tcp",direction="out"} 5',
    ]);
  });

  it('observes the holds of the core’s gate: one approved, one withdrawn by the client', async () => {
    const gate = new ApprovalGate({
      sessionId: 's-1',
      connection: 'orders',
      approvals: {
        request: (request, signal) =>
          new Promise((resolve) => {
            if (request.text === 'approve me')
              setTimeout(() => resolve({ approved: true, outcome: 'approved' }), 20);
            signal?.addEventListener('abort', () => resolve({ approved: false, outcome: 'denied' }));
          }),
      },
    });
    const hold = (text: string, signal?: AbortSignal) =>
      gate.pass({
        decision: {
          action: 'require-approval',
          policy: 'writers',
          rule: 'approve-deletes',
          reasons: ['DELETE needs approval'],
          wouldHave: [],
          approval: { timeoutMs: 60_000, scope: 'statement', approvers: { groups: [], users: [] } },
        },
        text,
        what: 'statement',
        ...(signal && { signal }),
      });
    assert.equal((await hold('approve me')).outcome, 'approved');
    assert.equal((await hold('wait for me', AbortSignal.timeout(30))).outcome, 'error');
    const waits = lines('airlock_sidecar_approval_wait_seconds_count');
    assert.deepEqual(waits, [
      'airlock_sidecar_approval_wait_seconds_count{outcome="approved"} 1',
      'airlock_sidecar_approval_wait_seconds_count{outcome="cancelled"} 1',
    ]);
  });

  it('stops counting and leaves the registry when unsubscribed, and can subscribe again', async () => {
    request('http', { outcome: 'allowed' });
    unsubscribe();
    assert.equal(eventChannel.hasSubscribers, false);
    assert.equal(approvalChannel.hasSubscribers, false);
    request('http', { outcome: 'allowed' });
    assert.deepEqual(registry.names(), []);
    unsubscribe = subscribeDataPathMetrics(registry);
    request('http', { outcome: 'allowed' });
    assert.deepEqual(lines('airlock_sidecar_requests_total{'), [
      'airlock_sidecar_requests_total{protocol="http",outcome="allowed",policy="",rule=""} 1',
    ]);
  });
});

describe('maskedBy', () => {
  it('names detectors and custom patterns, and collapses globs and paths to their kind', () => {
    assert.equal(maskedBy('pii/us-ssn', 'postgres'), 'us-ssn');
    assert.equal(maskedBy('custom/employee-id', 'ssh'), 'employee-id');
    assert.equal(maskedBy('cols/public.customers.email', 'postgres'), 'column');
    assert.equal(maskedBy('names/$..card', 'http'), 'json-path');
    assert.equal(maskedBy('names/$.a/b', 'postgres'), 'json-path');
    assert.equal(maskedBy('sessions/user:*#ssn', 'redis'), 'key');
    assert.equal(maskedBy('pii/email', 'redis'), 'email');
  });
});
