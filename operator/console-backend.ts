// What the console shows a signed-in person, read and decided as that person through the API
// server (impersonation): recorded sessions through the aggregated sessions API, whose
// SubjectAccessReview authorises them; AccessRequests read with their RBAC and decided with a
// patch the approval webhooks authorise and record under their name. The operator's own
// credentials only list namespaces, to find where a person without cluster-wide access may read.
import type { SessionEvent } from '../api/events.ts';
import type { AccessRequest } from '../api/v1alpha1.ts';
import { group, version } from '../api/v1alpha1.ts';
import type { SessionPage, SessionQuery, SessionSummary } from '../audit/store.ts';
import { type ConsoleApproval, type ConsoleBackend, ConsoleRefusal } from '../console/server.ts';
import { type ApiCall, type ApiReply, replyMessage } from './impersonation.ts';
import {
  continueToken,
  parseContinue,
  type Session,
  sessionSummary,
  sessionsGroup,
  sessionsVersion,
} from './sessions-api.ts';

const sessionsPath = `/apis/${sessionsGroup}/${sessionsVersion}`;
const requestsPath = `/apis/${group}/${version}`;
/** How long the namespaces a person may read are reused: the approvals page polls every 2 s. */
const namespacesTtlMs = 15_000;

export interface ClusterConsoleOptions {
  user: string;
  csrfToken: string;
  signOut: string;
  /** The API server, as the person. */
  call: ApiCall;
  /** Every namespace, read with the operator's own credentials. */
  namespaces: () => Promise<string[]>;
}

const ok = (reply: ApiReply) => reply.status >= 200 && reply.status < 300;
const refused = (reply: ApiReply) =>
  new ConsoleRefusal(reply.status >= 400 ? reply.status : 502, replyMessage(reply));

