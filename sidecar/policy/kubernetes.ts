// The policy decision for the Kubernetes API: one request, as the API server's request-info
// parser reads it (kubernetes-request.ts), against the rules' `kubernetes` criteria. What a
// criterion cannot see (the name of an object a list may return, the namespace of a list across
// namespaces) matches, so a deny or hold on it is never got around. The command of an exec or
// attach is also decided by the policies' ssh rules, as an SSH exec is. Requests that act as
// someone else or could reach past the rules (impersonation headers, dry runs, a foreign field
// manager) are refused unless the Connection allows them. Pure: no I/O.
import type { BundleConnection, BundlePolicy } from '../../api/bundle.ts';
import type { PolicyRule } from '../../api/v1alpha1.ts';
import {
  combine,
  type Decision,
  decideSsh,
  decideSshExec,
  type Match,
  noGrant,
  refuseUnderCommandRules,
  restrictiveness,
  ruleMatch,
} from './decide.ts';
import { matchGlob } from './glob.ts';
import type { KubernetesRequest } from './kubernetes-request.ts';
import { parseCommandLine } from './shell/command-line.ts';

/** The Connection's allowances, with their defaults. */
export interface KubernetesAllowances {
  dryRun: boolean;
  fieldManagers: string[];
  impersonation: boolean;
}

export function kubernetesAllowances(connection: Pick<BundleConnection, 'kubernetes'>): KubernetesAllowances {
  return {
    dryRun: connection.kubernetes?.dryRun ?? false,
    fieldManagers: connection.kubernetes?.fieldManagers ?? ['kubectl', 'kubectl-*'],
    impersonation: connection.kubernetes?.impersonation ?? false,
  };
}

/** What of a request the Connection refuses whatever the rules say; undefined when nothing. */
export function refusedByConnection(
  request: KubernetesRequest,
  impersonating: string[],
  allow: KubernetesAllowances,
): string | undefined {
  if (impersonating.length > 0 && !allow.impersonation)
    return `impersonation (${impersonating.join(', ')}) is not allowed on this Connection`;
  // The API server takes any dryRun parameter, even an empty one, as a dry run (or refuses it).
  if (request.query.has('dryRun') && !allow.dryRun)
    return 'dry-run requests are not allowed on this Connection';
  for (const manager of request.query.get('fieldManager') ?? [])
    if (!allow.fieldManagers.some((glob) => matchGlob(glob, manager)))
      return `field manager "${manager}" is not allowed on this Connection`;
  return undefined;
}

export function decideKubernetes(policies: BundlePolicy[], request: KubernetesRequest): Decision {
  if (policies.length === 0) return noGrant();
  const matches: Match[] = [];
  for (const policy of policies)
    for (const rule of policy.rules) {
      if (!rule.kubernetes || !kubernetesRuleMatches(rule, request)) continue;
      matches.push({
        ...ruleMatch(policy, rule),
        reason: `rule "${rule.name}" of AccessPolicy "${policy.name}" matches ${describeRequest(request)}`,
      });
    }
  let decision = combine(matches, []);
  const explicit = explicitSubresource(request);
  if (explicit !== undefined && decision.action !== 'deny' && !namedBy(policies, request))
    decision = {
      action: 'deny',
      message: `${explicit} requests are refused unless a rule names the ${named(request)} subresource`,
      reasons: [`no enforcing rule lists "${named(request)}" in its subresources`],
      wouldHave: decision.wouldHave,
    };
  const command = execCommand(request);
  if (command !== undefined) decision = mostRestrictive(decision, decideExec(policies, command));
  if (interactive(request)) decision = mostRestrictive(decision, decideInteractive(policies));
  return decision;
}

/**
 * Subresources only a rule that names them (not a glob, not a rule without subresources) lets
 * through, and rules only deny or hold, so a person approves each: a ServiceAccount token is a
 * live cluster credential in the agent's hands, a port-forward an opaque tunnel into a pod, a
 * node's proxy the kubelet's own API, whose /run and /exec run commands in any pod of the node
 * with no exec request to decide, a pod's or service's proxy HTTP to whatever listens in the
 * cluster, and an ephemeral container (kubectl debug) any command in a running pod.
 */
function explicitSubresource(request: KubernetesRequest): string | undefined {
  if (request.group !== '') return undefined;
  const subresource = named(request);
  if (request.resource === 'serviceaccounts' && subresource === 'token') return 'ServiceAccount token';
  if (request.resource === 'pods' && subresource === 'portforward') return 'port-forward';
  if (request.resource === 'nodes' && subresource === 'proxy') return 'node proxy (kubelet API)';
  if ((request.resource === 'pods' || request.resource === 'services') && subresource === 'proxy')
    return `${request.resource === 'pods' ? 'pod' : 'service'} proxy (HTTP into the cluster past the Connections that govern it)`;
  if (request.resource === 'pods' && subresource === 'ephemeralcontainers' && request.verb !== 'get')
    return 'ephemeral container (kubectl debug: any command in the pod, with no exec request to decide)';
  return undefined;
}

