// The target's side of the HTTP enforcer: HTTP/1.1 requests on kept connections, each response
// framed by Node's own parser (llhttp, strict: the one its HTTP client reads with), without the
// client request, agent and incoming message around it, which cost as much CPU per request as
// the enforcer's own work (bench/README.md). A connection carries one exchange at a time and is
// kept only when its response ended where its framing said and nothing followed it; anything
// else the target sends (bytes after a response, a response while none was asked for, a switch
// of protocol) closes it, so no byte of one response can reach the next request's agent. (Bytes
// the target sends unasked that arrive only after the next request was written cannot be told
// from its response; they are then framed and masked as that response, and what follows them
// closes the connection.)
import { EventEmitter } from 'node:events';
import type { IncomingHttpHeaders } from 'node:http';
import { createRequire } from 'node:module';
import { connect as connectTcp, type LookupFunction, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { connect as connectTls } from 'node:tls';
import { http } from '../core/node-http.ts';

// The response parser Node's HTTP client uses; it has no public name.
const { HTTPParser } = createRequire(import.meta.url)('_http_common') as { HTTPParser: ParserClass };

interface ParserClass {
  new (): Parser;
  RESPONSE: number;
  kOnMessageBegin: number;
  kOnHeaders: number;
  kOnHeadersComplete: number;
  kOnBody: number;
  kOnMessageComplete: number;
}

interface Parser {
  [callback: number]: unknown;
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  execute(data: Buffer): number | Error;
  finish(): number | Error | undefined;
  close(): void;
}

export interface UpstreamTarget {
  host: string;
  port: number;
  secure: boolean;
  tls: { rejectUnauthorized: boolean; ca?: string; servername?: string };
  lookup?: LookupFunction;
}

/** A response's status and headers (as node:http's IncomingMessage names them), its body a stream. */
export class UpstreamResponse extends Readable {
  readonly statusCode: number;
  readonly headers: IncomingHttpHeaders;
  private readonly connection: KeptConnection;

  constructor(connection: KeptConnection, statusCode: number, headers: IncomingHttpHeaders) {
    super();
    this.connection = connection;
    this.statusCode = statusCode;
    this.headers = headers;
  }

  override _read(): void {
    this.connection.socket.resume();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // A body not read to its end leaves the connection mid-message: it is not kept.
    if (!this.readableEnded) this.connection.socket.destroy();
    // As node:http's IncomingMessage: a cut body is an error only to a reader listening for one
    // (a body being drained after a refusal has none, and must not end the process).
    callback(this.listenerCount('error') > 0 ? error : null);
  }
}

/**
 * One request to the target: its head written with the first body bytes (or at `end()` for a
 * request without a body), its body framed as its headers say (Content-Length, or chunked).
 * A body that would not end where its framing says (a byte past its length, or a length not
 * reached at `end()`) is never written: the bytes past it would be read by the target as a
 * request of its own. The exchange fails instead, and its connection closes.
 * Emits 'response' (an UpstreamResponse), 'error' (before a response, or cutting its body), and
 * 'drain'.
 */
export class UpstreamRequest extends EventEmitter {
  readonly method: string;
  private readonly connection: KeptConnection;
  private head: string | undefined;
  private readonly chunked: boolean;
  /** Body bytes its Content-Length still announces (0 for a request without one); chunked: unused. */
  private remaining: number;
  /** Every byte of the request was written. */
  sent = false;
  /** The response ended where its framing said. */
  answered = false;
  destroyed = false;

  constructor(connection: KeptConnection, method: string, head: string, length: number | 'chunked') {
    super();
    this.method = method;
    this.connection = connection;
    this.head = head;
    this.chunked = length === 'chunked';
    this.remaining = length === 'chunked' ? 0 : length;
  }

  write(chunk: Buffer): boolean {
    const { socket } = this.connection;
    if (this.destroyed || socket.destroyed || chunk.length === 0) return !socket.writableNeedDrain;
    if (!this.chunked) {
      if (chunk.length > this.remaining) {
        this.cut('the request body is longer than its Content-Length');
        return false;
      }
      this.remaining -= chunk.length;
    }
    socket.cork();
    this.writeHead();
    let flowing: boolean;
    if (this.chunked) {
      socket.write(`${chunk.length.toString(16)}\r\n`, 'latin1');
      socket.write(chunk);
      flowing = socket.write('\r\n', 'latin1');
    } else flowing = socket.write(chunk);
    socket.uncork();
    return flowing;
  }

  end(): void {
    if (this.destroyed || this.sent || this.connection.socket.destroyed) return;
    if (this.remaining > 0) {
      this.cut('the request body is shorter than its Content-Length');
      return;
    }
    const { socket } = this.connection;
    // A request without a body is its head alone: one write, not a corked vector of one.
    if (this.head !== undefined && !this.chunked) this.writeHead();
    else {
      socket.cork();
      this.writeHead();
      if (this.chunked) socket.write('0\r\n\r\n', 'latin1');
      socket.uncork();
    }
    this.sent = true;
    this.connection.settle();
  }

  /** Ends the exchange: its connection is closed, and nothing more is emitted. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.connection.socket.destroy();
  }

  /** The connection closes with `reason`, which the exchange fails with (as any connection error). */
  private cut(reason: string): void {
    this.connection.socket.destroy(new Error(reason));
  }

  private writeHead(): void {
    if (this.head === undefined) return;
    this.connection.socket.write(this.head, 'latin1');
    this.head = undefined;
  }
}

/**
 * How the headers frame the body: its length, chunked, or undefined when they do not say. One
 * framing only, each spelled once and plainly (the body is written as it says, and the target
 * reads it by the same words).
 */
function bodyLength(headers: Record<string, string | string[]>): number | 'chunked' | undefined {
  const length = headers['content-length'];
  const coding = headers['transfer-encoding'];
  if (length !== undefined && coding !== undefined)
    throw new TypeError('a request framed by both Content-Length and Transfer-Encoding');
  if (coding !== undefined) {
    if (coding !== 'chunked') throw new TypeError(`unsupported request transfer-encoding ${String(coding)}`);
    return 'chunked';
  }
  if (length === undefined) return undefined;
  if (typeof length !== 'string' || !/^\d+$/.test(length) || !Number.isSafeInteger(Number(length)))
    throw new TypeError(`invalid request content-length ${JSON.stringify(length)}`);
  return Number(length);
}

/** A method, as RFC 9110 spells a token. */
const token = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** A request target as node:http's client accepts one: visible Latin-1 bytes, no space. */
const requestPath = /^[\u0021-\u00ff]+$/;

/**
 * Idle connections kept at most (node:http's Agent keeps 256): a burst of concurrent requests
 * leaves no more than these open to the target once it is over.
 */
const maxIdleConnections = 256;

/** Methods whose request without a body says so with `Content-Length: 0`, as node:http writes them. */
const bodyByDefault = new Set(['GET', 'HEAD', 'DELETE', 'OPTIONS', 'TRACE', 'CONNECT']);

/** Kept connections to one target, used one exchange at a time. */
export class Upstream {
  private readonly target: UpstreamTarget;
  private readonly idle: KeptConnection[] = [];
  private readonly open = new Set<KeptConnection>();

  constructor(target: UpstreamTarget) {
    this.target = target;
  }

  /**
   * Starts a request on an idle connection or a new one. Header names and values are checked as
   * node:http checks them (a line break in a credential's value cannot start a header of its
   * own), and so are the method (a token) and the path (no space, control character or character
   * that is not one byte: written as Latin-1, U+010A would be a line feed): an invalid one
   * throws, and nothing is sent.
   */
  request(method: string, path: string, headers: Record<string, string | string[]>): UpstreamRequest {
    if (!token.test(method)) throw new TypeError(`invalid HTTP method ${JSON.stringify(method)}`);
    if (!requestPath.test(path)) throw new TypeError(`invalid request path ${JSON.stringify(path)}`);
    const length = bodyLength(headers);
    let head = `${method} ${path} HTTP/1.1\r\n`;
    for (const name in headers) {
      const value = headers[name]!;
      http.validateHeaderName(name);
      if (typeof value === 'string') {
        http.validateHeaderValue(name, value);
        head += `${name}: ${value}\r\n`;
      } else
        for (const one of value) {
          http.validateHeaderValue(name, one);
          head += `${name}: ${one}\r\n`;
        }
    }
    if (length === undefined && !bodyByDefault.has(method)) head += 'content-length: 0\r\n';
    head += 'connection: keep-alive\r\n\r\n';
    let connection = this.idle.pop();
    // An idle connection the target wrote to is closing (settle): never reused.
    while (connection && (connection.socket.destroyed || connection.socket.readableLength > 0))
      connection = this.idle.pop();
    connection ??= this.connect();
    const exchange = new UpstreamRequest(connection, method, head, length ?? 0);
    connection.begin(exchange);
    return exchange;
  }

  /** Closes every connection. */
  destroy(): void {
    for (const connection of this.open) connection.socket.destroy();
  }

  private connect(): KeptConnection {
    const { host, port, secure, tls, lookup } = this.target;
    const socket = secure
      ? connectTls({ host, port, ...tls, ...(lookup && { lookup }) })
      : connectTcp({ host, port, ...(lookup && { lookup }) });
    socket.setNoDelay(true);
    const connection = new KeptConnection(socket, (kept) => this.release(kept));
    this.open.add(connection);
    socket.on('close', () => {
      this.open.delete(connection);
      const at = this.idle.indexOf(connection);
      if (at !== -1) this.idle.splice(at, 1);
    });
    return connection;
  }

  private release(connection: KeptConnection): void {
    if (this.idle.length >= maxIdleConnections) connection.socket.destroy();
    else this.idle.push(connection);
  }
}

/** Response headers node:http keeps the first of when repeated (its IncomingMessage does the same). */
const firstOnly = new Set([
  'content-type',
  'content-length',
  'user-agent',
  'referer',
  'host',
  'authorization',
  'proxy-authorization',
  'if-modified-since',
  'if-unmodified-since',
  'from',
  'location',
  'max-forwards',
  'retry-after',
  'etag',
  'last-modified',
  'server',
  'age',
  'expires',
]);

/** Headers as IncomingMessage.headers holds them: lower case, repeats joined (Set-Cookie a list). */
function headersOf(raw: string[]): IncomingHttpHeaders {
  // No prototype: a header named `constructor` or `__proto__` is a header like any other.
  const headers: Record<string, string | string[]> = Object.create(null);
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    const value = raw[i + 1]!;
    const seen = headers[name];
    if (name === 'set-cookie') {
      if (seen === undefined) headers[name] = [value];
      else (seen as string[]).push(value);
    } else if (seen === undefined) headers[name] = value;
    else if (!firstOnly.has(name)) headers[name] = `${seen}${name === 'cookie' ? '; ' : ', '}${value}`;
  }
  return headers;
}

