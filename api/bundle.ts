// The policy bundle: everything one sidecar (or `airlock local`) needs to serve the
// Connections granted to one identity, and how its policies are granted. Defined once,
// versioned; compiled from the API objects by compileBundle (compile-bundle.ts), read by the
// sidecar without zod (names.ts, bundle-schema.ts).
import { credentialKeys } from './names.ts';
import type {
  AccessPolicy,
  AccessPolicySpec,
  Connection,
  ConnectionSpec,
  MaskingRule,
  PolicyRule,
  Subject,
} from './v1alpha1.ts';

export const bundleVersion = 1;

/**
 * Who is asking: a pod's ServiceAccount and, within a session, the person it acts for (user
 * and groups from the token the sidecar verified, with the Connection's prefixes).
 */
export interface Identity {
  namespace: string;
  serviceAccount: string;
  pod?: string;
  user?: string;
  groups?: string[];
}

/** The person a session acts for, from a verified token. */
export interface EndUser {
  user: string;
  groups: string[];
}

/**
 * The end users a policy is granted for: a session's verified user must be one of users or a
 * member of one of groups. A policy without one is granted to the workload whoever it acts for.
 */
export interface EndUserCondition {
  users: string[];
  groups: string[];
}

export interface BundlePolicy {
  name: string;
  namespace: string;
  /** Set when the policy applies only while the workload acts for certain people. */
  endUser?: EndUserCondition;
  mode: AccessPolicySpec['mode'];
  recording: AccessPolicySpec['recording'];
  masking: MaskingRule[];
  rules: PolicyRule[];
}

export interface BundleConnection {
  name: string;
  namespace: string;
  protocol: ConnectionSpec['protocol'];
  host: string;
  port: number;
  tls: { mode: ConnectionSpec['tls']['mode']; ca?: string; serverName?: string };
  /** The Secret's data, decoded: only the keys the protocol uses. */
  credentials: Record<string, string>;
  postgres?: ConnectionSpec['postgres'];
  ssh?: ConnectionSpec['ssh'];
  http?: ConnectionSpec['http'];
  mcp?: ConnectionSpec['mcp'];
  kubernetes?: ConnectionSpec['kubernetes'];
  /** How the person an agent acts for is verified; ca: the PEM the provider's certificate must chain to. */
  endUser?: BundleEndUser;
  /** Every AccessPolicy that grants this Connection to the identity, some under an end-user condition. */
  policies: BundlePolicy[];
}

export type BundleEndUser = Omit<NonNullable<ConnectionSpec['endUser']>, 'caSecretRef'> & { ca?: string };

export interface Bundle {
  version: typeof bundleVersion;
  identity: Identity;
  /** Content hash of the rest, so a sidecar can tell a change from a repeat. */
  revision: string;
  connections: BundleConnection[];
}

export interface SecretData {
  namespace: string;
  name: string;
  /** Decoded values. */
  data: Record<string, string>;
}

export interface BundleSources {
  connections: Connection[];
  policies: AccessPolicy[];
  secrets: SecretData[];
}

/** A reason a granted Connection is left out of the bundle. */
export interface BundleProblem {
  connection: string;
  namespace: string;
  message: string;
}

/**
 * How a policy is granted to a workload (ServiceAccount): to it whoever it acts for
 * ('always'), only while it acts for certain end users (a condition), or not at all. A
 * ServiceAccount subject grants always, or under its actingFor; User and Group subjects grant
 * the workloads of the policy's own namespace while they act for that user or a member of
 * that group. Several subjects add up: the first that grants always wins, conditions merge.
 */
export function grantFor(
  policy: AccessPolicy,
  workload: Pick<Identity, 'namespace' | 'serviceAccount'>,
): 'always' | EndUserCondition | undefined {
  const policyNamespace = policy.metadata.namespace ?? 'default';
  const condition: EndUserCondition = { users: [], groups: [] };
  let conditional = false;
  for (const subject of policy.spec.subjects as Subject[]) {
    if (subject.kind === 'ServiceAccount') {
      if (subject.name !== workload.serviceAccount) continue;
      if ((subject.namespace ?? policyNamespace) !== workload.namespace) continue;
      if (!subject.actingFor) return 'always';
      condition.users.push(...(subject.actingFor.users ?? []));
      condition.groups.push(...(subject.actingFor.groups ?? []));
      conditional = true;
    } else if (workload.namespace === policyNamespace) {
      (subject.kind === 'User' ? condition.users : condition.groups).push(subject.name);
      conditional = true;
    }
  }
  if (!conditional) return undefined;
  return { users: [...new Set(condition.users)].sort(), groups: [...new Set(condition.groups)].sort() };
}

/**
 * Whether the end user meets a policy's condition. Fail closed: a condition is never met
 * without a verified end user.
 */
export function admits(condition: EndUserCondition | undefined, endUser: EndUser | undefined): boolean {
  if (!condition) return true;
  if (!endUser) return false;
  return condition.users.includes(endUser.user) || endUser.groups.some((g) => condition.groups.includes(g));
}

/** The policies of a Connection that apply to one session: those whose end-user condition it meets. */
export function policiesFor(policies: BundlePolicy[], endUser: EndUser | undefined): BundlePolicy[] {
  return policies.filter((policy) => admits(policy.endUser, endUser));
}

/** The end user an identity carries, when a session verified one. */
export function endUserOf(identity: Identity): EndUser | undefined {
  return identity.user === undefined ? undefined : { user: identity.user, groups: identity.groups ?? [] };
}

/**
 * Whether a policy grants the identity: its workload, and the end user it acts for when the
 * policy asks for one.
 */
export function grants(policy: AccessPolicy, identity: Identity): boolean {
  const grant = grantFor(policy, identity);
  return grant === 'always' || (grant !== undefined && admits(grant, endUserOf(identity)));
}

/** The credential keys a Secret lacks for a protocol, or [] when one accepted key set is complete. */
export function missingCredentialKeys(
  protocol: ConnectionSpec['protocol'],
  data: Record<string, string>,
): string[] {
  const sets = credentialKeys[protocol];
  if (sets.length === 0) return [];
  const candidates = sets.map((keys) => keys.filter((key) => !(key in data) || data[key] === ''));
  return candidates.find((missing) => missing.length === 0) ?? candidates[0]!;
}
