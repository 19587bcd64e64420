// A deduplicating, rate-limited work queue of object keys, as controller-runtime has it: a key
// waiting is queued once however often it is added; a key being processed is never processed
// twice at once (added again, it runs once more after); failures retry with per-key
// exponential backoff, successes forget the key's failures.

export interface QueueOptions {
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** How many keys are processed at once. */
  workers?: number;
}

export type Reconcile = (key: string) => Promise<ReconcileResult | undefined> | Promise<void>;

export interface ReconcileResult {
  /** Look again after this long even if nothing changes. */
  requeueAfterMs?: number;
}

/** An error that retrying cannot fix: logged, not retried. */
export class TerminalError extends Error {
  override name = 'TerminalError';
}

export class WorkQueue {
  readonly #queue: string[] = [];
  readonly #waiting = new Set<string>();
  readonly #processing = new Set<string>();
  readonly #dirty = new Set<string>();
  readonly #failures = new Map<string, number>();
  readonly #timers = new Map<string, NodeJS.Timeout>();
  readonly #options: Required<QueueOptions>;
  readonly #reconcile: Reconcile;
  readonly #onError: (key: string, error: unknown) => void;
  #active = 0;
  #stopped = false;
  #idle: (() => void)[] = [];

  constructor(
    reconcile: Reconcile,
    onError: (key: string, error: unknown) => void,
    options: QueueOptions = {},
  ) {
    this.#reconcile = reconcile;
    this.#onError = onError;
    this.#options = { baseDelayMs: 5, maxDelayMs: 60_000, workers: 2, ...options };
  }

  get length(): number {
    return this.#queue.length;
  }

  add(key: string): void {
    if (this.#stopped) return;
    if (this.#processing.has(key)) {
      this.#dirty.add(key);
      return;
    }
    if (this.#waiting.has(key)) return;
    this.#waiting.add(key);
    this.#queue.push(key);
    this.#pump();
  }

  addAfter(key: string, delayMs: number): void {
    if (this.#stopped) return;
    const existing = this.#timers.get(key);
    if (existing) clearTimeout(existing);
    const timer = setTimeout(() => {
      this.#timers.delete(key);
      this.add(key);
    }, delayMs);
    timer.unref();
    this.#timers.set(key, timer);
  }

  /** The delay before the next retry of a key that failed `failures` times. */
  backoff(failures: number): number {
    return Math.min(this.#options.baseDelayMs * 2 ** failures, this.#options.maxDelayMs);
  }

  /** Resolves when nothing is queued or running (tests). */
  drained(): Promise<void> {
    if (this.#queue.length === 0 && this.#active === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  stop(): void {
    this.#stopped = true;
    for (const timer of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
    this.#queue.length = 0;
    this.#waiting.clear();
  }

  #pump(): void {
    while (!this.#stopped && this.#active < this.#options.workers && this.#queue.length > 0) {
      const key = this.#queue.shift()!;
      this.#waiting.delete(key);
      this.#processing.add(key);
      this.#active++;
      void this.#run(key);
    }
    if (this.#queue.length === 0 && this.#active === 0) {
      for (const resolve of this.#idle.splice(0)) resolve();
    }
  }

  async #run(key: string): Promise<void> {
    try {
      const result = await this.#reconcile(key);
      this.#failures.delete(key);
      if (result?.requeueAfterMs !== undefined) this.addAfter(key, result.requeueAfterMs);
    } catch (error) {
      this.#onError(key, error);
      if (!(error instanceof TerminalError)) {
        const failures = this.#failures.get(key) ?? 0;
        this.#failures.set(key, failures + 1);
        this.addAfter(key, this.backoff(failures));
      }
    } finally {
      this.#processing.delete(key);
      this.#active--;
      if (this.#dirty.delete(key)) this.add(key);
      this.#pump();
    }
  }
}
