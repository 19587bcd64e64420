// What a request would get under a set of manifests: the bundle the operator and `airlock local`
// compile for the identity, decided by the evaluator the enforcers call, with the evaluator's
// own reading of the request (statement kinds, parsed argv, normalized path) as the why.
import {
  type BundleConnection,
  type BundlePolicy,
  type BundleSources,
  compileBundle,
  type Identity,
} from '../api/bundle.ts';
import { credentialKeys } from '../api/v1alpha1.ts';
import { decideReadings, foldPathGlobs } from '../sidecar/http/enforcer.ts';
import { requestOverrides } from '../sidecar/http/method.ts';
import { normalizeTarget } from '../sidecar/http/path.ts';
import { columnGlobMatchesUse, type Decision, decideSql, decideSshExec } from '../sidecar/policy/decide.ts';
import { parseCommandLine } from '../sidecar/policy/shell/command-line.ts';
import { spellings } from '../sidecar/policy/shell/spellings.ts';
import { analyzeSql, loadSqlParser, type SqlStatement } from '../sidecar/policy/sql.ts';

export class PolicyInputError extends Error {
  override name = 'PolicyInputError';
}

export type PolicyRequest = { sql: string } | { command: string } | { http: string };

/** The evaluator's reading of the request: what the rules were matched against. */
export type Reading =
  | {
      protocol: 'postgres';
      parsed: boolean;
      error?: string;
      statements: {
        kinds: string[];
        classes: string[];
        tables: string[];
        functions: string[];
        unboundedWrite: boolean;
      }[];
    }
  | { protocol: 'ssh'; commands: string[][]; classes: readonly string[]; unverifiable: string[] }
  | { protocol: 'http'; methods: string[]; path?: string; readings?: string[]; rejected?: string };

/** A value an enforce-mode masking rule would replace in the response. */
export interface Mask {
  policy: string;
  rule: string;
  strategy: string;
  /** A column of this statement that a column glob matches, as table.column, and the glob. */
  column?: string;
  glob?: string;
  /** Detectors, patterns and JSON paths scan every value of the response. */
  detectors?: string[];
  patterns?: string[];
  jsonPaths?: string[];
}

export interface Outcome {
  connection: string;
  namespace: string;
  identity: string;
  decision: Decision;
  reading: Reading;
  masks: Mask[];
}

/** system:serviceaccount:NS:NAME, with the groups an OIDC token would carry. */
export function parseIdentity(value: string | undefined, groups: string[] = []): Identity {
  const match = /^system:serviceaccount:([a-z0-9-]+):([a-z0-9.-]+)$/.exec(value ?? '');
  if (!match)
    throw new PolicyInputError(`identity "${value ?? ''}" must be system:serviceaccount:NAMESPACE:NAME`);
  return { namespace: match[1]!, serviceAccount: match[2]!, ...(groups.length > 0 && { groups }) };
}

export const identityName = (identity: Identity) =>
  `system:serviceaccount:${identity.namespace}:${identity.serviceAccount}`;

/**
 * The granted Connection as the sidecar would receive it. Deciding never connects: a Secret kept
 * out of a policy repository stands in with placeholder values, so it cannot hide the policies.
 */
export function grantedConnection(
  sources: BundleSources,
  identity: Identity,
  name: string,
): BundleConnection {
  const secrets = [...sources.secrets];
  const have = new Set(secrets.map((s) => `${s.namespace}/${s.name}`));
  for (const connection of sources.connections) {
    const namespace = connection.metadata.namespace ?? 'default';
    const refs = [
      connection.spec.credentials && {
        name: connection.spec.credentials.secretRef.name,
        keys: credentialKeys[connection.spec.protocol][0] ?? [],
      },
      connection.spec.tls.caSecretRef && {
        name: connection.spec.tls.caSecretRef.name,
        keys: [connection.spec.tls.caSecretRef.key],
      },
    ];
    for (const ref of refs) {
      if (!ref || have.has(`${namespace}/${ref.name}`)) continue;
      have.add(`${namespace}/${ref.name}`);
      secrets.push({
        namespace,
        name: ref.name,
        data: Object.fromEntries(ref.keys.map((k) => [k, 'placeholder'])),
      });
    }
  }
  const { bundle, problems } = compileBundle({ ...sources, secrets }, identity);
  const connection = bundle.connections.find((c) => c.name === name);
  if (connection) return connection;
  const problem = problems.find((p) => p.connection === name && p.namespace === identity.namespace);
  if (problem) throw new PolicyInputError(`Connection ${name}: ${problem.message}`);
  const existing = sources.connections.find(
    (c) => c.metadata.name === name && (c.metadata.namespace ?? 'default') === identity.namespace,
  );
  if (!existing) throw new PolicyInputError(`no Connection ${identity.namespace}/${name} in the manifests`);
  // Not granted: no policy applies, and the evaluator refuses, as the sidecar would.
  const { protocol, host, port, tls } = existing.spec;
  return {
    name,
    namespace: identity.namespace,
    protocol,
    host,
    port,
    tls: { mode: tls.mode },
    credentials: {},
    policies: [],
  };
}

