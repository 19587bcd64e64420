// A determined agent against the PostgreSQL enforcer: masked columns renamed, nested, joined on,
// read through functions that run SQL text and through statistics catalogs, copied elsewhere,
// and COPY in every spelling. Each attack is shown to work against the server directly, so a
// refusal here is the enforcer's doing. The built-in catalog of the real server is checked
// against the function lists the analysis trusts.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import pg from 'pg';
import { adminFunctions, builtinFunctions, valueReadingFunctions } from '../../sidecar/policy/functions.ts';
import { valueCatalogs } from '../../sidecar/policy/sql-walk.ts';
import { bind, encodeStartup, execute, parse, query, sync } from '../../sidecar/postgres/messages.ts';
import {
  type PostgresServer,
  policy,
  psql,
  RawClient,
  startEnforcer,
  startPostgres,
  type TestEnforcer,
} from '../support/postgres.ts';

// Values no detector would recognise: only the analysis and column rules stand in the way.
const secretEmail = 'ada-at-example-dot-com';
const secretSsn = 'ssn-078051120';

let server: PostgresServer;
let enforcer: TestEnforcer;
let copying: TestEnforcer;

before(async () => {
  server = await startPostgres();
  await server.asUser(`
    CREATE TABLE customers (id int PRIMARY KEY, name text, email text, ssn text);
    INSERT INTO customers VALUES (1, 'Ada', '${secretEmail}', '${secretSsn}'), (2, 'Bob', 'bob-mail', 'ssn-2');
    CREATE TABLE orders (id int, email text);
    INSERT INTO orders VALUES (1, '${secretEmail}');
    CREATE TABLE plain (id int, word text);
    INSERT INTO plain VALUES (1, 'one'), (2, 'two');
    CREATE FUNCTION leak() RETURNS SETOF text LANGUAGE sql AS 'SELECT email FROM customers';
    CREATE VIEW support_view AS SELECT id, name, email AS contact FROM customers;
    CREATE VIEW nested_view AS SELECT * FROM support_view;
    CREATE MATERIALIZED VIEW contacts AS SELECT id, email FROM customers;
    ANALYZE customers;
  `);
  const columns = policy('agents', {
    masking: [
      {
        name: 'pii',
        columns: ['public.customers.email', 'public.customers.ssn'],
        strategy: 'redact',
        indirectUse: 'deny',
      },
    ],
  });
  enforcer = await startEnforcer(server, [columns]);
  const detectors = policy('copy', {
    masking: [
      { name: 'cols', columns: ['public.customers.ssn'], strategy: 'redact', indirectUse: 'allow' },
      { name: 'pii', detectors: ['email'], strategy: 'redact', indirectUse: 'allow' },
    ],
  });
  copying = await startEnforcer(server, [detectors]);
});

after(async () => {
  await enforcer?.close();
  await copying?.close();
  await server?.stop();
});

async function run(
  target: { host: string; port: number; user: string; password: string; database: string },
  sql: string,
) {
  const c = new pg.Client(target);
  await c.connect();
  try {
    return await c.query(sql);
  } finally {
    await c.end();
  }
}

/** The attack reveals the secret when sent to the server directly, and is refused through the enforcer. */
async function refused(sql: string, secret = secretEmail): Promise<void> {
  const direct = await server.asUser(sql);
  assert.ok(JSON.stringify(direct.rows).includes(secret) || hexOf(direct.rows, secret), `direct: ${sql}`);
  const result = await psql(enforcer, `${sql};\nSELECT 'still-up';`, { args: ['-At'] });
  assert.match(result.stderr, /ERROR: {2}airlock: statement denied/, `${sql}\n${result.stderr}`);
  assert.ok(!result.stdout.includes(secret), `${sql}\n${result.stdout}`);
  // Refused before it ran, not mid-stream: the session goes on.
  assert.match(result.stdout, /still-up/);
}

function hexOf(rows: unknown[], secret: string): boolean {
  const text = JSON.stringify(rows);
  return text.includes(Buffer.from(secret).toString('hex')) || text.includes(secret.toUpperCase());
}

