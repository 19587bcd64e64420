// The audit store: session events appended to one table in a hash chain. Each row carries the
// hash of its predecessor, so `verify` finds any event that was edited, deleted, inserted or
// reordered, even by a database superuser. One implementation serves PostgreSQL (production,
// several collector replicas: postgres.ts) and embedded SQLite (the default, in a directory:
// sqlite.ts); the SQL in which they differ is their dialect's (database.ts).
import { createHash, createHmac, createSecretKey, type KeyObject, timingSafeEqual } from 'node:crypto';
import type { SessionEvent } from '../api/events.ts';
import type { Database, EventRow, Queryable } from './database.ts';
import { openPostgres } from './postgres.ts';
import { openSqlite } from './sqlite.ts';
import { microseconds } from './time.ts';

const genesis = '0'.repeat(64);

/** A stored event and its position in the chain. */
export interface StoredEvent {
  position: number;
  event: SessionEvent;
}

export interface StoreOptions {
  /** HMAC key that signs the checkpoints; without it, a cut tail goes unnoticed. */
  key?: Buffer;
}

type CheckpointKind = 'head' | 'genesis';
interface Checkpoint {
  kind: CheckpointKind;
  position: number;
  hash: string;
  mac: string;
}

function checkpointMac(key: KeyObject, kind: CheckpointKind, position: number, hash: string): string {
  return createHmac('sha256', key)
    .update(`airlock-audit-checkpoint\n${kind}\n${position}\n${hash}`)
    .digest('hex');
}

export const isPostgresUrl = (location: string) => /^postgres(ql)?:\/\//.test(location);

export interface SessionSummary {
  id: string;
  connection: string;
  namespace: string;
  protocol: string;
  identity: string;
  /** The person the workload acted for, when it presented a verified token (Connection endUser). */
  user?: string;
  started: string;
  ended?: string;
  requests: number;
  blocked: number;
  masked: number;
}

/** Which sessions a list returns: the newest `limit`, optionally of one namespace, before a page. */
export interface SessionQuery {
  limit?: number;
  namespace?: string;
  /** The `next` of the previous page: only sessions that started before it. */
  before?: number;
}

export interface SessionPage {
  sessions: SessionSummary[];
  /** Present when older sessions may follow: pass it as `before` for the next page. */
  next?: number;
}

/** The newest sessions as a person asks for them: at most a limit, and whether older ones exist. */
export interface SessionList {
  sessions: SessionSummary[];
  more: boolean;
}

/** The first `limit` of sessions read newest first, one more than asked for when there is one. */
export function sessionList(newestFirst: SessionSummary[], limit: number): SessionList {
  return { sessions: newestFirst.slice(0, limit), more: newestFirst.length > limit };
}

export interface VerifyResult {
  ok: boolean;
  events: number;
  /** Whether signed checkpoints were checked (a key was given and found them valid). */
  anchored?: boolean;
  /** Position of the last pruned event (0 when nothing was pruned). */
  prunedThrough?: number;
  /** The first event that does not fit the chain, and why. */
  firstBad?: { position: number; id: string; problem: string };
}

/**
 * The canonical text of an event: keys sorted, so the hash does not depend on key order. Built
 * by concatenation, as it runs for every event appended (a copy of the entries sorted per
 * object cost more than the hash).
 */
export function canonical(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) {
    let text = '[';
    for (let i = 0; i < value.length; i++) {
      if (i > 0) text += ',';
      // An undefined element (or a hole) leaves its place empty, as joining a map of it did.
      text += canonical(value[i]) ?? '';
    }
    return `${text}]`;
  }
  const object = value as Record<string, unknown>;
  let text = '{';
  for (const key of Object.keys(object).sort()) {
    const field = object[key];
    if (field === undefined) continue;
    if (text.length > 1) text += ',';
    text += `${JSON.stringify(key)}:${canonical(field)}`;
  }
  return `${text}}`;
}

export function chainHash(previous: string, position: number, event: unknown): string {
  return createHash('sha256')
    .update(`${previous}\n${position}\n${canonical(event)}`)
    .digest('hex');
}

export class AuditStore {
  readonly #db: Database;
  /** A key object made once: each checkpoint made one from the bytes again. */
  readonly #key: KeyObject | undefined;
  readonly location: string;

