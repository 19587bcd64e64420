// `kubectl airlock approve|deny|approvals list|sessions` against a cluster: AccessRequests read
// and decided, and recorded sessions read (the operator's aggregated sessions API), with the
// caller's own kubeconfig, so the API server knows who decides or reads (the admission webhook
// records it, RBAC authorizes it; nothing here claims it).
//
// Which side a command talks to: the cluster when the CLI runs as the kubectl plugin
// (kubectl-airlock), or when -n/--namespace, --kubeconfig, --context or -A is given, or when
// KUBECONFIG is set and neither --store is given nor an `airlock local` is running on the default
// store. Otherwise `airlock local`, as before.
import { existsSync } from 'node:fs';
import { basename } from 'node:path';
import { CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import type { SessionEvent } from '../api/events.ts';
import type { AccessRequest } from '../api/v1alpha1.ts';
import { group, version } from '../api/v1alpha1.ts';
import { type SessionList, type SessionSummary, sessionList } from '../audit/store.ts';
import { type Session, sessionSummary, sessionsGroup, sessionsVersion } from '../operator/sessions-api.ts';
import { table } from './table.ts';

export interface ClusterFlags {
  namespace?: string | undefined;
  kubeconfig?: string | undefined;
  context?: string | undefined;
  'all-namespaces'?: boolean | undefined;
  store?: string | undefined;
}

export const clusterOptions = {
  namespace: { type: 'string', short: 'n' },
  kubeconfig: { type: 'string' },
  context: { type: 'string' },
  'all-namespaces': { type: 'boolean', short: 'A' },
  all: { type: 'boolean' },
} as const;

export function usesCluster(
  flags: ClusterFlags,
  env: NodeJS.ProcessEnv,
  argv0: string,
  localRunning: () => boolean,
): boolean {
  if (basename(argv0).startsWith('kubectl-airlock')) return true;
  if (flags.namespace || flags.kubeconfig || flags.context || flags['all-namespaces']) return true;
  if (flags.store) return false;
  return Boolean(env.KUBECONFIG) && !localRunning();
}

export function localRunningAt(socket: string): () => boolean {
  return () => existsSync(socket);
}

interface Cluster {
  api: CustomObjectsApi;
  namespace: string;
}

function connect(flags: ClusterFlags): Cluster {
  const config = new KubeConfig();
  if (flags.kubeconfig) config.loadFromFile(flags.kubeconfig);
  else config.loadFromDefault();
  if (flags.context) config.setCurrentContext(flags.context);
  const namespace =
    flags.namespace ?? config.getContextObject(config.getCurrentContext())?.namespace ?? 'default';
  return { api: config.makeApiClient(CustomObjectsApi), namespace };
}

/** The API server's message for a refused call: the webhook's words, not the whole response. */
function message(error: unknown): string {
  const body = (error as { body?: unknown }).body;
  try {
    const parsed = typeof body === 'string' ? JSON.parse(body) : body;
    if (parsed && typeof parsed === 'object' && 'message' in parsed) return String(parsed.message);
  } catch {}
  const text = String((error as Error)?.message ?? error);
  return /"message":"((?:[^"\\]|\\.)*)"/.exec(text)?.[1]?.replace(/\\"/g, '"') ?? text.split('\n')[0]!;
}

const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

export async function decideInCluster(
  decision: 'approve' | 'deny',
  name: string,
  reason: string | undefined,
  flags: ClusterFlags,
): Promise<number> {
  const { api, namespace } = connect(flags);
  try {
    await api.patchNamespacedCustomObject(
      {
        group,
        version,
        plural: 'accessrequests',
        namespace,
        name,
        body: { spec: { decision: { action: decision, ...(reason !== undefined && { reason }) } } },
      },
      mergePatch,
    );
  } catch (error) {
    console.error(`airlock ${decision}: ${message(error)}`);
    return 1;
  }
  console.log(`accessrequest ${namespace}/${name} ${decision === 'approve' ? 'approved' : 'denied'}`);
  return 0;
}