describe('postgres enforcer: a determined agent', () => {
  test('the server catalog: every built-in function is allowed or classified, every value catalog known', async () => {
    const functions = await server.admin(
      "SELECT DISTINCT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'pg_catalog'",
    );
    const names = functions.rows.map((r: { proname: string }) => r.proname);
    assert.ok(names.length > 2000, String(names.length));
    const unclassified = names.filter(
      (name) => !builtinFunctions.has(name) && !adminFunctions.has(name) && !valueReadingFunctions.has(name),
    );
    assert.deepEqual(unclassified, []);
    for (const name of valueReadingFunctions) {
      assert.ok(names.includes(name), `${name} is not a built-in`);
      assert.ok(!builtinFunctions.has(name), `${name} is also allowed`);
    }
    for (const name of [
      'query_to_xml',
      'table_to_xml',
      'cursor_to_xml',
      'ts_stat',
      'ts_rewrite',
      'pg_read_file',
      'lo_get',
    ]) {
      assert.ok(!builtinFunctions.has(name), name);
    }
    // Relations of the catalog with a column that holds sampled values of other tables' columns.
    const holders = await server.admin(`
      SELECT DISTINCT c.relname FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'pg_catalog' AND c.relkind IN ('r', 'v', 'm') AND NOT a.attisdropped
        AND a.atttypid IN ('anyarray'::regtype, 'pg_mcv_list'::regtype, 'pg_statistic[]'::regtype)
        OR (n.nspname = 'pg_catalog' AND c.relname LIKE 'pg_stats%' AND a.attname LIKE 'most_common_vals')`);
    const found = holders.rows.map((r: { relname: string }) => r.relname).sort();
    assert.ok(found.includes('pg_stats') && found.includes('pg_statistic'), found.join());
    // pg_attribute.attmissingval holds a column's DEFAULT as written in DDL, not rows' values.
    for (const name of found.filter((n) => n !== 'pg_attribute')) {
      assert.ok(valueCatalogs.has(name), `${name} holds values but is not listed`);
    }
  });

  test('ordinary queries still work, and a renamed masked column is still masked', async () => {
    const plainQuery = await run(enforcer.client, 'SELECT id, lower(name) AS n FROM customers WHERE id = 1');
    assert.deepEqual(plainQuery.rows, [{ id: 1, n: 'ada' }]);
    const renamed = await run(enforcer.client, 'SELECT i, e FROM customers AS c(i, n, e)');
    assert.deepEqual(renamed.rows, [
      { i: 1, e: '[REDACTED]' },
      { i: 2, e: '[REDACTED]' },
    ]);
    const nested = await run(enforcer.client, 'SELECT * FROM (SELECT * FROM customers) s WHERE id = 1');
    assert.equal(nested.rows[0].email, '[REDACTED]');
    assert.equal(nested.rows[0].ssn, '[REDACTED]');
  });

  test("psql's describe commands and everyday catalog queries are not refused", async () => {
    const result = await psql(
      enforcer,
      "\\dt\n\\d customers\n\\df\n\\dv\n\\l\n\\dn\nSELECT version() IS NOT NULL, current_database() IS NOT NULL, pg_size_pretty(pg_total_relation_size('customers')) IS NOT NULL;\n",
      { args: ['-At', '-v', 'ON_ERROR_STOP=1'] },
    );
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /customers/);
    assert.match(result.stdout, /t\|t\|t/);
  });

  test('property: random renamings and nestings of a masked column never return its value', async () => {
    // customers' columns in order; the third is email. Each wrapper renames or nests them.
    type Source = { sql: string; names: string[] };
    const ident = fc.constantFrom('a', 'b', 'x', 'z', 'email', 'id', 'k', 'ssn');
    const rename = fc
      .tuple(ident, ident, ident, ident)
      .filter((names) => new Set(names).size === names.length);
    const base = fc.oneof(
      fc.constant<Source>({ sql: 'customers', names: ['id', 'name', 'email', 'ssn'] }),
      rename.map((names) => ({ sql: `customers AS t(${names.join(', ')})`, names })),
    );
    const wrapper = fc.tuple(fc.integer({ min: 0, max: 3 }), fc.option(rename, { nil: undefined }));
    const forms = [
      (c: string) => `SELECT ${c} FROM %s`,
      (c: string) => `SELECT upper(${c}) FROM %s`,
      (c: string) => `SELECT encode(convert_to(${c}, 'UTF8'), 'hex') FROM %s`,
      (c: string) => `SELECT ${c} || '' FROM %s`,
      (c: string) => `SELECT string_agg(${c}, ',') FROM %s`,
      (_c: string) => 'SELECT row_to_json(r)::text FROM (SELECT * FROM %s) r',
      (c: string) => `SELECT ARRAY(SELECT ${c} FROM %s)::text`,
      (c: string) => `SELECT * FROM %s ORDER BY ${c}`,
      (_c: string) => 'SELECT * FROM %s',
    ];
    const client = new pg.Client(enforcer.client);
    await client.connect();
    let n = 0;
    const outcomes = { masked: 0, refused: 0 };
    try {
      await fc.assert(
        fc.asyncProperty(
          base,
          fc.array(wrapper, { maxLength: 3 }),
          fc.integer({ min: 0, max: forms.length - 1 }),
          async (start, wrappers, form) => {
            let source = start;
            for (const [how, names] of wrappers) {
              const alias = `q${n++}`;
              const list = names ? `(${names.join(', ')})` : '';
              const out = names ?? source.names;
              if (how === 0) source = { sql: `(SELECT * FROM ${source.sql}) AS ${alias}${list}`, names: out };
              else if (how === 1) {
                source = {
                  sql: `(WITH ${alias}w${list} AS (SELECT * FROM ${source.sql}) SELECT * FROM ${alias}w) AS ${alias}`,
                  names: out,
                };
              } else if (how === 2) {
                source = {
                  sql: `(SELECT ${alias}i.* FROM (SELECT * FROM ${source.sql}) AS ${alias}i) AS ${alias}${list}`,
                  names: out,
                };
              } else {
                source = {
                  sql: `(SELECT * FROM ${source.sql} CROSS JOIN (SELECT 1 AS pad) p) AS ${alias}`,
                  names: [...source.names, 'pad'],
                };
              }
            }
            const sql = forms[form]!(source.names[2]!).replace('%s', source.sql);
            let text: string;
            try {
              text = JSON.stringify((await client.query(sql)).rows);
            } catch (error) {
              // Refused by the enforcer (never by the server: every generated query is valid).
              assert.equal((error as { code?: string }).code, '42501', `${sql}: ${error}`);
              outcomes.refused++;
              return;
            }
            outcomes.masked++;
            for (const leak of [
              secretEmail,
              secretEmail.toUpperCase(),
              Buffer.from(secretEmail).toString('hex'),
            ]) {
              assert.ok(!text.includes(leak), `${sql} returned ${text}`);
            }
          },
        ),
        { numRuns: 150 },
      );
    } finally {
      await client.end();
    }
    // Both ways of keeping the value back were exercised: masked by origin, and refused.
    assert.ok(outcomes.masked > 0 && outcomes.refused > 0, JSON.stringify(outcomes));
  });

  test('lineage: alias column lists, subqueries, CTEs, joins, VALUES and sublinks', async () => {
    await refused('SELECT upper(e) FROM customers AS c(i, n, e)', secretEmail.toUpperCase());
    await refused("SELECT encode(z::bytea, 'hex') FROM (SELECT * FROM customers) q(a, b, z)");
    await refused("WITH w(a, b, z) AS (SELECT * FROM customers) SELECT z || '' FROM w");
    await refused("WITH w AS (SELECT * FROM customers) SELECT z || '' FROM (SELECT * FROM w) AS v(a, b, z)");
    await refused("SELECT j.z || '' FROM (customers JOIN plain USING (id)) AS j(a, b, z)");
    await refused("SELECT x || '' FROM customers c, LATERAL (VALUES (c.email)) v(x)");
    await refused('SELECT ARRAY(SELECT c FROM customers c)::text');
    await refused("SELECT u || '' FROM customers c, unnest(ARRAY[c.email]) u");
  });

  test('views that already exist: a use of a view column is a use of the table column behind it', async () => {
    await refused("SELECT contact || '' FROM support_view");
    await refused('SELECT upper(contact) FROM nested_view WHERE id = 1', secretEmail.toUpperCase());
    await refused("SELECT v.contact || '' FROM support_view v JOIN plain p USING (id)");
    await refused("SELECT email || '' FROM contacts");
    const masked = await run(enforcer.client, 'SELECT id, name, contact FROM nested_view WHERE id = 1');
    assert.deepEqual(masked.rows, [{ id: 1, name: 'Ada', contact: '[REDACTED]' }]);
    const plain = await run(
      enforcer.client,
      "SELECT upper(name) AS n FROM support_view WHERE id = 1 AND name LIKE 'A%'",
    );
    assert.deepEqual(plain.rows, [{ n: 'ADA' }]);
    const raw = await RawClient.session(enforcer.host, enforcer.port);
    try {
      raw.send(
        parse('', 'SELECT lower(contact) FROM nested_view WHERE id = $1'),
        bind('', '', ['1'], []),
        execute('', 0),
        sync(),
      );
      const frames = await raw.until('Z');
      assert.equal(frames.find((f) => f.type === 'E')?.fields?.get('C'), '42501');
      assert.ok(!frames.some((f) => f.body.toString().includes(secretEmail)));
    } finally {
      raw.close();
    }
  });

  test('a view reached through a search_path the client set is a use of the table columns behind it', async () => {
    await server.asUser(
      'CREATE SCHEMA IF NOT EXISTS reporting; CREATE OR REPLACE VIEW reporting.contact_view AS SELECT id, email AS contact FROM customers',
    );
    await refused("SELECT contact || '' FROM reporting.contact_view");
    for (const setting of [
      'SET search_path = reporting, public',
      'SET search_path TO "reporting", "$user", public',
      "SELECT set_config('search_path', 'reporting,public', false)",
    ]) {
      for (const read of [
        "SELECT contact || '' FROM contact_view",
        'SELECT id || contact FROM Contact_View',
      ]) {
        const sql = `${setting};\n${read}`;
        const direct = (await server.asUser(sql)) as unknown as pg.QueryResult[];
        assert.ok(JSON.stringify(direct.at(-1)?.rows).includes(secretEmail), `direct: ${sql}`);
        const result = await psql(enforcer, `${sql};\nSELECT 'still-up';`, { args: ['-At'] });
        assert.match(result.stderr, /ERROR: {2}airlock: statement denied/, sql);
        assert.ok(!result.stdout.includes(secretEmail), sql);
        assert.match(result.stdout, /still-up/);
      }
    }
  });

  test('join conditions, predicates and sorting are uses', async () => {
    await refused('SELECT o.email FROM orders o JOIN customers c USING (email)');
    await refused('SELECT o.email FROM orders o NATURAL JOIN customers c');
  });

  test('functions that run SQL text, user functions and statistics catalogs', async () => {
    await refused("SELECT word FROM ts_stat('SELECT to_tsvector(''simple'', email) FROM customers')", 'ada');
    await refused("SELECT table_to_xml('customers', true, false, '')::text");
    await refused("SELECT query_to_xml('SELECT email FROM customers', true, false, '')::text");
    await refused('SELECT leak()');
    await refused(
      "SELECT histogram_bounds::text FROM pg_stats WHERE tablename = 'customers' AND attname = 'ssn'",
      secretSsn,
    );
  });

  test('copies the agent could read later are refused', async () => {
    for (const sql of [
      'CREATE TEMP VIEW v AS SELECT * FROM customers',
      'CREATE TEMP TABLE loot AS SELECT email FROM customers',
      'SELECT * INTO TEMP loot FROM customers',
      'PREPARE p AS SELECT upper(email) FROM customers',
      'DECLARE c CURSOR WITH HOLD FOR SELECT email FROM customers',
    ]) {
      const result = await psql(enforcer, `${sql};`, { args: ['-At'] });
      assert.match(result.stderr, /airlock: statement denied/, sql);
    }
  });

  test('extended protocol: a renamed masked column in a derived value is refused at Parse', async () => {
    const raw = await RawClient.session(enforcer.host, enforcer.port);
    try {
      raw.send(
        parse('', 'SELECT upper(e) FROM customers AS c(i, n, e) WHERE i = $1'),
        bind('', '', ['1'], []),
        execute('', 0),
        sync(),
      );
      const frames = await raw.until('Z');
      const error = frames.find((f) => f.type === 'E');
      assert.equal(error?.fields?.get('C'), '42501');
      assert.match(error?.fields?.get('M') ?? '', /airlock/);
      assert.ok(!frames.some((f) => f.body.toString().includes(secretEmail.toUpperCase())));
    } finally {
      raw.close();
    }
  });

  test('COPY of a table reached through a search_path the client set is checked for column rules', async () => {
    await server.asUser(`CREATE SCHEMA IF NOT EXISTS vault; CREATE TABLE IF NOT EXISTS vault.cards (id int, pan text);
      TRUNCATE vault.cards; INSERT INTO vault.cards VALUES (1, '${secretSsn}')`);
    const vault = await startEnforcer(server, [
      policy('vault', {
        masking: [{ name: 'pan', columns: ['vault.cards.pan'], strategy: 'redact', indirectUse: 'allow' }],
      }),
    ]);
    try {
      for (const sql of [
        'SET search_path = vault; COPY cards TO STDOUT',
        'SET search_path = vault; COPY cards (pan) TO STDOUT',
        'SET search_path = vault, public; COPY (SELECT * FROM cards) TO STDOUT',
      ]) {
        const result = await psql(vault, `${sql};\nSELECT 'still-up';`, { args: ['-At'] });
        assert.match(
          result.stderr,
          /COPY TO STDOUT cannot mask column vault\.cards\.pan/,
          `${sql}\n${result.stderr}`,
        );
        assert.ok(!result.stdout.includes(secretSsn), sql);
        assert.match(result.stdout, /still-up/);
      }
      // Directly, the bare name is vault.cards under that search_path.
      const direct = (await server.asUser(
        'SET search_path = vault; SELECT pan FROM cards',
      )) as unknown as pg.QueryResult[];
      assert.equal(direct.at(-1)?.rows[0]?.pan, secretSsn);
    } finally {
      await vault.close();
    }
  });

  test('COPY is decided from the parse tree: comments, casing, options in any position', async () => {
    // Column rules cannot follow COPY's rows: refused before it runs, whatever the spelling.
    for (const sql of [
      'COPY/**/customers TO/**/STDOUT',
      'copy public.customers (id, "ssn") to stdout with csv',
    ]) {
      const result = await psql(copying, `${sql};\nSELECT 'still-up';`, { args: ['-At'] });
      assert.match(
        result.stderr,
        /ERROR: {2}airlock: statement denied: COPY TO STDOUT cannot mask column public\.customers\.ssn/,
        sql,
      );
      assert.ok(!result.stdout.includes(secretSsn), sql);
      assert.match(result.stdout, /still-up/);
    }
    // Binary output cannot be masked at all: refused cleanly, never a FATAL mid-stream.
    for (const sql of [
      'COPY plain TO STDOUT (FORMAT binary)',
      "copy plain to stdout (freeze false, format 'binary')",
      'COPY BINARY plain TO STDOUT',
      'COPY (SELECT * FROM plain) TO STDOUT WITH (FORMAT binary)',
    ]) {
      const result = await psql(copying, `${sql};\nSELECT 'still-up';`, { args: ['-At'] });
      assert.match(
        result.stderr,
        /ERROR: {2}airlock: statement denied: binary COPY output cannot be masked/,
        sql,
      );
      assert.doesNotMatch(result.stderr, /FATAL|server closed/, sql);
      assert.match(result.stdout, /still-up/);
    }
    // CSV given after other options is read as CSV: the whole line goes to the detectors.
    const csv = await psql(
      copying,
      'COPY (SELECT id, name, email FROM customers ORDER BY id) TO STDOUT (HEADER false, FORMAT csv);',
      {
        args: ['-At'],
      },
    );
    assert.equal(csv.code, 0, csv.stderr);
    assert.equal(csv.stdout, `1,Ada,${secretEmail}\n2,Bob,bob-mail\n`);
  });

  test('a COPY held for approval that masking could not cover is refused before anyone is asked', async () => {
    const asked: string[] = [];
    const held = await startEnforcer(
      server,
      [
        policy('held-copy', {
          masking: [{ name: 'pii', detectors: ['email'], strategy: 'redact', indirectUse: 'allow' }],
          rules: [{ name: 'approve-copy', action: 'require-approval', sql: { statements: ['COPY'] } }],
        }),
      ],
      {
        approvals: {
          request: async (req) => {
            asked.push(req.text);
            return { approved: true, outcome: 'approved', decidedBy: 'alice', request: 'ar-copy' };
          },
        },
      },
    );
    try {
      const binary = await psql(held, "COPY plain TO STDOUT (FORMAT 'binary');\nSELECT 'still-up';", {
        args: ['-At'],
      });
      assert.match(binary.stderr, /ERROR: {2}airlock: statement denied: binary COPY output cannot be masked/);
      assert.doesNotMatch(binary.stderr, /FATAL|server closed/);
      assert.match(binary.stdout, /still-up/);
      assert.deepEqual(asked, []);
      const text = await psql(held, 'COPY plain TO STDOUT;', { args: ['-At'] });
      assert.equal(text.code, 0, text.stderr);
      assert.equal(text.stdout, '1\tone\n2\ttwo\n');
      assert.equal(asked.length, 1);
    } finally {
      await held.close();
    }
  });

  test('COPY through the extended protocol: refused at Parse before it runs when masking could not cover it', async () => {
    const raw = await RawClient.session(copying.host, copying.port);
    try {
      for (const text of ['COPY plain TO STDOUT (FORMAT binary)', 'copy/**/customers (id, ssn) to stdout']) {
        raw.send(parse('', text), bind('', '', [], []), execute('', 0), sync());
        const frames = await raw.until('Z');
        const error = frames.find((f) => f.type === 'E');
        assert.equal(error?.fields?.get('C'), '42501', text);
        assert.match(error?.fields?.get('M') ?? '', /^airlock: statement denied/, text);
        assert.ok(!frames.some((f) => f.type === 'H' || f.type === 'd'), text);
      }
      // A table without column rules copies out, its rows scanned by the detectors.
      raw.send(
        parse('', 'COPY (SELECT id, email FROM customers ORDER BY id) TO STDOUT'),
        bind('', '', [], []),
        execute('', 0),
        sync(),
      );
      const copied = await raw.until('Z');
      const rows = copied.filter((f) => f.type === 'd').map((f) => f.body.toString());
      assert.deepEqual(rows, [`1\t${secretEmail}\n`, '2\tbob-mail\n']);
      raw.send(query("SELECT 'still-up'"));
      const after = await raw.until('Z');
      assert.ok(after.some((f) => f.type === 'D' && f.body.toString().includes('still-up')));
    } finally {
      raw.close();
    }
  });
});

