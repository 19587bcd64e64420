// Values the server sends outside result rows: a constraint violation's detail (the failing row,
// the duplicate key), the fields a PL/pgSQL RAISE sets, a notification's payload, a reported
// setting. The agent reaches each with a statement the analysis lets through, since it reads
// no masked column in SQL; each is shown to carry the value when sent to the server directly.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { rowDetailWithheld } from '../../sidecar/postgres/masking.ts';
import { bind, encodeStartup, execute, parse, query, sync } from '../../sidecar/postgres/messages.ts';
import {
  type PostgresServer,
  policy,
  RawClient,
  type RawFrame,
  startEnforcer,
  startPostgres,
  type TestEnforcer,
} from '../support/postgres.ts';

// A value no detector would recognise (only the column rule covers it), and one the email detector does.
const secretSsn = 'ssn-078051120';
const secretEmail = 'ada@example.com';

let server: PostgresServer;
let enforcer: TestEnforcer;
/** Detectors alone: user functions are no use of a masked column, so the agent may call them. */
let detecting: TestEnforcer;

before(async () => {
  server = await startPostgres();
  await server.asUser(`
    CREATE TABLE members (
      id int PRIMARY KEY, name text NOT NULL CHECK (name <> 'forbidden'), team text, ssn text,
      UNIQUE (team, ssn)
    );
    INSERT INTO members VALUES (1, 'Ada', 'red', '${secretSsn}'), (2, 'Bob', 'blue', '${secretSsn}');
    CREATE TABLE notes (id int NOT NULL, body text);
    INSERT INTO notes VALUES (1, 'write to ${secretEmail}');
    CREATE FUNCTION shout(v text) RETURNS void LANGUAGE plpgsql AS $$
    BEGIN
      RAISE NOTICE USING MESSAGE = 'noted', COLUMN = v, TABLE = v, CONSTRAINT = v, DATATYPE = v, SCHEMA = v;
    END $$;
  `);
  enforcer = await startEnforcer(server, [
    policy('pii', {
      masking: [
        { name: 'ssn', columns: ['public.members.ssn'], strategy: 'redact', indirectUse: 'deny' },
        { name: 'email', detectors: ['email'], strategy: 'redact', indirectUse: 'allow' },
      ],
    }),
  ]);
  detecting = await startEnforcer(server, [
    policy('free-text', {
      masking: [{ name: 'email', detectors: ['email'], strategy: 'redact', indirectUse: 'allow' }],
    }),
  ]);
});

after(async () => {
  await enforcer?.close();
  await detecting?.close();
  await server?.stop();
});

async function direct(): Promise<RawClient> {
  const client = await RawClient.connect(server.socketDir, server.port);
  client.send(
    encodeStartup([
      ['user', server.user],
      ['database', server.database],
    ]),
  );
  await client.until('Z');
  return client;
}

/** Every message the text draws, up to ReadyForQuery, as one string of its bytes. */
async function answers(client: RawClient, sql: string): Promise<{ frames: RawFrame[]; text: string }> {
  client.send(query(sql));
  const frames = await client.until('Z');
  return { frames, text: frames.map((f) => f.body.toString('latin1')).join('\n') };
}

/** Sent directly the text reveals the secret; through the enforcer it does not, and the session goes on. */
async function heldBack(
  sql: string,
  secret: string,
  setup: string[] = [],
  through = enforcer,
): Promise<RawFrame[]> {
  const straight = await direct();
  try {
    for (const s of setup) await answers(straight, s);
    const { text } = await answers(straight, sql);
    assert.ok(text.includes(secret), `direct: ${sql}\n${text}`);
  } finally {
    straight.close();
  }
  const agent = await RawClient.session(through.host, through.port);
  try {
    for (const s of setup) await answers(agent, s);
    const { frames, text } = await answers(agent, sql);
    assert.ok(!text.includes(secret), `through the enforcer: ${sql}\n${text}`);
    const after = await answers(agent, "SELECT 'still-up'");
    assert.ok(after.text.includes('still-up'));
    return frames;
  } finally {
    agent.close();
  }
}

describe('postgres enforcer: values outside result rows', () => {
  test("a constraint violation's detail shows the failing row or the duplicate key, masked column included", async () => {
    for (const sql of [
      'UPDATE members SET name = NULL WHERE id = 1',
      "UPDATE members SET name = 'forbidden' WHERE id = 1",
      "UPDATE members SET team = 'red' WHERE id = 2",
      'CREATE UNIQUE INDEX one_ssn ON members (ssn)',
    ]) {
      const error = (await heldBack(sql, secretSsn)).find((f) => f.type === 'E')?.fields;
      assert.match(error?.get('C') ?? '', /^23/, sql);
      assert.equal(error?.get('D'), rowDetailWithheld, sql);
      assert.match(error?.get('M') ?? '', /constraint|unique index/, sql);
    }
  });

  test('the same violation through the extended protocol, and with detectors alone the detail is scanned', async () => {
    const agent = await RawClient.session(enforcer.host, enforcer.port);
    try {
      agent.send(
        parse('', 'UPDATE members SET name = $1 WHERE id = 1'),
        bind('', '', [null]),
        execute(''),
        sync(),
      );
      const text = (await agent.until('Z')).map((f) => f.body.toString('latin1')).join('\n');
      assert.ok(text.includes(rowDetailWithheld) && !text.includes(secretSsn), text);
    } finally {
      agent.close();
    }
    const frames = await heldBack('UPDATE notes SET id = NULL', secretEmail, [], detecting);
    assert.match(
      frames.find((f) => f.type === 'E')?.fields?.get('D') ?? '',
      /Failing row contains .*REDACTED:email/,
    );
  });

  test('fields a RAISE sets (column, table, constraint, data type, schema) are scanned as the message is', async () => {
    const frames = await heldBack('SELECT shout(body) FROM notes', secretEmail, [], detecting);
    const notice = frames.find((f) => f.type === 'N')?.fields;
    assert.equal(notice?.get('M'), 'noted');
    for (const code of ['c', 't', 'n', 'd', 's'])
      assert.match(notice?.get(code) ?? '', /REDACTED:email/, code);
  });

  test("a notification's channel and payload are scanned", async () => {
    for (const through of [enforcer, detecting]) {
      const frames = await heldBack(
        "SELECT pg_notify('news', body) FROM notes",
        secretEmail,
        ['LISTEN news'],
        through,
      );
      assert.ok(frames.some((f) => f.type === 'A' && f.body.includes('REDACTED:email')));
    }
  });

  test('a reported setting a statement sets from a row is scanned', async () => {
    for (const through of [enforcer, detecting]) {
      const frames = await heldBack(
        "SELECT set_config('application_name', body, false) FROM notes",
        secretEmail,
        [],
        through,
      );
      assert.ok(frames.some((f) => f.type === 'S' && f.body.includes('REDACTED:email')));
    }
  });
});
