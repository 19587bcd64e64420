// Webhooks to a SIEM or a chat: items POSTed in batches, retried with backoff until the
// receiver answers 2xx, in order (at least once: a receiver that timed out after storing gets
// the batch again; items carry ids to dedupe on). One sender carries every stream: the audit
// export of stored session events (WebhookExport, which reads them from the store behind a
// cursor kept in the store) and the AccessRequest notifications (queued in memory). Formats:
// `generic`, NDJSON of the items; `slack`, incoming-webhook messages.
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { EventSink, SessionEvent } from '../api/events.ts';
import { Counter, Gauge, type Registry } from '../metrics/registry.ts';
import type { AuditLog } from './log.ts';

export type WebhookFormat = 'generic' | 'slack';

/** A request body as the receiver gets it. */
export interface WebhookBody {
  body: string;
  contentType: string;
}

export interface WebhookSenderOptions<T> {
  url: string;
  /** What is sent, for metrics (label `stream`) and logs: `export`, `notify`. */
  stream: string;
  /** One batch as one request body. */
  encode: (items: T[]) => WebhookBody;
  logger: Logger;
  registry?: Registry;
  batchSize?: number;
  flushMs?: number;
  /** Most items queued by push() while the receiver is down; older ones are shed past it, and counted. */
  maxQueued?: number;
  /** Backoff bounds. */
  minRetryMs?: number;
  maxRetryMs?: number;
}

/** What the export reads and writes in the store. */
export type ExportStore = Pick<AuditLog, 'eventsAfter' | 'head' | 'exportCursor' | 'advanceExportCursor'>;

export interface WebhookExportOptions
  extends Omit<WebhookSenderOptions<SessionEvent>, 'stream' | 'encode' | 'flushMs' | 'maxQueued'> {
  format: WebhookFormat;
  /** Only these event types (all when omitted); Slack channels usually want blocked requests only. */
  types?: SessionEvent['type'][];
  /** The store, opened on first use. */
  store: () => Promise<ExportStore>;
  /** Whether this replica exports now (the leader, with several replicas); always when omitted. */
  active?: () => boolean;
  /** How often to look for new events when nothing wakes the export. */
  pollMs?: number;
}

/** Newline-delimited JSON, one item a line. */
export function ndjson(items: unknown[]): WebhookBody {
  return {
    body: `${items.map((item) => JSON.stringify(item)).join('\n')}\n`,
    contentType: 'application/x-ndjson',
  };
}

/** One Slack incoming-webhook message. */
export function slackMessage(text: string): WebhookBody {
  return { body: JSON.stringify({ text }), contentType: 'application/json' };
}

/** One batch as the receiver gets it. */
export function formatBatch(format: WebhookFormat, events: SessionEvent[]): WebhookBody {
  if (format === 'generic') return ndjson(events);
  const lines = events.map((e) => {
    const who = `${e.identity.namespace}/${e.identity.serviceAccount}${e.identity.pod ? ` (pod ${e.identity.pod})` : ''}`;
    const where = `${e.connection.namespace}/${e.connection.name}`;
    if (e.type === 'request')
      return `*${e.outcome}* ${who} on ${where}: \`${e.text.slice(0, 300)}\`${e.rule ? ` (rule ${e.policy}/${e.rule})` : ''}`;
    if (e.type === 'session.start') return `session started: ${who} on ${where}`;
    if (e.type === 'session.end') return `session ended: ${who} on ${where} (${e.reason})`;
    if (e.type === 'protocol.error') return `protocol error: ${who} on ${where}: ${e.code} ${e.message}`;
    return `${e.type}: ${who} on ${where}`;
  });
  return slackMessage(lines.join('\n'));
}

/** A metric shared by every sender on a registry (a second sender would otherwise collide). */
function shared<M>(registry: Registry | undefined, name: string, make: () => M): M {
  return (registry?.get(name) as M | undefined) ?? make();
}

/** POSTs batches to one receiver, retrying with backoff and jitter until it answers 2xx. */
export class WebhookSender<T> {
  readonly #options: Required<Omit<WebhookSenderOptions<T>, 'registry'>>;
  readonly #receiver: string;
  /** Items waiting, each with what its push() resolves to. */
  #queue: { item: T; settle: (delivered: boolean) => void }[] = [];
  #sending = false;
  #timer?: NodeJS.Timeout;
  #failures = 0;
  #stopped = false;
  readonly #abort = new AbortController();
  readonly #metrics;

