// Export to a SIEM or a chat: stored session events POSTed in batches, retried with backoff
// until the receiver answers 2xx, in order (at least once: a receiver that timed out after
// storing gets the batch again; events carry ids to dedupe on). Formats: `generic`, NDJSON of
// the events as stored; `slack`, one incoming-webhook message per batch.
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { EventSink, SessionEvent } from '../sidecar/audit/event.ts';

export type WebhookFormat = 'generic' | 'slack';

export interface WebhookOptions {
  url: string;
  format: WebhookFormat;
  logger: Logger;
  registry?: Registry;
  batchSize?: number;
  flushMs?: number;
  /** Most events held while the receiver is down; older ones are shed past it, and counted. */
  maxQueued?: number;
  /** Backoff bounds. */
  minRetryMs?: number;
  maxRetryMs?: number;
  /** Only these event types (all when omitted); Slack channels usually want blocked requests only. */
  types?: SessionEvent['type'][];
}

/** One batch as the receiver gets it. */
export function formatBatch(
  format: WebhookFormat,
  events: SessionEvent[],
): { body: string; contentType: string } {
  if (format === 'generic')
    return {
      body: `${events.map((e) => JSON.stringify(e)).join('\n')}\n`,
      contentType: 'application/x-ndjson',
    };
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
  return { body: JSON.stringify({ text: lines.join('\n') }), contentType: 'application/json' };
}

export class WebhookSink implements EventSink {
  readonly #options: Required<Omit<WebhookOptions, 'registry' | 'types'>> & Pick<WebhookOptions, 'types'>;
  #queue: SessionEvent[] = [];
  #sending = false;
  #timer?: NodeJS.Timeout;
  #failures = 0;
  #stopped = false;
  readonly #metrics;

  constructor(options: WebhookOptions) {
    this.#options = {
      batchSize: 500,
      flushMs: 200,
      maxQueued: 100_000,
      minRetryMs: 200,
      maxRetryMs: 30_000,
      ...options,
    };
    const registers = options.registry ? [options.registry] : [];
    const host = new URL(options.url).host;
    this.#metrics = {
      sent: new Counter({
        name: 'airlock_export_events_total',
        help: 'Session events exported, by receiver and result (delivered, shed).',
        labelNames: ['receiver', 'result'] as const,
        registers,
      }).labels({ receiver: host }),
      shed: new Counter({
        name: 'airlock_export_shed_events_total',
        help: 'Session events shed because a receiver stayed down past the queue bound.',
        labelNames: ['receiver'] as const,
        registers,
      }).labels({ receiver: host }),
      queued: new Gauge({
        name: 'airlock_export_queued_events',
        help: 'Session events waiting for a receiver.',
        labelNames: ['receiver'] as const,
        registers,
      }).labels({ receiver: host }),
    };
  }

  get queued(): number {
    return this.#queue.length;
  }

  emit(event: SessionEvent): void {
    if (this.#options.types && !this.#options.types.includes(event.type)) return;
    if (this.#queue.length >= this.#options.maxQueued) {
      this.#queue.shift();
      this.#metrics.shed.inc();
    }
    this.#queue.push(event);
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
    try {
      while (this.#queue.length > 0 && !this.#stopped) {
        const batch = this.#queue.slice(0, this.#options.batchSize);
        const { body, contentType } = formatBatch(this.#options.format, batch);
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
          this.#failures = 0;
          this.#metrics.sent.inc(batch.length);
          this.#metrics.queued.set(this.#queue.length);
          continue;
        }
        if (this.#failures++ === 0)
          this.#options.logger.warn(
            { receiver: new URL(this.#options.url).host, problem },
            'export webhook failed; retrying with backoff',
          );
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

  /** Stops retrying; undelivered events are lost with the process (the store keeps them). */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }
}

/** Session events as JSON log lines, one per event. */
export function jsonLogExport(write: (line: string) => void = (l) => process.stdout.write(l)): EventSink {
  return { emit: (event) => write(`${JSON.stringify({ msg: 'session event', event })}\n`) };
}
