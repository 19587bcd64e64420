// The answer to one agent's post: JSON (one response, or an array for a batch) unless it has
// to become an event stream, because the server streams or because a held request keeps the
// agent waiting with progress notifications; and the enforcer's own plain answers.
import type { ServerResponse } from 'node:http';
import type { Session } from './context.ts';
import type { Id } from './jsonrpc.ts';
import { sseEvent } from './sse.ts';

/**
 * The answer to one post: JSON (one response, or an array for a batch) unless it had to become
 * an event stream: the server streams, or a held request keeps the agent waiting with progress.
 */
export class Reply {
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

/** Where progress notifications go: a post's reply, or the sse transport's stream. */
export interface ProgressSink {
  startStream(): void;
  send(message: Record<string, unknown>): void;
}

/** Keeps an agent waiting on a held request, if it gave a progress token and takes event streams. */
export class Progress {
  readonly #reply: ProgressSink;
  readonly #accepts: boolean;
  readonly #everyMs: number;
  readonly #timers: NodeJS.Timeout[] = [];

  /** accepts: the agent reads event streams (the Accept of its post, or the sse transport). */
  constructor(reply: ProgressSink, accepts: boolean, everyMs: number) {
    this.#reply = reply;
    this.#accepts = accepts;
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

export function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

export function plain(res: ServerResponse, status: number, text: string): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' }).end(text);
}
