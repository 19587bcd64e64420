// Which request each server response belongs to. Every forwarded client message that the
// server answers is expected here, in order; the server's responses take entries off the front
// as they complete them. Events, masking layouts and skipping after errors all read from it.
import type { Outcome, RequestError } from '../../api/events.ts';
import type { Verdict } from './policy.ts';
import type { PreparedStatement } from './statements.ts';

/** One statement or message and what happened to it; becomes a RequestEvent. */
export interface RequestRecord {
  text: string;
  kind: string | undefined;
  outcome: Outcome;
  verdict?: Verdict;
  approval?: { request: string; decidedBy?: string };
  started: number;
  rows?: number;
  masked?: Record<string, number>;
  wouldMask?: Record<string, number>;
  error?: RequestError;
  emitted?: boolean;
}

/**
 * What the server owes an answer for. `replaceError` is set for a poison message standing in
 * for a denied one: the server's ErrorResponse to it is replaced by this denial.
 */
export type Pending =
  /** A simple Query: one record per statement, `index` the one being answered. */
  | { kind: 'query'; records: RequestRecord[]; index: number; replaceError?: Buffer }
  | { kind: 'function'; record: RequestRecord; replaceError?: Buffer }
  /** name and prepared: the statement a forwarded Parse defines, for its ParseComplete to confirm. */
  | {
      kind: 'parse';
      record?: RequestRecord;
      replaceError?: Buffer;
      text?: string;
      name?: string;
      prepared?: PreparedStatement;
    }
  | { kind: 'bind'; portal: string }
  /** internal: sent by the enforcer to learn a portal's columns; its answer is not relayed. */
  | { kind: 'describe'; target: 'S' | 'P'; name: string; internal: boolean }
  | { kind: 'execute'; portal: string; record: RequestRecord; replaceError?: Buffer }
  /** statement: the name of the statement it closes (not for a portal). */
  | { kind: 'close'; statement?: string }
  | { kind: 'sync' };

export type PendingKind = Pending['kind'];

export class PendingQueue {
  private readonly entries: Pending[] = [];

  /** Nothing forwarded is still unanswered. */
  get empty(): boolean {
    return this.entries.length === 0;
  }

  /**
   * A Query, Sync or FunctionCall forwarded still waits for its ReadyForQuery: until then the
   * server may not yet have reported a setting that code it ran changed.
   */
  get owesReady(): boolean {
    return this.entries.some((e) => e.kind === 'query' || e.kind === 'sync' || e.kind === 'function');
  }

  /** The entry the server is answering now. */
  get head(): Pending | undefined {
    return this.entries[0];
  }

  /** A message was forwarded (or a poison message stands in for it): its answers come after the others'. */
  expect(entry: Pending): void {
    this.entries.push(entry);
  }

  /** Removes and returns the head when it is of one of these kinds: the server has completed it. */
  complete<K extends PendingKind>(...kinds: K[]): Extract<Pending, { kind: K }> | undefined {
    const head = this.entries[0];
    if (!head || !(kinds as PendingKind[]).includes(head.kind)) return undefined;
    this.entries.shift();
    return head as Extract<Pending, { kind: K }>;
  }

  /**
   * After an error in the extended protocol the server skips everything up to Sync: so are
   * their entries. False when no Sync has been forwarded yet (the client's messages up to it
   * will not be answered either).
   */
  skipToSync(): boolean {
    while (this.entries.length > 0 && this.entries[0]!.kind !== 'sync') this.entries.shift();
    return this.entries.length > 0;
  }
}

/** The request an entry's responses belong to: a query's current statement, an Execute's, a FunctionCall's. */
export function recordOf(entry: Pending | undefined): RequestRecord | undefined {
  if (!entry) return undefined;
  if (entry.kind === 'query') return entry.records[entry.index];
  if (entry.kind === 'execute' || entry.kind === 'function') return entry.record;
  return undefined;
}
