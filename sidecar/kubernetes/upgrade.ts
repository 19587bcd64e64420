// exec, attach and port-forward: requests that upgrade the connection to a stream. Each is read
// and decided like any request (an exec's command by the shell analyser, an exec or attach with
// stdin as an interactive shell). Over WebSocket, the agent's handshake is answered before the
// gate, so a hold can say so on the stream and keep the agent's heartbeat answered, and every
// refusal reaches kubectl as a Status on the error channel (kubectl shows its message and does
// not fall back to SPDY). An allowed stream is opened to the API server with the Connection's
// token and relayed message by message (stream-relay.ts). An exec or attach over SPDY (an older
// client's, or kubectl's when told to) is translated into the same channel messages
// (spdy-channels.ts) and governed the same way; a port-forward over bare SPDY is refused, as
// kubectl tunnels it in WebSocket first.
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { ConnectionSession } from '../core/connections.ts';
import { AirlockError } from '../core/errors.ts';
import { passageFields } from '../core/gate.ts';
import { http, https } from '../core/node-http.ts';
import { maskingFields, type RequestFields } from '../core/recorder.ts';
import { denialMessage } from '../policy/decide.ts';
import { decideKubernetes, interactive } from '../policy/kubernetes.ts';
import type { KubernetesRequest } from '../policy/kubernetes-request.ts';
import { upstreamHeaders } from './headers.ts';
import type { Read } from './read.ts';
import type { Upstream } from './response.ts';
import { spdyChannels } from './spdy-channels.ts';
import { statusBody, writeStatusToSocket } from './status.ts';
import { agentMessage, channels, relayStream } from './stream-relay.ts';
import {
  acceptKey,
  closePayload,
  FrameError,
  FrameReader,
  frame,
  type Message,
  newKey,
  opcodes,
  validKey,
} from './websocket.ts';

/** The channel protocols whose framing the enforcer reads, in kubectl's order of preference. */
const channelProtocols = ['v5.channel.k8s.io', 'v4.channel.k8s.io'];
/** What the agent may send while its stream waits for approval and the target. */
const maxPendingBytes = 1024 * 1024;

type RecordEvent = (fields: Partial<RequestFields> & Pick<RequestFields, 'outcome'>) => void;

export function handleUpgrade(
  upstream: Upstream,
  session: ConnectionSession,
  reading: Read,
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
): void {
  const started = Date.now();
  const record: RecordEvent = (fields) =>
    session.recorder.request({
      text: reading.text,
      kind: 'kubernetes-stream',
      durationMs: Date.now() - started,
      ...fields,
    });
  const refuse = (error: AirlockError, fields: Partial<RequestFields> = {}) => {
    const status = writeStatusToSocket(socket, error.code, error.message);
    record({ outcome: 'blocked', reasons: [error.message], ...fields, status, error: error.event(status) });
  };
  if (!reading.ok) {
    refuse(reading.error, { reasons: reading.reasons });
    return;
  }
  const { request } = reading;
  const decision = decideKubernetes(upstream.connection.policies, request);
  const websocket = String(req.headers.upgrade ?? '').toLowerCase() === 'websocket';
  const streamed =
    request.resource === 'pods' && ['exec', 'attach', 'portforward'].includes(request.subresource);
  const channeled = request.subresource !== 'portforward';
  if (!websocket && streamed && channeled && /^spdy\/3\.1$/i.test(String(req.headers.upgrade ?? ''))) {
    handleSpdy(upstream, session, reading.text, request, req, socket, head, record, refuse, decision);
    return;
  }
  // A port-forward has no channel to carry a refusal: it is refused before the handshake.
  if (!websocket || !streamed || (!channeled && decision.action === 'deny')) {
    if (decision.action === 'deny') {
      refuse(new AirlockError('policy-denied', denialMessage(decision, 'request')), decisionFields(decision));
      return;
    }
    const why = !streamed
      ? 'only exec, attach and port-forward streams are relayed through Airlock'
      : channeled
        ? 'exec and attach are relayed over WebSocket or SPDY/3.1 only'
        : 'port-forwards are relayed over WebSocket only, as kubectl sends them first (SPDY/3.1+portforward.k8s.io); bare SPDY is not read';
    refuse(new AirlockError('unsupported', `airlock: ${reading.text} refused: ${why}`));
    return;
  }
  const offered = String(req.headers['sec-websocket-protocol'] ?? '')
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '');
  // A port-forward's frames are relayed opaque, so any protocol the agent asks for will do.
  const protocol = channeled
    ? channelProtocols.find((p) => offered.includes(p))
    : offered.find((p) => /^[A-Za-z0-9.+/_-]{1,64}$/.test(p));
  const key = req.headers['sec-websocket-key'];
  if (!validKey(key) || req.headers['sec-websocket-version'] !== '13' || protocol === undefined) {
    refuse(
      new AirlockError(
        'protocol-violation',
        `airlock: ${reading.text} refused: a WebSocket handshake for ${channelProtocols.join(' or ')} is needed`,
      ),
    );
    return;
  }
  socket.write(
    `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKey(key)}\r\nSec-WebSocket-Protocol: ${protocol}\r\n\r\n`,
  );
  void new Stream(
    upstream,
    session,
    request,
    req,
    reading.text,
    socket,
    head,
    protocol,
    channeled,
    record,
  ).run(decision);
}

