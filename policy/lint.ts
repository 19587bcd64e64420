// Warnings about AccessPolicies that are valid but do not do what they seem to: rules that can
// never match, rules an earlier rule always decides for, patterns that match the empty string,
// approvals nobody is named to decide, audit mode left on. Pure: `airlock policy lint` and the
// operator's RulesEffective condition read the same warnings.
import { RE2JS } from 're2js';
import type { SqlStatementKind } from '../api/names.ts';
import type { AccessPolicy, PolicyRule } from '../api/v1alpha1.ts';
import { matchGlob, matchPathGlob } from '../sidecar/policy/glob.ts';
import { allCommands, redisTableVersion } from '../sidecar/policy/redis-table.ts';
import { parseCommandLine } from '../sidecar/policy/shell/command-line.ts';

/** Reason constants: CamelCase, stable, for machines (condition reasons and Event reasons). */
export const lintReasons = {
  neverMatches: 'RuleNeverMatches',
  globNeverMatches: 'GlobNeverMatches',
  shadowed: 'RuleShadowed',
  emptyMatch: 'PatternMatchesEmpty',
  noApprovers: 'NoApprovers',
  approverNotFound: 'ApproverNotFound',
  auditTooLong: 'AuditModeTooLong',
} as const;

export interface LintWarning {
  /** namespace/name of the AccessPolicy. */
  policy: string;
  /** The rule or masking rule the warning is about. */
  rule?: string;
  reason: (typeof lintReasons)[keyof typeof lintReasons];
  message: string;
}

export interface LintOptions {
  now: Date;
  /** Audit mode older than this is reported; undefined: never. */
  auditMaxAgeMs?: number;
  /** Whether a ServiceAccount exists; undefined when it cannot be told (outside a cluster). */
  serviceAccountExists?: (namespace: string, name: string) => boolean | undefined;
}

/**
 * Statement kinds that never carry an UPDATE, DELETE, MERGE or TRUNCATE inside them, so a
 * statement with one of them is never an unbounded write (checked against the analyzer in
 * lint.test.ts). Kinds that can nest one (a CTE, a rule action, EXPLAIN ANALYZE, PREPARE,
 * COPY (query), a function body) are left out.
 */
export const neverUnboundedKinds: ReadonlySet<SqlStatementKind> = new Set<SqlStatementKind>([
  'ALTER',
  'DROP',
  'GRANT',
  'REVOKE',
  'COMMENT',
  'DEALLOCATE',
  'SET',
  'RESET',
  'SHOW',
  'BEGIN',
  'COMMIT',
  'ROLLBACK',
  'SAVEPOINT',
  'LOCK',
  'VACUUM',
  'ANALYZE',
  'CLUSTER',
  'REINDEX',
  'REFRESH',
  'LISTEN',
  'UNLISTEN',
  'DISCARD',
  'FETCH',
  'CLOSE',
  'CHECKPOINT',
  'LOAD',
  'IMPORT',
  'SECURITY LABEL',
  'REASSIGN',
]);

/**
 * Statement kinds whose statements hold no expression and never sit inside one that does, so a
 * statement with one of them calls no function (checked against the analyzer in lint.test.ts).
 */
export const neverCallsFunctionsKinds: ReadonlySet<SqlStatementKind> = new Set<SqlStatementKind>([
  'TRUNCATE',
  'DROP',
  'LOCK',
  'VACUUM',
  'ANALYZE',
  'CLUSTER',
  'REINDEX',
  'REFRESH',
  'CHECKPOINT',
  'DISCARD',
  'LISTEN',
  'UNLISTEN',
  'DEALLOCATE',
  'BEGIN',
  'COMMIT',
  'ROLLBACK',
  'SAVEPOINT',
  'CLOSE',
  'LOAD',
  'REASSIGN',
  'RESET',
  'SHOW',
]);

export function lintPolicies(policies: AccessPolicy[], options: LintOptions): LintWarning[] {
  return policies.flatMap((policy) => lintPolicy(policy, options));
}

