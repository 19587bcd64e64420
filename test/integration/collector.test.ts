// The collector in the real operator process, against a real API server: a sidecar's batch is
// accepted only with a token bound to an injected pod, the stored identity is the token's
// whatever the body claims, and a collector stopped while traffic flows and then restarted
// ends up with every event, none twice. Its export webhook, down when the operator stops, gets
// every stored event after the restart: the export's queue is the store, not the process.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { request } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import pino from 'pino';
import type { SessionEvent } from '../../api/events.ts';
import { AuditStore } from '../../audit/store.ts';
import { exportSinkId } from '../../audit/webhook.ts';
import { webhookConfiguration } from '../../operator/injection/configuration.ts';
import { CollectorDelivery } from '../../sidecar/audit/delivery.ts';
import { noApprovals } from '../../sidecar/core/enforcer.ts';
import { Sidecar } from '../../sidecar/sidecar.ts';
import { type ControlPlane, startControlPlane } from '../support/controlplane.ts';
import { grantOrdersDb } from '../support/operator.ts';
import { type PostgresServer, startPostgres } from '../support/postgres.ts';
import { freePort, type Service, startService, waitFor } from '../support/process.ts';
import { requires } from '../support/tools.ts';

const repository = new URL('../../', import.meta.url).pathname;
const cli = join(repository, 'bin/airlock.js');