const protocolOf = (request: PolicyRequest) =>
  'sql' in request ? 'postgres' : 'command' in request ? 'ssh' : 'http';

/** "METHOD PATH" as curl and the recorded events write it. */
export function parseHttpRequest(text: string): { method: string; target: string } {
  const match = /^\s*([A-Za-z]+)\s+(\S+)\s*$/.exec(text);
  if (!match)
    throw new PolicyInputError(`HTTP request "${text}" must be 'METHOD PATH', such as 'GET /v1/orders'`);
  return { method: match[1]!.toUpperCase(), target: match[2]! };
}

/** Decides one request on one granted Connection, as its enforcer would. */
export async function decide(
  connection: BundleConnection,
  identity: Identity,
  request: PolicyRequest,
): Promise<Outcome> {
  const wanted = protocolOf(request);
  if (connection.protocol !== wanted) {
    throw new PolicyInputError(
      `Connection ${connection.name} speaks ${connection.protocol}; ${'sql' in request ? '--sql' : 'command' in request ? '--command' : '--http'} needs a ${wanted} Connection`,
    );
  }
  const policies = connection.policies;
  const base = {
    connection: connection.name,
    namespace: connection.namespace,
    identity: identityName(identity),
  };
  if ('sql' in request) {
    await loadSqlParser();
    const analysis = analyzeSql(request.sql);
    const decision = decideSql(policies, analysis);
    const statements = analysis.ok ? analysis.statements : [];
    return {
      ...base,
      decision,
      reading: {
        protocol: 'postgres',
        parsed: analysis.ok,
        ...(!analysis.ok && { error: analysis.error }),
        statements: statements.map((s) => ({
          kinds: s.kinds,
          classes: s.classes,
          tables: s.tables,
          functions: s.functions,
          unboundedWrite: s.unboundedWrite,
        })),
      },
      masks: decision.action === 'allow' ? sqlMasks(policies, statements) : [],
    };
  }
  if ('command' in request) {
    const parsed = parseCommandLine(request.command);
    const decision = decideSshExec(
      policies,
      parsed.commands.flatMap(spellings),
      parsed.unverifiable,
      parsed.classes,
    );
    return {
      ...base,
      decision,
      reading: {
        protocol: 'ssh',
        commands: parsed.commands,
        classes: parsed.classes,
        unverifiable: parsed.unverifiable,
      },
      masks: decision.action === 'allow' ? scanMasks(policies, false) : [],
    };
  }
  const { method, target } = parseHttpRequest(request.http);
  const caseInsensitive = connection.http?.caseInsensitivePaths === true;
  const normalized = normalizeTarget(target, { caseInsensitive });
  if (!normalized.ok) {
    // The enforcer answers 400 and forwards nothing: for the author, a refusal.
    const message = `Airlock rejects an ambiguous request path: ${normalized.reason}`;
    return {
      ...base,
      decision: { action: 'deny', message, reasons: [message], wouldHave: [] },
      reading: { protocol: 'http', methods: [method], rejected: normalized.reason },
      masks: [],
    };
  }
  // The request line's method and those the query's _method names; every reading of the path.
  const methods = [...new Set([method, ...requestOverrides({}, normalized.query)])];
  const decision = decideReadings(
    caseInsensitive ? foldPathGlobs(policies) : policies,
    methods,
    normalized.readings,
  );
  return {
    ...base,
    decision,
    reading: { protocol: 'http', methods, path: normalized.path, readings: normalized.readings },
    masks: decision.action === 'allow' ? scanMasks(policies, true) : [],
  };
}

/** Column rules that a column this statement returns or uses matches, then the scanners. */
function sqlMasks(policies: BundlePolicy[], statements: SqlStatement[]): Mask[] {
  const masks: Mask[] = [];
  const uses = statements.flatMap((s) => s.columnUses).filter((u) => u.direct);
  for (const policy of policies) {
    if (policy.mode !== 'enforce') continue;
    for (const rule of policy.masking) {
      for (const glob of rule.columns ?? []) {
        const use = uses.find((u) => columnGlobMatchesUse(glob, u));
        if (!use) continue;
        const column = use.column === '*' ? glob : use.table ? `${use.table}.${use.column}` : use.column;
        masks.push({ policy: policy.name, rule: rule.name, strategy: rule.strategy, column, glob });
      }
    }
  }
  return [...masks, ...scanMasks(policies, false)];
}

function scanMasks(policies: BundlePolicy[], http: boolean): Mask[] {
  const masks: Mask[] = [];
  for (const policy of policies) {
    if (policy.mode !== 'enforce') continue;
    for (const rule of policy.masking) {
      const detectors = rule.detectors ?? [];
      const patterns = (rule.patterns ?? []).map((p) => p.name);
      const jsonPaths = http ? (rule.jsonPaths ?? []) : [];
      if (detectors.length + patterns.length + jsonPaths.length === 0) continue;
      masks.push({
        policy: policy.name,
        rule: rule.name,
        strategy: rule.strategy,
        ...(detectors.length > 0 && { detectors }),
        ...(patterns.length > 0 && { patterns }),
        ...(jsonPaths.length > 0 && { jsonPaths }),
      });
    }
  }
  return masks;
}
