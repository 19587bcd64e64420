import {
  createServer,
  Agent as HttpAgent,
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type Server,
  type ServerResponse,
} from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { type AddressInfo, isIP, type Socket } from 'node:net';
import { Transform, type TransformCallback } from 'node:stream';
import { TextDecoder } from 'node:util';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import type { BundlePolicy } from '../../api/bundle.ts';
import type { Enforcer, EnforcerOptions } from '../core/enforcer.ts';
import { AirlockError, httpProblems, problemType } from '../core/errors.ts';
import { ApprovalGate, passageFields } from '../core/gate.ts';
import { settle, stopAccepting } from '../core/listen.ts';
import { maskingFields, type RequestFields, SessionRecorder } from '../core/recorder.ts';
import {
  MaskingTransform,
  type MaskText,
  StreamMasker,
  type ValueShape,
  valueShape,
} from '../core/stream-masker.ts';
import { type Decision, decideHttp } from '../policy/decide.ts';
import { compileMasking, type MaskingPlan } from '../policy/masking.ts';
import { maskEncoded } from './encoded.ts';
import { compileJsonPaths, type JsonPathRule, JsonStreamMasker } from './json.ts';
import { bodyOverrides, everyMethod, overrideBodyType, requestOverrides } from './method.ts';
import { normalizeTarget } from './path.ts';

export interface HttpEnforcerOptions extends EnforcerOptions {
  /** Bodies up to this size are recorded whole; larger ones are summarized. */
  maxRecordedBody?: number;
  /**
   * JSON responses of declared length up to this size are answered with their masked length
   * (held until masked whole); larger ones, and those of unknown length, stream chunked.
   */
  maxJsonBody?: number;
  /**
   * Longest JSON string or number held to be masked whole; a longer one, or nesting deeper than
   * 256 levels, ends the response with an error (it cannot be masked, nor passed on unmasked).
   */
  maxJsonToken?: number;
  /**
   * A form, multipart or JSON request body up to this size is read whole when its `_method`
   * could change the decision; a larger one is decided as every method.
   */
  maxOverrideBody?: number;
}

export const defaultMaxRecordedBody = 64 * 1024;
export const defaultMaxJsonBody = 8 * 1024 * 1024;
export const defaultMaxJsonToken = 8 * 1024 * 1024;
export const defaultMaxOverrideBody = 1024 * 1024;

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

interface Target {
  secure: boolean;
  agent: HttpAgent;
  tls: { rejectUnauthorized: boolean; ca?: string; servername?: string };
}

