// One exchange with the server per agent request: a POST read whole (bounded), admitted
// (admit.ts), forwarded and answered message by message (relay.ts), whether the server answers
// with JSON or an event stream; the GET stream of the server's own messages; DELETE.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { AirlockError } from '../core/errors.ts';
import { admit } from './admit.ts';
import type { Context, Session } from './context.ts';
import { type Body, errorResponse, type Id, jsonRpcCodes, parseBody } from './jsonrpc.ts';
import { type Relay, record, relay } from './relay.ts';
import { json, Progress, plain, Reply } from './reply.ts';
import { SseReader } from './sse.ts';
import { readBounded, send } from './upstream.ts';

export const defaultProgressEveryMs = 10_000;

/**
 * An agent's POSTed message, read up to the Connection's bound and parsed as JSON-RPC; undefined
 * when it was refused (413 past the bound, 400 when it is not JSON-RPC), the refusal recorded.
 */
export async function readMessage(
  context: Context,
  session: Session,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<Body | undefined> {
  const limit = context.mcp.maxMessageBytes;
  const text = await readBounded(req, limit, true);
  if (text === undefined) {
    const error = new AirlockError(
      'protocol-violation',
      `airlock: the message is larger than ${limit} bytes, the limit of this Connection`,
    );
    session.recorder.error(error.code, error.message);
    res.setHeader('connection', 'close');
    json(res, 413, errorResponse(null, error));
    return undefined;
  }
  const parsed = parseBody(text);
  if (!parsed.ok) {
    session.recorder.error(parsed.error.code, parsed.error.message);
    json(res, 400, errorResponse(null, parsed.error, { code: parsed.code }));
    return undefined;
  }
  return parsed.body;
}

/** A POST: one message or a batch, admitted, forwarded, answered. */
export async function post(
  context: Context,
  session: Session,
  req: IncomingMessage,
  res: ServerResponse,
  named: (session: Session, req: IncomingMessage, upstream: IncomingMessage) => void,
): Promise<void> {
  const body = await readMessage(context, session, req, res);
  if (!body) return;
  const reply = new Reply(res, body.batch, session);
  const gone = new AbortController();
  res.once('close', () => gone.abort());
  const accepts = String(req.headers.accept ?? '').includes('text/event-stream');
  const progress = new Progress(reply, accepts, context.options.progressEveryMs ?? defaultProgressEveryMs);
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
      (m) => reply.send(m),
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
      (m) => reply.send(m),
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
        (m) => reply.send(m),
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
        (m) => reply.send(m),
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
      (m) => reply.send(m),
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
export async function stream(
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
export async function remove(
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
export function parseMessages(r: Relay, text: string): unknown[] {
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
export function unanswered(
  r: Relay,
  write: (message: Record<string, unknown>) => void,
  ids: Id[],
  error: AirlockError,
): void {
  for (const id of ids) {
    const pending = r.session.pending.get(id);
    if (!pending) continue;
    r.session.pending.delete(id);
    if (pending.recorded)
      record(r, pending, { outcome: 'error', error: error.event(jsonRpcCodes[error.code]) });
    write(errorResponse(id, error));
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
