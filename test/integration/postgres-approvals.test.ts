// Statements held for approval: approved, denied, expired, capped inside a transaction.
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import pg from 'pg';
import type { RequestEvent } from '../../api/events.ts';
import type { ApprovalRequest, ApprovalResult, Approvals } from '../../sidecar/core/enforcer.ts';
import { encodeCancelRequest, query } from '../../sidecar/postgres/messages.ts';
import {
  type PostgresServer,
  policy,
  RawClient,
  startEnforcer,
  startPostgres,
  type TestEnforcer,
} from '../support/postgres.ts';

interface Held {
  req: ApprovalRequest;
  signal: AbortSignal | undefined;
  decide: (result: ApprovalResult) => void;
}

/** An Approvals hook the test decides by hand. */
class ManualApprovals implements Approvals {
  requests: Held[] = [];
  private waiters: (() => void)[] = [];
  request(req: ApprovalRequest, signal?: AbortSignal): Promise<ApprovalResult> {
    return new Promise((resolve) => {
      this.requests.push({ req, signal, decide: resolve });
      for (const w of this.waiters.splice(0)) w();
    });
  }
  async next(): Promise<Held> {
    while (this.requests.length === 0) await new Promise<void>((r) => this.waiters.push(r));
    return this.requests.shift()!;
  }
}

const approvals = new ManualApprovals();
let server: PostgresServer;
let enforcer: TestEnforcer;

const rules = policy('careful', {
  rules: [
    {
      name: 'hold-deletes',
      action: 'require-approval',
      sql: { statements: ['DELETE'] },
      // Long enough for a test to look at the table before it decides, on a slow machine too.
      approval: { approvers: { users: ['alice'] }, timeout: '4s', scope: 'statement' },
    },
    {
      name: 'hold-updates-per-session',
      action: 'require-approval',
      sql: { statements: ['UPDATE'] },
      approval: { approvers: { users: ['alice'] }, timeout: '10s', scope: 'session' },
    },
  ],
});

before(async () => {
  server = await startPostgres();
  enforcer = await startEnforcer(server, [rules], { approvals, transactionHoldMs: 500 });
});

beforeEach(async () => {
  await server.asUser(
    'DROP TABLE IF EXISTS t; CREATE TABLE t (id int, v int); INSERT INTO t SELECT g, 0 FROM generate_series(1, 5) g',
  );
});

after(async () => {
  await enforcer?.close();
  await server?.stop();
});

async function count(): Promise<number> {
  return (await server.asUser('SELECT count(*)::int AS n FROM t')).rows[0].n;
}

const requestEvents = () => enforcer.events.filter((e): e is RequestEvent => e.type === 'request');

