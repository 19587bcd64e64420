// The sessions API: the collector's recorded sessions served as a Kubernetes aggregated API,
// sessions.audit.airlock.dev/v1alpha1, so people read them with their own cluster identity and
// RBAC (`kubectl get sessions -n agents`, `kubectl airlock sessions list|show|replay`).
//
// The API server authenticates the caller (certificates, tokens, OIDC: whatever the cluster
// uses) and proxies the request here over TLS with its front-proxy client certificate and the
// caller in X-Remote-* headers. Those headers are believed only on a connection whose client
// certificate the cluster's front-proxy CA signed, for an allowed name (both published in
// kube-system/extension-apiserver-authentication); then a SubjectAccessReview asks the API
// server whether that caller may get or list sessions in the namespace. Anyone else who sets
// the headers gets 401. A session belongs to the namespace of the workload that recorded it.
import { X509Certificate } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { AuthorizationV1Api, CoreV1Api } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { SessionEvent } from '../api/events.ts';
import type { AuditLog } from '../audit/log.ts';
import type { SessionSummary } from '../audit/store.ts';
import { respondJson } from './control-api.ts';
import type { Routes } from './server.ts';

export const sessionsGroup = 'audit.airlock.dev';
export const sessionsVersion = 'v1alpha1';
const groupVersion = `${sessionsGroup}/${sessionsVersion}`;
export const apiServiceName = `${sessionsVersion}.${sessionsGroup}`;

/**
 * The APIService that has the API server route sessions.audit.airlock.dev to the operator's
 * control API port. The operator writes caBundle (cert-manager's cainjector in that mode).
 */
export function apiServiceConfiguration(options: {
  service: { name: string; namespace: string; port: number };
  certManagerCertificate?: string;
}) {
  return {
    apiVersion: 'apiregistration.k8s.io/v1',
    kind: 'APIService',
    metadata: {
      name: apiServiceName,
      labels: { 'app.kubernetes.io/part-of': 'airlock' },
      ...(options.certManagerCertificate && {
        annotations: { 'cert-manager.io/inject-ca-from': options.certManagerCertificate },
      }),
    },
    spec: {
      group: sessionsGroup,
      version: sessionsVersion,
      service: options.service,
      groupPriorityMinimum: 1000,
      versionPriority: 15,
    },
  };
}
const basePath = `/apis/${groupVersion}`;
const clientAuthUsage = '1.3.6.1.5.5.7.3.2';

/** A recorded session as the API serves it; `events` only when one session is read. */
export interface Session {
  apiVersion: typeof groupVersion;
  kind: 'Session';
  metadata: { name: string; namespace: string; creationTimestamp: string };
  connection: { namespace: string; name: string; protocol: string };
  identity: string;
  /** The person the workload acted for (Connection endUser), when it presented a verified token. */
  user?: string;
  started: string;
  ended?: string;
  requests: number;
  blocked: number;
  masked: number;
  events?: SessionEvent[];
}

export function sessionObject(namespace: string, summary: SessionSummary, events?: SessionEvent[]): Session {
  return {
    apiVersion: groupVersion,
    kind: 'Session',
    metadata: { name: summary.id, namespace, creationTimestamp: summary.started },
    connection: { namespace: summary.namespace, name: summary.connection, protocol: summary.protocol },
    identity: summary.identity,
    ...(summary.user !== undefined && { user: summary.user }),
    started: summary.started,
    ...(summary.ended && { ended: summary.ended }),
    requests: summary.requests,
    blocked: summary.blocked,
    masked: summary.masked,
    ...(events && { events }),
  };
}

export function sessionSummary(session: Session): SessionSummary {
  return {
    id: session.metadata.name,
    connection: session.connection.name,
    namespace: session.connection.namespace,
    protocol: session.connection.protocol,
    identity: session.identity,
    ...(session.user !== undefined && { user: session.user }),
    started: session.started,
    ...(session.ended && { ended: session.ended }),
    requests: session.requests,
    blocked: session.blocked,
    masked: session.masked,
  };
}

/** Who the API server says is calling. */
export interface Caller {
  username: string;
  uid?: string;
  groups: string[];
  extra: Record<string, string[]>;
}

/** How the API server's front proxy identifies itself and its callers. */
export interface FrontProxy {
  authorities: X509Certificate[];
  allowedNames: string[];
  usernameHeaders: string[];
  uidHeaders: string[];
  groupHeaders: string[];
  extraHeaderPrefixes: string[];
}

