// The control socket of a running `airlock local`: a Unix socket beside the store, through
// which `airlock sessions|approvals|approve|deny` reach the process. Whoever can open it
// acts as the approver: local mode is a single-user tool.
import { createHash } from 'node:crypto';
import { unlink } from 'node:fs/promises';
import type { Server } from 'node:http';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AuditLog } from '../audit/log.ts';
import { isPostgresUrl } from '../audit/store.ts';
import { http } from '../sidecar/core/node-http.ts';
import type { LocalApprovals } from './approvals.ts';

export function defaultStore(): string {
  return join(process.env.XDG_STATE_HOME ?? join(homedir(), '.local', 'state'), 'airlock', 'local');
}

export function controlSocket(store: string): string {
  return isPostgresUrl(store)
    ? join(tmpdir(), `airlock-${createHash('sha256').update(store).digest('hex').slice(0, 12)}.sock`)
    : join(store, 'control.sock');
}

export async function serveControl(
  socketPath: string,
  parts: { store: AuditLog; approvals: LocalApprovals; flush: () => Promise<void> },
): Promise<Server> {
  const server = http.createServer(async (req, res) => {
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    try {
      const url = new URL(req.url ?? '/', 'http://local');
      const segments = url.pathname.split('/').filter(Boolean);
      if (req.method === 'GET' && url.pathname === '/sessions') {
        await parts.flush();
        const limit = Number(url.searchParams.get('limit') ?? 100);
        if (!Number.isInteger(limit) || limit < 1)
          return send(400, { message: 'limit must be a positive integer' });
        return send(200, (await parts.store.sessions({ limit })).sessions);
      }
      if (req.method === 'GET' && segments[0] === 'sessions' && segments[1]) {
        await parts.flush();
        const session = await parts.store.session(decodeURIComponent(segments[1]));
        return session ? send(200, session) : send(404, { message: `no session ${segments[1]}` });
      }
      if (req.method === 'GET' && url.pathname === '/approvals') return send(200, parts.approvals.list());
      if (
        req.method === 'POST' &&
        segments[0] === 'approvals' &&
        segments[1] &&
        ['approve', 'deny'].includes(segments[2] ?? '')
      ) {
        let body = '';
        for await (const chunk of req) body += chunk;
        const reason = body ? (JSON.parse(body) as { reason?: string }).reason : undefined;
        const decided = parts.approvals.decide(
          decodeURIComponent(segments[1]),
          segments[2] === 'approve',
          reason,
        );
        return decided
          ? send(200, { id: segments[1], decision: segments[2] })
          : send(404, { message: `no pending request ${segments[1]}` });
      }
      send(404, { message: 'not found' });
    } catch (error) {
      send(500, { message: (error as Error).message });
    }
  });
  await unlink(socketPath).catch(() => {});
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
  return server;
}

/** Calls the running `airlock local`; undefined when nothing listens on the socket. */
export function callControl<T>(
  socketPath: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; body: T } | undefined> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { socketPath, method, path, headers: { 'content-type': 'application/json' } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk) => {
          text += chunk;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text || 'null') as T }));
      },
    );
    req.on('error', (error: NodeJS.ErrnoException) =>
      ['ENOENT', 'ECONNREFUSED'].includes(error.code ?? '') ? resolve(undefined) : reject(error),
    );
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}