describe('approvals', () => {
  test('a held DELETE runs once approved', async () => {
    const c = new pg.Client(enforcer.client);
    await c.connect();
    const running = c.query('DELETE FROM t WHERE id = 1');
    const held = await approvals.next();
    assert.equal(held.req.connection, 'orders-db');
    assert.equal(held.req.policy, 'careful');
    assert.equal(held.req.rule, 'hold-deletes');
    assert.equal(held.req.text, 'DELETE FROM t WHERE id = 1');
    assert.equal(held.req.timeoutMs, 4000);
    assert.equal(held.req.scope, 'statement');
    assert.deepEqual(held.req.approvers, { groups: [], users: ['alice'] });
    const start = enforcer.events.find(
      (e) => e.type === 'session.start' && e.sessionId === held.req.sessionId,
    );
    assert.ok(start, 'the request names the session');
    assert.equal(await count(), 5, 'nothing runs while held');
    held.decide({ approved: true, outcome: 'approved', decidedBy: 'alice', request: 'ar-1' });
    assert.equal((await running).rowCount, 1);
    assert.equal(await count(), 4);
    await c.end();
    const event = requestEvents().find((e) => e.text === 'DELETE FROM t WHERE id = 1');
    assert.equal(event?.outcome, 'approved');
    assert.deepEqual(event?.approval, { request: 'ar-1', decidedBy: 'alice' });
    assert.equal(event?.rows, 1);
  });

  test('a denied DELETE (extended protocol) fails with 42501 and does not run', async () => {
    const c = new pg.Client(enforcer.client);
    await c.connect();
    const running = c.query({ text: 'DELETE FROM t WHERE id = $1', values: [2] });
    const held = await approvals.next();
    assert.equal(held.req.text, 'DELETE FROM t WHERE id = $1');
    // Parse and Bind already opened an implicit transaction upstream: the wait is capped.
    assert.equal(held.req.timeoutMs, 500);
    held.decide({ approved: false, outcome: 'denied', decidedBy: 'alice', reason: 'not today' });
    await assert.rejects(running, (error: pg.DatabaseError) => {
      assert.equal(error.code, '42501');
      assert.match(error.message, /denied/);
      assert.match(error.message, /not today/);
      return true;
    });
    assert.equal(await count(), 5);
    assert.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1);
    await c.end();
  });

  test('an undecided DELETE expires with 42501', async () => {
    const c = new pg.Client(enforcer.client);
    await c.connect();
    const started = Date.now();
    const running = c.query('DELETE FROM t');
    await approvals.next();
    await assert.rejects(running, (error: pg.DatabaseError) => {
      assert.equal(error.code, '42501');
      assert.match(error.message, /expired/);
      return true;
    });
    assert.ok(Date.now() - started >= 3900);
    assert.equal(await count(), 5);
    await c.end();
    assert.ok(requestEvents().some((e) => e.text === 'DELETE FROM t' && e.outcome === 'expired'));
  });

  test('an approval system that reports expiry fails the statement as expired', async () => {
    const c = new pg.Client(enforcer.client);
    await c.connect();
    const running = assert.rejects(c.query('DELETE FROM t WHERE id = 2'), /expired/);
    (await approvals.next()).decide({ approved: false, outcome: 'expired' });
    await running;
    assert.equal(await count(), 5);
    await c.end();
  });

  test('inside a transaction the hold is capped, and expiry fails the transaction', async () => {
    const c = new pg.Client(enforcer.client);
    await c.connect();
    await c.query('BEGIN');
    const started = Date.now();
    const running = c.query('DELETE FROM t WHERE id = 3');
    const held = await approvals.next();
    assert.equal(held.req.timeoutMs, 500);
    await assert.rejects(running, { code: '42501' });
    assert.ok(Date.now() - started < 3900, "capped, not the rule's 4 s");
    await assert.rejects(c.query('SELECT 1'), { code: '25P02' });
    await c.query('ROLLBACK');
    await c.end();
  });

  test('messages after a held statement wait for the decision', async () => {
    const raw = await RawClient.session(enforcer.host, enforcer.port);
    raw.send(query('DELETE FROM t WHERE id = 4'), query("SELECT 'after'"));
    const held = await approvals.next();
    await new Promise((r) => setTimeout(r, 200));
    held.decide({ approved: true, outcome: 'approved', decidedBy: 'alice' });
    const first = await raw.until('Z');
    const second = await raw.until('Z');
    assert.deepEqual(
      first.map((f) => f.type),
      ['C', 'Z'],
    );
    assert.match(first[0]?.body.toString() ?? '', /DELETE 1/);
    assert.deepEqual(
      second.map((f) => f.type),
      ['T', 'D', 'C', 'Z'],
    );
    raw.close();
  });

  test('session scope lets the rest of the session through', async () => {
    const c = new pg.Client(enforcer.client);
    await c.connect();
    const first = c.query('UPDATE t SET v = 1 WHERE id = 1');
    (await approvals.next()).decide({ approved: true, outcome: 'approved', decidedBy: 'alice' });
    await first;
    await c.query('UPDATE t SET v = 2 WHERE id = 2');
    assert.equal(approvals.requests.length, 0);
    await c.end();
    // A new session asks again.
    const d = new pg.Client(enforcer.client);
    await d.connect();
    const again = d.query('UPDATE t SET v = 3 WHERE id = 3');
    (await approvals.next()).decide({ approved: false, outcome: 'denied', decidedBy: 'alice' });
    await assert.rejects(again, { code: '42501' });
    await d.end();
  });
});

describe('approvals and cancel', () => {
  test('a CancelRequest ends the wait with 57014, and the statement does not run', async () => {
    const c = new pg.Client(enforcer.client);
    await c.connect();
    const running = assert.rejects(c.query('DELETE FROM t WHERE id = 5'), { code: '57014' });
    await approvals.next();
    const key = c as unknown as { processID: number; secretKey: number };
    const cancel = await RawClient.connect(enforcer.host, enforcer.port);
    cancel.send(encodeCancelRequest(key.processID, key.secretKey));
    await running;
    assert.equal(await count(), 5);
    assert.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1);
    await c.end();
  });

  test('PREPARE and EXECUTE: EXECUTE is held like the statement it runs', async () => {
    const c = new pg.Client(enforcer.client);
    await c.connect();
    // Preparing it is held too (the policy sees the DELETE inside); approve that.
    const preparing = c.query('PREPARE wipe AS DELETE FROM t');
    (await approvals.next()).decide({ approved: true, outcome: 'approved', decidedBy: 'alice' });
    await preparing;
    const running = assert.rejects(c.query('EXECUTE wipe'), { code: '42501' });
    const held = await approvals.next();
    assert.equal(held.req.rule, 'hold-deletes');
    held.decide({ approved: false, outcome: 'denied' });
    await running;
    const same = assert.rejects(c.query('PREPARE wipe2 AS DELETE FROM t; EXECUTE wipe2'), { code: '42501' });
    (await approvals.next()).decide({ approved: false, outcome: 'denied' });
    await same;
    assert.equal(await count(), 5);
    await c.end();
  });
});

describe('approvals and disconnects', () => {
  test('a client that goes away while held withdraws the request; nothing runs', async () => {
    const raw = await RawClient.session(enforcer.host, enforcer.port);
    raw.send(query('DELETE FROM t WHERE id = 1'));
    const held = await approvals.next();
    assert.equal(held.signal?.aborted, false);
    raw.close();
    const deadline = Date.now() + 5000;
    while (!held.signal?.aborted && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal(held.signal?.aborted, true);
    held.decide({ approved: true, outcome: 'approved', decidedBy: 'alice' });
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(await count(), 5);
  });
});
