// What a request would get under a set of manifests: the bundle the operator and `airlock local`
// compile for the identity, decided by the evaluator the enforcers call, with the evaluator's
// own reading of the request (statement kinds, parsed argv, normalized path) as the why.
import {
  type BundleConnection,
  type BundlePolicy,
  type BundleSources,
  endUserOf,
  type Identity,
  policiesFor,
} from '../api/bundle.ts';
import { compileBundle } from '../api/compile-bundle.ts';
import { credentialKeys } from '../api/names.ts';
import { requestOverrides } from '../sidecar/http/method.ts';
import { normalizeTarget } from '../sidecar/http/path.ts';
import {
  columnGlobMatchesUse,
  type Decision,
  decideReadings,
  decideSql,
  decideSshExec,
  foldPathGlobs,
  pathsIgnoreCase,
} from '../sidecar/policy/decide.ts';
import {
  decideKubernetes,
  describeRequest,
  kubernetesAllowances,
  refusedByConnection,
} from '../sidecar/policy/kubernetes.ts';
import { parseKubernetesRequest } from '../sidecar/policy/kubernetes-request.ts';
import { decideMcp, isPlainToolName, type McpRequest } from '../sidecar/policy/mcp.ts';
import { analyzeRedis, refusedRedisCommand } from '../sidecar/policy/redis.ts';
import { decideRedis } from '../sidecar/policy/redis-decide.ts';
import { parseCommandLine } from '../sidecar/policy/shell/command-line.ts';
import { analyzeSql, loadSqlParser, type SqlStatement } from '../sidecar/policy/sql.ts';
import { splitInline } from '../sidecar/redis/commands-reader.ts';

export class PolicyInputError extends Error {
  override name = 'PolicyInputError';
}

/** One request, in the words each protocol's flag takes (see requestProtocols). */
export type PolicyRequest =
  | { sql: string }
  | { command: string }
  | { http: string }
  | { redis: string }
  | { kubernetes: string }
  | { mcp: string };

/** Each kind of request, the protocol of the Connections that take it. */
export const requestProtocols = {
  sql: 'postgres',
  command: 'ssh',
  http: 'http',
  redis: 'redis',
  kubernetes: 'kubernetes',
  mcp: 'mcp',
} as const;
export type RequestKind = keyof typeof requestProtocols;
export const requestKinds = Object.keys(requestProtocols) as RequestKind[];

/** The one request of a flag set or a test case, which must give exactly one. */
export function requestOfFields(fields: Partial<Record<RequestKind, string>>): PolicyRequest {
  const given = requestKinds.filter((kind) => fields[kind] !== undefined);
  if (given.length !== 1)
    throw new PolicyInputError(`give exactly one of ${requestKinds.map((k) => `--${k}`).join(', ')}`);
  const kind = given[0]!;
  return { [kind]: fields[kind]! } as PolicyRequest;
}

const kindOf = (request: PolicyRequest) => Object.keys(request)[0] as RequestKind;

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
  | { protocol: 'http'; methods: string[]; path?: string; readings?: string[]; rejected?: string }
  | {
      protocol: 'redis';
      command: string;
      known: boolean;
      classes: string[];
      keys: string[];
      keysComplete: boolean;
    }
  | { protocol: 'kubernetes'; request?: string; rejected?: string }
  | { protocol: 'mcp'; method: string; tool?: string; uri?: string; prompt?: string; rejected?: string };

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
  /** Redis key globs whose values are masked. */
  keys?: string[];
}

export interface Outcome {
  connection: string;
  namespace: string;
  identity: string;
  decision: Decision;
  reading: Reading;
  masks: Mask[];
}

/**
 * system:serviceaccount:NS:NAME, and the person it acts for when it carries one: the user and
 * groups a verified token gives, with the Connection's prefixes (oidc:ada@example.com).
 */
export function parseIdentity(value: string | undefined, user?: string, groups: string[] = []): Identity {
  const match = /^system:serviceaccount:([a-z0-9-]+):([a-z0-9.-]+)$/.exec(value ?? '');
  if (!match)
    throw new PolicyInputError(`identity "${value ?? ''}" must be system:serviceaccount:NAMESPACE:NAME`);
  if (user === undefined && groups.length > 0)
    throw new PolicyInputError('groups belong to the person the agent acts for: give --user too');
  return {
    namespace: match[1]!,
    serviceAccount: match[2]!,
    ...(user !== undefined && { user, groups }),
  };
}

