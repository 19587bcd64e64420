// The Kubernetes API enforcer. The agent's kubectl speaks plain HTTP/1.1 to the listener with no
// credential (its kubeconfig names only the listener); the enforcer reads each request as the
// API server's request-info parser does, refuses what the Connection does not allow
// (impersonation, dry runs, foreign field managers), decides it on the rules and passes it
// through the core's gate (deny, hold for approval, fail closed on the audit trail), then sends
// it to the API server with the Connection's bearer token over TLS, asking for JSON only. The
// response is masked on its way back (response.ts). Streams (exec, attach, port-forward) are
// decided the same way and relayed frame by frame (upgrade.ts).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isIP, type Socket } from 'node:net';
import { type ConnectionSession, ConnectionSessions } from '../core/connections.ts';
import type { Enforcer, EnforcerOptions } from '../core/enforcer.ts';
import { AirlockError, httpProblems } from '../core/errors.ts';
import { passageFields } from '../core/gate.ts';
import { listen, settle, stopAccepting } from '../core/listen.ts';
import { http, https } from '../core/node-http.ts';
import { maskingFields, type RequestFields } from '../core/recorder.ts';
import { compileJsonPaths } from '../policy/json-paths.ts';
import { decideKubernetes, kubernetesAllowances } from '../policy/kubernetes.ts';
import { compileMasking, defaultHashKey } from '../policy/masking.ts';
import { read } from './read.ts';
import { type ForwardEnd, forward, type Upstream } from './response.ts';
import { carriesRedacted, maxSecretWriteBytes, readBody, writesSecret } from './secret-writes.ts';
import { writeStatus, writeStatusToSocket } from './status.ts';
import { handleUpgrade } from './upgrade.ts';

/** Subresources that are streams, relayed only once upgraded (upgrade.ts). */
const streamingSubresources = new Set(['exec', 'attach', 'portforward']);

type Session = ConnectionSession;

export async function serveKubernetes(options: EnforcerOptions): Promise<Enforcer> {
  const { connection } = options;
  if (connection.protocol !== 'kubernetes')
    throw new Error(`Connection ${connection.name} is not a kubernetes Connection`);
  const secure = connection.tls.mode !== 'disable';
  const servername = connection.tls.serverName ?? (isIP(connection.host) ? undefined : connection.host);
  // In a pod the Connection's host names the sidecar itself (hostAliases): it resolves as the sidecar must.
  const socket = {
    ...(options.lookup && { lookup: options.lookup }),
    ...(secure && {
      rejectUnauthorized: connection.tls.mode !== 'require',
      ...(connection.tls.ca !== undefined && { ca: connection.tls.ca }),
      ...(servername !== undefined && { servername }),
    }),
  };
  const upstream: Upstream = {
    connection,
    secure,
    agent: secure
      ? new https.Agent({ keepAlive: true, ...socket })
      : new http.Agent({ keepAlive: true, ...socket }),
    socket,
    token: connection.credentials.token ?? '',
    masking: {
      plan: compileMasking(connection.policies),
      jsonPaths: compileJsonPaths(connection.policies),
      hashKey: defaultHashKey,
    },
  };
  const allowances = kubernetesAllowances(connection);
  const server = http.createServer({ keepAlive: true });
  // Approval holds and watches last; headers must still arrive promptly.
  server.requestTimeout = 0;
  server.headersTimeout = 60_000;
  const sessions = new ConnectionSessions(server, options);
  const { sockets } = sessions;
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const unrecorded = options.events.refusal?.();
    if (unrecorded) {
      writeStatus(res, 'audit-unavailable', unrecorded);
      req.resume();
      return;
    }
    const session = sessions.begin(req.socket);
    handle(upstream, allowances, session, req, res).catch((error: Error) => {
      session.recorder.error('internal', error.message);
      if (!res.headersSent)
        writeStatus(res, 'target-error', `airlock: could not complete the request: ${error.message}`);
      else res.destroy();
    });
  });
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    const unrecorded = options.events.refusal?.();
    if (unrecorded) {
      writeStatusToSocket(socket, 'audit-unavailable', unrecorded);
      return;
    }
    handleUpgrade(upstream, sessions.begin(socket), read(allowances, req), req, socket, head);
  });
  server.on('clientError', (_error, socket: Socket) => {
    if (socket.writable)
      socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    else socket.destroy();
  });
  const address = await listen(server, options.listen);
  const close = async () => {
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeIdleConnections();
      for (const socket of sockets) socket.end();
      setTimeout(() => {
        for (const socket of sockets) socket.destroy();
      }, 1000).unref();
    });
    upstream.agent.destroy();
  };
  return {
    address,
    close,
    async drain(deadlineMs) {
      stopAccepting(server);
      server.closeIdleConnections();
      await settle(() => sockets.size > 0, deadlineMs);
      await close();
    },
  };
}