  private constructor(db: Database, location: string, key: Buffer | undefined) {
    this.#db = db;
    this.#key = key && createSecretKey(key);
    this.location = location;
  }

  /** Opens a store: a postgres:// URL, or a directory for the embedded SQLite store. */
  static async open(location: string, options: StoreOptions = {}): Promise<AuditStore> {
    const db = isPostgresUrl(location) ? await openPostgres(location) : await openSqlite(location);
    return AuditStore.on(db, location, options);
  }

  /** A store on an open database (an earlier release's PGlite store, which `migrate` reads). */
  static async on(db: Database, location: string, options: StoreOptions = {}): Promise<AuditStore> {
    const store = new AuditStore(db, location, options.key);
    await store.#migrate();
    return store;
  }

  async #migrate(): Promise<void> {
    const { dialect } = this.#db;
    await this.#db.transaction(async (tx) => {
      await dialect.lock(tx, 4242001);
      await tx.query(dialect.migrationsTable);
      const applied = await tx.query<{ version: number }>('SELECT version FROM audit_migrations');
      const done = new Set(applied.map((r) => Number(r.version)));
      for (const [index, statements] of dialect.migrations.entries()) {
        if (done.has(index + 1)) continue;
        for (const statement of statements) await tx.query(statement);
        await tx.query('INSERT INTO audit_migrations (version) VALUES ($1)', [index + 1]);
      }
    });
  }

  /** Appends events in order; events already stored (by id) are skipped, so resends are harmless. */
  async append(events: SessionEvent[]): Promise<number> {
    return (await this.add(events)).length;
  }

  /** As append, returning the events that were new to the store. */
  async add(events: SessionEvent[]): Promise<SessionEvent[]> {
    if (events.length === 0) return [];
    const { dialect } = this.#db;
    return this.#db.transaction(async (tx) => {
      await dialect.lock(tx, 4242002);
      // The ids already stored and the chain's head, in one round trip.
      const found = await tx.query<{ id: string | null; position: string | null; hash: string | null }>(
        `SELECT id, NULL AS position, NULL AS hash FROM audit_events WHERE ${dialect.inList('id', '$1')}
         UNION ALL
         SELECT NULL, position, hash FROM (SELECT position, hash FROM audit_events ORDER BY position DESC LIMIT 1) h`,
        [dialect.list(events.map((e) => e.id))],
      );
      const existing = new Set<string>();
      let head: { position: string; hash: string } | undefined;
      for (const row of found) {
        if (row.id !== null) existing.add(row.id);
        else head = { position: String(row.position), hash: row.hash! };
      }
      let position = head ? Number(head.position) : 0;
      let previous = head?.hash ?? genesis;
      const rows: EventRow[] = [];
      const added: SessionEvent[] = [];
      for (const event of events) {
        if (existing.has(event.id)) continue;
        existing.add(event.id);
        added.push(event);
        position++;
        const hash = chainHash(previous, position, event);
        rows.push({
          position,
          id: event.id,
          sessionId: event.sessionId,
          type: event.type,
          time: event.time,
          // The event as it came, in its own key order (which the embedded store keeps).
          body: JSON.stringify(event),
          previous,
          hash,
        });
        previous = hash;
      }
      await dialect.insertEvents(tx, rows);
      if (rows.length > 0 && this.#key) await this.#checkpoint(tx, 'head', position, previous);
      return added;
    });
  }

  async #checkpoint(tx: Queryable, kind: CheckpointKind, position: number, hash: string): Promise<void> {
    const mac = this.#key ? checkpointMac(this.#key, kind, position, hash) : '';
    await tx.query(
      `INSERT INTO audit_checkpoints (kind, position, hash, mac) VALUES ($1, $2, $3, $4)
       ON CONFLICT (kind) DO UPDATE SET position = $2, hash = $3, mac = $4, updated_at = ${this.#db.dialect.now}`,
      [kind, position, hash, mac],
    );
  }

  async #checkpoints(): Promise<Map<CheckpointKind, Checkpoint>> {
    const rows = await this.#db.query<{ kind: CheckpointKind; position: string; hash: string; mac: string }>(
      'SELECT kind, position, hash, mac FROM audit_checkpoints',
    );
    return new Map(rows.map((r) => [r.kind, { ...r, position: Number(r.position) }]));
  }

  /**
   * Drops the events older than the cutoff from the start of the chain (the chain's order, not
   * the clock's, decides: pruning stops at the first event that is young enough), and records
   * the last dropped event as the chain's new genesis.
   */
  async prune(before: Date): Promise<{ pruned: number; through: number }> {
    const { dialect } = this.#db;
    return this.#db.transaction(async (tx) => {
      await dialect.lock(tx, 4242002);
      const [young] = await tx.query<{ position: string | null }>(
        'SELECT min(position) AS position FROM audit_events WHERE time >= $1',
        [dialect.time(before.toISOString())],
      );
      const [last] = await tx.query<{ position: string | null; low: string | null }>(
        'SELECT max(position) AS position, min(position) AS low FROM audit_events',
      );
      if (last?.position == null) return { pruned: 0, through: 0 };
      const through = young?.position != null ? Number(young.position) - 1 : Number(last.position);
      const low = Number(last.low);
      if (through < low) return { pruned: 0, through: low - 1 };
      const [edge] = await tx.query<{ hash: string }>('SELECT hash FROM audit_events WHERE position = $1', [
        through,
      ]);
      await this.#checkpoint(tx, 'genesis', through, edge!.hash);
      await dialect.pruning(tx, true);
      await tx.query('DELETE FROM audit_events WHERE position <= $1', [through]);
      await dialect.pruning(tx, false);
      return { pruned: through - low + 1, through };
    });
  }

  /**
   * The most recent sessions (by their start), newest first, summarized in the database: a list
   * reads the newest starts from an index and counts each session's events where they are,
   * without sending them. With a namespace, only the sessions of workloads in it, counted from
   * their own events only: the collector stamps each event with its sender's namespace, so
   * events another namespace sent under the same session id are not part of it. A session
   * whose start retention pruned is no longer listed; `session(id)` still reads what is left.
   * Pages follow each other by chain position, so sessions that start meanwhile neither shift
   * nor repeat the pages after the first.
   */
  async sessions({ limit = 100, namespace, before }: SessionQuery = {}): Promise<SessionPage> {
    const { dialect } = this.#db;
    const params: unknown[] = [limit];
    const param = (value: unknown) => `$${params.push(value)}`;
    const inNamespace = namespace === undefined ? undefined : param(namespace);
    const scoped = (alias: string) =>
      inNamespace === undefined ? '' : `AND ${alias}.body->'identity'->>'namespace' = ${inNamespace}`;
    const page = before === undefined ? '' : `AND s.position < ${param(before)}`;
    const rows = await this.#db.query<{
      session_id: string;
      start: string | number;
      read: string | number;
      first: SessionEvent;
      requests: string | number;
      blocked: string | number;
      masked: string | number;
      ended: string | null;
    }>(
      `WITH starts AS (
         SELECT s.session_id, s.position FROM audit_events s
          WHERE s.type = 'session.start' ${scoped('s')} ${page}
          ORDER BY s.position DESC LIMIT $1),
       recent AS (SELECT session_id, min(position) AS first FROM starts GROUP BY session_id)
       SELECT r.session_id, r.first AS start, (SELECT count(*) FROM starts) AS read, f.body AS first, a.requests, a.blocked, a.masked, a.ended
         FROM recent r
         JOIN audit_events f ON f.position = r.first
         ${dialect.perSession(
           `count(*) FILTER (WHERE e.type = 'request') AS requests,
            count(*) FILTER (WHERE e.type = 'request'
              AND e.body->>'outcome' IN ('blocked', 'denied', 'expired')) AS blocked,
            coalesce(sum(${dialect.maskedCount('e.body')}) FILTER (WHERE e.type = 'request'), 0) AS masked,
            min(e.body->>'time') FILTER (WHERE e.type = 'session.end') AS ended`,
           scoped('e'),
         )}
        ORDER BY r.first DESC`,
      params,
    );
    const sessions = rows.map((row) => {
      const first = parseJson(row.first);
      return {
        ...describe(row.session_id, first),
        ...(row.ended && { ended: row.ended }),
        requests: Number(row.requests),
        blocked: Number(row.blocked),
        masked: Number(row.masked),
      };
    });
    // A page that read `limit` starts may have older sessions behind it.
    const oldest = rows.at(-1);
    return oldest && Number(oldest.read) >= limit ? { sessions, next: Number(oldest.start) } : { sessions };
  }

  async session(
    id: string,
    namespace?: string,
  ): Promise<{ summary: SessionSummary; events: SessionEvent[] } | undefined> {
    const rows = await this.#db.query<{ body: SessionEvent }>(
      `SELECT body FROM audit_events WHERE session_id = $1
        ${namespace === undefined ? '' : "AND body->'identity'->>'namespace' = $2"} ORDER BY position`,
      namespace === undefined ? [id] : [id, namespace],
    );
    if (rows.length === 0) return undefined;
    const events = rows.map((r) => parseJson(r.body));
    return { summary: summarize(id, events), events };
  }

  /**
   * Up to `limit` events after `position`, in chain order. Appends serialize until they commit
   * (on PostgreSQL's advisory lock, on SQLite's one write lock), so positions become visible in
   * order: a reader that saw position N never later finds a new event before it.
   */
  async eventsAfter(position: number, limit: number): Promise<StoredEvent[]> {
    const rows = await this.#db.query<{ position: string; body: SessionEvent }>(
      'SELECT position, body FROM audit_events WHERE position > $1 ORDER BY position LIMIT $2',
      [position, limit],
    );
    return rows.map((r) => ({ position: Number(r.position), event: parseJson(r.body) }));
  }

  /** The position of the last stored event (0 when none ever was). */
  async head(): Promise<number> {
    const [row] = await this.#db.query<{ position: string | null }>(
      'SELECT max(position) AS position FROM audit_events',
    );
    if (row?.position != null) return Number(row.position);
    // Everything pruned: the chain goes on after the genesis checkpoint.
    return (await this.#checkpoints()).get('genesis')?.position ?? 0;
  }

  /**
   * An export sink's cursor: the position of the last event it delivered. A sink seen for the
   * first time starts at the head, so a newly configured receiver gets what is stored from now
   * on, not the whole history.
   */
  async exportCursor(sink: string): Promise<number> {
    const [existing] = await this.#db.query<{ position: string }>(
      'SELECT position FROM audit_export_cursors WHERE sink = $1',
      [sink],
    );
    if (existing) return Number(existing.position);
    // Two replicas seeing it first at once: the first insert wins, the other reads it.
    await this.#db.query(
      'INSERT INTO audit_export_cursors (sink, position) VALUES ($1, $2) ON CONFLICT (sink) DO NOTHING',
      [sink, await this.head()],
    );
    const [created] = await this.#db.query<{ position: string }>(
      'SELECT position FROM audit_export_cursors WHERE sink = $1',
      [sink],
    );
    return Number(created!.position);
  }

  /** Moves a sink's cursor to `position`, never backwards; returns where it is. */
  async advanceExportCursor(sink: string, position: number): Promise<number> {
    const [row] = await this.#db.query<{ position: string }>(
      `INSERT INTO audit_export_cursors (sink, position) VALUES ($1, $2)
       ON CONFLICT (sink) DO UPDATE
         SET position = ${this.#db.dialect.greatest('audit_export_cursors.position', 'EXCLUDED.position')}, updated_at = ${this.#db.dialect.now}
       RETURNING position`,
      [sink, position],
    );
    return Number(row!.position);
  }

  /** Walks the chain in order, in batches: linear in the store's size. */
  async verify(): Promise<VerifyResult> {
    const checkpoints = await this.#checkpoints();
    const start = checkpoints.get('genesis');
    const head = checkpoints.get('head');
    const key = this.#key;
    const forged = (c: Checkpoint | undefined) =>
      c !== undefined &&
      key !== undefined &&
      !safeEqual(c.mac, checkpointMac(key, c.kind, c.position, c.hash));
    const badCheckpoint = (c: Checkpoint): VerifyResult => ({
      ok: false,
      events: 0,
      firstBad: {
        position: c.position,
        id: `checkpoint:${c.kind}`,
        problem: `the ${c.kind} checkpoint's signature does not match: it was forged or the key is wrong`,
      },
    });
    if (forged(start)) return badCheckpoint(start!);
    if (forged(head)) return badCheckpoint(head!);
    const anchored = key !== undefined && head !== undefined;
    let previous = start?.hash ?? genesis;
    let expected = (start?.position ?? 0) + 1;
    let count = 0;
    let lastId = '';
    for (;;) {
      // The time column as exact microseconds: a Date would round away an edit below the millisecond.
      const rows = await this.#db.query<
        ColumnsRow & { position: string; body: unknown; prev_hash: string; hash: string }
      >(
        `SELECT position, id, session_id, type, ${this.#db.dialect.timeMicros('time')} AS time_us,
                body, prev_hash, hash
           FROM audit_events WHERE position >= $1 ORDER BY position LIMIT 5000`,
        [expected],
      );
      if (rows.length === 0) break;
      for (const row of rows) {
        const position = Number(row.position);
        const bad = (problem: string, id = row.id): VerifyResult => ({
          ok: false,
          events: count,
          firstBad: { position, id, problem },
        });
        if (position !== expected) return bad(`expected position ${expected}: an event was deleted or moved`);
        if (row.prev_hash !== previous)
          return bad(
            'its predecessor hash does not match: an event was deleted, inserted or reordered before it',
          );
        const body = parseJson(row.body);
        if (chainHash(previous, position, body) !== row.hash)
          return bad('its content does not match its hash: it was edited');
        const column = editedColumn(row, body);
        // Named by the id its hashed body holds, the one a forged id column hides.
        if (column)
          return bad(
            `its ${column} column does not match its hashed body: it was edited`,
            (body as { id: string }).id,
          );
        if (head && position === head.position && row.hash !== head.hash)
          return bad('it is not the event the head checkpoint signed: the chain was rewritten');
        previous = row.hash;
        lastId = row.id;
        expected++;
        count++;
      }
    }
    const through = start?.position ?? 0;
    if (head && expected - 1 < head.position) {
      return {
        ok: false,
        events: count,
        firstBad: {
          position: expected,
          id: lastId ? `after ${lastId}` : '(none)',
          problem: `the chain ends at position ${expected - 1}, but the head checkpoint signed position ${head.position}: ${head.position - expected + 1} events were cut from the tail`,
        },
      };
    }
    return {
      ok: true,
      events: count,
      ...(anchored && { anchored }),
      ...(through > 0 && { prunedThrough: through }),
    };
  }

  async close(): Promise<void> {
    await this.#db.close();
  }
}

