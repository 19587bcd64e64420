// The sidecar against the real operator, API server and PostgreSQL: it authenticates with a
// real pod-bound token, serves what the bundle grants, follows policy changes, closes a
// revoked Connection with its sessions, and refuses at the protocol level without a bundle.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import pino from 'pino';
import type { SessionEvent } from '../../api/events.ts';
import type { Operator } from '../../operator/operator.ts';
import { noApprovals } from '../../sidecar/core/enforcer.ts';
import { Sidecar } from '../../sidecar/sidecar.ts';
import { type ControlPlane, startControlPlane } from '../support/controlplane.ts';
import { startOperatorForAgentPod } from '../support/operator.ts';
import { type PostgresServer, startPostgres } from '../support/postgres.ts';
import { freePort } from '../support/process.ts';
import { requires } from '../support/tools.ts';

const _repository = new URL('../../', import.meta.url).pathname;

describe(
  'sidecar with the operator, on a real API server and PostgreSQL',
  requires('etcd', 'kube-apiserver', 'kubectl', 'postgres'),
  () => {
    let cluster: ControlPlane;
    let operator: Operator;
    let database: PostgresServer;
    let sidecar: Sidecar;
    let work: string;
    const events: SessionEvent[] = [];
    const ports = { granted: 0, ungranted: 0 };

    const apply = (manifest: object) =>
      cluster.kubectl(['apply', '-f', '-'], { input: JSON.stringify(manifest) });
    const policy = (rules: object[], connections = ['orders-db']) =>
      apply({
        apiVersion: 'airlock.dev/v1alpha1',
        kind: 'AccessPolicy',
        metadata: { name: 'agent-orders', namespace: 'agents' },
        spec: { subjects: [{ kind: 'ServiceAccount', name: 'agent' }], connections, rules },
      });
    const client = (port: number) =>
      new pg.Client({
        host: '127.0.0.1',
        port,
        user: 'agent',
        database: 'whatever',
        password: 'wrong',
        connectionTimeoutMillis: 5000,
      });

    before(async () => {
      work = await mkdtemp(join(tmpdir(), 'airlock-sidecar-test-'));
      database = await startPostgres();
      await database.admin(
        'CREATE TABLE orders (id int PRIMARY KEY, total numeric); INSERT INTO orders VALUES (1, 10), (2, 20)',
        database.database,
      );
      await database.admin(`GRANT ALL ON orders TO ${database.user}`, database.database);
      cluster = await startControlPlane();
      const kubectl = (args: string[]) => cluster.kubectl(args);
      await cluster.installCrds();
      await kubectl(['create', 'namespace', 'airlock-system']);
      await kubectl(['create', 'namespace', 'agents']);
      await kubectl(['create', 'serviceaccount', 'agent', '-n', 'agents']);
      await apply({
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: 'orders-db-credentials', namespace: 'agents' },
        stringData: { username: database.user, password: database.password },
      });
      await apply({
        apiVersion: 'airlock.dev/v1alpha1',
        kind: 'Connection',
        metadata: { name: 'orders-db', namespace: 'agents' },
        spec: {
          protocol: 'postgres',
          host: '127.0.0.1',
          port: database.port,
          tls: { mode: 'disable' },
          credentials: { secretRef: { name: 'orders-db-credentials' } },
          postgres: { database: database.database },
        },
      });
      await policy([{ name: 'no-drop', action: 'deny', sql: { statements: ['DROP'] } }]);
      const started = await startOperatorForAgentPod(cluster, work);
      operator = started.operator;
      ports.granted = await freePort();
      ports.ungranted = await freePort();
      sidecar = new Sidecar({
        ...started.sidecar,
        listen: [
          { connection: 'orders-db', host: '127.0.0.1', port: ports.granted, protocol: 'postgres' },
          { connection: 'billing-db', host: '127.0.0.1', port: ports.ungranted, protocol: 'postgres' },
        ],
        events: { emit: (event) => events.push(event) },
        approvals: noApprovals,
        logger: pino({ level: 'warn' }),
      });
      await sidecar.start();
    });
    after(async () => {
      await sidecar?.stop();
      await operator?.stop();
      await cluster?.stop();
      await database?.stop();
      await rm(work, { recursive: true, force: true });
    });

    test('a granted Connection is served with its policy; the agent never needs the password', async () => {
      await sidecar.nextBundle((b) => b.connections.length === 1);
      const agent = client(ports.granted);
      await agent.connect();
      const { rows } = await agent.query('SELECT id, total FROM orders ORDER BY id');
      assert.deepEqual(rows, [
        { id: 1, total: '10' },
        { id: 2, total: '20' },
      ]);
      await assert.rejects(agent.query('DROP TABLE orders'), (error: { code: string; message: string }) => {
        assert.equal(error.code, '42501');
        assert.match(error.message, /AccessPolicy "agent-orders" rule "no-drop"/);
        return true;
      });
      await agent.end();
      assert.ok(events.some((e) => e.type === 'request' && e.outcome === 'blocked' && e.rule === 'no-drop'));
    });

    test('a Connection the bundle does not grant is refused at the protocol level', async () => {
      const agent = client(ports.ungranted);
      await assert.rejects(
        agent.connect(),
        /airlock: access to billing-db is closed: no AccessPolicy grants it to this pod/,
      );
    });

    test('a policy change reaches the sidecar within seconds', async () => {
      await policy([{ name: 'no-reads', action: 'deny', sql: { classes: ['read'] } }]);
      // Measured from when the API server has stored the change (kubectl returned); the watch
      // pushes it. How fast is bench/propagation.ts's to measure; this checks "seconds".
      const stored = Date.now();
      await sidecar.nextBundle((b) => b.connections[0]?.policies[0]?.rules[0]?.name === 'no-reads');
      const elapsed = Date.now() - stored;
      assert.ok(elapsed < 10_000, `took ${elapsed} ms`);
      const agent = client(ports.granted);
      await agent.connect();
      await assert.rejects(agent.query('SELECT 1 FROM orders'), /rule "no-reads"/);
      await agent.end();
    });

    test('a sidecar stopped while it connects opens no bundle stream and serves nothing after', async () => {
      const started = (port: number) =>
        new Sidecar({
          controlApi: `https://127.0.0.1:${operator.address.port}`,
          tokenFile: join(work, 'token'),
          caFile: join(work, 'ca.crt'),
          listen: [{ connection: 'orders-db', host: '127.0.0.1', port, protocol: 'postgres' }],
          events: { emit: () => {} },
          approvals: noApprovals,
          logger: pino({ level: 'silent' }),
        });
      const stopped = started(await freePort());
      const control = started(await freePort());
      await Promise.all([stopped.start(), control.start()]);
      // Both are now reading their token to open the bundle stream; one is stopped meanwhile.
      await stopped.stop();
      await control.nextBundle((b) => b.connections.length === 1);
      await control.stop();
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(stopped.bundle, undefined, 'no bundle reached the stopped sidecar');
      assert.equal(stopped.serving('orders-db'), undefined, 'and it serves nothing');
    });

    test('revoking the grant closes the listener and its open sessions; new clients are refused', async () => {
      await policy([]);
      await sidecar.nextBundle((b) => b.connections[0]?.policies[0]?.rules.length === 0);
      const open = client(ports.granted);
      await open.connect();
      await open.query('SELECT 1');
      const ended = new Promise<void>((resolve) =>
        open.on('error', () => resolve()).on('end', () => resolve()),
      );
      await cluster.kubectl(['delete', 'ap', 'agent-orders', '-n', 'agents']);
      await sidecar.nextBundle((b) => b.connections.length === 0);
      await ended;
      await assert.rejects(open.query('SELECT 1'));
      assert.equal(sidecar.serving('orders-db'), 'refusal');
      await assert.rejects(client(ports.granted).connect(), /access to orders-db is closed/);
    });
  },
);
