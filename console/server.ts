// The web console's HTTP side: its static pages and a small JSON API over a backend (the
// running `airlock local`, or the operator acting as the signed-in person: operator/console.ts).
// Only what the store recorded reaches the browser: recorded events carry no masked value.
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { extname } from 'node:path';
import type { SessionEvent } from '../api/events.ts';
import type { SessionPage, SessionQuery, SessionSummary } from '../audit/store.ts';
import type { ApprovalRequest } from '../sidecar/core/enforcer.ts';

/** A request waiting for a decision, as the approvals page lists it. */
export interface ConsoleApproval {
  id: string;
  /** endUser: the person it acts for, where the backend gives no requester (airlock local). */
  request: Pick<ApprovalRequest, 'connection' | 'policy' | 'rule' | 'text' | 'endUser'>;
  /** Who asked: the workload, and the person it acted for when it said. */
  requester?: string;
  requestedAt: string;
  expiresAt: string;
}

export interface ConsoleBackend {
  /** Who the console acts as, shown in the page. */
  user: string;
  /** Sent back in the X-Airlock-CSRF header of every decision, when the console signs people in. */
  csrfToken?: string;
  /** Where the page posts to sign out, when the console signs people in. */
  signOut?: string;
  sessions(query: SessionQuery): Promise<SessionPage>;
  /** The namespace is the session's, when the page knows it (the operator needs it). */
  session(
    id: string,
    namespace?: string,
  ): Promise<{ summary: SessionSummary; events: SessionEvent[] } | undefined>;
  approvals(): Promise<ConsoleApproval[]>;
  /** False when no pending request has that id; throws a ConsoleRefusal when it is refused. */
  decide(id: string, approved: boolean, reason?: string): Promise<boolean>;
}

/** A call the backend refuses, with the words and status the page shows (RBAC's, a webhook's). */
export class ConsoleRefusal extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

const publicDir = new URL('./public/', import.meta.url);
const pages: Record<string, string> = {
  '/': 'index.html',
  '/app.js': 'app.js',
  '/player.js': 'player.js',
  '/style.css': 'style.css',
};
const types: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};
const securityHeaders = {
  'content-security-policy':
    "default-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};
const maxBody = 16 * 1024;

/** The filters of the sessions page, applied to each page the store returns. */
function matches(summary: SessionSummary, filters: URLSearchParams): boolean {
  const connection = filters.get('connection');
  const identity = filters.get('identity');
  const outcome = filters.get('outcome');
  const since = filters.get('since');
  if (connection && summary.connection !== connection) return false;
  if (identity && !summary.identity.includes(identity)) return false;
  if (outcome === 'blocked' && summary.blocked === 0) return false;
  if (outcome === 'masked' && summary.masked === 0) return false;
  if (outcome === 'clean' && (summary.blocked > 0 || summary.masked > 0)) return false;
  if (since && Date.parse(summary.started) < Date.parse(since)) return false;
  return true;
}

export function consoleHandler(backend: ConsoleBackend) {
  return async (req: IncomingMessage, res: ServerResponse) => {
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json', ...securityHeaders });
      res.end(JSON.stringify(body));
    };
    try {
      const url = new URL(req.url ?? '/', 'http://console');
      const page = pages[url.pathname];
      if (req.method === 'GET' && page) {
        const body = await readFile(new URL(page, publicDir));
        res.writeHead(200, { 'content-type': types[extname(page)]!, ...securityHeaders });
        return res.end(body);
      }
      const segments = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
      if (segments[0] !== 'api') return send(404, { message: 'not found' });
      if (req.method === 'GET' && url.pathname === '/api/whoami')
        return send(200, {
          user: backend.user,
          ...(backend.csrfToken && { csrfToken: backend.csrfToken }),
          ...(backend.signOut && { signOut: backend.signOut }),
        });
      if (req.method === 'GET' && url.pathname === '/api/sessions') {
        const limit = Number(url.searchParams.get('limit') ?? 50);
        const before = url.searchParams.get('before');
        if (!Number.isInteger(limit) || limit < 1 || limit > 500)
          return send(400, { message: 'limit must be an integer from 1 to 500' });
        if (before !== null && !/^\d+$/.test(before))
          return send(400, { message: 'before must be the next of a previous page' });
        const namespace = url.searchParams.get('namespace') || undefined;
        const result = await backend.sessions({
          limit,
          ...(namespace && { namespace }),
          ...(before !== null && { before: Number(before) }),
        });
        return send(200, {
          sessions: result.sessions.filter((s) => matches(s, url.searchParams)),
          ...(result.next !== undefined && { next: result.next }),
        });
      }
      if (req.method === 'GET' && segments[1] === 'sessions' && segments[2] && segments.length === 3) {
        const session = await backend.session(segments[2], url.searchParams.get('namespace') || undefined);
        return session ? send(200, session) : send(404, { message: `no session ${segments[2]}` });
      }
      if (req.method === 'GET' && url.pathname === '/api/approvals')
        return send(200, await backend.approvals());
      if (
        req.method === 'POST' &&
        segments[1] === 'approvals' &&
        segments[2] &&
        (segments[3] === 'approve' || segments[3] === 'deny') &&
        segments.length === 4
      ) {
        // Cross-site forms cannot send JSON with a custom header, nor a matching Origin.
        const origin = req.headers.origin;
        if (
          req.headers['content-type'] !== 'application/json' ||
          req.headers['x-airlock-console'] !== '1' ||
          (origin !== undefined && new URL(origin).host !== req.headers.host)
        )
          return send(403, { message: 'cross-site request refused' });
        let body = '';
        for await (const chunk of req) {
          body += chunk;
          if (body.length > maxBody) return send(413, { message: 'request body too large' });
        }
        const parsed: unknown = body ? JSON.parse(body) : {};
        if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
          return send(400, { message: 'the body must be a JSON object' });
        const { reason } = parsed as { reason?: unknown };
        if (reason !== undefined && typeof reason !== 'string')
          return send(400, { message: 'reason must be a string' });
        const decided = await backend.decide(segments[2], segments[3] === 'approve', reason);
        return decided
          ? send(200, { id: segments[2], decision: segments[3] })
          : send(404, { message: `no pending request ${segments[2]}` });
      }
      send(404, { message: 'not found' });
    } catch (error) {
      const status =
        error instanceof ConsoleRefusal ? error.status : error instanceof SyntaxError ? 400 : 500;
      send(status, { message: (error as Error).message });
    }
  };
}
