// Recorded traffic re-decided under changed policies: every recorded statement, command and
// HTTP request of a period, decided again by the evaluator the enforcers call, compared with
// what was decided when it ran. What `mode: audit` gives going forward, given backward over
// history. Reads the store page by page and keeps only counts and a few examples per rule, so
// memory stays bounded whatever the number of events.
import type { BundleConnection, BundleSources, Identity } from '../api/bundle.ts';
import type { RequestEvent, SessionEvent } from '../api/events.ts';
import type { SessionSummary, StoredEvent } from '../audit/store.ts';
import type { Decision } from '../sidecar/policy/decide.ts';
import {
  decide,
  grantedConnection,
  type Mask,
  PolicyInputError,
  type PolicyRequest,
  redisCommandLine,
} from './evaluate.ts';

export type Change = 'newly-denied' | 'newly-held' | 'newly-masked' | 'no-longer-denied' | 'no-longer-held';

export interface ChangeGroup {
  change: Change;
  /** The rule that now decides (newly-*), or that decided when it ran (no-longer-*). */
  policy?: string;
  rule?: string;
  count: number;
  /** Up to examplesPerGroup distinct texts, as recorded (values masked at record time). */
  examples: string[];
}

export interface ReplayReport {
  since?: string;
  connection?: string;
  /** Events read from the store, and the requests among them that were decided again. */
  events: number;
  requests: number;
  /** Requests that could not be decided again, by why. */
  skipped: Record<string, number>;
  unchanged: number;
  changes: ChangeGroup[];
}

export interface ReplayOptions {
  sources: BundleSources;
  since?: Date;
  connection?: string;
  examplesPerGroup?: number;
  /** Called about every progressEveryMs with what was read so far. */
  onProgress?: (progress: { events: number; requests: number; at: string }) => void;
  progressEveryMs?: number;
}

type Action = Decision['action'];

/** What the enforcer did with a recorded request, as a decision. */
export function recordedAction(event: RequestEvent): Action {
  switch (event.outcome) {
    case 'blocked':
      return 'deny';
    case 'approved':
    case 'denied':
    case 'expired':
      return 'require-approval';
    default:
      return 'allow';
  }
}

/** The request as the evaluator takes it, or why it cannot be decided again from its record. */
export function requestOf(event: RequestEvent): PolicyRequest | { skip: string } {
  switch (event.connection.protocol) {
    case 'postgres':
      // A fast-path FunctionCall names a function by OID: there is no SQL to decide.
      return event.text.startsWith('FunctionCall ') ? { skip: 'postgres FunctionCall' } : { sql: event.text };
    case 'ssh':
      return event.kind === 'exec' ? { command: event.text } : { skip: `ssh ${event.kind ?? 'request'}` };
    case 'http':
      if (event.kind !== 'http') return { skip: `http ${event.kind ?? 'request'}` };
      // "POST (as DELETE) /x": the methods an override named were decided too, from headers or
      // a body the record does not keep.
      if (event.text.includes(' (as ')) return { skip: 'http requests with method overrides' };
      return /^[A-Z]+ \/\S*$/.test(event.text)
        ? { http: event.text }
        : { skip: 'http requests not recorded as METHOD /path' };
    case 'redis':
      return redisRequestOf(event.text);
    case 'mcp':
      if (!event.kind?.startsWith('mcp-')) return { skip: `mcp ${event.kind ?? 'request'}` };
      // Cut at the event text's bound: the arguments are not all there to decide on.
      return event.text.endsWith('…') ? { skip: 'mcp requests recorded cut short' } : { mcp: event.text };
    case 'kubernetes':
      // Recorded as read (verb, resource, name, namespace), which does not say the URL again.
      return { skip: 'kubernetes requests (recorded as read, not as sent)' };
    default:
      return { skip: `${event.connection.protocol} (no request rules)` };
  }
}

/**
 * A Redis command as its event writes it (sidecar/redis/command-text.ts): the name, then each
 * argument bare or as a JSON string; a hidden argument is `?`, which keeps the keys' places.
 */
function redisRequestOf(text: string): PolicyRequest | { skip: string } {
  // The session's own events (the connect, the agent's swallowed AUTH) are not commands.
  if (/^(connect\b|AUTH$)/.test(text)) return { skip: 'redis connects and AUTH' };
  if (text.startsWith('MULTI; ')) return { skip: 'redis transactions' };
  if (text.includes('…')) return { skip: 'redis commands recorded cut short' };
  const words = text.match(/"(?:[^"\\]|\\.)*"|\S+/g) ?? [];
  const argv = words.map((word) => (word.startsWith('"') ? (JSON.parse(word) as string) : word));
  return { redis: redisCommandLine(argv) };
}

/** A recorded event, and where the reading is, for progress reports. */
export interface ReadEvent {
  event: SessionEvent;
  at: string;
}

/** Every stored event, in chain order, one page in memory at a time. */
export async function* storedEvents(
  store: { head(): Promise<number>; eventsAfter(position: number, limit: number): Promise<StoredEvent[]> },
  pageSize: number,
): AsyncGenerator<ReadEvent> {
  const head = await store.head();
  let position = 0;
  for (;;) {
    const page = await store.eventsAfter(position, pageSize);
    if (page.length === 0) return;
    for (const stored of page) yield { event: stored.event, at: `position ${stored.position} of ${head}` };
    position = page.at(-1)!.position;
  }
}

