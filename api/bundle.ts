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
} from './v1alpha1.ts';

export const bundleVersion = 1;

/** Who is asking: a pod's ServiceAccount, and the OIDC groups it carries, if any. */
export interface Identity {
  namespace: string;
  serviceAccount: string;
  pod?: string;
  user?: string;
  groups?: string[];
}

export interface BundlePolicy {
  name: string;
  namespace: string;
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
  /** Every AccessPolicy that grants this Connection to the identity. */
  policies: BundlePolicy[];
}

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

export function grants(policy: AccessPolicy, identity: Identity): boolean {
  const policyNamespace = policy.metadata.namespace ?? 'default';
  return policy.spec.subjects.some((subject) =>
    subject.kind === 'ServiceAccount'
      ? subject.name === identity.serviceAccount &&
        (subject.namespace ?? policyNamespace) === identity.namespace
      : (identity.groups ?? []).includes(subject.name),
  );
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
 * Compiles the bundle for one identity: the Connections that an AccessPolicy grants it, with
 * their credentials and every granting policy. Connections whose Secret is missing or
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
    if (!grants(policy, identity)) continue;
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
      const entry = byConnection.get(key(namespace, name)) ?? { connection, policies: [] };
      entry.policies.push({
        name: policy.metadata.name,
        namespace,
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