export async function serveHttp(options: HttpEnforcerOptions): Promise<Enforcer> {
  const { connection } = options;
  if (connection.protocol !== 'http')
    throw new Error(`Connection ${connection.name} is not an http Connection`);
  const secure = (connection.http?.scheme ?? 'https') === 'https';
  const tlsOptions = {
    rejectUnauthorized: connection.tls.mode !== 'require',
    ...(connection.tls.ca !== undefined && { ca: connection.tls.ca }),
    ...((connection.tls.serverName ?? (isIP(connection.host) ? undefined : connection.host)) !==
      undefined && {
      servername: connection.tls.serverName ?? connection.host,
    }),
  };
  const target: Target = {
    secure,
    agent: secure ? new HttpsAgent({ keepAlive: true, ...tlsOptions }) : new HttpAgent({ keepAlive: true }),
    tls: tlsOptions,
  };
  const compiled = compileMasking(connection.policies);
  // Detectors and patterns also read percent-encoded, escaped and character-referenced text.
  const maskText = maskEncoded((text) => compiled.maskText(text));
  const plan: MaskingPlan = {
    ...compiled,
    maskText: (text, column) => (column ? compiled.maskText(text, column) : maskText(text)),
  };
  const maskJsonText = maskEncoded((text) => compiled.maskText(text), true);
  const jsonPlan: MaskingPlan = {
    ...compiled,
    maskText: (text, column) => (column ? compiled.maskText(text, column) : maskJsonText(text)),
  };
  const jsonPaths = compileJsonPaths(connection.policies);
  const sessions = new WeakMap<Socket, Session>();
  const sockets = new Set<Socket>();
  const server = createServer({ keepAlive: true });
  // Approval holds can be long; headers must still arrive promptly.
  server.requestTimeout = 0;
  server.headersTimeout = 60_000;
  /** Starts recording a connection's session, once: at connect, or at its first request served. */
  const begin = (socket: Socket): Session => {
    const existing = sessions.get(socket);
    if (existing) return existing;
    const recorder = new SessionRecorder(connection, options.identity, options.events);
    const gate = new ApprovalGate({
      sessionId: recorder.id,
      connection: connection.name,
      approvals: options.approvals,
      unrecorded: () => options.events.refusal?.(),
    });
    recorder.start({ address: socket.remoteAddress ?? '' });
    const session = { recorder, gate };
    sessions.set(socket, session);
    socket.on('close', () => {
      recorder.bytesIn = socket.bytesRead;
      recorder.bytesOut = socket.bytesWritten;
      recorder.end('closed');
    });
    return session;
  };
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    // A connection made while the audit trail cannot record it starts its session later.
    if (!options.events.refusal?.()) begin(socket);
  });
  const caseInsensitive = connection.http?.caseInsensitivePaths === true;
  const context: Context = {
    options,
    plan,
    jsonPlan,
    jsonPaths,
    target,
    caseInsensitive,
    maskText,
    // An encoded value is up to six times longer than its value (\u0040 for @).
    shape: [...valueShape(connection.policies), encodedRun],
    // Against a target that ignores case, path globs are matched in lower case like the readings.
    rulePolicies: caseInsensitive ? foldPathGlobs(connection.policies) : connection.policies,
    ruleMethods: [
      ...new Set([
        ...everyMethod,
        ...connection.policies.flatMap((p) => p.rules.flatMap((r) => r.http?.methods ?? [])),
      ]),
    ].map((m) => m.toUpperCase()),
  };
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    // Fail closed on the audit trail, for every request: nothing reaches the target while
    // it cannot be recorded, and requests are served again as soon as it can.
    const unrecorded = options.events.refusal?.();
    if (unrecorded) {
      refuseUnrecorded(context, sessions.get(req.socket)?.recorder, req, res, unrecorded);
      return;
    }
    const session = begin(req.socket);
    handle(context, session, req, res).catch((error: Error) => {
      session.recorder.error('internal', error.message);
      if (!res.headersSent)
        problem(res, 'target-error', `Airlock could not complete the request: ${error.message}`);
      else res.destroy();
    });
  });
  server.on('upgrade', (req: IncomingMessage, socket: Socket) => {
    refuseUpgrade(context, sessions.get(socket)?.recorder, req, socket);
  });
  server.on('clientError', (_error, socket: Socket) => {
    if (socket.writable)
      socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    else socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.listen.port, options.listen.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    address: server.address() as AddressInfo,
    close: () => closeServer(server, sockets, target),
    async drain(deadlineMs) {
      // Idle keep-alive connections close now; a request in flight gets its response with
      // `connection: close`.
      stopAccepting(server);
      server.closeIdleConnections();
      await settle(() => sockets.size > 0, deadlineMs);
      await closeServer(server, sockets, target);
    },
  };
}

async function closeServer(server: Server, sockets: Set<Socket>, target: Target): Promise<void> {
  await new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
    for (const socket of sockets) socket.end();
    setTimeout(() => {
      for (const socket of sockets) socket.destroy();
    }, 1000).unref();
  });
  target.agent.destroy();
}

interface Context {
  options: HttpEnforcerOptions;
  plan: MaskingPlan;
  /** The plan JSON strings are masked by: they are already unescaped. */
  jsonPlan: MaskingPlan;
  jsonPaths: JsonPathRule[];
  target: Target;
  caseInsensitive: boolean;
  /** Free text masked by detectors and patterns, encoded forms included. */
  maskText: MaskText;
  /** What the text masker must never cut. */
  shape: ValueShape;
  /** The policies rules are matched with (path globs in lower case for a case-insensitive target). */
  rulePolicies: BundlePolicy[];
  /** Every method a request with an unreadable override is decided as. */
  ruleMethods: string[];
}

const encodedChar = (c: number) =>
  (c >= 48 && c <= 57) ||
  (c >= 65 && c <= 90) ||
  (c >= 97 && c <= 122) ||
  '%\\&#;._+-@'.includes(String.fromCharCode(c));