export function lintPolicy(policy: AccessPolicy, options: LintOptions): LintWarning[] {
  const name = `${policy.metadata.namespace ?? 'default'}/${policy.metadata.name}`;
  const warnings: LintWarning[] = [];
  const warn = (reason: LintWarning['reason'], message: string, rule?: string) =>
    warnings.push({ policy: name, ...(rule !== undefined && { rule }), reason, message });
  const rules = policy.spec.rules ?? [];
  const never = new Set<PolicyRule>();
  for (const rule of rules) {
    const why = neverMatches(rule);
    if (why) {
      never.add(rule);
      warn(lintReasons.neverMatches, `rule ${rule.name} can never match: ${why}`, rule.name);
    }
    for (const glob of rule.ssh?.commands ?? []) {
      const why = commandGlobNeverMatches(glob);
      if (why && !never.has(rule))
        warn(
          lintReasons.globNeverMatches,
          `rule ${rule.name}: command "${glob}" can never match: ${why}`,
          rule.name,
        );
    }
    for (const glob of rule.http?.paths ?? []) {
      const why = pathGlobNeverMatches(glob);
      if (why && !never.has(rule))
        warn(
          lintReasons.globNeverMatches,
          `rule ${rule.name}: path "${glob}" can never match: ${why}`,
          rule.name,
        );
    }
    if (rule.action === 'require-approval') {
      const approvers = rule.approval?.approvers;
      if (!approvers?.groups?.length && !approvers?.users?.length) {
        warn(
          lintReasons.noApprovers,
          `rule ${rule.name} names no approvers: anyone allowed to update AccessRequests decides`,
          rule.name,
        );
      }
      for (const user of approvers?.users ?? []) {
        const account = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(user);
        if (account && options.serviceAccountExists?.(account[1]!, account[2]!) === false) {
          warn(
            lintReasons.approverNotFound,
            `rule ${rule.name}: approver ${user} is a ServiceAccount that does not exist`,
            rule.name,
          );
        }
      }
    }
  }
  for (const [j, later] of rules.entries()) {
    if (never.has(later)) continue;
    const earlier = rules
      .slice(0, j)
      .find((r) => !never.has(r) && strength[r.action] >= strength[later.action] && covers(r, later));
    if (earlier) {
      warn(
        lintReasons.shadowed,
        `rule ${later.name} never decides: rule ${earlier.name} before it ${earlier.action === later.action ? 'does the same' : 'denies'} for everything it matches`,
        later.name,
      );
    }
  }
  for (const masking of policy.spec.masking ?? []) {
    for (const pattern of masking.patterns ?? []) {
      if (matchesEmpty(pattern.regex)) {
        warn(
          lintReasons.emptyMatch,
          `masking ${masking.name} pattern ${pattern.name} matches the empty string, so it also matches where nothing is to mask`,
          masking.name,
        );
      }
    }
  }
  const created = policy.metadata.creationTimestamp;
  if (policy.spec.mode === 'audit' && options.auditMaxAgeMs !== undefined && created) {
    const age = options.now.getTime() - Date.parse(created);
    if (age > options.auditMaxAgeMs) {
      warn(
        lintReasons.auditTooLong,
        `mode audit for ${Math.floor(age / 86_400_000)} days: it only records what it would do; set mode enforce or remove it`,
      );
    }
  }
  return warnings;
}

const strength = { deny: 2, 'require-approval': 1 } as const;

/** Why a rule can match nothing, or undefined when it can match something. */
export function neverMatches(rule: PolicyRule): string | undefined {
  const empty = (list: unknown[] | undefined, field: string) =>
    list !== undefined && list.length === 0
      ? `${field} is an empty list, and an empty list matches nothing`
      : undefined;
  const { sql, ssh, http, redis, kubernetes, mcp } = rule;
  if (sql) {
    const why =
      empty(sql.statements, 'sql.statements') ??
      empty(sql.classes, 'sql.classes') ??
      empty(sql.tables, 'sql.tables') ??
      empty(sql.functions, 'sql.functions');
    if (why) return why;
    // All criteria must match one statement: each listed kind must be able to meet the others.
    const unbounded = (kind: SqlStatementKind) =>
      sql.unboundedWrites === true && neverUnboundedKinds.has(kind);
    const calls = (kind: SqlStatementKind) =>
      sql.functions !== undefined && neverCallsFunctionsKinds.has(kind);
    if (sql.statements?.every((kind) => unbounded(kind) || calls(kind))) {
      const never = sql.statements.filter(unbounded);
      const noCalls = sql.statements.filter((kind) => !unbounded(kind));
      const why = [
        never.length > 0 && `a ${never.join(' or ')} statement is never an unbounded write`,
        noCalls.length > 0 && `a ${noCalls.join(' or ')} statement calls no function`,
      ].filter(Boolean);
      return `all of its criteria must match, and ${why.join(', and ')} (write one rule per criterion to match any of them)`;
    }
  }
  if (ssh) {
    const why = empty(ssh.commands, 'ssh.commands') ?? empty(ssh.classes, 'ssh.classes');
    if (why) return why;
    // Classes are read from an exec request's command line; shells and subsystems have none.
    if (ssh.interactive && ssh.classes)
      return 'all of its criteria must match, and an interactive session has no command classes';
    if (ssh.commands?.every((glob) => commandGlobNeverMatches(glob)))
      return `none of its commands can match (${commandGlobNeverMatches(ssh.commands[0]!)})`;
  }
  if (http) {
    const why = empty(http.methods, 'http.methods') ?? empty(http.paths, 'http.paths');
    if (why) return why;
    if (http.paths?.every((glob) => pathGlobNeverMatches(glob)))
      return `none of its paths can match (${pathGlobNeverMatches(http.paths[0]!)})`;
  }
  if (redis) {
    const why =
      empty(redis.commands, 'redis.commands') ??
      empty(redis.classes, 'redis.classes') ??
      empty(redis.keys, 'redis.keys');
    if (why) return why;
    if (redis.commands?.every((glob) => !redisCommandNames().some((name) => redisGlobNames(glob, name))))
      return `none of its commands is one Redis ${redisTableVersion} lists (${redis.commands.join(', ')}); a command Redis does not know is refused by every class rule instead`;
  }
  if (kubernetes) {
    const why =
      empty(kubernetes.verbs, 'kubernetes.verbs') ??
      empty(kubernetes.resources, 'kubernetes.resources') ??
      empty(kubernetes.namespaces, 'kubernetes.namespaces') ??
      empty(kubernetes.names, 'kubernetes.names') ??
      empty(kubernetes.subresources, 'kubernetes.subresources');
    if (why) return why;
  }
  if (mcp) {
    const why =
      empty(mcp.tools, 'mcp.tools') ??
      empty(mcp.arguments, 'mcp.arguments') ??
      empty(mcp.resources, 'mcp.resources') ??
      empty(mcp.prompts, 'mcp.prompts');
    if (why) return why;
  }
  return undefined;
}

