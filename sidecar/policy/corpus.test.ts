// Runs the adversarial corpora (corpus.ts) against their policies (fixtures.ts).
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import type { BundlePolicy } from '../../api/bundle.ts';
import { corpus, type Expect, schemaCorpus } from './corpus.ts';
import { decideSql } from './decide.ts';
import { prodPolicy, schemaPolicy } from './fixtures.ts';
import { analyzeSql, loadSqlParser } from './sql.ts';

function runCorpus(policy: BundlePolicy, rows: [string, Expect][]): void {
  for (const [sql, expected] of rows) {
    it(`${expected.action}${expected.rule ? ` (${expected.rule})` : ''}: ${JSON.stringify(sql).slice(0, 100)}`, () => {
      const analysis = analyzeSql(sql);
      const decision = decideSql([policy], analysis);
      assert.equal(decision.action, expected.action, JSON.stringify({ decision, analysis }));
      assert.equal(decision.rule, expected.rule);
      if (expected.action === 'deny') assert.ok(decision.reasons.length > 0);
      if (expected.kinds) {
        assert.ok(analysis.ok);
        assert.deepEqual(
          analysis.statements.map((s) => s.kind),
          expected.kinds,
        );
      }
    });
  }
}

describe('schema-qualified rules against unqualified names (search_path)', () => {
  before(() => loadSqlParser());
  runCorpus(schemaPolicy, schemaCorpus);
});

describe('adversarial SQL corpus against prod-db-agents', () => {
  before(() => loadSqlParser());
  runCorpus(prodPolicy, corpus);

  it('parse failures name the parser error', () => {
    const decision = decideSql([prodPolicy], analyzeSql('DR/**/OP TABLE t'));
    assert.equal(decision.action, 'deny');
    assert.match(decision.reasons[0]!, /could not be parsed.*syntax error/);
  });

  it('extremely long input is analysed, not truncated: a DROP after 1 MB of SELECT is found', () => {
    const long = `SELECT ${Array.from({ length: 100_000 }, (_, i) => i).join(', ')}; DROP TABLE t`;
    assert.ok(long.length > 500_000);
    const decision = decideSql([prodPolicy], analyzeSql(long));
    assert.equal(decision.action, 'deny');
    assert.equal(decision.rule, 'no-destructive-ddl');
  });

  it('deeply nested expressions are refused cleanly, not crash the analyzer', () => {
    const deep = `SELECT ${'('.repeat(50_000)}1${')'.repeat(50_000)}`;
    const analysis = analyzeSql(deep);
    assert.equal(analysis.ok, false);
    assert.equal(decideSql([prodPolicy], analysis).action, 'deny');
  });
});
