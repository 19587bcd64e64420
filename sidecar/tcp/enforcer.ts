// The generic TCP enforcer: an opaque byte stream, so the only decision is the grant itself (a
// Connection is in the bundle only when an AccessPolicy grants it; with no granting policy the
// connection is refused). Bytes pass unchanged in both directions, half-closes included; the
// agent's own TLS, if any, passes through end to end, so tls.mode is not applied here. Every
// session is recorded: start, the connect as a request event, and the end with byte counts.
// While the audit trail cannot record a session (the spool is full under fail-closed), a new
// connection is closed before anything is connected or recorded.
import { connect, createServer, type Socket } from 'node:net';
import type { Enforcer, EnforcerOptions } from '../core/enforcer.ts';
import { AirlockError } from '../core/errors.ts';
import { listen, listenerEnforcer } from '../core/listen.ts';
import { SessionRecorder } from '../core/recorder.ts';

export interface TcpEnforcerOptions extends EnforcerOptions {
  /** How long to wait for the target to accept. */
  connectTimeoutMs?: number;
}

export async function serveTcp(options: TcpEnforcerOptions): Promise<Enforcer> {
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (agent) => {
    sockets.add(agent);
    agent.once('close', () => sockets.delete(agent));
    relay(options, agent, sockets);
  });
  const address = await listen(server, options.listen);
  return listenerEnforcer(server, address, sockets, () => {
    for (const socket of sockets) socket.destroy();
  });
}

function relay(options: TcpEnforcerOptions, agent: Socket, sockets: Set<Socket>): void {
  const { connection } = options;
  // Fail closed on the audit trail: no upstream connect and no event (the sink has no room for
  // one). A session already relaying goes on: its bytes are opaque, so there is no request in
  // them to refuse, only the whole stream, which was granted and recorded when it opened.
  if (options.events.refusal?.()) {
    agent.destroy();
    return;
  }
  const recorder = new SessionRecorder(connection, options.identity, options.events);
  const started = Date.now();
  recorder.start({ address: agent.remoteAddress ?? '' });
  const text = `connect ${connection.host}:${connection.port}`;
  const enforcing = connection.policies.filter((p) => p.mode === 'enforce');
  if (connection.policies.length === 0) {
    recorder.request({
      text,
      kind: 'tcp',
      outcome: 'blocked',
      reasons: ['no AccessPolicy grants this Connection'],
      durationMs: 0,
    });
    recorder.end('denied');
    agent.destroy();
    return;
  }
  let ended = false;
  const finish = (reason: string) => {
    if (ended) return;
    ended = true;
    recorder.bytesIn = agent.bytesRead;
    recorder.bytesOut = agent.bytesWritten;
    recorder.end(reason);
  };
  const upstream = connect({
    host: connection.host,
    port: connection.port,
    allowHalfOpen: true,
    ...(options.lookup && { lookup: options.lookup }),
  });
  sockets.add(upstream);
  upstream.once('close', () => sockets.delete(upstream));
  upstream.setTimeout(options.connectTimeoutMs ?? 20_000, () =>
    upstream.destroy(new Error('connect timed out')),
  );
  let connected = false;
  upstream.once('connect', () => {
    connected = true;
    upstream.setTimeout(0);
    recorder.request({
      text,
      kind: 'tcp',
      outcome: 'allowed',
      ...(enforcing[0]
        ? { policy: enforcing[0].name }
        : connection.policies[0] && { policy: connection.policies[0].name }),
      durationMs: Date.now() - started,
    });
    agent.pipe(upstream);
    upstream.pipe(agent);
    agent.resume();
  });
  upstream.on('error', (error) => {
    if (!connected) {
      recorder.request({
        text,
        kind: 'tcp',
        outcome: 'error',
        error: new AirlockError('upstream-unreachable', error.message).event(
          (error as NodeJS.ErrnoException).code,
        ),
        durationMs: Date.now() - started,
      });
    }
    agent.destroy();
    finish(`upstream error: ${error.message}`);
  });
  agent.on('error', (error) => {
    upstream.destroy();
    finish(`agent error: ${error.message}`);
  });
  // Both directions done (or either side gone): the session is over.
  let open = 2;
  const closed = () => {
    if (--open === 0) finish('closed');
  };
  agent.once('close', () => {
    upstream.destroy();
    closed();
  });
  upstream.once('close', () => {
    agent.end();
    closed();
  });
}