/**
 * An exec or attach over SPDY: answered as the API server would (v5 or v4 of the channel
 * protocol, which SPDY carries alike), then translated into v5 channel messages for the same
 * stream; the API server is reached over WebSocket v5.
 */
function handleSpdy(
  upstream: Upstream,
  session: ConnectionSession,
  text: string,
  request: KubernetesRequest,
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  record: RecordEvent,
  refuse: (error: AirlockError) => void,
  decision: ReturnType<typeof decideKubernetes>,
): void {
  const offered = ([] as string[])
    .concat(req.headers['x-stream-protocol-version'] ?? [])
    .flatMap((value) => value.split(','))
    .map((p) => p.trim());
  const protocol = channelProtocols.find((p) => offered.includes(p));
  if (protocol === undefined) {
    refuse(
      new AirlockError(
        'protocol-violation',
        `airlock: ${text} refused: a SPDY upgrade for ${channelProtocols.join(' or ')} is needed`,
      ),
    );
    return;
  }
  socket.write(
    `HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: ${protocol}\r\n\r\n`,
  );
  const spdy = spdyChannels(socket, head, expectedStreams(request));
  void new Stream(
    upstream,
    session,
    request,
    req,
    text,
    spdy.agent,
    Buffer.alloc(0),
    'v5.channel.k8s.io',
    true,
    record,
    spdy.violation,
  ).run(decision);
}

/** The SPDY streams kubectl opens for a request: error always, the others as the request asks. */
function expectedStreams(request: KubernetesRequest): Set<string> {
  // As the API server reads its boolean options (strconv.ParseBool).
  const flag = (name: string) =>
    ['1', 't', 'T', 'true', 'TRUE', 'True'].includes(request.query.get(name)?.[0] ?? '');
  const tty = flag('tty');
  const streams = new Set(['error']);
  if (interactive(request)) streams.add('stdin');
  if (flag('stdout')) streams.add('stdout');
  if (flag('stderr') && !tty) streams.add('stderr');
  if (tty) streams.add('resize');
  return streams;
}

function decisionFields(decision: ReturnType<typeof decideKubernetes>): Partial<RequestFields> {
  return {
    ...(decision.policy !== undefined && { policy: decision.policy }),
    ...(decision.rule !== undefined && { rule: decision.rule }),
    reasons: decision.reasons,
  };
}

