// The policy decision: (policies, request) → allow, deny or require-approval. Pure and shared
// by every enforcer, `airlock local` and the tests. The most restrictive outcome across all
// policies and all statements wins (deny > require-approval > allow). Audit-mode policies
// never change the outcome; what they would have done is listed in wouldHave.
import type { BundleConnection, BundlePolicy } from '../../api/bundle.ts';
import { durationMs } from '../../api/duration.ts';
import type { SshCommandClass } from '../../api/names.ts';
import type { PolicyRule } from '../../api/v1alpha1.ts';
import { matchGlob, matchPathGlob, matchSqlName, splitColumnGlob } from './glob.ts';
import { spellings } from './shell/spellings.ts';
import type { ColumnUse, SqlAnalysis, SqlStatement } from './sql.ts';

export interface Approval {
  timeoutMs: number;
  scope: 'statement' | 'session';
  /** Empty lists: anyone with RBAC on AccessRequests may decide. */
  approvers: { groups: string[]; users: string[] };
}

export interface WouldHave {
  action: 'deny' | 'require-approval' | 'mask';
  policy: string;
  rule?: string;
  reason: string;
}

export interface Decision {
  action: 'allow' | 'deny' | 'require-approval';
  /** The policy and rule that decided (the first of the most restrictive), when one did. */
  policy?: string;
  rule?: string;
  /** The deciding rule's message, or a description of why. */
  message?: string;
  /** Every enforce-mode match, most restrictive first. */
  reasons: string[];
  wouldHave: WouldHave[];
  approval?: Approval;
}

/** Approval settings for masking rules whose indirectUse is require-approval. */
export const defaultApproval: Approval = {
  timeoutMs: 15 * 60_000,
  scope: 'statement',
  approvers: { groups: [], users: [] },
};

interface Match {
  action: 'deny' | 'require-approval';
  policy: BundlePolicy;
  rule: string;
  message?: string;
  reason: string;
  approval?: Approval;
}

export function decideSql(policies: BundlePolicy[], analysis: SqlAnalysis): Decision {
  if (policies.length === 0) return noGrant();
  if (!analysis.ok) {
    const reason = `the statement could not be parsed (${analysis.error}); Airlock refuses what it cannot analyze`;
    // Audit mode is a dry run the operator chose: record, let through.
    if (policies.every((p) => p.mode === 'audit')) {
      return {
        action: 'allow',
        reasons: [],
        wouldHave: policies.map((p) => ({ action: 'deny', policy: p.name, reason })),
      };
    }
    return { action: 'deny', message: reason, reasons: [reason], wouldHave: [] };
  }
  const matches: Match[] = [];
  const masks: WouldHave[] = [];
  for (const policy of policies) {
    for (const rule of policy.rules) {
      if (!rule.sql) continue;
      const index = analysis.statements.findIndex((stmt) => sqlRuleMatches(rule, stmt));
      if (index < 0) continue;
      const stmt = analysis.statements[index]!;
      matches.push({
        ...ruleMatch(policy, rule),
        reason: `rule "${rule.name}" of AccessPolicy "${policy.name}" matches ${describe(stmt, index, analysis.statements.length)}`,
      });
    }
    for (const masking of policy.masking) {
      if (!masking.columns || masking.columns.length === 0) continue;
      const columns = masking.columns;
      const matchesUse = (use: ColumnUse) => columns.some((glob) => columnGlobMatchesUse(glob, use));
      const uses = analysis.statements.flatMap((stmt) => stmt.columnUses);
      const indirect = uses.find((use) => !use.direct && matchesUse(use));
      if (indirect && masking.indirectUse !== 'allow') {
        matches.push({
          action: masking.indirectUse,
          policy,
          rule: `masking:${masking.name}`,
          reason: `${describeIndirect(indirect)}, which could reveal it (masking rule "${masking.name}" of AccessPolicy "${policy.name}")`,
          ...(masking.indirectUse === 'require-approval' && { approval: defaultApproval }),
        });
      } else if (policy.mode === 'audit') {
        const direct = uses.find((use) => use.direct && use.column !== '*' && matchesUse(use));
        if (direct) {
          masks.push({
            action: 'mask',
            policy: policy.name,
            rule: `masking:${masking.name}`,
            reason: `column ${describeUse(direct)} would be masked`,
          });
        }
      }
    }
  }
  return combine(matches, masks);
}

