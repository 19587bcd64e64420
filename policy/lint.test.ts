import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import type { BundlePolicy } from '../api/bundle.ts';
import type { AccessPolicy, AccessPolicySpecInput, PolicyRule } from '../api/v1alpha1.ts';
import { accessPolicySpecSchema } from '../api/v1alpha1.ts';
import { corpus } from '../sidecar/policy/corpus.ts';
import { decideSql, sqlRuleMatches } from '../sidecar/policy/decide.ts';
import { analyzeSql, loadSqlParser } from '../sidecar/policy/sql.ts';
import { covers, lintPolicy, neverCallsFunctionsKinds, neverMatches, neverUnboundedKinds } from './lint.ts';

const now = new Date('2026-06-01T00:00:00Z');

function accessPolicy(spec: Partial<AccessPolicySpecInput>, creationTimestamp?: string): AccessPolicy {
  return {
    apiVersion: 'airlock.dev/v1alpha1',
    kind: 'AccessPolicy',
    metadata: { name: 'p', namespace: 'agents', ...(creationTimestamp && { creationTimestamp }) },
    spec: accessPolicySpecSchema.parse({
      subjects: [{ kind: 'ServiceAccount', name: 'agent' }],
      connections: ['db'],
      ...spec,
    }),
  };
}
const rule = (r: object) => accessPolicy({ rules: [r as never] }).spec.rules![0]!;

// Statements that nest a write where it is easy to miss: the lint table must not call any of
// their kinds "never an unbounded write".
const nestedWrites = [
  'WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d',
  'WITH d AS (UPDATE t SET a = 1 RETURNING *) INSERT INTO u SELECT * FROM d',
  'EXPLAIN ANALYZE DELETE FROM t',
  'PREPARE p AS DELETE FROM t',
  'COPY (DELETE FROM t RETURNING *) TO STDOUT',
  'CREATE RULE r AS ON INSERT TO t DO ALSO DELETE FROM u',
  'CREATE RULE r AS ON INSERT TO t DO ALSO (DELETE FROM u; NOTIFY c)',
  'CREATE FUNCTION f() RETURNS void LANGUAGE sql BEGIN ATOMIC DELETE FROM t; END',
  'CREATE TABLE x AS WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d',
  'DECLARE c CURSOR FOR WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d',
  'DO $$ BEGIN DELETE FROM t; END $$',
  'TRUNCATE t',
  'MERGE INTO t USING u ON true WHEN MATCHED THEN DELETE',
  'DELETE FROM t RETURNING pg_sleep(1)',
  'CREATE SCHEMA s CREATE TABLE t (a int DEFAULT now()) GRANT SELECT ON t TO u',
  'ALTER TABLE t ALTER COLUMN a SET DEFAULT now()',
  "COMMENT ON FUNCTION pg_sleep(float8) IS 'x'",
  'DROP FUNCTION pg_sleep(float8)',
  'DROP TABLE t',
  'TRUNCATE a, b RESTART IDENTITY',
  'LOCK TABLE t IN ACCESS EXCLUSIVE MODE',
  'REFRESH MATERIALIZED VIEW CONCURRENTLY v',
];

