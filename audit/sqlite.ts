// The embedded audit store: SQLite through Node's built-in node:sqlite, in one file in the
// store's directory. One process writes it (the collector's lock file, or the one `airlock
// local`); its memory is SQLite's page cache, a few MB, where PGlite's WebAssembly heap took
// hundreds and never gave them back.
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import type { Database, Dialect, Queryable } from './database.ts';
import { microseconds } from './time.ts';

/** The database file in a store's directory. */
export const databaseFile = (directory: string) => join(directory, 'audit.db');

/** What to run on a directory that holds an earlier Airlock's embedded store. */
export const migrateCommand = (directory: string) => `airlock audit migrate --store ${directory}`;

const now = `strftime('%Y-%m-%dT%H:%M:%fZ', 'now')`;
const appendOnly = `SELECT RAISE(ABORT, 'audit_events is append-only')`;

const migrations: string[][] = [
  [
    // The same columns as on PostgreSQL; the time as microseconds since the epoch (PostgreSQL's
    // timestamptz resolution, exact and ordered as numbers), the body as JSON text.
    `CREATE TABLE audit_events (
       position integer PRIMARY KEY,
       id text NOT NULL UNIQUE,
       session_id text NOT NULL,
       type text NOT NULL,
       time integer NOT NULL,
       body text NOT NULL CHECK (json_valid(body)),
       prev_hash text NOT NULL,
       hash text NOT NULL
     ) STRICT`,
    'CREATE INDEX audit_events_session ON audit_events (session_id, position)',
    'CREATE INDEX audit_events_time ON audit_events (time)',
    `CREATE INDEX audit_events_session_starts ON audit_events (position) WHERE type = 'session.start'`,
    // Anyone who can write the file can drop these triggers; verify catches what they then do.
    // A delete passes only while the prune's transaction holds a row in audit_pruning (a
    // trigger cannot read a temporary table); it removes the row before it commits, so no one
    // else ever sees one.
    'CREATE TABLE audit_pruning (active integer NOT NULL) STRICT',
    `CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events BEGIN ${appendOnly}; END`,
    `CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
       WHEN NOT EXISTS (SELECT 1 FROM audit_pruning) BEGIN ${appendOnly}; END`,
    `CREATE TABLE audit_checkpoints (
       kind text PRIMARY KEY,
       position integer NOT NULL,
       hash text NOT NULL,
       mac text NOT NULL,
       updated_at text NOT NULL DEFAULT (${now})
     ) STRICT`,
    `CREATE TABLE audit_export_cursors (
       sink text PRIMARY KEY,
       position integer NOT NULL,
       updated_at text NOT NULL DEFAULT (${now})
     ) STRICT`,
  ],
];

/** The time column's value: microseconds since the epoch. */
function sqliteTime(iso: string): bigint {
  const us = microseconds(iso);
  if (us === undefined) throw new Error(`not a time: ${iso}`);
  return BigInt(us);
}

const sqliteDialect: Dialect = {
  migrations,
  migrationsTable: `CREATE TABLE IF NOT EXISTS audit_migrations (version integer PRIMARY KEY, applied_at text NOT NULL DEFAULT (${now})) STRICT`,
  // BEGIN IMMEDIATE takes the database's one write lock: writers are serialized already.
  lock: async () => {},
  insertEvents: async (tx, rows) => {
    for (const row of rows)
      await tx.query(
        'INSERT INTO audit_events (position, id, session_id, type, time, body, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)',
        [
          row.position,
          row.id,
          row.sessionId,
          row.type,
          sqliteTime(row.time),
          row.body,
          row.previous,
          row.hash,
        ],
      );
  },
  now,
  greatest: (a, b) => `max(${a}, ${b})`,
  inList: (column, param) => `${column} IN (SELECT value FROM json_each(${param}))`,
  list: (values) => JSON.stringify(values),
  time: sqliteTime,
  timeMicros: (column) => `CAST(${column} AS TEXT)`,
  perSession: (aggregates, where) =>
    `JOIN (SELECT e.session_id, ${aggregates} FROM audit_events e
            WHERE e.session_id IN (SELECT session_id FROM recent) ${where} GROUP BY e.session_id) a
       ON a.session_id = r.session_id`,
  maskedCount: (body) =>
    `(SELECT sum(value) FROM json_each(CASE WHEN json_type(${body}, '$.masked') = 'object' THEN ${body}->'masked' ELSE '{}' END))`,
  pruning: async (tx, allowed) =>
    void (await tx.query(
      allowed ? 'INSERT INTO audit_pruning (active) VALUES (1)' : 'DELETE FROM audit_pruning',
    )),
};

/** PostgreSQL's placeholders ($1) as SQLite's numbered ones (?1): the store writes one text. */
const numbered = (text: string) => text.replace(/\$(\d+)/g, '?$1');

export async function openSqlite(directory: string): Promise<Database> {
  if (existsSync(join(directory, 'PG_VERSION')) && !existsSync(databaseFile(directory)))
    throw new Error(
      `${directory} holds an embedded audit store of an earlier Airlock (PGlite); convert it with \`${migrateCommand(directory)}\``,
    );
  await mkdir(directory, { recursive: true });
  const db = new DatabaseSync(databaseFile(directory));
  // WAL: readers (`airlock sessions` while nothing runs) do not block the writer; FULL: a
  // committed batch survives a power cut, as the sidecars that sent it were told it would.
  db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000');
  const statements = new Map<string, StatementSync>();
  const run = <T>(text: string, params: unknown[] = []): T[] => {
    let statement = statements.get(text);
    if (!statement) {
      statement = db.prepare(numbered(text));
      // A bounded cache: multi-row inserts make a text per batch size.
      if (statements.size >= 64) statements.delete(statements.keys().next().value!);
      statements.set(text, statement);
    }
    return statement.all(...(params as never[])) as T[];
  };
  // One connection: a transaction's queries must not interleave with another caller's.
  let queue: Promise<unknown> = Promise.resolve();
  const serially = <T>(fn: () => Promise<T>): Promise<T> => {
    const result = queue.then(fn);
    queue = result.catch(() => {});
    return result;
  };
  const tx: Queryable = { query: async <T>(text: string, params?: unknown[]) => run<T>(text, params) };
  return {
    dialect: sqliteDialect,
    query: <T>(text: string, params?: unknown[]) => serially(async () => run<T>(text, params)),
    transaction: (fn) =>
      serially(async () => {
        db.exec('BEGIN IMMEDIATE');
        try {
          const result = await fn(tx);
          db.exec('COMMIT');
          return result;
        } catch (error) {
          if (db.isTransaction) db.exec('ROLLBACK');
          throw error;
        }
      }),
    close: () => serially(async () => db.close()),
  };
}
