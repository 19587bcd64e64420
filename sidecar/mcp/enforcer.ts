// The MCP enforcer. The agent's MCP client speaks the streamable HTTP transport to the
// listener as if it were the server: it posts JSON-RPC messages to the endpoint's path, opens
// the server's event stream with GET and ends its session with DELETE. Each post is read whole
// (bounded), admitted request by request (admit.ts: decided, held for approval while progress
// notifications keep the agent waiting, or refused with a JSON-RPC error), and forwarded with
// the held credential; what the server answers, as JSON or as an event stream, goes back
// message by message through relay.ts (filtered, masked, recorded). Anything the enforcer
// cannot read as JSON-RPC is refused, never passed on.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Enforcer } from '../core/enforcer.ts';
import { AirlockError } from '../core/errors.ts';
import { ApprovalGate } from '../core/gate.ts';
import { settle, stopAccepting } from '../core/listen.ts';
import { SessionRecorder } from '../core/recorder.ts';
import { compileJsonPaths } from '../policy/json-paths.ts';
import { compileMasking } from '../policy/masking.ts';
import { admit } from './admit.ts';
import type { Context, McpEnforcerOptions, McpOptions, Session } from './context.ts';
import { ToolPins } from './fingerprints.ts';
import { type Body, errorResponse, type Id, jsonRpcCodes, parseBody } from './jsonrpc.ts';
import { type Relay, record, relay } from './relay.ts';
import { SseReader, sseEvent } from './sse.ts';
import { readBounded, send, upstreamOf } from './upstream.ts';

export const defaultProgressEveryMs = 10_000;

