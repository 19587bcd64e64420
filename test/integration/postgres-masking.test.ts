// Masking of results through the PostgreSQL enforcer: DataRows (text and binary), errors,
// notices and COPY out, with column rules resolved from table OIDs and detectors on values.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import type { RequestEvent } from '../../api/events.ts';
import { bind, describe as describeMessage, execute, parse, sync } from '../../sidecar/postgres/messages.ts';
import {
  type PostgresServer,
  policy,
  psql,
  RawClient,
  startEnforcer,
  startPostgres,
  type TestEnforcer,
} from '../support/postgres.ts';

const email = 'ada@example.com';
const card = '4111111111111111';
const ssn = '078-05-1120';

let server: PostgresServer;
let enforcer: TestEnforcer;
let audit: TestEnforcer;

const masking = {
  name: 'pii',
  detectors: ['email', 'credit-card', 'us-ssn'] as ('email' | 'credit-card' | 'us-ssn')[],
  columns: ['public.customers.ssn', 'customers.salary'],
  strategy: 'redact' as const,
  indirectUse: 'allow' as const,
};

before(async () => {
  server = await startPostgres();
  await server.asUser(`
    CREATE TABLE customers (id int PRIMARY KEY, name text, email text, card text, card_num numeric(16), ssn text,
      salary int, notes text, profile jsonb, emails text[]);
    INSERT INTO customers VALUES
      (1, 'Ada', '${email}', '${card}', ${card}, '${ssn}', 100000, 'call ada@example.com after 5', '{"email": "${email}"}', ARRAY['${email}']),
      (2, 'Bob', 'bob@example.org', '5500 0000 0000 0004', 5500000000000004, '219-09-9999', 90000, 'no pii here', '{"x": 1}', ARRAY['x']);
    CREATE TABLE plain (id int, word text);
    INSERT INTO plain SELECT g, 'word' || g FROM generate_series(1, 10) g;
  `);
  enforcer = await startEnforcer(server, [policy('pii-policy', { masking: [masking] })]);
  audit = await startEnforcer(server, [policy('pii-audit', { mode: 'audit', masking: [masking] })]);
});

after(async () => {
  await enforcer?.close();
  await audit?.close();
  await server?.stop();
});

async function query(target: TestEnforcer, config: string | pg.QueryConfig): Promise<pg.QueryResult> {
  const c = new pg.Client(target.client);
  await c.connect();
  try {
    return await c.query(config as pg.QueryConfig);
  } finally {
    await c.end();
  }
}

function noValuesIn(events: unknown[]): void {
  const text = JSON.stringify(events);
  for (const value of [email, card, ssn, '219-09-9999']) {
    assert.ok(!text.includes(value), `an event carries ${value}`);
  }
}

