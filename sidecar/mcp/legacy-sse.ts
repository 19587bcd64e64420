// The deprecated HTTP+SSE transport (MCP 2024-11-05), for servers that still speak it: the agent
// opens an event stream with GET, the server's first event (`endpoint`) names where to post,
// every answer comes back on the stream. The enforcer relays the stream (relay.ts, as for the
// streamable transport), names the same endpoint on its own listener (a server naming another
// host ends the stream), and admits each post as the streamable transport does; a post is
// accepted at once, and what the enforcer answers (refusals, progress while a request is held)
// goes on the agent's stream.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { AirlockError } from '../core/errors.ts';
import { admit } from './admit.ts';
import type { Context, Session } from './context.ts';
import { defaultProgressEveryMs, parseMessages, readMessage, unanswered } from './exchange.ts';
import { errorResponse } from './jsonrpc.ts';
import { type Relay, relay } from './relay.ts';
import { Progress, plain } from './reply.ts';
import { SseReader, sseEvent } from './sse.ts';
import { send } from './upstream.ts';

/** An agent's open stream, by the endpoint (path and query) the server named for its posts. */
export interface LegacyStream {
  session: Session;
  relay: Relay;
  /** Writes a message to the agent's stream. */
  write: (message: Record<string, unknown>) => void;
  /** Aborted when the agent's stream closes: its holds end. */
  closed: AbortSignal;
}

const streamHeaders = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' };

/** GET: the server's stream, relayed; its endpoint registered for the agent's posts. */
export async function openLegacyStream(
  context: Context,
  session: Session,
  res: ServerResponse,
  streams: Map<string, LegacyStream>,
): Promise<void> {
  const gone = new AbortController();
  res.once('close', () => gone.abort());
  const unrecorded = session.gate.unrecorded();
  if (unrecorded) {
    plain(res, 503, unrecorded.message);
    return;
  }
  const upstream = await send(context, 'GET', { accept: 'text/event-stream' }, undefined, gone.signal);
  const status = upstream.statusCode ?? 502;
  if (status !== 200 || !String(upstream.headers['content-type'] ?? '').startsWith('text/event-stream')) {
    upstream.resume();
    plain(
      res,
      status === 200 ? 502 : status,
      `airlock: the MCP server answered HTTP ${status} without an event stream`,
    );
    return;
  }
  res.writeHead(200, streamHeaders);
  res.flushHeaders();
  let endpoint: string | undefined;
  const write = (message: Record<string, unknown>) => {
    if (!res.destroyed) res.write(sseEvent(JSON.stringify(message), { event: 'message' }));
  };
  const r: Relay = {
    context,
    session,
    answerServer: (message) => {
      if (endpoint === undefined) return;
      send(context, 'POST', {}, JSON.stringify(message), undefined, endpoint)
        .then((answer) => answer.resume())
        .catch((error: Error) => session.recorder.error('upstream-unreachable', error.message));
    },
  };
  const reader = new SseReader(context.mcp.maxMessageBytes);
  upstream.setEncoding('utf8');
  try {
    for await (const chunk of upstream as AsyncIterable<string>) {
      for (const event of reader.push(chunk)) {
        if (event.event === 'endpoint') {
          endpoint = ownEndpoint(context, event.data);
          if (endpoint === undefined) {
            session.recorder.error(
              'protocol-violation',
              `airlock: the server named a message endpoint elsewhere (${event.data})`,
            );
            upstream.destroy();
            break;
          }
          streams.set(endpoint, { session, relay: r, write, closed: gone.signal });
          res.write(sseEvent(endpoint, { event: 'endpoint' }));
          continue;
        }
        if (event.event !== undefined && event.event !== 'message') continue;
        for (const message of parseMessages(r, event.data)) {
          const out = relay(r, message);
          if (out) write(out);
        }
      }
    }
  } catch (error) {
    upstream.destroy();
    session.recorder.error(
      'masking-failed',
      `airlock: the server's stream was cut: ${error instanceof Error ? error.message : String(error)}`,
    );
  } finally {
    if (endpoint !== undefined) streams.delete(endpoint);
    if (!res.writableEnded) res.end();
  }
}

/** POST to a stream's endpoint: accepted at once, admitted, forwarded; answers go on the stream. */
export async function postLegacy(
  context: Context,
  stream: LegacyStream,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const { session } = stream;
  const body = await readMessage(context, session, req, res);
  if (!body) return;
  res.writeHead(202).end('Accepted');
  const sink = { startStream: () => undefined, send: stream.write };
  const progress = new Progress(sink, true, context.options.progressEveryMs ?? defaultProgressEveryMs);
  let admission: Awaited<ReturnType<typeof admit>>;
  try {
    admission = await admit(context, session, body, { signal: stream.closed, onHold: progress.start });
  } finally {
    progress.stop();
  }
  if (!admission.go) {
    for (const refusal of admission.refusals)
      stream.write(
        errorResponse(refusal.id, refusal.error, {
          ...(refusal.policy !== undefined && { policy: refusal.policy }),
          ...(refusal.rule !== undefined && { rule: refusal.rule }),
        }),
      );
    return;
  }
  if (admission.forward.length === 0 || stream.closed.aborted) return;
  const ids = body.messages.flatMap((m) => (m.kind === 'request' ? [m.id] : []));
  const failed = (error: AirlockError) => unanswered(stream.relay, stream.write, ids, error);
  try {
    const upstream = await send(
      context,
      'POST',
      {},
      JSON.stringify(body.batch ? admission.forward : admission.forward[0]),
      undefined,
      req.url,
    );
    upstream.resume();
    const status = upstream.statusCode ?? 502;
    if (status < 200 || status >= 300)
      failed(new AirlockError('target-error', `airlock: the server answered HTTP ${status}`));
  } catch (error) {
    failed(error instanceof AirlockError ? error : new AirlockError('upstream-unreachable', String(error)));
  }
}

/** The server's endpoint as the agent posts to it on the sidecar: its path and query, on the server's own origin only. */
function ownEndpoint(context: Context, named: string): string | undefined {
  const { connection, mcp } = context;
  const origin = `${mcp.scheme}://${connection.host}:${connection.port}`;
  let url: URL;
  try {
    url = new URL(named, `${origin}${mcp.path}`);
  } catch {
    return undefined;
  }
  const sameOrigin =
    url.protocol === `${mcp.scheme}:` &&
    url.hostname === new URL(origin).hostname &&
    Number(url.port || (mcp.scheme === 'https' ? 443 : 80)) === connection.port;
  return sameOrigin ? `${url.pathname}${url.search}` : undefined;
}
