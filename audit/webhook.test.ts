// The webhook sender's in-memory queue (the AccessRequest notifications) against a real local
// HTTP receiver that fails for a while; the audit export over the store is in export.test.ts.
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import pino from 'pino';
import type { SessionEvent } from '../api/events.ts';
import { type Counter, Registry } from '../metrics/registry.ts';
import { formatBatch, WebhookSender, type WebhookSenderOptions } from './webhook.ts';

function event(seq: number): SessionEvent {
  return {
    version: 1,
    id: `e-${seq}`,
    sessionId: 's1',
    seq,
    time: new Date().toISOString(),
    connection: { name: 'orders-db', namespace: 'agents', protocol: 'postgres' },
    identity: { namespace: 'agents', serviceAccount: 'agent', pod: 'agent-0' },
    type: 'request',
    text: seq % 2 ? 'DROP TABLE customers' : `SELECT ${seq}`,
    outcome: seq % 2 ? 'blocked' : 'allowed',
    ...(seq % 2 ? { policy: 'agent-orders', rule: 'no-drop' } : {}),
    durationMs: 1,
  };
}

/** A sender of session events as generic NDJSON, with the queue and backoff settings given. */
const eventSender = (
  url: string,
  settings: Pick<
    WebhookSenderOptions<SessionEvent>,
    'batchSize' | 'flushMs' | 'maxQueued' | 'minRetryMs' | 'maxRetryMs'
  >,
) =>
  new WebhookSender<SessionEvent>({
    url,
    stream: 'notifications',
    encode: (events) => formatBatch('generic', events),
    logger: pino({ level: 'silent' }),
    ...settings,
  });

test('the in-memory queue: a receiver that fails for a while gets every item, in order, once it recovers', async () => {
  const received: string[] = [];
  let failUntil = Date.now() + 1500;
  let refusals = 0;
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => {
      body += chunk;
    });
    req.on('end', () => {
      if (Date.now() < failUntil) {
        refusals++;
        // Alternate ways of failing: an error status, and a connection cut mid-answer.
        if (refusals % 2) res.writeHead(503).end();
        else req.socket.destroy();
        return;
      }
      assert.equal(req.headers['content-type'], 'application/x-ndjson');
      for (const line of body.trimEnd().split('\n')) received.push((JSON.parse(line) as SessionEvent).id);
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const sink = eventSender(`http://127.0.0.1:${(server.address() as AddressInfo).port}/siem`, {
    batchSize: 100,
    flushMs: 10,
    minRetryMs: 50,
    maxRetryMs: 400,
  });
  const acknowledged = Array.from({ length: 1000 }, (_, seq) => sink.push(event(seq)));
  const deadline = Date.now() + 20_000;
  while (new Set(received).size < 1000 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(new Set(await Promise.all(acknowledged)), new Set([true]), 'each push resolved delivered');
  sink.stop();
  server.close();
  assert.ok(refusals >= 2, 'the receiver failed first');
  assert.equal(new Set(received).size, 1000, 'every event arrived');
  assert.deepEqual(
    [...new Set(received)],
    Array.from({ length: 1000 }, (_, i) => `e-${i}`),
    'in order',
  );
  failUntil = 0;
});

test('a push resolves false when its item is shed past the bound, or the sender stops first', async () => {
  // A receiver that is not there: every attempt fails.
  const closed = createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(closed.address() as AddressInfo).port}/gone`;
  await new Promise((resolve) => closed.close(resolve));
  const sink = eventSender(url, { maxQueued: 2, flushMs: 5, minRetryMs: 10, maxRetryMs: 20 });
  const [first, second, third] = [sink.push(event(0)), sink.push(event(1)), sink.push(event(2))];
  assert.equal(await first, false, 'shed: the oldest past the bound');
  assert.equal(sink.queued, 2);
  sink.stop();
  assert.deepEqual(await Promise.all([second, third]), [false, false], 'stopped before delivery');
  assert.equal(await sink.push(event(3)), false, 'nothing is taken after stop');
});

test('the Slack format is one incoming-webhook message per batch', () => {
  const { body, contentType } = formatBatch('slack', [event(0), event(1)]);
  assert.equal(contentType, 'application/json');
  const message = JSON.parse(body) as { text: string };
  assert.match(message.text, /^\*allowed\* agents\/agent \(pod agent-0\) on agents\/orders-db: `SELECT 0`/);
  assert.match(message.text, /\*blocked\* .*`DROP TABLE customers` \(rule agent-orders\/no-drop\)/);
});

test('senders of every stream share one registry, their metrics labeled by stream and receiver', async () => {
  const bodies: { type: string; body: string }[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => {
      body += chunk;
    });
    req.on('end', () => {
      bodies.push({ type: req.headers['content-type'] ?? '', body });
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  const registry = new Registry();
  const logger = pino({ level: 'silent' });
  // As each audit export makes its sender.
  const audit = [url, `${url}?second`].map(
    (to) =>
      new WebhookSender<SessionEvent>({
        url: to,
        stream: 'audit',
        encode: (events) => formatBatch('generic', events),
        logger,
        registry,
        flushMs: 5,
      }),
  );
  const notes = new WebhookSender<{ n: number }>({
    url,
    stream: 'notifications',
    encode: (items) => ({ body: items.map((i) => `n=${i.n}`).join(','), contentType: 'text/plain' }),
    logger,
    registry,
    flushMs: 5,
  });
  // Each push resolves once its receiver answered and the send is counted.
  const delivered = await Promise.all([
    ...audit.map((sender) => sender.push(event(0))),
    notes.push({ n: 1 }),
    notes.push({ n: 2 }),
  ]);
  assert.deepEqual(delivered, [true, true, true, true]);
  for (const sender of [...audit, notes]) sender.stop();
  server.close();
  assert.deepEqual(
    bodies.find((b) => b.type === 'text/plain')?.body,
    'n=1,n=2',
    'the encoder makes the body',
  );
  const sent = registry.get('airlock_export_events_total') as Counter<string>;
  const host = new URL(url).host;
  assert.deepEqual(
    sent.series().map((v) => [v.labels, v.value]),
    [
      [{ stream: 'audit', receiver: host }, 2],
      [{ stream: 'notifications', receiver: host }, 2],
    ],
  );
});