const jsonList = (value: string | undefined, fallback: string[]): string[] => {
  if (!value) return fallback;
  const parsed = JSON.parse(value) as unknown;
  if (!Array.isArray(parsed) || !parsed.every((v) => typeof v === 'string'))
    throw new Error(`expected a JSON list of strings, got ${value}`);
  return parsed;
};

/** Reads kube-system/extension-apiserver-authentication as the API server publishes it. */
export function parseFrontProxy(data: Record<string, string>): FrontProxy {
  const bundle = data['requestheader-client-ca-file'];
  if (!bundle) throw new Error('the API server publishes no requestheader-client-ca-file');
  const authorities = (bundle.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? []).map(
    (pem) => new X509Certificate(pem),
  );
  if (authorities.length === 0) throw new Error('requestheader-client-ca-file holds no certificate');
  return {
    authorities,
    allowedNames: jsonList(data['requestheader-allowed-names'], []),
    usernameHeaders: jsonList(data['requestheader-username-headers'], ['X-Remote-User']),
    uidHeaders: jsonList(data['requestheader-uid-headers'], []),
    groupHeaders: jsonList(data['requestheader-group-headers'], ['X-Remote-Group']),
    extraHeaderPrefixes: jsonList(data['requestheader-extra-headers-prefix'], ['X-Remote-Extra-']),
  };
}

const commonName = (certificate: X509Certificate) =>
  /(?:^|\n)CN=([^\n]*)/.exec(certificate.subject)?.[1] ?? '';

/**
 * Whether a client certificate (DER) is the front proxy's: issued and signed by one of its
 * authorities, valid now, for client authentication, and, when names are listed, one of them.
 */
export function isFrontProxyCertificate(der: Buffer, proxy: FrontProxy, now = new Date()): boolean {
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(der);
  } catch {
    return false;
  }
  if (now < new Date(certificate.validFrom) || now > new Date(certificate.validTo)) return false;
  if (certificate.keyUsage !== undefined && !certificate.keyUsage.includes(clientAuthUsage)) return false;
  if (proxy.allowedNames.length > 0 && !proxy.allowedNames.includes(commonName(certificate))) return false;
  return proxy.authorities.some(
    (authority) => certificate.checkIssued(authority) && certificate.verify(authority.publicKey),
  );
}

/** The caller in the front proxy's headers (as sent, one value per header line). */
export function callerFromHeaders(
  headers: Record<string, string[] | undefined>,
  proxy: FrontProxy,
): Caller | undefined {
  const first = (names: string[]) =>
    names.map((name) => headers[name.toLowerCase()]?.[0]).find((v) => v !== undefined && v !== '');
  const username = first(proxy.usernameHeaders);
  if (!username) return undefined;
  const uid = first(proxy.uidHeaders);
  const groups = proxy.groupHeaders.flatMap((name) => headers[name.toLowerCase()] ?? []);
  const extra: Record<string, string[]> = {};
  for (const prefix of proxy.extraHeaderPrefixes.map((p) => p.toLowerCase())) {
    for (const [name, values] of Object.entries(headers)) {
      if (!name.startsWith(prefix) || !values) continue;
      const key = decodeURIComponent(name.slice(prefix.length)).toLowerCase();
      extra[key] = [...(extra[key] ?? []), ...values];
    }
  }
  return { username, ...(uid && { uid }), groups, extra };
}

type Verb = 'get' | 'list';
type Target =
  | { kind: 'discovery' }
  | { kind: 'list'; namespace?: string }
  | { kind: 'get'; namespace: string; name: string };

/** What a path under /apis/audit.airlock.dev/v1alpha1 asks for, or undefined when nothing. */
export function target(path: string): Target | undefined {
  if (path === basePath || path === `${basePath}/`) return { kind: 'discovery' };
  if (!path.startsWith(`${basePath}/`)) return undefined;
  const parts = path
    .slice(basePath.length + 1)
    .split('/')
    .map(decodeURIComponent);
  if (parts.length === 1 && parts[0] === 'sessions') return { kind: 'list' };
  if (parts[0] !== 'namespaces' || parts[2] !== 'sessions' || !parts[1]) return undefined;
  if (parts.length === 3) return { kind: 'list', namespace: parts[1] };
  if (parts.length === 4 && parts[3]) return { kind: 'get', namespace: parts[1], name: parts[3] };
  return undefined;
}

