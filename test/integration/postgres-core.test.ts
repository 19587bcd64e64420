// The PostgreSQL enforcer against a real server with real clients: psql and the pg driver.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import type { RequestEvent } from '../../api/events.ts';
import { encodeCancelRequest } from '../../sidecar/postgres/messages.ts';
import {
  type PostgresServer,
  policy,
  psql,
  RawClient,
  startEnforcer,
  startPostgres,
  type TestEnforcer,
} from '../support/postgres.ts';

const rules = policy('agents-orders', {
  rules: [
    {
      name: 'no-drop',
      action: 'deny',
      message: 'dropping tables is not allowed',
      sql: { statements: ['DROP'] },
    },
    { name: 'no-truncate', action: 'deny', sql: { statements: ['TRUNCATE'] } },
  ],
});

let server: PostgresServer;
let enforcer: TestEnforcer;

before(async () => {
  server = await startPostgres();
  await server.asUser(`
    CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, price numeric(10,2), tags text[], data jsonb);
    INSERT INTO items SELECT g, 'item ' || g, g * 1.5, ARRAY['a', 'b'], jsonb_build_object('n', g) FROM generate_series(1, 50) g;
  `);
  enforcer = await startEnforcer(server, [rules]);
});

after(async () => {
  await enforcer?.close();
  await server?.stop();
});

function client(extra: Partial<pg.ClientConfig> = {}): pg.Client {
  return new pg.Client({ ...enforcer.client, ...extra });
}

const requests = () => enforcer.events.filter((e): e is RequestEvent => e.type === 'request');

describe('postgres enforcer: sessions', () => {
  test('psql connects with a wrong password and runs as the held user', async () => {
    const result = await psql(enforcer, 'SELECT current_user, current_database();', { args: ['-At'] });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.trim(), `${server.user}|${server.database}`);
  });

  test('psql without any password works too', async () => {
    const result = await psql(enforcer, 'SELECT 40 + 2;', { args: ['-At', '-w'], env: { PGPASSWORD: '' } });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.trim(), '42');
  });

  test('the client never learns the upstream backend key', async () => {
    const c = client();
    await c.connect();
    const { rows } = await c.query('SELECT pg_backend_pid() AS pid');
    const seen = (c as unknown as { processID: number }).processID;
    assert.notEqual(seen, rows[0].pid);
    await c.end();
  });
});

