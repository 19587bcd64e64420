// The extended protocol's names in one session: prepared statements (with the verdict their
// Parse got), the portals bound to them, and which portals the client has described.
import type { Verdict } from './policy.ts';

export interface PreparedStatement {
  text: string;
  verdict: Verdict;
  kind: string | undefined;
}

export class PreparedNames {
  private readonly statements = new Map<string, PreparedStatement>();
  /** Portal → the statement it was bound to, and whether Bind carried parameter values. */
  private readonly portals = new Map<string, { statement: string; parameters: boolean }>();
  private readonly describedPortals = new Set<string>();

  parsed(name: string, statement: PreparedStatement): void {
    this.statements.set(name, statement);
  }

  bound(portal: string, statement: string, parameters: boolean): void {
    this.portals.set(portal, { statement, parameters });
    this.describedPortals.delete(portal);
  }

  described(portal: string): void {
    this.describedPortals.add(portal);
  }

  isDescribed(portal: string): boolean {
    return this.describedPortals.has(portal);
  }

  closed(target: 'S' | 'P', name: string): void {
    if (target === 'S') this.statements.delete(name);
    else this.portals.delete(name);
  }

  /** The statement a portal runs, when it was bound to one the enforcer knows. */
  statementOf(portal: string): PreparedStatement | undefined {
    const name = this.portals.get(portal)?.statement;
    return name === undefined ? undefined : this.statements.get(name);
  }

  /** Bind gave the portal parameter values (server messages about it may quote them). */
  hasParameters(portal: string): boolean {
    return this.portals.get(portal)?.parameters ?? false;
  }
}
