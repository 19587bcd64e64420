// `airlock sessions`, `airlock approvals`, `airlock approve`, `airlock deny` for local mode:
// through the running `airlock local` when there is one, else straight from the store. Approvals
// go to the cluster's AccessRequests, and sessions to its sessions API, instead when
// cli/cluster.ts says so (kubectl airlock).
import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import type { SessionEvent } from '../api/events.ts';
import { AuditStore, type SessionList, type SessionSummary, sessionList } from '../audit/store.ts';
import {
  clusterOptions,
  clusterSessions,
  decideInCluster,
  listInCluster,
  localRunningAt,
  usesCluster,
} from '../cli/cluster.ts';
import { table } from '../cli/table.ts';
import type { PendingApproval } from './approvals.ts';
import { callControl, controlSocket, defaultStore } from './control.ts';

function options(args: string[]) {
  return parseArgs({
    args,
    options: {
      store: { type: 'string' },
      output: { type: 'string', short: 'o' },
      reason: { type: 'string' },
      speed: { type: 'string' },
      limit: { type: 'string' },
      asciicast: { type: 'string' },
      ...clusterOptions,
    },
    allowPositionals: true,
    strict: true,
  });
}

async function fromStoreOrProcess<T>(
  store: string,
  path: string,
  direct: (s: AuditStore) => Promise<T>,
): Promise<T> {
  const viaProcess = await callControl<T>(controlSocket(store), 'GET', path);
  if (viaProcess) {
    if (viaProcess.status !== 200)
      throw new Error((viaProcess.body as { message?: string })?.message ?? `status ${viaProcess.status}`);
    return viaProcess.body;
  }
  const opened = await AuditStore.open(store);
  try {
    return await direct(opened);
  } finally {
    await opened.close();
  }
}

const clock = (iso: string) => iso.slice(11, 23);

/** How many of the newest sessions `sessions list` shows, unless --limit says otherwise. */
const defaultListLimit = 100;
const maxListLimit = 10_000;

export function renderSession(summary: SessionSummary, events: SessionEvent[]): string {
  const lines = [
    `session ${summary.id}`,
    `  connection ${summary.namespace}/${summary.connection} (${summary.protocol}) as ${summary.identity}${summary.user ? ` acting for ${summary.user}` : ''}`,
    `  started ${summary.started}${summary.ended ? `, ended ${summary.ended}` : ', open'}; ${summary.requests} requests, ${summary.blocked} blocked, ${summary.masked} values masked`,
    '',
  ];
  for (const event of events) {
    if (event.type === 'session.start')
      lines.push(`${clock(event.time)}  connected from ${event.client.address}`);
    else if (event.type === 'session.end') lines.push(`${clock(event.time)}  ended: ${event.reason}`);
    else if (event.type === 'protocol.error')
      lines.push(`${clock(event.time)}  protocol error ${event.code}: ${event.message}`);
    else if (event.type === 'request') {
      const details = [
        event.rows !== undefined ? `${event.rows} rows` : '',
        event.masked && Object.keys(event.masked).length
          ? `masked ${Object.entries(event.masked)
              .map(([k, v]) => `${k}=${v}`)
              .join(' ')}`
          : '',
        event.rule ? `rule ${event.policy ?? ''}/${event.rule}` : '',
        event.approval?.decidedBy ? `decided by ${event.approval.decidedBy}` : '',
        event.wouldHave?.length
          ? `audit: would ${event.wouldHave.map((w) => `${w.action} (${w.policy}/${w.rule ?? ''})`).join(', ')}`
          : '',
        event.error ? `error ${event.error.code}` : '',
      ].filter(Boolean);
      lines.push(
        `${clock(event.time)}  ${event.outcome.padEnd(8)}  ${event.text.replace(/\s+/g, ' ').slice(0, 100)}${details.length ? `  [${details.join('; ')}]` : ''}`,
      );
    }
  }
  return lines.join('\n');
}

/** Where sessions are read: the cluster's sessions API, the running `airlock local`, or its store. */
function sessionSource(values: ReturnType<typeof options>['values']) {
  if (inCluster(values)) return clusterSessions(values);
  const store = values.store ?? defaultStore();
  return {
    // One more than asked for tells whether older sessions exist.
    list: async (limit: number): Promise<SessionList> => {
      const sessions = await fromStoreOrProcess(
        store,
        `/sessions?limit=${limit + 1}`,
        async (s) => (await s.sessions({ limit: limit + 1 })).sessions,
      );
      return sessionList(sessions, limit);
    },
    get: (id: string) =>
      fromStoreOrProcess(store, `/sessions/${encodeURIComponent(id)}`, (s) => s.session(id)),
  };
}