export function clusterConsoleBackend(options: ClusterConsoleOptions): ConsoleBackend {
  const { call } = options;
  const allowed = new Map<string, { namespaces: Promise<string[]>; until: number }>();

  /** The namespaces where the person may list a resource, asked of the API server as them. */
  const namespacesAllowed = (apiGroup: string, resource: string): Promise<string[]> => {
    const key = `${apiGroup}/${resource}`;
    const cached = allowed.get(key);
    if (cached && cached.until > Date.now()) return cached.namespaces;
    const namespaces = options.namespaces().then(async (all) => {
      const answers = await Promise.all(
        all.map(async (namespace) => {
          const reply = await call('POST', '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews', {
            apiVersion: 'authorization.k8s.io/v1',
            kind: 'SelfSubjectAccessReview',
            spec: { resourceAttributes: { group: apiGroup, resource, verb: 'list', namespace } },
          });
          return (reply.body as { status?: { allowed?: boolean } }).status?.allowed === true;
        }),
      );
      return all.filter((_, i) => answers[i]);
    });
    allowed.set(key, { namespaces, until: Date.now() + namespacesTtlMs });
    namespaces.catch(() => allowed.delete(key));
    return namespaces;
  };

  /**
   * A list across the namespaces the person may read: cluster-wide when RBAC allows it,
   * otherwise one list per namespace they may read.
   */
  const listEverywhere = async <T>(
    apiGroup: string,
    resource: string,
    path: (namespace?: string) => string,
  ): Promise<{ items: T[]; continue?: string; merged: boolean }> => {
    const wide = await call('GET', path());
    if (ok(wide)) {
      const body = wide.body as { items: T[]; metadata?: { continue?: string } };
      return {
        items: body.items,
        merged: false,
        ...(body.metadata?.continue && { continue: body.metadata.continue }),
      };
    }
    if (wide.status !== 403) throw refused(wide);
    const namespaces = await namespacesAllowed(apiGroup, resource);
    const replies = await Promise.all(namespaces.map((namespace) => call('GET', path(namespace))));
    const items: T[] = [];
    for (const reply of replies) {
      // Access may have been taken away since the review: that namespace is left out.
      if (ok(reply)) items.push(...(reply.body as { items: T[] }).items);
      else if (reply.status !== 403) throw refused(reply);
    }
    return { items, merged: true };
  };

  return {
    user: options.user,
    csrfToken: options.csrfToken,
    signOut: options.signOut,

    async sessions(query: SessionQuery): Promise<SessionPage> {
      const params = new URLSearchParams({ limit: String(query.limit ?? 50) });
      if (query.before !== undefined) params.set('continue', continueToken(query.before));
      const path = (namespace?: string) =>
        `${sessionsPath}/${namespace ? `namespaces/${encodeURIComponent(namespace)}/` : ''}sessions?${params}`;
      const list = query.namespace
        ? await call('GET', path(query.namespace)).then((reply) => {
            if (!ok(reply)) throw refused(reply);
            const body = reply.body as { items: Session[]; metadata?: { continue?: string } };
            return { items: body.items, merged: false, continue: body.metadata?.continue };
          })
        : await listEverywhere<Session>(sessionsGroup, 'sessions', path);
      const sessions: SessionSummary[] = list.items
        .map(sessionSummary)
        .sort((a, b) => b.started.localeCompare(a.started))
        .slice(0, query.limit ?? 50);
      // Pages follow one list's continue token; a merge of several namespaces' lists shows their
      // newest sessions, and a namespace filter pages further back.
      const next = list.continue ? parseContinue(list.continue) : null;
      return { sessions, ...(!list.merged && next !== null && { next }) };
    },

    async session(
      id: string,
      namespace?: string,
    ): Promise<{ summary: SessionSummary; events: SessionEvent[] } | undefined> {
      if (!namespace) throw new ConsoleRefusal(400, 'a session is read in its namespace: ?namespace=');
      const reply = await call(
        'GET',
        `${sessionsPath}/namespaces/${encodeURIComponent(namespace)}/sessions/${encodeURIComponent(id)}`,
      );
      if (reply.status === 404) return undefined;
      if (!ok(reply)) throw refused(reply);
      const session = reply.body as Session;
      return { summary: sessionSummary(session), events: session.events ?? [] };
    },

    async approvals(): Promise<ConsoleApproval[]> {
      const path = (namespace?: string) =>
        `${requestsPath}/${namespace ? `namespaces/${encodeURIComponent(namespace)}/` : ''}accessrequests`;
      const { items } = await listEverywhere<AccessRequest>(group, 'accessrequests', path);
      return items
        .filter((r) => (r.status?.phase ?? 'Pending') === 'Pending' && !r.spec.decision)
        .sort((a, b) =>
          (a.metadata.creationTimestamp ?? '').localeCompare(b.metadata.creationTimestamp ?? ''),
        )
        .map((r) => ({
          id: `${r.metadata.namespace}/${r.metadata.name}`,
          request: {
            connection: r.spec.connection,
            policy: r.spec.policy,
            rule: r.spec.rule,
            text: r.spec.request,
          },
          requester: `${r.spec.requester.serviceAccount} (pod ${r.spec.requester.pod})${r.spec.requester.user ? ` for ${r.spec.requester.user}` : ''}`,
          requestedAt: r.metadata.creationTimestamp ?? '',
          expiresAt: r.status?.expiresAt ?? '',
        }));
    },

    async decide(id: string, approved: boolean, reason?: string): Promise<boolean> {
      const slash = id.indexOf('/');
      if (slash < 1) return false;
      const namespace = id.slice(0, slash);
      const name = id.slice(slash + 1);
      const reply = await call(
        'PATCH',
        `${requestsPath}/namespaces/${encodeURIComponent(namespace)}/accessrequests/${encodeURIComponent(name)}`,
        { spec: { decision: { action: approved ? 'approve' : 'deny', ...(reason && { reason }) } } },
      );
      if (reply.status === 404) return false;
      if (!ok(reply)) throw refused(reply);
      return true;
    },
  };
}
