// The collector: sidecars POST their session events to /v1/events as NDJSON, with the same
// pod-bound token they follow their bundle with. The identity on every stored event is the one
// the token proves, never the one in the body; ingest is idempotent by event id, so a sidecar
// that resends after a lost answer stores nothing twice.
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import type { Identity } from '../api/bundle.ts';
import type { AuditLog } from '../audit/log.ts';
import { type EventSink, type SessionEvent, sessionEventSchema } from '../sidecar/audit/event.ts';
import { Refusal, respondJson } from './control-api.ts';

export interface CollectorOptions {
  authenticate: (authorization: string | undefined) => Promise<Identity>;
  store: Pick<AuditLog, 'add'>;
  logger: Logger;
  registry?: Registry;
  /** Where stored events go next (SIEM webhooks, JSON logs): only events new to the store. */
  exports?: EventSink[];
  /** Largest accepted body. */
  maxBytes?: number;
  /** How long a verified token is trusted before the next TokenReview. */
  identityCacheMs?: number;
}

export interface CollectorAnswer {
  received: number;
  stored: number;
  duplicates: number;
}

class BadBatch extends Error {
  override name = 'BadBatch';
}

export function collector(
  options: CollectorOptions,
): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const { logger } = options;
  const maxBytes = options.maxBytes ?? 16 * 1024 * 1024;
  const cacheMs = options.identityCacheMs ?? 30_000;
  const registers = options.registry ? [options.registry] : [];
  const ingested = new Counter({
    name: 'airlock_collector_events_total',
    help: 'Session events received by the collector, by result (stored, duplicate).',
    labelNames: ['result'] as const,
    registers,
  });
  const refused = new Counter({
    name: 'airlock_collector_refusals_total',
    help: 'Event batches refused, by reason.',
    labelNames: ['reason'] as const,
    registers,
  });
  // A TokenReview and a pod read per batch would cap ingest at the API server's pace: a token
  // proven recently maps to its identity until the cache entry ages out.
  const identities = new Map<string, { identity: Identity; until: number }>();
  const identify = async (authorization: string | undefined): Promise<Identity> => {
    const key = createHash('sha256')
      .update(authorization ?? '')
      .digest('hex');
    const cached = identities.get(key);
    if (cached && cached.until > Date.now()) return cached.identity;
    const identity = await options.authenticate(authorization);
    if (identities.size > 10_000) identities.clear();
    identities.set(key, { identity, until: Date.now() + cacheMs });
    return identity;
  };

  return async (request, response) => {
    if (request.method !== 'POST') {
      respondJson(response, 405, { reason: 'MethodNotAllowed', message: 'POST NDJSON session events' });
      return;
    }
    let identity: Identity;
    try {
      identity = await identify(request.headers.authorization);
    } catch (error) {
      const refusal =
        error instanceof Refusal ? error : new Refusal('TokenRejected', 'authentication failed', 503);
      if (!(error instanceof Refusal))
        logger.error({ err: String((error as Error)?.message) }, 'authentication error');
      refused.inc({ reason: refusal.reason });
      logger.warn({ reason: refusal.reason, message: refusal.message }, 'event batch refused');
      request.resume();
      respondJson(response, refusal.status, { reason: refusal.reason, message: refusal.message });
      return;
    }
    let events: SessionEvent[];
    try {
      events = parseBatch(await readBody(request, maxBytes), identity);
    } catch (error) {
      if (!(error instanceof BadBatch)) throw error;
      refused.inc({ reason: 'BadBatch' });
      logger.warn({ identity, message: error.message }, 'event batch refused');
      respondJson(response, 400, { reason: 'BadBatch', message: error.message });
      return;
    }
    const stored = await options.store.add(events);
    const answer: CollectorAnswer = {
      received: events.length,
      stored: stored.length,
      duplicates: events.length - stored.length,
    };
    ingested.inc({ result: 'stored' }, answer.stored);
    ingested.inc({ result: 'duplicate' }, answer.duplicates);
    for (const sink of options.exports ?? []) for (const event of stored) sink.emit(event);
    respondJson(response, 200, answer);
  };
}

/** Parses and validates an NDJSON batch, stamping the proven identity on every event. */
export function parseBatch(body: string, identity: Identity): SessionEvent[] {
  const events: SessionEvent[] = [];
  const lines = body.split('\n');
  for (const [index, line] of lines.entries()) {
    if (line.trim() === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      throw new BadBatch(`line ${index + 1}: not JSON`);
    }
    const parsed = sessionEventSchema.safeParse(value);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new BadBatch(`line ${index + 1}: ${issue.path.join('.') || 'event'}: ${issue.message}`);
    }
    // The token says who sent it; whatever the body claims is replaced, not merged.
    const stamped = {
      ...parsed.data,
      identity: {
        namespace: identity.namespace,
        serviceAccount: identity.serviceAccount,
        ...(identity.pod && { pod: identity.pod }),
      },
    };
    events.push(stamped as SessionEvent);
  }
  return events;
}

function readBody(request: IncomingMessage, maxBytes: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    request.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBytes) {
        reject(new BadBatch(`the batch is larger than ${maxBytes} bytes`));
        request.destroy();
        return;
      }
      chunks.push(chunk);
    });
    request.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    request.on('error', reject);
  });
}
