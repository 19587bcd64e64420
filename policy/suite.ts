// Policy unit tests in the manifests' own terms: files named *.test.yaml anywhere under a
// policy directory, decided against the manifests directly in it; each a list of cases (an identity, a Connection and a request given; a decision, and
// optionally the deciding policy and rule and the masked columns, expected). Decided by the
// same code as `airlock policy check`.
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import YAML from 'yaml';
import { z } from 'zod';
import { loadManifests } from '../local/manifests.ts';
import {
  decide,
  grantedConnection,
  type Outcome,
  PolicyInputError,
  parseIdentity,
  requestKinds,
  requestOfFields,
} from './evaluate.ts';

export const testFileSuffix = '.test.yaml';

const caseSchema = z.strictObject({
  name: z.string().min(1),
  given: z
    .strictObject({
      identity: z.string(),
      user: z.string().optional(),
      groups: z.array(z.string()).optional(),
      connection: z.string().min(1),
      sql: z.string().optional(),
      command: z.string().optional(),
      http: z.string().optional(),
      redis: z.string().optional(),
      kubernetes: z.string().optional(),
      mcp: z.string().optional(),
    })
    .refine(
      (g) => requestKinds.filter((kind) => g[kind] !== undefined).length === 1,
      `give exactly one of ${requestKinds.join(', ')}`,
    ),
  expect: z.strictObject({
    decision: z.enum(['allow', 'deny', 'require-approval']),
    policy: z.string().optional(),
    rule: z.string().optional(),
    /** Columns (as the statement names them, table.column) that must be masked. */
    masked: z.array(z.string()).optional(),
  }),
});
export const testFileSchema = z.strictObject({ tests: z.array(caseSchema).min(1) });
export type PolicyTestCase = z.infer<typeof caseSchema>;

export interface CaseResult {
  file: string;
  name: string;
  passed: boolean;
  /** What differed, one line per field; empty when the case passed. */
  failures: string[];
  outcome: Outcome | undefined;
}

/** The *.test.yaml files under the paths (a file is taken as named). */
export async function findTestFiles(paths: string[]): Promise<string[]> {
  const found: string[] = [];
  for (const path of paths) {
    const info = await stat(path).catch(() => undefined);
    if (!info) throw new PolicyInputError(`${path}: no such file or directory`);
    if (!info.isDirectory()) {
      found.push(path);
      continue;
    }
    const entries = await readdir(path, { withFileTypes: true });
    for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
      if (entry.isDirectory()) found.push(...(await findTestFiles([join(path, entry.name)])));
      else if (entry.name.endsWith(testFileSuffix)) found.push(join(path, entry.name));
    }
  }
  return found;
}

export async function readTestFile(file: string): Promise<PolicyTestCase[]> {
  const document = YAML.parseDocument(await readFile(file, 'utf8'));
  if (document.errors.length > 0) throw new PolicyInputError(`${file}: ${document.errors[0]!.message}`);
  const parsed = testFileSchema.safeParse(document.toJS());
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new PolicyInputError(`${file}: ${issue.path.join('.') || '(file)'}: ${issue.message}`);
  }
  return parsed.data.tests;
}

/** Runs one file's cases against the manifests under the given paths. */
export async function runTestFile(file: string, manifests: string[]): Promise<CaseResult[]> {
  const cases = await readTestFile(file);
  const sources = await loadManifests(manifests);
  const results: CaseResult[] = [];
  for (const test of cases) {
    const { given, expect } = test;
    let outcome: Outcome;
    try {
      const identity = parseIdentity(given.identity, given.user, given.groups);
      const connection = grantedConnection(sources, identity, given.connection);
      outcome = await decide(connection, identity, requestOfFields(given));
    } catch (error) {
      if (!(error instanceof PolicyInputError)) throw error;
      results.push({ file, name: test.name, passed: false, failures: [error.message], outcome: undefined });
      continue;
    }
    const failures: string[] = [];
    const got = outcome.decision;
    if (got.action !== expect.decision)
      failures.push(`decision: expected ${expect.decision}, got ${got.action}`);
    if (expect.policy !== undefined && got.policy !== expect.policy)
      failures.push(`policy: expected ${expect.policy}, got ${got.policy ?? '(none)'}`);
    if (expect.rule !== undefined && got.rule !== expect.rule)
      failures.push(`rule: expected ${expect.rule}, got ${got.rule ?? '(none)'}`);
    const masked = outcome.masks.flatMap((m) => (m.column ? [m.column] : []));
    for (const column of expect.masked ?? []) {
      if (!masked.includes(column))
        failures.push(
          `masked: expected ${column} masked, got ${masked.length > 0 ? masked.join(', ') : 'no column masked'}`,
        );
    }
    results.push({ file, name: test.name, passed: failures.length === 0, failures, outcome });
  }
  return results;
}