export const resourceList = {
  kind: 'APIResourceList',
  apiVersion: 'v1',
  groupVersion,
  resources: [
    {
      name: 'sessions',
      singularName: 'session',
      namespaced: true,
      kind: 'Session',
      verbs: ['get', 'list'],
      shortNames: ['sess'],
      categories: ['airlock'],
    },
  ],
};

function status(code: number, reason: string, message: string) {
  return {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message,
    reason,
    details: { group: sessionsGroup, kind: 'sessions' },
    code,
  };
}

function age(from: string, now: number): string {
  const seconds = Math.max(0, Math.floor((now - Date.parse(from)) / 1000));
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 7200) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 172_800) return `${Math.floor(seconds / 3600)}h`;
  return `${Math.floor(seconds / 86_400)}d`;
}

/** The Table kubectl asks for (`Accept: …;as=Table;g=meta.k8s.io;v=v1`), one row per session. */
export function sessionTable(sessions: Session[], metadata: ListMeta = {}, now = Date.now()) {
  const column = (name: string, type: string, description: string, priority = 0) => ({
    name,
    type,
    format: name === 'Name' ? 'name' : '',
    description,
    priority,
  });
  return {
    kind: 'Table',
    apiVersion: 'meta.k8s.io/v1',
    metadata,
    columnDefinitions: [
      column('Name', 'string', 'The session id.'),
      column('Connection', 'string', 'The Connection the session used.'),
      column('Protocol', 'string', 'postgres, ssh, http or tcp.'),
      column('Identity', 'string', 'The workload that opened it.'),
      column('Requests', 'integer', 'Statements, commands or requests recorded.'),
      column('Blocked', 'integer', 'Requests denied, refused or expired.'),
      column('Masked', 'integer', 'Values masked in responses.'),
      column('Ended', 'string', 'When the session ended; empty while open.', 1),
      column('Age', 'string', 'Time since the session started.'),
      // Last, as in `airlock sessions list`, so what reads the earlier columns is unchanged.
      column('End User', 'string', 'The person the workload acted for, from the token it verified.'),
    ],
    rows: sessions.map((s) => ({
      cells: [
        s.metadata.name,
        s.connection.name,
        s.connection.protocol,
        s.identity,
        s.requests,
        s.blocked,
        s.masked,
        s.ended ?? '',
        age(s.started, now),
        s.user ?? '',
      ],
      object: {
        kind: 'PartialObjectMetadata',
        apiVersion: 'meta.k8s.io/v1',
        metadata: s.metadata,
      },
    })),
  };
}

export interface SessionsApiOptions {
  core: Pick<CoreV1Api, 'readNamespacedConfigMap'>;
  authorization: Pick<AuthorizationV1Api, 'createSubjectAccessReview'>;
  store: () => Promise<Pick<AuditLog, 'sessions' | 'session'>>;
  logger: Logger;
  /** How long the front-proxy settings read from the API server are used before a re-read. */
  frontProxyTtlMs?: number;
  /** Most sessions one page of a list returns (newest first); `?limit=` may ask for fewer. */
  maxList?: number;
}

