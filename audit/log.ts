// The audit log as the rest of Airlock uses it: an AuditStore (on PostgreSQL, or the embedded
// SQLite store) in a worker thread, behind the same methods. Appending hashes and serialises
// every event, and node:sqlite's calls block: in a worker, none of it runs on the event loop of
// the enforcer that records. A PostgreSQL store may run inline instead, where no data path
// shares the loop and a worker's memory (about 30 MB) buys nothing.
import { Worker } from 'node:worker_threads';
import type { SessionEvent } from '../api/events.ts';
import {
  AuditStore,
  isPostgresUrl,
  type SessionPage,
  type SessionQuery,
  type SessionSummary,
  type StoredEvent,
  type StoreOptions,
  type VerifyResult,
} from './store.ts';

export interface AuditLogOptions extends StoreOptions {
  /** A PostgreSQL store on the caller's event loop; the embedded store always has a worker (node:sqlite blocks). */
  inline?: boolean;
}

export interface AuditLog {
  readonly location: string;
  append(events: SessionEvent[]): Promise<number>;
  /** As append, returning the events that were new to the store. */
  add(events: SessionEvent[]): Promise<SessionEvent[]>;
  prune(before: Date): Promise<{ pruned: number; through: number }>;
  sessions(query?: SessionQuery): Promise<SessionPage>;
  session(
    id: string,
    namespace?: string,
  ): Promise<{ summary: SessionSummary; events: SessionEvent[] } | undefined>;
  verify(): Promise<VerifyResult>;
  /** Up to `limit` events after `position`, in chain order. */
  eventsAfter(position: number, limit: number): Promise<StoredEvent[]>;
  /** The position of the last stored event. */
  head(): Promise<number>;
  /** An export sink's cursor; a sink seen for the first time starts at the head. */
  exportCursor(sink: string): Promise<number>;
  /** Moves a sink's cursor forward (never backwards); returns where it is. */
  advanceExportCursor(sink: string, position: number): Promise<number>;
  close(): Promise<void>;
}

export async function openAuditLog(location: string, options: AuditLogOptions = {}): Promise<AuditLog> {
  if (options.inline && isPostgresUrl(location)) return AuditStore.open(location, options);
  const key = options.key?.toString('base64');
  // The image runs the JavaScript image/build.sh compiles from these sources.
  const script = new URL(import.meta.url.endsWith('.js') ? './worker.js' : './worker.ts', import.meta.url);
  const worker = new Worker(script, {
    workerData: { location, key },
  });
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let next = 0;
  await new Promise<void>((resolve, reject) => {
    worker.once('error', reject);
    worker.once('message', () => {
      worker.off('error', reject);
      resolve();
    });
  });
  worker.on('message', ({ id, result, error }: { id: number; result?: unknown; error?: string }) => {
    const call = pending.get(id);
    pending.delete(id);
    if (error !== undefined) call?.reject(new Error(error));
    else call?.resolve(result);
  });
  let gone: Error | undefined;
  const fail = (error: Error) => {
    gone ??= error;
    for (const call of pending.values()) call.reject(gone);
    pending.clear();
  };
  worker.on('error', fail);
  // A worker that ended (crashed, or closed) answers nothing more: its calls fail, never hang.
  worker.on('exit', (code) => fail(new Error(`the audit store worker ended (exit code ${code})`)));
  const call = <T>(method: string, ...args: unknown[]) =>
    new Promise<T>((resolve, reject) => {
      if (gone) return reject(gone);
      const id = next++;
      pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      worker.postMessage({ id, method, args });
    });
  let closing: Promise<void> | undefined;
  return {
    location,
    append: (events) => call('append', events),
    add: (events) => call('add', events),
    prune: (before) => call('prune', before),
    sessions: (query) => call('sessions', query),
    session: (id, namespace) => call('session', id, namespace),
    verify: () => call('verify'),
    eventsAfter: (position, limit) => call('eventsAfter', position, limit),
    head: () => call('head'),
    exportCursor: (sink) => call('exportCursor', sink),
    advanceExportCursor: (sink, position) => call('advanceExportCursor', sink, position),
    close: () =>
      (closing ??= (async () => {
        try {
          if (!gone) await call('close');
        } finally {
          await worker.terminate();
        }
      })()),
  };
}