export function decideSsh(
  policies: BundlePolicy[],
  argv: string[][],
  opts: { interactive: boolean; classes?: readonly SshCommandClass[] },
): Decision {
  if (policies.length === 0) return noGrant();
  const lines = argv.map((args) => args.join(' '));
  const matches: Match[] = [];
  for (const policy of policies) {
    for (const rule of policy.rules) {
      const ssh = rule.ssh;
      if (!ssh) continue;
      if (ssh.interactive && !opts.interactive) continue;
      let line: string | undefined;
      if (ssh.commands) {
        line = lines.find((l) => ssh.commands!.some((glob) => matchGlob(glob, l)));
        if (line === undefined) continue;
      }
      // Classes are those of the whole line (a rule naming commands and classes needs both on it).
      const cls = ssh.classes?.find((c) => opts.classes?.includes(c));
      if (ssh.classes && cls === undefined) continue;
      const what =
        (line !== undefined ? `command "${line}"` : opts.interactive ? 'interactive session' : 'session') +
        (cls !== undefined ? ` (${cls})` : '');
      matches.push({
        ...ruleMatch(policy, rule),
        reason: `rule "${rule.name}" of AccessPolicy "${policy.name}" matches ${what}`,
      });
    }
  }
  return combine(matches, []);
}

/**
 * An SSH exec request (or a Kubernetes exec): the commands its line would run, each decided in
 * every spelling, and what of the line cannot be verified statically, which is refused where a
 * policy has command rules.
 */
export function decideSshExec(
  policies: BundlePolicy[],
  argv: string[][],
  unverifiable: string[],
  classes: readonly SshCommandClass[] = [],
): Decision {
  const decision = decideSsh(policies, argv.flatMap(spellings), { interactive: false, classes });
  if (unverifiable.length === 0) return decision;
  const reason = `the command line cannot be verified statically (${unverifiable.join('; ')})`;
  return refuseUnderCommandRules(policies, decision, reason);
}

/** What cannot be checked against command rules is refused where an enforcing policy has them. */
export function refuseUnderCommandRules(
  policies: BundlePolicy[],
  decision: Decision,
  reason: string,
): Decision {
  if (decision.action === 'deny') return decision;
  const withRules = (p: BundlePolicy) =>
    p.rules.some((r) => (r.ssh?.commands?.length ?? 0) > 0 || (r.ssh?.classes?.length ?? 0) > 0);
  const enforcing = policies.find((p) => p.mode === 'enforce' && withRules(p));
  if (enforcing) {
    return {
      action: 'deny',
      policy: enforcing.name,
      message: reason,
      reasons: [`${reason}; AccessPolicy "${enforcing.name}" has command rules`, ...decision.reasons],
      wouldHave: decision.wouldHave,
    };
  }
  const auditing = policies.filter((p) => p.mode === 'audit' && withRules(p));
  return {
    ...decision,
    wouldHave: [
      ...decision.wouldHave,
      ...auditing.map((p) => ({ action: 'deny' as const, policy: p.name, reason })),
    ],
  };
}

/**
 * Whether a Connection's target is taken to serve paths without regard to case (Express, IIS and
 * ASP.NET do): unless the Connection says it does not (`caseInsensitivePaths: false`), so a rule
 * holds however the agent cases a path.
 */
export function pathsIgnoreCase(connection: Pick<BundleConnection, 'http'>): boolean {
  return connection.http?.caseInsensitivePaths !== false;
}

