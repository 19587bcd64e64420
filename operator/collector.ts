// The collector: sidecars POST their session events to /v1/events as NDJSON, with the same
// pod-bound token they follow their bundle with. The workload on every stored event is the one
// the token proves, never the one in the body (the person it acted for is the one its sidecar
// verified); ingest is idempotent by event id, so a sidecar
// that resends after a lost answer stores nothing twice.
import { createHash } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import type { Identity } from '../api/bundle.ts';
import type { EventSink, SessionEvent } from '../api/events.ts';
import { sessionEventSchema } from '../api/events-schema.ts';
import { type AuditLog, openAuditLog } from '../audit/log.ts';
import { loadKey } from '../audit/settings.ts';
import { isPostgresUrl } from '../audit/store.ts';
import { jsonLogExport, WebhookExport, type WebhookFormat } from '../audit/webhook.ts';
import { Counter, type Registry } from '../metrics/registry.ts';
import { Refusal, respondJson } from './control-api.ts';

export interface CollectorOptions {
  authenticate: (authorization: string | undefined) => Promise<Identity>;
  store: Pick<AuditLog, 'add'>;
  logger: Logger;
  registry?: Registry;
  /** Where stored events go next (JSON logs): only events new to the store. */
  exports?: EventSink[];
  /** Called after a batch stored new events (the webhook exports read them from the store). */
  onStored?: () => void;
  /** Largest accepted body. */
  maxBytes?: number;
  /** How long a verified token is trusted before the next TokenReview. */
  identityCacheMs?: number;
}

