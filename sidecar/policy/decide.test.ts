import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { durationMs } from '../../api/duration.ts';
import { columnGlobMatchesUse, decideHttp, decideSql, decideSsh, denialMessage } from './decide.ts';
import { policy, prodPolicy } from './fixtures.ts';
import { matchPathGlob, matchSqlName } from './glob.ts';
import { analyzeSql, loadSqlParser } from './sql.ts';

describe('decideSql', () => {
  before(() => loadSqlParser());
  const sql = (text: string) => analyzeSql(text);

  it('audit mode never changes the action, and records what it would have done', () => {
    const audit = { ...prodPolicy, name: 'dry-run', mode: 'audit' as const };
    const d = decideSql([audit], sql('DROP TABLE customers'));
    assert.equal(d.action, 'allow');
    assert.equal(d.policy, undefined);
    assert.deepEqual(
      d.wouldHave.map((w) => [w.action, w.policy, w.rule]),
      [['deny', 'dry-run', 'no-destructive-ddl']],
    );
    const masked = decideSql([audit], sql('SELECT ssn FROM public.customers'));
    assert.equal(masked.action, 'allow');
    assert.deepEqual(
      masked.wouldHave.map((w) => [w.action, w.rule]),
      [['mask', 'masking:pii']],
    );
  });

  it('says why a statement that may read any masked column is refused, and names the column otherwise', () => {
    const masking = policy({
      name: 'm',
      masking: [{ name: 'pii', columns: ['customers.email'], strategy: 'redact', indirectUse: 'deny' }],
    });
    const unseen = decideSql([masking], sql("SELECT table_to_xml('customers', true, false, '')"));
    assert.equal(unseen.action, 'deny');
    assert.match(
      unseen.reasons[0]!,
      /^the statement may read any masked column \(through a function, catalog/,
    );
    const named = decideSql([masking], sql('SELECT upper(email) FROM customers'));
    assert.match(named.reasons[0]!, /^masked column customers\.email is used inside an expression/);
    // Without masking rules, an unknown function is only what its class says.
    assert.equal(decideSql([policy({ name: 'open' })], sql('SELECT public.f()')).action, 'allow');
  });

  it('the most restrictive outcome across policies wins, whatever their order', () => {
    const approve = policy({
      name: 'a-approve',
      rules: [
        {
          name: 'hold-deletes',
          action: 'require-approval',
          sql: { statements: ['DELETE'] },
          approval: { approvers: { users: ['alice'] }, timeout: '1h', scope: 'session' },
        },
      ],
    });
    const deny = policy({
      name: 'b-deny',
      rules: [{ name: 'no-orders', action: 'deny', sql: { tables: ['public.orders'] } }],
    });
    for (const policies of [
      [approve, deny],
      [deny, approve],
    ]) {
      const d = decideSql(policies, sql('DELETE FROM orders WHERE id = 1'));
      assert.equal(d.action, 'deny');
      assert.equal(d.policy, 'b-deny');
      assert.equal(d.rule, 'no-orders');
      assert.equal(d.reasons.length, 2);
    }
    const held = decideSql([approve], sql('DELETE FROM orders WHERE id = 1'));
    assert.equal(held.action, 'require-approval');
    assert.deepEqual(held.approval, {
      timeoutMs: 3_600_000,
      scope: 'session',
      approvers: { groups: [], users: ['alice'] },
    });
  });

  it('the most restrictive outcome across statements wins', () => {
    const d = decideSql([prodPolicy], sql('DELETE FROM orders WHERE id = 1; DROP TABLE t; SELECT 1'));
    assert.equal(d.action, 'deny');
    assert.equal(d.rule, 'no-destructive-ddl');
    assert.match(d.reasons.join('\n'), /statement 2 \(DROP on t\)/);
  });

  it('an enforce policy decides even beside an audit policy that would deny', () => {
    const audit = policy({
      name: 'audit-all',
      mode: 'audit',
      rules: [{ name: 'no-reads', action: 'deny', sql: { classes: ['read'] } }],
    });
    const d = decideSql([audit, prodPolicy], sql('SELECT 1'));
    assert.equal(d.action, 'allow');
    assert.equal(d.wouldHave.length, 1);
  });

  it('all criteria of a rule must match', () => {
    const p = policy({
      name: 'p',
      rules: [{ name: 'writes-to-audit', action: 'deny', sql: { classes: ['write'], tables: ['audit.*'] } }],
    });
    assert.equal(decideSql([p], sql('INSERT INTO audit.log VALUES (1)')).action, 'deny');
    assert.equal(decideSql([p], sql('SELECT * FROM audit.log')).action, 'allow');
    assert.equal(decideSql([p], sql('INSERT INTO public.log VALUES (1)')).action, 'allow');
  });

  it('matches tables and functions by glob, with and without schema', () => {
    const p = policy({
      name: 'p',
      rules: [
        { name: 'cust', action: 'deny', sql: { tables: ['public.customers'] } },
        { name: 'fn', action: 'deny', sql: { functions: ['pg_sleep*'] } },
      ],
    });
    assert.equal(decideSql([p], sql('SELECT * FROM customers')).rule, 'cust');
    assert.equal(decideSql([p], sql('SELECT * FROM public.customers')).rule, 'cust');
    assert.equal(decideSql([p], sql('SELECT * FROM "Customers"')).rule, 'cust');
    assert.equal(decideSql([p], sql('SELECT * FROM other.customers')).action, 'allow');
    assert.equal(decideSql([p], sql('SELECT pg_catalog.pg_sleep(10)')).rule, 'fn');
    assert.equal(decideSql([p], sql('SELECT pg_sleep_for($1)')).rule, 'fn');
  });

  it('no policy, no access', () => {
    assert.equal(decideSql([], sql('SELECT 1')).action, 'deny');
  });

  it('parse failures are denied, but only recorded when every policy is in audit mode', () => {
    const bad = sql('SELEKT 1');
    assert.equal(decideSql([prodPolicy], bad).action, 'deny');
    const audit = { ...prodPolicy, mode: 'audit' as const };
    const d = decideSql([audit], bad);
    assert.equal(d.action, 'allow');
    assert.equal(d.wouldHave[0]?.action, 'deny');
  });

  it('indirect use of a masked column applies indirectUse, allow included', () => {
    const p = policy({
      name: 'p',
      masking: [{ name: 'm', columns: ['*.salary'], strategy: 'hash', indirectUse: 'allow' }],
    });
    assert.equal(decideSql([p], sql('SELECT avg(salary) FROM staff')).action, 'allow');
    const q = policy({
      name: 'q',
      masking: [{ name: 'm', columns: ['*.salary'], strategy: 'hash', indirectUse: 'require-approval' }],
    });
    const d = decideSql([q], sql('SELECT avg(salary) FROM staff'));
    assert.equal(d.action, 'require-approval');
    assert.equal(d.rule, 'masking:m');
    assert.deepEqual(d.approval, {
      timeoutMs: 900_000,
      scope: 'statement',
      approvers: { groups: [], users: [] },
    });
  });
});

describe('column globs against column uses', () => {
  it('matches on the column when the table is unknown, and any schema for unqualified tables', () => {
    assert.ok(columnGlobMatchesUse('public.customers.ssn', { column: 'ssn', direct: false }));
    assert.ok(
      columnGlobMatchesUse('public.customers.ssn', { table: 'customers', column: 'ssn', direct: false }),
    );
    assert.ok(
      columnGlobMatchesUse('sales.customers.ssn', { table: 'customers', column: 'ssn', direct: false }),
    );
    assert.ok(
      !columnGlobMatchesUse('sales.customers.ssn', {
        table: 'public.customers',
        column: 'ssn',
        direct: false,
      }),
    );
    assert.ok(
      !columnGlobMatchesUse('public.customers.ssn', { table: 'orders', column: 'ssn', direct: false }),
    );
    assert.ok(columnGlobMatchesUse('*.ssn', { table: 'x.y', column: 'SSN', direct: false }));
    assert.ok(
      columnGlobMatchesUse('public.customers.ssn', { table: 'customers', column: '*', direct: false }),
    );
    assert.ok(
      !columnGlobMatchesUse('public.customers.ssn', { table: 'customers', column: 'email', direct: false }),
    );
  });

  it('SQL names: an unqualified name may be in any schema (search_path), a qualified one is exact', () => {
    assert.ok(matchSqlName('public.orders', 'orders'));
    assert.ok(matchSqlName('orders', 'sales.orders'));
    assert.ok(matchSqlName('sales.orders', 'orders'));
    assert.ok(matchSqlName('audit.*', 'orders'));
    assert.ok(matchSqlName('audit.log_*', 'LOG_2024'));
    assert.ok(!matchSqlName('audit.log_*', 'orders'));
    assert.ok(!matchSqlName('audit.*', 'public.orders'));
    assert.ok(matchSqlName('audit.*', 'audit.orders'));
    assert.ok(!matchSqlName('public.orders', 'sales.orders'));
  });
});

describe('decideSsh', () => {
  const p = policy({
    name: 'ssh-ops',
    rules: [
      { name: 'no-rm', action: 'deny', message: 'no deletions', ssh: { commands: ['rm *', 'sudo *'] } },
      {
        name: 'hold-restarts',
        action: 'require-approval',
        ssh: { commands: ['systemctl restart *'] },
        approval: { approvers: { groups: ['sre'] }, timeout: '5m', scope: 'statement' },
      },
      { name: 'no-shell', action: 'deny', ssh: { interactive: true } },
    ],
  });

  it('matches the argument vector joined by spaces', () => {
    assert.equal(decideSsh([p], [['rm', '-rf', '/var/lib']], { interactive: false }).rule, 'no-rm');
    assert.equal(decideSsh([p], [['ls', '-l']], { interactive: false }).action, 'allow');
    assert.equal(decideSsh([p], [['ls'], ['sudo', 'reboot']], { interactive: false }).rule, 'no-rm');
    const held = decideSsh([p], [['systemctl', 'restart', 'nginx']], { interactive: false });
    assert.equal(held.action, 'require-approval');
    assert.equal(held.approval?.timeoutMs, 300_000);
    assert.deepEqual(held.approval?.approvers.groups, ['sre']);
  });

  it('matches interactive sessions', () => {
    assert.equal(decideSsh([p], [], { interactive: true }).rule, 'no-shell');
    assert.equal(decideSsh([p], [['uptime']], { interactive: false }).action, 'allow');
  });
});

describe('decideHttp', () => {
  const p = policy({
    name: 'api',
    rules: [
      { name: 'no-admin', action: 'deny', http: { paths: ['/admin/**'] } },
      { name: 'no-user-delete', action: 'deny', http: { methods: ['DELETE'], paths: ['/users/*'] } },
    ],
  });

  it('matches methods and path globs (* within a segment, ** across)', () => {
    assert.equal(decideHttp([p], { method: 'GET', path: '/admin/x/y?z=1' }).rule, 'no-admin');
    assert.equal(decideHttp([p], { method: 'delete', path: '/users/42' }).rule, 'no-user-delete');
    assert.equal(decideHttp([p], { method: 'DELETE', path: '/users/42/keys' }).action, 'allow');
    assert.equal(decideHttp([p], { method: 'GET', path: '/users/42' }).action, 'allow');
    assert.ok(matchPathGlob('/a/*/c', '/a/b/c'));
    assert.ok(!matchPathGlob('/a/*/c', '/a/b/x/c'));
    assert.ok(matchPathGlob('/a/**/c', '/a/b/x/c'));
  });

  it('holds HEAD under a rule on GET: servers answer it with the GET handler', () => {
    const reads = policy({
      name: 'reads',
      rules: [{ name: 'no-export', action: 'deny', http: { methods: ['GET'], paths: ['/export/**'] } }],
    });
    assert.equal(decideHttp([reads], { method: 'HEAD', path: '/export/all' }).rule, 'no-export');
    assert.equal(decideHttp([reads], { method: 'head', path: '/export/all' }).rule, 'no-export');
    assert.equal(decideHttp([reads], { method: 'OPTIONS', path: '/export/all' }).action, 'allow');
    const heads = policy({
      name: 'heads',
      rules: [{ name: 'no-head', action: 'deny', http: { methods: ['HEAD'], paths: ['/x'] } }],
    });
    assert.equal(decideHttp([heads], { method: 'GET', path: '/x' }).action, 'allow');
  });
});

describe('denialMessage', () => {
  before(() => loadSqlParser());

  it('names Airlock, the policy, the rule and the message', () => {
    const d = decideSql([prodPolicy], analyzeSql('DROP TABLE t'));
    assert.equal(
      denialMessage(d),
      'airlock: statement denied by AccessPolicy "prod-db-agents" rule "no-destructive-ddl": DROP, TRUNCATE and ALTER are not allowed',
    );
  });

  it('explains parse failures and approvals', () => {
    assert.match(
      denialMessage(decideSql([prodPolicy], analyzeSql('SELEKT'))),
      /^airlock: statement denied: .*parsed/,
    );
    assert.match(
      denialMessage(decideSql([prodPolicy], analyzeSql('DELETE FROM t WHERE id = 1'))),
      /^airlock: statement requires approval by AccessPolicy "prod-db-agents" rule "approve-writes"/,
    );
  });

  it('parses durations', () => {
    assert.equal(durationMs('1h30m'), 5_400_000);
    assert.equal(durationMs('90s'), 90_000);
    assert.equal(durationMs('250ms'), 250);
  });
});
