// Compiles the policy bundle (bundle.ts) from the API objects: the operator's control API and
// `airlock local` run the same code. Every spec is read through its v1alpha1 schema here, so
// defaults apply and nothing unvalidated reaches a sidecar.
import { createHash } from 'node:crypto';
import {
  type Bundle,
  type BundleConnection,
  type BundleEndUser,
  type BundlePolicy,
  type BundleProblem,
  type BundleSources,
  bundleVersion,
  grantFor,
  type Identity,
  missingCredentialKeys,
} from './bundle.ts';
import { accessPolicySpecSchema, type Connection, connectionSpecSchema } from './v1alpha1.ts';

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
