// The embedded store of earlier Airlock releases: PostgreSQL's schema in PGlite (WebAssembly) in
// a directory. Only `airlock audit migrate` opens one now, to copy it into SQLite.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Database } from './database.ts';
import { postgresDialect } from './postgres.ts';

/** Whether a directory holds such a store. */
export const isPgliteStore = (directory: string) => existsSync(join(directory, 'PG_VERSION'));

export async function openPglite(directory: string): Promise<Database> {
  const { PGlite } = await import('@electric-sql/pglite');
  // The settings the store ran with: small buffers and a bounded WAL.
  const db = await PGlite.create(directory, {
    postgresqlconf: ['shared_buffers=8MB', 'max_connections=5', 'min_wal_size=32MB', 'max_wal_size=64MB'],
  });
  return {
    dialect: postgresDialect,
    query: async <T>(text: string, params?: unknown[]) => (await db.query<T>(text, params)).rows,
    transaction: (fn) =>
      db.transaction((tx) =>
        fn({ query: async <T>(t: string, p?: unknown[]) => (await tx.query<T>(t, p)).rows }),
      ),
    close: () => db.close(),
  };
}
