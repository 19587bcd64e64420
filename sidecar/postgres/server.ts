// servePostgres: a listener for one PostgreSQL Connection. Each accepted client gets a
// PostgresSession that authenticates upstream with the Connection's held credential.
import { createServer, type LookupFunction, type Server, type Socket } from 'node:net';
import type { BundleConnection, Identity } from '../../api/bundle.ts';
import type { EventSink } from '../../api/events.ts';
import type { Approvals } from '../core/enforcer.ts';
import { settle, stopAccepting } from '../core/listen.ts';
import { PolicyVariants } from '../identity/session.ts';
import { EndUserVerifier } from '../identity/verifier.ts';
import { loadPolicyEngine, type PolicyEngine } from './policy.ts';
import { type CancelRegistry, PostgresSession } from './session.ts';

export interface PostgresServerOptions {
  connection: BundleConnection;
  identity: Identity;
  events: EventSink;
  approvals?: Approvals;
  /** Where to listen; 127.0.0.1 and a free port when omitted. */
  host?: string;
  port?: number;
  /** Certificate offered to clients that send SSLRequest; without it they are answered 'N'. */
  tls?: { cert: string; key: string };
  /** Longest approval wait while a transaction is open upstream (default 60 s). */
  transactionHoldMs?: number;
  /** Overrides the policy engine built from connection.policies (tests). */
  engine?: PolicyEngine;
  /** How the upstream's name is resolved: the system's resolver when absent. */
  lookup?: LookupFunction;
}

export interface PostgresEnforcer {
  host: string;
  port: number;
  /** Sessions currently open. */
  sessions(): number;
  close(): Promise<void>;
  /** Stops accepting, waits (until the deadline) for statements in flight, then closes. */
  drain(deadlineMs: number): Promise<void>;
}

export function cancelRegistry(): CancelRegistry {
  const keys = new Map<string, () => Promise<void>>();
  const key = (pid: number, secret: number) => `${pid}:${secret}`;
  return {
    register: (pid, secret, cancel) => void keys.set(key(pid, secret), cancel),
    unregister: (pid, secret) => void keys.delete(key(pid, secret)),
    async cancel(pid, secret) {
      const cancel = keys.get(key(pid, secret));
      if (!cancel) return false;
      await cancel().catch(() => undefined);
      return true;
    },
  };
}

export async function servePostgres(options: PostgresServerOptions): Promise<PostgresEnforcer> {
  if (options.connection.protocol !== 'postgres') {
    throw new Error(`Connection ${options.connection.name} is not a postgres Connection`);
  }
  const engine = options.engine ?? (await loadPolicyEngine(options.connection.policies));
  const endUser = options.connection.endUser && {
    verifier: new EndUserVerifier(options.connection.endUser, options.lookup),
    engines: new PolicyVariants((policies) => loadPolicyEngine(policies)),
  };
  const cancels = cancelRegistry();
  const open = new Set<PostgresSession>();
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    const session = new PostgresSession(socket, {
      connection: options.connection,
      identity: options.identity,
      engine,
      events: options.events,
      cancels,
      clientAddress: `${socket.remoteAddress}:${socket.remotePort}`,
      ...(options.approvals && { approvals: options.approvals }),
      ...(endUser && { endUser }),
      ...(options.tls && { tls: options.tls }),
      ...(options.lookup && { lookup: options.lookup }),
      ...(options.transactionHoldMs !== undefined && { transactionHoldMs: options.transactionHoldMs }),
    });
    open.add(session);
    socket.on('close', () => open.delete(session));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  const close = async (reason: string) => {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const session of open) session.close(reason);
    for (const socket of sockets) socket.destroy();
    await closed;
  };
  return {
    host: options.host ?? '127.0.0.1',
    port,
    sessions: () => open.size,
    close: () => close('enforcer shutting down'),
    async drain(deadlineMs) {
      stopAccepting(server);
      await settle(() => [...open].some((session) => session.busy()), deadlineMs);
      await close('the sidecar is draining');
    },
  };
}