// ---------------------------------------------------------------------------------------
// Settings that change how the server reads SQL text, changed inside a pipeline

/** A message of the given type around raw bytes (text the enforcer and the server may read differently). */
function rawMessage(type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.write(type, 0, 'latin1');
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}
const rawQuery = (text: Buffer) => rawMessage('Q', Buffer.concat([text, Buffer.from([0])]));
const rawParse = (text: Buffer) =>
  rawMessage('P', Buffer.concat([Buffer.from([0]), text, Buffer.from([0, 0, 0])]));

/** A session straight to the server, past the enforcer: where each attack is first shown to work. */
async function directSession(settings: [string, string][] = []): Promise<RawClient> {
  const direct = await RawClient.connect(server.socketDir, server.port);
  direct.send(encodeStartup([['user', server.user], ['database', server.database], ...settings]));
  await direct.until('Z');
  return direct;
}

/**
 * Text that runs DROP TABLE only for a server that reads it in Shift-JIS (0x95 0x5C is one
 * character there; to a UTF-8 reader the 0x5C escapes the quote) or with
 * standard_conforming_strings off (the backslash escapes the first quote): read as the enforcer
 * reads it, it is a SELECT of string literals.
 */
const smuggled = {
  sjis: (table: string) =>
    Buffer.concat([
      Buffer.from("SELECT E'"),
      Buffer.from([0x95]),
      Buffer.from(`\\'; DROP TABLE ${table}; --'`),
    ]),
  nonstandard: (table: string) => Buffer.from(`SELECT 'x\\' , ' ; DROP TABLE ${table}; -- '`),
};

