import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { PGlite } from '@electric-sql/pglite';
import fc from 'fast-check';
import type { SessionEvent } from '../api/events.ts';
import { startPostgres } from '../test/support/postgres.ts';
import { requires } from '../test/support/tools.ts';
import { AuditStore, canonical, microseconds, summarize } from './store.ts';

let directory: string;
before(async () => {
  directory = await mkdtemp(join(tmpdir(), 'airlock-store-'));
});
after(async () => rm(directory, { recursive: true, force: true }));

function session(sessionId: string, statements: string[]): SessionEvent[] {
  const base = {
    version: 1 as const,
    sessionId,
    connection: { name: 'orders-db', namespace: 'agents', protocol: 'postgres' },
    identity: { namespace: 'agents', serviceAccount: 'support-agent' },
  };
  const time = () => new Date().toISOString();
  return [
    {
      ...base,
      id: randomUUID(),
      seq: 0,
      time: time(),
      type: 'session.start',
      client: { address: '127.0.0.1:5000' },
    },
    ...statements.map(
      (text, i): SessionEvent => ({
        ...base,
        id: randomUUID(),
        seq: i + 1,
        time: time(),
        type: 'request',
        text,
        outcome: text.startsWith('DROP') ? 'blocked' : 'masked',
        ...(text.startsWith('DROP') ? { rule: 'no-drop' } : { masked: { 'pii/email': 2 } }),
        durationMs: 1,
      }),
    ),
    {
      ...base,
      id: randomUUID(),
      seq: statements.length + 1,
      time: time(),
      type: 'session.end',
      reason: 'client',
      bytesIn: 10,
      bytesOut: 20,
    },
  ];
}

test('canonical JSON sorts keys and drops undefined', () => {
  assert.equal(canonical({ b: 1, a: [{ d: undefined, c: 'x' }] }), '{"a":[{"c":"x"}],"b":1}');
});

test('appends, dedupes resends, summarizes and verifies; every kind of tampering is caught', async () => {
  const location = join(directory, 'store');
  const store = await AuditStore.open(location);
  const first = session('s1', ['SELECT * FROM customers', 'DROP TABLE customers']);
  assert.equal(await store.append(first), 4);
  assert.equal(await store.append(first), 0, 'a resend adds nothing');
  const second = session('s2', ['SELECT 1', 'SELECT 2', 'SELECT 3']);
  assert.equal(await store.append([...second.slice(0, 2), first[1]!, ...second.slice(2)]), 5);
  const {
    sessions: [latest, earliest],
  } = await store.sessions();
  assert.equal(latest!.id, 's2');
  assert.deepEqual(
    {
      requests: earliest!.requests,
      blocked: earliest!.blocked,
      masked: earliest!.masked,
      ended: Boolean(earliest!.ended),
    },
    { requests: 2, blocked: 1, masked: 2, ended: true },
  );
  const shown = await store.session('s1');
  assert.deepEqual(
    shown!.events.map((e) => e.type),
    ['session.start', 'request', 'request', 'session.end'],
  );
  assert.deepEqual(await store.verify(), { ok: true, events: 9 });
  await assert.rejects(
    (async () => {
      await store.close();
      const db = await PGlite.create(location);
      try {
        await db.query(
          "UPDATE audit_events SET body = jsonb_set(body, '{text}', '\"SELECT 1\"') WHERE position = 3",
        );
      } finally {
        await db.close();
      }
    })(),
    /append-only/,
  );

  // A superuser who disables the trigger can edit, delete, insert and reorder: verify names the event.
  const tamper = async (sql: string) => {
    const db = await PGlite.create(location);
    await db.exec(
      `ALTER TABLE audit_events DISABLE TRIGGER ALL; ${sql}; ALTER TABLE audit_events ENABLE TRIGGER ALL;`,
    );
    await db.close();
    const reopened = await AuditStore.open(location);
    const result = await reopened.verify();
    await reopened.close();
    return result;
  };
  const edited = await tamper(
    "UPDATE audit_events SET body = jsonb_set(body, '{text}', '\"SELECT 1\"') WHERE position = 3",
  );
  assert.equal(edited.ok, false);
  assert.equal(edited.firstBad!.position, 3);
  assert.match(edited.firstBad!.problem, /edited/);
  await tamper(
    "UPDATE audit_events SET body = jsonb_set(body, '{text}', '\"DROP TABLE customers\"') WHERE position = 3",
  );
  const deleted = await tamper('DELETE FROM audit_events WHERE position = 5');
  assert.equal(deleted.firstBad!.position, 6);
  assert.match(deleted.firstBad!.problem, /deleted or moved/);
});

