// An EventSink that appends to an AuditStore in batches, in order. Sessions never wait for the
// store; a failed append is retried with the next batch (ids make resends harmless). The queue
// is bounded: past the bound, terminal data (asciicast frames, recorded bodies) is shed first
// and counted, so statements and decisions are the last thing lost.
import type { EventSink, SessionEvent } from '../api/events.ts';
import type { AuditLog } from './log.ts';

export interface StoreSinkOptions {
  /** Most events held in memory while the store catches up. */
  maxQueued?: number;
  batchSize?: number;
  /** How long an event may wait for more to share its append. */
  flushMs?: number;
  onError: (error: unknown) => void;
  /** Called when events are shed, with the running total. */
  onShed?: (total: number) => void;
}

export class StoreSink implements EventSink {
  readonly #store: AuditLog;
  readonly #options: Required<Omit<StoreSinkOptions, 'onShed'>> & Pick<StoreSinkOptions, 'onShed'>;
  #queue: SessionEvent[] = [];
  #flushing?: Promise<void>;
  #timer?: NodeJS.Timeout;
  #shed = 0;

  constructor(store: AuditLog, options: StoreSinkOptions) {
    this.#store = store;
    // An append costs about as much per batch (its round trips, a commit) as for a hundred
    // events: a batch that gathers for 100 ms costs a quarter per event of one that gathers for 25.
    this.#options = { maxQueued: 50_000, batchSize: 2_000, flushMs: 100, ...options };
  }

  /** Events dropped because the store could not keep up. */
  get shed(): number {
    return this.#shed;
  }

  emit(event: SessionEvent): void {
    if (this.#queue.length >= this.#options.maxQueued && !this.#makeRoom(event)) return;
    this.#queue.push(event);
    if (this.#queue.length >= this.#options.batchSize) void this.flush();
    else this.#timer ??= setTimeout(() => void this.flush(), this.#options.flushMs);
  }

  #makeRoom(incoming: SessionEvent): boolean {
    const index = this.#queue.findIndex((e) => e.type === 'data');
    if (index >= 0) this.#queue.splice(index, 1);
    const kept = index >= 0 || incoming.type !== 'data';
    if (index < 0 && incoming.type !== 'data') this.#queue.shift();
    this.#shed++;
    this.#options.onShed?.(this.#shed);
    return kept;
  }

  /** Writes everything emitted so far. */
  async flush(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    while (this.#flushing) await this.#flushing;
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0, this.#options.batchSize);
      this.#flushing = this.#store
        .append(batch)
        .then(() => undefined)
        .catch((error) => {
          this.#queue = [...batch, ...this.#queue];
          this.#options.onError(error);
        })
        .finally(() => {
          this.#flushing = undefined;
        });
      await this.#flushing;
      // A failed batch went back to the head of the queue: retry with the next flush.
      if (this.#queue[0] === batch[0]) break;
    }
  }
}