describe('postgres enforcer: statements', () => {
  test('simple and extended protocol, text results', async () => {
    const c = client();
    await c.connect();
    const simple = await c.query('SELECT count(*)::int AS n FROM items');
    assert.equal(simple.rows[0].n, 50);
    const extended = await c.query({ text: 'SELECT id, name, price FROM items WHERE id = $1', values: [7] });
    assert.deepEqual(extended.rows, [{ id: 7, name: 'item 7', price: '10.50' }]);
    const named = { name: 'by-id', text: 'SELECT name FROM items WHERE id = $1' };
    assert.equal((await c.query({ ...named, values: [1] })).rows[0].name, 'item 1');
    assert.equal((await c.query({ ...named, values: [2] })).rows[0].name, 'item 2');
    await c.end();
  });

  test('binary results', async () => {
    const c = client();
    await c.connect();
    const result = await c.query({
      text: 'SELECT id, name, tags, data FROM items WHERE id = $1',
      values: [3],
      binary: true,
    } as pg.QueryConfig);
    assert.equal(result.rows.length, 1);
    assert.equal(result.rows[0].id, 3);
    assert.equal(result.rows[0].name, 'item 3');
    await c.end();
  });

  test('multi-statement simple query', async () => {
    const result = await psql(enforcer, "SELECT 1; SELECT 'two'; SELECT 3", { args: ['-At'] });
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(result.stdout.trim().split('\n'), ['1', 'two', '3']);
  });

  test('DROP is denied with 42501 naming the policy and rule, simple protocol', async () => {
    const c = client();
    await c.connect();
    await assert.rejects(c.query('DROP TABLE items'), (error: pg.DatabaseError) => {
      assert.equal(error.code, '42501');
      assert.match(error.message, /airlock/i);
      assert.match(error.message, /agents-orders/);
      assert.match(error.message, /no-drop/);
      return true;
    });
    // The session goes on.
    assert.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1);
    await c.end();
    assert.equal((await server.asUser('SELECT count(*)::int AS n FROM items')).rows[0].n, 50);
    const event = requests().find((e) => e.text === 'DROP TABLE items');
    assert.ok(event);
    assert.equal(event.outcome, 'blocked');
    assert.equal(event.policy, 'agents-orders');
    assert.equal(event.rule, 'no-drop');
    assert.equal(event.error?.code, 'policy-denied');
    assert.equal(event.error?.wire, '42501');
  });

  test('DROP is denied at Parse in the extended protocol', async () => {
    const c = client();
    await c.connect();
    await assert.rejects(c.query({ text: 'DROP TABLE items', values: [] }), (error: pg.DatabaseError) => {
      assert.equal(error.code, '42501');
      assert.match(error.message, /no-drop/);
      return true;
    });
    await assert.rejects(c.query({ name: 'dropper', text: 'DROP TABLE items' }), { code: '42501' });
    assert.equal((await c.query({ text: 'SELECT $1::int AS v', values: [5] })).rows[0].v, 5);
    await c.end();
    assert.equal((await server.asUser('SELECT count(*)::int AS n FROM items')).rows[0].n, 50);
  });

  test('a multi-statement query with one denied statement runs nothing', async () => {
    const c = client();
    await c.connect();
    await assert.rejects(c.query("INSERT INTO items VALUES (1000, 'sneaky'); DROP TABLE items"), {
      code: '42501',
    });
    await c.end();
    assert.equal((await server.asUser('SELECT count(*)::int AS n FROM items WHERE id = 1000')).rows[0].n, 0);
  });

  test('a denied statement inside a transaction fails the transaction (E), like a server error', async () => {
    const script = [
      'BEGIN;',
      "INSERT INTO items VALUES (2000, 'in tx');",
      'DROP TABLE items;',
      '\\echo denied :LAST_ERROR_SQLSTATE',
      'SELECT 1;',
      '\\echo after :LAST_ERROR_SQLSTATE',
      'ROLLBACK;',
      'SELECT count(*) FROM items WHERE id = 2000;',
    ].join('\n');
    const result = await psql(enforcer, script, { args: ['-At'] });
    assert.match(result.stdout, /denied 42501/);
    assert.match(result.stdout, /after 25P02/);
    assert.match(result.stdout, /^0$/m);
    assert.match(result.stderr, /no-drop/);
  });

  test('driver sees the aborted transaction after a denial, and can roll back', async () => {
    const c = client();
    await c.connect();
    await c.query('BEGIN');
    await assert.rejects(c.query({ text: 'TRUNCATE items', values: [] }), { code: '42501' });
    await assert.rejects(c.query('SELECT 1'), { code: '25P02' });
    await c.query('ROLLBACK');
    assert.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1);
    await c.end();
  });

  test('a denied statement in an implicit extended-protocol transaction leaves status idle', async () => {
    const c = client();
    await c.connect();
    await assert.rejects(c.query({ text: 'DROP TABLE items', values: [] }), { code: '42501' });
    const { rows } = await c.query(
      "SELECT current_setting('transaction_isolation') AS iso, now() = statement_timestamp() AS fresh",
    );
    assert.equal(rows[0].fresh, true);
    await c.end();
  });

  test('server errors are relayed unchanged', async () => {
    const c = client();
    await c.connect();
    await assert.rejects(c.query('SELECT * FROM nope'), { code: '42P01' });
    await assert.rejects(c.query({ text: 'SELECT $1::int', values: ['x'] }), { code: '22P02' });
    await c.end();
    for (const text of ['SELECT * FROM nope', 'SELECT $1::int']) {
      const event = requests().find((e) => e.text === text);
      assert.equal(event?.outcome, 'error', text);
      assert.equal(event?.error?.code, 'target-error', text);
      assert.ok(event?.error?.wire === '42P01' || event?.error?.wire === '22P02');
    }
    // Bound values never reach events, even when the server's message quotes them.
    const bindError = requests().find((e) => e.text === 'SELECT $1::int');
    assert.match(bindError?.error?.message ?? '', /withheld/);
  });

  test('COPY in and out through psql', async () => {
    const script = [
      'CREATE TABLE copied (id int, note text);',
      'COPY copied FROM STDIN;',
      '1\tfirst',
      '2\tsecond',
      '\\.',
      'COPY copied TO STDOUT;',
      'COPY (SELECT id, note FROM copied ORDER BY id) TO STDOUT WITH (FORMAT csv);',
    ].join('\n');
    const result = await psql(enforcer, script, { args: ['-At', '-v', 'ON_ERROR_STOP=1'] });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, '1\tfirst\n2\tsecond\n1,first\n2,second\n');
    assert.equal((await server.asUser('SELECT count(*)::int AS n FROM copied')).rows[0].n, 2);
    const copy = requests().find((e) => e.text === 'COPY copied FROM STDIN');
    assert.equal(copy?.rows, 2);
  });

  test('CancelRequest with the enforcer key cancels the upstream query', async () => {
    const c = client();
    await c.connect();
    const started = Date.now();
    const sleeping = assert.rejects(c.query('SELECT pg_sleep(20)'), { code: '57014' });
    await new Promise((r) => setTimeout(r, 300));
    const key = c as unknown as { processID: number; secretKey: number };
    // A wrong key cancels nothing.
    const wrong = await RawClient.connect(enforcer.host, enforcer.port);
    wrong.send(encodeCancelRequest(key.processID, key.secretKey ^ 1));
    assert.deepEqual(await wrong.until('never'), []);
    await new Promise((r) => setTimeout(r, 300));
    // The right one, on a new connection as libpq does it: the enforcer cancels upstream.
    const cancel = await RawClient.connect(enforcer.host, enforcer.port);
    cancel.send(encodeCancelRequest(key.processID, key.secretKey));
    assert.deepEqual(await cancel.until('never'), []);
    await sleeping;
    assert.ok(Date.now() - started < 10_000);
    assert.ok(Date.now() - started > 250, 'the wrong key must not have cancelled the query');
    assert.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1);
    await c.end();
  });

  test('events: session start and end, one request per statement with rows', async () => {
    const before = enforcer.events.length;
    const result = await psql(enforcer, 'SELECT id FROM items WHERE id <= 3; SELECT 1', { args: ['-At'] });
    assert.equal(result.code, 0);
    await new Promise((r) => setTimeout(r, 100));
    const mine = enforcer.events.slice(before);
    const start = mine.find((e) => e.type === 'session.start');
    assert.ok(start);
    const session = mine.filter((e) => e.sessionId === start.sessionId);
    assert.deepEqual(
      session.map((e) => e.type),
      ['session.start', 'request', 'request', 'session.end'],
    );
    const [first, second] = session.filter((e): e is RequestEvent => e.type === 'request');
    assert.equal(first?.text, 'SELECT id FROM items WHERE id <= 3');
    assert.equal(first?.rows, 3);
    assert.equal(second?.rows, 1);
    assert.deepEqual(
      session.map((e) => e.seq),
      [0, 1, 2, 3],
    );
  });
});

