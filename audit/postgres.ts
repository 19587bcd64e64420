// The audit store on PostgreSQL: production, where several collector replicas append to one
// database (appends serialize on an advisory lock). Its schema is the one migrations below
// have built since the first release; a new migration is appended, never edited.
import type { Database, Dialect, EventRow, Queryable } from './database.ts';

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
  // Checkpoints anchor both ends of the chain: `head` (the last appended event) catches a cut
  // tail, `genesis` (the last pruned event) lets retention drop a prefix. Each is signed with
  // an HMAC key kept outside the database, so a database superuser cannot forge one.
  `CREATE TABLE audit_checkpoints (
     kind text PRIMARY KEY,
     position bigint NOT NULL,
     hash text NOT NULL,
     mac text NOT NULL,
     updated_at timestamptz NOT NULL DEFAULT now()
   );
   -- Pruning deletes a prefix inside a transaction that says so; nothing else may delete.
   CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
       IF TG_OP = 'DELETE' AND current_setting('airlock.prune', true) = 'on' THEN RETURN OLD; END IF;
       RAISE EXCEPTION 'audit_events is append-only';
     END $$;`,
  // Export cursors: per export webhook, the position of the last event its receiver answered
  // 2xx for. Outside the hash chain (verify never reads it); it only moves forward.
  `CREATE TABLE audit_export_cursors (
     sink text PRIMARY KEY,
     position bigint NOT NULL,
     updated_at timestamptz NOT NULL DEFAULT now()
   );`,
  // Sessions are listed by their start: the newest starts come from this index, not a scan.
  `CREATE INDEX audit_events_session_starts ON audit_events (position) WHERE type = 'session.start';`,
];

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

/** The rows as one JSON array; each body is already JSON text, and goes in as it is. */
function rowsJson(rows: EventRow[]): string {
  let text = '[';
  for (const row of rows) {
    if (text.length > 1) text += ',';
    text += `{"position":${row.position},"id":${JSON.stringify(row.id)},"session_id":${JSON.stringify(row.sessionId)},"type":${JSON.stringify(row.type)},"time":${JSON.stringify(row.time)},"body":${row.body},"prev_hash":"${row.previous}","hash":"${row.hash}"}`;
  }
  return `${text}]`;
}

export const postgresDialect: Dialect = {
  migrations: migrations.map(splitStatements),
  migrationsTable:
    'CREATE TABLE IF NOT EXISTS audit_migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())',
  lock: async (tx, id) => void (await tx.query('SELECT pg_advisory_xact_lock($1)', [id])),
  insertEvents: async (tx, rows) => {
    if (rows.length === 0) return;
    await tx.query(
      `INSERT INTO audit_events (position, id, session_id, type, time, body, prev_hash, hash)
       SELECT position, id, session_id, type, time, body, prev_hash, hash
         FROM json_to_recordset($1::json) AS r(position bigint, id text, session_id text, type text,
                                              time timestamptz, body jsonb, prev_hash text, hash text)`,
      [rowsJson(rows)],
    );
  },
  now: 'now()',
  greatest: (a, b) => `GREATEST(${a}, ${b})`,
  inList: (column, param) => `${column} = ANY(${param}::text[])`,
  list: (values) => values,
  time: (iso) => iso,
  // Exact microseconds: a Date would round away an edit below the millisecond.
  timeMicros: (column) => `(extract(epoch FROM ${column}) * 1000000)::bigint::text`,
  perSession: (aggregates, where) =>
    `CROSS JOIN LATERAL (SELECT ${aggregates} FROM audit_events e WHERE e.session_id = r.session_id ${where}) a`,
  maskedCount: (body) =>
    `(SELECT sum(value::bigint) FROM jsonb_each_text(
       CASE WHEN jsonb_typeof(${body}->'masked') = 'object' THEN ${body}->'masked' ELSE '{}'::jsonb END))`,
  pruning: async (tx, allowed) =>
    void (await tx.query("SELECT set_config('airlock.prune', $1, true)", [allowed ? 'on' : 'off'])),
};

export async function openPostgres(url: string): Promise<Database> {
  const { default: pg } = await import('pg');
  const pool = new pg.Pool({ connectionString: url, max: 4 });
  // An idle connection the server ends (a restart, a failover) leaves the pool, and the next
  // query opens another; unheard, the pool's error event would end the process.
  pool.on('error', () => {});
  return {
    dialect: postgresDialect,
    query: async <T>(text: string, params?: unknown[]) => (await pool.query(text, params)).rows as T[],
    async transaction(fn) {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        const tx: Queryable = {
          query: async <T>(t: string, p?: unknown[]) => (await client.query(t, p)).rows as T[],
        };
        const result = await fn(tx);
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