/** An escaped value (ada%40example.com, ada\u0040example.com) is not cut before its decoding is read. */
function encodedRun(text: string): number {
  let i = text.length;
  while (i > 0 && text.length - i < 6 * 320 && encodedChar(text.charCodeAt(i - 1))) i--;
  return /%|\\|&#/.test(text.slice(i)) ? i : text.length;
}

/** Path rules as a case-insensitive target reads them (caseInsensitivePaths): globs folded. */
export function foldPathGlobs(policies: BundlePolicy[]): BundlePolicy[] {
  return policies.map((p) => ({
    ...p,
    rules: p.rules.map((r) =>
      r.http?.paths ? { ...r, http: { ...r.http, paths: r.http.paths.map((g) => g.toLowerCase()) } } : r,
    ),
  }));
}

const restrictiveness: Record<Decision['action'], number> = { allow: 0, 'require-approval': 1, deny: 2 };

/**
 * The request decided as every method it may be acted on as, on every path a server may read:
 * the most restrictive decision (the first of them on a tie); allowed, what audit-mode
 * policies would have done under any of them.
 */
export function decideReadings(policies: BundlePolicy[], methods: string[], paths: string[]): Decision {
  let worst: Decision | undefined;
  const wouldHave = new Map<string, Decision['wouldHave'][number]>();
  for (const method of methods)
    for (const path of paths) {
      const decision = decideHttp(policies, { method, path });
      for (const w of decision.wouldHave) wouldHave.set(`${w.policy}/${w.rule}/${w.action}`, w);
      if (!worst || restrictiveness[decision.action] > restrictiveness[worst.action]) worst = decision;
    }
  return worst!.action === 'allow' ? { ...worst!, wouldHave: [...wouldHave.values()] } : worst!;
}

/** Reads a request body up to `limit` bytes (one chunk past it at most), then pauses it. */
function readPrefix(req: IncomingMessage, limit: number): Promise<{ body: Buffer; ended: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (ended: boolean) => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('close', onClose);
      req.pause();
      resolve({ body: Buffer.concat(chunks), ended });
    };
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.length;
      if (size > limit) done(false);
    };
    const onEnd = () => done(true);
    const onClose = () => done(req.readableEnded);
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('close', onClose);
  });
}

/** One connection's session: its recording, and the gate its requests pass. */
interface Session {
  recorder: SessionRecorder;
  gate: ApprovalGate;
}

/** The enforcer's own answer for an error code: a problem document (RFC 9457). */
function problem(
  res: ServerResponse,
  code: AirlockError['code'],
  detail: string,
  extra: Record<string, unknown> = {},
): void {
  const { status, title } = httpProblems[code];
  const body = JSON.stringify({
    type: problemType(code),
    title,
    status,
    detail,
    code,
    airlock: true,
    ...extra,
  });
  res.writeHead(status, {
    'content-type': 'application/problem+json',
    'content-length': Buffer.byteLength(body),
    'x-airlock': 'enforced',
  });
  res.end(body);
}

/** Header names that carry the agent's credentials: never forwarded, never recorded. */
function credentialHeaders(context: Context): Set<string> {
  const names = new Set(['authorization', 'proxy-authorization', 'cookie']);
  const header = context.options.connection.credentials.header;
  if (header) names.add(header.toLowerCase());
  return names;
}

function describeHeaders(headers: IncomingHttpHeaders, secret: Set<string>): string {
  return Object.entries(headers)
    .map(
      ([name, value]) =>
        `${name}: ${secret.has(name) || name === 'set-cookie' ? '[REDACTED]' : String(value)}`,
    )
    .join('\r\n');
}

