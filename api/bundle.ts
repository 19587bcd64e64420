// The policy bundle: everything one sidecar (or `airlock local`) needs to serve the
// Connections granted to one identity. Defined once, versioned, compiled by the operator's
// control API and by `airlock local` from the same code (compileBundle).
import { createHash } from 'node:crypto';
import { z } from 'zod';
import {
  type AccessPolicy,
  type AccessPolicySpec,
  accessPolicySpecSchema,
  type Connection,
  type ConnectionSpec,
  connectionSpecSchema,
  credentialKeys,
  type MaskingRule,
  type PolicyRule,
  type Subject,
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

/**
 * Compiles the bundle for one workload identity: the Connections that an AccessPolicy grants
 * it, with their credentials and every granting policy, each with the end-user condition it is
 * granted under (the sidecar picks the policies of a session from its verified end user). Connections whose Secret is missing or
 * incomplete are left out and reported, so the sidecar fails closed on them.
 */
export function compileBundle(
  sources: BundleSources,
  identity: Identity,
): { bundle: Bundle; problems: BundleProblem[] } {
  const problems: BundleProblem[] = [];
  const byConnection = new Map<string, { connection: Connection; policies: BundlePolicy[] }>();
  const key = (namespace: string, name: string) => `${namespace}/${name}`;
  const connections = new Map(
    sources.connections.map((c) => [key(c.metadata.namespace ?? 'default', c.metadata.name), c]),
  );
  const policies = [...sources.policies].sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
  for (const policy of policies) {
    const grant = grantFor(policy, identity);
    if (!grant) continue;
    const namespace = policy.metadata.namespace ?? 'default';
    const spec = accessPolicySpecSchema.parse(policy.spec);
    for (const name of spec.connections) {
      const connection = connections.get(key(namespace, name));
      if (!connection) {
        problems.push({
          connection: name,
          namespace,
          message: `AccessPolicy ${policy.metadata.name} grants a Connection that does not exist`,
        });
        continue;
      }
      // Without endUser no session has a verified person: a grant for one could never apply.
      if (grant !== 'always' && !connection.spec.endUser) {
        problems.push({
          connection: name,
          namespace,
          message: `AccessPolicy ${policy.metadata.name} grants it only for end users, and the Connection has no endUser`,
        });
        continue;
      }
      const entry = byConnection.get(key(namespace, name)) ?? { connection, policies: [] };
      entry.policies.push({
        name: policy.metadata.name,
        namespace,
        ...(grant !== 'always' && { endUser: grant }),
        mode: spec.mode,
        recording: spec.recording,
        masking: spec.masking ?? [],
        rules: spec.rules ?? [],
      });
      byConnection.set(key(namespace, name), entry);
    }
  }
  const secrets = new Map(sources.secrets.map((s) => [key(s.namespace, s.name), s.data]));
  const compiled: BundleConnection[] = [];
  for (const { connection, policies: granted } of [...byConnection.values()].sort((a, b) =>
    a.connection.metadata.name.localeCompare(b.connection.metadata.name),
  )) {
    const namespace = connection.metadata.namespace ?? 'default';
    const spec = connectionSpecSchema.parse(connection.spec);
    let credentials: Record<string, string> = {};
    if (spec.credentials) {
      const data = secrets.get(key(namespace, spec.credentials.secretRef.name));
      if (!data) {
        problems.push({
          connection: connection.metadata.name,
          namespace,
          message: `Secret ${spec.credentials.secretRef.name} not found`,
        });
        continue;
      }
      const missing = missingCredentialKeys(spec.protocol, data);
      if (missing.length > 0) {
        problems.push({
          connection: connection.metadata.name,
          namespace,
          message: `Secret ${spec.credentials.secretRef.name} lacks ${missing.join(', ')}`,
        });
        continue;
      }
      credentials = data;
    }
    let ca: string | undefined;
    if (spec.tls.caSecretRef) {
      ca = secrets.get(key(namespace, spec.tls.caSecretRef.name))?.[spec.tls.caSecretRef.key];
      if (ca === undefined) {
        problems.push({
          connection: connection.metadata.name,
          namespace,
          message: `CA Secret ${spec.tls.caSecretRef.name} not found or lacks ${spec.tls.caSecretRef.key}`,
        });
        continue;
      }
    }
    let endUser: BundleEndUser | undefined;
    if (spec.endUser) {
      const { caSecretRef, ...settings } = spec.endUser;
      endUser = settings;
      if (caSecretRef) {
        const providerCa = secrets.get(key(namespace, caSecretRef.name))?.[caSecretRef.key];
        // Fail closed: without its CA the sidecar could verify no person on this Connection.
        if (providerCa === undefined) {
          problems.push({
            connection: connection.metadata.name,
            namespace,
            message: `endUser CA Secret ${caSecretRef.name} not found or lacks ${caSecretRef.key}`,
          });
          continue;
        }
        endUser = { ...settings, ca: providerCa };
      }
    }
    compiled.push({
      name: connection.metadata.name,
      namespace,
      protocol: spec.protocol,
      host: spec.host,
      port: spec.port,
      tls: {
        mode: spec.tls.mode,
        ...(ca !== undefined && { ca }),
        ...(spec.tls.serverName && { serverName: spec.tls.serverName }),
      },
      credentials,
      ...(spec.postgres && { postgres: spec.postgres }),
      ...(spec.ssh && { ssh: spec.ssh }),
      ...(spec.http && { http: spec.http }),
      ...(spec.mcp && { mcp: spec.mcp }),
      ...(spec.kubernetes && { kubernetes: spec.kubernetes }),
      ...(endUser && { endUser }),
      policies: granted,
    });
  }
  const body = { identity, connections: compiled };
  return { bundle: { version: bundleVersion, revision: revisionOf(body), ...body }, problems };
}

function revisionOf(value: unknown): string {
  return createHash('sha256').update(JSON.stringify(value)).digest('hex').slice(0, 16);
}

/** Validates a bundle received over the wire before the sidecar trusts its shape. */
export const bundleSchema = z.object({
  version: z.literal(bundleVersion),
  revision: z.string(),
  identity: z.object({
    namespace: z.string(),
    serviceAccount: z.string(),
    pod: z.string().optional(),
    user: z.string().optional(),
    groups: z.array(z.string()).optional(),
  }),
  connections: z.array(
    z.looseObject({ name: z.string(), protocol: z.string(), policies: z.array(z.looseObject({})) }),
  ),
});
