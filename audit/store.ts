// The audit store: session events appended to one table in a hash chain. Each row carries the
// hash of its predecessor, so `verify` finds any event that was edited, deleted, inserted or
// reordered, even by a database superuser. The same schema and migrations serve PostgreSQL
// (production, several collector replicas: appends serialize on an advisory lock) and
// embedded PGlite (the default, in a directory).
import { createHash } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import type { SessionEvent } from '../sidecar/audit/event.ts';

/** What the store needs of a database: PGlite and node-postgres both provide it. */
interface Database {
  query<T>(text: string, params?: unknown[]): Promise<T[]>;
  transaction<T>(fn: (db: Pick<Database, 'query'>) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

const genesis = '0'.repeat(64);

const migrations: string[] = [
  `CREATE TABLE audit_events (
     position bigint PRIMARY KEY,
     id text NOT NULL UNIQUE,
     session_id text NOT NULL,
     type text NOT NULL,
     time timestamptz NOT NULL,
     body jsonb NOT NULL,
     prev_hash text NOT NULL,
     hash text NOT NULL
   );
   CREATE INDEX audit_events_session ON audit_events (session_id, position);
   CREATE INDEX audit_events_time ON audit_events (time);
   -- Ordinary roles cannot rewrite history; a superuser can, and verify catches it.
   CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN RAISE EXCEPTION 'audit_events is append-only'; END $$;
   CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
     FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();`,
];

export const isPostgresUrl = (location: string) => /^postgres(ql)?:\/\//.test(location);

export interface SessionSummary {
  id: string;
  connection: string;
  namespace: string;
  protocol: string;
  identity: string;
  started: string;
  ended?: string;
  requests: number;
  blocked: number;
  masked: number;
}

export interface VerifyResult {
  ok: boolean;
  events: number;
  /** The first event that does not fit the chain, and why. */
  firstBad?: { position: number; id: string; problem: string };
}

/** The canonical text of an event: keys sorted, so the hash does not depend on key order. */
export function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

export function chainHash(previous: string, position: number, event: unknown): string {
  return createHash('sha256')
    .update(`${previous}\n${position}\n${canonical(event)}`)
    .digest('hex');
}

export class AuditStore {
  readonly #db: Database;
  readonly location: string;

  private constructor(db: Database, location: string) {
    this.#db = db;
    this.location = location;
  }

  /** Opens a store: a postgres:// URL, or a directory for embedded PGlite. */
  static async open(location: string): Promise<AuditStore> {
    const db = isPostgresUrl(location) ? await postgres(location) : await pglite(location);
    const store = new AuditStore(db, location);
    await store.#migrate();
    return store;
  }

  async #migrate(): Promise<void> {
    await this.#db.transaction(async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock(4242001)');
      await tx.query(
        'CREATE TABLE IF NOT EXISTS audit_migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())',
      );
      const applied = await tx.query<{ version: number }>('SELECT version FROM audit_migrations');
      const done = new Set(applied.map((r) => Number(r.version)));
      for (const [index, sql] of migrations.entries()) {
        if (done.has(index + 1)) continue;
        for (const statement of splitStatements(sql)) await tx.query(statement);
        await tx.query('INSERT INTO audit_migrations (version) VALUES ($1)', [index + 1]);
      }
    });
  }

  /** Appends events in order; events already stored (by id) are skipped, so resends are harmless. */
  async append(events: SessionEvent[]): Promise<number> {
    if (events.length === 0) return 0;
    return this.#db.transaction(async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock(4242002)');
      const ids = events.map((e) => e.id);
      const existing = new Set(
        (await tx.query<{ id: string }>('SELECT id FROM audit_events WHERE id = ANY($1::text[])', [ids])).map(
          (r) => r.id,
        ),
      );
      const [head] = await tx.query<{ position: string; hash: string }>(
        'SELECT position, hash FROM audit_events ORDER BY position DESC LIMIT 1',
      );
      let position = head ? Number(head.position) : 0;
      let previous = head?.hash ?? genesis;
      const rows: unknown[][] = [];
      for (const event of events) {
        if (existing.has(event.id)) continue;
        existing.add(event.id);
        position++;
        const hash = chainHash(previous, position, event);
        rows.push([
          position,
          event.id,
          event.sessionId,
          event.type,
          event.time,
          JSON.stringify(event),
          previous,
          hash,
        ]);
        previous = hash;
      }
      // Multi-row inserts: one round trip per 500 events.
      for (let start = 0; start < rows.length; start += 500) {
        const chunk = rows.slice(start, start + 500);
        const values = chunk.map(
          (_, i) =>
            `($${i * 8 + 1}, $${i * 8 + 2}, $${i * 8 + 3}, $${i * 8 + 4}, $${i * 8 + 5}, $${i * 8 + 6}, $${i * 8 + 7}, $${i * 8 + 8})`,
        );
        await tx.query(
          `INSERT INTO audit_events (position, id, session_id, type, time, body, prev_hash, hash) VALUES ${values.join(', ')}`,
          chunk.flat(),
        );
      }
      const added = rows.length;
      return added;
    });
  }

  async sessions(limit = 100): Promise<SessionSummary[]> {
    const rows = await this.#db.query<{ session_id: string; bodies: SessionEvent[] }>(
      `SELECT session_id, json_agg(body ORDER BY position) AS bodies FROM audit_events
        WHERE session_id IN (SELECT session_id FROM audit_events GROUP BY session_id ORDER BY min(position) DESC LIMIT $1)
        GROUP BY session_id ORDER BY min(position) DESC`,
      [limit],
    );
    return rows.map((row) => summarize(row.session_id, parseJson(row.bodies)));
  }

  async session(id: string): Promise<{ summary: SessionSummary; events: SessionEvent[] } | undefined> {
    const rows = await this.#db.query<{ body: SessionEvent }>(
      'SELECT body FROM audit_events WHERE session_id = $1 ORDER BY position',
      [id],
    );
    if (rows.length === 0) return undefined;
    const events = rows.map((r) => parseJson(r.body));
    return { summary: summarize(id, events), events };
  }

  /** Walks the chain in order, in batches: linear in the store's size. */
  async verify(): Promise<VerifyResult> {
    let previous = genesis;
    let expected = 1;
    let count = 0;
    for (;;) {
      const rows = await this.#db.query<{
        position: string;
        id: string;
        body: unknown;
        prev_hash: string;
        hash: string;
      }>(
        'SELECT position, id, body, prev_hash, hash FROM audit_events WHERE position >= $1 ORDER BY position LIMIT 5000',
        [expected],
      );
      if (rows.length === 0) break;
      for (const row of rows) {
        const position = Number(row.position);
        const bad = (problem: string): VerifyResult => ({
          ok: false,
          events: count,
          firstBad: { position, id: row.id, problem },
        });
        if (position !== expected) return bad(`expected position ${expected}: an event was deleted or moved`);
        if (row.prev_hash !== previous)
          return bad(
            'its predecessor hash does not match: an event was deleted, inserted or reordered before it',
          );
        if (chainHash(previous, position, parseJson(row.body)) !== row.hash)
          return bad('its content does not match its hash: it was edited');
        previous = row.hash;
        expected++;
        count++;
      }
    }
    return { ok: true, events: count };
  }

  async close(): Promise<void> {
    await this.#db.close();
  }
}