describe('postgres enforcer: a pipeline that changes how the server reads the text after it', () => {
  let guarded: TestEnforcer;
  const exists = async (table: string) =>
    (await server.asUser(`SELECT to_regclass('public.${table}') IS NOT NULL AS found`)).rows[0]
      .found as boolean;
  before(async () => {
    await server.asUser(`
      CREATE TABLE keep (id int);
      CREATE FUNCTION positive(int) RETURNS boolean LANGUAGE sql AS 'SELECT $1 > 0';
      CREATE FUNCTION switch_to_sjis() RETURNS void LANGUAGE plpgsql AS $$BEGIN PERFORM set_config('client_encoding', 'SJIS', false); END$$;
    `);
    guarded = await startEnforcer(server, [
      policy('no-drop', { rules: [{ name: 'no-drop', action: 'deny', sql: { statements: ['DROP'] } }] }),
    ]);
  });
  after(async () => {
    await guarded?.close();
  });

  test('directly, each smuggled text drops the table once the setting is changed', async () => {
    for (const [setting, text] of [
      ["SET client_encoding = 'SJIS'", smuggled.sjis('victim')],
      ["SET standard_conforming_strings = 'off'", smuggled.nonstandard('victim')],
    ] as const) {
      await server.asUser('CREATE TABLE victim (id int)');
      const direct = await directSession();
      try {
        direct.send(query(setting), rawQuery(text));
        await direct.until('Z');
        await direct.until('Z');
        assert.equal(await exists('victim'), false, setting);
      } finally {
        direct.close();
      }
    }
  });

  test('simple protocol: the text after the change waits for the server, which reports it, and the session ends', async () => {
    const changes = [
      "SELECT set_config('client_encoding', 'SJIS', false)",
      "SET client_encoding = 'SJIS'",
      "set NAMES 'sjis'",
      "SELECT set_config(lower('CLIENT_ENCODING'), 'SJIS', false)",
      // A DO block could do the same, but a rule on DROP refuses it (it may run any statement).
      'SELECT switch_to_sjis()',
      "SET standard_conforming_strings = 'off'",
      '/* x */ SET LOCAL standard_conforming_strings TO off',
    ];
    for (const change of changes) {
      const text = change.includes('standard') ? smuggled.nonstandard('keep') : smuggled.sjis('keep');
      const raw = await RawClient.session(guarded.host, guarded.port);
      try {
        raw.send(query(change.includes('LOCAL') ? `BEGIN; ${change}` : change), rawQuery(text));
        const frames = await raw.until('never');
        const last = frames.filter((f) => f.type === 'E').at(-1);
        assert.equal(last?.fields?.get('S'), 'FATAL', change);
        assert.match(last?.fields?.get('M') ?? '', /^Airlock/, change);
        assert.ok(raw.closed, change);
        assert.ok(await exists('keep'), change);
      } finally {
        raw.close();
      }
    }
  });

  test('extended protocol: text sent after the change before Sync is refused, and the change rolled back', async () => {
    const raw = await RawClient.session(guarded.host, guarded.port);
    try {
      raw.send(
        parse('', "SELECT set_config('client_encoding', 'SJIS', false)"),
        bind('', '', [], []),
        execute('', 0),
        rawParse(smuggled.sjis('keep')),
        bind('', '', [], []),
        execute('', 0),
        sync(),
      );
      const frames = await raw.until('Z');
      const errors = frames.filter((f) => f.type === 'E');
      assert.equal(errors.length, 1);
      assert.equal(errors[0]!.fields?.get('C'), '0A000');
      assert.match(errors[0]!.fields?.get('M') ?? '', /^Airlock reads no new SQL text after a statement/);
      assert.ok(!frames.some((f) => f.type === 'S' && f.body.includes('SJIS')));
      raw.send(query('SHOW client_encoding'));
      const shown = await raw.until('Z');
      assert.ok(shown.some((f) => f.type === 'D' && f.body.includes('UTF8')));
      assert.ok(await exists('keep'));
    } finally {
      raw.close();
    }
  });

  test('extended protocol: after Sync the next text waits for the server, which reports the change', async () => {
    const raw = await RawClient.session(guarded.host, guarded.port);
    try {
      raw.send(
        parse('', "SELECT set_config('client_encoding', 'SJIS', false)"),
        bind('', '', [], []),
        execute('', 0),
        sync(),
        rawParse(smuggled.sjis('keep')),
        bind('', '', [], []),
        execute('', 0),
        sync(),
      );
      const frames = await raw.until('never');
      assert.equal(
        frames
          .filter((f) => f.type === 'E')
          .at(-1)
          ?.fields?.get('S'),
        'FATAL',
      );
      assert.ok(raw.closed);
      assert.ok(await exists('keep'));
    } finally {
      raw.close();
    }
  });

  test('a statement that may change the settings still runs, and pipelines after it resume', async () => {
    const raw = await RawClient.session(guarded.host, guarded.port);
    try {
      // A user function in COPY's WHERE: the copy data passes while the enforcer waits.
      raw.send(query('COPY keep FROM STDIN WHERE positive(id)'));
      await raw.until('G');
      raw.send(
        rawMessage('d', Buffer.from('1\n-1\n')),
        rawMessage('c', Buffer.alloc(0)),
        query('SELECT count(*) FROM keep'),
      );
      const frames = [...(await raw.until('Z')), ...(await raw.until('Z'))];
      assert.ok(frames.some((f) => f.type === 'C' && f.body.toString().startsWith('COPY 1')));
      assert.ok(frames.some((f) => f.type === 'D' && f.body.toString().includes('1')));
      raw.send(
        parse('', "SELECT set_config('client_encoding', 'UTF8', false)"),
        bind('', '', [], []),
        execute('', 0),
        sync(),
        query('SELECT 2'),
      );
      const after = [...(await raw.until('Z')), ...(await raw.until('Z'))];
      assert.ok(!after.some((f) => f.type === 'E'));
      assert.ok(after.some((f) => f.type === 'D' && f.body.toString().includes('2')));
      // A write may fire a trigger: a statement already parsed runs again (a driver's batch),
      // the text after the Sync waits its turn, and text outside ASCII before Sync is refused.
      raw.send(
        parse('ins', 'INSERT INTO keep VALUES ($1)'),
        bind('', 'ins', ['7'], []),
        execute('', 0),
        bind('', 'ins', ['8'], []),
        execute('', 0),
        sync(),
        query('SELECT count(*) FROM keep WHERE id IN (7, 8)'),
      );
      const batch = [...(await raw.until('Z')), ...(await raw.until('Z'))];
      assert.ok(!batch.some((f) => f.type === 'E'));
      assert.ok(batch.some((f) => f.type === 'D' && f.body.toString().includes('2')));
      raw.send(
        parse('', 'INSERT INTO keep VALUES (9)'),
        bind('', '', [], []),
        execute('', 0),
        rawParse(smuggled.sjis('keep')),
        sync(),
      );
      const refused = (await raw.until('Z')).filter((f) => f.type === 'E');
      assert.equal(refused.length, 1);
      assert.equal(refused[0]!.fields?.get('C'), '0A000');
    } finally {
      raw.close();
    }
  });

  test('a client encoding other than UTF-8 (and SQL_ASCII on a UTF8 database) is refused: the server would read names the enforcer cannot', async () => {
    // Directly: in LATIN1, the byte 0xE9 names the table données, which no UTF-8 reader sees.
    await server.asUser('CREATE TABLE "données" (id int)');
    const direct = await directSession([['client_encoding', 'LATIN1']]);
    try {
      direct.send(rawQuery(Buffer.from('SELECT count(*) FROM "donn\xe9es"', 'latin1')));
      const frames = await direct.until('Z');
      assert.ok(!frames.some((f) => f.type === 'E'), 'the server reads LATIN1 0xE9 as é');
    } finally {
      direct.close();
    }
    // At startup, in either spelling, and by a SET later: the session ends naming the setting.
    for (const encoding of ['LATIN1', 'win1252', 'EUC_JP']) {
      await assert.rejects(
        RawClient.session(guarded.host, guarded.port, [['client_encoding', encoding]]),
        /client_encoding (LATIN1|WIN1252|EUC_JP)/i,
        encoding,
      );
    }
    const raw = await RawClient.session(guarded.host, guarded.port);
    try {
      raw.send(query("SET client_encoding = 'LATIN1'"));
      const frames = await raw.until('never');
      const last = frames.filter((f) => f.type === 'E').at(-1);
      assert.equal(last?.fields?.get('S'), 'FATAL');
      assert.match(last?.fields?.get('M') ?? '', /client_encoding LATIN1 on a UTF8 database/);
    } finally {
      raw.close();
    }
    // psql in a C locale asks for SQL_ASCII: a UTF8 database checks its bytes as UTF-8.
    const ascii = await RawClient.session(guarded.host, guarded.port, [['client_encoding', 'SQL_ASCII']]);
    try {
      ascii.send(query("SELECT 'café' AS word"));
      const frames = await ascii.until('Z');
      assert.ok(frames.some((f) => f.type === 'D' && f.body.toString().includes('café')));
    } finally {
      ascii.close();
    }
  });

  describe('user code a plain read runs: a view, a row-level security policy, a domain check', () => {
    before(async () => {
      await server.asUser(`
        CREATE FUNCTION to_sjis() RETURNS boolean LANGUAGE plpgsql
          AS $$BEGIN PERFORM set_config('client_encoding', 'SJIS', false); RETURN true; END$$;
        CREATE VIEW innocent AS SELECT 1 AS one WHERE to_sjis();
        CREATE TABLE rowsecure (id int);
        INSERT INTO rowsecure VALUES (1);
        ALTER TABLE rowsecure ENABLE ROW LEVEL SECURITY;
        ALTER TABLE rowsecure FORCE ROW LEVEL SECURITY;
        CREATE POLICY sneaky ON rowsecure USING (to_sjis());
        CREATE DOMAIN checked AS int CHECK (to_sjis());
        CREATE VIEW harmless AS SELECT 1 AS one;
      `);
    });
    const reads = ['SELECT * FROM innocent', 'select count(*) from ROWSECURE', 'SELECT 1::checked'];

    test('directly, each read changes the encoding and the smuggled text after it drops the table', async () => {
      for (const read of reads) {
        await server.asUser('CREATE TABLE victim (id int)');
        const direct = await directSession();
        try {
          direct.send(query(read), rawQuery(smuggled.sjis('victim')));
          await direct.until('Z');
          await direct.until('Z');
          assert.equal(await exists('victim'), false, read);
        } finally {
          direct.close();
        }
      }
    });

    test('simple protocol: text outside plain ASCII waits for the server, which reports the change, and the session ends', async () => {
      for (const read of reads) {
        const raw = await RawClient.session(guarded.host, guarded.port);
        try {
          raw.send(query(read), rawQuery(smuggled.sjis('keep')));
          const frames = await raw.until('never');
          const last = frames.filter((f) => f.type === 'E').at(-1);
          assert.equal(last?.fields?.get('S'), 'FATAL', read);
          assert.match(last?.fields?.get('M') ?? '', /client_encoding SJIS/, read);
          assert.ok(raw.closed, read);
          assert.ok(await exists('keep'), read);
        } finally {
          raw.close();
        }
      }
    });

    test('extended protocol: text outside plain ASCII after a Bind or Execute is refused before Sync, and the change rolled back', async () => {
      const groups = [
        [parse('', reads[0]!), bind('', '', [], []), execute('', 0)],
        [parse('', reads[1]!), bind('', '', [], []), execute('', 0)],
        // The domain's check runs when Bind reads the parameter, before any Execute.
        [parse('', 'SELECT $1::checked'), bind('', '', ['1'], [])],
      ];
      for (const [i, group] of groups.entries()) {
        const raw = await RawClient.session(guarded.host, guarded.port);
        try {
          raw.send(...group, rawParse(smuggled.sjis('keep')), bind('', '', [], []), execute('', 0), sync());
          const errors = (await raw.until('Z')).filter((f) => f.type === 'E');
          assert.equal(errors.length, 1, `group ${i}`);
          assert.equal(errors[0]!.fields?.get('C'), '0A000', `group ${i}`);
          assert.match(errors[0]!.fields?.get('M') ?? '', /^Airlock reads no new SQL text after a statement/);
          raw.send(query('SHOW client_encoding'));
          const shown = await raw.until('Z');
          assert.ok(
            shown.some((f) => f.type === 'D' && f.body.includes('UTF8')),
            `group ${i}`,
          );
          assert.ok(await exists('keep'));
        } finally {
          raw.close();
        }
      }
    });

    test('plain ASCII text reads the same under any setting: pipelines and batches of new statements pass', async () => {
      const raw = await RawClient.session(guarded.host, guarded.port);
      try {
        // A driver's batch of different writes before one Sync, and simple queries pipelined
        // behind reads that run user code.
        raw.send(
          parse('', 'INSERT INTO keep VALUES (21)'),
          bind('', '', [], []),
          execute('', 0),
          parse('', 'INSERT INTO keep VALUES (22)'),
          bind('', '', [], []),
          execute('', 0),
          sync(),
          query('SELECT * FROM harmless'),
          query("SELECT count(*) FROM keep WHERE id IN (21, 22) AND 'a' = 'a'"),
        );
        const frames = [...(await raw.until('Z')), ...(await raw.until('Z')), ...(await raw.until('Z'))];
        assert.deepEqual(
          frames.filter((f) => f.type === 'E').map((f) => f.fields?.get('M')),
          [],
        );
        assert.ok(frames.some((f) => f.type === 'D' && f.body.toString().includes('2')));
        // Text outside ASCII behind a harmless read waits its turn and runs.
        raw.send(query('SELECT * FROM harmless'), query("SELECT 'grüße' AS word"));
        const after = [...(await raw.until('Z')), ...(await raw.until('Z'))];
        assert.ok(after.some((f) => f.type === 'D' && f.body.toString().includes('grüße')));
      } finally {
        raw.close();
      }
    });
  });
});