/** The columns listings and `sessions show` read besides the body: each must say what the body says. */
interface ColumnsRow {
  id: string;
  session_id: string;
  type: string;
  time_us: string;
}

/** The first column that disagrees with the hashed body, or undefined. */
function editedColumn(row: ColumnsRow, body: unknown): string | undefined {
  const event = (body ?? {}) as Partial<Record<'id' | 'sessionId' | 'type' | 'time', unknown>>;
  if (row.id !== event.id) return 'id';
  if (row.session_id !== event.sessionId) return 'session_id';
  if (row.type !== event.type) return 'type';
  if (row.time_us !== microseconds(event.time)) return 'time';
  return undefined;
}

function safeEqual(a: string, b: string): boolean {
  return a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b));
}

function parseJson<T>(value: T | string): T {
  return typeof value === 'string' ? (JSON.parse(value) as T) : value;
}

/** What a session's first event says about it. */
function describe(
  id: string,
  first: SessionEvent,
): Pick<SessionSummary, 'id' | 'connection' | 'namespace' | 'protocol' | 'identity' | 'user' | 'started'> {
  return {
    id,
    connection: first.connection.name,
    namespace: first.connection.namespace,
    protocol: first.connection.protocol,
    identity: `system:serviceaccount:${first.identity.namespace}:${first.identity.serviceAccount}`,
    ...(first.identity.user !== undefined && { user: first.identity.user }),
    started: first.time,
  };
}

/** A session summarized from all its events (as `sessions()` does in the database). */
export function summarize(id: string, events: SessionEvent[]): SessionSummary {
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
  return { ...describe(id, events[0]!), ...(end && { ended: end.time }), requests, blocked, masked };
}