async function handle(
  upstream: Upstream,
  allowances: ReturnType<typeof kubernetesAllowances>,
  session: Session,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const { recorder } = session;
  const started = Date.now();
  const record = (text: string, fields: Partial<RequestFields> & Pick<RequestFields, 'outcome'>) =>
    recorder.request({ text, kind: 'kubernetes', durationMs: Date.now() - started, ...fields });
  const reading = read(allowances, req);
  if (!reading.ok) {
    const status = writeStatus(res, reading.error.code, reading.error.message);
    record(reading.text, {
      outcome: 'blocked',
      reasons: reading.reasons,
      status,
      error: reading.error.event(status),
    });
    req.resume();
    return;
  }
  const { request, text } = reading;
  const decision = decideKubernetes(upstream.connection.policies, request);
  if (streamingSubresources.has(request.subresource) && decision.action !== 'deny') {
    // Without an upgrade the API server would refuse it anyway; this says what to do instead.
    const error = new AirlockError(
      'unsupported',
      `airlock: ${text} refused: exec, attach and port-forward are relayed only as WebSocket streams`,
    );
    const status = writeStatus(res, error.code, error.message);
    record(text, { outcome: 'blocked', reasons: [error.message], status, error: error.event(status) });
    req.resume();
    return;
  }
  let body: Buffer | undefined;
  // Checked before an approver is asked; a denied write is refused by its rule instead.
  if (writesSecret(request) && decision.action !== 'deny') {
    body = await readBody(req, maxSecretWriteBytes);
    const refused =
      body === undefined
        ? new AirlockError(
            'unsupported',
            `airlock: ${text} refused: a Secret larger than ${maxSecretWriteBytes} bytes`,
          )
        : carriesRedacted(body)
          ? new AirlockError(
              'policy-denied',
              `airlock: ${text} refused: the Secret carries a value Airlock redacted, and writing it back would overwrite the real one`,
            )
          : undefined;
    if (refused) {
      const status = writeStatus(res, refused.code, refused.message);
      record(text, { outcome: 'blocked', reasons: [refused.message], status, error: refused.event(status) });
      return;
    }
  }
  const gone = new AbortController();
  res.once('close', () => gone.abort());
  const passage = await session.gate.pass({ decision, text, what: 'request', signal: gone.signal });
  const fields = passageFields(decision, passage);
  if (!passage.go) {
    const status = httpProblems[passage.error.code].status;
    if (!res.destroyed) writeStatus(res, passage.error.code, passage.error.message);
    record(text, { ...fields, status, error: passage.error.event(status) });
    req.resume();
    return;
  }
  const forwarded = (end: ForwardEnd) => {
    const counted = maskingFields(upstream.connection.policies, end.counts, end.wouldMask, fields.wouldHave);
    const outcome = counted.masked && passage.outcome === 'allowed' ? 'masked' : passage.outcome;
    record(text, {
      ...fields,
      ...counted,
      outcome: end.error ? 'error' : outcome,
      ...(end.status !== undefined && { status: end.status }),
      ...(end.error && { error: end.error.event(end.status) }),
    });
  };
  await forward(upstream, request, req, res, forwarded, body);
}