export async function listInCluster(
  flags: ClusterFlags & { all?: boolean; output?: string },
): Promise<number> {
  const { api, namespace } = connect(flags);
  let items: AccessRequest[];
  try {
    const list = (await (flags['all-namespaces']
      ? api.listClusterCustomObject({ group, version, plural: 'accessrequests' })
      : api.listNamespacedCustomObject({ group, version, plural: 'accessrequests', namespace }))) as {
      items: AccessRequest[];
    };
    items = list.items;
  } catch (error) {
    console.error(`airlock approvals: ${message(error)}`);
    return 1;
  }
  const shown = items
    .filter((r) => flags.all || (r.status?.phase ?? 'Pending') === 'Pending')
    .sort((a, b) => (a.metadata.creationTimestamp ?? '').localeCompare(b.metadata.creationTimestamp ?? ''));
  if (flags.output === 'json') {
    console.log(JSON.stringify(shown, null, 2));
    return 0;
  }
  if (shown.length === 0) {
    console.log(flags.all ? 'no AccessRequests' : 'no requests waiting for approval');
    return 0;
  }
  console.log(
    table([
      [
        'NAMESPACE',
        'NAME',
        'PHASE',
        'REQUESTER',
        'CONNECTION',
        'POLICY/RULE',
        'EXPIRES',
        'DECIDED BY',
        'REQUEST',
      ],
      ...shown.map((r) => [
        r.metadata.namespace ?? '',
        r.metadata.name,
        r.status?.phase ?? 'Pending',
        `${r.spec.requester.serviceAccount}/${r.spec.requester.pod}`,
        r.spec.connection,
        `${r.spec.policy}/${r.spec.rule}`,
        r.status?.expiresAt ?? '',
        r.status?.decidedBy ?? '',
        r.spec.request.replace(/\s+/g, ' ').slice(0, 80),
      ]),
    ]),
  );
  return 0;
}

/** Recorded sessions through the API server (sessions.audit.airlock.dev), as the caller. */
export function clusterSessions(flags: ClusterFlags) {
  const { api, namespace } = connect(flags);
  const plural = { group: sessionsGroup, version: sessionsVersion, plural: 'sessions' };
  const failed = (error: unknown): never => {
    throw new Error(message(error));
  };
  const page = async (limit: number, next: string | undefined) => {
    const query = { ...plural, limit, _continue: next };
    const list = (await (flags['all-namespaces']
      ? api.listClusterCustomObject(query)
      : api.listNamespacedCustomObject({ ...query, namespace })
    ).catch(failed)) as { items: Session[]; metadata?: { continue?: string } };
    return { sessions: list.items.map(sessionSummary), next: list.metadata?.continue || undefined };
  };
  return {
    /** The newest `limit` sessions, read page by page; `more` when older ones exist. */
    async list(limit: number): Promise<SessionList> {
      const sessions: SessionSummary[] = [];
      let next: string | undefined;
      do {
        const read = await page(Math.min(limit + 1 - sessions.length, 500), next);
        sessions.push(...read.sessions);
        next = read.next;
      } while (next && sessions.length <= limit);
      return sessionList(sessions, limit);
    },
    /** Every session, newest first, one page in memory at a time. */
    async *each(pageSize = 100): AsyncGenerator<SessionSummary> {
      let next: string | undefined;
      do {
        const read = await page(pageSize, next);
        yield* read.sessions;
        next = read.next;
      } while (next);
    },
    async get(
      id: string,
      inNamespace = namespace,
    ): Promise<{ summary: SessionSummary; events: SessionEvent[] } | undefined> {
      try {
        const session = (await api.getNamespacedCustomObject({
          ...plural,
          namespace: inNamespace,
          name: id,
        })) as Session;
        return { summary: sessionSummary(session), events: session.events ?? [] };
      } catch (error) {
        if ((error as { code?: number }).code === 404) return undefined;
        return failed(error);
      }
    },
  };
}