describe('postgres enforcer: audit mode and asynchronous messages', () => {
  test('audit mode lets a DROP through and records what would have happened', async () => {
    await server.asUser('CREATE TABLE scratch (id int)');
    const audit = await startEnforcer(server, [{ ...rules, name: 'dry-run', mode: 'audit' }]);
    try {
      const c = client({ port: audit.port });
      await c.connect();
      await c.query('DROP TABLE scratch');
      await c.end();
      await new Promise((r) => setTimeout(r, 50));
      const event = audit.events.find(
        (e): e is RequestEvent => e.type === 'request' && e.text === 'DROP TABLE scratch',
      );
      assert.equal(event?.outcome, 'allowed');
      assert.ok(
        event?.wouldHave?.some((w) => w.action === 'deny' && w.policy === 'dry-run' && w.rule === 'no-drop'),
        JSON.stringify(event),
      );
      const { rows } = await server.asUser("SELECT to_regclass('scratch') IS NULL AS gone");
      assert.equal(rows[0].gone, true);
    } finally {
      await audit.close();
    }
  });

  test('ParameterStatus changes reach the client at any time', async () => {
    const c = client();
    await c.connect();
    const seen: [string, string][] = [];
    (c as unknown as { connection: NodeJS.EventEmitter }).connection.on(
      'parameterStatus',
      (m: { parameterName: string; parameterValue: string }) =>
        seen.push([m.parameterName, m.parameterValue]),
    );
    await c.query("SET application_name = 'renamed-agent'");
    assert.deepEqual(seen, [['application_name', 'renamed-agent']]);
    await c.end();
  });
});
