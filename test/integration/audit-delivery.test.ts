// Sidecar → collector delivery with real parts: the collector's handler on a local listener
// over an embedded store, the sidecar's delivery sink with a real spool directory, and the
// PostgreSQL enforcer in front of a real PostgreSQL for the fail-closed policy.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import pino from 'pino';
import type { SessionEvent } from '../../api/events.ts';
import { type AuditLog, openAuditLog } from '../../audit/log.ts';
import { collector } from '../../operator/collector.ts';
import { CollectorDelivery } from '../../sidecar/audit/delivery.ts';
import { type PostgresEnforcer, servePostgres } from '../../sidecar/postgres/server.ts';
import { connectionFor, type PostgresServer, policy, startPostgres } from '../support/postgres.ts';
import { freePort, waitFor } from '../support/process.ts';
import { requires } from '../support/tools.ts';

const logger = pino({ level: 'silent' });

function event(seq: number, sessionId = 's1'): SessionEvent {
  return {
    version: 1,
    id: `${sessionId}-${seq}`,
    sessionId,
    seq,
    time: new Date().toISOString(),
    connection: { name: 'orders-db', namespace: 'agents', protocol: 'postgres' },
    identity: { namespace: 'agents', serviceAccount: 'agent' },
    type: 'request',
    text: `SELECT ${seq}`,
    outcome: 'allowed',
    durationMs: 1,
  };
}

describe('audit delivery: spool, resend, fail closed', requires('postgres'), () => {
  let work: string;
  let store: AuditLog;
  let database: PostgresServer;
  let port: number;
  let server: Server | undefined;
  const startCollector = async () => {
    const handler = collector({
      authenticate: async (authorization) => {
        if (authorization !== 'Bearer pod-token') throw new Error('bad token');
        return { namespace: 'agents', serviceAccount: 'agent', pod: 'agent-0' };
      },
      store,
      logger,
    });
    server = createServer((req, res) => void handler(req, res));
    await new Promise<void>((resolve) => server!.listen(port, '127.0.0.1', resolve));
  };
  const stopCollector = async () => {
    const running = server;
    server = undefined;
    if (!running) return;
    running.closeAllConnections();
    await new Promise((resolve) => running.close(resolve));
  };

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'airlock-delivery-'));
    await writeFile(join(work, 'token'), 'pod-token\n');
    store = await openAuditLog(join(work, 'store'));
    database = await startPostgres();
    port = await freePort();
  });
  after(async () => {
    await stopCollector();
    await store?.close();
    await database?.stop();
    await rm(work, { recursive: true, force: true });
  });

  test('events emitted while the collector is down are spooled, then resent in order, once', async () => {
    const spoolDir = join(work, 'spool-1');
    await mkdir(spoolDir);
    const delivery = new CollectorDelivery({
      url: `http://127.0.0.1:${port}/v1/events`,
      tokenFile: join(work, 'token'),
      spoolDir,
      batchSize: 50,
      logger,
    });
    for (let seq = 0; seq < 300; seq++) delivery.emit(event(seq, 'spooled'));
    await waitFor('the events in the spool', async () => delivery.health().spooledBytes > 0, {
      timeoutMs: 10_000,
    });
    // A restart of the sidecar keeps the spool; the new sink resends it.
    await delivery.stop();
    const restarted = new CollectorDelivery({
      url: `http://127.0.0.1:${port}/v1/events`,
      tokenFile: join(work, 'token'),
      spoolDir,
      batchSize: 50,
      logger,
    });
    for (let seq = 300; seq < 400; seq++) restarted.emit(event(seq, 'spooled'));
    await startCollector();
    await restarted.drained();
    const stored = await store.session('spooled');
    assert.equal(stored!.events.length, 400);
    assert.deepEqual(
      stored!.events.map((e) => e.seq),
      Array.from({ length: 400 }, (_, i) => i),
    );
    assert.ok(
      stored!.events.every((e) => e.identity.pod === 'agent-0'),
      'identity stamped from the token',
    );
    await restarted.stop();
    await stopCollector();
  });

  test('a full spool fails closed: new statements and sessions are refused until the collector returns', async () => {
    const spoolDir = join(work, 'spool-2');
    await mkdir(spoolDir);
    const delivery = new CollectorDelivery({
      url: `http://127.0.0.1:${port}/v1/events`,
      tokenFile: join(work, 'token'),
      spoolDir,
      maxSpoolBytes: 4096,
      maxQueued: 1000,
      flushMs: 5,
      logger,
    });
    const enforcer: PostgresEnforcer = await servePostgres({
      connection: connectionFor(database, [policy('all')]),
      identity: { namespace: 'agents', serviceAccount: 'agent' },
      events: delivery,
    });
    const connect = async () => {
      const client = new pg.Client({
        host: enforcer.host,
        port: enforcer.port,
        user: 'agent',
        password: 'x',
        database: 'whatever',
      });
      await client.connect();
      return client;
    };
    const client = await connect();
    let refused: pg.DatabaseError | undefined;
    for (let i = 0; i < 200 && !refused; i++) {
      try {
        await client.query(`SELECT ${i}`);
        await new Promise((resolve) => setTimeout(resolve, 5));
      } catch (error) {
        refused = error as pg.DatabaseError;
      }
    }
    assert.ok(refused, 'a statement was refused once the spool filled');
    assert.equal(refused.code, '53100');
    assert.match(refused.message, /audit trail cannot be recorded/);
    assert.ok(delivery.health().full);
    await assert.rejects(connect(), (error: pg.DatabaseError) => error.code === '53100');
    await client.end().catch(() => {});

    await startCollector();
    await delivery.drained();
    assert.equal(delivery.refusal(), undefined);
    const again = await connect();
    assert.equal((await again.query('SELECT 1 AS one')).rows[0].one, 1);
    await again.end();
    await delivery.drained();
    const sessions = (await store.sessions({ limit: 10 })).sessions;
    const requests = sessions.reduce((sum, s) => sum + s.requests, 0);
    assert.ok(requests >= 2, 'statements run before the spool filled were delivered');
    // The refusal has the code a full spool has in every protocol, and the SQLSTATE the client saw.
    const errors = [];
    for (const summary of sessions)
      for (const event of (await store.session(summary.id))?.events ?? [])
        if (event.type === 'request' && event.error) errors.push(event.error);
    assert.deepEqual(errors[0], {
      code: 'audit-unavailable',
      message: refused.message,
      wire: '53100',
    });
    await enforcer.close();
    await delivery.stop();
    await stopCollector();
  });

  test('under the drop policy a full spool sheds events, counts them and keeps serving', async () => {
    const spoolDir = join(work, 'spool-3');
    await mkdir(spoolDir);
    const delivery = new CollectorDelivery({
      url: `http://127.0.0.1:${port}/v1/events`,
      tokenFile: join(work, 'token'),
      spoolDir,
      maxSpoolBytes: 2048,
      onFull: 'drop',
      flushMs: 5,
      logger,
    });
    for (let seq = 0; seq < 100; seq++) delivery.emit(event(seq, 'dropped'));
    await waitFor('the spool full', async () => delivery.health().full, { timeoutMs: 10_000 });
    assert.equal(delivery.refusal(), undefined, 'the drop policy never refuses');
    await startCollector();
    await delivery.drained();
    const stored = await store.session('dropped');
    assert.ok(stored!.events.length > 0 && stored!.events.length < 100);
    await delivery.stop();
    await stopCollector();
  });
});