let redisNames: string[] | undefined;
const redisCommandNames = () => {
  redisNames ??= allCommands().map((c) => c.name);
  return redisNames;
};

/** A rule's command glob names the command, or its container (CONFIG names CONFIG SET), as the enforcer matches it. */
function redisGlobNames(glob: string, name: string): boolean {
  const space = name.indexOf(' ');
  return matchGlob(glob, name, true) || (space > 0 && matchGlob(glob, name.slice(0, space), true));
}

/**
 * Commands are matched as the SSH analyzer reads them (argv[0] reduced to its basename, and so
 * on): a glob whose command word the analyzer never leaves as written can never match.
 */
function commandGlobNeverMatches(glob: string): string | undefined {
  const [word, ...rest] = glob.split(' ');
  if (!word || !/^[A-Za-z0-9_./+-]+$/.test(word) || rest.length === 0) return undefined;
  const commands = parseCommandLine(`${word} argument`).commands;
  if (commands.some((argv) => argv[0] === word)) return undefined;
  return `commands are matched as the analyzer reads them, and "${word} argument" is read as ${commands.map((argv) => `"${argv.join(' ')}"`).join(', ')}`;
}

/** Rules match the normalized path: absolute, without dot segments or empty segments. */
function pathGlobNeverMatches(glob: string): string | undefined {
  if (!glob.startsWith('/') && !glob.startsWith('*'))
    return 'paths are matched normalized, and they begin with /';
  const segments = glob.split('/').slice(1, -1);
  if (segments.some((s) => s === '' || s === '.' || s === '..'))
    return 'paths are matched normalized, without empty, . or .. segments';
  return undefined;
}

function matchesEmpty(regex: string): boolean {
  try {
    return RE2JS.compile(regex).matches('');
  } catch {
    // An invalid pattern is reported by the PatternsValid condition, not here.
    return false;
  }
}

/** Whether rule a matches everything rule b matches (for each protocol b has criteria for). */
export function covers(a: PolicyRule, b: PolicyRule): boolean {
  const list = <T>(outer: T[] | undefined, inner: T[] | undefined, within: (o: T, i: T) => boolean) =>
    outer === undefined || (inner?.every((i) => outer.some((o) => within(o, i))) ?? false);
  const same = <T>(o: T, i: T) => o === i;
  const glob = (o: string, i: string) => o === i || matchGlob(o, i, true);
  if (b.redis || b.kubernetes || b.mcp) return false; // criteria not compared here: never reported as shadowed
  if (b.sql) {
    if (!a.sql) return false;
    if (!list(a.sql.statements, b.sql.statements, same)) return false;
    if (!list(a.sql.classes, b.sql.classes, same)) return false;
    if (a.sql.unboundedWrites && !b.sql.unboundedWrites) return false;
    if (!list(a.sql.tables, b.sql.tables, glob)) return false;
    if (!list(a.sql.functions, b.sql.functions, glob)) return false;
  }
  if (b.ssh) {
    if (!a.ssh) return false;
    if (a.ssh.interactive && !b.ssh.interactive) return false;
    if (!list(a.ssh.classes, b.ssh.classes, same)) return false;
    if (!list(a.ssh.commands, b.ssh.commands, (o, i) => o === i || matchGlob(o, i))) return false;
  }
  if (b.http) {
    if (!a.http) return false;
    if (!list(a.http.methods, b.http.methods, same)) return false;
    if (!list(a.http.paths, b.http.paths, (o, i) => o === i || matchPathGlob(o, i))) return false;
  }
  return true;
}
