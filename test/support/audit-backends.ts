// The store's tests run on both of its databases: embedded SQLite in a temporary directory and
// a real PostgreSQL server (test/support/postgres.ts). Each gives new, empty stores and lets a
// test rewrite history as someone who owns the database could: with the append-only triggers
// off, then on again.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { databaseFile } from '../../audit/sqlite.ts';
import { type PostgresServer, startPostgres } from './postgres.ts';
import { requires } from './tools.ts';

export const backends = ['sqlite', 'postgres'] as const;
export type Backend = (typeof backends)[number];

export const backendName = (kind: Backend) => (kind === 'sqlite' ? 'embedded SQLite' : 'PostgreSQL');

/** The test options a backend's suite runs with: PostgreSQL needs its server installed. */
export const backendOptions = (kind: Backend) => (kind === 'postgres' ? requires('postgres', 'initdb') : {});

export interface TestBackend {
  kind: Backend;
  /** A new, empty store's location; `name` is lowercase letters, digits and underscores. */
  fresh(name: string): Promise<string>;
  /** Runs SQL on a store as its owner would: the append-only triggers still fire. */
  exec(location: string, sql: string): Promise<void>;
  /** Runs SQL on a store with its append-only triggers off, as a superuser could. */
  tamper(location: string, sql: string): Promise<void>;
  stop(): Promise<void>;
}

export async function startBackend(kind: Backend): Promise<TestBackend> {
  return kind === 'sqlite' ? sqliteBackend() : postgresBackend(await startPostgres());
}

async function sqliteBackend(): Promise<TestBackend> {
  const directory = await mkdtemp(join(tmpdir(), 'airlock-store-'));
  const withDatabase = (location: string, fn: (db: DatabaseSync) => void) => {
    const db = new DatabaseSync(databaseFile(location));
    try {
      fn(db);
    } finally {
      db.close();
    }
  };
  return {
    kind: 'sqlite',
    fresh: async (name) => join(directory, name),
    exec: async (location, sql) => withDatabase(location, (db) => db.exec(sql)),
    tamper: async (location, sql) =>
      withDatabase(location, (db) => {
        // SQLite has no DISABLE TRIGGER: drop them and create them again.
        const triggers = db
          .prepare("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_events'")
          .all() as { name: string; sql: string }[];
        db.exec('BEGIN');
        for (const { name } of triggers) db.exec(`DROP TRIGGER ${name}`);
        db.exec(sql);
        for (const trigger of triggers) db.exec(trigger.sql);
        db.exec('COMMIT');
      }),
    stop: () => rm(directory, { recursive: true, force: true }),
  };
}

function postgresBackend(server: PostgresServer): TestBackend {
  return {
    kind: 'postgres',
    async fresh(name) {
      await server.admin(`CREATE DATABASE ${name} OWNER ${server.user}`);
      return `postgres://${encodeURIComponent(server.user)}:${encodeURIComponent(server.password)}@127.0.0.1:${server.port}/${name}`;
    },
    exec: async (location, sql) => void (await server.admin(sql, databaseName(location))),
    tamper: async (location, sql) =>
      void (await server.admin(
        `ALTER TABLE audit_events DISABLE TRIGGER ALL; ${sql}; ALTER TABLE audit_events ENABLE TRIGGER ALL`,
        databaseName(location),
      )),
    stop: () => server.stop(),
  };
}

const databaseName = (url: string) => new URL(url).pathname.slice(1);