export const identityName = (identity: Identity) =>
  `system:serviceaccount:${identity.namespace}:${identity.serviceAccount}${identity.user === undefined ? '' : ` acting for ${identity.user}`}`;

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
      connection.spec.endUser?.caSecretRef && {
        name: connection.spec.endUser.caSecretRef.name,
        keys: [connection.spec.endUser.caSecretRef.key],
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
  const kind = kindOf(request);
  const wanted = requestProtocols[kind];
  if (connection.protocol !== wanted) {
    throw new PolicyInputError(
      `Connection ${connection.name} speaks ${connection.protocol}; --${kind} needs a ${wanted} Connection`,
    );
  }
  const base = {
    connection: connection.name,
    namespace: connection.namespace,
    identity: identityName(identity),
  };
  // The policies a session of this identity is served under: those granted for its end user.
  const served = { ...connection, policies: policiesFor(connection.policies, endUserOf(identity)) };
  const decided = await decideRequest(served, request);
  return { ...base, ...decided };
}

type Decided = Pick<Outcome, 'decision' | 'reading' | 'masks'>;

/** A refusal before any rule is asked, as the enforcer answers a request it cannot read. */
function refused(reason: string, reading: Reading): Decided {
  return {
    decision: { action: 'deny', message: reason, reasons: [reason], wouldHave: [] },
    reading,
    masks: [],
  };
}