test('reordering and insertion are caught', async () => {
  const location = join(directory, 'store2');
  const store = await AuditStore.open(location);
  await store.append(session('s3', ['SELECT 1', 'SELECT 2']));
  await store.close();
  const tamper = async (sql: string) => {
    const db = await PGlite.create(location);
    await db.exec(
      `ALTER TABLE audit_events DISABLE TRIGGER ALL; ${sql}; ALTER TABLE audit_events ENABLE TRIGGER ALL;`,
    );
    await db.close();
    const reopened = await AuditStore.open(location);
    const result = await reopened.verify();
    await reopened.close();
    return result;
  };
  const swapped = await tamper(
    'UPDATE audit_events SET position = -2 WHERE position = 2; UPDATE audit_events SET position = 2 WHERE position = 3; UPDATE audit_events SET position = 3 WHERE position = -2',
  );
  assert.equal(swapped.firstBad!.position, 2);
  await tamper(
    'UPDATE audit_events SET position = -3 WHERE position = 3; UPDATE audit_events SET position = 3 WHERE position = 2; UPDATE audit_events SET position = 2 WHERE position = -3',
  );
  const restored = await AuditStore.open(location);
  assert.equal((await restored.verify()).ok, true, 'putting the events back in order verifies again');
  await restored.close();
  const inserted = await tamper(
    "UPDATE audit_events SET position = position + 1 WHERE position >= 2; INSERT INTO audit_events SELECT 2, 'forged', session_id, type, time, body, prev_hash, hash FROM audit_events WHERE position = 3",
  );
  // The copy itself is named: its id column is not the id its hashed body holds.
  assert.equal(inserted.ok, false);
  assert.equal(inserted.firstBad!.position, 2);
  assert.match(inserted.firstBad!.problem, /its id column does not match its hashed body/);
});

// The list summarizes in SQL what summarize() computes from the events: compared on random
// sessions (outcomes, masked counts or none, ends or not, events from another namespace under
// the same id), on PGlite and on PostgreSQL.
for (const kind of ['embedded', 'postgres'] as const) {
  test(
    `sessions() on ${kind === 'embedded' ? 'PGlite' : 'PostgreSQL'} agrees with summarize() over each session's events`,
    kind === 'postgres' ? requires('postgres', 'initdb') : {},
    async () => {
      const database = kind === 'postgres' ? await startPostgres() : undefined;
      const location = database
        ? `postgres://${encodeURIComponent(database.user)}:${encodeURIComponent(database.password)}@127.0.0.1:${database.port}/${database.database}`
        : join(directory, 'summaries');
      const store = await AuditStore.open(location);
      try {
        await fc.assert(
          fc.asyncProperty(
            fc.array(
              fc.record({
                namespace: fc.constantFrom('agents', 'other'),
                requests: fc.array(
                  fc.record({
                    outcome: fc.constantFrom(
                      'allowed',
                      'masked',
                      'blocked',
                      'approved',
                      'denied',
                      'expired',
                      'error',
                    ),
                    masked: fc.option(
                      fc.dictionary(fc.constantFrom('pii/email', 'cards/pan', 'x/y'), fc.nat(50)),
                      {
                        nil: undefined,
                      },
                    ),
                  }),
                  { maxLength: 6 },
                ),
                ended: fc.boolean(),
                planted: fc.boolean(),
              }),
              { minLength: 1, maxLength: 6 },
            ),
            fc.integer({ min: 1, max: 7 }),
            async (shapes, pageSize) => {
              const round = randomUUID().slice(0, 8);
              const batch: SessionEvent[] = [];
              shapes.forEach((shape, index) => {
                const sessionId = `${round}-${index}`;
                const base = (namespace: string, seq: number) => ({
                  version: 1 as const,
                  id: randomUUID(),
                  sessionId,
                  seq,
                  time: new Date(Date.UTC(2026, 10, 22, 0, index, seq)).toISOString(),
                  connection: { name: 'orders-db', namespace: 'data', protocol: 'postgres' },
                  identity: { namespace, serviceAccount: 'agent' },
                });
                batch.push({ ...base(shape.namespace, 0), type: 'session.start', client: { address: 'a' } });
                for (const [i, r] of shape.requests.entries())
                  batch.push({
                    ...base(shape.namespace, i + 1),
                    type: 'request',
                    text: 'SELECT 1',
                    outcome: r.outcome,
                    ...(r.masked && { masked: r.masked }),
                    durationMs: 1,
                  } as SessionEvent);
                // Another namespace's pod reuses the id: never part of this namespace's session.
                if (shape.planted)
                  batch.push({
                    ...base(shape.namespace === 'agents' ? 'other' : 'agents', 90),
                    type: 'request',
                    text: 'planted',
                    outcome: 'blocked',
                    masked: { 'pii/email': 7 },
                    durationMs: 1,
                  });
                if (shape.ended)
                  batch.push({
                    ...base(shape.namespace, 99),
                    type: 'session.end',
                    reason: 'done',
                    bytesIn: 1,
                    bytesOut: 1,
                  });
              });
              await store.append(batch);
              for (const namespace of ['agents', 'other']) {
                const { sessions: whole, next } = await store.sessions({ limit: 1000, namespace });
                assert.equal(next, undefined, 'all of them on one page');
                // Page by page, the same list: nothing skipped, nothing twice.
                const paged = [];
                let before: number | undefined;
                do {
                  const page = await store.sessions({ limit: pageSize, namespace, before });
                  assert.ok(page.sessions.length <= pageSize);
                  paged.push(...page.sessions);
                  before = page.next;
                } while (before !== undefined);
                assert.deepEqual(paged, whole);
                const listed = whole.filter((s) => s.id.startsWith(round));
                const expected = [];
                for (const [index, shape] of shapes.entries()) {
                  if (shape.namespace !== namespace) continue;
                  const shown = await store.session(`${round}-${index}`, namespace);
                  expected.push(summarize(`${round}-${index}`, shown!.events));
                }
                assert.deepEqual(listed, expected.reverse());
              }
              const all = (await store.sessions({ limit: 1000 })).sessions.filter((s) =>
                s.id.startsWith(round),
              );
              assert.equal(all.length, shapes.length, 'one entry per session id across namespaces');
            },
          ),
          { numRuns: 25 },
        );
      } finally {
        await store.close();
        await database?.stop();
      }
    },
  );
}