export async function sessionsCommand(args: string[]): Promise<number> {
  const { values, positionals } = options(args);
  const json = values.output === 'json';
  const [verb, id] = positionals;
  const usage =
    'Usage: airlock sessions list [--limit N] | show|replay ID [-o json] [--speed N] [--asciicast FILE] [--store DIR|URL | -n NS|-A [--kubeconfig PATH]]';
  const limit = Number(values.limit ?? defaultListLimit);
  if (
    !(verb === 'list' || ((verb === 'show' || verb === 'replay') && id)) ||
    !Number.isInteger(limit) ||
    limit < 1 ||
    limit > maxListLimit
  ) {
    console.error(usage);
    return 2;
  }
  const source = sessionSource(values);
  try {
    if (verb === 'list') {
      const { sessions, more } = await source.list(limit);
      if (more)
        console.error(`showing the newest ${limit}; older sessions exist (--limit N, up to ${maxListLimit})`);
      if (json) console.log(JSON.stringify(sessions, null, 2));
      else if (sessions.length === 0) console.log('no sessions recorded');
      else
        console.log(
          table([
            ['SESSION', 'CONNECTION', 'IDENTITY', 'STARTED', 'REQUESTS', 'BLOCKED', 'MASKED', 'END USER'],
            ...sessions.map((s) => [
              s.id,
              s.connection,
              s.identity,
              s.started,
              String(s.requests),
              String(s.blocked),
              String(s.masked),
              s.user ?? '-',
            ]),
          ]),
        );
      return 0;
    }
    const session = await source.get(id!);
    if (!session) {
      console.error(`airlock sessions: no session ${id}`);
      return 1;
    }
    if (verb === 'show') {
      console.log(json ? JSON.stringify(session, null, 2) : renderSession(session.summary, session.events));
      return 0;
    }
    const cast = asciicast(session.summary, session.events);
    if (!cast) {
      // A session without terminal data (SQL, HTTP, exec) replays as its timeline.
      console.log(renderSession(session.summary, session.events));
      return 0;
    }
    if (values.asciicast) {
      await writeFile(values.asciicast, cast.map((line) => JSON.stringify(line)).join('\n') + '\n');
      console.log(`wrote ${values.asciicast} (asciicast v2, ${cast.length - 1} events)`);
      return 0;
    }
    await play(cast, Number(values.speed ?? 1));
    return 0;
  } catch (error) {
    console.error(`airlock sessions: ${(error as Error).message}`);
    return 1;
  }
}

type CastLine = Record<string, unknown> | [number, 'i' | 'o', string];

/** The session's terminal data as asciicast v2: a header, then [seconds, "i"|"o", data]. */
export function asciicast(summary: SessionSummary, events: SessionEvent[]): CastLine[] | undefined {
  const frames = events.filter((e) => e.type === 'data');
  if (frames.length === 0) return undefined;
  return [
    {
      version: 2,
      width: 80,
      height: 24,
      timestamp: Math.floor(Date.parse(summary.started) / 1000),
      title: `${summary.connection} as ${summary.identity}`,
    },
    ...frames.map((e): CastLine => [e.at, e.stream === 'input' ? 'i' : 'o', e.data]),
  ];
}

/** Plays the output frames in the terminal at their pace (long pauses shortened to 2 s). */
async function play(cast: CastLine[], speed: number): Promise<void> {
  let previous = 0;
  for (const line of cast.slice(1) as [number, 'i' | 'o', string][]) {
    const [at, kind, data] = line;
    const pause = Math.min(Math.max(at - previous, 0), 2) / (speed > 0 ? speed : 1);
    previous = at;
    if (pause > 0) await new Promise((resolve) => setTimeout(resolve, pause * 1000));
    if (kind === 'o') process.stdout.write(data);
  }
  process.stdout.write('\n');
}

const inCluster = (values: ReturnType<typeof options>['values']) =>
  usesCluster(values, process.env, process.argv[1] ?? '', localRunningAt(controlSocket(defaultStore())));

export async function approvalsCommand(args: string[]): Promise<number> {
  const { values, positionals } = options(args);
  if (positionals[0] !== 'list') {
    console.error(
      'Usage: airlock approvals list [-o json] [--store DIR|URL | -n NS|-A [--all] [--kubeconfig PATH]]',
    );
    return 2;
  }
  if (inCluster(values)) return listInCluster(values);
  const response = await callControl<PendingApproval[]>(
    controlSocket(values.store ?? defaultStore()),
    'GET',
    '/approvals',
  );
  if (!response) {
    console.error('airlock approvals: no running `airlock local` uses this store');
    return 1;
  }
  if (values.output === 'json') console.log(JSON.stringify(response.body, null, 2));
  else if (response.body.length === 0) console.log('no requests waiting for approval');
  else
    console.log(
      table([
        ['ID', 'CONNECTION', 'POLICY/RULE', 'EXPIRES', 'END USER', 'REQUEST'],
        ...response.body.map((p) => [
          p.id,
          p.request.connection,
          `${p.request.policy}/${p.request.rule}`,
          p.expiresAt,
          // The person the held request acts for: the approver decides for them, not only the agent.
          p.request.endUser?.user ?? '',
          p.request.text.replace(/\s+/g, ' ').slice(0, 80),
        ]),
      ]),
    );
  return 0;
}

export function decideCommand(decision: 'approve' | 'deny') {
  return async (args: string[]): Promise<number> => {
    const { values, positionals } = options(args);
    const [id] = positionals;
    if (!id) {
      console.error(
        `Usage: airlock ${decision} ID [--reason TEXT] [--store DIR|URL | -n NS [--kubeconfig PATH]]`,
      );
      return 2;
    }
    if (inCluster(values)) return decideInCluster(decision, id, values.reason, values);
    const response = await callControl<{ message?: string }>(
      controlSocket(values.store ?? defaultStore()),
      'POST',
      `/approvals/${encodeURIComponent(id)}/${decision}`,
      values.reason === undefined ? {} : { reason: values.reason },
    );
    if (!response) {
      console.error(`airlock ${decision}: no running \`airlock local\` uses this store`);
      return 1;
    }
    if (response.status !== 200) {
      console.error(`airlock ${decision}: ${response.body?.message ?? `status ${response.status}`}`);
      return 1;
    }
    console.log(`${id} ${decision === 'approve' ? 'approved' : 'denied'}`);
    return 0;
  };
}
