// The MCP enforcer. The agent's MCP client speaks the streamable HTTP transport to the
// listener as if it were the server: it posts JSON-RPC messages to the endpoint's path, opens
// the server's event stream with GET and ends its session with DELETE. Each post is read whole
// (bounded), admitted request by request (admit.ts: decided, held for approval while progress
// notifications keep the agent waiting, or refused with a JSON-RPC error), and forwarded with
// the held credential; what the server answers, as JSON or as an event stream, goes back
// message by message through relay.ts (filtered, masked, recorded); exchange.ts runs each
// request. Anything the enforcer cannot read as JSON-RPC is refused, never passed on.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Enforcer } from '../core/enforcer.ts';
import { ApprovalGate } from '../core/gate.ts';
import { settle, stopAccepting } from '../core/listen.ts';
import { http } from '../core/node-http.ts';
import { SessionRecorder } from '../core/recorder.ts';
import { maskEncoded } from '../policy/encoded.ts';
import { heldValues, hideHeld } from '../policy/held.ts';
import { compileJsonPaths } from '../policy/json-paths.ts';
import { compileMasking, type MaskingPlan } from '../policy/masking.ts';
import type { Context, McpEnforcerOptions, McpOptions, Session } from './context.ts';
import { post, remove, stream } from './exchange.ts';
import { ToolPins } from './fingerprints.ts';
import { type LegacyStream, openLegacyStream, postLegacy } from './legacy-sse.ts';
import { plain } from './reply.ts';
import { upstreamOf } from './upstream.ts';

/** Sessions are ended after half an hour with nothing in progress. */
const defaultIdleSessionMs = 30 * 60_000;