/** What the cluster's sessions API serves, as `airlock sessions` reads it. */
export interface SessionSource {
  each(pageSize?: number): AsyncIterable<SessionSummary>;
  get(id: string, namespace?: string): Promise<{ events: SessionEvent[] } | undefined>;
}

/**
 * Every event of the sessions the caller may read, one session in memory at a time. Sessions
 * come newest first; one that ended before `since` has nothing to replay and is not fetched.
 */
export async function* clusterEvents(
  source: SessionSource,
  since: Date | undefined,
): AsyncGenerator<ReadEvent> {
  let read = 0;
  for await (const summary of source.each()) {
    read++;
    if (since && summary.ended && Date.parse(summary.ended) < since.getTime()) continue;
    const session = await source.get(summary.id, summary.namespace);
    for (const event of session?.events ?? []) yield { event, at: `session ${read}` };
  }
}

export async function replay(
  events: AsyncIterable<ReadEvent>,
  options: ReplayOptions,
): Promise<ReplayReport> {
  const examplesPerGroup = options.examplesPerGroup ?? 3;
  const report: ReplayReport = {
    ...(options.since && { since: options.since.toISOString() }),
    ...(options.connection && { connection: options.connection }),
    events: 0,
    requests: 0,
    skipped: {},
    unchanged: 0,
    changes: [],
  };
  const groups = new Map<string, ChangeGroup>();
  const note = (change: Change, text: string, policy?: string, rule?: string) => {
    const key = `${change}\u0000${policy ?? ''}\u0000${rule ?? ''}`;
    let group = groups.get(key);
    if (!group) {
      group = { change, ...(policy && { policy }), ...(rule && { rule }), count: 0, examples: [] };
      groups.set(key, group);
    }
    group.count++;
    const example = text.replace(/\s+/g, ' ').trim().slice(0, 200);
    if (group.examples.length < examplesPerGroup && !group.examples.includes(example))
      group.examples.push(example);
  };
  const skip = (why: string) => {
    report.skipped[why] = (report.skipped[why] ?? 0) + 1;
  };
  // Bundles per identity and Connection; identities are few, but the cache is bounded anyway.
  const connections = new Map<string, BundleConnection | string>();
  const since = options.since?.getTime();
  let lastProgress = Date.now();
  for await (const { event, at } of events) {
    report.events++;
    if (options.onProgress && Date.now() - lastProgress >= (options.progressEveryMs ?? 2000)) {
      lastProgress = Date.now();
      options.onProgress({ events: report.events, requests: report.requests, at });
    }
    if (event.type !== 'request') continue;
    if (since !== undefined && Date.parse(event.time) < since) continue;
    if (options.connection && event.connection.name !== options.connection) continue;
    report.requests++;
    const request = requestOf(event);
    if ('skip' in request) {
      skip(request.skip);
      continue;
    }
    const identity: Identity = {
      namespace: event.identity.namespace,
      serviceAccount: event.identity.serviceAccount,
      ...(event.identity.user !== undefined && {
        user: event.identity.user,
        groups: event.identity.groups ?? [],
      }),
    };
    const key = `${identity.namespace}\u0000${identity.serviceAccount}\u0000${identity.user ?? ''}\u0000${(identity.groups ?? []).join(',')}\u0000${event.connection.name}`;
    let connection = connections.get(key);
    if (connection === undefined) {
      try {
        connection = grantedConnection(options.sources, identity, event.connection.name);
      } catch (error) {
        if (!(error instanceof PolicyInputError)) throw error;
        connection = error.message;
      }
      if (connections.size >= 1024) connections.clear();
      connections.set(key, connection);
    }
    if (typeof connection === 'string') {
      // Not in the manifests given (or not compilable): nothing to decide it with.
      skip(connection);
      continue;
    }
    let decision: Decision;
    let masks: Mask[];
    try {
      ({ decision, masks } = await decide(connection, identity, request));
    } catch (error) {
      if (!(error instanceof PolicyInputError)) throw error;
      skip(error.message);
      continue;
    }
    const before = recordedAction(event);
    const after = decision.action;
    const now = { policy: decision.policy, rule: decision.rule };
    const then = { policy: event.policy, rule: event.rule };
    if (after === 'deny' && before !== 'deny') note('newly-denied', event.text, now.policy, now.rule);
    else if (after === 'require-approval' && before === 'allow')
      note('newly-held', event.text, now.policy, now.rule);
    else if (before === 'deny' && after !== 'deny')
      note('no-longer-denied', event.text, then.policy, then.rule);
    else if (before === 'require-approval' && after === 'allow')
      note('no-longer-held', event.text, then.policy, then.rule);
    else {
      const masked = after === 'allow' && before === 'allow' ? newlyMasked(event, masks) : [];
      for (const mask of masked)
        note('newly-masked', `${mask.column}: ${event.text}`, mask.policy, mask.rule);
      if (masked.length === 0) report.unchanged++;
    }
  }
  report.changes = [...groups.values()].sort(
    (a, b) =>
      a.change.localeCompare(b.change) || b.count - a.count || (a.rule ?? '').localeCompare(b.rule ?? ''),
  );
  return report;
}

/**
 * Column masks the new policies would apply that the record shows no value masked under. A
 * statement that returned no rows masked nothing either way, so it tells nothing.
 */
function newlyMasked(event: RequestEvent, masks: Mask[]): Mask[] {
  if (event.rows === 0) return [];
  const maskedGlobs = new Set(Object.keys(event.masked ?? {}).map((key) => key.slice(key.indexOf('/') + 1)));
  return masks.filter((m) => m.glob !== undefined && !maskedGlobs.has(m.glob));
}
