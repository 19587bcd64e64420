// The sessions API through the real API server: the operator registered as an aggregated API,
// sessions recorded by the collector from pods' batches, read back by people with kubectl and
// the `kubectl airlock sessions` plugin under RBAC. The operator believes the caller only when
// the API server's front proxy brings it, and a pod cannot slip events into another
// namespace's session.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { SessionEvent } from '../../api/events.ts';
import { type ControlPlane, startControlPlane } from '../support/controlplane.ts';
import { type OperatorProcess, startOperatorProcess } from '../support/operator.ts';
import { requires } from '../support/tools.ts';

describe('the sessions API', requires('etcd', 'kube-apiserver', 'kubectl'), () => {
  let cluster: ControlPlane;
  let operator: OperatorProcess;
  let work: string;
  let ca: string;
  const kubectl = (args: string[], options: { as?: 'admin' | 'approver' | 'user'; input?: string } = {}) =>
    cluster.kubectl(args, options);
  const apply = (manifest: object) => kubectl(['apply', '-f', '-'], { input: JSON.stringify(manifest) });
  const refused = (promise: Promise<unknown>) =>
    promise.then(
      () => assert.fail('expected a refusal'),
      (error: Error) => error.message,
    );

  /** A call straight to the operator's port, bypassing the API server. */
  const direct = (path: string, headers: Record<string, string | string[]>, client?: 'approver') =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const credentials = client ? cluster.credentials[client] : undefined;
      const req = request(
        `https://127.0.0.1:${operator.ports.controlApi}${path}`,
        {
          ca,
          servername: 'airlock-operator.airlock-system.svc',
          headers,
          ...(credentials && { cert: credentials.certificate, key: credentials.privateKey }),
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (chunk) => {
            text += chunk;
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
        },
      );
      req.on('error', reject);
      req.end();
    });

  const post = (token: string, events: SessionEvent[]) =>
    new Promise<number>((resolve, reject) => {
      const req = request(
        `https://127.0.0.1:${operator.ports.controlApi}/v1/events`,
        { method: 'POST', ca, headers: { authorization: `Bearer ${token}` } },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.end(events.map((e) => JSON.stringify(e)).join('\n'));
    });

  const podToken = async (namespace: string, name: string) => {
    await apply({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace, annotations: { 'airlock.dev/injected': '{"version":1}' } },
      spec: { serviceAccountName: 'agent', containers: [{ name: 'agent', image: 'agent:1' }] },
    });
    const uid = JSON.parse(await kubectl(['get', 'pod', name, '-n', namespace, '-o', 'json'])).metadata.uid;
    return cluster.podToken({ namespace, name, uid, serviceAccount: 'agent' });
  };

  let sequence = 0;
  const event = (
    sessionId: string,
    namespace: string,
    connection: { name: string; protocol: string },
    body: Record<string, unknown>,
  ) =>
    ({
      version: 1,
      id: `${sessionId}-${sequence++}`,
      sessionId,
      seq: sequence,
      time: new Date(Date.now() + sequence).toISOString(),
      connection: { ...connection, namespace },
      // What a batch claims is replaced by the collector with the token's identity.
      identity: { namespace, serviceAccount: 'agent' },
      ...body,
    }) as unknown as SessionEvent;

  const sql = { name: 'orders-db', protocol: 'postgres' };
  const shell = { name: 'bastion', protocol: 'ssh' };

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'airlock-sessions-api-'));
    cluster = await startControlPlane();
    await cluster.installCrds();
    for (const namespace of ['airlock-system', 'agents', 'other'])
      await kubectl(['create', 'namespace', namespace]);
    for (const namespace of ['agents', 'other'])
      await kubectl(['create', 'serviceaccount', 'agent', '-n', namespace]);
    // Reading sessions is RBAC: alice may in "agents" only; bob nowhere.
    await apply({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name: 'airlock-session-reader' },
      rules: [{ apiGroups: ['audit.airlock.dev'], resources: ['sessions'], verbs: ['get', 'list'] }],
    });
    await kubectl([
      'create',
      'rolebinding',
      'alice-reads-sessions',
      '-n',
      'agents',
      '--clusterrole=airlock-session-reader',
      '--user=alice',
    ]);
    operator = await startOperatorProcess(cluster, work, { sessionsApi: true });
    ca = Buffer.from(
      JSON.parse(await kubectl(['get', 'apiservice', 'v1alpha1.audit.airlock.dev', '-o', 'json'])).spec
        .caBundle,
      'base64',
    ).toString();

    const agents = await podToken('agents', 'agent-0');
    const other = await podToken('other', 'agent-1');
    assert.equal(
      await post(agents, [
        event('sql-1', 'agents', sql, { type: 'session.start', client: { address: '10.0.0.5:40000' } }),
        event('sql-1', 'agents', sql, {
          type: 'request',
          text: 'SELECT email FROM customers',
          kind: 'select',
          outcome: 'allowed',
          rows: 1,
          masked: { 'pii/email': 1 },
          durationMs: 2,
        }),
        event('sql-1', 'agents', sql, {
          type: 'request',
          text: 'DROP TABLE customers',
          kind: 'drop',
          outcome: 'blocked',
          policy: 'agent-orders',
          rule: 'no-ddl',
          durationMs: 1,
        }),
        event('sql-1', 'agents', sql, {
          type: 'session.end',
          reason: 'client closed',
          bytesIn: 10,
          bytesOut: 20,
        }),
        event('tty-1', 'agents', shell, { type: 'session.start', client: { address: '10.0.0.5:40001' } }),
        event('tty-1', 'agents', shell, { type: 'data', stream: 'output', at: 0.1, data: '$ ' }),
        event('tty-1', 'agents', shell, { type: 'data', stream: 'input', at: 0.5, data: 'ls\r' }),
        event('tty-1', 'agents', shell, {
          type: 'data',
          stream: 'output',
          at: 0.6,
          data: 'ls\r\nreport.txt\r\n',
        }),
        event('tty-1', 'agents', shell, {
          type: 'session.end',
          reason: 'client closed',
          bytesIn: 3,
          bytesOut: 20,
        }),
      ]),
      200,
    );
    // A pod in "other" records its own session, and tries to add a request to agents' sql-1.
    assert.equal(
      await post(other, [
        event('other-1', 'other', sql, { type: 'session.start', client: { address: '10.0.1.5:40000' } }),
        event('sql-1', 'agents', sql, {
          type: 'request',
          text: 'SELECT 1 -- planted',
          outcome: 'allowed',
          durationMs: 1,
        }),
      ]),
      200,
    );
  });

  after(async () => {
    await operator?.stop();
    await cluster?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('kubectl get sessions lists a namespace’s sessions as a table, for a reader', async () => {
    const table = await kubectl(['get', 'sessions', '-n', 'agents'], { as: 'approver' });
    const lines = table.trim().split('\n');
    assert.match(
      lines[0]!,
      /^NAME\s+CONNECTION\s+PROTOCOL\s+IDENTITY\s+REQUESTS\s+BLOCKED\s+MASKED\s+AGE\s+END USER$/,
    );
    assert.equal(lines.length, 3, table);
    assert.match(table, /tty-1\s+bastion\s+ssh\s+system:serviceaccount:agents:agent\s+0\s+0\s+0\s/);
    assert.match(table, /sql-1\s+orders-db\s+postgres\s+system:serviceaccount:agents:agent\s+2\s+1\s+1\s/);
    assert.doesNotMatch(table, /other-1|planted/);
    // kubectl reads a list in pages and follows each page's continue token to the end. AGE may
    // tick between the two reads: compare the rest of each row.
    const ageless = (text: string) => text.replace(/\s+\S+$/gm, '');
    assert.equal(
      ageless(await kubectl(['get', 'sessions', '-n', 'agents', '--chunk-size=1'], { as: 'approver' })),
      ageless(table),
      'page by page, the same table',
    );
    assert.deepEqual(
      (await kubectl(['get', 'sessions', '-A', '-o', 'name', '--chunk-size=1'])).trim().split('\n').sort(),
      [
        'session.audit.airlock.dev/other-1',
        'session.audit.airlock.dev/sql-1',
        'session.audit.airlock.dev/tty-1',
      ],
    );
    const first = JSON.parse(
      await kubectl(['get', '--raw', '/apis/audit.airlock.dev/v1alpha1/namespaces/agents/sessions?limit=1'], {
        as: 'approver',
      }),
    );
    assert.deepEqual(
      first.items.map((s: { metadata: { name: string } }) => s.metadata.name),
      ['tty-1'],
      'newest first',
    );
    assert.ok(first.metadata.continue, 'a full page says where the next starts');
    assert.match(
      await refused(
        kubectl(
          [
            'get',
            '--raw',
            '/apis/audit.airlock.dev/v1alpha1/namespaces/agents/sessions?limit=1&continue=forged',
          ],
          { as: 'approver' },
        ),
      ),
      /continue key is not valid/,
    );

    const one = JSON.parse(
      await kubectl(['get', 'session', 'sql-1', '-n', 'agents', '-o', 'json'], { as: 'approver' }),
    );
    assert.equal(one.kind, 'Session');
    assert.deepEqual(
      one.events.map((e: SessionEvent) => (e.type === 'request' ? e.text : e.type)),
      ['session.start', 'SELECT email FROM customers', 'DROP TABLE customers', 'session.end'],
      'the request planted by a pod of another namespace is not part of the session',
    );
    assert.ok(one.events.every((e: SessionEvent) => e.identity.namespace === 'agents'));

    const missing = await refused(kubectl(['get', 'session', 'nope', '-n', 'agents'], { as: 'approver' }));
    assert.match(missing, /sessions.audit.airlock.dev "nope" not found/);
    // The session of namespace "other" is not reachable through "agents".
    assert.match(
      await refused(kubectl(['get', 'session', 'other-1', '-n', 'agents'], { as: 'approver' })),
      /not found/,
    );
  });

  test('RBAC decides: bob, another namespace, the cluster scope and writes are refused', async () => {
    assert.match(
      await refused(kubectl(['get', 'sessions', '-n', 'agents'], { as: 'user' })),
      /forbidden: User "bob" cannot list resource "sessions" in API group "audit.airlock.dev" in the namespace "agents"/,
    );
    assert.match(
      await refused(kubectl(['get', 'session', 'sql-1', '-n', 'agents'], { as: 'user' })),
      /forbidden: User "bob" cannot get resource "sessions"/,
    );
    assert.match(
      await refused(kubectl(['get', 'sessions', '-n', 'other'], { as: 'approver' })),
      /User "alice" cannot list resource "sessions" .* in the namespace "other"/,
    );
    assert.match(
      await refused(kubectl(['get', 'sessions', '-A'], { as: 'approver' })),
      /User "alice" cannot list resource "sessions" .* at the cluster scope/,
    );
    // An admin sees every namespace.
    const all = await kubectl(['get', 'sessions', '-A', '-o', 'name']);
    assert.deepEqual(all.trim().split('\n').sort(), [
      'session.audit.airlock.dev/other-1',
      'session.audit.airlock.dev/sql-1',
      'session.audit.airlock.dev/tty-1',
    ]);
    assert.match(
      await refused(kubectl(['delete', 'session', 'sql-1', '-n', 'agents'])),
      /MethodNotAllowed|not allowed|405/i,
    );
  });

  test('kubectl airlock sessions list, show and replay read the cluster as the caller', async () => {
    const list = await cluster.plugin('approver', ['sessions', 'list', '-n', 'agents']);
    assert.equal(list.code, 0, list.out);
    assert.match(list.out, /^SESSION\s+CONNECTION\s+IDENTITY/);
    assert.match(list.out, /sql-1\s+orders-db\s+system:serviceaccount:agents:agent\s+\S+\s+2\s+1\s+1/);
    assert.match(list.out, /tty-1\s+bastion/);
    // Pages of one: the plugin follows the continue token to the limit, and says when it stops short.
    const rows = (out: string) => out.split('\n').filter((line) => /^\S+-1\s/.test(line));
    const newest = await cluster.plugin('admin', ['sessions', 'list', '-A', '--limit', '1']);
    assert.equal(newest.code, 0, newest.out);
    assert.equal(rows(newest.out).length, 1, newest.out);
    assert.match(newest.err, /showing the newest 1; older sessions exist/);
    const three = await cluster.plugin('admin', ['sessions', 'list', '-A', '--limit', '3']);
    assert.equal(three.code, 0, three.out);
    assert.deepEqual(rows(three.out), rows((await cluster.plugin('admin', ['sessions', 'list', '-A'])).out));
    assert.equal(rows(three.out).length, 3, three.out);
    assert.doesNotMatch(three.err, /older sessions exist/);

    const show = await cluster.plugin('approver', ['sessions', 'show', 'sql-1', '-n', 'agents']);
    assert.equal(show.code, 0, show.out);
    assert.match(show.out, /connection agents\/orders-db \(postgres\) as system:serviceaccount:agents:agent/);
    assert.match(show.out, /allowed\s+SELECT email FROM customers\s+\[1 rows; masked pii\/email=1\]/);
    assert.match(show.out, /blocked\s+DROP TABLE customers\s+\[rule agent-orders\/no-ddl\]/);
    assert.doesNotMatch(show.out, /planted/);

    const cast = join(work, 'tty-1.cast');
    const replay = await cluster.plugin('approver', [
      'sessions',
      'replay',
      'tty-1',
      '-n',
      'agents',
      '--asciicast',
      cast,
    ]);
    assert.equal(replay.code, 0, replay.out);
    const lines = (await readFile(cast, 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.equal(lines[0].version, 2);
    assert.deepEqual(lines.slice(1), [
      [0.1, 'o', '$ '],
      [0.5, 'i', 'ls\r'],
      [0.6, 'o', 'ls\r\nreport.txt\r\n'],
    ]);

    const bob = await cluster.plugin('user', ['sessions', 'list', '-n', 'agents']);
    assert.equal(bob.code, 1);
    assert.match(bob.out, /airlock sessions: .*User "bob" cannot list resource "sessions"/);
    const missing = await cluster.plugin('approver', ['sessions', 'show', 'nope', '-n', 'agents']);
    assert.equal(missing.code, 1);
    assert.match(missing.out, /no session nope/);
  });

  test('airlock policy replay --cluster re-decides the sessions the caller may read', async () => {
    const manifests = join(work, 'replay-manifests');
    await mkdir(manifests);
    const object = (kind: string, name: string, spec: object) => ({
      apiVersion: 'airlock.dev/v1alpha1',
      kind,
      metadata: { name, namespace: 'agents' },
      spec,
    });
    await writeFile(
      join(manifests, 'orders.yaml'),
      [
        object('Connection', 'orders-db', {
          protocol: 'postgres',
          host: 'orders-db.data.svc',
          port: 5432,
          credentials: { secretRef: { name: 'kept-out-of-the-repository' } },
        }),
        object('AccessPolicy', 'agent-orders', {
          subjects: [{ kind: 'ServiceAccount', name: 'agent' }],
          connections: ['orders-db'],
          rules: [{ name: 'no-customers', action: 'deny', sql: { tables: ['customers'] } }],
        }),
      ]
        .map((o) => JSON.stringify(o))
        .join('\n---\n'),
    );
    const replay = await cluster.plugin('approver', [
      'policy',
      'replay',
      '--cluster',
      '-n',
      'agents',
      '-f',
      manifests,
      '-o',
      'json',
    ]);
    assert.equal(replay.code, 0, replay.err);
    const report = JSON.parse(replay.out);
    // sql-1's two requests (the one planted from "other" is not part of it), and no more.
    assert.equal(report.requests, 2);
    assert.equal(report.unchanged, 1, 'DROP TABLE customers stays denied');
    assert.deepEqual(
      report.changes.map((c: { change: string; rule: string; count: number; examples: string[] }) => [
        c.change,
        c.rule,
        c.count,
        c.examples,
      ]),
      [['newly-denied', 'no-customers', 1, ['SELECT email FROM customers']]],
    );
    const bob = await cluster.plugin('user', [
      'policy',
      'replay',
      '--cluster',
      '-n',
      'agents',
      '-f',
      manifests,
    ]);
    assert.equal(bob.code, 1);
    assert.match(`${bob.out}${bob.err}`, /airlock policy replay: .*cannot list resource "sessions"/);
  });

  test('the operator believes X-Remote-User only from the API server’s front proxy', async () => {
    const path = '/apis/audit.airlock.dev/v1alpha1/namespaces/agents/sessions';
    const claims = { 'x-remote-user': 'admin', 'x-remote-group': ['system:masters'] };
    const bare = await direct(path, claims);
    assert.equal(bare.status, 401);
    assert.match(bare.body, /read through the Kubernetes API server/);
    assert.doesNotMatch(bare.body, /sql-1/);
    // A certificate the cluster trusts for users is not the front proxy's.
    const withUserCertificate = await direct(path, claims, 'approver');
    assert.equal(withUserCertificate.status, 401);
    assert.doesNotMatch(withUserCertificate.body, /sql-1/);
    assert.match(await readFile(operator.logFile, 'utf8'), /sessions read without the API server/);
  });
});
