// The analysis cache and the literal fast path must never change a decision: every text gets
// the analysis a fresh parse would give it.
import assert from 'node:assert/strict';
import { before, beforeEach, describe, it } from 'node:test';
import type { BundlePolicy } from '../../api/bundle.ts';
import { corpus, schemaCorpus } from './corpus.ts';
import { decideSql } from './decide.ts';
import { prodPolicy, schemaPolicy } from './fixtures.ts';
import { analyzeSql, loadSqlParser } from './sql.ts';
import { clearSqlCache, literalShape } from './sql-cache.ts';

function decision(sql: string, policies: BundlePolicy[] = [prodPolicy]) {
  const d = decideSql(policies, analyzeSql(sql));
  return { action: d.action, rule: d.rule };
}

function fresh(sql: string, policies: BundlePolicy[] = [prodPolicy]) {
  const d = decideSql(policies, analyzeSql(sql, { cache: false }));
  return { action: d.action, rule: d.rule };
}

describe('literalShape', () => {
  it('replaces numbers and plain strings, keeps everything else verbatim', () => {
    assert.equal(
      literalShape('SELECT abalance FROM pgbench_accounts WHERE aid = 48213;'),
      'SELECT abalance FROM pgbench_accounts WHERE aid = $i;',
    );
    assert.equal(
      literalShape("select a from t where b = 'x' and c > 1.5 and d = '' limit 10"),
      'select a from t where b = $s and c > $d and d = $s limit $i',
    );
    assert.equal(literalShape('SELECT "col_1" FROM t WHERE x=-4'), 'SELECT "col_1" FROM t WHERE x=-$i');
  });

  it('keeps a number after ( or , verbatim: it may be a precision the grammar checks', () => {
    assert.equal(literalShape('SELECT 1::float(53)'), 'SELECT $i::float(53)');
    assert.equal(literalShape('SELECT 2::numeric(10, 2) FROM t'), 'SELECT $i::numeric(10, 2) FROM t');
  });

  it('gives up on anything it does not fully understand', () => {
    const refused = [
      'SELECT 1 FROM t WHERE a = $1',
      'SELECT $$x$$, 1',
      "SELECT E'a\\'b', 1",
      "SELECT e'x'",
      "SELECT U&'x'",
      "SELECT u&'x'",
      "SELECT B'101'",
      "SELECT X'ff'",
      "SELECT N'x'",
      'SELECT U&"x"',
      "SELECT 'a\\'",
      "SELECT 'it''s'",
      "SELECT 'a' 'b'",
      "SELECT 'a'\n'b'",
      "SELECT 'a'\n\t 'b'",
      'SELECT 1 -- x',
      'SELECT 1 /* x */',
      "SELECT '--', 1",
      'SELECT "Abc", 1',
      'SELECT "a b", 1',
      'SELECT "", 1',
      "SELECT 'é'",
      'SELECT 1\u0000',
      'SELECT 1\f',
      'SELECT 1; SELECT 2',
      'SELECT 1;;',
      ';SELECT 1',
      'SELECT 1e5',
      'SELECT .5',
      'SELECT 1.',
      'SELECT 0x1F',
      'SELECT 1_000',
      'SELECT t.1',
      'SELECT x', // no literal at all: the exact cache covers it
    ];
    for (const sql of refused) assert.equal(literalShape(sql), undefined, sql);
  });
});

