// An EventSink that appends to an AuditStore in small batches, in order. Sessions never wait
// for the store; a failed append is retried with the next batch (ids make resends harmless).
import type { EventSink, SessionEvent } from '../sidecar/audit/event.ts';
import type { AuditStore } from './store.ts';

export class StoreSink implements EventSink {
  readonly #store: AuditStore;
  readonly #onError: (error: unknown) => void;
  #queue: SessionEvent[] = [];
  #flushing?: Promise<void>;
  #timer?: NodeJS.Timeout;

  constructor(store: AuditStore, onError: (error: unknown) => void) {
    this.#store = store;
    this.#onError = onError;
  }

  emit(event: SessionEvent): void {
    this.#queue.push(event);
    this.#timer ??= setTimeout(() => void this.flush(), 25);
  }

  /** Writes everything emitted so far. */
  async flush(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    while (this.#flushing) await this.#flushing;
    if (this.#queue.length === 0) return;
    const batch = this.#queue;
    this.#queue = [];
    this.#flushing = this.#store
      .append(batch)
      .then(() => undefined)
      .catch((error) => {
        this.#queue = [...batch, ...this.#queue];
        this.#onError(error);
      })
      .finally(() => {
        this.#flushing = undefined;
      });
    await this.#flushing;
  }
}