describe('postgres enforcer: masking', () => {
  test('simple protocol: detectors and column rules, through aliases', async () => {
    const { rows } = await query(
      enforcer,
      'SELECT id, name, email AS contact, card, ssn AS x, notes FROM customers ORDER BY id',
    );
    assert.equal(rows[0].name, 'Ada');
    assert.equal(rows[0].contact, '[REDACTED:email]');
    assert.equal(rows[0].card, '[REDACTED:credit-card]');
    assert.equal(rows[0].x, '[REDACTED]');
    assert.equal(rows[0].notes, 'call [REDACTED:email] after 5');
    assert.equal(rows[1].card, '[REDACTED:credit-card]');
    assert.equal(rows[1].x, '[REDACTED]');
    assert.equal(rows[1].notes, 'no pii here');
  });

  test('subqueries, CTEs and views do not escape column rules', async () => {
    await server.asUser(`
      CREATE OR REPLACE VIEW customer_view AS SELECT id, ssn AS tax_id, name FROM customers;
      CREATE OR REPLACE VIEW nested_view AS SELECT tax_id AS x, name FROM customer_view;
      CREATE OR REPLACE VIEW expression_view AS SELECT id, upper(ssn) AS shout FROM customers;
      CREATE MATERIALIZED VIEW IF NOT EXISTS customer_mat AS SELECT id, ssn AS s FROM customers;
    `);
    const sub = await query(enforcer, 'SELECT s FROM (SELECT ssn AS s, id FROM customers) t ORDER BY id');
    assert.deepEqual(
      sub.rows.map((r) => r.s),
      ['[REDACTED]', '[REDACTED]'],
    );
    const cte = await query(enforcer, 'WITH w AS (SELECT ssn FROM customers) SELECT ssn FROM w');
    assert.deepEqual(
      cte.rows.map((r) => r.ssn),
      ['[REDACTED]', '[REDACTED]'],
    );
    const view = await query(enforcer, 'SELECT id, tax_id, name FROM customer_view ORDER BY id');
    assert.deepEqual(view.rows[0], { id: 1, tax_id: '[REDACTED]', name: 'Ada' });
    const nested = await query(enforcer, 'SELECT x, name FROM nested_view ORDER BY name');
    assert.deepEqual(nested.rows[0], { x: '[REDACTED]', name: 'Ada' });
    const expression = await query(enforcer, {
      text: 'SELECT shout FROM expression_view ORDER BY id',
      values: [],
    });
    assert.deepEqual(
      expression.rows.map((r) => r.shout),
      ['[REDACTED]', '[REDACTED]'],
    );
    const mat = await query(enforcer, 'SELECT s FROM customer_mat ORDER BY id');
    assert.deepEqual(
      mat.rows.map((r) => r.s),
      ['[REDACTED]', '[REDACTED]'],
    );
  });

  test('extended protocol, text format', async () => {
    const { rows } = await query(enforcer, {
      text: 'SELECT email, ssn, salary, card_num FROM customers WHERE id = $1',
      values: [1],
    });
    assert.equal(rows[0].email, '[REDACTED:email]');
    assert.equal(rows[0].ssn, '[REDACTED]');
    // Non-text values that must be masked become NULL, so clients still decode them.
    assert.equal(rows[0].salary, null);
    assert.equal(rows[0].card_num, null);
  });

  test('extended protocol, binary format', async () => {
    const { rows } = await query(enforcer, {
      text: 'SELECT id, email, ssn, salary, card_num, profile, emails FROM customers WHERE id = $1',
      values: [1],
      binary: true,
    } as pg.QueryConfig);
    assert.equal(rows[0].id, 1);
    assert.equal(rows[0].email, '[REDACTED:email]');
    assert.equal(rows[0].ssn, '[REDACTED]');
    assert.equal(rows[0].salary, null);
    // A binary array of text is not decodable as text: a finding in it makes it NULL.
    assert.equal(rows[0].emails, null);
    const profile = String(rows[0].profile);
    assert.ok(!profile.includes(email), profile);
    assert.match(profile, /REDACTED:email/);
  });

  test('Execute without Describe is still masked by column', async () => {
    const raw = await RawClient.session(enforcer.host, enforcer.port);
    raw.send(
      parse('', 'SELECT ssn, email FROM customers WHERE id = 1'),
      bind('', '', [], []),
      execute('', 0),
      sync(),
    );
    const frames = await raw.until('Z');
    raw.close();
    const row = frames.find((f) => f.type === 'D');
    assert.ok(row, JSON.stringify(frames.map((f) => f.type)));
    const text = row.body.toString('utf8');
    assert.ok(!text.includes(ssn) && !text.includes(email), text);
    assert.deepEqual(
      frames.map((f) => f.type),
      ['1', '2', 'D', 'C', 'Z'],
      'the internal Describe must not reach the client',
    );
  });

  test('Describe then Execute in one pipeline', async () => {
    const raw = await RawClient.session(enforcer.host, enforcer.port);
    raw.send(
      parse('s1', 'SELECT ssn FROM customers ORDER BY id'),
      describeMessage('S', 's1'),
      bind('p1', 's1', [], [1]),
      describeMessage('P', 'p1'),
      execute('p1', 0),
      sync(),
    );
    const frames = await raw.until('Z');
    raw.close();
    assert.deepEqual(
      frames.map((f) => f.type),
      ['1', 't', 'T', '2', 'T', 'D', 'D', 'C', 'Z'],
    );
    for (const row of frames.filter((f) => f.type === 'D')) assert.match(row.body.toString(), /REDACTED/);
  });

  test('error and notice text is masked', async () => {
    await assert.rejects(
      query(enforcer, 'SELECT CAST(email AS int) FROM customers WHERE id = 1'),
      (error: Error) => {
        assert.ok(!error.message.includes(email), error.message);
        assert.match(error.message, /REDACTED:email/);
        return true;
      },
    );
    const c = new pg.Client(enforcer.client);
    const notices: string[] = [];
    c.on('notice', (n) => notices.push(n.message ?? ''));
    await c.connect();
    await c.query(`DO $$ BEGIN RAISE NOTICE 'card %', (SELECT card FROM customers WHERE id = 1); END $$`);
    await c.end();
    assert.equal(notices.length, 1);
    assert.ok(!notices[0]?.includes(card), notices[0]);
  });

  test('COPY out is scanned by detectors; COPY of a table with masked columns is refused', async () => {
    const result = await psql(
      enforcer,
      'COPY (SELECT id, email, notes FROM customers ORDER BY id) TO STDOUT;',
      {
        args: ['-At'],
      },
    );
    assert.equal(result.code, 0, result.stderr);
    assert.equal(
      result.stdout,
      '1\t[REDACTED:email]\tcall [REDACTED:email] after 5\n2\t[REDACTED:email]\tno pii here\n',
    );
    const refused = await psql(enforcer, 'COPY customers TO STDOUT;', {
      args: ['-At', '-v', 'ON_ERROR_STOP=1'],
    });
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /ssn/);
    assert.ok(!refused.stdout.includes(ssn));
    const binary = await psql(enforcer, 'COPY plain TO STDOUT WITH (FORMAT binary);', { args: ['-At'] });
    assert.match(binary.stderr, /binary COPY/);
  });

  test('a column renamed to a masked name is masked from then on', async () => {
    await server.asUser(
      "CREATE TABLE renamed (id int, ssn text, other text); INSERT INTO renamed VALUES (1, 'a', 'b')",
    );
    const masked = policy('rename-policy', {
      masking: [{ name: 'cols', columns: ['*.renamed.ssn'], strategy: 'redact', indirectUse: 'allow' }],
    });
    const target = await startEnforcer(server, [masked]);
    try {
      const c = new pg.Client(target.client);
      await c.connect();
      assert.deepEqual((await c.query('SELECT ssn, other FROM renamed')).rows[0], {
        ssn: '[REDACTED]',
        other: 'b',
      });
      // In this session: the DDL invalidates what the enforcer knew.
      await c.query('ALTER TABLE renamed RENAME COLUMN ssn TO old_ssn');
      await c.query('ALTER TABLE renamed RENAME COLUMN other TO ssn');
      assert.deepEqual((await c.query('SELECT old_ssn, ssn FROM renamed')).rows[0], {
        old_ssn: 'a',
        ssn: '[REDACTED]',
      });
      // In another session: the cache entry expires.
      await server.asUser(
        'ALTER TABLE renamed RENAME COLUMN ssn TO other; ALTER TABLE renamed RENAME COLUMN old_ssn TO ssn',
      );
      await new Promise((r) => setTimeout(r, 5200));
      assert.deepEqual((await c.query('SELECT ssn, other FROM renamed')).rows[0], {
        ssn: '[REDACTED]',
        other: 'b',
      });
      await c.end();
    } finally {
      await target.close();
    }
  });

  test('non-ASCII rows are decoded as UTF-8', async () => {
    const { rows } = await query(enforcer, {
      text: "SELECT 'Zoë ☃' AS name, 'café ' || email AS note, 'naïve' AS plain FROM customers WHERE id = $1",
      values: [1],
    });
    assert.deepEqual(rows[0], { name: 'Zoë ☃', note: 'café [REDACTED:email]', plain: 'naïve' });
  });

  test('unmasked tables pass through unchanged', async () => {
    const { rows } = await query(enforcer, { text: 'SELECT id, word FROM plain ORDER BY id', values: [] });
    assert.equal(rows.length, 10);
    assert.equal(rows[9].word, 'word10');
  });

  test('events count masked values and never carry them', async () => {
    const before = enforcer.events.length;
    await query(enforcer, 'SELECT email, ssn FROM customers');
    await new Promise((r) => setTimeout(r, 50));
    const event = enforcer.events
      .slice(before)
      .find((e): e is RequestEvent => e.type === 'request' && e.text === 'SELECT email, ssn FROM customers');
    assert.ok(event);
    assert.equal(event.outcome, 'masked');
    assert.equal(event.rows, 2);
    assert.deepEqual(event.masked, { 'pii/email': 2, 'pii/public.customers.ssn': 2 });
    noValuesIn(enforcer.events);
  });

  test('a value the agent types into a statement is masked in the recorded text', async () => {
    const before = enforcer.events.length;
    await query(enforcer, `SELECT id FROM customers WHERE email = '${email}' AND id > 0`);
    await new Promise((r) => setTimeout(r, 50));
    const event = enforcer.events
      .slice(before)
      .find(
        (e): e is RequestEvent =>
          e.type === 'request' && e.text.startsWith('SELECT id FROM customers WHERE email ='),
      );
    assert.ok(event);
    assert.ok(!event.text.includes(email), event.text);
    assert.match(event.text, /AND id > 0$/);
  });

  test('values read as bytes: findings at either end of 47 to 49 bytes, next to control bytes, DEL and line breaks', async () => {
    // ASCII values below 48 bytes are masked on their bytes, longer ones as strings: each
    // finding at the start and at the end of values on both sides of that switch, padded with
    // bytes a reader skips, in a text column, a jsonb (as a value and as a key) and a text[].
    const findings = [
      [email, 'email'],
      [card, 'credit-card'],
      ['5500-0000-0000-0004', 'credit-card'],
      [ssn, 'us-ssn'],
    ] as const;
    const values: { value: string; secret: string; expected: string }[] = [];
    for (const [secret, label] of findings)
      for (const length of [47, 48, 49])
        for (const fill of ['\u007f', '\n', '\u0001', ' '])
          for (const front of [true, false]) {
            const pad = fill.repeat(length - secret.length);
            const value = front ? pad + secret : secret + pad;
            values.push({ value, secret, expected: value.replace(secret, `[REDACTED:${label}]`) });
          }
    await server.asUser(`
      CREATE TABLE edges (id int, t text, j jsonb, a text[]);
      INSERT INTO edges SELECT n, v, jsonb_build_object('v', v, v, 1), ARRAY[v, 'x']
        FROM json_array_elements_text($v$${JSON.stringify(values.map((v) => v.value))}$v$::json)
        WITH ORDINALITY AS e(v, n);
    `);
    const raw = { getTypeParser: () => (value: string | Buffer) => value };
    for (const binary of [false, true]) {
      const { rows } = await query(enforcer, {
        text: 'SELECT t, j, a, t AS again FROM edges WHERE id > $1 ORDER BY id',
        values: [0],
        binary,
        types: raw,
      } as pg.QueryConfig);
      assert.equal(rows.length, values.length);
      rows.forEach((row, i) => {
        const { secret, expected } = values[i]!;
        const text = (v: string | Buffer) => (typeof v === 'string' ? v : v.toString('utf8'));
        assert.equal(text(row.t), expected, JSON.stringify(values[i]));
        assert.equal(text(row.again), expected);
        // A text[] holding a finding cannot carry the mask as an array of text: it becomes NULL.
        assert.equal(row.a, null);
        const j = text(row.j);
        assert.ok(!j.includes(secret), `${binary ? 'binary' : 'text'} jsonb: ${JSON.stringify(j)}`);
        assert.match(j, /\[REDACTED:/);
      });
    }
    const simple = await query(enforcer, {
      text: 'SELECT t FROM edges ORDER BY id',
      types: raw,
    } as pg.QueryConfig);
    assert.deepEqual(
      simple.rows.map((r) => r.t),
      values.map((v) => v.expected),
    );
    const copied = await psql(enforcer, 'COPY (SELECT t, j, a FROM edges ORDER BY id) TO STDOUT;', {
      args: ['-At'],
    });
    assert.equal(copied.code, 0, copied.stderr);
    const listed = await psql(enforcer, 'SELECT t, j, a FROM edges ORDER BY id;', { args: ['-At'] });
    assert.equal(listed.code, 0, listed.stderr);
    for (const { secret } of values) {
      assert.ok(!copied.stdout.includes(secret), `COPY lets out ${secret}`);
      assert.ok(!listed.stdout.includes(secret), `psql lets out ${secret}`);
    }
    noValuesIn(enforcer.events);
  });

  test('json and jsonb are read as a client reads them: escapes decoded, in rows and in COPY', async () => {
    // json keeps its text as written (ada\u0040example.com); jsonb writes control characters
    // as \u0001…, whose last digit runs into a card or SSN after them.
    const document = `{"e": "ada\\u0040example.com", "c": "\\u0002${card}", "s": "\\u0009${ssn}"}`;
    await server.asUser(`
      CREATE TABLE documents (id int, j json, b jsonb);
      INSERT INTO documents VALUES (1, $d$${document}$d$, $d$${document}$d$);
    `);
    const decodedSecrets = [email, card, ssn, 'ada\\u0040example.com'];
    const raw = { getTypeParser: () => (value: string | Buffer) => value };
    for (const binary of [false, true]) {
      const { rows } = await query(enforcer, {
        text: 'SELECT j, b FROM documents WHERE id = $1',
        values: [1],
        binary,
        types: raw,
      } as pg.QueryConfig);
      for (const column of ['j', 'b']) {
        const value = String(rows[0][column]);
        for (const secret of decodedSecrets) assert.ok(!value.includes(secret), `${column}: ${value}`);
        const parsed = JSON.parse(value.replace(/^\u0001/, ''));
        assert.deepEqual(parsed, {
          e: '[REDACTED:email]',
          c: '\u0002[REDACTED:credit-card]',
          s: '\t[REDACTED:us-ssn]',
        });
      }
    }
    // In arrays, as elements: a finding makes the array NULL.
    for (const binary of [false, true]) {
      const { rows } = await query(enforcer, {
        text: `SELECT ARRAY[json_build_object('e', j->'e')] AS js, ARRAY[c, c] AS bs, ROW(c, 1) AS r
          FROM (SELECT j, jsonb_build_object('c', b->'c') AS c FROM documents WHERE id = $1) d`,
        values: [1],
        binary,
        types: raw,
      } as pg.QueryConfig);
      assert.deepEqual(rows[0], { js: null, bs: null, r: null }, `binary: ${binary}`);
    }
    const arrays = await psql(
      enforcer,
      "SELECT ARRAY[json_build_object('e', j->'e')], ARRAY[jsonb_build_object('c', b->'c')] FROM documents;",
      { args: ['-At'] },
    );
    assert.equal(arrays.code, 0, arrays.stderr);
    assert.equal(arrays.stdout, '|\n');
    const copied = await psql(enforcer, 'COPY (SELECT j, b FROM documents) TO STDOUT;', { args: ['-At'] });
    assert.equal(copied.code, 0, copied.stderr);
    for (const secret of decodedSecrets) assert.ok(!copied.stdout.includes(secret), copied.stdout);
    assert.equal(copied.stdout.split('[REDACTED:').length - 1, 6, copied.stdout);
    const csv = await psql(enforcer, 'COPY (SELECT j, b FROM documents) TO STDOUT WITH (FORMAT csv);', {
      args: ['-At'],
    });
    assert.equal(csv.code, 0, csv.stderr);
    for (const secret of decodedSecrets) assert.ok(!csv.stdout.includes(secret), csv.stdout);
    noValuesIn(enforcer.events);
  });

  test('binary values of other types (hstore, tsvector) are read without their length and position bytes', async () => {
    // Read whole, a binary hstore's value length (48 to 57 bytes: its last byte '0' to '9') or a
    // tsvector's lexeme position (48: '0') sits right before the text, and joins a card or SSN
    // the text starts with into a longer run of digits no detector reads as one.
    await server.admin('CREATE EXTENSION IF NOT EXISTS hstore', server.database);
    const values: string[] = [];
    for (const secret of [card, ssn])
      for (let length = 48; length <= 57; length++) values.push(secret + ' '.repeat(length - secret.length));
    await server.asUser(`
      CREATE TABLE stores (id int, h hstore, v tsvector);
      INSERT INTO stores SELECT n, hstore('k', v), ('x:48 ' || split_part(v, ' ', 1) || ':1')::tsvector
        FROM json_array_elements_text($v$${JSON.stringify(values)}$v$::json) WITH ORDINALITY AS e(v, n);
    `);
    const direct = new pg.Client({
      host: '127.0.0.1',
      port: server.port,
      user: server.user,
      password: server.password,
      database: server.database,
    });
    await direct.connect();
    const raw = { getTypeParser: () => (value: string | Buffer) => value };
    try {
      // Directly, the secrets are in the binary values as the client receives them.
      const plain = await direct.query({
        text: 'SELECT h, v FROM stores WHERE id > $1 ORDER BY id',
        values: [0],
        binary: true,
        types: raw,
      } as pg.QueryConfig);
      assert.ok(plain.rows.every((r) => [card, ssn].some((secret) => String(r.h).includes(secret))));
    } finally {
      await direct.end();
    }
    const { rows } = await query(enforcer, {
      text: 'SELECT h, v FROM stores WHERE id > $1 ORDER BY id',
      values: [0],
      binary: true,
      types: raw,
    } as pg.QueryConfig);
    assert.equal(rows.length, values.length);
    for (const row of rows) assert.deepEqual(row, { h: null, v: null });
  });

  test('audit mode lets values through and records what would have been masked', async () => {
    const { rows } = await query(audit, 'SELECT email, ssn FROM customers WHERE id = 1');
    assert.deepEqual(rows[0], { email, ssn });
    await new Promise((r) => setTimeout(r, 50));
    const event = audit.events.find(
      (e): e is RequestEvent => e.type === 'request' && e.text.startsWith('SELECT email'),
    );
    assert.ok(event);
    assert.equal(event.outcome, 'allowed');
    assert.ok(
      event.wouldHave?.some((w) => w.action === 'mask' && w.policy === 'pii-audit'),
      JSON.stringify(event),
    );
    noValuesIn(audit.events);
  });
});