export async function serveMcp(options: McpEnforcerOptions): Promise<Enforcer> {
  const { connection } = options;
  if (connection.protocol !== 'mcp')
    throw new Error(`Connection ${connection.name} is not an mcp Connection`);
  const mcp: McpOptions = {
    scheme: connection.mcp?.scheme ?? 'https',
    path: connection.mcp?.path ?? '/mcp',
    serverRequests: connection.mcp?.serverRequests ?? [],
    toolChanges: connection.mcp?.toolChanges ?? 'require-approval',
    maxMessageBytes: connection.mcp?.maxMessageBytes ?? 4 * 1024 * 1024,
  };
  const context: Context = {
    options,
    connection,
    mcp,
    masker: { plan: compileMasking(connection.policies), paths: compileJsonPaths(connection.policies) },
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

  const server = createServer({ keepAlive: true });
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
    if (path !== mcp.path) {
      plain(res, 404, `airlock: the MCP endpoint is ${mcp.path}`);
      req.resume();
      return;
    }
    const handled =
      req.method === 'POST'
        ? post(context, sessionFor(req), req, res, named)
        : req.method === 'GET'
          ? stream(context, sessionFor(req), req, res)
          : req.method === 'DELETE'
            ? remove(context, req, res, sessions, end)
            : Promise.resolve(plain(res, 405, 'airlock: the MCP endpoint takes POST, GET and DELETE'));
    handled.catch((error: Error) => {
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
  const close = async () => {
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

/** A POST: one message or a batch, admitted, forwarded, answered. */
async function post(
  context: Context,
  session: Session,
  req: IncomingMessage,
  res: ServerResponse,
  named: (session: Session, req: IncomingMessage, upstream: IncomingMessage) => void,
): Promise<void> {
  const limit = context.mcp.maxMessageBytes;
  const text = await readBounded(req, limit);
  if (text === undefined) {
    const error = new AirlockError(
      'protocol-violation',
      `airlock: the message is larger than ${limit} bytes, the limit of this Connection`,
    );
    session.recorder.error(error.code, error.message);
    json(res, 413, errorResponse(null, error));
    return;
  }
  const parsed = parseBody(text);
  if (!parsed.ok) {
    session.recorder.error(parsed.error.code, parsed.error.message);
    json(res, 400, errorResponse(null, parsed.error, { code: parsed.code }));
    return;
  }
  const body = parsed.body;
  const reply = new Reply(res, body.batch, session);
  const gone = new AbortController();
  res.once('close', () => gone.abort());
  const progress = new Progress(reply, req, context.options.progressEveryMs ?? defaultProgressEveryMs);
  let admission: Awaited<ReturnType<typeof admit>>;
  try {
    admission = await admit(context, session, body, { signal: gone.signal, onHold: progress.start });
  } finally {
    progress.stop();
  }
  if (!admission.go) {
    for (const refusal of admission.refusals)
      reply.send(
        errorResponse(refusal.id, refusal.error, {
          ...(refusal.policy !== undefined && { policy: refusal.policy }),
          ...(refusal.rule !== undefined && { rule: refusal.rule }),
        }),
      );
    reply.finish();
    return;
  }
  if (gone.signal.aborted) return;
  const ids = requestIds(body);
  if (admission.forward.length === 0) {
    reply.finish();
    return;
  }
  const r = relayFor(context, session, req);
  let upstream: IncomingMessage;
  try {
    upstream = await send(
      context,
      'POST',
      req.headers,
      JSON.stringify(body.batch ? admission.forward : admission.forward[0]),
      gone.signal,
    );
  } catch (error) {
    unanswered(
      r,
      reply,
      ids,
      error instanceof AirlockError ? error : new AirlockError('upstream-unreachable', String(error)),
    );
    reply.finish();
    return;
  }
  named(session, req, upstream);
  await answer(r, reply, upstream, ids);
}

/** The server's answer to a post, passed on message by message. */
async function answer(r: Relay, reply: Reply, upstream: IncomingMessage, ids: Id[]): Promise<void> {
  const { context } = r;
  const status = upstream.statusCode ?? 502;
  const type = String(upstream.headers['content-type'] ?? '').toLowerCase();
  if (status >= 200 && status < 300 && type.startsWith('text/event-stream')) {
    await relayStream(
      r,
      upstream,
      (event, messages) => {
        for (const m of messages) reply.send(m, event.id);
      },
      reply,
    );
    unanswered(
      r,
      reply,
      ids,
      new AirlockError('target-error', 'airlock: the server ended its stream without an answer'),
    );
    reply.finish();
    return;
  }
  const text = await readBounded(upstream, context.mcp.maxMessageBytes);
  if (status >= 200 && status < 300 && type.startsWith('application/json')) {
    if (text === undefined) {
      unanswered(
        r,
        reply,
        ids,
        new AirlockError(
          'masking-failed',
          `airlock: the server's answer is larger than ${context.mcp.maxMessageBytes} bytes`,
        ),
      );
    } else {
      for (const m of parseMessages(r, text)) {
        const out = relay(r, m);
        if (out) reply.send(out);
      }
      unanswered(
        r,
        reply,
        ids,
        new AirlockError('target-error', 'airlock: the server answered without a response'),
      );
    }
    reply.finish();
    return;
  }
  if (status === 202 || (status >= 200 && status < 300)) {
    unanswered(
      r,
      reply,
      ids,
      new AirlockError('target-error', 'airlock: the server accepted a request without answering it'),
    );
    reply.finish();
    return;
  }
  // The server's own refusal (an unknown session, its authorization): its status tells the
  // agent's transport what to do, so it passes, its text masked.
  const error = new AirlockError('target-error', `airlock: the server answered HTTP ${status}`);
  for (const id of ids) {
    const pending = r.session.pending.get(id);
    if (!pending) continue;
    r.session.pending.delete(id);
    if (pending.recorded) record(r, pending, { outcome: 'error', error: error.event(status) });
  }
  reply.passStatus(status, type, text === undefined ? '' : context.masker.plan.maskText(text).value);
}

/** GET: the server's own event stream (its requests and notifications), relayed. */
async function stream(
  context: Context,
  session: Session,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const gone = new AbortController();
  res.once('close', () => gone.abort());
  const unrecorded = session.gate.unrecorded();
  if (unrecorded) {
    plain(res, 503, unrecorded.message);
    return;
  }
  const upstream = await send(context, 'GET', req.headers, undefined, gone.signal);
  const status = upstream.statusCode ?? 502;
  const type = String(upstream.headers['content-type'] ?? '').toLowerCase();
  const reply = new Reply(res, false, session);
  if (status >= 200 && status < 300 && type.startsWith('text/event-stream')) {
    const r = relayFor(context, session, req);
    await relayStream(
      r,
      upstream,
      (event, messages) => {
        for (const m of messages) reply.send(m, event.id);
      },
      reply,
    );
    reply.finish();
    return;
  }
  const text = await readBounded(upstream, context.mcp.maxMessageBytes);
  reply.passStatus(status, type, text === undefined ? '' : context.masker.plan.maskText(text).value);
}

/** DELETE: the agent ends its session; the server is told, the session's record ends. */
async function remove(
  context: Context,
  req: IncomingMessage,
  res: ServerResponse,
  sessions: Map<string, Session>,
  end: (session: Session, reason: string) => void,
): Promise<void> {
  const upstream = await send(context, 'DELETE', req.headers);
  upstream.resume();
  const id = req.headers['mcp-session-id'];
  const session = typeof id === 'string' ? sessions.get(id) : undefined;
  if (session && (upstream.statusCode ?? 500) < 300) end(session, 'ended by the agent');
  res.writeHead(upstream.statusCode ?? 502).end();
}

/** Reads an event stream from the server, each event's messages relayed; stops at a bound. */
async function relayStream(
  r: Relay,
  upstream: IncomingMessage,
  write: (event: { id?: string }, messages: Record<string, unknown>[]) => void,
  reply: Reply,
): Promise<void> {
  reply.startStream();
  const reader = new SseReader(r.context.mcp.maxMessageBytes);
  upstream.setEncoding('utf8');
  try {
    for await (const chunk of upstream as AsyncIterable<string>) {
      for (const event of reader.push(chunk)) {
        if (event.event !== undefined && event.event !== 'message') continue;
        const messages = parseMessages(r, event.data).flatMap((m) => {
          const out = relay(r, m);
          return out ? [out] : [];
        });
        if (messages.length > 0) write(event, messages);
      }
    }
  } catch (error) {
    upstream.destroy();
    r.session.recorder.error(
      'masking-failed',
      `airlock: the server's stream was cut: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
}

/** A body from the server: one message or a batch; what is not JSON is dropped and recorded. */
function parseMessages(r: Relay, text: string): unknown[] {
  try {
    const value: unknown = JSON.parse(text);
    return Array.isArray(value) ? value : [value];
  } catch {
    r.session.recorder.error(
      'protocol-violation',
      'airlock: the server sent a message that is not JSON; it was not passed on',
    );
    return [];
  }
}

/** Requests of this post the server never answered: the agent gets an error for each, and it is recorded. */
function unanswered(r: Relay, reply: Reply, ids: Id[], error: AirlockError): void {
  for (const id of ids) {
    const pending = r.session.pending.get(id);
    if (!pending) continue;
    r.session.pending.delete(id);
    if (pending.recorded)
      record(r, pending, { outcome: 'error', error: error.event(jsonRpcCodes[error.code]) });
    reply.send(errorResponse(id, error));
  }
}

function relayFor(context: Context, session: Session, req: IncomingMessage): Relay {
  return {
    context,
    session,
    answerServer: (message) => {
      const headers = {
        ...req.headers,
        accept: 'application/json, text/event-stream',
        ...(session.id !== undefined && { 'mcp-session-id': session.id }),
      };
      send(context, 'POST', headers, JSON.stringify(message))
        .then((res) => res.resume())
        .catch((error: Error) => session.recorder.error('upstream-unreachable', error.message));
    },
  };
}

function requestIds(body: Body): Id[] {
  return body.messages.flatMap((m) => (m.kind === 'request' ? [m.id] : []));
}

/**
 * The answer to one post: JSON (one response, or an array for a batch) unless it had to become
 * an event stream: the server streams, or a held request keeps the agent waiting with progress.
 */
class Reply {
  readonly #res: ServerResponse;
  readonly #batch: boolean;
  readonly #session: Session;
  #streaming = false;
  readonly #collected: Record<string, unknown>[] = [];

  constructor(res: ServerResponse, batch: boolean, session: Session) {
    this.#res = res;
    this.#batch = batch;
    this.#session = session;
  }

  get streaming(): boolean {
    return this.#streaming;
  }

  #headers(): Record<string, string> {
    return this.#session.id !== undefined ? { 'mcp-session-id': this.#session.id } : {};
  }

  startStream(): void {
    if (this.#streaming || this.#res.headersSent) return;
    this.#streaming = true;
    this.#res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      ...this.#headers(),
    });
    this.#res.flushHeaders();
    for (const m of this.#collected.splice(0)) this.send(m);
  }

  send(message: Record<string, unknown>, eventId?: string): void {
    if (this.#res.destroyed) return;
    if (this.#streaming)
      this.#res.write(sseEvent(JSON.stringify(message), eventId !== undefined ? { id: eventId } : {}));
    else if ('id' in message) this.#collected.push(message);
  }

  finish(): void {
    if (this.#res.destroyed || this.#res.writableEnded) return;
    if (this.#streaming) this.#res.end();
    else if (this.#collected.length === 0) this.#res.writeHead(202, this.#headers()).end();
    else {
      const body = JSON.stringify(this.#batch ? this.#collected : this.#collected[0]);
      this.#res.writeHead(200, { 'content-type': 'application/json', ...this.#headers() }).end(body);
    }
  }

  /** The server's own non-success answer, passed with its status. */
  passStatus(status: number, type: string, text: string): void {
    if (this.#streaming) {
      this.#res.end();
      return;
    }
    this.#res.writeHead(status, { ...(type && { 'content-type': type }), ...this.#headers() }).end(text);
  }
}

/** Keeps an agent waiting on a held request, if it gave a progress token and takes event streams. */
class Progress {
  readonly #reply: Reply;
  readonly #accepts: boolean;
  readonly #everyMs: number;
  readonly #timers: NodeJS.Timeout[] = [];

  constructor(reply: Reply, req: IncomingMessage, everyMs: number) {
    this.#reply = reply;
    this.#accepts = String(req.headers.accept ?? '').includes('text/event-stream');
    this.#everyMs = everyMs;
  }

  start = (_id: Id, message: string, progressToken: unknown): void => {
    if (!this.#accepts || (typeof progressToken !== 'string' && typeof progressToken !== 'number')) return;
    this.#reply.startStream();
    let progress = 0;
    const tell = () =>
      this.#reply.send({
        jsonrpc: '2.0',
        method: 'notifications/progress',
        params: { progressToken, progress: ++progress, message },
      });
    tell();
    this.#timers.push(setInterval(tell, this.#everyMs));
  };

  stop(): void {
    for (const timer of this.#timers) clearInterval(timer);
  }
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

function plain(res: ServerResponse, status: number, text: string): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' }).end(text);
}
