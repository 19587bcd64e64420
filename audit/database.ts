// What the audit store needs of a database, and the SQL in which its two databases differ.
// The store (store.ts) writes its queries once, in PostgreSQL's placeholders ($1, $2, …), and
// asks the dialect for the few fragments that are not common to PostgreSQL and SQLite.

export interface Queryable {
  query<T>(text: string, params?: unknown[]): Promise<T[]>;
}

export interface Database extends Queryable {
  readonly dialect: Dialect;
  /** Runs fn in one transaction: all of its queries commit together, or none does. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/** An event as a row of audit_events. */
export interface EventRow {
  position: number;
  id: string;
  sessionId: string;
  type: string;
  /** ISO 8601, as the event has it. */
  time: string;
  /** The event as JSON. */
  body: string;
  /** The predecessor's hash. */
  previous: string;
  hash: string;
}

export interface Dialect {
  /** The schema: each migration's statements, applied once each, in order. */
  readonly migrations: string[][];
  /** Creates the table that records which migrations were applied. */
  readonly migrationsTable: string;
  /**
   * Serializes appends (and migrations) until the transaction ends: PostgreSQL's collector
   * replicas take an advisory lock; SQLite's writers are serialized by the transaction itself.
   */
  lock(tx: Queryable, id: number): Promise<void>;
  /**
   * Inserts an append's rows. PostgreSQL reads them all from one JSON parameter in one
   * statement (a parameter per value cost per value on both sides); SQLite, which has no round
   * trip to save, runs one prepared single-row statement per row.
   */
  insertEvents(tx: Queryable, rows: EventRow[]): Promise<void>;
  /** The current time, as a column default or an update sets it. */
  readonly now: string;
  /** The larger of two values. */
  greatest(a: string, b: string): string;
  /** A condition that `column` is one of the texts in the parameter `param` (see `list`). */
  inList(column: string, param: string): string;
  /** The parameter value `inList` reads. */
  list(values: string[]): unknown;
  /** The time column's value for an ISO 8601 time. */
  time(iso: string): unknown;
  /** The time column as exact microseconds since the epoch, as text (see `microseconds`). */
  timeMicros(column: string): string;
  /**
   * Joins each listed session (`r`, a row of `recent`) to `a`: the `aggregates` over its events
   * `e` that pass `where`. PostgreSQL reads each session's events by its index (LATERAL);
   * SQLite, which has no LATERAL, groups the events of the listed sessions.
   */
  perSession(aggregates: string, where: string): string;
  /** The sum of an event's `masked` counts (0 when it has none), from its body. */
  maskedCount(body: string): string;
  /**
   * Lets the transaction delete events (`allowed`), or forbids it again: the append-only
   * trigger lets a delete through only inside a prune that says so.
   */
  pruning(tx: Queryable, allowed: boolean): Promise<void>;
}
