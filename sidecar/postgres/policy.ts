// What the PostgreSQL enforcer needs from the shared policy evaluator (sidecar/policy/):
// statement analysis, decisions and masking, behind one small interface so that the session
// state machine can be read (and tested) on its own.
import type { BundlePolicy } from '../../api/bundle.ts';
import { type Decision, decideSql, denialMessage } from '../policy/decide.ts';
import { analyzeSql, loadSqlParser, type SqlAnalysis, type SqlStatement } from '../policy/sql.ts';

export type SqlStatementInfo = SqlStatement;
export type SqlAnalysisResult = SqlAnalysis;
export type Verdict = Decision;

export interface ColumnRef {
  schema: string;
  table: string;
  column: string;
}

export interface MaskResult {
  value: string;
  counts: Record<string, number>;
}

/** Masking as the enforcer sees it; undefined when no policy masks anything. */
export interface Masker {
  /** Detectors or patterns that scan every value whose column is not known to be safe. */
  scans: boolean;
  /** Column rules exist, so result columns must be resolved to table columns. */
  columns: boolean;
  columnRule(ref: ColumnRef): unknown;
  mask(value: string, column?: unknown): MaskResult;
}

export interface PolicyEngine {
  analyze(text: string): SqlAnalysisResult;
  decide(analysis: SqlAnalysisResult): Verdict;
  denialMessage(verdict: Verdict): string;
  masker: Masker | undefined;
  /** Whether any enforce-mode policy constrains this connection (rules or masking). */
  enforcing: boolean;
  /** Whether some policy is in audit mode (record what would have been done). */
  auditing: boolean;
}

interface MaskingModule {
  compileMasking(policies: BundlePolicy[]): {
    columnRule(ref: ColumnRef): unknown;
    maskText(value: string, column?: unknown): { value: string; counts?: Record<string, number> };
    hasScanners: boolean;
  };
}

/** Builds the engine for one Connection's policies from sidecar/policy/. */
export async function loadPolicyEngine(policies: BundlePolicy[]): Promise<PolicyEngine> {
  const maskingPath = '../policy/masking.ts';
  await loadSqlParser();
  const hasMasking = policies.some((p) => p.masking.length > 0);
  const plan = hasMasking
    ? ((await import(maskingPath)) as MaskingModule).compileMasking(policies)
    : undefined;
  const columns = policies.some((p) => p.masking.some((m) => (m.columns?.length ?? 0) > 0));
  return {
    analyze: (text) => analyzeSql(text),
    decide: (analysis) => decideSql(policies, analysis),
    denialMessage: (verdict) => denialMessage(verdict),
    masker: plan && {
      scans: plan.hasScanners,
      columns,
      columnRule: (ref) => plan.columnRule(ref),
      mask: (value, column) => {
        const result = plan.maskText(value, column);
        return { value: result.value, counts: result.counts ?? {} };
      },
    },
    enforcing: policies.some((p) => p.mode === 'enforce' && (p.rules.length > 0 || p.masking.length > 0)),
    auditing: policies.some((p) => p.mode === 'audit'),
  };
}