describe('policy lint', () => {
  before(() => loadSqlParser());

  it('no statement the analyzer reads as an unbounded write has a kind the lint calls never unbounded', () => {
    let unbounded = 0;
    for (const text of [...corpus.map(([sql]) => sql), ...nestedWrites]) {
      const analysis = analyzeSql(text, { cache: false });
      if (!analysis.ok) continue;
      for (const stmt of analysis.statements) {
        if (!stmt.unboundedWrite) continue;
        unbounded++;
        const never = stmt.kinds.filter((k) => neverUnboundedKinds.has(k));
        assert.deepEqual(never, [], `${text}: kinds ${stmt.kinds.join(', ')}`);
      }
    }
    assert.ok(unbounded >= 20, `only ${unbounded} unbounded writes read: the check would prove little`);
  });

  it('no statement the analyzer reads as calling a function has a kind the lint calls function-free', () => {
    let calling = 0;
    for (const text of [...corpus.map(([sql]) => sql), ...nestedWrites]) {
      const analysis = analyzeSql(text, { cache: false });
      if (!analysis.ok) continue;
      for (const stmt of analysis.statements) {
        if (stmt.functions.length === 0) continue;
        calling++;
        const never = stmt.kinds.filter((k) => neverCallsFunctionsKinds.has(k));
        assert.deepEqual(
          never,
          [],
          `${text}: kinds ${stmt.kinds.join(', ')}, functions ${stmt.functions.join(', ')}`,
        );
      }
    }
    assert.ok(calling >= 20, `only ${calling} function calls read: the check would prove little`);
  });

  it('"any of these" written as one rule (the issue\'s example) is reported', () => {
    const anyOf = rule({
      name: 'bulk',
      action: 'deny',
      sql: { statements: ['DROP', 'TRUNCATE'], unboundedWrites: true, functions: ['pg_*'] },
    });
    assert.match(
      neverMatches(anyOf)!,
      /a DROP statement is never an unbounded write, and a TRUNCATE statement calls no function/,
    );
    for (const text of ['DROP TABLE t', 'TRUNCATE t', 'DELETE FROM t RETURNING pg_sleep(1)']) {
      const analysis = analyzeSql(text, { cache: false });
      assert.ok(analysis.ok && !analysis.statements.some((s) => sqlRuleMatches(anyOf, s)), text);
    }
    // With DELETE among the kinds, a DELETE without WHERE calling pg_sleep does match.
    const reachable = rule({
      name: 'bulk',
      action: 'deny',
      sql: { statements: ['DELETE', 'TRUNCATE'], unboundedWrites: true, functions: ['pg_*'] },
    });
    assert.equal(neverMatches(reachable), undefined);
    const analysis = analyzeSql('DELETE FROM t RETURNING pg_sleep(1)', { cache: false });
    assert.ok(analysis.ok && analysis.statements.some((s) => sqlRuleMatches(reachable, s)));
  });

  it('a rule whose criteria can never hold together is reported, and the evaluator agrees', () => {
    const anyOf = rule({
      name: 'any-of',
      action: 'deny',
      sql: { statements: ['DROP', 'ALTER'], unboundedWrites: true },
    });
    assert.match(neverMatches(anyOf)!, /a DROP or ALTER statement is never an unbounded write/);
    for (const text of ['DROP TABLE t', 'ALTER TABLE t DROP COLUMN a', 'DELETE FROM t', 'TRUNCATE t']) {
      const analysis = analyzeSql(text, { cache: false });
      assert.ok(analysis.ok);
      assert.equal(
        analysis.statements.some((s) => sqlRuleMatches(anyOf, s)),
        false,
        text,
      );
    }
    // A kind that can carry a nested write is not reported: the rule does match something.
    const nested = rule({
      name: 'cte',
      action: 'deny',
      sql: { statements: ['SELECT'], unboundedWrites: true },
    });
    assert.equal(neverMatches(nested), undefined);
    const analysis = analyzeSql(nestedWrites[0]!, { cache: false });
    assert.ok(analysis.ok && analysis.statements.some((s) => sqlRuleMatches(nested, s)));
  });

  it('empty criteria, rewritten command words and unnormalized paths never match', () => {
    assert.match(
      neverMatches(rule({ name: 'e', action: 'deny', sql: { tables: [] } }))!,
      /sql.tables is an empty list/,
    );
    assert.match(neverMatches(rule({ name: 'e', action: 'deny', http: { methods: [] } }))!, /http.methods/);
    assert.match(
      neverMatches(
        rule({ name: 's', action: 'deny', ssh: { commands: ['/bin/rm *', '/usr/bin/shred *'] } }),
      )!,
      /"\/bin\/rm argument" is read as "rm argument"/,
    );
    assert.match(
      neverMatches(rule({ name: 'h', action: 'deny', http: { paths: ['admin/**', '/v1//x'] } }))!,
      /begin with \//,
    );
    assert.equal(neverMatches(rule({ name: 'ok', action: 'deny', ssh: { commands: ['rm *'] } })), undefined);
    assert.match(
      neverMatches(rule({ name: 'c', action: 'deny', ssh: { classes: [] } }))!,
      /ssh.classes is an empty list/,
    );
    assert.match(
      neverMatches(rule({ name: 'c', action: 'deny', ssh: { classes: ['network'], interactive: true } }))!,
      /an interactive session has no command classes/,
    );
    assert.equal(neverMatches(rule({ name: 'c', action: 'deny', ssh: { classes: ['network'] } })), undefined);
    const some = lintPolicy(
      accessPolicy({
        rules: [{ name: 'mixed', action: 'deny', ssh: { commands: ['rm *', '/sbin/reboot now'] } }],
      }),
      { now },
    );
    assert.deepEqual(
      some.map((w) => w.reason),
      ['GlobNeverMatches'],
    );
  });

  it('Redis commands Redis does not list, and empty Redis, Kubernetes and MCP criteria, never match', () => {
    const never = (r: Partial<PolicyRule>) => neverMatches(rule({ name: 'r', action: 'deny', ...r }));
    assert.match(
      never({ redis: { commands: ['FLUSHAL', 'CONFG *'] } })!,
      /none of its commands is one Redis 7\.\d+\.\d+ lists/,
    );
    for (const commands of [
      ['flushall'],
      ['CONFIG'],
      ['config set'],
      ['CLIENT K*'],
      ['*'],
      ['FLUSHAL', 'GET'],
    ])
      assert.equal(never({ redis: { commands } }), undefined, commands.join());
    assert.match(never({ redis: { keys: [] } })!, /redis.keys is an empty list/);
    assert.match(never({ kubernetes: { subresources: [] } })!, /kubernetes.subresources is an empty list/);
    assert.match(never({ mcp: { tools: [] } })!, /mcp.tools is an empty list/);
    assert.equal(never({ mcp: { tools: ['delete_*'] } }), undefined);
  });

  it('a rule that an earlier, broader rule of the same or a stronger action covers is shadowed', () => {
    const policy = accessPolicy({
      rules: [
        { name: 'no-rm', action: 'deny', ssh: { commands: ['rm *'] } },
        { name: 'no-rm-rf', action: 'deny', ssh: { commands: ['rm -rf *'] } },
        { name: 'no-rm-network', action: 'deny', ssh: { commands: ['rm *'], classes: ['network'] } },
        { name: 'no-network', action: 'deny', ssh: { classes: ['network', 'privilege'] } },
        { name: 'no-curl', action: 'deny', ssh: { commands: ['curl *'], classes: ['network'] } },
        {
          name: 'writes',
          action: 'require-approval',
          sql: { classes: ['write'] },
          approval: { approvers: { groups: ['dba'] } },
        },
        { name: 'no-delete-all', action: 'deny', sql: { statements: ['DELETE'], unboundedWrites: true } },
        {
          name: 'deletes',
          action: 'require-approval',
          sql: { classes: ['write'], tables: ['orders'] },
          approval: { approvers: { groups: ['dba'] } },
        },
      ],
    });
    const warnings = lintPolicy(policy, { now });
    assert.deepEqual(
      warnings.map((w) => [w.reason, w.rule]),
      [
        ['RuleShadowed', 'no-rm-rf'],
        ['RuleShadowed', 'no-rm-network'],
        ['RuleShadowed', 'no-curl'],
        ['RuleShadowed', 'deletes'],
      ],
    );
    // The stronger later rule is not shadowed by a weaker earlier one, and the evaluator agrees.
    const bundle: BundlePolicy = {
      name: 'p',
      namespace: 'agents',
      mode: 'enforce',
      recording: policy.spec.recording,
      masking: [],
      rules: policy.spec.rules!,
    };
    const analysis = analyzeSql('DELETE FROM orders', { cache: false });
    assert.equal(decideSql([bundle], analysis).rule, 'no-delete-all');
    assert.equal(covers(policy.spec.rules![5]!, policy.spec.rules![7]!), true);
    assert.equal(covers(policy.spec.rules![5]!, policy.spec.rules![6]!), false);
  });

  it('patterns matching the empty string, approvals without approvers, missing ServiceAccounts, old audit mode', () => {
    const warnings = lintPolicy(
      accessPolicy(
        {
          mode: 'audit',
          masking: [
            {
              name: 'keys',
              patterns: [
                { name: 'optional', regex: 'sk_[a-z]*' },
                { name: 'empty', regex: '(x|)' },
              ],
            },
          ],
          rules: [
            {
              name: 'anyone',
              action: 'require-approval',
              sql: { statements: ['UPDATE'] },
              approval: { approvers: {} },
            },
            {
              name: 'ghost',
              action: 'require-approval',
              sql: { statements: ['DELETE'] },
              approval: {
                approvers: {
                  users: ['system:serviceaccount:agents:ghost', 'system:serviceaccount:agents:real'],
                },
              },
            },
          ] as PolicyRule[],
        },
        '2026-04-01T00:00:00Z',
      ),
      {
        now,
        auditMaxAgeMs: 30 * 86_400_000,
        serviceAccountExists: (_ns, name) => name === 'real',
      },
    );
    assert.deepEqual(
      warnings.map((w) => [w.reason, w.rule ?? '']),
      [
        ['NoApprovers', 'anyone'],
        ['ApproverNotFound', 'ghost'],
        ['PatternMatchesEmpty', 'keys'],
        ['AuditModeTooLong', ''],
      ],
    );
    assert.match(warnings[2]!.message, /pattern empty matches the empty string/);
    assert.match(warnings[3]!.message, /mode audit for 61 days/);
    // Young audit mode, and no creation time known: nothing to say.
    assert.deepEqual(
      lintPolicy(accessPolicy({ mode: 'audit' }, '2026-05-20T00:00:00Z'), {
        now,
        auditMaxAgeMs: 30 * 86_400_000,
      }),
      [],
    );
    assert.deepEqual(lintPolicy(accessPolicy({ mode: 'audit' }), { now, auditMaxAgeMs: 1 }), []);
  });
});
