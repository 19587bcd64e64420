// The HTTP enforcer. The agent speaks plain HTTP/1.1 to the listener; the enforcer normalizes
// the path (and rejects ambiguous ones), decides the request as every method and path the target
// may act on, passes it through the core's gate (deny, hold for approval, fail closed on the
// audit trail), and forwards it (forward.ts), masking the response as it streams. Requests and
// responses are recorded, bodies up to a bound and summarized beyond it.
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { isIP, type Socket } from 'node:net';
import type { BundlePolicy } from '../../api/bundle.ts';
import { ConnectionSessions, type ConnectionSession as Session } from '../core/connections.ts';
import type { Enforcer } from '../core/enforcer.ts';
import { AirlockError, httpProblems, problemType } from '../core/errors.ts';
import { passageFields } from '../core/gate.ts';
import { listen, settle, stopAccepting } from '../core/listen.ts';
import { http } from '../core/node-http.ts';
import { maskingFields, type RequestFields, type SessionRecorder } from '../core/recorder.ts';
import { valueShape } from '../core/stream-masker.ts';
import { actingFor, PolicyVariants } from '../identity/session.ts';
import { EndUserRefusal, EndUserVerifier } from '../identity/verifier.ts';
import { decideReadings, foldPathGlobs, pathsIgnoreCase, restrictiveness } from '../policy/decide.ts';
import { maskEncoded } from '../policy/encoded.ts';
import { heldValues } from '../policy/held.ts';
import { compileJsonPaths } from '../policy/json-paths.ts';
import { compileMasking, type MaskingPlan } from '../policy/masking.ts';
import {
  type Context,
  defaultMaxOverrideBody,
  type HttpEnforcerOptions,
  hasBody,
  method,
  problem,
  redactText,
  type Target,
} from './context.ts';
import { forward } from './forward.ts';
import { bodyOverrides, everyMethod, overrideBodyType, requestOverrides } from './method.ts';
import { normalizeTarget } from './path.ts';
import { Upstream } from './upstream.ts';

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
    upstream: new Upstream({
      host: connection.host,
      port: connection.port,
      secure,
      tls: tlsOptions,
      ...(options.lookup && { lookup: options.lookup }),
    }),
  };
  const server = http.createServer({ keepAlive: true });
  // Approval holds can be long; headers must still arrive promptly.
  server.requestTimeout = 0;
  server.headersTimeout = 60_000;
  const sessions = new ConnectionSessions(server, options);
  const { sockets } = sessions;
  const context = contextFor(options, connection.policies, target);
  // With endUser, each request's token picks the policies it is decided and masked under.
  const endUser = connection.endUser && {
    verifier: new EndUserVerifier(connection.endUser, options.lookup),
    contexts: new PolicyVariants((policies) => contextFor(options, policies, target)),
  };
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    // Fail closed on the audit trail, for every request: nothing reaches the target while
    // it cannot be recorded, and requests are served again as soon as it can.
    const unrecorded = options.events.refusal?.();
    if (unrecorded) {
      refuseUnrecorded(context, sessions.get(req.socket)?.recorder, req, res, unrecorded);
      return;
    }
    if (endUser) {
      serveActing(context, endUser, sessions, req, res);
      return;
    }
    const session = sessions.begin(req.socket);
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
  // A tunnel (CONNECT) would carry what no rule reads: refused, and recorded like an upgrade.
  server.on('connect', (req: IncomingMessage, socket: Socket) => {
    // A session is not started while the audit trail has no room.
    const recorder = options.events.refusal?.()
      ? sessions.get(socket)?.recorder
      : sessions.begin(socket).recorder;
    refuseUpgrade(context, recorder, req, socket);
  });
  server.on('clientError', (_error, socket: Socket) => {
    if (socket.writable)
      socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    else socket.destroy();
  });
  const address = await listen(server, options.listen);
  return {
    address,
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

/** What requests under one set of policies are decided, masked and forwarded with. */
function contextFor(options: HttpEnforcerOptions, policies: BundlePolicy[], target: Target): Context {
  const compiled = compileMasking(policies);
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
  const caseInsensitive = pathsIgnoreCase(options.connection);
  return {
    options: { ...options, connection: { ...options.connection, policies } },
    plan,
    jsonPlan,
    jsonPaths: compileJsonPaths(policies),
    target,
    caseInsensitive,
    maskText,
    // An encoded value is up to six times longer than its value (\u0040 for @).
    shape: [...valueShape(policies), encodedRun],
    // Against a target that ignores case, path globs are matched in lower case like the readings.
    rulePolicies: caseInsensitive ? foldPathGlobs(policies) : policies,
    ruleMethods: [
      ...new Set([...everyMethod, ...policies.flatMap((p) => p.rules.flatMap((r) => r.http?.methods ?? []))]),
    ].map((m) => m.toUpperCase()),
    heldText: heldValues(options.connection.credentials),
    held: heldValues(options.connection.credentials).map((value) => Buffer.from(value, 'utf8')),
  };
}

/**
 * A request on a Connection with endUser: the token taken out of its header (never forwarded
 * nor recorded), verified, and the request served under the policies of the person it names.
 * A connection's session acts for one person: a request naming another is refused.
 */
function serveActing(
  context: Context,
  endUser: { verifier: EndUserVerifier; contexts: PolicyVariants<Context> },
  sessions: ConnectionSessions,
  req: IncomingMessage,
  res: ServerResponse,
): void {
  const { connection, identity } = context.options;
  const token = takeToken(req, connection.endUser?.header ?? 'Authorization');
  actingFor(connection, identity, endUser.verifier, token).then(
    (acting) => {
      const session = sessions.begin(req.socket, acting.identity);
      if (session.recorder.identity.user !== acting.identity.user) {
        const other = session.recorder.identity.user ?? 'no end user';
        refuseActing(
          context,
          session,
          req,
          res,
          new EndUserRefusal(
            `this connection acts for ${other}; a request for ${acting.identity.user ?? 'no end user'} needs a connection of its own`,
          ),
        );
        return;
      }
      handle(endUser.contexts.for(acting.policies), session, req, res).catch((error: Error) => {
        session.recorder.error('internal', error.message);
        if (!res.headersSent)
          problem(res, 'target-error', `Airlock could not complete the request: ${error.message}`);
        else res.destroy();
      });
    },
    (error: unknown) => {
      if (!(error instanceof AirlockError)) {
        problem(res, 'target-error', `Airlock could not complete the request: ${String(error)}`);
        return;
      }
      refuseActing(context, sessions.begin(req.socket), req, res, error);
    },
  );
}

/** The end user's token from its header, removed from the request; undefined when absent. */
export function takeToken(req: IncomingMessage, header: string): string | undefined {
  const name = header.toLowerCase();
  const value = req.headers[name];
  delete req.headers[name];
  if (typeof value !== 'string') return undefined;
  if (name !== 'authorization') return value.trim();
  // Authorization carries it as a Bearer token; another scheme's value is verified as it is, and fails.
  const bearer = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(value);
  return bearer ? bearer[1] : value || undefined;
}

function refuseActing(
  context: Context,
  session: Session,
  req: IncomingMessage,
  res: ServerResponse,
  error: AirlockError,
): void {
  const { status } = httpProblems[error.code];
  problem(res, error.code, `airlock: ${error.message}`);
  session.recorder.request({
    text: requestText(context, req),
    kind: 'http',
    outcome: 'denied',
    reasons: [error.message],
    error: error.event(status),
    status,
    durationMs: 0,
  });
  req.resume();
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
  target.upstream.destroy();
}

const encodedChar = (c: number) =>
  (c >= 48 && c <= 57) ||
  (c >= 65 && c <= 90) ||
  (c >= 97 && c <= 122) ||
  '%\\&#;._+-@{}'.includes(String.fromCharCode(c));

/** An escaped value (ada%40example.com, ada\u0040example.com) is not cut before its decoding is read. */
function encodedRun(text: string): number {
  let i = text.length;
  while (i > 0 && text.length - i < 6 * 320 && encodedChar(text.charCodeAt(i - 1))) i--;
  return /%|\\|&#|&[a-z]/.test(text.slice(i)) ? i : text.length;
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
  // The agent going away withdraws a held request; once passed, the signal is not read again
  // (and not aborting it spares building a DOMException per request).
  const gone = new AbortController();
  const withdraw = () => gone.abort();
  res.once('close', withdraw);
  const passage = await session.gate.pass({
    decision,
    text: `${shown} ${normalized.path}`,
    what: 'request',
    signal: gone.signal,
  });
  res.off('close', withdraw);
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

/**
 * WebSocket and other upgrades, and CONNECT tunnels, carry bytes that no rule can check and no
 * detector can mask: there is no policy field to allow them yet, so they are refused.
 */
function refuseUpgrade(
  context: Context,
  recorder: SessionRecorder | undefined,
  req: IncomingMessage,
  socket: Socket,
): void {
  const tunnel = method(req) === 'CONNECT';
  const what = tunnel ? 'a tunnel (CONNECT)' : `protocol upgrade (${String(req.headers.upgrade ?? '')})`;
  const error = new AirlockError('unsupported', `airlock: ${what} is not allowed through Airlock`);
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
    text: tunnel ? `CONNECT ${redactText(context, req.url ?? '')}` : requestText(context, req),
    kind: 'http-upgrade',
    outcome: 'blocked',
    reasons: [
      tunnel ? 'CONNECT is not allowed' : `upgrade to ${String(req.headers.upgrade ?? '')} is not allowed`,
    ],
    durationMs: 0,
    status: 403,
    error: error.event(403),
  });
}
