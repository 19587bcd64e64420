// Forwarding one decided request: the agent's credentials stripped and the held one injected,
// path-routing headers dropped, the request body recorded up to a bound; the response's headers
// masked like its body, and its body masked as it streams (JSON token by token, other text chunk
// by chunk), or refused with 502 when masking applies and it cannot be read.
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import { AirlockError } from '../core/errors.ts';
import type { SessionRecorder } from '../core/recorder.ts';
import { hideHeld } from '../policy/held.ts';
import { JsonMasking, jsonMasker, SniffedMasking, TextMasking, toUtf8, utf8Reader } from './bodies.ts';
import {
  type Context,
  credentialHeaders,
  defaultMaxJsonBody,
  defaultMaxRecordedBody,
  describeHeaders,
  hasBody as hasRequestBody,
  method,
  problem,
  redactText,
} from './context.ts';
import { HeldFilter } from './held.ts';
import type { UpstreamResponse } from './upstream.ts';

const hopByHop = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** Content types whose bytes are not text: recorded as a size only. */
const binaryType =
  /^(image|audio|video|font)\/|^application\/(octet-stream|zip|gzip|x-gzip|x-tar|pdf|wasm|x-protobuf|protobuf|grpc)/i;

/**
 * Content types masked as text. Any other declared type (binary, multipart, unknown) cannot be
 * inspected: refused when detectors or patterns apply, never passed on unmasked. A response
 * without a content type is masked as text.
 */
const textType =
  /^(text\/[^;]+|[^/;]+\/([^;]+\+)?(json|xml|yaml|csv|toml)|application\/(x-ndjson|ndjson|javascript|ecmascript|x-javascript|x-www-form-urlencoded|graphql|sql|x-sh|jwt))\s*(;|$)/i;

/** Charsets the masker reads after transcoding to UTF-8; UTF-8 and ASCII are read as they are. */
function charsetOf(contentType: string): string {
  const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(contentType)?.[1]?.toLowerCase();
  return charset === undefined || charset === 'us-ascii' || charset === 'ascii' ? 'utf-8' : charset;
}

/** Body recording: the first maxRecordedBody bytes, then a summary of the rest. */
export class BodyRecord {
  private readonly limit: number;
  private readonly chunks: Buffer[] = [];
  private kept = 0;
  total = 0;
  constructor(limit: number) {
    this.limit = limit;
  }
  add(chunk: Buffer): void {
    this.total += chunk.length;
    if (this.kept >= this.limit) return;
    const part = chunk.subarray(0, this.limit - this.kept);
    this.chunks.push(Buffer.from(part));
    this.kept += part.length;
  }
  text(contentType: string | undefined): string {
    if (this.total === 0) return '';
    if (contentType && binaryType.test(contentType)) return `[${this.total} bytes of ${contentType}]`;
    const head = Buffer.concat(this.chunks).toString('utf8');
    return this.total > this.kept
      ? `${head}\n[... ${this.total - this.kept} more bytes, ${this.total} in all]`
      : head;
  }
}

export type Done = (
  status: number | undefined,
  masked: Record<string, number>,
  wouldMask: Record<string, number>,
  error?: AirlockError,
) => void;