  constructor(options: WebhookSenderOptions<T>) {
    this.#options = {
      batchSize: 500,
      flushMs: 200,
      maxQueued: 100_000,
      minRetryMs: 200,
      maxRetryMs: 30_000,
      ...options,
    };
    const { registry } = options;
    this.#receiver = new URL(options.url).host;
    const labels = { stream: options.stream, receiver: this.#receiver };
    this.#metrics = {
      sent: shared(
        registry,
        'airlock_export_events_total',
        () =>
          new Counter({
            name: 'airlock_export_events_total',
            help: 'Items POSTed to webhooks (stream audit: session events; notifications: AccessRequest notifications), by stream and receiver.',
            labelNames: ['stream', 'receiver'],
            registry,
          }),
      ).labels(labels),
      shed: shared(
        registry,
        'airlock_export_shed_events_total',
        () =>
          new Counter({
            name: 'airlock_export_shed_events_total',
            help: 'Items shed because a receiver stayed down past the queue bound, by stream and receiver (the audit export sheds nothing: the store is its queue).',
            labelNames: ['stream', 'receiver'],
            registry,
          }),
      ).labels(labels),
      queued: shared(
        registry,
        'airlock_export_queued_events',
        () =>
          new Gauge({
            name: 'airlock_export_queued_events',
            help: 'Items waiting for a receiver, by stream and receiver (stream audit: stored events after its cursor, on the replica that exports).',
            labelNames: ['stream', 'receiver'],
            registry,
          }),
      ).labels(labels),
    };
  }

  get queued(): number {
    return this.#queue.length;
  }

  /** What waits for the receiver outside the sender's own queue (the audit export's backlog). */
  set backlog(items: number) {
    this.#metrics.queued.set(items);
  }

  /**
   * Queues an item in memory, in order after the ones before it. Resolves true once the receiver
   * has acknowledged it, false when it was shed or the sender stopped first (the item is lost
   * with the process: a caller that must not lose it records the true and sends again without).
   */
  push(item: T): Promise<boolean> {
    return new Promise((settle) => {
      if (this.#stopped) return settle(false);
      if (this.#queue.length >= this.#options.maxQueued) {
        this.#queue.shift()!.settle(false);
        this.#metrics.shed.inc();
      }
      this.#queue.push({ item, settle });
      this.#metrics.queued.set(this.#queue.length);
      this.#schedule(this.#queue.length >= this.#options.batchSize ? 0 : this.#options.flushMs);
    });
  }

  #schedule(delayMs: number) {
    if (this.#sending || this.#stopped || (this.#timer && delayMs > 0)) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#send();
    }, delayMs);
    this.#timer.unref();
  }

  async #send(): Promise<void> {
    if (this.#sending) return;
    this.#sending = true;
    try {
      while (this.#queue.length > 0 && !this.#stopped) {
        const batch = this.#queue.slice(0, this.#options.batchSize);
        if (!(await this.deliver(batch.map((entry) => entry.item)))) break;
        // Shedding may have moved the head while the batch was in flight.
        const index = this.#queue.indexOf(batch[0]!);
        if (index >= 0) this.#queue.splice(index, batch.length);
        for (const entry of batch) entry.settle(true);
        this.#metrics.queued.set(this.#queue.length);
      }
    } finally {
      this.#sending = false;
    }
    if (this.#queue.length > 0) this.#schedule(this.#options.flushMs);
  }

  /**
   * POSTs one batch, retrying with backoff and jitter until the receiver answers 2xx: true then;
   * false when the sender is stopped, or `proceed` says to give up, before that.
   */
  async deliver(batch: T[], proceed: () => boolean = () => true): Promise<boolean> {
    const { logger, stream } = this.#options;
    const { body, contentType } = this.#options.encode(batch);
    for (;;) {
      if (this.#stopped || !proceed()) return false;
      let problem: string | undefined;
      try {
        const response = await fetch(this.#options.url, {
          method: 'POST',
          headers: { 'content-type': contentType },
          body,
          signal: AbortSignal.any([AbortSignal.timeout(10_000), this.#abort.signal]),
        });
        await response.arrayBuffer().catch(() => undefined);
        if (!response.ok) problem = `status ${response.status}`;
      } catch (error) {
        problem = (error as Error).message;
      }
      if (this.#stopped) return false;
      if (problem === undefined) {
        if (this.#failures > 0)
          logger.info(
            { stream, receiver: this.#receiver, failures: this.#failures },
            'webhook receiving again',
          );
        this.#failures = 0;
        this.#metrics.sent.inc(batch.length);
        return true;
      }
      if (this.#failures++ === 0)
        logger.warn({ stream, receiver: this.#receiver, problem }, 'webhook failed; retrying with backoff');
      const delay = Math.min(this.#options.minRetryMs * 2 ** (this.#failures - 1), this.#options.maxRetryMs);
      await sleep(delay * (0.75 + Math.random() / 2), this.#abort.signal);
    }
  }

  /** Stops sending, at once (a request in flight is abandoned); queued items are lost with the process. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#abort.abort();
    for (const entry of this.#queue.splice(0)) entry.settle(false);
  }
}

/** Waits, or less when the signal aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    timer.unref();
    signal.addEventListener('abort', done);
  });
}

/**
 * The key of an export sink's cursor in the store: a hash of the receiver's URL and the format.
 * Never the URL itself, which often carries a secret token. Another URL or format is another
 * sink, which starts at the head.
 */
export function exportSinkId(url: string, format: WebhookFormat): string {
  return `webhook:${format}:${createHash('sha256').update(url).digest('hex')}`;
}

/**
 * The audit export to one receiver (stream `audit`), durable: the store is the queue. Events are
 * read after the sink's cursor in chain order, a batch at a time, POSTed until the receiver
 * answers 2xx, and only then is the cursor advanced. An operator that crashes or restarts
 * between storing an event and delivering it delivers it after the restart (at least once: a
 * batch whose answer was lost is sent again; events carry ids to dedupe on). A sink seen for
 * the first time starts at the store's head: a newly configured receiver gets events from then
 * on, not the whole history. Caught up, it waits for wake() (the collector stored a batch) or
 * the poll interval.
 */
export class WebhookExport {
  /** The cursor's key in the store. */
  readonly sink: string;
  readonly #sender: WebhookSender<SessionEvent>;
  readonly #options: Required<Pick<WebhookExportOptions, 'batchSize' | 'pollMs' | 'store' | 'active'>> &
    Pick<WebhookExportOptions, 'types' | 'logger'>;
  readonly #receiver: string;
  #running?: Promise<void>;
  #stopped = false;
  #woken = false;
  #wakeUp?: () => void;

  constructor(options: WebhookExportOptions) {
    const { format, types, store, active, pollMs, batchSize, ...rest } = options;
    this.sink = exportSinkId(options.url, format);
    this.#receiver = new URL(options.url).host;
    this.#options = {
      batchSize: batchSize ?? 500,
      pollMs: pollMs ?? 1_000,
      store,
      active: active ?? (() => true),
      types,
      logger: options.logger,
    };
    this.#sender = new WebhookSender({
      ...rest,
      stream: 'audit',
      encode: (events) => formatBatch(format, events),
    });
  }

  start(): void {
    this.#running ??= this.#run();
  }

  /** New events were stored: look now rather than at the next poll. */
  wake(): void {
    this.#woken = true;
    this.#wakeUp?.();
  }

  async #run(): Promise<void> {
    const { logger, types, batchSize, pollMs } = this.#options;
    const receiver = this.#receiver;
    let storeFailing = false;
    let warnedAhead = false;
    while (!this.#stopped) {
      if (!this.#options.active()) {
        this.#sender.backlog = 0;
        this.#woken = false;
        await this.#idle(pollMs);
        continue;
      }
      this.#woken = false;
      let more = false;
      try {
        const store = await this.#options.store();
        // Read each time: after a leadership change another replica may have moved it.
        const cursor = await store.exportCursor(this.sink);
        const rows = await store.eventsAfter(cursor, batchSize);
        if (rows.length > 0) {
          const first = rows[0]!.position;
          if (first > cursor + 1)
            logger.warn(
              { receiver, from: cursor + 1, to: first - 1 },
              'audit events were pruned before they were exported',
            );
          const events = rows.map((r) => r.event).filter((e) => !types || types.includes(e.type));
          const delivered =
            events.length === 0 ||
            (await this.#sender.deliver(events, () => !this.#stopped && this.#options.active()));
          if (!delivered) continue;
          const at = await store.advanceExportCursor(this.sink, rows.at(-1)!.position);
          more = rows.length === batchSize;
          this.#sender.backlog = Math.max(0, (await store.head()) - at);
        } else {
          const head = await store.head();
          if (head < cursor && !warnedAhead)
            logger.warn(
              { receiver, cursor, head },
              'the export cursor is past the store head: the store was rolled back or replaced; events are exported once the chain passes the cursor',
            );
          warnedAhead = head < cursor;
          this.#sender.backlog = 0;
        }
        if (storeFailing) logger.info({ receiver }, 'audit export reading the store again');
        storeFailing = false;
      } catch (error) {
        if (!storeFailing)
          logger.error(
            { receiver, err: (error as Error).message },
            'audit export cannot read the store; retrying',
          );
        storeFailing = true;
        more = false;
        this.#woken = false;
      }
      if (!more) await this.#idle(pollMs);
    }
  }

  #idle(ms: number): Promise<void> {
    if (this.#woken || this.#stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#wakeUp = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      timer.unref();
      this.#wakeUp = done;
    });
  }

  /**
   * Stops at once: a batch in flight is abandoned, its cursor not advanced, so it is sent again
   * by the next exporter over the store. Resolves when no store call is pending any more.
   */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#sender.stop();
    this.#wakeUp?.();
    await this.#running;
  }
}

/** Session events as JSON log lines, one per event. */
export function jsonLogExport(write: (line: string) => void = (l) => process.stdout.write(l)): EventSink {
  return { emit: (event) => write(`${JSON.stringify({ msg: 'session event', event })}\n`) };
}