/** How long the target keeps an idle connection (Keep-Alive: timeout=N), less a second; undefined if unsaid. */
function keptFor(headers: IncomingHttpHeaders): number | undefined {
  const hint = /(?:^|[,\s])timeout=(\d+)/i.exec(String(headers['keep-alive'] ?? ''))?.[1];
  return hint === undefined ? undefined : Math.min(Number(hint) * 1000 - 1000, maxIdle);
}

/** The longest an idle connection is kept on the target's word (a timer's limit is 2^31 ms). */
const maxIdle = 3_600_000;

/** Header lines read per message at most (node:http's maxHeadersCount of 2,000 pairs). */
const maxHeaderLines = 4000;

/** One socket to the target and its response parser. */
class KeptConnection {
  readonly socket: Socket;
  private readonly onIdle: (connection: KeptConnection) => void;
  private exchange: UpstreamRequest | undefined;
  private response: UpstreamResponse | undefined;
  /** Header (or trailer) lines the parser handed over before their block ended: never another message's. */
  private partial: string[] = [];
  /** The response being read is informational (1xx): the final one follows. */
  private informational = false;
  private keepAlive = false;
  private idleFor: number | undefined;

  constructor(socket: Socket, onIdle: (connection: KeptConnection) => void) {
    this.socket = socket;
    this.onIdle = onIdle;
    const parser = new HTTPParser();
    parser.initialize(HTTPParser.RESPONSE, {}, 0, 0);
    parser[HTTPParser.kOnMessageBegin] = () => {
      this.partial = [];
      // A message while no request waits for one: the target is ahead of its requests.
      if (!this.exchange || this.exchange.answered)
        this.fail(new Error('the target sent a response nobody asked for'));
    };
    parser[HTTPParser.kOnHeaders] = (headers: string[]) => {
      if (this.partial.length < maxHeaderLines) this.partial.push(...headers);
    };
    parser[HTTPParser.kOnHeadersComplete] = (
      _major: number,
      _minor: number,
      headers: string[] | undefined,
      _method: unknown,
      _url: unknown,
      statusCode: number,
      _statusMessage: unknown,
      upgrade: boolean,
      shouldKeepAlive: boolean,
    ) => this.headersComplete(headers, statusCode, upgrade, shouldKeepAlive);
    parser[HTTPParser.kOnBody] = (chunk: Buffer) => {
      if (this.live() && !this.response!.push(chunk)) socket.pause();
    };
    parser[HTTPParser.kOnMessageComplete] = () => this.messageComplete();
    socket.on('data', (data: Buffer) => {
      if (!this.exchange) {
        socket.destroy();
        return;
      }
      const parsed = parser.execute(data);
      if (parsed instanceof Error) this.fail(parsed);
      else this.settle();
    });
    socket.on('end', () => {
      // A body framed by the connection's close ends here; one framed otherwise was cut.
      if (this.exchange && !this.exchange.answered) {
        const finished = parser.finish();
        if (finished instanceof Error) this.fail(finished);
        else if (!this.exchange?.answered) this.fail(new Error('the target closed the connection'));
      }
      socket.destroy();
    });
    socket.on('drain', () => this.exchange?.emit('drain'));
    socket.on('timeout', () => socket.destroy());
    socket.on('error', (error: Error) => this.fail(error));
    socket.on('close', () => {
      if (this.exchange && !this.exchange.answered) this.fail(new Error('socket hang up'));
      parser.close();
    });
  }