async function handle(context: Context, session: Session, req: IncomingMessage, res: ServerResponse) {
  const { recorder } = session;
  const started = Date.now();
  const method = (req.method ?? 'GET').toUpperCase();
  const normalized = normalizeTarget(req.url ?? '', { caseInsensitive: context.caseInsensitive });
  // What the request is shown as: its method, and the ones it was also decided as.
  let shown = method;
  const record = (fields: Partial<RequestFields> & Pick<RequestFields, 'outcome'>) =>
    recorder.request({
      text: `${shown} ${normalized.ok ? normalized.path : redactText(context, req.url ?? '')}`,
      kind: 'http',
      durationMs: Date.now() - started,
      ...fields,
    });
  if (!normalized.ok) {
    const error = new AirlockError(
      'protocol-violation',
      `airlock: ambiguous request path: ${normalized.reason}`,
    );
    problem(res, error.code, error.message);
    record({ outcome: 'blocked', reasons: [normalized.reason], status: 400, error: error.event(400) });
    req.resume();
    return;
  }
  // The methods the target may act on: the request line's and every override it names.
  let methods = [...new Set([method, ...requestOverrides(req.headersDistinct, normalized.query)])];
  let body: { body: Buffer; ended: boolean } | undefined;
  const bodyKind = hasBody(req) ? overrideBodyType(req.headers['content-type']) : undefined;
  if (bodyKind) {
    // A `_method` in the body matters only where some method is decided more strictly: read it
    // there (up to a bound), and decide what cannot be read as every method.
    const asNamed = decideReadings(context.rulePolicies, methods, normalized.readings);
    const asAny = decideReadings(context.rulePolicies, context.ruleMethods, normalized.readings);
    if (restrictiveness[asAny.action] > restrictiveness[asNamed.action]) {
      const limit = context.options.maxOverrideBody ?? defaultMaxOverrideBody;
      body = await readPrefix(req, limit);
      const encoded = (req.headers['content-encoding'] ?? 'identity').toLowerCase() !== 'identity';
      const named =
        body.ended && !encoded
          ? bodyOverrides(bodyKind, String(req.headers['content-type']), body.body)
          : undefined;
      methods = named ? [...new Set([...methods, ...named])] : context.ruleMethods;
    }
  }
  const decision = decideReadings(context.rulePolicies, methods, normalized.readings);
  if (methods.length > 1)
    shown = `${method} (as ${methods === context.ruleMethods ? 'any method' : methods.filter((m) => m !== method).join(', ')})`;
  const gone = new AbortController();
  res.once('close', () => gone.abort());
  const passage = await session.gate.pass({
    decision,
    text: `${shown} ${normalized.path}`,
    what: 'request',
    signal: gone.signal,
  });
  const fields = passageFields(decision, passage);
  if (!passage.go) {
    const { status } = httpProblems[passage.error.code];
    if (!res.destroyed)
      problem(res, passage.error.code, passage.error.message, {
        policy: decision.policy,
        rule: decision.rule,
      });
    record({ ...fields, error: passage.error.event(status), status });
    req.resume();
    return;
  }
  const outcome = passage.outcome;
  await forward(
    context,
    recorder,
    req,
    res,
    `${normalized.path}${normalized.query}`,
    body,
    (status, masked, wouldMask, error) => {
      const counted = maskingFields(context.options.connection.policies, masked, wouldMask, fields.wouldHave);
      record({
        ...fields,
        ...counted,
        outcome: error ? 'error' : counted.masked && outcome === 'allowed' ? 'masked' : outcome,
        ...(status !== undefined && { status }),
        ...(error && { error: error.event(status) }),
      });
    },
  );
}

function redactText(context: Context, text: string): string {
  return context.plan.hasScanners ? context.maskText(text).value : text;
}

/** "METHOD path" as recorded: the normalized path, or the raw target masked when it is ambiguous. */
function requestText(context: Context, req: IncomingMessage): string {
  const normalized = normalizeTarget(req.url ?? '');
  return `${method(req)} ${normalized.ok ? normalized.path : redactText(context, req.url ?? '')}`;
}

/**
 * Refuses a request because the audit trail cannot record it: 503, and nothing is forwarded.
 * The refusal is recorded only in a session that already started (a new one is not started
 * while the sink has no room).
 */
function refuseUnrecorded(
  context: Context,
  recorder: SessionRecorder | undefined,
  req: IncomingMessage,
  res: ServerResponse,
  message: string,
): void {
  const error = new AirlockError('audit-unavailable', message);
  problem(res, error.code, message);
  recorder?.request({
    text: requestText(context, req),
    kind: 'http',
    outcome: 'error',
    error: error.event(503),
    status: 503,
    durationMs: 0,
  });
  req.resume();
}

