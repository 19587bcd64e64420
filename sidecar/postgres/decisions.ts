// What a statement is decided on beyond the policy's verdict on its own text: the statement an
// `EXECUTE name` runs, the table columns behind the views it reads, whether masking can cover a
// COPY's output, and what the SQL analysis says about syntax and reading settings.
import type { RequestError } from '../../api/events.ts';
import type { Catalog } from './catalog.ts';
import type {
  ColumnRef,
  Masker,
  PolicyEngine,
  SqlAnalysisResult,
  SqlStatementInfo,
  Verdict,
} from './policy.ts';
import type { PreparedNames } from './statements.ts';

/** Statements to decide on: the analysis plus, for EXECUTE name, every statement the name may hold. */
export function withPrepared(analysis: SqlAnalysisResult, names: PreparedNames): SqlAnalysisResult {
  if (!analysis.ok) return analysis;
  const extra: SqlStatementInfo[] = [];
  // PREPARE and EXECUTE may come in the same query string.
  const preparedHere = new Map<string, SqlStatementInfo>();
  for (const statement of analysis.statements) {
    if (statement.prepared) preparedHere.set(statement.prepared.name, statement.prepared.inner);
    if (statement.executes === undefined) continue;
    const here = preparedHere.get(statement.executes);
    extra.push(...names.analysesOf(statement.executes), ...(here ? [here] : []));
  }
  return extra.length > 0 ? { ok: true, statements: [...analysis.statements, ...extra] } : analysis;
}

/** Records the PREPAREs of text that is about to run: Bind and EXECUTE may run them. */
export function rememberPrepared(
  engine: PolicyEngine,
  analysis: SqlAnalysisResult,
  names: PreparedNames,
): void {
  if (!analysis.ok) return;
  for (const statement of analysis.statements) {
    if (!statement.prepared) continue;
    const inner = statement.prepared.inner;
    names.parsed(
      statement.prepared.name,
      {
        text: inner.text,
        verdict: engine.decide({ ok: true, statements: [inner] }),
        kind: inner.kind,
        statement: inner,
      },
      false,
    );
  }
}

/**
 * Views that already exist name a table's columns anew for every statement that reads them,
 * so a use of a view's column inside an expression or a predicate is a use of the table
 * columns it shows (through nested views): decided again with those uses added. Settles at
 * once when every relation is known to be no view.
 */
export function throughViews(
  engine: PolicyEngine,
  catalog: Catalog | undefined,
  analysis: SqlAnalysisResult,
  verdict: Verdict,
): Verdict | Promise<Verdict> {
  if (verdict.action === 'deny' || !engine.masker?.columns || !catalog || !analysis.ok) return verdict;
  const statements = analysis.statements;
  if (!statements.some((s) => s.columnUses.some((use) => !use.direct))) return verdict;
  if (catalog.namesStandAlone([...new Set(statements.flatMap((s) => s.tables))])) return verdict;
  const expand = async (statement: SqlStatementInfo): Promise<SqlStatementInfo> => {
    const behind: SqlStatementInfo['columnUses'] = [];
    for (const use of statement.columnUses) {
      if (use.direct) continue;
      for (const table of use.table ? [use.table] : statement.tables) {
        for (const ref of (await catalog.columnsBehind(table, use.column)) ?? []) {
          behind.push({ table: `${ref.schema}.${ref.table}`, column: ref.column, direct: false });
        }
      }
    }
    return behind.length === 0
      ? statement
      : { ...statement, columnUses: [...statement.columnUses, ...behind] };
  };
  return (async () => {
    const expanded: SqlStatementInfo[] = [];
    for (const statement of statements) expanded.push(await expand(statement));
    return engine.decide({ ok: true, statements: expanded });
  })().catch(
    (): Verdict => ({
      action: 'deny',
      message: 'the relations it reads could not be checked for views over masked columns',
      reasons: ['masking'],
      wouldHave: [],
    }),
  );
}

/**
 * COPY TO STDOUT can be masked only by detectors (its rows carry no column identities), and
 * binary COPY not at all: a refusal for what masking could not cover.
 */
export async function checkMaskable(
  masker: Masker | undefined,
  catalog: Catalog | undefined,
  analysis: SqlAnalysisResult,
): Promise<Verdict | undefined> {
  if (!analysis.ok || !masker) return undefined;
  for (const statement of analysis.statements) {
    if (statement.copy?.direction !== 'to' || statement.copy.endpoint !== 'stdio') continue;
    if (statement.copy.format === 'binary') return copyRefusal('binary COPY output cannot be masked');
    if (!masker.columns || !catalog) continue;
    // Only the columns the COPY reads matter ('*' reads them all).
    const columnsByTable = new Map<string, ColumnRef[]>();
    for (const use of statement.columnUses) {
      for (const table of use.table ? [use.table] : statement.tables) {
        let columns = columnsByTable.get(table);
        if (!columns) {
          columns = await catalog.columnsOf(table);
          columnsByTable.set(table, columns);
        }
        const masked = columns.find(
          (c) => (use.column === '*' || c.column === use.column) && masker.columnRule(c) !== undefined,
        );
        if (masked) {
          return copyRefusal(
            `COPY TO STDOUT cannot mask column ${masked.schema}.${masked.table}.${masked.column}; use SELECT`,
          );
        }
      }
    }
  }
  return undefined;
}

/** A COPY refused before it runs because masking could not cover its output. */
function copyRefusal(message: string): Verdict {
  return { action: 'deny', message, reasons: ['masking'], wouldHave: [] };
}

/** The format of the COPY a text runs, from its parse tree (csv when it cannot be told: whole lines). */
export function copyFormat(engine: PolicyEngine, text: string): string {
  const analysis = engine.analyze(text);
  return (analysis.ok && analysis.statements.find((s) => s.copy)?.copy?.format) || 'csv';
}

/**
 * Text the parser rejects fails as the server would fail it (42601, the parser's message and
 * position) without reaching the server; what it cannot analyze otherwise is a policy refusal.
 */
export function syntaxError(
  analysis: SqlAnalysisResult,
): { outcome: 'error'; error: RequestError; position: number } | undefined {
  if (analysis.ok || !analysis.syntax) return undefined;
  return {
    outcome: 'error',
    // The server's own answer to the text, given without sending it.
    error: { code: 'target-error', message: analysis.syntax.message, wire: '42601' },
    position: analysis.syntax.position,
  };
}