export async function forward(
  context: Context,
  recorder: SessionRecorder,
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
  body: { body: Buffer; ended: boolean } | undefined,
  done: Done,
): Promise<void> {
  const { connection } = context.options;
  const secret = credentialHeaders(context);
  const maxRecorded = context.options.maxRecordedBody ?? defaultMaxRecordedBody;
  const masking = context.plan.hasScanners || context.jsonPaths.length > 0;
  const headers: Record<string, string | string[]> = {};
  // Connection names headers to drop as hop-by-hop, but never the type the decision read the
  // body by (without it, Rack reads a POST body as a form, and its `_method` unread), nor the
  // length that frames the body (without it, the body reaches the target as requests of its own).
  const connectionTokens = String(req.headers.connection ?? '')
    .toLowerCase()
    .split(',')
    .map((t) => t.trim())
    .filter((t) => t !== 'content-type' && t !== 'content-length');
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined || hopByHop.has(name) || connectionTokens.includes(name) || secret.has(name))
      continue;
    // The enforcer already answered the agent's Expect: 100-continue; the body follows at once.
    if (name === 'host' || name === 'expect') continue;
    // Headers that make IIS and Symfony route another path than the request line's, and those
    // proxies and frameworks read a path or prefix from: the decision was made on the request
    // line, so they never reach the target.
    if (pathOverrides.has(name) || clientAddresses.has(name)) continue;
    headers[name] = value;
  }
  headers.host =
    connection.port === (context.target.secure ? 443 : 80)
      ? connection.host
      : `${connection.host}:${connection.port}`;
  if (req.headers['transfer-encoding']) headers['transfer-encoding'] = 'chunked';
  // Compressed responses cannot be scanned: ask for identity (and decode if the target ignores it).
  // Responses are read for the held credential in any case.
  if (masking || context.held.length > 0) headers['accept-encoding'] = 'identity';
  const credentials = connection.credentials;
  if (credentials.token) headers.authorization = `Bearer ${credentials.token}`;
  else if (credentials.header && credentials.value !== undefined)
    headers[credentials.header.toLowerCase()] = credentials.value;

  // Bodies and headers are written out (and masked for the record) only when data is recorded.
  const recording = recorder.recordData;
  const requestBody = new BodyRecord(maxRecorded);
  if (recording) req.on('data', (chunk: Buffer) => requestBody.add(chunk));
  const upstream = context.target.upstream.request(method(req), path, headers);
  // What a response cut short is recorded with: its status and what was masked of it so far.
  let seenStatus: number | undefined;
  let sofar: () => [Record<string, number>, Record<string, number>] = () => [{}, {}];
  // An agent that goes away before the response ends (having read what it wanted) does not take
  // the request's event with it: the request reached the target and is recorded, before the
  // session's end (hence ahead of the session's own listener on the connection).
  const gone = () => {
    if (res.writableFinished) return;
    finish(
      seenStatus,
      ...sofar(),
      new AirlockError('cancelled', 'airlock: the agent closed the connection before the response ended'),
    );
    upstream.destroy();
  };
  const socket = req.socket;
  socket.prependListener('close', gone);
  res.on('close', gone);
  let finished = false;
  let finish: Done = (...args) => {
    if (finished) return;
    finished = true;
    socket.off('close', gone);
    done(...args);
  };
  upstream.on('error', (error: Error & { code?: string }) => {
    const failure = new AirlockError(
      'upstream-unreachable',
      `airlock: could not reach ${connection.host}:${connection.port}: ${error.message}`,
    );
    if (!res.headersSent) problem(res, failure.code, failure.message, { errno: error.code });
    else res.destroy();
    finish(undefined, {}, {}, failure);
  });
  upstream.on('response', (response: UpstreamResponse) => {
    if (recording) recordExchange(recorder, context, req, path, requestBody, secret);
    const status = response.statusCode;
    seenStatus = status;
    const outHeaders: OutgoingHttpHeaders = {};
    const responseTokens = String(response.headers.connection ?? '')
      .toLowerCase()
      .split(',')
      .map((t) => t.trim());
    // Header values carry data too (Set-Cookie, Location, Link, WWW-Authenticate, X-*): masked
    // like the body, but for the framing the enforcer itself reads.
    const headerCounts: Record<string, number> = {};
    const headerWouldMask: Record<string, number> = {};
    const maskHeader = (value: string): string => {
      const result = context.maskText(value);
      for (const [k, n] of Object.entries(result.counts)) headerCounts[k] = (headerCounts[k] ?? 0) + n;
      for (const [k, n] of Object.entries(result.wouldMask ?? {}))
        headerWouldMask[k] = (headerWouldMask[k] ?? 0) + n;
      return result.value;
    };
    const hide = (value: string) => hideHeld(context.heldText, value);
    for (const [name, value] of Object.entries(response.headers)) {
      if (value === undefined || hopByHop.has(name) || responseTokens.includes(name)) continue;
      const shown = Array.isArray(value) ? value.map(hide) : hide(value);
      outHeaders[name] =
        !context.plan.hasScanners || framing.has(name)
          ? shown
          : Array.isArray(shown)
            ? shown.map(maskHeader)
            : maskHeader(shown);
    }
    const finishResponse = finish;
    finish = (status, masked, wouldMask, error) =>
      finishResponse(status, sum(headerCounts, masked), sum(headerWouldMask, wouldMask), error);
    const contentType = String(response.headers['content-type'] ?? '');
    const encoding = String(response.headers['content-encoding'] ?? 'identity').toLowerCase();
    const responseBody = new BodyRecord(maxRecorded);
    const recordResponse = () => {
      if (!recording) return;
      recorder.data(
        'output',
        `HTTP/1.1 ${status}\r\n${redactText(context, hide(describeHeaders(response.headers, secret)))}\r\n\r\n${redactText(context, responseBody.text(contentType))}`,
      );
    };
    let source: NodeJS.ReadableStream = response;
    const hasBody = method(req) !== 'HEAD' && status !== 204 && status !== 304;
    const textual = contentType === '' || textType.test(contentType);
    // JSON-path rules apply to JSON under any label: a body that cannot be read is refused too.
    const enforcedPaths = context.jsonPaths.some((rule) => !rule.audit);
    // A body refused is not read on (it may never end): its connection to the target closes.
    const refuse = (message: string) => {
      response.destroy();
      const failure = new AirlockError('unsupported', `airlock: ${message}`);
      problem(res, failure.code, failure.message);
      finish(502, {}, {}, failure);
    };
    if (hasBody && (context.plan.hasScanners || enforcedPaths) && !textual) {
      refuse(`a ${contentType.split(';')[0]} body cannot be inspected, and masking applies`);
      return;
    }
    const shouldMask = masking && hasBody && textual;
    // A body is decoded where it is masked, and wherever it is read for the held credential.
    const inspect = shouldMask || (hasBody && context.held.length > 0);
    // The parser removes only the chunked coding, and Transfer-Encoding is not passed on: a body
    // under another (gzip, chunked) would reach the agent still coded, read by no masker.
    const transferCodings = String(response.headers['transfer-encoding'] ?? '')
      .toLowerCase()
      .split(',')
      .map((coding) => coding.trim())
      .filter((coding) => coding !== '' && coding !== 'chunked');
    if (inspect && transferCodings.length > 0) {
      refuse(`unsupported transfer-encoding ${transferCodings.join(', ')}`);
      return;
    }
    if (inspect && encoding !== 'identity') {
      const decoder =
        encoding === 'gzip' || encoding === 'x-gzip'
          ? createGunzip()
          : encoding === 'deflate'
            ? createInflate()
            : encoding === 'br'
              ? createBrotliDecompress()
              : undefined;
      if (!decoder) {
        refuse(`unsupported content-encoding ${encoding}`);
        return;
      }
      response.pipe(decoder);
      source = decoder;
      delete outHeaders['content-encoding'];
      delete outHeaders['content-length'];
    }
    if (context.held.length > 0 && hasBody) {
      const filter = new HeldFilter(context.held);
      source.on('error', (error: Error) => filter.destroy(error));
      source = source.pipe(filter);
    }
    if (!shouldMask) {
      res.writeHead(status, outHeaders);
      if (recording) source.on('data', (chunk: Buffer) => responseBody.add(chunk));
      source.pipe(res);
      source.on('end', () => {
        recordResponse();
        finish(status, {}, {});
      });
      // A target that ends the response early: recorded, and the agent's response cut too.
      const cut = (error: Error) => {
        finish(
          status,
          {},
          {},
          new AirlockError('target-error', `airlock: the response was cut: ${error.message}`),
        );
        res.destroy();
      };
      response.on('error', cut);
      source.on('error', cut);
      return;
    }
    // Other encodings of text (UTF-16 JSON, with or without a byte order mark, Latin-1) are
    // read as UTF-8; one the enforcer cannot decode is refused.
    const reader = utf8Reader(charsetOf(contentType));
    if (!reader) {
      refuse(`the ${charsetOf(contentType)} charset cannot be read for masking`);
      return;
    }
    if (/;\s*charset/i.test(contentType))
      outHeaders['content-type'] = contentType.replace(/;\s*charset\s*=\s*"?[^";\s]+"?/i, '; charset=utf-8');
    const maxHeld = context.options.maxJsonBody ?? defaultMaxJsonBody;
    const isJson = /^application\/(.+\+)?json\b/i.test(contentType);
    const declared = Number(response.headers['content-length'] ?? Number.NaN);
    delete outHeaders['content-length'];
    // Not a compressed body: its declared length does not bound what it decompresses to.
    if (isJson && encoding === 'identity' && declared <= maxHeld) {
      // A JSON body of known, bounded size is answered with its masked length in one write: no
      // chunked framing, no second write. One that cannot be masked gets a 502 instead.
      const masker = jsonMasker(context);
      sofar = () => [masker.counts, masker.wouldMask];
      const held: Buffer[] = [];
      let failed = false;
      const mask = (next: () => Buffer): boolean => {
        try {
          const out = next();
          if (out.length > 0) held.push(out);
          return true;
        } catch (error) {
          failed = true;
          response.destroy();
          const failure = new AirlockError('masking-failed', `airlock: ${(error as Error).message}`);
          problem(res, failure.code, failure.message);
          finish(502, masker.counts, masker.wouldMask, failure);
          return false;
        }
      };
      // Read straight from the response (its encoding is identity), transcoded chunk by chunk.
      source.on('data', (chunk: Buffer) => {
        const text = failed ? empty : reader.push(chunk);
        if (text.length > 0) mask(() => masker.push(text));
      });
      source.on('end', () => {
        const rest = failed ? empty : reader.end();
        if (failed || (rest.length > 0 && !mask(() => masker.push(rest))) || !mask(() => masker.end()))
          return;
        const body = held.length === 1 ? held[0]! : Buffer.concat(held);
        if (recording) responseBody.add(body);
        res.writeHead(status, { ...outHeaders, 'content-length': body.length });
        res.end(body);
        recordResponse();
        finish(status, masker.counts, masker.wouldMask);
      });
      source.on('error', (error: Error) => {
        if (failed) return;
        res.destroy();
        finish(status, masker.counts, masker.wouldMask, new AirlockError('target-error', error.message));
      });
      return;
    }
    const transcoder = toUtf8(reader);
    source.on('error', (error: Error) => transcoder.destroy(error));
    source = source.pipe(transcoder);
    // Where JSON-path rules apply, text of another label is masked as JSON when it is JSON.
    const transform = isJson
      ? new JsonMasking(context)
      : context.jsonPaths.length > 0
        ? new SniffedMasking(context)
        : new TextMasking(context);
    sofar = () => [transform.counts(), transform.wouldMask()];
    source.on('error', (error: Error) => transform.destroy(error));
    if (recording) transform.on('data', (chunk: Buffer) => responseBody.add(chunk));
    res.writeHead(status, outHeaders);
    source.pipe(transform).pipe(res);
    transform.on('end', () => {
      recordResponse();
      finish(status, transform.counts(), transform.wouldMask());
    });
    transform.on('error', (error: Error) => {
      res.destroy();
      finish(
        status,
        transform.counts(),
        transform.wouldMask(),
        new AirlockError('masking-failed', error.message),
      );
    });
  });
  if (body) {
    if (recording) requestBody.add(body.body);
    upstream.write(body.body);
  }
  if (body?.ended || !hasRequestBody(req)) {
    upstream.end();
    return;
  }
  req.on('data', (chunk: Buffer) => {
    if (!upstream.write(chunk)) req.pause();
  });
  upstream.on('drain', () => req.resume());
  // A body the agent cuts (after a response that came early, whose end leaves the request to
  // the socket alone) would leave the target waiting for the rest on a connection never closed.
  const cut = () => upstream.destroy();
  req.on('end', () => {
    socket.off('close', cut);
    upstream.end();
  });
  if (socket.destroyed) cut();
  else socket.once('close', cut);
  req.resume();
}

