// `airlock audit verify|prune|migrate`: checks the hash chain of a store (and its signed
// checkpoints, with the key), drops events past the retention period while keeping the chain
// verifiable, and copies an earlier release's embedded PGlite store into SQLite. Exit status:
// 0 clean, 1 tampered, 2 usage or access error.
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { migrateStore } from './migrate.ts';
import { loadKey, parseRetention } from './settings.ts';
import { AuditStore, isPostgresUrl, type VerifyResult } from './store.ts';

export const auditUsage = `Usage: airlock audit verify --store DIR|postgres://… [--key FILE] [-o json]
       airlock audit prune --store DIR|postgres://… --retention 30d [--key FILE]
       airlock audit migrate --store DIR [--key FILE]   (a PGlite store of an earlier release into SQLite)`;

const flagsSchema = z.object({
  store: z.string().min(1, 'is required'),
  key: z.string().optional(),
  output: z.enum(['text', 'json']),
  retention: z.string().optional(),
});

export async function auditCommand(args: string[]): Promise<number> {
  const [action, ...rest] = args;
  let flags: z.infer<typeof flagsSchema>;
  try {
    if (action !== 'verify' && action !== 'prune' && action !== 'migrate')
      throw new Error(`unknown action "${action ?? ''}"`);
    const { values } = parseArgs({
      args: rest,
      options: {
        store: { type: 'string', default: '' },
        key: { type: 'string' },
        output: { type: 'string', short: 'o', default: 'text' },
        retention: { type: 'string' },
      },
    });
    const parsed = flagsSchema.safeParse(values);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new Error(`--${issue.path.join('.')}: ${issue.message}`);
    }
    flags = parsed.data;
    if (action === 'prune' && !flags.retention) throw new Error('--retention is required');
    if (flags.retention) parseRetention(flags.retention);
    if (action === 'migrate' && isPostgresUrl(flags.store))
      throw new Error('--store: migrate reads a directory');
  } catch (error) {
    console.error(`airlock audit: ${(error as Error).message}\n\n${auditUsage}`);
    return 2;
  }
  if (action === 'migrate') return migrate(flags.store, flags.key);
  let store: AuditStore;
  try {
    const key = flags.key ? await loadKey(flags.key) : undefined;
    store = await AuditStore.open(flags.store, key ? { key } : {});
  } catch (error) {
    console.error(`airlock audit: cannot open ${flags.store}: ${(error as Error).message}`);
    return 2;
  }
  try {
    if (action === 'prune') {
      const before = new Date(Date.now() - parseRetention(flags.retention!));
      const { pruned, through } = await store.prune(before);
      console.log(
        `pruned ${pruned} events older than ${before.toISOString()}; the chain now starts after position ${through}`,
      );
      return 0;
    }
    const started = performance.now();
    const result = await store.verify();
    const seconds = ((performance.now() - started) / 1000).toFixed(2);
    if (flags.output === 'json') console.log(JSON.stringify(result));
    else if (result.ok) {
      console.log(
        `ok: ${result.events} events verified in ${seconds} s${result.prunedThrough ? ` (pruned through position ${result.prunedThrough})` : ''}; ${
          result.anchored
            ? 'the signed head checkpoint matches, so no tail was cut'
            : 'no signed head checkpoint was checked (no --key, or none written): a cut tail would go unnoticed'
        }`,
      );
    } else {
      const bad = result.firstBad!;
      console.log(`TAMPERED: event ${bad.id} at position ${bad.position}: ${bad.problem}`);
    }
    return result.ok ? 0 : 1;
  } finally {
    await store.close();
  }
}

async function migrate(directory: string, keyFile: string | undefined): Promise<number> {
  let events: number;
  let verified: VerifyResult;
  try {
    const key = keyFile ? await loadKey(keyFile) : undefined;
    ({ events, verified } = await migrateStore(directory, key ? { key } : {}));
  } catch (error) {
    console.error(`airlock audit migrate: ${(error as Error).message}`);
    return 2;
  }
  console.log(
    `migrated ${events} events into ${directory}/audit.db; ${
      verified.ok
        ? `the chain verifies${verified.anchored ? ', anchored by the signed head checkpoint' : ''}`
        : `TAMPERED (before the migration too): event ${verified.firstBad!.id} at position ${verified.firstBad!.position}: ${verified.firstBad!.problem}`
    }.\nThe PGlite files in ${directory} (PG_VERSION, base/, global/, pg_*/, postgresql*.conf) are no longer read: remove them once you no longer need them.`,
  );
  return verified.ok ? 0 : 1;
}