/** The subresource as rules name it: proxy also for the /proxy/ path prefix. */
function named(request: KubernetesRequest): string {
  return request.verb === 'proxy' ? 'proxy' : request.subresource;
}

/** Whether an enforcing hold that matches the request lists its subresource as it is spelled. */
function namedBy(policies: BundlePolicy[], request: KubernetesRequest): boolean {
  return policies.some(
    (policy) =>
      policy.mode === 'enforce' &&
      policy.rules.some(
        (rule) =>
          rule.action !== 'deny' &&
          rule.kubernetes?.subresources?.includes(named(request)) === true &&
          kubernetesRuleMatches(rule, request),
      ),
  );
}

/**
 * An exec or attach that sends stdin: what it runs reads further input no analysis sees (a
 * shell's commands typed in), so it is decided as an SSH interactive shell is. The API server
 * reads any value but "0" and "false" (any case) as true, an empty one too.
 */
export function interactive(request: KubernetesRequest): boolean {
  if (request.resource !== 'pods' || (request.subresource !== 'exec' && request.subresource !== 'attach'))
    return false;
  const stdin = request.query.get('stdin');
  if (stdin === undefined || stdin.length === 0) return false;
  const value = stdin[0]!;
  return value !== '0' && value.toLowerCase() !== 'false';
}

function decideInteractive(policies: BundlePolicy[]): Decision {
  return refuseUnderCommandRules(
    policies,
    decideSsh(policies, [], { interactive: true }),
    'an interactive exec or attach (stdin) cannot be checked against command rules, so it is refused where the policy has them',
  );
}

/** All the criteria given must match; a criterion left out does not narrow the rule. */
export function kubernetesRuleMatches(rule: PolicyRule, request: KubernetesRequest): boolean {
  const k = rule.kubernetes;
  if (!k) return false;
  if (k.verbs && !k.verbs.some((verb) => verb === request.verb)) return false;
  const scoped = k.resources || k.namespaces || k.names || k.subresources;
  if (scoped && !request.resourceRequest) return false;
  if (k.resources && !k.resources.some((glob) => resourceMatches(glob, request))) return false;
  if (k.namespaces && request.namespace !== '' && !k.namespaces.some((g) => matchGlob(g, request.namespace)))
    return false;
  if (k.names && request.name !== '' && !k.names.some((g) => matchGlob(g, request.name))) return false;
  if (k.subresources) {
    const subresource = named(request);
    if (subresource === '' || !k.subresources.some((g) => matchGlob(g, subresource))) return false;
  }
  return true;
}

/** group/resource globs match both; a glob without a slash matches the resource in every group. */
function resourceMatches(glob: string, request: KubernetesRequest): boolean {
  if (!glob.includes('/')) return matchGlob(glob, request.resource);
  const slash = glob.indexOf('/');
  return (
    matchGlob(glob.slice(0, slash), request.group) &&
    (slash === 0 ? request.group === '' : true) &&
    matchGlob(glob.slice(slash + 1), request.resource)
  );
}

/** The argv an exec or attach runs: the command parameters of an exec; an attach runs what the container runs. */
export function execCommand(request: KubernetesRequest): string[] | undefined {
  if (request.resource !== 'pods') return undefined;
  if (request.subresource === 'exec') return request.query.get('command') ?? [];
  return undefined;
}

function decideExec(policies: BundlePolicy[], argv: string[]): Decision {
  if (argv.length === 0) {
    const reason = 'an exec without a command cannot be verified';
    return decideSshExec(policies, [], [reason]);
  }
  // The container runtime runs the argv itself, no shell: each word quoted as one argument.
  const analysis = parseCommandLine(argv.map(shellQuote).join(' '));
  return decideSshExec(policies, analysis.commands, analysis.unverifiable, analysis.classes);
}

function shellQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}

function mostRestrictive(a: Decision, b: Decision): Decision {
  const worst = restrictiveness[b.action] > restrictiveness[a.action] ? b : a;
  return { ...worst, wouldHave: [...a.wouldHave, ...b.wouldHave] };
}

/** The request as events and approvers read it: verb, group/resource/subresource, namespace, name. */
export function describeRequest(request: KubernetesRequest): string {
  if (!request.resourceRequest) return `${request.verb} ${request.path}`;
  const resource = `${request.group === '' ? '' : `${request.group}/`}${request.resource}${request.subresource === '' ? '' : `/${request.subresource}`}`;
  // A namespace's own path names it twice (/namespaces/prod: namespace prod, name prod).
  const own = request.group === '' && request.resource === 'namespaces';
  const where = request.namespace === '' || own ? '' : ` in namespace ${request.namespace}`;
  const name = request.name === '' ? '' : ` ${request.name}`;
  const command = execCommand(request);
  const runs = command === undefined ? '' : ` -- ${command.map(shellQuote).join(' ')}`;
  return `${request.verb} ${resource}${name}${where}${runs}`;
}