/** Body recording: the first maxRecordedBody bytes, then a summary of the rest. */
class BodyRecord {
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

type Done = (
  status: number | undefined,
  masked: Record<string, number>,
  wouldMask: Record<string, number>,
  error?: AirlockError,
) => void;

async function forward(
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
  const headers: OutgoingHttpHeaders = {};
  const connectionTokens = String(req.headers.connection ?? '')
    .toLowerCase()
    .split(',')
    .map((t) => t.trim());
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined || hopByHop.has(name) || connectionTokens.includes(name) || secret.has(name))
      continue;
    // The enforcer already answered the agent's Expect: 100-continue; the body follows at once.
    if (name === 'host' || name === 'expect') continue;
    // Headers that make IIS and Symfony route another path than the request line's: the
    // decision was made on the request line, so they never reach the target.
    if (pathOverrides.has(name)) continue;
    headers[name] = value;
  }
  headers.host =
    connection.port === (context.target.secure ? 443 : 80)
      ? connection.host
      : `${connection.host}:${connection.port}`;
  if (req.headers['transfer-encoding']) headers['transfer-encoding'] = 'chunked';
  // Compressed responses cannot be scanned: ask for identity (and decode if the target ignores it).
  if (masking) headers['accept-encoding'] = 'identity';
  const credentials = connection.credentials;
  if (credentials.token) headers.authorization = `Bearer ${credentials.token}`;
  else if (credentials.header && credentials.value !== undefined)
    headers[credentials.header.toLowerCase()] = credentials.value;

  const requestBody = new BodyRecord(maxRecorded);
  req.on('data', (chunk: Buffer) => requestBody.add(chunk));
  const send = context.target.secure ? httpsRequest : httpRequest;
  const upstream = send({
    host: connection.host,
    port: connection.port,
    method: req.method,
    path,
    headers,
    agent: context.target.agent,
    ...(context.target.secure && context.target.tls),
    ...(context.options.lookup && { lookup: context.options.lookup }),
  });
  let finished = false;
  let finish: Done = (...args) => {
    if (finished) return;
    finished = true;
    done(...args);
  };
  res.on('close', () => {
    if (!res.writableFinished) upstream.destroy();
  });
  upstream.on('error', (error: Error & { code?: string }) => {
    const failure = new AirlockError(
      'upstream-unreachable',
      `airlock: could not reach ${connection.host}:${connection.port}: ${error.message}`,
    );
    if (!res.headersSent) problem(res, failure.code, failure.message, { errno: error.code });
    else res.destroy();
    finish(undefined, {}, {}, failure);
  });
  upstream.on('response', (response: IncomingMessage) => {
    recordExchange(recorder, context, req, path, requestBody, secret);
    const status = response.statusCode ?? 502;
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
    for (const [name, value] of Object.entries(response.headers)) {
      if (value === undefined || hopByHop.has(name) || responseTokens.includes(name)) continue;
      outHeaders[name] =
        !context.plan.hasScanners || framing.has(name)
          ? value
          : Array.isArray(value)
            ? value.map(maskHeader)
            : maskHeader(value);
    }
    const finishResponse = finish;
    finish = (status, masked, wouldMask, error) =>
      finishResponse(status, sum(headerCounts, masked), sum(headerWouldMask, wouldMask), error);
    const contentType = String(response.headers['content-type'] ?? '');
    const encoding = String(response.headers['content-encoding'] ?? 'identity').toLowerCase();
    const responseBody = new BodyRecord(maxRecorded);
    const recordResponse = () =>
      recorder.data(
        'output',
        `HTTP/1.1 ${status}\r\n${redactText(context, describeHeaders(response.headers, secret))}\r\n\r\n${redactText(context, responseBody.text(contentType))}`,
      );
    let source: NodeJS.ReadableStream = response;
    const hasBody = method(req) !== 'HEAD' && status !== 204 && status !== 304;
    const textual = contentType === '' || textType.test(contentType);
    if (hasBody && context.plan.hasScanners && !textual) {
      response.resume();
      const failure = new AirlockError(
        'unsupported',
        `airlock: a ${contentType.split(';')[0]} body cannot be inspected, and masking applies`,
      );
      problem(res, failure.code, failure.message);
      finish(502, {}, {}, failure);
      return;
    }
    const shouldMask = masking && hasBody && textual;
    if (shouldMask && encoding !== 'identity') {
      const decoder =
        encoding === 'gzip' || encoding === 'x-gzip'
          ? createGunzip()
          : encoding === 'deflate'
            ? createInflate()
            : encoding === 'br'
              ? createBrotliDecompress()
              : undefined;
      if (!decoder) {
        response.resume();
        const failure = new AirlockError('unsupported', `airlock: unsupported content-encoding ${encoding}`);
        problem(res, failure.code, failure.message);
        finish(502, {}, {}, failure);
        return;
      }
      response.pipe(decoder);
      source = decoder;
      delete outHeaders['content-encoding'];
    }
    if (shouldMask) {
      // Other encodings of text (UTF-16 JSON, with or without a byte order mark, Latin-1) are
      // read as UTF-8; one the enforcer cannot decode is refused.
      const transcoder = toUtf8(charsetOf(contentType));
      if (!transcoder) {
        response.resume();
        const failure = new AirlockError(
          'unsupported',
          `airlock: the ${charsetOf(contentType)} charset cannot be read for masking`,
        );
        problem(res, failure.code, failure.message);
        finish(502, {}, {}, failure);
        return;
      }
      source.on('error', (error: Error) => transcoder.destroy(error));
      source = source.pipe(transcoder);
      if (/;\s*charset/i.test(contentType))
        outHeaders['content-type'] = contentType.replace(
          /;\s*charset\s*=\s*"?[^";\s]+"?/i,
          '; charset=utf-8',
        );
    }
    if (!shouldMask) {
      res.writeHead(status, outHeaders);
      response.on('data', (chunk: Buffer) => responseBody.add(chunk));
      response.pipe(res);
      response.on('end', () => {
        recordResponse();
        finish(status, {}, {});
      });
      response.on('error', () => res.destroy());
      return;
    }
    const maxHeld = context.options.maxJsonBody ?? defaultMaxJsonBody;
    const isJson = /^application\/(.+\+)?json\b/i.test(contentType);
    const declared = Number(response.headers['content-length'] ?? Number.NaN);
    delete outHeaders['content-length'];
    // Not a compressed body: its declared length does not bound what it decompresses to.
    if (isJson && encoding === 'identity' && declared <= maxHeld) {
      // A JSON body of known, bounded size is answered with its masked length in one write: no
      // chunked framing, no second write. One that cannot be masked gets a 502 instead.
      const masker = jsonMasker(context);
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
      source.on('data', (chunk: Buffer) => {
        if (!failed) mask(() => masker.push(chunk));
      });
      source.on('end', () => {
        if (failed || !mask(() => masker.end())) return;
        const body = held.length === 1 ? held[0]! : Buffer.concat(held);
        responseBody.add(body);
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
    const transform = isJson ? new JsonMasking(context) : new TextMasking(context);
    source.on('error', (error: Error) => transform.destroy(error));
    transform.on('data', (chunk: Buffer) => responseBody.add(chunk));
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
    requestBody.add(body.body);
    upstream.write(body.body);
  }
  if (body?.ended) upstream.end();
  else req.pipe(upstream);
}

const pathOverrides = new Set(['x-original-url', 'x-rewrite-url']);

/** Response headers the enforcer reads to frame and decode the body: never masked. */
const framing = new Set(['content-length', 'content-encoding', 'content-type', 'date']);

function sum(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  const out = { ...a };
  for (const [k, n] of Object.entries(b)) out[k] = (out[k] ?? 0) + n;
  return out;
}

/**
 * A stream that turns text in `charset` into UTF-8: a pass-through for UTF-8, which a byte order
 * mark (or the zero bytes of UTF-16's first characters) overrides. Undefined for a charset
 * that cannot be decoded.
 */
function toUtf8(charset: string): Transform | undefined {
  let decoder: TextDecoder | undefined;
  try {
    if (charset !== 'utf-8' && charset !== 'utf8') decoder = new TextDecoder(charset);
  } catch {
    return undefined;
  }
  if (decoder && !['utf-16le', 'utf-16be'].includes(decoder.encoding) && /^utf-?(16|32)/.test(charset))
    return undefined;
  let sniffed = decoder !== undefined;
  let head = Buffer.alloc(0);
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      if (!sniffed) {
        head = Buffer.concat([head, chunk]);
        if (head.length < 4) return callback();
        sniffed = true;
        decoder = utf16Of(head);
        chunk = head;
      }
      callback(null, decoder ? Buffer.from(decoder.decode(chunk, { stream: true }), 'utf8') : chunk);
    },
    flush(callback) {
      if (!sniffed && head.length > 0) decoder = utf16Of(head);
      const rest = !sniffed ? head : Buffer.alloc(0);
      callback(null, decoder ? Buffer.from(decoder.decode(rest), 'utf8') : rest);
    },
  });
}

