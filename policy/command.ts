// `airlock policy check|lint|test|replay`: what a policy would do, before it governs anyone.
import { existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
import { parseRetention } from '../audit/settings.ts';
import { AuditStore, isPostgresUrl } from '../audit/store.ts';
import { clusterOptions, clusterSessions } from '../cli/cluster.ts';
import { commands } from '../cli/main.ts';
import { controlSocket } from '../local/control.ts';
import { loadManifests, ManifestError } from '../local/manifests.ts';
import {
  decide,
  grantedConnection,
  type Outcome,
  PolicyInputError,
  parseIdentity,
  requestOfFields,
} from './evaluate.ts';
import { type LintWarning, lintPolicies } from './lint.ts';
import { clusterEvents, type ReplayReport, replay, storedEvents } from './replay.ts';
import { type CaseResult, findTestFiles, runTestFile, testFileSuffix } from './suite.ts';

export const exitCodes = { allow: 0, deny: 3, 'require-approval': 4, badInput: 2 } as const;

function flags(args: string[]) {
  return parseArgs({
    args,
    options: {
      file: { type: 'string', short: 'f', multiple: true },
      as: { type: 'string' },
      user: { type: 'string' },
      group: { type: 'string', multiple: true },
      connection: { type: 'string' },
      sql: { type: 'string' },
      command: { type: 'string' },
      http: { type: 'string' },
      redis: { type: 'string' },
      kubernetes: { type: 'string' },
      mcp: { type: 'string' },
      output: { type: 'string', short: 'o' },
      strict: { type: 'boolean' },
      'audit-max-age': { type: 'string' },
      store: { type: 'string' },
      since: { type: 'string' },
      cluster: { type: 'boolean' },
      ...clusterOptions,
    },
    allowPositionals: true,
    strict: true,
  });
}
type Flags = ReturnType<typeof flags>['values'];

export async function policyCommand(args: string[]): Promise<number> {
  const [action, ...rest] = args;
  try {
    const { values, positionals } = flags(rest);
    if (values.output !== undefined && values.output !== 'json' && values.output !== 'text')
      throw new PolicyInputError(`-o ${values.output}: must be json or text`);
    switch (action) {
      case 'check':
        return await check(values);
      case 'lint':
        return await lint(values);
      case 'test':
        return await test(values, positionals);
      case 'replay':
        return await replayCommand(values);
      default:
        throw new PolicyInputError(action ? `unknown action "${action}"` : 'an action is required');
    }
  } catch (error) {
    const known =
      error instanceof PolicyInputError ||
      error instanceof ManifestError ||
      (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS');
    if (!known) throw error;
    console.error(`airlock policy: ${(error as Error).message}\n\nUsage: ${commands.policy!.usage}`);
    return exitCodes.badInput;
  }
}

function manifests(values: Flags): string[] {
  if (!values.file?.length) throw new PolicyInputError('at least one -f PATH of manifests is required');
  return values.file;
}

function duration(flag: string, value: string): number {
  try {
    return parseRetention(value);
  } catch {
    throw new PolicyInputError(`${flag} ${value}: must be a number and a unit, like 30d, 12h or 90m`);
  }
}

async function check(values: Flags): Promise<number> {
  const request = requestOfFields(values);
  if (!values.connection) throw new PolicyInputError('--connection NAME is required');
  const identity = parseIdentity(values.as, values.user, values.group);
  const sources = await loadManifests(manifests(values));
  const connection = grantedConnection(sources, identity, values.connection);
  const outcome = await decide(connection, identity, request);
  console.log(values.output === 'json' ? JSON.stringify(outcome, null, 2) : renderOutcome(outcome));
  return exitCodes[outcome.decision.action];
}

export function renderOutcome(outcome: Outcome): string {
  const d = outcome.decision;
  const verdict = { allow: 'ALLOW', deny: 'DENY', 'require-approval': 'REQUIRE APPROVAL' }[d.action];
  const lines = [`${verdict}  ${outcome.identity} on Connection ${outcome.namespace}/${outcome.connection}`];
  if (d.policy) lines.push(`  decided by  AccessPolicy ${d.policy}${d.rule ? ` rule ${d.rule}` : ''}`);
  if (d.message && d.message !== d.reasons[0]) lines.push(`  message     ${d.message}`);
  for (const reason of d.reasons) lines.push(`  because     ${reason}`);
  if (d.approval) {
    const who = [...d.approval.approvers.groups.map((g) => `group ${g}`), ...d.approval.approvers.users];
    lines.push(
      `  approval    by ${who.length > 0 ? who.join(', ') : 'anyone allowed to update AccessRequests'}, within ${Math.round(d.approval.timeoutMs / 60_000)}m, scope ${d.approval.scope}`,
    );
  }
  const r = outcome.reading;
  if (r.protocol === 'postgres') {
    if (!r.parsed) lines.push(`  read as     unparsable: ${r.error}`);
    for (const [i, s] of r.statements.entries()) {
      lines.push(
        `  statement ${i + 1} kinds ${s.kinds.join(', ') || '-'}; classes ${s.classes.join(', ') || '-'}; tables ${s.tables.join(', ') || '-'}; functions ${s.functions.join(', ') || '-'}; unbounded write ${s.unboundedWrite ? 'yes' : 'no'}`,
      );
    }
  } else if (r.protocol === 'ssh') {
    for (const argv of r.commands) lines.push(`  runs        ${JSON.stringify(argv)}`);
    if (r.classes.length > 0) lines.push(`  classes     ${r.classes.join(', ')}`);
    for (const why of r.unverifiable) lines.push(`  unverifiable ${why}`);
  } else if (r.protocol === 'http') {
    if (r.rejected) lines.push(`  path        rejected: ${r.rejected}`);
    else {
      lines.push(`  path        ${r.methods.join(', ')} ${r.path}`);
      const others = (r.readings ?? []).filter((p) => p !== r.path);
      if (others.length > 0) lines.push(`  also read   ${others.join(', ')}`);
    }
  } else if (r.protocol === 'redis') {
    lines.push(
      `  command     ${r.command}${r.known ? '' : ' (not in the command table: every class)'}; classes ${r.classes.join(', ') || '-'}`,
      `  keys        ${r.keys.join(', ') || '-'}${r.keysComplete ? '' : ' (and keys it cannot name)'}`,
    );
  } else if (r.protocol === 'kubernetes') {
    lines.push(r.rejected ? `  request     rejected: ${r.rejected}` : `  request     ${r.request}`);
  } else {
    lines.push(
      `  request     ${r.method} ${r.tool ?? r.prompt ?? r.uri}${r.rejected ? `, rejected: ${r.rejected}` : ''}`,
    );
  }
  for (const mask of outcome.masks) {
    const what = mask.column
      ? `column ${mask.column} (${mask.glob})`
      : [
          mask.detectors && `detectors ${mask.detectors.join(', ')}`,
          mask.patterns && `patterns ${mask.patterns.join(', ')}`,
          mask.jsonPaths && `JSON paths ${mask.jsonPaths.join(', ')}`,
          mask.keys && `keys ${mask.keys.join(', ')}`,
        ]
          .filter(Boolean)
          .join('; ');
    lines.push(`  masks       ${what}: ${mask.strategy}, by ${mask.policy}/${mask.rule}`);
  }
  for (const w of d.wouldHave)
    lines.push(`  audit mode  would ${w.action} (${w.policy}${w.rule ? `/${w.rule}` : ''}): ${w.reason}`);
  return lines.join('\n');
}

async function lint(values: Flags): Promise<number> {
  const maxAge = values['audit-max-age'] ?? '30d';
  const sources = await loadManifests(manifests(values));
  const warnings = lintPolicies(sources.policies, {
    now: new Date(),
    auditMaxAgeMs: duration('--audit-max-age', maxAge),
  });
  if (values.output === 'json')
    console.log(JSON.stringify({ policies: sources.policies.length, warnings }, null, 2));
  else console.log(renderWarnings(sources.policies.length, warnings));
  return values.strict && warnings.length > 0 ? 1 : 0;
}

function renderWarnings(policies: number, warnings: LintWarning[]): string {
  const lines = warnings.map((w) => `warning  AccessPolicy ${w.policy}  ${w.reason}: ${w.message}`);
  lines.push(
    `${policies} AccessPolic${policies === 1 ? 'y' : 'ies'} checked, ${warnings.length} warning${warnings.length === 1 ? '' : 's'}`,
  );
  return lines.join('\n');
}

async function test(values: Flags, paths: string[]): Promise<number> {
  if (paths.length === 0) throw new PolicyInputError('give the directory (or files) of the policy tests');
  const results: CaseResult[] = [];
  for (const path of paths) {
    const files = await findTestFiles([path]);
    if (files.length === 0) throw new PolicyInputError(`no *${testFileSuffix} file under ${path}`);
    // A directory's tests decide against the manifests directly in it; a file's, its directory's.
    const manifests = values.file ?? [(await stat(path)).isDirectory() ? path : dirname(path)];
    for (const file of files) results.push(...(await runTestFile(file, manifests)));
  }
  const failed = results.filter((r) => !r.passed);
  if (values.output === 'json') {
    console.log(
      JSON.stringify(
        {
          passed: results.length - failed.length,
          failed: failed.length,
          cases: results.map(({ file, name, passed, failures, outcome }) => ({
            file,
            name,
            passed,
            failures,
            ...(outcome && {
              decision: outcome.decision.action,
              policy: outcome.decision.policy,
              rule: outcome.decision.rule,
            }),
          })),
        },
        null,
        2,
      ),
    );
  } else {
    let file = '';
    for (const r of results) {
      if (r.file !== file) {
        file = r.file;
        console.log(file);
      }
      console.log(`  ${r.passed ? 'ok  ' : 'FAIL'}  ${r.name}`);
      for (const failure of r.failures) console.log(`          ${failure}`);
    }
    console.log(`${results.length} cases, ${results.length - failed.length} passed, ${failed.length} failed`);
  }
  return failed.length > 0 ? 1 : 0;
}

async function replayCommand(values: Flags): Promise<number> {
  const inCluster = Boolean(
    values.cluster || values.namespace || values.kubeconfig || values.context || values['all-namespaces'],
  );
  if (inCluster === Boolean(values.store))
    throw new PolicyInputError('give one of --store DIR|postgres://... or --cluster [-n NS|-A]');
  const since = values.since ? new Date(Date.now() - duration('--since', values.since)) : undefined;
  const sources = await loadManifests(manifests(values));
  const options = {
    sources,
    ...(since && { since }),
    ...(values.connection && { connection: values.connection }),
    onProgress: ({ events, requests, at }: { events: number; requests: number; at: string }) =>
      console.error(`airlock policy replay: ${events} events read (${at}), ${requests} requests`),
  };
  let report: ReplayReport;
  if (inCluster) {
    try {
      report = await replay(clusterEvents(clusterSessions(values), since), options);
    } catch (error) {
      // The API server's answer (RBAC, an unknown context): said as it is, not a usage error.
      console.error(`airlock policy replay: ${(error as Error).message}`);
      return 1;
    }
  } else {
    const store = values.store!;
    if (!isPostgresUrl(store)) {
      if (!existsSync(store)) throw new PolicyInputError(`--store ${store}: no such store`);
      // The embedded store serves one process at a time.
      if (existsSync(controlSocket(store)))
        throw new PolicyInputError(`--store ${store}: airlock local is running on it; stop it first`);
    }
    const log = await AuditStore.open(store);
    try {
      report = await replay(storedEvents(log, 500), options);
    } finally {
      await log.close();
    }
  }
  console.log(values.output === 'json' ? JSON.stringify(report, null, 2) : renderReport(report));
  return 0;
}

function renderReport(report: ReplayReport): string {
  const decided = report.requests - Object.values(report.skipped).reduce((a, b) => a + b, 0);
  const lines = [
    `${report.requests} recorded requests${report.since ? ` since ${report.since}` : ''}${report.connection ? ` on ${report.connection}` : ''}; ${decided} decided again: ${decided - report.unchanged} would change, ${report.unchanged} unchanged`,
  ];
  for (const group of report.changes) {
    lines.push(
      '',
      `${group.change}  ${group.count}  ${group.policy ? `${group.policy}/${group.rule ?? ''}` : '(no rule)'}`,
    );
    for (const example of group.examples) lines.push(`    ${example}`);
  }
  for (const [why, count] of Object.entries(report.skipped))
    lines.push('', `not decided again: ${count} ${why}`);
  return lines.join('\n');
}