export interface CollectorAnswer {
  received: number;
  stored: number;
  duplicates: number;
  /** Lines refused alone (not JSON, or not an event the schema knows): the rest are stored. */
  rejected: { line: number; message: string }[];
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
  const ingested = new Counter({
    name: 'airlock_collector_events_total',
    help: 'Session events received by the collector, by result (stored, duplicate).',
    labelNames: ['result'],
    registry: options.registry,
  });
  const refused = new Counter({
    name: 'airlock_collector_refusals_total',
    help: 'Event batches refused, by reason.',
    labelNames: ['reason'],
    registry: options.registry,
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
    let batch: Batch;
    try {
      batch = parseBatch(await readBody(request, maxBytes), identity);
    } catch (error) {
      if (!(error instanceof BadBatch)) throw error;
      refused.inc({ reason: 'BadBatch' });
      logger.warn({ identity, message: error.message }, 'event batch refused');
      respondJson(response, 400, { reason: 'BadBatch', message: error.message });
      return;
    }
    const { events, rejected } = batch;
    if (rejected.length > 0) {
      refused.inc({ reason: 'BadEvent' }, rejected.length);
      logger.warn({ identity, rejected: rejected.slice(0, 10) }, 'malformed session events refused');
    }
    const stored = await options.store.add(events);
    const answer: CollectorAnswer = {
      received: events.length + rejected.length,
      stored: stored.length,
      duplicates: events.length - stored.length,
      rejected,
    };
    ingested.inc({ result: 'stored' }, answer.stored);
    ingested.inc({ result: 'duplicate' }, answer.duplicates);
    for (const sink of options.exports ?? []) for (const event of stored) sink.emit(event);
    if (stored.length > 0) options.onStored?.();
    respondJson(response, 200, answer);
  };
}

interface Batch {
  events: SessionEvent[];
  rejected: CollectorAnswer['rejected'];
}

/**
 * Parses and validates an NDJSON batch, stamping the proven identity on every event. A line
 * that is not a valid event is refused alone: one bad event never costs the others.
 */
export function parseBatch(body: string, identity: Identity): Batch {
  const events: SessionEvent[] = [];
  const rejected: Batch['rejected'] = [];
  const lines = body.split('\n');
  for (const [index, line] of lines.entries()) {
    if (line.trim() === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      rejected.push({ line: index + 1, message: 'not JSON' });
      continue;
    }
    const parsed = sessionEventSchema.safeParse(value);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      rejected.push({ line: index + 1, message: `${issue.path.join('.') || 'event'}: ${issue.message}` });
      continue;
    }
    // The token says which workload sent it; whatever the body claims is replaced, not merged.
    // The person it acted for is the one its sidecar verified (only the sidecar saw their
    // token), as approvals take it from the sidecar too.
    const { user, groups } = parsed.data.identity;
    const stamped = {
      ...parsed.data,
      identity: {
        namespace: identity.namespace,
        serviceAccount: identity.serviceAccount,
        ...(identity.pod && { pod: identity.pod }),
        ...(user !== undefined && { user, ...(groups && { groups }) }),
      },
    };
    events.push(stamped);
  }
  return { events, rejected };
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

export interface AuditSettings {
  /** A postgres:// URL, or a directory for the embedded store. */
  store: string;
  /** HMAC key for the checkpoints; for a directory store, made beside it when absent. */
  keyFile?: string;
  /** Prune events older than this many milliseconds, hourly. */
  retentionMs?: number;
  webhooks: string[];
  webhookFormat: WebhookFormat;
  jsonLogs: boolean;
}

export interface RunningCollector {
  handler: (req: IncomingMessage, res: ServerResponse) => Promise<void>;
  /** The store, opened on first use, for reading sessions back. */
  log(): Promise<AuditLog>;
  close(): Promise<void>;
}

/**
 * The collector as the operator runs it. The store opens on first use (a batch, a session read,
 * or, with export webhooks, the export looking for events stored but not yet delivered), not
 * before: an operator that is never used and exports nothing never touches it. An embedded
 * store belongs to one process: a lock file beside it refuses a second one (the sidecars spool
 * meanwhile).
 */
export function runCollector(
  settings: AuditSettings,
  context: {
    authenticate: CollectorOptions['authenticate'];
    logger: Logger;
    registry?: Registry;
    /**
     * Whether this replica leads. On PostgreSQL only the leader exports, so one exporter per
     * sink runs at a time. The operator's Lease rather than a PostgreSQL advisory lock: it is
     * already there, moves within a lease (15 s) when a replica dies and at once when one stops
     * cleanly, and needs no connection held open for a session-level lock (which a
     * transaction-pooling PgBouncer would not keep). An old leader that has not yet noticed its
     * loss may send a batch the new one sends too: at least once either way, and the cursor
     * only moves forward. The embedded store has one replica, which always exports.
     */
    isLeader?: () => boolean;
  },
): RunningCollector {
  const { logger } = context;
  const embedded = !isPostgresUrl(settings.store);
  let opening: Promise<AuditLog> | undefined;
  let lock: string | undefined;
  let pruning: NodeJS.Timeout | undefined;
  const open = async (): Promise<AuditLog> => {
    if (embedded) {
      await mkdir(dirname(settings.store), { recursive: true });
      lock = await takeLock(`${settings.store}.lock`);
    }
    const keyFile = settings.keyFile ?? (embedded ? `${settings.store}.key` : undefined);
    const key = keyFile ? await loadKey(keyFile, true) : undefined;
    if (!key) logger.warn('no --audit-key: checkpoints are unsigned, and a cut tail would go unnoticed');
    // The operator has no data path to keep free: a PostgreSQL store runs inline, as it did.
    const log = await openAuditLog(settings.store, { ...(key && { key }), inline: true });
    logger.info({ store: embedded ? settings.store : 'postgres', signed: Boolean(key) }, 'audit store open');
    if (settings.retentionMs) {
      const prune = () =>
        log
          .prune(new Date(Date.now() - settings.retentionMs!))
          .then((r) => r.pruned > 0 && logger.info(r, 'audit events past retention pruned'))
          .catch((error) => logger.error({ err: (error as Error).message }, 'audit pruning failed'));
      void prune();
      pruning = setInterval(prune, 3_600_000).unref();
    }
    return log;
  };
  const log = (): Promise<AuditLog> => {
    opening ??= open().catch(async (error) => {
      opening = undefined;
      // Not opened (an earlier release's store to migrate, say): the next use tries again.
      if (lock) await rm(lock, { force: true });
      lock = undefined;
      throw error;
    });
    return opening;
  };
  const store: Pick<AuditLog, 'add'> = { add: async (events) => (await log()).add(events) };
  const isLeader = context.isLeader;
  const webhooks = settings.webhooks.map(
    (url) =>
      new WebhookExport({
        url,
        format: settings.webhookFormat,
        store: log,
        ...(!embedded && isLeader && { active: isLeader }),
        logger,
        ...(context.registry && { registry: context.registry }),
      }),
  );
  for (const webhook of webhooks) webhook.start();
  const handler = collector({
    authenticate: context.authenticate,
    store,
    logger,
    exports: settings.jsonLogs ? [jsonLogExport()] : [],
    onStored: () => {
      for (const webhook of webhooks) webhook.wake();
    },
    ...(context.registry && { registry: context.registry }),
  });
  return {
    handler,
    log,
    async close() {
      clearInterval(pruning);
      await Promise.all(webhooks.map((webhook) => webhook.stop()));
      const log = await opening?.catch(() => undefined);
      await log?.close();
      if (lock) await rm(lock, { force: true });
    },
  };
}

/** A lock file holding our pid; one left by a process that is gone is taken over. */
async function takeLock(file: string): Promise<string> {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await writeFile(file, String(process.pid), { flag: 'wx' });
      return file;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const holder = Number(await readFile(file, 'utf8').catch(() => '0'));
      let alive = false;
      try {
        if (holder > 0) process.kill(holder, 0);
        alive = holder > 0;
      } catch {}
      if (alive) throw new Error(`the embedded audit store is in use by process ${holder} (${file})`);
      await rm(file, { force: true });
    }
  }
  throw new Error(`cannot lock ${file}`);
}
