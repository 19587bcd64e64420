// Policies shared by the policy tests (and handy for `airlock local` examples).
import type { BundlePolicy } from '../../api/bundle.ts';

export function policy(overrides: Partial<BundlePolicy> & { name: string }): BundlePolicy {
  return {
    namespace: 'default',
    mode: 'enforce',
    recording: { enabled: true, results: 'summary' },
    masking: [],
    rules: [],
    ...overrides,
  };
}

/** What a platform team would write for agents on a production database. */
export const prodPolicy: BundlePolicy = policy({
  name: 'prod-db-agents',
  masking: [
    {
      name: 'pii',
      columns: ['public.customers.ssn', 'public.customers.email', '*.card_number'],
      strategy: 'redact',
      indirectUse: 'deny',
    },
    {
      name: 'contact',
      columns: ['public.customers.phone'],
      strategy: 'partial',
      indirectUse: 'require-approval',
    },
    { name: 'free-text', detectors: ['email', 'credit-card'], strategy: 'redact', indirectUse: 'deny' },
  ],
  rules: [
    {
      name: 'no-destructive-ddl',
      action: 'deny',
      message: 'DROP, TRUNCATE and ALTER are not allowed',
      sql: { statements: ['DROP', 'TRUNCATE', 'ALTER'] },
    },
    { name: 'no-unbounded-writes', action: 'deny', sql: { unboundedWrites: true } },
    { name: 'no-admin', action: 'deny', sql: { classes: ['admin'] } },
    {
      name: 'approve-writes',
      action: 'require-approval',
      sql: { statements: ['DELETE', 'UPDATE'] },
      approval: { approvers: { groups: ['dba'] }, timeout: '10m', scope: 'statement' },
    },
  ],
});

/** Rules on schema-qualified globs, which an unqualified name must not slip past. */
export const schemaPolicy: BundlePolicy = policy({
  name: 'schema-rules',
  rules: [
    { name: 'protect-audit', action: 'deny', sql: { classes: ['write', 'ddl'], tables: ['audit.*'] } },
    { name: 'no-purge', action: 'deny', sql: { functions: ['audit.purge_*'] } },
    {
      name: 'approve-billing',
      action: 'require-approval',
      sql: { classes: ['write'], tables: ['billing.invoice*'] },
    },
    { name: 'approve-close', action: 'require-approval', sql: { functions: ['billing.close_*'] } },
  ],
});
