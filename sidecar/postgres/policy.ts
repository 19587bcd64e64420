// What the PostgreSQL enforcer needs from the shared policy evaluator (sidecar/policy/):
// statement analysis, decisions and masking, behind one small interface so that the session
// state machine can be read (and tested) on its own.
import type { BundlePolicy } from '../../api/bundle.ts';
import { type Decision, decideSql, denialMessage } from '../policy/decide.ts';
import { detectorScanners } from '../policy/detectors.ts';
import { type ColumnMask, compileMasking, type MaskingPlan } from '../policy/masking.ts';
import { analyzeSql, loadSqlParser, type SqlAnalysis, type SqlStatement } from '../policy/sql.ts';

export type SqlStatementInfo = SqlStatement;
export type SqlAnalysisResult = SqlAnalysis;
export type Verdict = Decision;

export interface ColumnRef {
  schema: string;
  table: string;
  column: string;
}

export type { ColumnMask };

export interface MaskResult {
  value: string;
  counts: Record<string, number>;
  /** What audit-mode policies would have masked. */
  wouldMask: Record<string, number>;
}

/** Masking as the enforcer sees it; undefined when no policy masks anything. */
export interface Masker {
  /** Detectors or patterns that scan every value whose column is not known to be safe. */
  scans: boolean;
  /** Column rules exist, so result columns must be resolved to table columns. */
  columns: boolean;
  /** An enforce-mode policy has column rules, so values the server shows outside a column are withheld. */
  columnsEnforced: boolean;
  /**
   * No scanner matches text shorter than this (characters); a value with fewer UTF-8 bytes is
   * skipped without decoding it.
   */
  minScanLength: number;
  columnRule(ref: ColumnRef): ColumnMask | undefined;
  /** ascii: the value is known to be ASCII (skips looking for disguised digits and separators). */
  mask(value: string, column?: ColumnMask, ascii?: boolean): MaskResult;
  /** For ASCII bytes[start, end): false when mask() would leave them as they are (no string made). */
  mayFind(bytes: Uint8Array, start: number, end: number): boolean;
  /** mask() over ASCII bytes[start, end), as bytes (sidecar/policy/masking.ts); without it, mask(). */
  maskAscii?: MaskingPlan['maskAscii'];
}

export interface PolicyEngine {
  analyze(text: string): SqlAnalysisResult;
  decide(analysis: SqlAnalysisResult): Verdict;
  denialMessage(verdict: Verdict): string;
  masker: Masker | undefined;
  /** Whether any enforce-mode policy constrains this connection (rules or masking). */
  enforcing: boolean;
}

function minScanLength(policies: BundlePolicy[]): number {
  let min = Number.POSITIVE_INFINITY;
  for (const rule of policies.flatMap((p) => p.masking)) {
    if ((rule.patterns?.length ?? 0) > 0) return 1;
    for (const detector of rule.detectors ?? []) min = Math.min(min, detectorScanners[detector].minLength);
  }
  return Number.isFinite(min) ? Math.max(1, min) : 1;
}

/** Builds the engine for one Connection's policies from sidecar/policy/. */
export async function loadPolicyEngine(policies: BundlePolicy[]): Promise<PolicyEngine> {
  await loadSqlParser();
  const plan = policies.some((p) => p.masking.length > 0) ? compileMasking(policies) : undefined;
  return {
    analyze: (text) => analyzeSql(text),
    decide: (analysis) => decideSql(policies, analysis),
    denialMessage: (verdict) => denialMessage(verdict),
    masker: plan && {
      scans: plan.hasScanners,
      columns: plan.hasColumns,
      columnsEnforced: policies.some(
        (p) => p.mode === 'enforce' && p.masking.some((rule) => (rule.columns?.length ?? 0) > 0),
      ),
      minScanLength: minScanLength(policies),
      columnRule: (ref) => plan.columnRule(ref),
      mask: plan.maskText,
      mayFind: plan.mayFind,
      maskAscii: plan.maskAscii,
    },
    enforcing: policies.some((p) => p.mode === 'enforce' && (p.rules.length > 0 || p.masking.length > 0)),
  };
}
