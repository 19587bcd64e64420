import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import {
  analyzeSql,
  type ColumnUse,
  loadSqlParser,
  preparedStatementName,
  type SqlStatement,
} from './sql.ts';

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
    assert.deepEqual(classes('DO $$BEGIN END$$'), ['admin']);
    assert.deepEqual(classes('CHECKPOINT'), ['admin']);
    assert.deepEqual(classes('COPY t FROM STDIN'), ['write']);
    assert.deepEqual(classes("COPY t TO '/tmp/x'"), ['admin', 'read']);
    assert.deepEqual(classes('BEGIN'), []);
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
      'UPDATE t SET a = 1 FROM u WHERE u.flag',
      'TRUNCATE t',
    ];
    for (const sql of unbounded) assert.equal(one(sql).unboundedWrite, true, sql);
    const bounded = [
      'DELETE FROM t WHERE id = 1',
      'DELETE FROM t WHERE id = $1',
      'DELETE FROM t WHERE id = 1 AND true',
      'DELETE FROM t WHERE x <> x',
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

  it('refuses what does not parse, and what it was not loaded for', () => {
    const bad = analyzeSql('SELECT FROM WHERE');
    assert.equal(bad.ok, false);
    assert.match(bad.ok ? '' : bad.error, /syntax error/);
    assert.equal(analyzeSql('SELECT 1\u0000; DROP TABLE t').ok, false);
  });
});