describe('analysis cache and literal fast path', () => {
  before(() => loadSqlParser());
  beforeEach(() => clearSqlCache());

  it('returns frozen analyses equal to a fresh parse', () => {
    const sql = 'SELECT id, name FROM customers WHERE id = 1';
    const first = analyzeSql(sql);
    const second = analyzeSql(sql);
    assert.equal(second, first);
    assert.deepEqual(first, analyzeSql(sql, { cache: false }));
    assert.ok(first.ok);
    assert.throws(() => first.statements.push(first.statements[0]!), TypeError);
    assert.throws(() => first.statements[0]!.tables.push('x'), TypeError);
    assert.throws(() => {
      first.statements[0]!.kinds[0] = 'DROP';
    }, TypeError);
    assert.throws(() => {
      (first.statements[0]!.columnUses[0] as { direct: boolean }).direct = false;
    }, TypeError);
  });

  it('reuses a plain SELECT under a new literal, with the new text', () => {
    const a = analyzeSql('SELECT abalance FROM pgbench_accounts WHERE aid = 48213;');
    const b = analyzeSql('SELECT abalance FROM pgbench_accounts WHERE aid = 7;');
    assert.ok(a.ok && b.ok);
    // Same arrays: the cached analysis was reused, not reparsed.
    assert.equal(b.statements[0]!.tables, a.statements[0]!.tables);
    assert.equal(b.statements[0]!.text, 'SELECT abalance FROM pgbench_accounts WHERE aid = 7');
    assert.deepEqual(b, analyzeSql('SELECT abalance FROM pgbench_accounts WHERE aid = 7;', { cache: false }));
  });

  it('never reuses writes, function calls, several statements or SELECT INTO', () => {
    const pairs = [
      ['DELETE FROM orders WHERE id = 1', 'DELETE FROM orders WHERE id = 2'],
      ["SELECT lower('a') FROM t", "SELECT lower('b') FROM t"],
      ['SELECT 1 INTO x FROM t WHERE a = 1', 'SELECT 1 INTO x FROM t WHERE a = 2'],
      ['EXPLAIN SELECT 1 FROM t WHERE a = 1', 'EXPLAIN SELECT 1 FROM t WHERE a = 2'],
    ];
    for (const [first, second] of pairs) {
      const a = analyzeSql(first!);
      const b = analyzeSql(second!);
      assert.ok(a.ok && b.ok);
      assert.notEqual(b.statements[0]!.tables, a.statements[0]!.tables, second);
    }
  });

  // Pairs whose literals differ and whose decisions differ: whichever is analysed first, the
  // other must still get its own decision.
  const pairs: [string, string, BundlePolicy[]?][] = [
    ["DELETE FROM orders WHERE status LIKE 'a%'", "DELETE FROM orders WHERE status LIKE '%'"],
    ["SELECT set_config('search_path', 'x', false)", "SELECT set_config('role', 'x', false)"],
    ['UPDATE orders SET a = 1 WHERE id = 1 OR 1 = 2', 'UPDATE orders SET a = 1 WHERE id = 1 OR 1 = 1'],
    ['UPDATE orders SET a = 1 WHERE id = 1', 'UPDATE orders SET a = 1 WHERE 1 = 1'],
    ["DELETE FROM orders WHERE id = 1 OR 'a' = 'b'", "DELETE FROM orders WHERE id = 1 OR 'a' = 'a'"],
    // An E-string's \' is a quote inside it; in a plain string the backslash ends nothing.
    ["SELECT E'\\'; DROP TABLE t; --'", "SELECT '\\'; DROP TABLE t; --'"],
    ["SELECT 'x', E'\\' ; DROP TABLE t; '", "SELECT 'x', '\\' ; DROP TABLE t; '"],
    ['SELECT $$x; DROP TABLE t$$', 'SELECT $$x$$; DROP TABLE t'],
    ['SELECT $a$ 1 $b$, 1; DROP TABLE t; SELECT $b$ $a$', 'SELECT $a$ 1 $a$, 1; DROP TABLE t'],
    ['SELECT 1 /* ; DROP TABLE t */', 'SELECT 1 /**/; DROP TABLE t'],
    ['SELECT 1 -- ; DROP TABLE t', 'SELECT 1 --\n; DROP TABLE t'],
    ["SELECT 'a'\n'b'", "SELECT 'a' \n; DROP TABLE t; SELECT 'b'"],
    ["SELECT 'a'';DROP TABLE t;--', 1", "SELECT 'a'';DROP TABLE t;--, 1"],
    ['SELECT 1::float(53)', 'SELECT 1::float(54)'],
    ['SELECT 1::char(10)', 'SELECT 1::char(99999999999)'],
    ['SELECT id FROM customers WHERE id = 1', 'SELECT id FROM customers WHERE ssn = 1'],
    ['SELECT id FROM t LIMIT 5', 'SELECT id FROM t LIMIT 5; DROP TABLE t'],
    // Positions name output columns; one a star expands to is a masked column's use.
    ['SELECT id, ssn FROM customers ORDER BY 1', 'SELECT id, ssn FROM customers ORDER BY 2'],
    ['SELECT 1, * FROM orders ORDER BY 1', 'SELECT 1, * FROM customers ORDER BY 2'],
    [
      "SELECT set_config('search_path', 'public', false)",
      "SELECT set_config('search_path', 'public,pg_catalog', false)",
    ],
  ];
  for (const [one, other, policies = [prodPolicy]] of pairs) {
    it(`keeps decisions apart: ${JSON.stringify(one)} / ${JSON.stringify(other)}`, () => {
      const expected = [fresh(one, policies), fresh(other, policies)];
      assert.notDeepEqual(expected[0], expected[1], 'a pair must differ to test anything');
      for (const order of [
        [0, 1],
        [1, 0],
      ]) {
        clearSqlCache();
        for (const i of [...order, ...order]) {
          const sql = i === 0 ? one : other;
          assert.deepEqual(decision(sql, policies), expected[i], sql);
        }
      }
    });
  }

  it('keeps COPY formats apart: a format is a literal the session decides on', () => {
    clearSqlCache();
    for (const format of ['csv', 'binary', 'text', 'csv']) {
      const analysis = analyzeSql(`COPY orders TO STDOUT (FORMAT '${format}')`);
      assert.ok(analysis.ok);
      assert.equal(analysis.statements[0]!.copy?.format, format);
    }
  });

  it('property: for random literals in corpus texts, the cached analysis is the fresh one', () => {
    const texts = [
      ...corpus.map(([sql]) => sql),
      ...schemaCorpus.map(([sql]) => sql),
      'SELECT abalance FROM pgbench_accounts WHERE aid = 48213;',
      "SELECT a, b FROM t WHERE a IN (1, 2, 3) AND b = 'x' ORDER BY 2 LIMIT 10 OFFSET 20",
      "SELECT * FROM orders o JOIN customers c ON c.id = o.cid WHERE o.total > 10.5 AND c.name LIKE 'A%'",
      "SELECT '2020-01-01'::date, interval '1 day', 3::numeric(10, 2), 4::float(53), 5::char(3)",
      'SELECT id FROM t FETCH FIRST 5 ROWS ONLY',
      "SELECT CASE WHEN a = 1 THEN 'x' ELSE 'y' END FROM t WHERE b BETWEEN 1 AND 10",
      'SELECT ARRAY[1, 2], x[1] FROM t WHERE y = -3',
      "SELECT s.x FROM (SELECT ssn AS x FROM customers WHERE id = 7) s WHERE s.x <> '1'",
      'SELECT ssn FROM customers WHERE id = 1 UNION SELECT 2',
      "SELECT 1 FROM t WHERE a = 'x';",
      "SELECT id FROM customers WHERE email = 'a' OR 1 = 1",
      "select * from public.customers where id = 1 and name = 'bob' limit 1",
      'SELECT id FROM t WHERE a = 1 FOR UPDATE',
    ];
    const strings = [
      '',
      'role',
      'search_path',
      '%',
      'a%',
      'x',
      '1',
      't',
      'true',
      ';',
      ' ',
      '"',
      'DROP TABLE t',
    ];
    let random = 42;
    const next = (n: number) => {
      random = (random * 1_103_515_245 + 12_345) % 2 ** 31;
      return random % n;
    };
    const literal = (marker: string) => {
      if (marker === '$s') return `'${strings[next(strings.length)]}'`;
      const digits = () => Array.from({ length: 1 + next(22) }, () => next(10)).join('');
      return marker === '$i' ? digits() : `${digits()}.${digits()}`;
    };
    let compared = 0;
    let reused = 0;
    for (const text of texts) {
      const shape = literalShape(text);
      if (shape === undefined) continue;
      const parts = shape.split(/(\$[ids])/);
      for (let round = 0; round < 25; round++) {
        const variant = parts.map((part) => (/^\$[ids]$/.test(part) ? literal(part) : part)).join('');
        assert.equal(literalShape(variant), shape, variant);
        analyzeSql(text);
        const cached = analyzeSql(variant);
        const parsed = analyzeSql(variant, { cache: false });
        assert.deepEqual(cached, parsed, variant);
        const original = analyzeSql(text);
        if (cached.ok && original.ok && cached.statements[0]?.tables === original.statements[0]?.tables) {
          reused++;
        }
        compared++;
      }
    }
    // The property must have exercised the fast path, not only parses.
    assert.ok(compared > 500, `compared ${compared}`);
    assert.ok(reused > 200, `reused ${reused}`);
  });

  it('the corpora decide the same through a warm cache', () => {
    for (const [policy, rows] of [
      [prodPolicy, corpus],
      [schemaPolicy, schemaCorpus],
    ] as const) {
      for (const [sql] of rows) analyzeSql(sql);
      for (const [sql, expected] of rows) {
        const d = decideSql([policy], analyzeSql(sql));
        assert.equal(d.action, expected.action, sql);
        assert.equal(d.rule, expected.rule, sql);
      }
    }
  });

  it('is bounded: the least recently used entries go first', () => {
    const first = analyzeSql('SELECT c0 FROM t');
    const kept = analyzeSql('SELECT kept FROM t');
    for (let i = 1; i <= 2_500; i++) {
      analyzeSql(`SELECT c${i} FROM t`);
      if (i % 1_000 === 0) analyzeSql('SELECT kept FROM t');
    }
    assert.notEqual(analyzeSql('SELECT c0 FROM t'), first);
    assert.equal(analyzeSql('SELECT kept FROM t'), kept);
  });

  it('does not cache long texts or failures', () => {
    const long = `SELECT 1 FROM t WHERE a = 1 ${' '.repeat(9_000)}`;
    assert.notEqual(analyzeSql(long), analyzeSql(long));
    assert.notEqual(analyzeSql('SELEC 1'), analyzeSql('SELEC 1'));
  });
});