/** One upgraded stream, from the agent's 101 to its end. */
class Stream {
  private readonly reader = new FrameReader(true);
  private readonly pending: Message[] = [];
  private pendingBytes = 0;
  /** Why the agent's stream was ended while it waited: a frame that could not be read. */
  private violation: string | undefined;
  private readonly gone = new AbortController();
  private readonly upstream: Upstream;
  private readonly session: ConnectionSession;
  private readonly request: KubernetesRequest;
  private readonly req: IncomingMessage;
  private readonly text: string;
  private readonly socket: Duplex;
  private readonly protocol: string;
  private readonly channeled: boolean;
  private readonly record: RecordEvent;
  /** Why a translated agent session (SPDY) was ended, when it broke its protocol. */
  private readonly agentViolation: () => string | undefined;
  private readonly waiting: (chunk: Buffer) => void;

  constructor(
    upstream: Upstream,
    session: ConnectionSession,
    request: KubernetesRequest,
    req: IncomingMessage,
    text: string,
    socket: Duplex,
    head: Buffer,
    protocol: string,
    channeled: boolean,
    record: RecordEvent,
    agentViolation: () => string | undefined = () => undefined,
  ) {
    this.upstream = upstream;
    this.session = session;
    this.request = request;
    this.req = req;
    this.text = text;
    this.socket = socket;
    this.protocol = protocol;
    this.channeled = channeled;
    this.record = record;
    this.agentViolation = agentViolation;
    // Until the target answers, the agent's messages wait here; its pings are answered.
    this.waiting = (chunk: Buffer) => this.hold(chunk);
    socket.on('data', this.waiting);
    socket.once('close', () => this.gone.abort());
    socket.on('error', () => this.gone.abort());
    if (head.length > 0) this.hold(head);
  }

  private hold(chunk: Buffer): void {
    try {
      for (const message of this.reader.push(chunk)) {
        if (message.opcode === opcodes.ping) this.socket.write(frame(opcodes.pong, message.payload, false));
        else if (message.opcode === opcodes.close) this.gone.abort();
        else if (message.opcode !== opcodes.pong) {
          this.pendingBytes += message.payload.length;
          if (this.pendingBytes > maxPendingBytes)
            throw new FrameError('more input than is kept before the stream opens');
          this.pending.push(message);
        }
      }
    } catch (error) {
      this.violation = (error as Error).message;
      this.socket.end(frame(opcodes.close, closePayload(1002, 'airlock: protocol violation'), false));
      this.gone.abort();
    }
  }

  async run(decision: ReturnType<typeof decideKubernetes>): Promise<void> {
    const { recorder, gate } = this.session;
    const note = this.request.query.get('tty')?.[0] === 'true' ? channels.stdout : channels.stderr;
    const passage =
      decision.action === 'deny'
        ? ({
            go: false,
            outcome: 'blocked',
            error: new AirlockError('policy-denied', denialMessage(decision, 'request')),
          } as const)
        : await gate.pass({
            decision,
            text: this.text,
            what: 'request',
            signal: this.gone.signal,
            onHold: (message) => {
              if (this.channeled) this.socket.write(agentMessage(note, `${message}\r\n`));
            },
          });
    const fields = passageFields(decision, passage);
    if (!passage.go) {
      const status = this.fail(passage.error);
      this.record({ ...fields, status, error: passage.error.event(status) });
      return;
    }
    if (this.gone.signal.aborted) {
      this.record({ ...fields, ...this.left() });
      return;
    }
    let target: { socket: Duplex; head: Buffer };
    try {
      target = await this.open();
    } catch (error) {
      const failure =
        error instanceof AirlockError
          ? error
          : new AirlockError('upstream-unreachable', `airlock: ${(error as Error).message}`);
      const status = this.fail(failure);
      this.record({ ...fields, outcome: 'error', status, error: failure.event(status) });
      return;
    }
    if (this.gone.signal.aborted) {
      target.socket.destroy();
      this.record({ ...fields, ...this.left() });
      return;
    }
    this.socket.off('data', this.waiting);
    this.socket.pause();
    const end = await relayStream(this.socket, this.reader, this.pending, target.socket, target.head, {
      channeled: this.channeled,
      stdin: interactive(this.request),
      policies: this.upstream.connection.policies,
      plan: this.upstream.masking.plan,
      recorder,
    });
    const counted = maskingFields(
      this.upstream.connection.policies,
      end.masked,
      end.wouldMask,
      fields.wouldHave,
    );
    const outcome = counted.masked && passage.outcome === 'allowed' ? 'masked' : passage.outcome;
    const violation = end.violation ?? this.agentViolation();
    this.record({
      ...fields,
      ...counted,
      status: 101,
      outcome: violation ? 'error' : outcome,
      ...(end.exitStatus !== undefined && { exitStatus: end.exitStatus }),
      ...(violation && {
        error: new AirlockError('protocol-violation', `airlock: the stream ended: ${violation}`).event(),
      }),
    });
  }