describe('the collector in the operator', requires('etcd', 'kube-apiserver', 'kubectl', 'postgres'), () => {
  let cluster: ControlPlane;
  let database: PostgresServer;
  let work: string;
  let operator: Service | undefined;
  let storeUrl: string;
  let ca: string;
  const ports = { webhook: 0, controlApi: 0, probe: 0 };
  /** The SIEM: every event id it stored, repeats included; refusing (503) while `down`. */
  const siem = {
    url: '',
    received: [] as string[],
    down: false,
    refused: 0,
    server: undefined as Server | undefined,
  };
  const tokens: Record<string, string> = {};
  const kubectl = (args: string[], input?: string) =>
    cluster.kubectl(args, input === undefined ? {} : { input });
  const apply = (manifest: object) => kubectl(['apply', '-f', '-'], JSON.stringify(manifest));

  const startOperator = async () => {
    const service = startService(
      'airlock operator',
      process.execPath,
      [
        cli,
        'operator',
        `--kubeconfig=${cluster.kubeconfig.admin}`,
        '--namespace=airlock-system',
        '--identity=operator-0',
        '--tls-ip=127.0.0.1',
        `--webhook-port=${ports.webhook}`,
        `--control-api-port=${ports.controlApi}`,
        `--probe-port=${ports.probe}`,
        `--control-api-url=https://127.0.0.1:${ports.controlApi}`,
        '--image=airlock:test',
        `--store=${storeUrl}`,
        `--audit-key=${join(work, 'audit.key')}`,
        `--export-webhook=${siem.url}`,
      ],
      { logFile: join(work, 'operator.log') },
    );
    await waitFor('operator ready', async () => (await fetch(`http://127.0.0.1:${ports.probe}/readyz`)).ok, {
      service,
      timeoutMs: 60_000,
    });
    operator = service;
  };

  const post = (token: string, body: string) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request(
        `https://127.0.0.1:${ports.controlApi}/v1/events`,
        { method: 'POST', ca, headers: { authorization: `Bearer ${token}` } },
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
      req.end(body);
    });

  const podToken = async (name: string, annotated: boolean) => {
    await apply({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name,
        namespace: 'agents',
        ...(annotated && { annotations: { 'airlock.dev/injected': '{"version":1}' } }),
      },
      spec: { serviceAccountName: 'agent', containers: [{ name: 'agent', image: 'agent:1' }] },
    });
    const uid = JSON.parse(await kubectl(['get', 'pod', name, '-n', 'agents', '-o', 'json'])).metadata.uid;
    return (await cluster.podToken({ namespace: 'agents', name, uid, serviceAccount: 'agent' })).trim();
  };

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'airlock-collector-'));
    siem.server = createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (chunk) => {
        body += chunk;
      });
      req.on('end', () => {
        if (siem.down) {
          siem.refused++;
          res.writeHead(503).end();
          return;
        }
        for (const line of body.trimEnd().split('\n'))
          siem.received.push((JSON.parse(line) as SessionEvent).id);
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => siem.server!.listen(0, '127.0.0.1', resolve));
    siem.url = `http://127.0.0.1:${(siem.server.address() as AddressInfo).port}/siem?token=secret`;
    await writeFile(join(work, 'audit.key'), 'a-test-key-that-is-long-enough-for-hmac');
    database = await startPostgres();
    await database.admin(`CREATE DATABASE audit OWNER ${database.user}`);
    await database.admin(
      "CREATE TABLE customers (id int, email text); INSERT INTO customers VALUES (1, 'ada@example.com')",
      database.database,
    );
    await database.admin(`GRANT ALL ON customers TO ${database.user}`, database.database);
    storeUrl = `postgres://${encodeURIComponent(database.user)}:${encodeURIComponent(database.password)}@127.0.0.1:${database.port}/audit`;
    cluster = await startControlPlane();
    await cluster.installCrds();
    await kubectl(['create', 'namespace', 'airlock-system']);
    await kubectl(['create', 'namespace', 'agents']);
    await kubectl(['create', 'serviceaccount', 'agent', '-n', 'agents']);
    await grantOrdersDb(cluster, database, { host: '127.0.0.1', policy: {} });
    ports.webhook = await freePort();
    ports.controlApi = await freePort();
    ports.probe = await freePort();
    await apply(
      webhookConfiguration({
        operatorNamespace: 'airlock-system',
        url: `https://127.0.0.1:${ports.webhook}/inject`,
      }),
    );
    tokens.agent = await podToken('agent-0', true);
    tokens.plain = await podToken('plain-0', false);
    await startOperator();
    // The leading operator's export sees its sink first at the (empty) store's head; from
    // then on every stored event is due to the SIEM.
    const sink = exportSinkId(siem.url, 'generic');
    await waitFor('the export cursor', async () => {
      const client = new pg.Client({ connectionString: storeUrl });
      await client.connect();
      try {
        const { rows } = await client.query('SELECT position FROM audit_export_cursors WHERE sink = $1', [
          sink,
        ]);
        return rows.length === 1 && Number(rows[0].position) === 0;
      } finally {
        await client.end();
      }
    });
    await waitFor('operator certificate', async () => {
      const secret = JSON.parse(
        await kubectl(['get', 'secret', 'airlock-operator-tls', '-n', 'airlock-system', '-o', 'json']),
      );
      ca = Buffer.from(secret.data['ca.crt'], 'base64').toString();
      return Boolean(ca);
    });
    await writeFile(join(work, 'token'), tokens.agent);
    await writeFile(join(work, 'ca.crt'), ca);
  });
  after(async () => {
    await operator?.stop();
    siem.server?.closeAllConnections();
    siem.server?.close();
    await cluster?.stop();
    await database?.stop();
    await rm(work, { recursive: true, force: true });
  });

  const lying = (id: string): SessionEvent => ({
    version: 1,
    id,
    sessionId: `session-${id}`,
    seq: 0,
    time: new Date().toISOString(),
    connection: { name: 'orders-db', namespace: 'agents', protocol: 'postgres' },
    identity: {
      namespace: 'kube-system',
      serviceAccount: 'admin',
      pod: 'someone-else',
      user: 'oidc:ada@example.com',
      groups: ['oidc:dba'],
    },
    type: 'session.start',
    client: { address: '127.0.0.1:1' },
  });

  test('the workload identity is stamped from the token, whatever the body says; the person is the one the sidecar verified', async () => {
    const answer = await post(
      tokens.agent!,
      `${JSON.stringify(lying('lie-1'))}\n${JSON.stringify(lying('lie-2'))}\n`,
    );
    assert.equal(answer.status, 200, answer.body);
    assert.deepEqual(JSON.parse(answer.body), { received: 2, stored: 2, duplicates: 0, rejected: [] });
    const again = await post(tokens.agent!, `${JSON.stringify(lying('lie-1'))}\n`);
    assert.deepEqual(JSON.parse(again.body), { received: 1, stored: 0, duplicates: 1, rejected: [] });
    const store = await AuditStore.open(storeUrl);
    const stored = await store.session('session-lie-1');
    await store.close();
    assert.deepEqual(stored!.events[0]!.identity, {
      namespace: 'agents',
      serviceAccount: 'agent',
      pod: 'agent-0',
      user: 'oidc:ada@example.com',
      groups: ['oidc:dba'],
    });
  });

  test("another pod's token and a missing token are refused; a malformed event is refused alone", async () => {
    const plain = await post(tokens.plain!, `${JSON.stringify(lying('plain-1'))}\n`);
    assert.equal(plain.status, 403);
    assert.equal(JSON.parse(plain.body).reason, 'PodNotInjected');
    const none = await post('', `${JSON.stringify(lying('none-1'))}\n`);
    assert.equal(none.status, 401);
    const outcome = 'not-an-outcome';
    const malformed = { ...lying('bad-2'), type: 'request', text: 'SELECT 1', outcome, durationMs: 1 };
    const bad = await post(
      tokens.agent!,
      [
        JSON.stringify(lying('ok-1')),
        '{"version":1,"id":"x"}',
        'not json',
        JSON.stringify(malformed),
        JSON.stringify(lying('ok-5')),
      ].join('\n'),
    );
    assert.equal(bad.status, 200, bad.body);
    const answer = JSON.parse(bad.body);
    assert.equal(answer.stored, 2);
    assert.equal(answer.received, 5);
    assert.deepEqual(
      answer.rejected.map((r: { line: number }) => r.line),
      [2, 3, 4],
    );
    assert.match(answer.rejected[2].message, /^outcome: /);
    const store = await AuditStore.open(storeUrl);
    try {
      assert.ok(await store.session('session-ok-1'));
      assert.ok(await store.session('session-ok-5'));
      assert.equal(await store.session('session-bad-2'), undefined);
    } finally {
      await store.close();
    }
  });

  test('the collector stopped while traffic flows, then restarted: every event arrives, none twice', async () => {
    const listenPort = await freePort();
    const spoolDir = join(work, 'spool');
    await (await import('node:fs/promises')).mkdir(spoolDir);
    const delivery = new CollectorDelivery({
      url: `https://127.0.0.1:${ports.controlApi}/v1/events`,
      tokenFile: join(work, 'token'),
      caFile: join(work, 'ca.crt'),
      spoolDir,
      flushMs: 20,
      logger: pino({ level: 'silent' }),
    });
    const sidecar = new Sidecar({
      controlApi: `https://127.0.0.1:${ports.controlApi}`,
      tokenFile: join(work, 'token'),
      caFile: join(work, 'ca.crt'),
      listen: [{ connection: 'orders-db', host: '127.0.0.1', port: listenPort, protocol: 'postgres' }],
      events: delivery,
      approvals: noApprovals,
      logger: pino({ level: 'silent' }),
    });
    await sidecar.start();
    await sidecar.nextBundle((b) => b.connections.length === 1);
    let sessions = 0;
    let statements = 0;
    let running = true;
    const traffic = (async () => {
      while (running) {
        const client = new pg.Client({
          host: '127.0.0.1',
          port: listenPort,
          user: 'agent',
          database: 'x',
          password: 'x',
        });
        await client.connect();
        sessions++;
        for (let i = 0; i < 20; i++) {
          await client.query('SELECT id FROM customers');
          statements++;
        }
        await client.end();
      }
    })();
    await waitFor('traffic flows', async () => statements > 100);
    // The SIEM goes down: what the operator stores from now on waits behind the cursor when
    // the operator stops.
    siem.down = true;
    await waitFor('the SIEM refuses', async () => siem.refused > 0);
    const atRefusal = statements;
    await waitFor('traffic flows with the SIEM down', async () => statements > atRefusal + 50);
    await operator!.stop();
    operator = undefined;
    const atStop = statements;
    await waitFor('traffic flows with the collector down', async () => statements > atStop + 200);
    assert.ok(delivery.health().spooling, 'events are spooled while the collector is down');
    await startOperator();
    siem.down = false;
    await waitFor('more traffic after the restart', async () => statements > atStop + 400);
    running = false;
    await traffic;
    await delivery.drained();
    await sidecar.stop();
    await delivery.stop();

    const store = await AuditStore.open(storeUrl);
    const summaries = (await store.sessions({ limit: 10_000 })).sessions.filter(
      (s) => s.connection === 'orders-db' && !s.id.startsWith('session-'),
    );
    assert.equal(summaries.length, sessions, 'every session arrived');
    assert.equal(
      summaries.reduce((sum, s) => sum + s.requests, 0),
      statements,
      'every statement arrived, once',
    );
    for (const summary of summaries.slice(0, 5)) {
      const { events } = (await store.session(summary.id))!;
      assert.deepEqual(
        events.map((e) => e.seq),
        events.map((_, i) => i),
        'in order, no gaps, no repeats',
      );
      assert.ok(events.every((e) => e.identity.pod === 'agent-0'));
    }
    const verified = await store.verify();
    const stored: string[] = [];
    for (let after = 0; ; ) {
      const rows = await store.eventsAfter(after, 5000);
      if (rows.length === 0) break;
      stored.push(...rows.map((r) => r.event.id));
      after = rows.at(-1)!.position;
    }
    await waitFor(
      'the SIEM has every stored event',
      async () => new Set(siem.received).size >= stored.length,
    );
    await store.close();
    assert.equal(verified.ok, true);
    const exported = new Set(siem.received);
    assert.deepEqual(
      stored.filter((id) => !exported.has(id)),
      [],
      'every stored event reached the SIEM across the restart, the backlog of the stopped operator included',
    );
    assert.equal(exported.size, stored.length, 'and nothing else');
    const log = await readFile(join(work, 'operator.log'), 'utf8');
    assert.match(log, /audit store open/);
  });
});