/**
 * UTF-16 by its byte order mark, or by the zero bytes of its first two characters (how RFC 8259
 * tells JSON's encoding; text in UTF-8 has no zero bytes).
 */
function utf16Of(head: Buffer): TextDecoder | undefined {
  if (head[0] === 0xff && head[1] === 0xfe) return new TextDecoder('utf-16le');
  if (head[0] === 0xfe && head[1] === 0xff) return new TextDecoder('utf-16be');
  const zero = (i: number) => i >= head.length || head[i] === 0;
  if (head.length >= 2 && head[0] === 0 && head[1] !== 0 && zero(2)) return new TextDecoder('utf-16be');
  if (head.length >= 2 && head[0] !== 0 && head[1] === 0 && zero(3)) return new TextDecoder('utf-16le');
  return undefined;
}

function hasBody(req: IncomingMessage): boolean {
  return req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
}

function method(req: IncomingMessage): string {
  return (req.method ?? 'GET').toUpperCase();
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

interface Counting {
  counts(): Record<string, number>;
  wouldMask(): Record<string, number>;
}

/** Text bodies: detectors chunk by chunk, with the masker's carry-over for split values. */
class TextMasking extends MaskingTransform implements Counting {
  constructor(context: Context) {
    super(new StreamMasker(context.maskText, context.shape));
  }
  counts() {
    return this.masker.counts;
  }
  wouldMask() {
    return this.masker.wouldMask;
  }
}

function jsonMasker(context: Context): JsonStreamMasker {
  return new JsonStreamMasker(context.jsonPlan, context.jsonPaths, {
    maxToken: context.options.maxJsonToken ?? defaultMaxJsonToken,
    shape: context.shape,
  });
}

/**
 * JSON bodies: masked token by token as they arrive (JSON paths and detectors), with only the
 * current token and the path held; from the first byte that is not JSON, masked as text.
 */
class JsonMasking extends Transform implements Counting {
  private readonly masker: JsonStreamMasker;

  constructor(context: Context) {
    super();
    this.masker = jsonMasker(context);
  }

  counts() {
    return this.masker.counts;
  }
  wouldMask() {
    return this.masker.wouldMask;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.send(() => this.masker.push(chunk), callback);
  }

  override _flush(callback: TransformCallback): void {
    this.send(() => this.masker.end(), callback);
  }

  private send(mask: () => Buffer, callback: TransformCallback): void {
    let out: Buffer;
    try {
      out = mask();
    } catch (error) {
      callback(error as Error);
      return;
    }
    if (out.length > 0) this.push(out);
    callback();
  }
}

/**
 * WebSocket and other upgrades carry frames that no rule can check and no detector can mask:
 * there is no policy field to allow them yet, so they are refused.
 */
function refuseUpgrade(
  context: Context,
  recorder: SessionRecorder | undefined,
  req: IncomingMessage,
  socket: Socket,
): void {
  const error = new AirlockError(
    'unsupported',
    `airlock: protocol upgrade (${String(req.headers.upgrade ?? '')}) is not allowed through Airlock`,
  );
  const body = JSON.stringify({
    type: problemType(error.code),
    title: 'Denied by Airlock',
    status: 403,
    detail: error.message,
    code: error.code,
    airlock: true,
  });
  socket.end(
    `HTTP/1.1 403 Forbidden\r\nContent-Type: application/problem+json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
  recorder?.request({
    text: requestText(context, req),
    kind: 'http-upgrade',
    outcome: 'blocked',
    reasons: [`upgrade to ${String(req.headers.upgrade ?? '')} is not allowed`],
    durationMs: 0,
    status: 403,
    error: error.event(403),
  });
}
