// `airlock audit migrate`: an earlier release's embedded store (PGlite, in the store's directory)
// copied into the SQLite store the directory holds from now on. The rows are copied as they are
// (positions, hashes, checkpoints and their signatures, export cursors), so the chain verifies
// as it did, and whatever was tampered with before stays visible after. The PGlite files are
// left where they were, unread.
import { existsSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { isPgliteStore, openPglite } from './pglite.ts';
import { databaseFile } from './sqlite.ts';
import { AuditStore, type StoreOptions, type VerifyResult } from './store.ts';

export interface Migrated {
  events: number;
  /** The copy's verify: what the store said before it moved. */
  verified: VerifyResult;
}

export async function migrateStore(directory: string, options: StoreOptions = {}): Promise<Migrated> {
  if (!isPgliteStore(directory)) throw new Error(`${directory} holds no PGlite audit store to migrate`);
  if (existsSync(databaseFile(directory)))
    throw new Error(`${directory} was migrated already: ${databaseFile(directory)} exists`);
  // Built beside the PGlite files and moved in whole: a migration cut short leaves no half store.
  const staging = join(directory, 'migrating');
  await rm(staging, { recursive: true, force: true });
  await (await AuditStore.open(staging)).close();
  const source = await openPglite(directory);
  const target = new DatabaseSync(databaseFile(staging));
  let events = 0;
  try {
    target.exec('BEGIN');
    const insert = target.prepare('INSERT INTO audit_events VALUES (?, ?, ?, ?, ?, ?, ?, ?)');
    for (let after = 0n; ; ) {
      const rows = await source.query<
        Record<'position' | 'id' | 'session_id' | 'type' | 'time_us' | 'body' | 'prev_hash' | 'hash', string>
      >(
        // Ordered by the column, not by its text (where 10 comes before 9).
        `SELECT position::text, id, session_id, type, ${source.dialect.timeMicros('time')} AS time_us, body::text AS body,
                prev_hash, hash
           FROM audit_events WHERE position > $1 ORDER BY audit_events.position LIMIT 5000`,
        [after.toString()],
      );
      if (rows.length === 0) break;
      for (const r of rows)
        insert.run(
          BigInt(r.position),
          r.id,
          r.session_id,
          r.type,
          BigInt(r.time_us),
          r.body,
          r.prev_hash,
          r.hash,
        );
      after = BigInt(rows.at(-1)!.position);
      events += rows.length;
    }
    const checkpoint = target.prepare('INSERT INTO audit_checkpoints VALUES (?, ?, ?, ?, ?)');
    for (const r of await source.query<{
      kind: string;
      position: string;
      hash: string;
      mac: string;
      updated_at: Date;
    }>('SELECT kind, position::text, hash, mac, updated_at FROM audit_checkpoints'))
      checkpoint.run(r.kind, BigInt(r.position), r.hash, r.mac, new Date(r.updated_at).toISOString());
    const cursor = target.prepare('INSERT INTO audit_export_cursors VALUES (?, ?, ?)');
    for (const r of await source.query<{ sink: string; position: string; updated_at: Date }>(
      'SELECT sink, position::text, updated_at FROM audit_export_cursors',
    ))
      cursor.run(r.sink, BigInt(r.position), new Date(r.updated_at).toISOString());
    target.exec('COMMIT');
  } finally {
    if (target.isTransaction) target.exec('ROLLBACK');
    target.close();
    await source.close();
  }
  const copy = await AuditStore.open(staging, options);
  let verified: VerifyResult;
  try {
    verified = await copy.verify();
  } finally {
    await copy.close();
  }
  for (const suffix of ['', '-wal', '-shm']) {
    const file = `${databaseFile(staging)}${suffix}`;
    if (existsSync(file)) await rename(file, `${databaseFile(directory)}${suffix}`);
  }
  await rm(staging, { recursive: true, force: true });
  return { events, verified };
}
