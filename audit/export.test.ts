// The durable audit export against a real receiver on loopback and a real store: embedded SQLite
// in a temporary directory, and PostgreSQL when its server is installed. The store is the queue:
// an exporter stopped between storing and delivering leaves the events behind its cursor, and
// the next exporter over the same store delivers them.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import pino from 'pino';
import type { SessionEvent } from '../api/events.ts';
import { type Counter, type Gauge, Registry } from '../metrics/registry.ts';
import { type PostgresServer, startPostgres } from '../test/support/postgres.ts';
import { requires } from '../test/support/tools.ts';
import { type AuditLog, openAuditLog } from './log.ts';
import { exportSinkId, WebhookExport } from './webhook.ts';

const logger = pino({ level: 'silent' });

function event(n: number): SessionEvent {
  return {
    version: 1,
    id: `e-${n}`,
    sessionId: `s-${Math.floor(n / 20)}`,
    seq: n % 20,
    time: new Date().toISOString(),
    connection: { name: 'orders-db', namespace: 'agents', protocol: 'postgres' },
    identity: { namespace: 'agents', serviceAccount: 'agent', pod: 'agent-0' },
    type: 'request',
    text: `SELECT ${n}`,
    outcome: 'allowed',
    durationMs: 1,
  };
}
const events = (from: number, count: number) => Array.from({ length: count }, (_, i) => event(from + i));
const ids = (from: number, count: number) => Array.from({ length: count }, (_, i) => `e-${from + i}`);

/**
 * A SIEM on loopback. `ok` stores and answers 204; `fail` answers 503 or cuts the connection
 * and stores nothing; `lost` stores the batch but never answers (the answer is lost).
 */
interface Receiver {
  url: string;
  mode: 'ok' | 'fail' | 'lost';
  /** Every id stored, in arrival order, repeats included. */
  received: string[];
  /** Requests the receiver refused or left unanswered. */
  refused: number;
  close(): Promise<void>;
}