  begin(exchange: UpstreamRequest): void {
    this.exchange = exchange;
    this.socket.setTimeout(0);
    this.socket.ref();
    this.socket.resume();
  }

  /** Returns the connection to the idle ones once its request is sent and its response read whole. */
  settle(): void {
    const exchange = this.exchange;
    if (!exchange?.sent || !exchange.answered || this.socket.destroyed) return;
    this.exchange = undefined;
    this.response = undefined;
    if (!this.keepAlive || exchange.destroyed || (this.idleFor !== undefined && this.idleFor <= 0)) {
      this.socket.destroy();
      return;
    }
    if (this.idleFor !== undefined) this.socket.setTimeout(this.idleFor);
    // An idle connection is read, so that whatever the target sends on it closes it.
    this.socket.resume();
    this.socket.unref();
    this.onIdle(this);
  }

  private headersComplete(
    raw: string[] | undefined,
    statusCode: number,
    upgrade: boolean,
    shouldKeepAlive: boolean,
  ): number {
    const lines = raw ?? this.partial;
    this.partial = [];
    const exchange = this.exchange;
    // The rest of a chunk after the socket closed (bytes after a response) is parsed, not read.
    if (!exchange || exchange.destroyed || exchange.answered || this.socket.destroyed) return 1;
    if (upgrade || statusCode === 101) {
      this.fail(new Error('the target switched protocols'));
      return 1;
    }
    if (statusCode < 200) {
      this.informational = true;
      return 1;
    }
    const headers = headersOf(lines);
    this.keepAlive = shouldKeepAlive;
    this.idleFor = keptFor(headers);
    this.response = new UpstreamResponse(this, statusCode, headers);
    exchange.emit('response', this.response);
    // A response to HEAD has no body, whatever its Content-Length says.
    return exchange.method === 'HEAD' ? 1 : 0;
  }

  private messageComplete(): void {
    // Trailers are not forwarded (nor were they by node:http's client here).
    this.partial = [];
    if (this.informational) {
      this.informational = false;
      return;
    }
    if (!this.live()) return;
    this.exchange!.answered = true;
    this.response!.push(null);
  }

  /** A response is being read, on a socket still open. */
  private live(): boolean {
    return (
      this.response !== undefined && !!this.exchange && !this.exchange.answered && !this.socket.destroyed
    );
  }

  /** The exchange fails with `error` (before its response, or cutting its body), and the socket closes. */
  private fail(error: Error): void {
    const exchange = this.exchange;
    const response = this.response;
    this.socket.destroy();
    if (!exchange || exchange.destroyed || exchange.answered) return;
    exchange.destroyed = true;
    if (response) response.destroy(error);
    else exchange.emit('error', error);
  }
}