// Listings and `sessions show` read the id, session_id, type and time columns: an edit of any of
// them is named by verify like an edit of the body, on PGlite and on PostgreSQL.
for (const kind of ['embedded', 'postgres'] as const) {
  test(
    `verify on ${kind === 'embedded' ? 'PGlite' : 'PostgreSQL'} names an edit of each column a reader trusts`,
    kind === 'postgres' ? requires('postgres', 'initdb') : {},
    async () => {
      const database = kind === 'postgres' ? await startPostgres() : undefined;
      try {
        const edits: { column: string; sql: string }[] = [
          { column: 'id', sql: "SET id = 'forged-id'" },
          { column: 'session_id', sql: "SET session_id = 'other-session'" },
          { column: 'type', sql: "SET type = 'session.end'" },
          { column: 'type', sql: "SET type = 'session.start'" },
          { column: 'time', sql: "SET time = time - interval '1 day'" },
          { column: 'time', sql: "SET time = time + interval '1 microsecond'" },
        ];
        for (const [index, edit] of edits.entries()) {
          const name = `columns_${index}`;
          if (database) await database.admin(`CREATE DATABASE ${name} OWNER ${database.user}`);
          const location = database
            ? `postgres://${encodeURIComponent(database.user)}:${encodeURIComponent(database.password)}@127.0.0.1:${database.port}/${name}`
            : join(directory, name);
          const written = session(`cols-${index}`, ['SELECT 1', 'SELECT 2']);
          // A time with microseconds, as another writer may send it.
          written[2] = { ...written[2]!, time: '2026-11-22T10:11:12.345678+01:00' };
          const store = await AuditStore.open(location);
          await store.append(written);
          assert.deepEqual(await store.verify(), { ok: true, events: 4 }, 'clean before the edit');
          await store.close();
          const sql = `ALTER TABLE audit_events DISABLE TRIGGER ALL; UPDATE audit_events ${edit.sql} WHERE position = 3; ALTER TABLE audit_events ENABLE TRIGGER ALL`;
          if (database) await database.admin(sql, name);
          else {
            const db = await PGlite.create(location);
            await db.exec(sql);
            await db.close();
          }
          const reopened = await AuditStore.open(location);
          const result = await reopened.verify();
          await reopened.close();
          assert.equal(result.ok, false, `${edit.sql} is caught`);
          assert.equal(result.firstBad!.position, 3, edit.sql);
          assert.equal(result.firstBad!.id, written[2]!.id, `${edit.sql}: names the event by its hashed id`);
          assert.match(result.firstBad!.problem, new RegExp(`its ${edit.column} column .* edited`), edit.sql);
        }
      } finally {
        await database?.stop();
      }
    },
  );
}

test('microseconds reads an ISO time as PostgreSQL stores it', () => {
  assert.equal(microseconds('1970-01-01T00:00:01Z'), '1000000');
  assert.equal(microseconds('1970-01-01T00:00:01.5Z'), '1500000');
  assert.equal(microseconds('1970-01-01T01:00:01.000002+01:00'), '1000002');
  assert.equal(microseconds('1970-01-01T00:00:00.0000015Z'), '2');
  assert.equal(microseconds('1969-12-31T23:59:59.25Z'), '-750000');
  assert.equal(microseconds('not a time'), undefined);
  assert.equal(microseconds(42), undefined);
});
