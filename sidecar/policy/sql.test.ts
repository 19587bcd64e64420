import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import fc from 'fast-check';
import { decideSql } from './decide.ts';
import { policy } from './fixtures.ts';
import {
  analyzeSql,
  type ColumnUse,
  loadSqlParser,
  preparedStatementName,
  type SqlStatement,
} from './sql.ts';
import { demotesPgCatalog } from './sql-text.ts';

function one(sql: string): SqlStatement {
  const analysis = analyzeSql(sql);
  assert.ok(analysis.ok, `expected ${sql} to parse: ${analysis.ok ? '' : analysis.error}`);
  assert.equal(analysis.statements.length, 1);
  return analysis.statements[0]!;
}

const sorted = (uses: ColumnUse[]) =>
  uses.map((u) => `${u.table ?? '?'}.${u.column}:${u.direct ? 'direct' : 'indirect'}`).sort();

describe('analyzeSql', () => {
  before(() => loadSqlParser());

  it('splits statements and gives each its own text, with multi-byte characters before it', () => {
    const analysis = analyzeSql("SELECT 'é😀' ;  /* c */ DELETE FROM t WHERE id = 1;\nSHOW x");
    assert.ok(analysis.ok);
    assert.deepEqual(
      analysis.statements.map((s) => s.text),
      ["SELECT 'é😀'", 'DELETE FROM t WHERE id = 1', 'SHOW x'],
    );
  });

  it('reports tables as written: schema-qualified, lower-cased unless quoted, unicode escapes decoded', () => {
    const s = one('SELECT * FROM Public.Orders o JOIN "Customers" c ON true JOIN U&"d\\0061ta" d ON true');
    assert.deepEqual(s.tables.toSorted(), ['Customers', 'data', 'public.orders']);
  });

  it('finds tables of DROP, TRUNCATE, GRANT, LOCK and SELECT INTO', () => {
    assert.deepEqual(one('DROP TABLE a, s.b').tables, ['a', 's.b']);
    assert.deepEqual(one('TRUNCATE x, y').tables, ['x', 'y']);
    assert.deepEqual(one('GRANT SELECT ON secrets TO bob').tables, ['secrets']);
    assert.deepEqual(one('LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE').tables, ['accounts']);
    assert.deepEqual(one('SELECT a INTO copy FROM src').tables.toSorted(), ['copy', 'src']);
  });

  it('collects function calls everywhere, schema-qualified when written so', () => {
    const s = one(
      'SELECT lower(name), pg_catalog.upper(x) FROM t WHERE id IN (SELECT max(id) FROM u WHERE Public.F(1) > 0)',
    );
    assert.deepEqual(s.functions.toSorted(), ['lower', 'max', 'pg_catalog.upper', 'public.f']);
    assert.deepEqual(one('CALL archive(1)').functions, ['archive']);
  });

  it('lists nested statement kinds after the outer kind', () => {
    const s = one(
      'WITH a AS (DELETE FROM t RETURNING *), b AS (UPDATE u SET x = 1 WHERE id = 2 RETURNING *) SELECT 1',
    );
    assert.deepEqual(s.kinds, ['SELECT', 'DELETE', 'UPDATE']);
    assert.deepEqual(s.classes.toSorted(), ['read', 'write']);
    assert.equal(s.unboundedWrite, true);
    const insert = one('WITH x AS (INSERT INTO log VALUES (1) RETURNING id) UPDATE t SET a = 1 WHERE id = 1');
    assert.deepEqual(insert.kinds, ['UPDATE', 'INSERT']);
    assert.equal(insert.unboundedWrite, false);
  });

  it('classifies by class', () => {
    const classes = (sql: string) => one(sql).classes.toSorted();
    assert.deepEqual(classes('SELECT 1'), ['read']);
    assert.deepEqual(classes('TRUNCATE t'), ['ddl', 'write']);
    assert.deepEqual(classes('CREATE TABLE t (id int)'), ['ddl']);
    assert.deepEqual(classes('COMMENT ON TABLE t IS $$x$$'), ['ddl']);
    assert.deepEqual(classes('GRANT SELECT ON t TO bob'), ['dcl']);
    assert.deepEqual(classes('REVOKE SELECT ON t FROM bob'), ['dcl']);
    assert.deepEqual(classes('CREATE ROLE bob'), ['dcl']);
    assert.deepEqual(classes('ALTER ROLE bob SUPERUSER'), ['dcl']);
    // A DO block may run any statement: every class and every kind.
    assert.deepEqual(classes('DO $$BEGIN END$$'), ['admin', 'dcl', 'ddl', 'read', 'write']);
    assert.ok(one('DO $$BEGIN DELETE FROM t; END$$').kinds.includes('DELETE'));
    assert.deepEqual(classes('CHECKPOINT'), ['admin']);
    assert.deepEqual(classes('COPY t FROM STDIN'), ['write']);
    assert.deepEqual(classes("COPY t TO '/tmp/x'"), ['admin', 'read']);
    assert.deepEqual(classes('BEGIN'), []);
    // A sequence's next value and a row lock change what other sessions see, as a write does.
    assert.deepEqual(classes("SELECT nextval('s')"), ['read', 'write']);
    assert.deepEqual(classes("select PG_CATALOG.SETVAL('s', 1)"), ['read', 'write']);
    assert.deepEqual(classes("SELECT currval('s')"), ['read']);
    assert.deepEqual(classes('SELECT * FROM t FOR UPDATE'), ['read', 'write']);
    assert.deepEqual(classes('SELECT * FROM (SELECT * FROM t FOR KEY SHARE SKIP LOCKED) s'), [
      'read',
      'write',
    ]);
    assert.deepEqual(classes('WITH x AS (SELECT id FROM t FOR NO KEY UPDATE) SELECT 1'), ['read', 'write']);
    assert.equal(one('REVOKE SELECT ON t FROM bob').kind, 'REVOKE');
    assert.equal(one('VACUUM t').kind, 'VACUUM');
    assert.equal(one('ANALYZE t').kind, 'ANALYZE');
    assert.equal(one('REFRESH MATERIALIZED VIEW v').kind, 'REFRESH');
    assert.equal(one('SECURITY LABEL ON TABLE t IS $$x$$').kind, 'SECURITY LABEL');
  });

  it('maps PREPARE to its inner statement and EXECUTE to its name', () => {
    const prepare = one('PREPARE del (int) AS DELETE FROM t WHERE id = $1');
    assert.equal(preparedStatementName(prepare), 'del');
    assert.deepEqual(prepare.kinds, ['PREPARE', 'DELETE']);
    assert.equal(prepare.prepared?.inner.kind, 'DELETE');
    assert.equal(prepare.prepared?.inner.text, 'DELETE FROM t WHERE id = $1');
    const execute = one('EXECUTE del(3)');
    assert.equal(execute.executes, 'del');
    assert.equal(preparedStatementName(execute), undefined);
    // Wrapped, it still runs the prepared statement.
    assert.equal(one('EXPLAIN ANALYZE EXECUTE del(3)').executes, 'del');
    assert.equal(one('EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE "Del"').executes, 'Del');
    assert.equal(one('CREATE TABLE copy AS EXECUTE del(3)').executes, 'del');
    assert.equal(one('CREATE TEMP TABLE IF NOT EXISTS copy AS EXECUTE del WITH NO DATA').executes, 'del');
  });

  it('EXPLAIN reports the explained statement, with or without ANALYZE', () => {
    assert.deepEqual(one('EXPLAIN ANALYZE DELETE FROM t').kinds, ['EXPLAIN', 'DELETE']);
    assert.deepEqual(one('EXPLAIN UPDATE t SET a = 1 WHERE id = 1').kinds, ['EXPLAIN', 'UPDATE']);
  });

  it('detects unbounded writes conservatively', () => {
    const unbounded = [
      'DELETE FROM t',
      'UPDATE t SET a = 1',
      'DELETE FROM t WHERE 1 = 1',
      'DELETE FROM t WHERE 2 > 1',
      "DELETE FROM t WHERE 1 = '1'",
      'DELETE FROM t WHERE NULL IS NULL',
      'DELETE FROM t WHERE true IS TRUE',
      'DELETE FROM t WHERE 1 IN (1, 2)',
      'DELETE FROM t WHERE x >= x',
      'DELETE FROM t WHERE x IS NOT DISTINCT FROM x',
      'DELETE FROM t WHERE $1',
      'DELETE FROM t WHERE (SELECT true)',
      'DELETE FROM t WHERE random() < 2',
      'DELETE FROM t WHERE id > 0 OR id <= 0',
      'DELETE FROM t WHERE 10 > id OR id >= 10',
      "UPDATE t SET a = 1 WHERE status = 'x' OR status <> 'x'",
      "UPDATE t SET a = 1 WHERE status = 'x' OR status != 'x'",
      'DELETE FROM t WHERE id < 5 OR NOT (id < 5)',
      'DELETE FROM t WHERE id = 1 OR (x LIKE $$a%$$ OR NOT x LIKE $$a%$$)',
      'UPDATE t SET a = 1 FROM u WHERE u.flag',
      'TRUNCATE t',
    ];
    for (const sql of unbounded) assert.equal(one(sql).unboundedWrite, true, sql);
    const bounded = [
      'DELETE FROM t WHERE id = 1',
      'DELETE FROM t WHERE id = $1',
      'DELETE FROM t WHERE id = 1 AND true',
      'DELETE FROM t WHERE x <> x',
      'DELETE FROM t WHERE id > 0 OR id < 0',
      'DELETE FROM t WHERE id > 0 OR x <= 0',
      'DELETE FROM t WHERE id > 0',
      'DELETE FROM t WHERE id > 0 AND id <= 0',
      'DELETE FROM t WHERE CURRENT OF c',
      'DELETE FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.id = t.id)',
      'DELETE FROM t a WHERE a.id < 10',
      'UPDATE t SET a = 1 FROM u WHERE t.id = u.id',
      'INSERT INTO t VALUES (1)',
      'SELECT * FROM t',
    ];
    for (const sql of bounded) assert.equal(one(sql).unboundedWrite, false, sql);
  });

  it('marks only bare top-level targets as direct column uses', () => {
    assert.deepEqual(sorted(one('SELECT c.ssn, email AS e FROM public.customers c').columnUses), [
      'public.customers.email:direct',
      'public.customers.ssn:direct',
    ]);
    assert.deepEqual(sorted(one("SELECT encode(ssn, 'hex') FROM customers").columnUses), [
      'customers.ssn:indirect',
    ]);
    assert.deepEqual(sorted(one('SELECT id FROM customers WHERE ssn = $1 ORDER BY name').columnUses), [
      'customers.id:direct',
      'customers.name:indirect',
      'customers.ssn:indirect',
    ]);
    assert.deepEqual(sorted(one('SELECT ssn FROM a UNION SELECT ssn FROM b').columnUses), [
      'a.ssn:indirect',
      'b.ssn:indirect',
    ]);
    assert.deepEqual(sorted(one('DELETE FROM customers WHERE id = 1 RETURNING ssn').columnUses), [
      'customers.id:indirect',
      'customers.ssn:indirect',
    ]);
  });

  it('resolves aliases, leaves ambiguous columns without a table', () => {
    const s = one('SELECT o.total, ssn FROM orders o JOIN public.customers c ON c.id = o.cid');
    assert.deepEqual(sorted(s.columnUses), [
      '?.ssn:direct',
      'orders.cid:indirect',
      'orders.total:direct',
      'public.customers.id:indirect',
    ]);
    // A subquery alias or a CTE has no table behind it.
    assert.deepEqual(sorted(one('WITH w AS (SELECT 1 AS x) SELECT w.x FROM w').columnUses), ['?.x:direct']);
  });

  it('treats stars: direct at top level, indirect in set operations and functions, ignored by count', () => {
    assert.deepEqual(sorted(one('SELECT * FROM customers').columnUses), ['customers.*:direct']);
    assert.deepEqual(sorted(one('SELECT c.*, o.* FROM customers c, orders o').columnUses), [
      'customers.*:direct',
      'orders.*:direct',
    ]);
    assert.deepEqual(sorted(one('SELECT count(*), count(c.*), count(c) FROM customers c').columnUses), []);
    assert.deepEqual(sorted(one('SELECT to_json(c.*) FROM customers c').columnUses), [
      'customers.*:indirect',
    ]);
    assert.deepEqual(sorted(one('SELECT * FROM a UNION SELECT * FROM b').columnUses), [
      'a.*:indirect',
      'b.*:indirect',
    ]);
    assert.deepEqual(sorted(one('SELECT 1 WHERE EXISTS (SELECT * FROM customers)').columnUses), []);
  });

  it('describes COPY from the parse tree: options in any position, legacy keywords, comments', () => {
    const copy = (sql: string) => one(sql).copy;
    assert.deepEqual(copy('COPY t TO STDOUT'), {
      direction: 'to',
      endpoint: 'stdio',
      format: 'text',
      relation: 't',
      columns: [],
    });
    assert.equal(copy('copy/**/t to/* x */stdout with csv')?.format, 'csv');
    assert.equal(copy('COPY BINARY t TO STDOUT')?.format, 'binary');
    assert.equal(copy("COPY t TO STDOUT (FREEZE, FORMAT 'binary')")?.format, 'binary');
    assert.equal(copy('COPY t TO STDOUT (HEADER, FORMAT csv)')?.format, 'csv');
    // Several formats, or one the server does not know: never taken for text.
    assert.equal(copy('COPY BINARY t TO STDOUT CSV')?.format, 'binary');
    assert.equal(copy("COPY t TO STDOUT (FORMAT 'CSV')")?.format, 'binary');
    assert.deepEqual(copy('COPY s.t (a, "B") FROM STDIN'), {
      direction: 'from',
      endpoint: 'stdio',
      format: 'text',
      relation: 's.t',
      columns: ['a', 'B'],
    });
    assert.equal(copy("COPY t TO PROGRAM 'cat'")?.endpoint, 'program');
    assert.equal(copy("COPY t FROM '/tmp/x'")?.endpoint, 'file');
    assert.equal(copy('COPY (SELECT 1) TO STDOUT')?.relation, undefined);
    assert.equal(one('SELECT 1').copy, undefined);
  });

  it('classifies MERGE arms and upserts by what they do', () => {
    assert.deepEqual(
      one(
        'MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE WHEN NOT MATCHED THEN INSERT VALUES (1)',
      ).kinds,
      ['MERGE', 'DELETE', 'INSERT'],
    );
    assert.deepEqual(one('INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET x = 1').kinds, [
      'INSERT',
      'UPDATE',
    ]);
    const unbounded = [
      'MERGE INTO t USING s ON true WHEN MATCHED THEN UPDATE SET x = 1',
      'MERGE INTO t USING s ON t.id = t.id WHEN MATCHED THEN DELETE',
      'MERGE INTO t USING s ON s.id = 1 WHEN MATCHED AND true THEN DELETE',
      'INSERT INTO t SELECT * FROM t ON CONFLICT (id) DO UPDATE SET x = 1',
      'INSERT INTO t SELECT * FROM u ON CONFLICT (id) DO UPDATE SET x = 1 WHERE 1 = 1',
    ];
    for (const sql of unbounded) assert.equal(one(sql).unboundedWrite, true, sql);
    const bounded = [
      'MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE',
      'MERGE INTO t USING s ON true WHEN MATCHED AND t.id = 3 THEN DELETE',
      'MERGE INTO t USING s ON true WHEN NOT MATCHED THEN INSERT VALUES (1)',
      'MERGE INTO t USING s ON true WHEN MATCHED THEN DO NOTHING',
      'INSERT INTO t VALUES (1), (2) ON CONFLICT (id) DO UPDATE SET x = 1',
      'INSERT INTO t SELECT * FROM u ON CONFLICT (id) DO UPDATE SET x = 1 WHERE t.id < 10',
      'INSERT INTO t SELECT * FROM u ON CONFLICT DO NOTHING',
    ];
    for (const sql of bounded) assert.equal(one(sql).unboundedWrite, false, sql);
  });

  it('makes unknown and value-reading functions admin and a use of every column; built-ins stay read', () => {
    const everything = (sql: string) =>
      one(sql).columnUses.some((u) => u.column === '*' && u.table === undefined);
    for (const sql of [
      'SELECT public.f(1)',
      'SELECT myfunc()',
      "SELECT query_to_xml('select 1', true, false, '')",
      "SELECT pg_catalog.ts_stat('select 1')",
      'SELECT pg_catalog.evil()',
      'DO $$BEGIN PERFORM 1; END$$',
      'CREATE FUNCTION f() RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql',
      'CREATE TRIGGER tr AFTER INSERT ON t EXECUTE FUNCTION g()',
      'SELECT * FROM pg_stats',
    ]) {
      assert.ok(everything(sql), sql);
    }
    for (const sql of [
      'SELECT lower(name), count(*), now() FROM t',
      'SELECT pg_catalog.upper($1)',
      'SELECT * FROM public.pg_stats',
    ]) {
      assert.ok(!everything(sql), sql);
      assert.deepEqual(one(sql).classes, ['read'], sql);
    }
    assert.ok(one('SELECT public.f(1)').classes.includes('admin'));
  });

  it('renaming or moving a masked column or its table is a use of it, under a masking-only policy', () => {
    const masked = policy({
      name: 'p',
      masking: [
        { name: 'pii', columns: ['public.customers.email'], strategy: 'redact', indirectUse: 'deny' },
      ],
    });
    const decide = (sql: string) => decideSql([masked], analyzeSql(sql)).action;
    assert.equal(decide('ALTER TABLE customers RENAME COLUMN email TO e2'), 'deny');
    assert.equal(decide('ALTER TABLE public.customers RENAME TO c2'), 'deny');
    assert.equal(decide('ALTER TABLE customers SET SCHEMA hidden'), 'deny');
    assert.equal(decide('ALTER TABLE customers RENAME COLUMN name TO full_name'), 'allow');
    assert.equal(decide('ALTER TABLE orders RENAME TO orders_old'), 'allow');
    assert.equal(decide('SET search_path = public, pg_catalog'), 'deny');
    assert.equal(demotesPgCatalog('"$user", public, pg_catalog'), true);
    assert.equal(demotesPgCatalog('pg_catalog, public'), false);
    assert.equal(demotesPgCatalog('public'), false);
    assert.equal(demotesPgCatalog('public, "PG_CATALOG"'), false);
    assert.equal(demotesPgCatalog('public, PG_Catalog'), true);
    assert.equal(decide('SELECT id, lower(name) FROM customers WHERE id = 1'), 'allow');
  });

  it('property: a masked column renamed or nested any way never reaches a derived output unnoticed', () => {
    const masked = policy({
      name: 'p',
      masking: [
        { name: 'pii', columns: ['public.customers.email'], strategy: 'redact', indirectUse: 'deny' },
      ],
    });
    // Each query yields customers' columns in order; emailAt is the name email goes by.
    type Source = { sql: string; names: string[] };
    const ident = fc.constantFrom('a', 'b', 'c', 'x', 'y', 'z', 'email', 'id', 'k');
    const rename = fc.tuple(ident, ident, ident).filter(([a, b, c]) => a !== b && b !== c && a !== c);
    const base = fc.oneof(
      fc.constant<Source>({ sql: 'customers', names: ['id', 'name', 'email'] }),
      fc.constant<Source>({ sql: 'public.customers', names: ['id', 'name', 'email'] }),
      fc.constant<Source>({ sql: '"customers"', names: ['id', 'name', 'email'] }),
      rename.map((names) => ({ sql: `customers AS t(${names.join(', ')})`, names })),
      rename.map((names) => ({ sql: `customers AS t(${names.join(', ')}) TABLESAMPLE SYSTEM (100)`, names })),
    );
    let n = 0;
    const wrap = (source: Source, how: number, names: string[] | undefined): Source => {
      const alias = `q${n++}`;
      const list = names ? `(${names.join(', ')})` : '';
      const out = names ?? source.names;
      const from = source.sql.includes(' ') || source.sql.startsWith('(') ? source.sql : source.sql;
      switch (how) {
        case 0:
          return { sql: `(SELECT * FROM ${from}) AS ${alias}${list}`, names: out };
        case 1:
          return {
            sql: `(WITH ${alias}w${list} AS (SELECT * FROM ${from}) SELECT * FROM ${alias}w) AS ${alias}`,
            names: out,
          };
        case 2:
          return {
            sql: `(SELECT * FROM ${from} CROSS JOIN (SELECT 1 AS pad) p) AS ${alias}`,
            names: [...source.names, 'pad'],
          };
        default:
          return { sql: `(SELECT ${alias}i.* FROM ${from} ${alias}i) AS ${alias}${list}`, names: out };
      }
    };
    const uses = [
      (c: string) => `SELECT upper(${c}) FROM %s`,
      (c: string) => `SELECT encode(${c}::bytea, 'hex') FROM %s`,
      (c: string) => `SELECT translate(${c}, '0123456789', 'abcdefghij') FROM %s`,
      (c: string) => `SELECT 1 FROM %s WHERE ${c} LIKE 'a%'`,
      (c: string) => `SELECT 1 FROM %s ORDER BY ${c}`,
      (c: string) => `SELECT string_agg(${c}, ',') FROM %s`,
      (c: string) => `SELECT 1 FROM %s GROUP BY ${c}`,
      (_c: string) => `SELECT row_to_json(r) FROM %s r`,
      (c: string) => `SELECT 1 FROM %s JOIN orders o ON o.ref = ${c}`,
      (c: string) => `SELECT ${c} FROM %s UNION SELECT 'x'`,
      (c: string) => `CREATE TABLE loot AS SELECT ${c} FROM %s`,
      (c: string) => `SELECT ARRAY(SELECT ${c} FROM %s)`,
    ];
    fc.assert(
      fc.property(
        base,
        fc.array(fc.tuple(fc.integer({ min: 0, max: 3 }), fc.option(rename, { nil: undefined })), {
          maxLength: 4,
        }),
        fc.integer({ min: 0, max: uses.length - 1 }),
        fc.boolean(),
        (start, wrappers, useIndex, quote) => {
          let source = start;
          for (const [how, names] of wrappers) source = wrap(source, how, how === 2 ? undefined : names);
          const column = source.names[2]!;
          const ref = quote ? `"${column}"` : column.toUpperCase();
          const sql = uses[useIndex]!(ref).replace('%s', source.sql);
          const decision = decideSql([masked], analyzeSql(sql));
          assert.equal(decision.action, 'deny', `${sql}\n${JSON.stringify(analyzeSql(sql))}`);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('property: comments, casing, quoting, qualification and unicode escapes never hide a masked column', () => {
    const masked = policy({
      name: 'p',
      masking: [
        { name: 'pii', columns: ['public.customers.email'], strategy: 'redact', indirectUse: 'deny' },
      ],
    });
    const column = fc.constantFrom(
      'email',
      'EMAIL',
      'Email',
      '"email"',
      'U&"\\0065mail"',
      'U&"e!006dail" UESCAPE \'!\'',
    );
    const table = fc.constantFrom(
      'customers',
      'CUSTOMERS',
      'public.customers',
      '"public"."customers"',
      'Public.Customers',
      'U&"customer\\0073"',
      'prod.public.customers',
    );
    const gap = fc.constantFrom(' ', '/**/', '\n-- note\n', '\t', ' /* a /* nested */ b */ ', '\r\n');
    const templates = [
      'SELECT{g}upper({c}){g}FROM{g}{t}',
      'SELECT{g}id{g}FROM{g}{t}{g}WHERE{g}{c}{g}LIKE{g}$$a%$$',
      'SELECT{g}id{g}FROM{g}{t}{g}ORDER{g}BY{g}{c}',
      'SELECT{g}x.id{g}FROM{g}{t}{g}x{g}JOIN{g}orders{g}o{g}ON{g}o.ref{g}={g}x.{c}',
      "SELECT{g}encode(convert_to({c},{g}E'UTF8'),{g}'hex'){g}FROM{g}{t}",
      'SELECT{g}1;{g}SELECT{g}md5({c}){g}FROM{g}{t};',
      'PREPARE{g}p{g}AS{g}SELECT{g}length({c}){g}FROM{g}{t}',
      'WITH{g}w{g}AS{g}(SELECT{g}{c}{g}FROM{g}{t}){g}SELECT{g}*{g}FROM{g}w',
      'COPY{g}(SELECT{g}{c}{g}FROM{g}{t}){g}TO{g}STDOUT',
      'SELECT{g}count(*){g}FILTER{g}(WHERE{g}{c}{g}>{g}$q$m$q$){g}FROM{g}{t}',
    ];
    fc.assert(
      fc.property(fc.integer({ min: 0, max: templates.length - 1 }), column, table, gap, (index, c, t, g) => {
        const sql = templates[index]!.replaceAll('{g}', g).replaceAll('{c}', c).replaceAll('{t}', t);
        const analysis = analyzeSql(sql);
        assert.ok(analysis.ok, `${sql}: ${analysis.ok ? '' : analysis.error}`);
        assert.equal(decideSql([masked], analysis).action, 'deny', sql);
      }),
      { numRuns: 500 },
    );
  });

  it('refuses what does not parse, and what it was not loaded for', () => {
    const bad = analyzeSql('SELECT FROM WHERE');
    assert.equal(bad.ok, false);
    assert.match(bad.ok ? '' : bad.error, /syntax error/);
    assert.equal(analyzeSql('SELECT 1\u0000; DROP TABLE t').ok, false);
  });
});
