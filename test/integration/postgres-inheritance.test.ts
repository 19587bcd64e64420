// A partition or an inheritance child holds its parent's rows under its own name, and a read of
// a parent returns its children's rows: a column rule on either covers the other, in results,
// in predicates and in COPY. Each read is shown to return the value when sent directly.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  type PostgresServer,
  policy,
  psql,
  startEnforcer,
  startPostgres,
  type TestEnforcer,
} from '../support/postgres.ts';

const secret = 'ssn-078051120';

let server: PostgresServer;
let enforcer: TestEnforcer;

before(async () => {
  server = await startPostgres();
  await server.asUser(`
    CREATE TABLE events (id int, ssn text) PARTITION BY RANGE (id);
    CREATE TABLE events_low PARTITION OF events FOR VALUES FROM (0) TO (100) PARTITION BY RANGE (id);
    CREATE TABLE events_lowest PARTITION OF events_low FOR VALUES FROM (0) TO (10);
    INSERT INTO events VALUES (1, '${secret}');
    CREATE TABLE customers (id int, name text, ssn text);
    CREATE TABLE vip (tier int) INHERITS (customers);
    INSERT INTO vip VALUES (3, 'Vi', '${secret}', 1);
    CREATE TABLE staff (id int, badge text);
    CREATE TABLE contractors (agency text) INHERITS (staff);
    INSERT INTO contractors VALUES (4, '${secret}', 'acme');
    CREATE VIEW vip_view AS SELECT id, ssn AS contact FROM vip;
  `);
  enforcer = await startEnforcer(server, [
    policy('pii', {
      masking: [
        {
          name: 'pii',
          // Rules on the parents, and one on a child.
          columns: ['public.events.ssn', 'public.customers.ssn', 'public.contractors.badge'],
          strategy: 'redact',
          indirectUse: 'deny',
        },
      ],
    }),
  ]);
});

after(async () => {
  await enforcer?.close();
  await server?.stop();
});

/** What the agent gets through the enforcer; sent directly, the read returns the value. */
async function outcome(sql: string, reveals = true): Promise<'leaked' | 'masked' | 'denied'> {
  if (reveals) {
    const direct = await server.asUser(sql);
    assert.ok(JSON.stringify(direct.rows).includes(secret), `direct: ${sql}`);
  }
  const result = await psql(enforcer, `${sql};\nSELECT 'still-up';`, { args: ['-At'] });
  assert.match(result.stdout, /still-up/, `${sql}\n${result.stderr}`);
  if (result.stdout.includes(secret) || result.stderr.includes(secret)) return 'leaked';
  return /airlock: statement denied/.test(result.stderr) ? 'denied' : 'masked';
}

describe('postgres enforcer: partitions and inheritance', () => {
  test('a partition or child read directly is masked by the rule on its parent, at any depth', async () => {
    for (const sql of [
      'SELECT ssn FROM events_low',
      'SELECT * FROM events_lowest',
      'SELECT ssn FROM ONLY events_lowest',
      'SELECT * FROM public.vip',
      'SELECT "ssn" FROM "vip" v',
      'SELECT contact FROM vip_view',
    ]) {
      assert.equal(await outcome(sql), 'masked', sql);
    }
  });

  test('a parent read is masked by the rule on its child', async () => {
    for (const sql of ['SELECT badge FROM staff', 'SELECT * FROM staff', 'TABLE staff']) {
      assert.equal(await outcome(sql), 'masked', sql);
    }
  });

  test("a predicate or COPY on the child's column is a use of the parent's, and the other way round", async () => {
    // Directly, each predicate answers whether the value is what the agent guessed.
    assert.equal((await server.asUser("SELECT id FROM events_low WHERE ssn LIKE 'ssn-0%'")).rows.length, 1);
    for (const sql of [
      "SELECT id FROM events_low WHERE ssn LIKE 'ssn-0%'",
      "SELECT id FROM events_lowest WHERE ssn = '" + secret + "'",
      'SELECT id FROM vip ORDER BY ssn',
      "SELECT id FROM staff WHERE badge LIKE 'ssn%'",
      'COPY events_low TO STDOUT',
      'COPY vip (id, ssn) TO STDOUT',
      'COPY (SELECT * FROM staff) TO STDOUT',
    ]) {
      assert.equal(await outcome(sql, false), 'denied', sql);
    }
  });

  test('columns no rule names still pass', async () => {
    const result = await psql(enforcer, 'SELECT id, name, tier FROM vip; SELECT agency FROM contractors;', {
      args: ['-At'],
    });
    assert.equal(result.stdout, '3|Vi|1\nacme\n', result.stderr);
  });
});