const empty = Buffer.alloc(0);

const pathOverrides = new Set([
  'x-original-url',
  'x-rewrite-url',
  'x-override-url',
  'x-original-uri',
  'x-forwarded-uri',
  'x-forwarded-path',
  'x-forwarded-prefix',
  'x-envoy-original-path',
]);

/**
 * Headers a target may take the client's address from (for an allowlist, a rate limit, a
 * log): the agent would choose its own, so none of them reaches the target.
 */
const clientAddresses = new Set([
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-host',
  'x-real-ip',
  'x-client-ip',
  'x-cluster-client-ip',
  'true-client-ip',
  'cf-connecting-ip',
  'fastly-client-ip',
  'x-originating-ip',
]);

/** Response headers the enforcer reads to frame and decode the body: never masked. */
const framing = new Set(['content-length', 'content-encoding', 'content-type', 'date']);

function sum(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  const out = { ...a };
  for (const [k, n] of Object.entries(b)) out[k] = (out[k] ?? 0) + n;
  return out;
}

function recordExchange(
  recorder: SessionRecorder,
  context: Context,
  req: IncomingMessage,
  path: string,
  body: BodyRecord,
  secret: Set<string>,
): void {
  recorder.data(
    'input',
    `${method(req)} ${redactText(context, path)} HTTP/${req.httpVersion}\r\n${redactText(context, describeHeaders(req.headers, secret))}\r\n\r\n${redactText(context, body.text(req.headers['content-type']))}`,
  );
}