function parseJson<T>(value: T | string): T {
  return typeof value === 'string' ? (JSON.parse(value) as T) : value;
}

function summarize(id: string, events: SessionEvent[]): SessionSummary {
  const first = events[0]!;
  const end = events.find((e) => e.type === 'session.end');
  let requests = 0;
  let blocked = 0;
  let masked = 0;
  for (const event of events) {
    if (event.type !== 'request') continue;
    requests++;
    if (event.outcome === 'blocked' || event.outcome === 'denied' || event.outcome === 'expired') blocked++;
    for (const count of Object.values(event.masked ?? {})) masked += count;
  }
  return {
    id,
    connection: first.connection.name,
    namespace: first.connection.namespace,
    protocol: first.connection.protocol,
    identity: `system:serviceaccount:${first.identity.namespace}:${first.identity.serviceAccount}`,
    started: first.time,
    ...(end && { ended: end.time }),
    requests,
    blocked,
    masked,
  };
}

/** Splits a migration at top-level semicolons (dollar-quoted bodies may contain them). */
function splitStatements(sql: string): string[] {
  const out: string[] = [];
  let current = '';
  let dollar = false;
  for (const line of sql.split('\n')) {
    if ((line.match(/\$\$/g) ?? []).length % 2 === 1) dollar = !dollar;
    current += `${line}\n`;
    if (!dollar && line.trimEnd().endsWith(';')) {
      out.push(current.trim());
      current = '';
    }
  }
  if (current.trim()) out.push(current.trim());
  return out;
}

async function pglite(directory: string): Promise<Database> {
  const { PGlite } = await import('@electric-sql/pglite');
  await mkdir(directory, { recursive: true });
  const db = await PGlite.create(directory);
  const query = async <T>(text: string, params?: unknown[]) => (await db.query<T>(text, params)).rows;
  return {
    query,
    transaction: (fn) =>
      db.transaction((tx) =>
        fn({ query: async <T>(t: string, p?: unknown[]) => (await tx.query<T>(t, p)).rows }),
      ),
    close: () => db.close(),
  };
}

async function postgres(url: string): Promise<Database> {
  const { default: pg } = await import('pg');
  const pool = new pg.Pool({ connectionString: url, max: 4 });
  return {
    query: async <T>(text: string, params?: unknown[]) => (await pool.query(text, params)).rows as T[],
    async transaction(fn) {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        const result = await fn({
          query: async <T>(t: string, p?: unknown[]) => (await client.query(t, p)).rows as T[],
        });
        await client.query('COMMIT');
        return result;
      } catch (error) {
        await client.query('ROLLBACK').catch(() => {});
        throw error;
      } finally {
        client.release();
      }
    },
    close: () => pool.end(),
  };
}
