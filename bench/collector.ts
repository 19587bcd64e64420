// Collector ingest into PostgreSQL: NDJSON batches POSTed to the collector's handler (the
// same code as the operator's /v1/events: schema check, identity stamp, hash-chained append)
// by several concurrent senders, as sidecars would send them. The token check is the
// operator's TokenReview, cached per token, so it is left out here. Goal: >= 10,000 events/s.
// Then, on the same store, a session list (`kubectl get sessions`: the 500 newest of 2,000
// sessions of 50 events) summarized in the database, beside fetching those sessions' events
// and summarizing them in the process, as a list did before.
//
//   node bench/collector.ts [--events 100000] [--batch 1000] [--senders 4]

import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import pg from 'pg';
import pino from 'pino';
import type { SessionEvent } from '../api/events.ts';
import { AuditStore, summarize } from '../audit/store.ts';
import { collector } from '../operator/collector.ts';
import { startPostgres } from '../test/support/postgres.ts';

const { values } = parseArgs({
  options: {
    events: { type: 'string', default: '100000' },
    batch: { type: 'string', default: '1000' },
    senders: { type: 'string', default: '4' },
  },
});
const total = Number(values.events);
const batchSize = Number(values.batch);
const senders = Number(values.senders);

const database = await startPostgres();
await database.admin(`CREATE DATABASE audit OWNER ${database.user}`);
const url = `postgres://${encodeURIComponent(database.user)}:${encodeURIComponent(database.password)}@127.0.0.1:${database.port}/audit`;
const store = await AuditStore.open(url, { key: Buffer.from('bench-key-bench-key-bench-key-bench-key') });
const handler = collector({
  authenticate: async () => ({ namespace: 'agents', serviceAccount: 'agent', pod: 'agent-0' }),
  store,
  logger: pino({ level: 'silent' }),
});
const server = createServer((req, res) => void handler(req, res));
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/events`;

function event(n: number): SessionEvent {
  const base = {
    version: 1 as const,
    id: `bench-${n}`,
    sessionId: `session-${Math.floor(n / 50)}`,
    seq: n % 50,
    time: new Date().toISOString(),
    connection: { name: 'orders-db', namespace: 'agents', protocol: 'postgres' },
    identity: { namespace: 'agents', serviceAccount: 'agent', pod: 'agent-0' },
  };
  if (n % 50 === 0) return { ...base, type: 'session.start', client: { address: '10.0.0.5:40000' } };
  return {
    ...base,
    type: 'request',
    text: `SELECT id, email FROM customers WHERE id = $1 -- ${n}`,
    kind: 'SELECT',
    outcome: 'masked',
    policy: 'agent-orders',
    masked: { 'pii/email': 1 },
    rows: 1,
    durationMs: 2,
  };
}

const batches: string[] = [];
for (let start = 0; start < total; start += batchSize) {
  const lines: string[] = [];
  for (let n = start; n < Math.min(start + batchSize, total); n++) lines.push(JSON.stringify(event(n)));
  batches.push(`${lines.join('\n')}\n`);
}
let next = 0;
const started = performance.now();
await Promise.all(
  Array.from({ length: senders }, async () => {
    while (next < batches.length) {
      const body = batches[next++]!;
      const response = await fetch(endpoint, {
        method: 'POST',
        headers: { authorization: 'Bearer bench', 'content-type': 'application/x-ndjson' },
        body,
      });
      if (response.status !== 200)
        throw new Error(`collector answered ${response.status}: ${await response.text()}`);
      await response.arrayBuffer();
    }
  }),
);
const seconds = (performance.now() - started) / 1000;
const verifyStarted = performance.now();
const verified = await store.verify();
const verifySeconds = (performance.now() - verifyStarted) / 1000;
const rate = total / seconds;
console.log(
  `collector ingest into PostgreSQL: ${total} events in ${seconds.toFixed(2)} s = ${Math.round(rate)} events/s (batches of ${batchSize}, ${senders} senders; goal >= 10000) ${rate >= 10_000 ? 'OK' : 'BELOW GOAL'}`,
);
console.log(
  `audit verify: ${verified.events} events in ${verifySeconds.toFixed(2)} s = ${Math.round(verified.events / verifySeconds)} events/s (${verified.ok ? 'ok' : 'TAMPERED'}, anchored: ${Boolean(verified.anchored)})`,
);

// The session list, both ways, alternated; median of 5.
const client = new pg.Client({ connectionString: url });
await client.connect();
const inProcess = async () => {
  const { rows } = await client.query<{ session_id: string; bodies: SessionEvent[] }>(
    `SELECT session_id, json_agg(body ORDER BY position) AS bodies FROM audit_events
      WHERE session_id IN (SELECT session_id FROM audit_events WHERE body->'identity'->>'namespace' = $2
                            GROUP BY session_id ORDER BY min(position) DESC LIMIT $1)
        AND body->'identity'->>'namespace' = $2
      GROUP BY session_id ORDER BY min(position) DESC`,
    [500, 'agents'],
  );
  return rows.map((row) => summarize(row.session_id, row.bodies));
};
const timings: Record<'database' | 'process', number[]> = { database: [], process: [] };
let listed = 0;
for (let round = 0; round < 5; round++) {
  let t = performance.now();
  listed = (await store.sessions({ limit: 500, namespace: 'agents' })).sessions.length;
  timings.database.push(performance.now() - t);
  t = performance.now();
  await inProcess();
  timings.process.push(performance.now() - t);
}
await client.end();
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[2]!;
console.log(
  `session list (${listed} newest of ${total / 50} sessions): summarized in the database ${median(timings.database).toFixed(0)} ms, events fetched and summarized in the process ${median(timings.process).toFixed(0)} ms (${(median(timings.process) / median(timings.database)).toFixed(1)}x)`,
);
server.close();
await store.close();
await database.stop();
process.exitCode = verified.ok && verified.events === total ? 0 : 1;
