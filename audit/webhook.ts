// Webhooks to a SIEM or a chat: items POSTed in batches, retried with backoff until the
// receiver answers 2xx, in order (at least once: a receiver that timed out after storing gets
// the batch again; items carry ids to dedupe on). One sender carries every stream: the audit
// export of stored session events (WebhookSink) and the AccessRequest notifications. Formats:
// `generic`, NDJSON of the items; `slack`, incoming-webhook messages.
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { EventSink, SessionEvent } from '../sidecar/audit/event.ts';

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
  /** Most items held while the receiver is down; older ones are shed past it, and counted. */
  maxQueued?: number;
  /** Backoff bounds. */
  minRetryMs?: number;
  maxRetryMs?: number;
}

export interface WebhookOptions extends Omit<WebhookSenderOptions<SessionEvent>, 'stream' | 'encode'> {
  format: WebhookFormat;
  /** Only these event types (all when omitted); Slack channels usually want blocked requests only. */
  types?: SessionEvent['type'][];
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
function shared<M>(registry: Registry | undefined, name: string, make: (registers: Registry[]) => M): M {
  return (registry?.getSingleMetric(name) as M | undefined) ?? make(registry ? [registry] : []);
}

/** Queues items for one receiver and POSTs them in order, retrying with backoff and jitter. */
export class WebhookSender<T> {
  readonly #options: Required<Omit<WebhookSenderOptions<T>, 'registry'>>;
  readonly #receiver: string;
  #queue: T[] = [];
  #sending = false;
  #timer?: NodeJS.Timeout;
  #failures = 0;
  #stopped = false;
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
        (registers) =>
          new Counter({
            name: 'airlock_export_events_total',
            help: 'Items POSTed to webhooks (stream audit: session events; notifications: AccessRequest notifications), by stream and receiver.',
            labelNames: ['stream', 'receiver'] as const,
            registers,
          }),
      ).labels(labels),
      shed: shared(
        registry,
        'airlock_export_shed_events_total',
        (registers) =>
          new Counter({
            name: 'airlock_export_shed_events_total',
            help: 'Items shed because a receiver stayed down past the queue bound, by stream and receiver.',
            labelNames: ['stream', 'receiver'] as const,
            registers,
          }),
      ).labels(labels),
      queued: shared(
        registry,
        'airlock_export_queued_events',
        (registers) =>
          new Gauge({
            name: 'airlock_export_queued_events',
            help: 'Items waiting for a receiver, by stream and receiver.',
            labelNames: ['stream', 'receiver'] as const,
            registers,
          }),
      ).labels(labels),
    };
  }

  get queued(): number {
    return this.#queue.length;
  }

  push(item: T): void {
    if (this.#queue.length >= this.#options.maxQueued) {
      this.#queue.shift();
      this.#metrics.shed.inc();
    }
    this.#queue.push(item);
    this.#metrics.queued.set(this.#queue.length);
    this.#schedule(this.#queue.length >= this.#options.batchSize ? 0 : this.#options.flushMs);
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
    const { logger, stream } = this.#options;
    try {
      while (this.#queue.length > 0 && !this.#stopped) {
        const batch = this.#queue.slice(0, this.#options.batchSize);
        const { body, contentType } = this.#options.encode(batch);
        let problem: string | undefined;
        try {
          const response = await fetch(this.#options.url, {
            method: 'POST',
            headers: { 'content-type': contentType },
            body,
            signal: AbortSignal.timeout(10_000),
          });
          await response.arrayBuffer().catch(() => undefined);
          if (!response.ok) problem = `status ${response.status}`;
        } catch (error) {
          problem = (error as Error).message;
        }
        if (problem === undefined) {
          // Shedding may have moved the head while the batch was in flight.
          const index = this.#queue.indexOf(batch[0]!);
          if (index >= 0) this.#queue.splice(index, batch.length);
          if (this.#failures > 0)
            logger.info(
              { stream, receiver: this.#receiver, failures: this.#failures },
              'webhook receiving again',
            );
          this.#failures = 0;
          this.#metrics.sent.inc(batch.length);
          this.#metrics.queued.set(this.#queue.length);
          continue;
        }
        if (this.#failures++ === 0)
          logger.warn({ stream, receiver: this.#receiver, problem }, 'webhook failed; retrying with backoff');
        const delay = Math.min(
          this.#options.minRetryMs * 2 ** (this.#failures - 1),
          this.#options.maxRetryMs,
        );
        await new Promise((resolve) => setTimeout(resolve, delay * (0.75 + Math.random() / 2)).unref());
      }
    } finally {
      this.#sending = false;
    }
    if (this.#queue.length > 0) this.#schedule(this.#options.flushMs);
  }

  /** Stops retrying; undelivered items are lost with the process. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }
}

/** The audit export: stored session events to one receiver (stream `audit`). */
export class WebhookSink implements EventSink {
  readonly #sender: WebhookSender<SessionEvent>;
  readonly #types: SessionEvent['type'][] | undefined;

  constructor(options: WebhookOptions) {
    const { format, types, ...rest } = options;
    this.#types = types;
    this.#sender = new WebhookSender({
      ...rest,
      stream: 'audit',
      encode: (events) => formatBatch(format, events),
    });
  }

  get queued(): number {
    return this.#sender.queued;
  }

  emit(event: SessionEvent): void {
    if (this.#types && !this.#types.includes(event.type)) return;
    this.#sender.push(event);
  }

  /** Stops retrying; undelivered events are lost with the process (the store keeps them). */
  stop(): void {
    this.#sender.stop();
  }
}

/** Session events as JSON log lines, one per event. */
export function jsonLogExport(write: (line: string) => void = (l) => process.stdout.write(l)): EventSink {
  return { emit: (event) => write(`${JSON.stringify({ msg: 'session event', event })}\n`) };
}