async function decideRequest(connection: BundleConnection, request: PolicyRequest): Promise<Decided> {
  const policies = connection.policies;
  if ('sql' in request) {
    await loadSqlParser();
    const analysis = analyzeSql(request.sql);
    const decision = decideSql(policies, analysis);
    const statements = analysis.ok ? analysis.statements : [];
    return {
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
    const decision = decideSshExec(policies, parsed.commands, parsed.unverifiable, parsed.classes);
    return {
      decision,
      reading: {
        protocol: 'ssh',
        commands: parsed.commands,
        classes: parsed.classes,
        unverifiable: parsed.unverifiable,
      },
      masks: decision.action === 'allow' ? scanMasks(policies, []) : [],
    };
  }
  if ('redis' in request) return decideRedisRequest(policies, request.redis);
  if ('kubernetes' in request) return decideKubernetesRequest(connection, request.kubernetes);
  if ('mcp' in request) return decideMcpRequest(policies, request.mcp);
  const { method, target } = parseHttpRequest(request.http);
  const caseInsensitive = pathsIgnoreCase(connection);
  const normalized = normalizeTarget(target, { caseInsensitive });
  if (!normalized.ok) {
    // The enforcer answers 400 and forwards nothing: for the author, a refusal.
    return refused(`Airlock rejects an ambiguous request path: ${normalized.reason}`, {
      protocol: 'http',
      methods: [method],
      rejected: normalized.reason,
    });
  }
  // The request line's method and those the query's _method names; every reading of the path.
  const methods = [...new Set([method, ...requestOverrides({}, normalized.query)])];
  const decision = decideReadings(
    caseInsensitive ? foldPathGlobs(policies) : policies,
    methods,
    normalized.readings,
  );
  return {
    decision,
    reading: { protocol: 'http', methods, path: normalized.path, readings: normalized.readings },
    masks: decision.action === 'allow' ? scanMasks(policies, ['jsonPaths']) : [],
  };
}

/** A command line as redis-cli takes it (quoted the way Redis splits inline commands). */
function decideRedisRequest(policies: BundlePolicy[], line: string): Decided {
  const argv = splitInline(Buffer.from(line))?.map((arg) => arg.toString());
  if (!argv || argv.length === 0)
    throw new PolicyInputError(`Redis command "${line}" must be a command line, such as 'GET session:42'`);
  const command = analyzeRedis(argv);
  const refusal = refusedRedisCommand(argv);
  const decision: Decision = refusal
    ? { action: 'deny', message: refusal.message, reasons: [refusal.message], wouldHave: [] }
    : decideRedis(policies, [command]);
  return {
    decision,
    reading: {
      protocol: 'redis',
      command: command.name,
      known: command.known,
      classes: command.classes,
      keys: command.keys.map((k) => k.name),
      keysComplete: command.keysComplete,
    },
    masks: decision.action === 'allow' && command.reads ? scanMasks(policies, ['keys']) : [],
  };
}

/** Arguments as one command line that Redis's inline splitting reads back as the same arguments. */
export function redisCommandLine(argv: readonly string[]): string {
  const quote = (arg: string) =>
    `"${arg.replace(/[\\"]/g, '\\$&').replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)}"`;
  return argv.map(quote).join(' ');
}

/** "METHOD PATH" as kubectl -v=6 shows a request; decided on the API server's reading of it. */
function decideKubernetesRequest(connection: BundleConnection, text: string): Decided {
  const { method, target } = parseHttpRequest(text);
  const parsed = parseKubernetesRequest(method, target);
  if (!parsed.ok)
    return refused(`airlock: ambiguous request: ${parsed.reason}`, {
      protocol: 'kubernetes',
      rejected: parsed.reason,
    });
  const described = describeRequest(parsed.request);
  const reading: Reading = { protocol: 'kubernetes', request: described };
  const refusal = refusedByConnection(parsed.request, [], kubernetesAllowances(connection));
  if (refusal) return refused(`airlock: ${described} denied: ${refusal}`, reading);
  const decision = decideKubernetes(connection.policies, parsed.request);
  return {
    decision,
    reading,
    masks: decision.action === 'allow' ? scanMasks(connection.policies, ['jsonPaths']) : [],
  };
}

/**
 * "tools/call NAME [ARGUMENTS-JSON]", "resources/read URI" or "prompts/get NAME": the
 * requests an MCP enforcer decides, in the words its events record them.
 */
export function parseMcpRequest(text: string): McpRequest {
  const match =
    /^\s*(tools\/call|resources\/read|resources\/subscribe|prompts\/get)\s+(\S+)\s*(.*?)\s*$/s.exec(text);
  if (!match)
    throw new PolicyInputError(
      `MCP request "${text}" must be 'tools/call NAME [ARGUMENTS-JSON]', 'resources/read URI' or 'prompts/get NAME'`,
    );
  const [, method, name, rest] = match as unknown as [string, string, string, string];
  if (method.startsWith('resources/')) return { kind: 'resource', uri: name };
  if (method === 'prompts/get') return { kind: 'prompt', name };
  let args: unknown = {};
  if (rest !== '') {
    try {
      args = JSON.parse(rest);
    } catch {
      throw new PolicyInputError(`MCP tool arguments ${rest}: not JSON`);
    }
    if (args === null || typeof args !== 'object' || Array.isArray(args))
      throw new PolicyInputError(`MCP tool arguments ${rest}: must be a JSON object`);
  }
  return { kind: 'tool', name, arguments: args };
}

function decideMcpRequest(policies: BundlePolicy[], text: string): Decided {
  const request = parseMcpRequest(text);
  const method = text.trim().split(/\s+/, 1)[0]!;
  const named =
    request.kind === 'tool'
      ? { tool: request.name }
      : request.kind === 'prompt'
        ? { prompt: request.name }
        : { uri: request.uri };
  if (request.kind === 'tool' && !isPlainToolName(request.name)) {
    const reason = `tool name ${JSON.stringify(request.name)} is outside the plain set (ASCII letters, digits, _ - . /)`;
    return refused(`airlock: ${reason}`, { protocol: 'mcp', method, ...named, rejected: reason });
  }
  const decision = decideMcp(policies, request);
  return {
    decision,
    reading: { protocol: 'mcp', method, ...named },
    masks: decision.action === 'allow' ? scanMasks(policies, ['jsonPaths']) : [],
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
  return [...masks, ...scanMasks(policies, [])];
}

/** Rules that scan every value of a response: detectors, patterns, and the protocol's own selectors. */
function scanMasks(policies: BundlePolicy[], selectors: ('jsonPaths' | 'keys')[]): Mask[] {
  const masks: Mask[] = [];
  for (const policy of policies) {
    if (policy.mode !== 'enforce') continue;
    for (const rule of policy.masking) {
      const detectors = rule.detectors ?? [];
      const patterns = (rule.patterns ?? []).map((p) => p.name);
      const jsonPaths = selectors.includes('jsonPaths') ? (rule.jsonPaths ?? []) : [];
      const keys = selectors.includes('keys') ? (rule.keys ?? []) : [];
      if (detectors.length + patterns.length + jsonPaths.length + keys.length === 0) continue;
      masks.push({
        policy: policy.name,
        rule: rule.name,
        strategy: rule.strategy,
        ...(detectors.length > 0 && { detectors }),
        ...(patterns.length > 0 && { patterns }),
        ...(jsonPaths.length > 0 && { jsonPaths }),
        ...(keys.length > 0 && { keys }),
      });
    }
  }
  return masks;
}
