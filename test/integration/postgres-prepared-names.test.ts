// A prepared statement has one name on the server whichever way it was made: Parse in the
// extended protocol and PREPARE in SQL share the namespace, so EXECUTE name runs what a Parse
// made and Bind runs what a PREPARE made. Each crossing is decided on the statement it runs.
// And a DO block, code the analysis cannot read, is decided as any statement it could run.
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import { bind, close, encodeStartup, execute, parse, query, sync } from '../../sidecar/postgres/messages.ts';
import {
  type PostgresServer,
  policy,
  RawClient,
  type RawFrame,
  startEnforcer,
  startPostgres,
  type TestEnforcer,
} from '../support/postgres.ts';

let server: PostgresServer;
/** DELETE is denied, UPDATE held: a PREPARE of it is approved, nothing else. */
let enforcer: TestEnforcer;
const asked: string[] = [];

const count = async (sql: string) => Number((await server.asUser(sql)).rows[0].n);

before(async () => {
  server = await startPostgres();
  enforcer = await startEnforcer(
    server,
    [
      policy('careful', {
        rules: [
          { name: 'no-deletes', action: 'deny', sql: { statements: ['DELETE'] } },
          {
            name: 'hold-updates',
            action: 'require-approval',
            sql: { statements: ['UPDATE'] },
            approval: { approvers: { users: ['alice'] }, timeout: '1s', scope: 'statement' },
          },
        ],
      }),
    ],
    {
      approvals: {
        request: async (req) => {
          asked.push(req.text);
          const approved = /^PREPARE/i.test(req.text);
          return { approved, outcome: approved ? 'approved' : 'denied' };
        },
      },
    },
  );
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

const rows = () => count('SELECT count(*) AS n FROM t');
const touched = () => count('SELECT count(*) AS n FROM t WHERE v <> 0');

async function session(): Promise<RawClient> {
  return RawClient.session(enforcer.host, enforcer.port);
}

function errorsOf(frames: RawFrame[]): string[] {
  return frames.filter((f) => f.type === 'E').map((f) => `${f.fields?.get('C')} ${f.fields?.get('M')}`);
}

describe('postgres enforcer: prepared statement names shared by Parse and PREPARE', () => {
  test('directly, EXECUTE runs what a Parse prepared, and Bind runs what a PREPARE prepared', async () => {
    const direct = await RawClient.connect(server.socketDir, server.port);
    try {
      direct.send(
        encodeStartup([
          ['user', server.user],
          ['database', server.database],
        ]),
      );
      await direct.until('Z');
      direct.send(parse('p', 'DELETE FROM t WHERE id = 1'), sync());
      await direct.until('Z');
      direct.send(query('EXECUTE p'));
      await direct.until('Z');
      direct.send(query('PREPARE q AS DELETE FROM t WHERE id = 2'));
      await direct.until('Z');
      direct.send(bind('', 'q'), execute(''), sync());
      await direct.until('Z');
      assert.equal(await rows(), 3);
    } finally {
      direct.close();
    }
  });

  test('EXECUTE of a name a Parse prepared is decided on the statement the Parse carried', async () => {
    const agent = await session();
    try {
      agent.send(parse('p', 'UPDATE t SET v = 1'), sync());
      assert.deepEqual(errorsOf(await agent.until('Z')), []);
      for (const text of [
        'EXECUTE p',
        'execute "p"',
        'EXPLAIN ANALYZE EXECUTE p',
        'CREATE TABLE copied AS EXECUTE p',
        'SELECT 1; EXECUTE p',
      ]) {
        agent.send(query(text));
        const errors = errorsOf(await agent.until('Z', 15_000));
        assert.equal(errors.length, 1, `${text}: ${errors}`);
        assert.match(errors[0]!, /^42501 /, text);
      }
      assert.equal(await touched(), 0);
    } finally {
      agent.close();
    }
  });

  test('Bind to a name a PREPARE made is decided on the PREPAREd statement, each time', async () => {
    const agent = await session();
    try {
      agent.send(query('PREPARE u AS UPDATE t SET v = 1'));
      assert.deepEqual(errorsOf(await agent.until('Z')), []);
      for (const portal of ['', 'named']) {
        agent.send(bind(portal, 'u'), execute(portal), sync());
        const errors = errorsOf(await agent.until('Z', 15_000));
        assert.equal(errors.length, 1, `${portal}: ${errors}`);
        assert.match(errors[0]!, /^42501 /, portal);
      }
      assert.equal(await touched(), 0);
      assert.ok(asked.includes('UPDATE t SET v = 1'), asked.join('\n'));
    } finally {
      agent.close();
    }
  });

  test('a Parse the server refuses (the name exists) does not stand in for the statement it holds', async () => {
    const agent = await session();
    try {
      agent.send(parse('p', 'UPDATE t SET v = 1'), sync());
      assert.deepEqual(errorsOf(await agent.until('Z')), []);
      agent.send(parse('p', 'SELECT 1'), sync());
      assert.match(errorsOf(await agent.until('Z')).join(), /already exists/);
      agent.send(query('PREPARE p AS SELECT 2'));
      assert.match(errorsOf(await agent.until('Z')).join(), /already exists/);
      agent.send(bind('', 'p'), execute(''), sync());
      assert.match(errorsOf(await agent.until('Z', 15_000)).join(), /^42501 /);
      agent.send(query('EXECUTE p'));
      assert.match(errorsOf(await agent.until('Z', 15_000)).join(), /^42501 /);
      assert.equal(await touched(), 0);
    } finally {
      agent.close();
    }
  });

  test('a Close the server skipped (after an error in the pipeline) does not forget the statement', async () => {
    const agent = await session();
    try {
      agent.send(parse('p', 'UPDATE t SET v = 1'), sync());
      assert.deepEqual(errorsOf(await agent.until('Z')), []);
      agent.send(bind('', 'missing'), close('S', 'p'), sync());
      assert.match(errorsOf(await agent.until('Z')).join(), /does not exist/);
      agent.send(bind('', 'p'), execute(''), sync());
      assert.match(errorsOf(await agent.until('Z', 15_000)).join(), /^42501 /);
      assert.equal(await touched(), 0);
      // A Close the server did carry out forgets it: the name may hold another statement.
      agent.send(close('S', 'p'), sync());
      await agent.until('Z');
      agent.send(parse('p', 'SELECT 1'), bind('', 'p'), execute(''), sync());
      assert.deepEqual(errorsOf(await agent.until('Z')), []);
    } finally {
      agent.close();
    }
  });

  test('within one pipeline a Bind binds the statement Parsed before it: nothing else is held in its place', async () => {
    const agent = await session();
    try {
      // The server skips this Parse of the unnamed statement, so the name may still hold it...
      agent.send(bind('', 'missing'), parse('', 'UPDATE t SET v = 1'), sync());
      assert.match(errorsOf(await agent.until('Z')).join(), /does not exist/);
      // ...but a Bind after a Parse in the same pipeline binds that Parse's statement.
      agent.send(parse('', 'SELECT 41 + 1'), bind('', ''), execute(''), sync());
      const frames = await agent.until('Z');
      assert.deepEqual(errorsOf(frames), []);
      assert.ok(frames.some((f) => f.type === 'D' && f.body.includes('42')));
      // Across a Sync it is not: the skipped UPDATE may be what the name holds, so it is asked for.
      agent.send(bind('', 'missing'), parse('q', 'UPDATE t SET v = 1'), sync());
      await agent.until('Z');
      const before = asked.length;
      agent.send(bind('', 'q'), execute(''), sync());
      await agent.until('Z', 15_000);
      assert.deepEqual(asked.slice(before), ['UPDATE t SET v = 1']);
      assert.equal(await touched(), 0);
    } finally {
      agent.close();
    }
  });
});

describe('postgres enforcer: a DO block may run any statement', () => {
  test('directly, a DO block deletes; through the enforcer a rule on DELETE refuses it', async () => {
    const block = 'DO $$ BEGIN DELETE FROM t WHERE id = 1; END $$';
    await server.asUser(block);
    assert.equal(await rows(), 4);
    await server.asUser('INSERT INTO t VALUES (1, 0)');
    const agent = await session();
    try {
      for (const text of [
        block,
        "do $x$ begin execute 'DELETE FROM t'; end $x$",
        "DO LANGUAGE plpgsql 'BEGIN EXECUTE ''DEL'' || ''ETE FROM t''; END'",
      ]) {
        agent.send(query(text));
        const errors = errorsOf(await agent.until('Z'));
        assert.equal(errors.length, 1, text);
        assert.match(errors[0]!, /^42501 .*no-deletes/, text);
      }
      assert.equal(await rows(), 5);
    } finally {
      agent.close();
    }
  });
});