async function startReceiver(): Promise<Receiver> {
  const unanswered: ServerResponse[] = [];
  const receiver: Receiver = {
    url: '',
    mode: 'ok',
    received: [],
    refused: 0,
    close: async () => {
      for (const response of unanswered) response.destroy();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => {
      body += chunk;
    });
    req.on('end', () => {
      const mode = receiver.mode;
      if (mode === 'fail') {
        // Two ways of failing: an error status, and a connection cut mid-answer.
        if (receiver.refused++ % 2) res.writeHead(503).end();
        else req.socket.destroy();
        return;
      }
      assert.equal(req.headers['content-type'], 'application/x-ndjson');
      for (const line of body.trimEnd().split('\n'))
        receiver.received.push((JSON.parse(line) as SessionEvent).id);
      if (mode === 'lost') {
        receiver.refused++;
        unanswered.push(res);
        return;
      }
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  receiver.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/siem?token=secret`;
  return receiver;
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not in time`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const unique = (list: string[]) => [...new Set(list)];

/**
 * What a test opened, closed after it whether it passed or not: a failed assertion must not
 * leave a server listening or a store's worker running (the test process would never end).
 */
const opened: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const close of opened.splice(0).reverse()) await close().catch(() => undefined);
});

async function openStore(location: string): Promise<AuditLog> {
  const log = await openAuditLog(location);
  opened.push(() => log.close());
  return log;
}

async function openReceiver(): Promise<Receiver> {
  const started = await startReceiver();
  opened.push(() => started.close());
  return started;
}

function exporter(
  store: AuditLog,
  url: string,
  extra: Partial<ConstructorParameters<typeof WebhookExport>[0]> = {},
) {
  const webhook = new WebhookExport({
    url,
    format: 'generic',
    store: async () => store,
    logger,
    batchSize: 40,
    pollMs: 50,
    minRetryMs: 20,
    maxRetryMs: 200,
    ...extra,
  });
  webhook.start();
  opened.push(() => webhook.stop());
  return webhook;
}

/** Appends events and wakes the exporters, as the collector does after a stored batch. */
async function ingest(store: AuditLog, batch: SessionEvent[], ...webhooks: WebhookExport[]) {
  for (let start = 0; start < batch.length; start += 25) await store.add(batch.slice(start, start + 25));
  for (const webhook of webhooks) webhook.wake();
}

for (const kind of ['embedded', 'postgres'] as const) {
  describe(
    `the audit export on ${kind === 'embedded' ? 'embedded SQLite' : 'PostgreSQL'}`,
    kind === 'postgres' ? requires('postgres', 'initdb') : {},
    () => {
      let directory: string;
      let database: PostgresServer | undefined;
      let stores = 0;
      /** A new, empty store's location. */
      const fresh = async (): Promise<string> => {
        const name = `export_${++stores}`;
        if (kind === 'embedded') return join(directory, name);
        await database!.admin(`CREATE DATABASE ${name} OWNER ${database!.user}`);
        return `postgres://${encodeURIComponent(database!.user)}:${encodeURIComponent(database!.password)}@127.0.0.1:${database!.port}/${name}`;
      };
      before(async () => {
        directory = await mkdtemp(join(tmpdir(), 'airlock-export-'));
        if (kind === 'postgres') database = await startPostgres();
      });
      after(async () => {
        await database?.stop();
        await rm(directory, { recursive: true, force: true });
      });

      test('a new sink starts at the head; then every event is delivered once, in chain order', async () => {
        const location = await fresh();
        const store = await openStore(location);
        const receiver = await openReceiver();
        await store.add(events(0, 30));
        const registry = new Registry();
        const webhook = exporter(store, receiver.url, { registry });
        await until('the sink has a cursor', async () => (await store.exportCursor(webhook.sink)) === 30);
        await ingest(store, events(30, 200), webhook);
        await until('every new event delivered', () => unique(receiver.received).length === 200);
        await until('the cursor at the head', async () => (await store.exportCursor(webhook.sink)) === 230);
        await webhook.stop();
        await receiver.close();
        assert.deepEqual(
          receiver.received,
          ids(30, 200),
          'the history before the sink was not sent; the rest once, in order',
        );
        const sent = registry.get('airlock_export_events_total') as Counter<string>;
        assert.equal(sent.series()[0]?.value, 200);
        const behind = registry.get('airlock_export_queued_events') as Gauge<string>;
        assert.equal(behind.series()[0]?.value, 0, 'nothing behind the cursor');
        assert.deepEqual(
          await store.verify(),
          { ok: true, events: 230 },
          'the cursors are outside the chain',
        );
        await store.close();
      });

      test('a receiver that fails for a while gets every event, in order, once it recovers', async () => {
        const store = await openStore(await fresh());
        const receiver = await openReceiver();
        const webhook = exporter(store, receiver.url);
        await until('the sink has a cursor', async () => (await store.exportCursor(webhook.sink)) === 0);
        receiver.mode = 'fail';
        await ingest(store, events(0, 300), webhook);
        await until('the receiver refused several times', () => receiver.refused >= 4);
        assert.equal(await store.exportCursor(webhook.sink), 0, 'nothing is acknowledged while it fails');
        receiver.mode = 'ok';
        await until('every event delivered', () => unique(receiver.received).length === 300);
        // The last batch is acknowledged to the exporter before its cursor is stored.
        await until('the cursor at the head', async () => (await store.exportCursor(webhook.sink)) === 300);
        await webhook.stop();
        await receiver.close();
        assert.deepEqual(
          receiver.received,
          ids(0, 300),
          'a refused batch stored nothing, so each arrived once',
        );
        await store.close();
      });

      test('an exporter stopped after storing but before delivering: the next one over the store delivers the rest', async () => {
        const location = await fresh();
        let store = await openStore(location);
        const receiver = await openReceiver();
        const first = exporter(store, receiver.url);
        await until('the sink has a cursor', async () => (await store.exportCursor(first.sink)) === 0);
        await ingest(store, events(0, 100), first);
        await until('the first events delivered', () => receiver.received.length === 100);
        await until('their cursor stored', async () => (await store.exportCursor(first.sink)) === 100);
        // The receiver stores the next batch but its answer is lost; more events are stored
        // meanwhile; then the process goes away.
        receiver.mode = 'lost';
        await ingest(store, events(100, 150), first);
        await until('a batch is in flight', () => receiver.refused >= 1);
        await first.stop();
        assert.equal(
          await store.exportCursor(first.sink),
          100,
          'an unanswered batch does not move the cursor',
        );
        await store.close();
        const inFlight = receiver.received.slice(100);
        assert.ok(inFlight.length > 0);
        assert.deepEqual(
          inFlight,
          ids(100, inFlight.length),
          'the lost answer was for the next batch in order',
        );

        receiver.mode = 'ok';
        store = await openStore(location);
        const second = exporter(store, receiver.url);
        assert.equal(second.sink, first.sink, 'the same receiver and format is the same sink');
        await until('every event delivered', () => unique(receiver.received).length === 250);
        await until('the cursor at the head', async () => (await store.exportCursor(second.sink)) === 250);
        await second.stop();
        await receiver.close();
        assert.deepEqual(
          receiver.received.slice(100 + inFlight.length),
          ids(100, 150),
          'the next exporter resent the unanswered batch (at least once) and delivered the rest, in order',
        );
        assert.deepEqual(unique(receiver.received), ids(0, 250), 'no event is missing');
        await store.close();
      });

      test('the cursor never moves backwards; sinks are keyed by a hash of the URL and the format', async () => {
        const store = await openStore(await fresh());
        await store.add(events(0, 10));
        const sink = exportSinkId('https://siem.example/hook?token=s3cr3t', 'generic');
        assert.doesNotMatch(sink, /s3cr3t|siem\.example/, 'the URL is not in the key');
        assert.notEqual(sink, exportSinkId('https://siem.example/hook?token=s3cr3t', 'slack'));
        assert.notEqual(sink, exportSinkId('https://siem.example/hook?token=other', 'generic'));
        assert.equal(await store.exportCursor(sink), 10, 'first seen: at the head');
        await store.add(events(10, 10));
        assert.equal(await store.exportCursor(sink), 10, 'then it stays where it is');
        assert.equal(await store.advanceExportCursor(sink, 15), 15);
        assert.equal(await store.advanceExportCursor(sink, 12), 15, 'not backwards');
        assert.equal(await store.exportCursor(sink), 15);
        assert.deepEqual(
          (await store.eventsAfter(15, 3)).map((r) => [r.position, r.event.id]),
          [
            [16, 'e-15'],
            [17, 'e-16'],
            [18, 'e-17'],
          ],
        );
        assert.equal(await store.head(), 20);
        assert.deepEqual(await store.verify(), { ok: true, events: 20 });
        await store.close();
      });

      if (kind === 'postgres')
        test('two replicas: only the leader exports; after a handover the new leader goes on from the cursor', async () => {
          const location = await fresh();
          const [a, b] = [await openStore(location), await openStore(location)];
          const receiver = await openReceiver();
          let leader: 'a' | 'b' = 'a';
          const exportA = exporter(a, receiver.url, { active: () => leader === 'a' });
          const exportB = exporter(b, receiver.url, { active: () => leader === 'b' });
          await until('the sink has a cursor', async () => (await a.exportCursor(exportA.sink)) === 0);
          // Each replica ingests some and wakes its own exporter; only the leader's sends.
          await ingest(a, events(0, 60), exportA);
          await ingest(b, events(60, 60), exportB);
          await until('the first events delivered', () => receiver.received.length === 120);
          await until('their cursor stored', async () => (await b.exportCursor(exportB.sink)) === 120);
          leader = 'b';
          await ingest(a, events(120, 60), exportA);
          await ingest(b, events(180, 60), exportB);
          await until('every event delivered', () => unique(receiver.received).length === 240);
          await until('the cursor at the head', async () => (await a.exportCursor(exportA.sink)) === 240);
          await Promise.all([exportA.stop(), exportB.stop()]);
          await receiver.close();
          assert.deepEqual(receiver.received, ids(0, 240), 'once each, in chain order');
          await Promise.all([a.close(), b.close()]);
        });
    },
  );
}
