// The operator against a real kube-apiserver: conditions follow Secrets and Connections,
// sidecars authenticate with real TokenRequest tokens and receive only what they are granted,
// changes reach a connected sidecar, and two replicas hand the lease over.
import assert from 'node:assert/strict';
import { request } from 'node:https';
import { PassThrough } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import type { Bundle } from '../../api/bundle.ts';
import { clients, loadKubeConfig } from '../../operator/kube.ts';
import { type Operator, startOperator } from '../../operator/operator.ts';
import { createCertificateAuthority } from '../../operator/pki.ts';
import { type ControlPlane, startControlPlane } from '../support/controlplane.ts';
import { freePort } from '../support/process.ts';
import { requires } from '../support/tools.ts';

const _repository = new URL('../../', import.meta.url).pathname;
const password = 'Secr3t-orders-password';

type Line = { type: string; bundle?: Bundle };

interface Stream {
  lines: Line[];
  status: number;
  body: string;
  close(): void;
  next(
    predicate: (line: Record<string, unknown>) => boolean,
    timeoutMs?: number,
  ): Promise<Record<string, unknown>>;
}

describe('operator on a real kube-apiserver', requires('etcd', 'kube-apiserver', 'kubectl'), () => {
  let cluster: ControlPlane;
  let operator: Operator;
  let ca: string;
  const logs = new PassThrough();
  let logText = '';
  logs.on('data', (chunk) => {
    logText += chunk;
  });

  const kubectl = (args: string[], input?: string) =>
    cluster.kubectl(args, input === undefined ? {} : { input });
  const apply = (manifest: object) => kubectl(['apply', '-f', '-'], JSON.stringify(manifest));
  const condition = async (kind: string, name: string, type: string) => {
    const object = JSON.parse(await kubectl(['get', kind, name, '-n', 'agents', '-o', 'json']));
    return (object.status?.conditions ?? []).find((c: { type: string }) => c.type === type);
  };
  const eventually = async <T>(
    what: string,
    check: () => Promise<T | undefined>,
    timeoutMs = 15_000,
  ): Promise<T> => {
    const deadline = Date.now() + timeoutMs;
    let last: unknown;
    for (;;) {
      try {
        const value = await check();
        if (value !== undefined) return value;
      } catch (error) {
        last = error;
      }
      if (Date.now() > deadline) throw new Error(`${what}: not in time${last ? ` (${last})` : ''}`);
      await new Promise((r) => setTimeout(r, 150));
    }
  };

  const startReplica = async (
    identity: string,
    extra: { leaseDurationMs?: number; retryPeriodMs?: number } = {},
  ) => {
    const authority = await createCertificateAuthority('airlock-operator-test');
    const serving = await authority.issue({
      commonName: 'airlock-operator',
      ipAddresses: ['127.0.0.1'],
      usage: 'server',
    });
    return startOperator({
      clients: clients(loadKubeConfig(cluster.kubeconfig.admin)),
      logger: pino({ level: 'info' }, logs),
      namespace: 'airlock-system',
      identity,
      listen: { host: '127.0.0.1', port: await freePort() },
      probeListen: { host: '127.0.0.1', port: await freePort() },
      tls: serving,
      ...extra,
    }).then((op) => Object.assign(op, { ca: authority.certificate }));
  };

  const follow = (op: Operator, token?: string): Promise<Stream> =>
    new Promise((resolve, reject) => {
      const lines: Line[] = [];
      const waiters: (() => void)[] = [];
      const req = request(
        {
          host: '127.0.0.1',
          port: op.address.port,
          path: '/v1/bundle',
          ca,
          headers: token ? { authorization: `Bearer ${token}` } : {},
        },
        (res) => {
          let buffer = '';
          let body = '';
          const stream: Stream = {
            lines,
            status: res.statusCode ?? 0,
            get body() {
              return body;
            },
            close: () => req.destroy(),
            next: (predicate, timeoutMs = 10_000) =>
              new Promise((ok, fail) => {
                const check = () => {
                  const found = lines.find(predicate);
                  if (found) {
                    ok(found);
                    return true;
                  }
                  return false;
                };
                if (check()) return;
                const timer = setTimeout(
                  () => fail(new Error(`no matching line in ${timeoutMs} ms`)),
                  timeoutMs,
                );
                waiters.push(() => {
                  if (check()) clearTimeout(timer);
                });
              }),
          };
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            body += chunk;
            buffer += chunk;
            let newline = buffer.indexOf('\n');
            while (newline >= 0) {
              lines.push(JSON.parse(buffer.slice(0, newline)));
              buffer = buffer.slice(newline + 1);
              newline = buffer.indexOf('\n');
            }
            for (const waiter of waiters) waiter();
          });
          if (res.statusCode === 200) resolve(stream);
          else res.on('end', () => resolve(stream));
        },
      );
      req.on('error', reject);
      req.end();
    });

  const createPod = async (name: string, serviceAccount: string, injected = true) => {
    await apply({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name,
        namespace: 'agents',
        ...(injected && { annotations: { 'airlock.dev/injected': '{"version":1}' } }),
      },
      spec: { serviceAccountName: serviceAccount, containers: [{ name: 'agent', image: 'agent:1' }] },
    });
    return JSON.parse(await kubectl(['get', 'pod', name, '-n', 'agents', '-o', 'json'])).metadata
      .uid as string;
  };
  const podToken = (serviceAccount: string, name: string, uid: string, audience = 'airlock') =>
    cluster.podToken({ namespace: 'agents', name, uid, serviceAccount }, audience);

  before(async () => {
    cluster = await startControlPlane();
    await cluster.installCrds();
    await kubectl(['create', 'namespace', 'airlock-system']);
    await kubectl(['create', 'namespace', 'agents']);
    for (const sa of ['support-agent', 'deploy-bot', 'stranger']) {
      await kubectl(['create', 'serviceaccount', sa, '-n', 'agents']);
    }
    operator = await startReplica('replica-a');
    ca = (operator as Operator & { ca: string }).ca;
  });
  after(async () => {
    await operator?.stop();
    await cluster?.stop();
  });

  test('Connection conditions follow its Secret', async () => {
    await apply({
      apiVersion: 'airlock.dev/v1alpha1',
      kind: 'Connection',
      metadata: { name: 'orders-db', namespace: 'agents' },
      spec: {
        protocol: 'postgres',
        host: 'orders-db.data.svc.cluster.local',
        port: 5432,
        credentials: { secretRef: { name: 'orders-db-credentials' } },
      },
    });
    const missing = await eventually('SecretNotFound', async () => {
      const c = await condition('conn', 'orders-db', 'Ready');
      return c?.reason === 'SecretNotFound' ? c : undefined;
    });
    assert.equal(missing.status, 'False');
    assert.match(missing.message, /Secret orders-db-credentials not found in namespace agents/);
    const resolved = await condition('conn', 'orders-db', 'CredentialsResolved');
    assert.equal(resolved.status, 'False');

    await apply({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'orders-db-credentials', namespace: 'agents' },
      stringData: { username: 'support_agent' },
    });
    const incomplete = await eventually('SecretIncomplete', async () => {
      const c = await condition('conn', 'orders-db', 'Ready');
      return c?.reason === 'SecretIncomplete' ? c : undefined;
    });
    assert.match(incomplete.message, /lacks "password", needed for protocol postgres/);
    const transition = incomplete.lastTransitionTime;

    await apply({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'orders-db-credentials', namespace: 'agents' },
      stringData: { username: 'support_agent', password },
    });
    const ready = await eventually('Ready', async () => {
      const c = await condition('conn', 'orders-db', 'Ready');
      return c?.status === 'True' ? c : undefined;
    });
    assert.equal(ready.reason, 'Ready');
    const object = JSON.parse(await kubectl(['get', 'conn', 'orders-db', '-n', 'agents', '-o', 'json']));
    assert.equal(object.status.observedGeneration, object.metadata.generation);
    assert.equal(ready.observedGeneration, object.metadata.generation);
    assert.ok(transition <= ready.lastTransitionTime);
    const events = await kubectl([
      'get',
      'events',
      '-n',
      'agents',
      '--field-selector',
      'involvedObject.name=orders-db',
    ]);
    assert.match(events, /SecretNotFound/);
    assert.match(events, /SecretIncomplete/);
    assert.match(await kubectl(['get', 'conn', '-n', 'agents']), /orders-db\s+postgres\s+\S+\s+5432\s+True/);
  });

  test('AccessPolicy conditions name unknown connections and invalid patterns', async () => {
    await apply({
      apiVersion: 'airlock.dev/v1alpha1',
      kind: 'AccessPolicy',
      metadata: { name: 'broken', namespace: 'agents' },
      spec: {
        subjects: [{ kind: 'ServiceAccount', name: 'deploy-bot' }],
        connections: ['orders-db', 'ghost-db'],
        masking: [{ name: 'keys', patterns: [{ name: 'backref', regex: '(a)\\1' }] }],
      },
    });
    const found = await eventually('ConnectionsFound', async () => {
      const c = await condition('ap', 'broken', 'ConnectionsFound');
      return c?.status === 'False' ? c : undefined;
    });
    assert.equal(found.reason, 'ConnectionNotFound');
    assert.match(found.message, /ghost-db not found/);
    const patterns = await condition('ap', 'broken', 'PatternsValid');
    assert.equal(patterns.status, 'False');
    assert.match(patterns.message, /masking keys pattern backref: .*invalid escape/);
    assert.equal((await condition('ap', 'broken', 'Ready')).status, 'False');
    await kubectl(['delete', 'ap', 'broken', '-n', 'agents']);
  });

  test('RulesEffective names rules that never match and approvers that do not exist, with a Warning Event', async () => {
    const policy = (rules: object[]) => ({
      apiVersion: 'airlock.dev/v1alpha1',
      kind: 'AccessPolicy',
      metadata: { name: 'lint-me', namespace: 'agents' },
      spec: { subjects: [{ kind: 'ServiceAccount', name: 'deploy-bot' }], connections: ['orders-db'], rules },
    });
    await apply(
      policy([
        { name: 'any-of', action: 'deny', sql: { statements: ['DROP', 'ALTER'], unboundedWrites: true } },
        {
          name: 'writes',
          action: 'require-approval',
          sql: { statements: ['UPDATE'] },
          approval: { approvers: { users: ['system:serviceaccount:agents:ghost-approver'] } },
        },
      ]),
    );
    const effective = await eventually('RulesEffective False', async () => {
      const c = await condition('ap', 'lint-me', 'RulesEffective');
      return c?.status === 'False' ? c : undefined;
    });
    assert.equal(effective.reason, 'RuleNeverMatches');
    assert.match(
      effective.message,
      /rule any-of can never match: .*DROP or ALTER statement is never an unbounded write/,
    );
    assert.match(
      effective.message,
      /approver system:serviceaccount:agents:ghost-approver is a ServiceAccount that does not exist/,
    );
    // Warnings do not take the policy out of force.
    assert.equal((await condition('ap', 'lint-me', 'Ready')).status, 'True');
    const events = () =>
      kubectl([
        'get',
        'events',
        '-n',
        'agents',
        '--field-selector',
        'involvedObject.name=lint-me',
        '-o',
        'json',
      ]);
    const warning = await eventually('the Warning Event', async () =>
      (JSON.parse(await events()).items as { type: string; reason: string; message: string }[]).find(
        (e) => e.type === 'Warning' && e.reason === 'RuleNeverMatches',
      ),
    );
    assert.match(warning.message, /rule any-of can never match/);

    await apply(
      policy([
        { name: 'no-ddl', action: 'deny', sql: { statements: ['DROP', 'ALTER'] } },
        { name: 'no-unbounded-writes', action: 'deny', sql: { unboundedWrites: true } },
      ]),
    );
    const fixed = await eventually('RulesEffective True', async () => {
      const c = await condition('ap', 'lint-me', 'RulesEffective');
      return c?.status === 'True' ? c : undefined;
    });
    assert.equal(fixed.reason, 'RulesEffective');
    await eventually('the Normal Event', async () =>
      (JSON.parse(await events()).items as { type: string; reason: string }[]).find(
        (e) => e.type === 'Normal' && e.reason === 'RulesEffective',
      ),
    );
    await kubectl(['delete', 'ap', 'lint-me', '-n', 'agents']);
  });

  test('a sidecar gets exactly its bundle with a real pod-bound token; every other token gets nothing', async () => {
    await apply({
      apiVersion: 'airlock.dev/v1alpha1',
      kind: 'AccessPolicy',
      metadata: { name: 'support-agent-orders', namespace: 'agents' },
      spec: {
        subjects: [{ kind: 'ServiceAccount', name: 'support-agent' }],
        connections: ['orders-db'],
        rules: [{ name: 'no-drop', action: 'deny', sql: { statements: ['DROP'] } }],
      },
    });
    const uid = await createPod('agent-0', 'support-agent');
    const token = await podToken('support-agent', 'agent-0', uid);
    const stream = await follow(operator, token);
    assert.equal(stream.status, 200, stream.body);
    const first = (await stream.next((l) => l.type === 'bundle')) as { bundle: Bundle };
    assert.deepEqual(first.bundle.identity, {
      namespace: 'agents',
      serviceAccount: 'support-agent',
      pod: 'agent-0',
    });
    assert.deepEqual(
      first.bundle.connections.map((c) => c.name),
      ['orders-db'],
    );
    assert.equal(first.bundle.connections[0]!.credentials.password, password);
    assert.equal(first.bundle.connections[0]!.policies[0]!.rules[0]!.name, 'no-drop');

    // A policy change reaches the connected sidecar.
    await apply({
      apiVersion: 'airlock.dev/v1alpha1',
      kind: 'AccessPolicy',
      metadata: { name: 'support-agent-orders', namespace: 'agents' },
      spec: {
        subjects: [{ kind: 'ServiceAccount', name: 'support-agent' }],
        connections: ['orders-db'],
        rules: [{ name: 'no-drop-or-truncate', action: 'deny', sql: { statements: ['DROP', 'TRUNCATE'] } }],
      },
    });
    const changed = (await stream.next(
      (l) =>
        l.type === 'bundle' &&
        (l.bundle as Bundle).connections[0]?.policies[0]?.rules[0]?.name === 'no-drop-or-truncate',
    )) as { bundle: Bundle };
    assert.notEqual(changed.bundle.revision, first.bundle.revision);

    // A rotated password too.
    await apply({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'orders-db-credentials', namespace: 'agents' },
      stringData: { username: 'support_agent', password: 'rotated-password' },
    });
    await stream.next(
      (l) =>
        l.type === 'bundle' &&
        (l.bundle as Bundle).connections[0]?.credentials.password === 'rotated-password',
    );

    // Revoking the grant empties the bundle.
    await kubectl(['delete', 'ap', 'support-agent-orders', '-n', 'agents']);
    await stream.next((l) => l.type === 'bundle' && (l.bundle as Bundle).connections.length === 0);
    stream.close();

    const refused = async (token: string | undefined, status: number, reason: string) => {
      const response = await follow(operator, token);
      assert.equal(response.status, status, response.body);
      assert.equal(JSON.parse(response.body).reason, reason);
    };
    // No grant for this ServiceAccount now.
    await refused(token, 403, 'NoGrant');
    await apply({
      apiVersion: 'airlock.dev/v1alpha1',
      kind: 'AccessPolicy',
      metadata: { name: 'support-agent-orders', namespace: 'agents' },
      spec: { subjects: [{ kind: 'ServiceAccount', name: 'support-agent' }], connections: ['orders-db'] },
    });
    await eventually('granted again', async () =>
      (await follow(operator, token)).status === 200 ? true : undefined,
    );
    // No token, the agent container's kind of token (another audience), an unbound token.
    await refused(undefined, 401, 'NoToken');
    await refused(
      await podToken('support-agent', 'agent-0', uid, 'https://kubernetes.default.svc.cluster.local'),
      401,
      'TokenRejected',
    );
    await refused(
      (await kubectl(['create', 'token', 'support-agent', '-n', 'agents', '--audience', 'airlock'])).trim(),
      403,
      'NotPodBound',
    );
    // A pod that was not injected, and a ServiceAccount with no grant.
    const plainUid = await createPod('plain-0', 'support-agent', false);
    await refused(await podToken('support-agent', 'plain-0', plainUid), 403, 'PodNotInjected');
    const strangerUid = await createPod('stranger-0', 'stranger');
    await refused(await podToken('stranger', 'stranger-0', strangerUid), 403, 'NoGrant');
    // A deleted pod: its bound token stops authenticating.
    const goneUid = await createPod('gone-0', 'support-agent');
    const goneToken = await podToken('support-agent', 'gone-0', goneUid);
    await kubectl(['delete', 'pod', 'gone-0', '-n', 'agents', '--grace-period=0', '--force']);
    await eventually('deleted pod refused', async () => {
      const response = await follow(operator, goneToken);
      return response.status !== 200 ? JSON.parse(response.body).reason : undefined;
    });
    const metrics = await (await fetch(`http://127.0.0.1:${operator.probeAddress.port}/metrics`)).text();
    assert.match(metrics, /airlock_bundle_refusals_total\{reason="PodNotInjected"\} 1/);
    assert.match(metrics, /airlock_bundle_pushes_total\{reason="change"\} [1-9]/);
  });

  test('logs never contain a credential or a token', () => {
    assert.ok(logText.length > 0);
    assert.ok(!logText.includes(password), 'the password is not logged');
    assert.ok(!logText.includes('rotated-password'), 'the rotated password is not logged');
    assert.ok(!/eyJhbGciOi/.test(logText), 'no JWT is logged');
    assert.match(logText, /bundle request refused/);
  });

  test('readiness reflects the watches', async () => {
    const ready = await fetch(`http://127.0.0.1:${operator.probeAddress.port}/readyz`);
    assert.equal(ready.status, 200);
    assert.deepEqual(await ready.json(), {
      ready: true,
      connections: true,
      accesspolicies: true,
      secrets: true,
      accessrequests: true,
    });
  });

  test('two replicas: one leads; when it stops, the other takes over fast', async () => {
    await operator.stop();
    const timings = { leaseDurationMs: 4000, retryPeriodMs: 300 };
    const a = await startReplica('replica-a', timings);
    const b = await startReplica('replica-b', timings);
    try {
      await eventually('a leader', async () =>
        a.elector.isLeader !== b.elector.isLeader ? true : undefined,
      );
      await new Promise((r) => setTimeout(r, 1000));
      assert.notEqual(a.elector.isLeader, b.elector.isLeader, 'never both leaders');
      const [leader, follower] = a.elector.isLeader ? [a, b] : [b, a];
      await leader.stop();
      // The leader released the lease as it stopped (a peer takes over at once, not after it
      // expires): it names no holder, or already the follower.
      const released = JSON.parse(
        await kubectl(['get', 'lease', 'airlock-operator', '-n', 'airlock-system', '-o', 'json']),
      );
      assert.ok(
        ['', undefined, follower === a ? 'replica-a' : 'replica-b'].includes(released.spec.holderIdentity),
        `the lease still names ${released.spec.holderIdentity}`,
      );
      await eventually('handover', async () => (follower.elector.isLeader ? true : undefined), 10_000);
      const lease = JSON.parse(
        await kubectl(['get', 'lease', 'airlock-operator', '-n', 'airlock-system', '-o', 'json']),
      );
      assert.equal(lease.spec.holderIdentity, follower === a ? 'replica-a' : 'replica-b');
      // The new leader reconciles: a new Connection gets its conditions.
      await apply({
        apiVersion: 'airlock.dev/v1alpha1',
        kind: 'Connection',
        metadata: { name: 'raw-tcp', namespace: 'agents' },
        spec: { protocol: 'tcp', host: '10.1.2.3', port: 6379 },
      });
      await eventually('reconciled by the new leader', async () => {
        const c = await condition('conn', 'raw-tcp', 'Ready');
        return c?.status === 'True' ? c : undefined;
      });
      await follower.stop();
    } finally {
      await a.stop().catch(() => {});
      await b.stop().catch(() => {});
    }
    operator = await startReplica('replica-c');
  });
});