/** Path rules as a case-insensitive target reads them: globs folded, as the readings are. */
export function foldPathGlobs(policies: BundlePolicy[]): BundlePolicy[] {
  return policies.map((p) => ({
    ...p,
    rules: p.rules.map((r) =>
      r.http?.paths ? { ...r, http: { ...r.http, paths: r.http.paths.map((g) => g.toLowerCase()) } } : r,
    ),
  }));
}

export const restrictiveness: Record<Decision['action'], number> = {
  allow: 0,
  'require-approval': 1,
  deny: 2,
};

/**
 * An HTTP request decided as every method it may be acted on as, on every path a server may
 * read: the most restrictive decision (the first of them on a tie); allowed, what audit-mode
 * policies would have done under any of them.
 */
export function decideReadings(policies: BundlePolicy[], methods: string[], paths: string[]): Decision {
  let worst: Decision | undefined;
  const wouldHave = new Map<string, Decision['wouldHave'][number]>();
  for (const method of methods)
    for (const path of paths) {
      const decision = decideHttp(policies, { method, path });
      for (const w of decision.wouldHave) wouldHave.set(`${w.policy}/${w.rule}/${w.action}`, w);
      if (!worst || restrictiveness[decision.action] > restrictiveness[worst.action]) worst = decision;
    }
  return worst!.action === 'allow' ? { ...worst!, wouldHave: [...wouldHave.values()] } : worst!;
}

export function decideHttp(policies: BundlePolicy[], req: { method: string; path: string }): Decision {
  if (policies.length === 0) return noGrant();
  const method = req.method.toUpperCase();
  const query = req.path.indexOf('?');
  const path = query < 0 ? req.path : req.path.slice(0, query);
  const matches: Match[] = [];
  for (const policy of policies) {
    for (const rule of policy.rules) {
      const http = rule.http;
      if (!http) continue;
      // Servers answer HEAD with the GET handler (and its effects): a rule on GET holds HEAD too.
      const named = http.methods?.includes(method) || (method === 'HEAD' && http.methods?.includes('GET'));
      if (http.methods && !named) continue;
      if (http.paths && !http.paths.some((glob) => matchPathGlob(glob, path))) continue;
      matches.push({
        ...ruleMatch(policy, rule),
        reason: `rule "${rule.name}" of AccessPolicy "${policy.name}" matches ${method} ${path}`,
      });
    }
  }
  return combine(matches, []);
}

/** The error text the agent sees; it names Airlock, the policy and the rule. */
export function denialMessage(d: Decision, what = 'statement'): string {
  const detail = d.message ?? d.reasons[0];
  const by = d.policy ? ` by AccessPolicy "${d.policy}"${d.rule ? ` rule "${d.rule}"` : ''}` : '';
  const tail = detail ? `: ${detail}` : '';
  switch (d.action) {
    case 'deny':
      return `airlock: ${what} denied${by}${tail}`;
    case 'require-approval':
      return `airlock: ${what} requires approval${by}${tail}`;
    default:
      return `airlock: ${what} allowed`;
  }
}

// ---------------------------------------------------------------------------------------

/**
 * All the criteria given must match. A criterion left out (or unboundedWrites: false) does
 * not narrow the rule, so `sql: {}` matches every statement: the fail-closed reading.
 */
export function sqlRuleMatches(rule: PolicyRule, stmt: SqlStatement): boolean {
  const sql = rule.sql;
  if (!sql) return false;
  if (sql.statements && !sql.statements.some((kind) => stmt.kinds.includes(kind))) return false;
  if (sql.classes && !sql.classes.some((cls) => stmt.classes.includes(cls))) return false;
  if (sql.unboundedWrites && !stmt.unboundedWrite) return false;
  if (sql.tables && !stmt.tables.some((t) => sql.tables!.some((glob) => matchSqlName(glob, t)))) return false;
  if (sql.functions && !stmt.functions.some((f) => sql.functions!.some((glob) => matchSqlName(glob, f)))) {
    return false;
  }
  return true;
}

