import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import type { SessionEvent } from '../api/events.ts';
import {
  backendName,
  backendOptions,
  backends,
  startBackend,
  type TestBackend,
} from '../test/support/audit-backends.ts';
import { AuditStore, canonical, summarize } from './store.ts';
import { microseconds } from './time.ts';

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

// Every test runs on both databases: the hash chain, the append-only triggers, the listings and
// verify must mean the same on each.
for (const kind of backends) {
  describe(`the audit store on ${backendName(kind)}`, backendOptions(kind), () => {
    let backend: TestBackend;
    before(async () => {
      backend = await startBackend(kind);
    });
    after(() => backend.stop());
    /** SQL that sets an event's statement text in its body. */
    const setText = (text: string) =>
      kind === 'postgres'
        ? `body = jsonb_set(body, '{text}', '"${text}"')`
        : `body = json_set(body, '$.text', '${text}')`;
    /** Verify's answer after history was rewritten with the triggers off. */
    const tamper = async (location: string, sql: string) => {
      await backend.tamper(location, sql);
      const reopened = await AuditStore.open(location);
      try {
        return await reopened.verify();
      } finally {
        await reopened.close();
      }
    };

    test('appends, dedupes resends, summarizes and verifies; every kind of tampering is caught', async () => {
      const location = await backend.fresh('store1');
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
      await store.close();
      await assert.rejects(
        backend.exec(location, `UPDATE audit_events SET ${setText('SELECT 1')} WHERE position = 3`),
        /append-only/,
      );
      await assert.rejects(
        backend.exec(location, 'DELETE FROM audit_events WHERE position = 9'),
        /append-only/,
      );

      // Whoever turns the triggers off can edit, delete, insert and reorder: verify names the event.
      const edited = await tamper(
        location,
        `UPDATE audit_events SET ${setText('SELECT 1')} WHERE position = 3`,
      );
      assert.equal(edited.ok, false);
      assert.equal(edited.firstBad!.position, 3);
      assert.match(edited.firstBad!.problem, /edited/);
      await tamper(location, `UPDATE audit_events SET ${setText('DROP TABLE customers')} WHERE position = 3`);
      const deleted = await tamper(location, 'DELETE FROM audit_events WHERE position = 5');
      assert.equal(deleted.firstBad!.position, 6);
      assert.match(deleted.firstBad!.problem, /deleted or moved/);
    });

    test('reordering and insertion are caught', async () => {
      const location = await backend.fresh('store2');
      const store = await AuditStore.open(location);
      await store.append(session('s3', ['SELECT 1', 'SELECT 2']));
      await store.close();
      const swap =
        'UPDATE audit_events SET position = -2 WHERE position = 2; UPDATE audit_events SET position = 2 WHERE position = 3; UPDATE audit_events SET position = 3 WHERE position = -2';
      const swapped = await tamper(location, swap);
      assert.equal(swapped.firstBad!.position, 2);
      assert.equal(
        (await tamper(location, swap)).ok,
        true,
        'putting the events back in order verifies again',
      );
      const inserted = await tamper(
        location,
        "UPDATE audit_events SET position = -position WHERE position >= 2; UPDATE audit_events SET position = 1 - position WHERE position < 0; INSERT INTO audit_events SELECT 2, 'forged', session_id, type, time, body, prev_hash, hash FROM audit_events WHERE position = 3",
      );
      // The copy itself is named: its id column is not the id its hashed body holds.
      assert.equal(inserted.ok, false);
      assert.equal(inserted.firstBad!.position, 2);
      assert.match(inserted.firstBad!.problem, /its id column does not match its hashed body/);
    });

    test('prune drops the oldest events inside its own transaction; the chain verifies from its genesis', async () => {
      const location = await backend.fresh('pruned');
      const store = await AuditStore.open(location, { key: Buffer.from('k'.repeat(40)) });
      const old = session('old', ['SELECT 1']).map((e) => ({ ...e, time: '2026-01-01T00:00:00.000001Z' }));
      await store.append([...old, ...session('new', ['SELECT 2'])]);
      assert.deepEqual(await store.prune(new Date('2026-01-01T00:00:00.000Z')), { pruned: 0, through: 0 });
      assert.deepEqual(await store.prune(new Date('2026-01-02T00:00:00Z')), { pruned: 3, through: 3 });
      assert.deepEqual(await store.verify(), { ok: true, events: 3, anchored: true, prunedThrough: 3 });
      assert.equal(await store.head(), 6);
      await store.close();
      await assert.rejects(
        backend.exec(location, 'DELETE FROM audit_events WHERE position = 4'),
        /append-only/,
      );
    });

    // The list summarizes in SQL what summarize() computes from the events: compared on random
    // sessions (outcomes, masked counts or none, ends or not, events from another namespace under
    // the same id).
    test("sessions() agrees with summarize() over each session's events", async () => {
      const location = await backend.fresh('summaries');
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
      }
    });

    // Listings and `sessions show` read the id, session_id, type and time columns: an edit of any
    // of them is named by verify like an edit of the body.
    test('verify names an edit of each column a reader trusts', async () => {
      const day = kind === 'postgres' ? "interval '1 day'" : '86400000000';
      const microsecond = kind === 'postgres' ? "interval '1 microsecond'" : '1';
      const edits: { column: string; sql: string }[] = [
        { column: 'id', sql: "SET id = 'forged-id'" },
        { column: 'session_id', sql: "SET session_id = 'other-session'" },
        { column: 'type', sql: "SET type = 'session.end'" },
        { column: 'type', sql: "SET type = 'session.start'" },
        { column: 'time', sql: `SET time = time - ${day}` },
        { column: 'time', sql: `SET time = time + ${microsecond}` },
      ];
      for (const [index, edit] of edits.entries()) {
        const location = await backend.fresh(`columns_${index}`);
        const written = session(`cols-${index}`, ['SELECT 1', 'SELECT 2']);
        // A time with microseconds, as another writer may send it.
        written[2] = { ...written[2]!, time: '2026-11-22T10:11:12.345678+01:00' };
        const store = await AuditStore.open(location);
        await store.append(written);
        assert.deepEqual(await store.verify(), { ok: true, events: 4 }, 'clean before the edit');
        await store.close();
        const result = await tamper(location, `UPDATE audit_events ${edit.sql} WHERE position = 3`);
        assert.equal(result.ok, false, `${edit.sql} is caught`);
        assert.equal(result.firstBad!.position, 3, edit.sql);
        assert.equal(result.firstBad!.id, written[2]!.id, `${edit.sql}: names the event by its hashed id`);
        assert.match(result.firstBad!.problem, new RegExp(`its ${edit.column} column .* edited`), edit.sql);
      }
    });
  });
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
