// The session's prepared statements and portals by name, with the verdict each statement got.
//
// A prepared statement has one namespace on the server however it was made: a Parse in the
// extended protocol and PREPARE in SQL define names that EXECUTE and Bind both run. And the
// enforcer reads a Parse, PREPARE or Close before the server has answered it: the server may
// refuse it (the name already exists) or skip it (an earlier message in the pipeline failed).
// So a name keeps every statement it may hold, and running it is decided on the strictest of
// them, until the server's ParseComplete says which one it holds or its CloseComplete that it
// holds none. Within one pipeline it is exact: a Bind after a Parse of its name, before Sync,
// binds that statement, since if the server skipped or refused the Parse it skips the Bind too.
import type { SqlStatementInfo, Verdict } from './policy.ts';

export interface PreparedStatement {
  text: string;
  verdict: Verdict;
  kind: string | undefined;
  /** Its analysis, so that EXECUTE name in SQL is decided on it. */
  statement: SqlStatementInfo | undefined;
}

const strictness: Record<Verdict['action'], number> = { allow: 0, 'require-approval': 1, deny: 2 };

export class PreparedNames {
  /** Statement name → every statement it may hold, oldest first. */
  private readonly statements = new Map<string, PreparedStatement[]>();
  /**
   * Portal → the statement name it was bound to, the statement when it was Parsed in the same
   * pipeline, and whether Bind carried parameter values.
   */
  private readonly portals = new Map<
    string,
    { statement: string; exact: PreparedStatement | undefined; parameters: boolean }
  >();
  private readonly describedPortals = new Set<string>();
  /** Statements Parsed since the last Sync, by name: what a Bind of the name in this pipeline binds. */
  private readonly parsedInPipeline = new Map<string, PreparedStatement>();

  /**
   * A Parse (`exact`) or PREPARE of this name was forwarded: the name may hold it from now on.
   * A failed PREPARE does not make the server skip the messages after it, so only a Parse is
   * what a later Bind of the pipeline binds.
   */
  parsed(name: string, statement: PreparedStatement, exact: boolean): void {
    const candidates = this.statements.get(name) ?? [];
    if (!candidates.some((c) => c.text === statement.text)) candidates.push(statement);
    this.statements.set(name, candidates);
    if (exact) this.parsedInPipeline.set(name, statement);
    else this.parsedInPipeline.delete(name);
  }

  /** Sync: the pipeline ends. */
  synced(): void {
    this.parsedInPipeline.clear();
  }

  /** The server's ParseComplete: the name holds exactly this statement. */
  confirmParsed(name: string, statement: PreparedStatement): void {
    this.statements.set(name, [statement]);
  }

  /** The server's CloseComplete for a statement: the name holds none. */
  confirmClosed(name: string): void {
    this.statements.delete(name);
  }

  bound(portal: string, statement: string, parameters: boolean): void {
    this.portals.set(portal, { statement, exact: this.parsedInPipeline.get(statement), parameters });
    this.describedPortals.delete(portal);
  }

  described(portal: string): void {
    this.describedPortals.add(portal);
  }

  isDescribed(portal: string): boolean {
    return this.describedPortals.has(portal);
  }

  closedPortal(name: string): void {
    this.portals.delete(name);
  }

  /**
   * The statement a portal runs, when it was bound to a name the enforcer knows: the one
   * Parsed in the same pipeline, else the strictest of those the name may hold.
   */
  statementOf(portal: string): PreparedStatement | undefined {
    const bound = this.portals.get(portal);
    if (!bound) return undefined;
    return bound.exact ?? strictest(this.statements.get(bound.statement) ?? []);
  }

  /** Analyses of the statements `EXECUTE name` may run. */
  analysesOf(name: string): SqlStatementInfo[] {
    return (this.statements.get(name) ?? []).flatMap((c) => (c.statement ? [c.statement] : []));
  }

  /** Bind gave the portal parameter values (server messages about it may quote them). */
  hasParameters(portal: string): boolean {
    return this.portals.get(portal)?.parameters ?? false;
  }
}

function strictest(candidates: PreparedStatement[]): PreparedStatement | undefined {
  let chosen: PreparedStatement | undefined;
  for (const c of candidates) {
    if (!chosen || strictness[c.verdict.action] > strictness[chosen.verdict.action]) chosen = c;
  }
  return chosen;
}