/**
 * A column glob [schema.]table.column against a column use. A use whose table is unknown
 * matches on the column alone; a star matches every column; an unqualified table matches
 * any schema (search_path is the client's to change).
 */
export function columnGlobMatchesUse(glob: string, use: ColumnUse): boolean {
  const g = splitColumnGlob(glob);
  if (use.column !== '*' && !matchGlob(g.column, use.column, true)) return false;
  if (use.table === undefined || g.table === undefined) return true;
  const dot = use.table.indexOf('.');
  const table = dot < 0 ? use.table : use.table.slice(dot + 1);
  if (!matchGlob(g.table, table, true)) return false;
  if (g.schema === undefined || dot < 0) return true;
  return matchGlob(g.schema, use.table.slice(0, dot), true);
}

function ruleMatch(policy: BundlePolicy, rule: PolicyRule): Omit<Match, 'reason'> {
  return {
    action: rule.action,
    policy,
    rule: rule.name,
    ...(rule.message !== undefined && { message: rule.message }),
    ...(rule.action === 'require-approval' && {
      approval: {
        timeoutMs: rule.approval ? durationMs(rule.approval.timeout) : defaultApproval.timeoutMs,
        scope: rule.approval?.scope ?? 'statement',
        approvers: {
          groups: rule.approval?.approvers.groups ?? [],
          users: rule.approval?.approvers.users ?? [],
        },
      },
    }),
  };
}

function combine(matches: Match[], masks: WouldHave[]): Decision {
  const enforce = matches.filter((m) => m.policy.mode !== 'audit');
  const wouldHave: WouldHave[] = [
    ...matches
      .filter((m) => m.policy.mode === 'audit')
      .map((m) => ({ action: m.action, policy: m.policy.name, rule: m.rule, reason: m.reason })),
    ...masks,
  ];
  const denies = enforce.filter((m) => m.action === 'deny');
  const holds = enforce.filter((m) => m.action === 'require-approval');
  const decisive = denies[0] ?? holds[0];
  if (!decisive) return { action: 'allow', reasons: [], wouldHave };
  const decision: Decision = {
    action: decisive.action,
    policy: decisive.policy.name,
    rule: decisive.rule,
    message: decisive.message ?? decisive.reason,
    reasons: [...denies, ...holds].map((m) => m.reason),
    wouldHave,
  };
  if (decisive.action === 'require-approval') {
    // The first hold names the approvers; if any hold is per statement, so is the approval.
    const approval = decisive.approval ?? defaultApproval;
    decision.approval = {
      ...approval,
      scope: holds.some((m) => (m.approval ?? defaultApproval).scope === 'statement')
        ? 'statement'
        : 'session',
    };
  }
  return decision;
}

function noGrant(): Decision {
  const reason = 'no AccessPolicy grants this Connection';
  return { action: 'deny', message: reason, reasons: [reason], wouldHave: [] };
}

function describe(stmt: SqlStatement, index: number, count: number): string {
  const position = count > 1 ? `statement ${index + 1} ` : '';
  const tables = stmt.tables.length > 0 ? ` on ${stmt.tables.slice(0, 3).join(', ')}` : '';
  return `${position}(${stmt.kinds.join(', ')}${tables})`;
}

function describeIndirect(use: ColumnUse): string {
  if (use.table === undefined && use.column === '*') {
    return 'the statement may read any masked column (through a function, catalog or body the analysis cannot see into, or a subquery column it cannot trace)';
  }
  return `masked column ${describeUse(use)} is used inside an expression, predicate or unmasked output`;
}

function describeUse(use: ColumnUse): string {
  return use.table ? `${use.table}.${use.column}` : use.column;
}

export { combine, type Match, noGrant, ruleMatch };