  /** How a stream the agent left (or broke) before it opened is recorded. */
  private left(): Partial<RequestFields> & Pick<RequestFields, 'outcome'> {
    const violation = this.violation ?? this.agentViolation();
    const error = violation
      ? new AirlockError('protocol-violation', `airlock: the stream ended: ${violation}`)
      : new AirlockError('cancelled', 'the agent left before the stream opened');
    return { outcome: 'error', error: error.event() };
  }

  /** A refusal on the error channel (kubectl shows its message), then the close. */
  private fail(error: AirlockError): number {
    const { status, body } = statusBody(error.code, error.message);
    if (this.channeled) this.socket.write(agentMessage(channels.error, body));
    this.socket.end(frame(opcodes.close, closePayload(this.channeled ? 1000 : 1011, error.message), false));
    return status;
  }

  /** The stream to the API server, with the Connection's token, asking for the agent's protocol. */
  private open(): Promise<{ socket: Duplex; head: Buffer }> {
    const { connection } = this.upstream;
    // The agent's own handshake (WebSocket or SPDY) stays on its hop; the enforcer makes its own.
    const agentHeaders = Object.fromEntries(
      Object.entries(this.req.headers).filter(
        ([name]) => !name.startsWith('sec-websocket-') && name !== 'x-stream-protocol-version',
      ),
    );
    const headers = upstreamHeaders(
      agentHeaders,
      this.upstream.token,
      `${connection.host}:${connection.port}`,
      false,
    );
    const key = newKey();
    Object.assign(headers, {
      connection: 'Upgrade',
      upgrade: 'websocket',
      'sec-websocket-version': '13',
      'sec-websocket-key': key,
      'sec-websocket-protocol': this.protocol,
    });
    const send = this.upstream.secure ? https.request : http.request;
    return new Promise((resolve, reject) => {
      const outgoing = send({
        host: connection.host,
        port: connection.port,
        method: 'GET',
        // The target as the agent sent it: its reading is the one decided.
        path: this.req.url,
        headers,
        ...this.upstream.socket,
        agent: false,
      });
      const stop = () => outgoing.destroy();
      this.gone.signal.addEventListener('abort', stop, { once: true });
      outgoing.once('error', (error) => reject(error));
      outgoing.once('upgrade', (res: IncomingMessage, socket: Duplex, head: Buffer) => {
        this.gone.signal.removeEventListener('abort', stop);
        if (
          res.headers['sec-websocket-accept'] !== acceptKey(key) ||
          res.headers['sec-websocket-protocol'] !== this.protocol
        ) {
          socket.destroy();
          reject(
            new AirlockError(
              'target-error',
              `airlock: the API server did not open a ${this.protocol} stream`,
            ),
          );
          return;
        }
        resolve({ socket, head });
      });
      outgoing.once('response', (res: IncomingMessage) => {
        // The API server's own refusal (no such pod, container not running): its message, passed on.
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size <= 64 * 1024) chunks.push(chunk);
        });
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let message = `the API server answered ${res.statusCode}`;
          try {
            const status = JSON.parse(text) as { message?: string };
            if (typeof status.message === 'string') message = status.message;
          } catch {
            // Not a Status: the code says enough.
          }
          reject(new AirlockError('target-error', message));
        });
      });
      outgoing.end();
    });
  }
}
