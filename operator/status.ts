// What the status of a Connection or an AccessPolicy should say, as pure functions of the
// objects the operator sees. The reconcilers only read, call these, and write.
import { RE2JS } from 're2js';
import { missingCredentialKeys } from '../api/bundle.ts';
import type { AccessPolicy, Connection } from '../api/v1alpha1.ts';
import { type LintOptions, lintPolicy } from '../policy/lint.ts';
import type { DesiredCondition } from './conditions.ts';

/** Reason constants: CamelCase, stable, for machines. */
export const reasons = {
  resolved: 'CredentialsResolved',
  notRequired: 'CredentialsNotRequired',
  secretNotFound: 'SecretNotFound',
  secretIncomplete: 'SecretIncomplete',
  caNotFound: 'CASecretNotFound',
  ready: 'Ready',
  connectionsFound: 'ConnectionsFound',
  connectionNotFound: 'ConnectionNotFound',
  patternsValid: 'PatternsValid',
  invalidPattern: 'InvalidPattern',
  rulesEffective: 'RulesEffective',
} as const;

export interface SecretView {
  data: Record<string, string>;
}

/** The Connection's conditions, given the Secrets of its namespace by name. */
export function connectionConditions(
  connection: Connection,
  secretOf: (name: string) => SecretView | undefined,
): DesiredCondition[] {
  const spec = connection.spec;
  const secret = spec.credentials && secretOf(spec.credentials.secretRef.name);
  let credentials: DesiredCondition;
  if (!spec.credentials) {
    credentials = {
      type: 'CredentialsResolved',
      status: 'True',
      reason: reasons.notRequired,
      message: `protocol ${spec.protocol} needs no credential`,
    };
  } else if (!secret) {
    credentials = {
      type: 'CredentialsResolved',
      status: 'False',
      reason: reasons.secretNotFound,
      message: `Secret ${spec.credentials.secretRef.name} not found in namespace ${connection.metadata.namespace}`,
    };
  } else {
    const missing = missingCredentialKeys(spec.protocol, secret.data);
    credentials =
      missing.length > 0
        ? {
            type: 'CredentialsResolved',
            status: 'False',
            reason: reasons.secretIncomplete,
            message: `Secret ${spec.credentials.secretRef.name} lacks ${missing.map((k) => `"${k}"`).join(', ')}, needed for protocol ${spec.protocol}`,
          }
        : {
            type: 'CredentialsResolved',
            status: 'True',
            reason: reasons.resolved,
            message: `Secret ${spec.credentials.secretRef.name} holds the ${spec.protocol} credential`,
          };
  }
  const conditions = [credentials];
  // The target's CA, and the identity provider's: without either, sidecars leave the Connection out.
  const caMissing = [spec.tls?.caSecretRef, spec.endUser?.caSecretRef].find(
    (ref) => ref && !secretOf(ref.name)?.data[ref.key ?? 'ca.crt'],
  );
  const ready: DesiredCondition =
    credentials.status !== 'True'
      ? { type: 'Ready', status: 'False', reason: credentials.reason, message: credentials.message }
      : caMissing
        ? {
            type: 'Ready',
            status: 'False',
            reason: reasons.caNotFound,
            message: `Secret ${caMissing.name} with key "${caMissing.key ?? 'ca.crt'}" not found`,
          }
        : {
            type: 'Ready',
            status: 'True',
            reason: reasons.ready,
            message: 'The sidecar can reach the target with its credential',
          };
  conditions.push(ready);
  return conditions;
}

/** Compiles a user pattern as the sidecar will: RE2 syntax, linear time. */
export function patternError(regex: string): string | undefined {
  try {
    RE2JS.compile(regex);
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}

export function policyConditions(
  policy: AccessPolicy,
  connectionExists: (name: string) => boolean,
  lint: LintOptions,
): DesiredCondition[] {
  const missing = policy.spec.connections.filter((name) => !connectionExists(name));
  const found: DesiredCondition =
    missing.length > 0
      ? {
          type: 'ConnectionsFound',
          status: 'False',
          reason: reasons.connectionNotFound,
          message: `Connection${missing.length > 1 ? 's' : ''} ${missing.join(', ')} not found in namespace ${policy.metadata.namespace}`,
        }
      : {
          type: 'ConnectionsFound',
          status: 'True',
          reason: reasons.connectionsFound,
          message: `${policy.spec.connections.length} Connection(s) found`,
        };
  const invalid: string[] = [];
  for (const masking of policy.spec.masking ?? []) {
    for (const pattern of masking.patterns ?? []) {
      const error = patternError(pattern.regex);
      if (error) invalid.push(`masking ${masking.name} pattern ${pattern.name}: ${error}`);
    }
  }
  const patterns: DesiredCondition =
    invalid.length > 0
      ? {
          type: 'PatternsValid',
          status: 'False',
          reason: reasons.invalidPattern,
          message: invalid.join('; '),
        }
      : {
          type: 'PatternsValid',
          status: 'True',
          reason: reasons.patternsValid,
          message: 'Every pattern compiles as RE2',
        };
  // Warnings, not errors: the policy is in force either way, so Ready does not depend on them.
  const warnings = lintPolicy(policy, lint);
  const effective: DesiredCondition =
    warnings.length > 0
      ? {
          type: 'RulesEffective',
          status: 'False',
          reason: warnings[0]!.reason,
          message: warnings.map((w) => w.message).join('; '),
        }
      : {
          type: 'RulesEffective',
          status: 'True',
          reason: reasons.rulesEffective,
          message: 'Every rule can match and decide',
        };
  const blocking = [found, patterns].find((c) => c.status !== 'True');
  const ready: DesiredCondition = blocking
    ? { type: 'Ready', status: 'False', reason: blocking.reason, message: blocking.message }
    : { type: 'Ready', status: 'True', reason: reasons.ready, message: 'The policy is in force' };
  return [found, patterns, effective, ready];
}
