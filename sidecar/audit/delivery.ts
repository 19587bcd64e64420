// Delivers session events to the operator's collector, at least once and in order. Events are
// batched in memory and POSTed as NDJSON with the pod's token; while the collector cannot be
// reached they go to a bounded spool file (the pod's emptyDir) and are resent from it, oldest
// first, when it returns. The collector stores by event id, so a resend after a lost answer
// stores nothing twice. When the spool is full, the policy decides: `fail-closed` (the default)
// makes refusal() return a message, and the enforcers refuse new sessions and requests (SQL
// statements, SSH commands, HTTP requests, TCP connections) with it; `drop` sheds events, counts
// them in a metric and logs it.
import {
  closeSync,
  existsSync,
  openSync,
  readFileSync,
  readSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { EventSink, SessionEvent } from '../../api/events.ts';
import { Counter, Gauge, type Registry } from '../../metrics/registry.ts';
import { http, https } from '../core/node-http.ts';

export type SpoolFullPolicy = 'fail-closed' | 'drop';

export interface DeliveryOptions {
  /** The collector: https://operator…/v1/events. */
  url: string;
  tokenFile: string;
  /** CA of the operator's serving certificate (https only). */
  caFile?: string;
  /** Where the spool lives; without one, only memory (maxQueued) buffers an outage. */
  spoolDir?: string;
  maxSpoolBytes?: number;
  /** Events held in memory while a batch is in flight or the spool is full. */
  maxQueued?: number;
  onFull?: SpoolFullPolicy;
  batchSize?: number;
  flushMs?: number;
  logger: Logger;
  registry?: Registry;
  /** Also gets every event as it is emitted (JSON logs). */
  mirror?: EventSink;
}

interface Sent {
  ok: boolean;
  /** The collector refused the batch's content: resending it cannot help. */
  rejected?: boolean;
  /** Events of an accepted batch that the collector refused alone (malformed). */
  refusedEvents?: number;
  detail?: string;
}

export class CollectorDelivery implements EventSink {
  readonly #options: Required<Omit<DeliveryOptions, 'spoolDir' | 'caFile' | 'registry' | 'mirror'>> &
    Pick<DeliveryOptions, 'spoolDir' | 'caFile' | 'mirror'>;
  #queue: string[] = [];
  #spool?: { file: string; offsetFile: string; fd: number; size: number; offset: number };
  #spooling = false;
  #full = false;
  #pumping = false;
  /** A batch read from the spool is in flight: the spool must not be compacted under it. */
  #readingSpool = false;
  #stopped = false;
  #failures = 0;
  #timer?: NodeJS.Timeout;
  #token?: { value: string; read: number };
  #ca?: string;
  #idle: (() => void)[] = [];
  readonly #metrics;

  constructor(options: DeliveryOptions) {
    this.#options = {
      maxSpoolBytes: 128 * 1024 * 1024,
      maxQueued: 20_000,
      onFull: 'fail-closed',
      batchSize: 1_000,
      flushMs: 50,
      ...options,
    };
    this.#metrics = {
      delivered: new Counter({
        name: 'airlock_sidecar_audit_delivered_events_total',
        help: 'Session events the collector acknowledged.',
        registry: options.registry,
      }),
      dropped: new Counter({
        name: 'airlock_sidecar_audit_dropped_events_total',
        help: 'Session events lost: the spool was full under the drop policy, or the collector rejected them.',
        labelNames: ['reason'],
        registry: options.registry,
      }),
      spooled: new Gauge({
        name: 'airlock_sidecar_audit_spool_bytes',
        help: 'Bytes of session events waiting in the spool file.',
        registry: options.registry,
      }),
      full: new Gauge({
        name: 'airlock_sidecar_audit_spool_full',
        help: '1 while the spool is full (alert on it: events are refused or dropped).',
        registry: options.registry,
      }),
    };
    if (options.spoolDir) this.#openSpool(options.spoolDir);
  }

  /** The spool left by a previous run (the pod's emptyDir survives a container restart) is resent first. */
  #openSpool(directory: string) {
    const file = join(directory, 'events.ndjson');
    const offsetFile = join(directory, 'events.offset');
    const fd = openSync(file, 'a+');
    const size = statSync(file).size;
    const offset = existsSync(offsetFile) ? Math.min(Number(readFileSync(offsetFile, 'utf8')) || 0, size) : 0;
    this.#spool = { file, offsetFile, fd, size, offset };
    if (offset < size) {
      this.#spooling = true;
      this.#schedule(0);
    }
    this.#metrics.spooled.set(size - offset);
  }

  emit(event: SessionEvent): void {
    this.#options.mirror?.emit(event);
    if (this.#queue.length >= this.#options.maxQueued) {
      this.#drop(1, 'queue-full');
      return;
    }
    this.#queue.push(JSON.stringify(event));
    // During an outage events go straight to the spool, so a full spool is known at once.
    if (this.#spooling) this.#spoolQueue();
    if (this.#queue.length >= this.#options.batchSize) this.#schedule(0);
    else this.#schedule(this.#options.flushMs);
  }

  /** Set while the spool is full under the fail-closed policy: why new work is refused. */
  refusal(): string | undefined {
    if (!this.#full || this.#options.onFull !== 'fail-closed') return undefined;
    return 'Airlock: the audit trail cannot be recorded (the collector is unreachable and the local spool is full); new sessions and requests are refused until it recovers';
  }

  /** Delivery state, for readiness and tests. */
  health(): { queued: number; spooledBytes: number; spooling: boolean; full: boolean } {
    return {
      queued: this.#queue.length,
      spooledBytes: this.#spool ? this.#spool.size - this.#spool.offset : 0,
      spooling: this.#spooling,
      full: this.#full,
    };
  }

  /** Resolves when every event emitted so far has been acknowledged by the collector. */
  drained(): Promise<void> {
    if (!this.#spooling && this.#queue.length === 0 && !this.#pumping) return Promise.resolve();
    this.#schedule(0);
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /** Stops sending; what is not delivered is kept in the spool for the next start. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    while (this.#pumping) await new Promise((r) => setTimeout(r, 10));
    if (this.#spool) {
      this.#toSpool(this.#queue.splice(0));
      closeSync(this.#spool.fd);
    }
  }

  #drop(count: number, reason: string) {
    this.#metrics.dropped.inc({ reason }, count);
    this.#options.logger.error(
      { events: count, reason },
      'session events dropped: the audit trail has a gap',
    );
  }

  #schedule(delayMs: number) {
    if (this.#stopped || this.#pumping) return;
    if (this.#timer && delayMs > 0) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#pump();
    }, delayMs).unref();
  }

  /** Moves lines to the end of the spool, as many as fit; returns the ones that did not. */
  #toSpool(lines: string[]): string[] {
    const spool = this.#spool!;
    let index = 0;
    const parts: string[] = [];
    let bytes = 0;
    for (; index < lines.length; index++) {
      const size = Buffer.byteLength(lines[index]!) + 1;
      if (spool.size + bytes + size > this.#options.maxSpoolBytes) break;
      parts.push(lines[index]!);
      bytes += size;
    }
    if (parts.length > 0) {
      writeSync(spool.fd, `${parts.join('\n')}\n`);
      spool.size += bytes;
      this.#metrics.spooled.set(spool.size - spool.offset);
    }
    return lines.slice(index);
  }

  #setFull(full: boolean) {
    if (full === this.#full) return;
    this.#full = full;
    this.#metrics.full.set(full ? 1 : 0);
    const { logger } = this.#options;
    if (full)
      logger.error(
        { policy: this.#options.onFull, maxSpoolBytes: this.#options.maxSpoolBytes },
        this.#options.onFull === 'fail-closed'
          ? 'audit spool full: refusing new sessions and requests until the collector catches up'
          : 'audit spool full: dropping session events until the collector catches up',
      );
    else logger.warn('audit spool has room again');
  }

  /** Spool mode: memory goes to the end of the spool; what does not fit stays, or is dropped. */
  #spoolQueue() {
    const rest = this.#toSpool(this.#queue);
    if (rest.length > 0 && this.#spool!.offset > 0 && !this.#readingSpool) {
      this.#compact();
      this.#queue = this.#toSpool(rest);
    } else this.#queue = rest;
    if (this.#queue.length > 0) {
      this.#setFull(true);
      if (this.#options.onFull === 'drop') this.#drop(this.#queue.splice(0).length, 'spool-full');
    }
  }

  /** Rewrites the spool without its delivered prefix. */
  #compact() {
    const spool = this.#spool!;
    const remaining = Buffer.alloc(spool.size - spool.offset);
    readSync(spool.fd, remaining, 0, remaining.length, spool.offset);
    closeSync(spool.fd);
    writeFileSync(spool.file, remaining);
    spool.fd = openSync(spool.file, 'a+');
    spool.size = remaining.length;
    spool.offset = 0;
    writeFileSync(spool.offsetFile, '0');
  }

  /** The next batch from the head of the spool, cut at a line end. */
  #readSpool(): { lines: string[]; bytes: number } {
    const spool = this.#spool!;
    const length = Math.min(spool.size - spool.offset, 1024 * 1024);
    const buffer = Buffer.alloc(length);
    readSync(spool.fd, buffer, 0, length, spool.offset);
    const end = buffer.lastIndexOf(0x0a);
    if (end < 0) return { lines: [], bytes: 0 };
    const lines = buffer.subarray(0, end).toString('utf8').split('\n').slice(0, this.#options.batchSize);
    const bytes = lines.reduce((sum, line) => sum + Buffer.byteLength(line) + 1, 0);
    return { lines, bytes };
  }

  async #pump(): Promise<void> {
    if (this.#pumping || this.#stopped) return;
    this.#pumping = true;
    try {
      while (!this.#stopped) {
        let lines: string[];
        let fromSpool = 0;
        if (this.#spooling) {
          this.#spoolQueue();
          const spool = this.#spool!;
          if (spool.offset >= spool.size) {
            // Drained: back to memory mode with an empty file.
            this.#compact();
            this.#spooling = false;
            this.#setFull(this.#queue.length >= this.#options.maxQueued);
            continue;
          }
          ({ lines, bytes: fromSpool } = this.#readSpool());
        } else {
          if (this.#queue.length === 0) break;
          lines = this.#queue.slice(0, this.#options.batchSize);
        }
        this.#readingSpool = fromSpool > 0;
        const sent = await this.#send(lines).finally(() => {
          this.#readingSpool = false;
        });
        if (sent.ok || sent.rejected) {
          this.#failures = 0;
          if (!sent.ok) this.#drop(lines.length, 'rejected');
          else {
            const refused = sent.refusedEvents ?? 0;
            this.#metrics.delivered.inc(lines.length - refused);
            if (refused > 0) this.#drop(refused, 'rejected');
          }
          if (fromSpool > 0) {
            const spool = this.#spool!;
            spool.offset += fromSpool;
            writeFileSync(spool.offsetFile, String(spool.offset));
            this.#metrics.spooled.set(spool.size - spool.offset);
            if (this.#full) this.#spoolQueue();
          } else this.#queue.splice(0, lines.length);
          if (!this.#spooling && this.#full && this.#queue.length < this.#options.maxQueued)
            this.#setFull(false);
          if (this.#spooling && this.#full && this.#queue.length === 0) this.#setFull(false);
          continue;
        }
        if (this.#failures++ === 0)
          this.#options.logger.warn(
            { detail: sent.detail },
            'the collector is unreachable; spooling session events',
          );
        if (this.#spool) {
          this.#spooling = true;
          this.#spoolQueue();
        } else if (this.#queue.length >= this.#options.maxQueued) this.#setFull(true);
        const delay = Math.min(100 * 2 ** Math.min(this.#failures, 6), 2_000);
        await new Promise((resolve) => setTimeout(resolve, delay).unref());
      }
    } finally {
      this.#pumping = false;
    }
    if (!this.#spooling && this.#queue.length === 0) for (const resolve of this.#idle.splice(0)) resolve();
    else this.#schedule(this.#options.flushMs);
  }

  async #credentials(): Promise<{ token: string; ca?: string }> {
    // The kubelet rotates the projected token: read it again every minute.
    if (!this.#token || Date.now() - this.#token.read > 60_000)
      this.#token = { value: (await readFile(this.#options.tokenFile, 'utf8')).trim(), read: Date.now() };
    if (this.#options.caFile && this.#ca === undefined)
      this.#ca = await readFile(this.#options.caFile, 'utf8');
    return { token: this.#token.value, ...(this.#ca !== undefined && { ca: this.#ca }) };
  }

  async #send(lines: string[]): Promise<Sent> {
    let credentials: { token: string; ca?: string };
    try {
      credentials = await this.#credentials();
    } catch (error) {
      return { ok: false, detail: `cannot read the token or CA: ${(error as Error).message}` };
    }
    const url = new URL(this.#options.url);
    const body = `${lines.join('\n')}\n`;
    const request = url.protocol === 'https:' ? https.request : http.request;
    return new Promise<Sent>((resolve) => {
      const req = request(
        url,
        {
          method: 'POST',
          timeout: 10_000,
          ...(credentials.ca && { ca: credentials.ca }),
          headers: {
            authorization: `Bearer ${credentials.token}`,
            'content-type': 'application/x-ndjson',
            'content-length': Buffer.byteLength(body),
          },
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (chunk) => {
            text += chunk;
          });
          res.on('end', () => {
            if (res.statusCode === 200) {
              const refused = refusedEvents(text);
              if (refused.length > 0)
                this.#options.logger.error(
                  { rejected: refused.slice(0, 10) },
                  'the collector refused events',
                );
              resolve({ ok: true, refusedEvents: refused.length });
            } else {
              if (res.statusCode === 401) this.#token = undefined;
              if (res.statusCode === 400)
                this.#options.logger.error({ detail: text.slice(0, 500) }, 'the collector rejected a batch');
              resolve({
                ok: false,
                rejected: res.statusCode === 400,
                detail: `${res.statusCode}: ${text.slice(0, 200)}`,
              });
            }
          });
          res.on('error', (error) => resolve({ ok: false, detail: error.message }));
        },
      );
      req.on('timeout', () => req.destroy(new Error('timed out')));
      req.on('error', (error) => resolve({ ok: false, detail: error.message }));
      req.end(body);
    });
  }
}

/** The events the collector's answer names as refused (none when the answer cannot be read). */
function refusedEvents(answer: string): unknown[] {
  try {
    const rejected = (JSON.parse(answer) as { rejected?: unknown }).rejected;
    return Array.isArray(rejected) ? rejected : [];
  } catch {
    return [];
  }
}