export async function serveMcp(options: McpEnforcerOptions): Promise<Enforcer> {
  const { connection } = options;
  if (connection.protocol !== 'mcp')
    throw new Error(`Connection ${connection.name} is not an mcp Connection`);
  const mcp: McpOptions = {
    scheme: connection.mcp?.scheme ?? 'https',
    transport: connection.mcp?.transport ?? 'streamable-http',
    path: connection.mcp?.path ?? '/mcp',
    serverRequests: connection.mcp?.serverRequests ?? [],
    toolChanges: connection.mcp?.toolChanges ?? 'require-approval',
    maxMessageBytes: connection.mcp?.maxMessageBytes ?? 4 * 1024 * 1024,
  };
  const context: Context = {
    options,
    connection,
    mcp,
    masker: {
      plan: readingEncoded(compileMasking(connection.policies), heldValues(connection.credentials)),
      paths: compileJsonPaths(connection.policies),
    },
    pins: new ToolPins(),
    upstream: upstreamOf(connection, mcp),
  };
  const sessions = new Map<string, Session>();
  const unnamed = new WeakMap<Socket, Session | undefined>();
  const open = new Set<Session>();
  const sockets = new Set<Socket>();
  let inFlight = 0;

  const newSession = (req: IncomingMessage): Session => {
    const recorder = new SessionRecorder(connection, options.identity, options.events);
    const session: Session = {
      recorder,
      gate: new ApprovalGate({
        sessionId: recorder.id,
        connection: connection.name,
        approvals: options.approvals,
        unrecorded: () => options.events.refusal?.(),
      }),
      pending: new Map(),
      serverRequests: new Set(),
      holds: new Map(),
      busy: 0,
      lastSeen: Date.now(),
    };
    recorder.start({
      address: req.socket.remoteAddress ?? '',
      application: String(req.headers['user-agent'] ?? ''),
    });
    open.add(session);
    return session;
  };
  /** The agent's session: by the Mcp-Session-Id it sends, else its connection's until the server names one. */
  const sessionFor = (req: IncomingMessage): Session => {
    const id = req.headers['mcp-session-id'];
    if (typeof id === 'string') {
      let session = sessions.get(id);
      if (!session) {
        session = newSession(req);
        session.id = id;
        sessions.set(id, session);
      }
      return session;
    }
    const existing = unnamed.get(req.socket);
    if (existing) return existing;
    const session = newSession(req);
    const socket = req.socket;
    // One listener per connection: it ends the session the connection holds when it closes.
    if (!unnamed.has(socket))
      socket.once('close', () => {
        const left = unnamed.get(socket);
        if (left) end(left, 'closed');
      });
    unnamed.set(socket, session);
    return session;
  };
  const named = (session: Session, req: IncomingMessage, upstream: IncomingMessage) => {
    const id = upstream.headers['mcp-session-id'];
    if (typeof id !== 'string' || session.id === id) return;
    session.id = id;
    sessions.set(id, session);
    if (unnamed.get(req.socket) === session) unnamed.set(req.socket, undefined);
  };
  const end = (session: Session, reason: string) => {
    for (const hold of session.holds.values()) hold.abort();
    if (session.id !== undefined) sessions.delete(session.id);
    open.delete(session);
    session.recorder.end(reason);
  };

  const streams = new Map<string, LegacyStream>();
  /** The sse transport: GET the stream at the path, POST to the endpoint the server named. */
  const legacy = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? '').split('?')[0];
    const stream = req.method === 'POST' ? streams.get(req.url ?? '') : undefined;
    if (stream) return postLegacy(context, stream, req, res);
    if (req.method !== 'GET' || path !== mcp.path) {
      req.resume();
      return plain(
        res,
        404,
        `airlock: the MCP event stream is GET ${mcp.path}; posts go to the endpoint it names`,
      );
    }
    const session = newSession(req);
    // Busy while its stream is open: it ends when the stream does, never as idle.
    session.busy++;
    try {
      await openLegacyStream(context, session, res, streams);
    } finally {
      end(session, 'closed');
    }
  };

  const server = http.createServer({ keepAlive: true });
  // Approval holds and event streams are long; headers must still arrive promptly.
  server.requestTimeout = 0;
  server.headersTimeout = 60_000;
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    inFlight++;
    res.once('close', () => inFlight--);
    const path = (req.url ?? '').split('?')[0];
    if (mcp.transport === 'sse') {
      legacy(req, res).catch((error: Error) => {
        if (!res.headersSent) plain(res, 502, `airlock: ${error.message}`);
        else res.destroy();
      });
      return;
    }
    if (path !== mcp.path) {
      plain(res, 404, `airlock: the MCP endpoint is ${mcp.path}`);
      req.resume();
      return;
    }
    if (req.method === 'DELETE') {
      remove(context, req, res, sessions, end).catch((error: Error) =>
        plain(res, 502, `airlock: ${error.message}`),
      );
      return;
    }
    if (req.method !== 'POST' && req.method !== 'GET') {
      plain(res, 405, 'airlock: the MCP endpoint takes POST, GET and DELETE');
      return;
    }
    const session = sessionFor(req);
    session.busy++;
    res.once('close', () => {
      session.busy--;
      session.lastSeen = Date.now();
    });
    const handled =
      req.method === 'POST' ? post(context, session, req, res, named) : stream(context, session, req, res);
    handled
      .then(() => {
        // The server no longer knows the session: the agent starts a new one, this one is over.
        if (res.statusCode === 404 && session.id !== undefined) end(session, 'ended by the server');
      })
      .catch((error: Error) => {
        if (!res.headersSent) plain(res, 502, `airlock: ${error.message}`);
        else res.destroy();
      });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.listen.port, options.listen.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const idleMs = options.idleSessionMs ?? defaultIdleSessionMs;
  const sweeper = setInterval(
    () => {
      const now = Date.now();
      for (const session of [...open])
        if (session.busy === 0 && now - session.lastSeen > idleMs) end(session, 'idle');
    },
    Math.min(idleMs, 60_000),
  );
  sweeper.unref();
  const close = async () => {
    clearInterval(sweeper);
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeIdleConnections();
      for (const socket of sockets) socket.destroy();
    });
    for (const session of [...open]) end(session, 'closed');
    context.upstream.agent.destroy();
  };
  return {
    address: server.address() as AddressInfo,
    close,
    async drain(deadlineMs) {
      stopAccepting(server);
      server.closeIdleConnections();
      await settle(() => inFlight > 0, deadlineMs);
      await close();
    },
  };
}

/**
 * Detectors and patterns that also read values percent-encoded, `\u`/`\x`-escaped and as HTML
 * character references, as the HTTP enforcer reads them (a model reads ada%40example.com too),
 * and the held credential overwritten wherever the server echoes it: every string is read for it.
 */
function readingEncoded(plan: MaskingPlan, held: string[]): MaskingPlan {
  const encoded = maskEncoded((text) => plan.maskText(text));
  return {
    ...plan,
    hasScanners: plan.hasScanners || held.length > 0,
    maskText: (text, column) => {
      const result = column ? plan.maskText(text, column) : encoded(text);
      return held.length > 0 ? { ...result, value: hideHeld(held, result.value) } : result;
    },
  };
}