export function sessionsApi(options: SessionsApiOptions): Routes {
  const { logger } = options;
  const ttl = options.frontProxyTtlMs ?? 60_000;
  const maxList = options.maxList ?? 500;
  let frontProxy: { value: FrontProxy; until: number } | undefined;
  const readFrontProxy = async (): Promise<FrontProxy> => {
    if (frontProxy && frontProxy.until > Date.now()) return frontProxy.value;
    const map = await options.core.readNamespacedConfigMap({
      name: 'extension-apiserver-authentication',
      namespace: 'kube-system',
    });
    frontProxy = { value: parseFrontProxy(map.data ?? {}), until: Date.now() + ttl };
    return frontProxy.value;
  };

  const authorized = async (caller: Caller, verb: Verb, namespace?: string, name?: string) => {
    const review = await options.authorization.createSubjectAccessReview({
      body: {
        apiVersion: 'authorization.k8s.io/v1',
        kind: 'SubjectAccessReview',
        spec: {
          user: caller.username,
          ...(caller.uid && { uid: caller.uid }),
          groups: caller.groups,
          extra: caller.extra,
          resourceAttributes: {
            group: sessionsGroup,
            version: sessionsVersion,
            resource: 'sessions',
            verb,
            ...(namespace && { namespace }),
            ...(name && { name }),
          },
        },
      },
    });
    return review.status?.allowed === true;
  };

  const handler = async (request: IncomingMessage, response: ServerResponse) => {
    const send = (code: number, body: unknown) => respondJson(response, code, body);
    const url = new URL(request.url ?? '/', 'https://operator');
    const wanted = target(url.pathname);
    if (!wanted) return send(404, status(404, 'NotFound', `the server could not find ${url.pathname}`));
    if (request.method !== 'GET')
      return send(405, status(405, 'MethodNotAllowed', 'sessions are read-only: get and list'));
    if (wanted.kind === 'discovery') return send(200, resourceList);
    if (url.searchParams.get('watch') === 'true' || url.searchParams.get('watch') === '1')
      return send(405, status(405, 'MethodNotAllowed', 'sessions cannot be watched'));

    const proxy = await readFrontProxy();
    const peer = (request.socket as TLSSocket).getPeerCertificate?.();
    const caller =
      peer?.raw && isFrontProxyCertificate(peer.raw, proxy)
        ? callerFromHeaders(request.headersDistinct, proxy)
        : undefined;
    if (!caller) {
      logger.warn(
        { path: url.pathname, remote: request.socket.remoteAddress },
        'sessions read without the API server',
      );
      return send(401, status(401, 'Unauthorized', 'sessions are read through the Kubernetes API server'));
    }
    const verb: Verb = wanted.kind === 'get' ? 'get' : 'list';
    const name = wanted.kind === 'get' ? wanted.name : undefined;
    if (!(await authorized(caller, verb, wanted.namespace, name))) {
      const scope = wanted.namespace ? `in the namespace "${wanted.namespace}"` : 'at the cluster scope';
      return send(
        403,
        status(
          403,
          'Forbidden',
          `sessions.${sessionsGroup}${name ? ` "${name}"` : ''} is forbidden: User "${caller.username}" cannot ${verb} resource "sessions" in API group "${sessionsGroup}" ${scope}`,
        ),
      );
    }
    const store = await options.store();
    if (wanted.kind === 'get') {
      const found = await store.session(wanted.name, wanted.namespace);
      if (!found)
        return send(404, status(404, 'NotFound', `sessions.${sessionsGroup} "${wanted.name}" not found`));
      logger.info({ event: 'session-read', caller: caller.username, session: wanted.name }, 'session read');
      return send(200, sessionObject(wanted.namespace, found.summary, found.events));
    }
    const asked = Number(url.searchParams.get('limit') ?? maxList);
    const limit = Number.isInteger(asked) && asked > 0 ? Math.min(asked, maxList) : maxList;
    const token = url.searchParams.get('continue');
    const before = token ? parseContinue(token) : undefined;
    if (before === null)
      return send(400, status(400, 'BadRequest', 'continue key is not valid: list again without it'));
    const page = await store.sessions({ limit, namespace: wanted.namespace, before });
    const items = page.sessions.map((s) => sessionObject(wanted.namespace ?? namespaceOf(s), s));
    const metadata: ListMeta = page.next === undefined ? {} : { continue: continueToken(page.next) };
    if (/as=Table/.test(request.headers.accept ?? '')) return send(200, sessionTable(items, metadata));
    return send(200, { apiVersion: groupVersion, kind: 'SessionList', metadata, items });
  };
  return { [basePath]: handler, [`${basePath}/`]: handler };
}

interface ListMeta {
  continue?: string;
}

/**
 * A list's continue token: where the next page starts in the chain, opaque to clients. Pages
 * are read by chain position, so sessions that start meanwhile do not shift them.
 */
export function continueToken(before: number): string {
  return Buffer.from(JSON.stringify({ v: 1, before })).toString('base64url');
}

/** The position a continue token names; null when it is not one of ours. */
export function parseContinue(token: string): number | null {
  try {
    const { v, before } = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as {
      v?: unknown;
      before?: unknown;
    };
    return v === 1 && Number.isSafeInteger(before) && (before as number) > 0 ? (before as number) : null;
  } catch {
    return null;
  }
}

/** The namespace a session belongs to: the workload's, from its identity. */
function namespaceOf(summary: SessionSummary): string {
  return /^system:serviceaccount:([^:]+):/.exec(summary.identity)?.[1] ?? '';
}
