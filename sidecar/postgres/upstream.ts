// Connects to the target PostgreSQL server and authenticates with the credential the enforcer
// holds: TLS (disable / require / verify-full), then SCRAM-SHA-256 (-PLUS over TLS), md5 or
// cleartext password. The client never takes part in this exchange.
import { createHash } from 'node:crypto';
import { isIP, type LookupFunction, type Socket, connect as tcpConnect } from 'node:net';
import { checkServerIdentity, type TLSSocket, connect as tlsConnect } from 'node:tls';
import { type Frame, FrameReader, maxServerMessageLength } from './frames.ts';
import {
  BodyReader,
  decodeFields,
  encodeCancelRequest,
  encodeStartup,
  type Fields,
  passwordMessage,
  saslInitialResponse,
  saslResponse,
  sslRequest,
  type TransactionStatus,
} from './messages.ts';
import { scramClient, tlsServerEndPoint } from './scram.ts';

export interface UpstreamTarget {
  host: string;
  port: number;
  tls: { mode: 'disable' | 'require' | 'verify-full'; ca?: string; serverName?: string };
  username: string;
  password: string;
  database: string;
  /** How `host` is resolved: the system's resolver when absent. */
  lookup?: LookupFunction;
}

export type UpstreamErrorCode =
  | 'upstream-unreachable'
  | 'upstream-tls'
  | 'upstream-auth'
  | 'upstream-protocol'
  | 'upstream-rejected'
  | 'upstream-timeout';

export class UpstreamError extends Error {
  readonly code: UpstreamErrorCode;
  /** The server's ErrorResponse fields, when the server refused us. */
  readonly fields: Fields | undefined;
  constructor(code: UpstreamErrorCode, message: string, fields?: Fields) {
    super(message);
    this.name = 'UpstreamError';
    this.code = code;
    this.fields = fields;
  }
}

export interface Upstream {
  socket: Socket | TLSSocket;
  /** Holds any bytes the server sent after ReadyForQuery; the session keeps feeding it. */
  reader: FrameReader;
  parameters: [string, string][];
  backendKey: { pid: number; secret: number } | undefined;
  status: TransactionStatus;
  /** NoticeResponse frames the server sent during startup, to relay. */
  notices: Buffer[];
  tls: boolean;
  /** How the server authenticated us: SCRAM-SHA-256-PLUS, SCRAM-SHA-256, md5, password or trust. */
  authentication: string;
}

/** Reads whole frames from a socket with await; used only during connection setup. */
class FrameSource {
  readonly reader = new FrameReader({ maxLength: maxServerMessageLength });
  private readonly socket: Socket;
  private waiting: ((error?: Error) => void) | undefined;
  private error: Error | undefined;
  private readonly onData = (chunk: Buffer) => {
    this.reader.push(chunk);
    this.wake();
  };
  private readonly onEnd = () =>
    this.fail(new UpstreamError('upstream-protocol', 'server closed the connection'));
  private readonly onError = (error: Error) =>
    this.fail(new UpstreamError('upstream-unreachable', error.message));

  constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('close', this.onEnd);
    socket.on('error', this.onError);
  }

  async next(): Promise<Frame> {
    for (;;) {
      const frame = this.reader.next();
      if (frame) return frame;
      if (this.error) throw this.error;
      await new Promise<void>((resolve, reject) => {
        this.waiting = (error) => (error ? reject(error) : resolve());
      });
    }
  }

  detach(): void {
    this.socket.off('data', this.onData);
    this.socket.off('end', this.onEnd);
    this.socket.off('close', this.onEnd);
    this.socket.off('error', this.onError);
    this.socket.pause();
  }

  private fail(error: Error): void {
    this.error ??= error;
    this.wake();
  }

  private wake(): void {
    const waiting = this.waiting;
    this.waiting = undefined;
    waiting?.(this.error);
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number, onTimeout: () => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => {
        onTimeout();
        reject(new UpstreamError('upstream-timeout', `no answer from the server within ${ms} ms`));
      }, ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** TCP connect, then the SSLRequest exchange and TLS handshake when the target wants TLS. */
export async function openChannel(target: UpstreamTarget, timeoutMs = 10_000): Promise<Socket | TLSSocket> {
  const tcp = tcpConnect({
    host: target.host,
    port: target.port,
    ...(target.lookup && { lookup: target.lookup }),
  });
  tcp.setNoDelay(true);
  return withTimeout(
    (async () => {
      await new Promise<void>((resolve, reject) => {
        tcp.once('connect', resolve);
        tcp.once('error', (error) => reject(new UpstreamError('upstream-unreachable', error.message)));
      });
      if (target.tls.mode === 'disable') return tcp;
      tcp.write(sslRequest());
      const answer = await new Promise<Buffer>((resolve, reject) => {
        tcp.once('data', resolve);
        tcp.once('close', () => reject(new UpstreamError('upstream-tls', 'server closed the connection')));
      });
      tcp.pause();
      if (answer.length !== 1) {
        // Bytes after 'S' would be accepted as if they came over TLS (CVE-2021-23222).
        throw new UpstreamError('upstream-tls', 'server sent unencrypted data after the SSL response');
      }
      if (answer[0] !== 0x53) throw new UpstreamError('upstream-tls', 'server does not support TLS');
      const name = target.tls.serverName ?? target.host;
      const verify = target.tls.mode === 'verify-full';
      const secure = tlsConnect({
        socket: tcp,
        ...(isIP(name) === 0 && { servername: name }),
        ...(target.tls.ca !== undefined && { ca: target.tls.ca }),
        rejectUnauthorized: verify,
        checkServerIdentity: (_host, cert) => (verify ? checkServerIdentity(name, cert) : undefined),
      });
      await new Promise<void>((resolve, reject) => {
        secure.once('secureConnect', resolve);
        secure.once('error', (error) => reject(new UpstreamError('upstream-tls', error.message)));
      });
      return secure;
    })(),
    timeoutMs,
    () => tcp.destroy(),
  ).catch((error: unknown) => {
    tcp.destroy();
    throw error;
  });
}

/** Connects and authenticates; resolves at the server's first ReadyForQuery. */
export async function connectUpstream(
  target: UpstreamTarget,
  parameters: [string, string][],
  timeoutMs = 15_000,
): Promise<Upstream> {
  const socket = await openChannel(target, timeoutMs);
  const source = new FrameSource(socket);
  const tls = target.tls.mode !== 'disable';
  try {
    return await withTimeout(
      (async (): Promise<Upstream> => {
        socket.write(
          encodeStartup([['user', target.username], ['database', target.database], ...parameters]),
        );
        const authentication = await authenticate(socket, source, target, tls);
        const result: Upstream = {
          socket,
          reader: source.reader,
          parameters: [],
          backendKey: undefined,
          status: 'I',
          notices: [],
          tls,
          authentication,
        };
        for (;;) {
          const frame = await source.next();
          const type = String.fromCharCode(frame.type);
          if (type === 'S') {
            const r = new BodyReader(frame.body);
            result.parameters.push([r.cstring(), r.cstring()]);
          } else if (type === 'K') {
            const r = new BodyReader(frame.body);
            result.backendKey = { pid: r.int32(), secret: r.int32() };
          } else if (type === 'N') {
            result.notices.push(frame.raw);
          } else if (type === 'Z') {
            result.status = String.fromCharCode(frame.body[0] ?? 73) as TransactionStatus;
            source.detach();
            return result;
          } else if (type === 'E') {
            const fields = decodeFields(frame.body);
            throw new UpstreamError('upstream-rejected', fields.get('M') ?? 'server error', fields);
          } else if (type !== 'v') {
            throw new UpstreamError('upstream-protocol', `unexpected message ${type} during startup`);
          }
        }
      })(),
      timeoutMs,
      () => socket.destroy(),
    );
  } catch (error) {
    source.detach();
    socket.destroy();
    throw error;
  }
}

async function authenticate(
  socket: Socket | TLSSocket,
  source: FrameSource,
  target: UpstreamTarget,
  tls: boolean,
): Promise<string> {
  let scram: ReturnType<typeof scramClient> | undefined;
  let scramDone = false;
  let method = 'trust';
  for (;;) {
    const frame = await source.next();
    const type = String.fromCharCode(frame.type);
    if (type === 'E') {
      const fields = decodeFields(frame.body);
      throw new UpstreamError('upstream-auth', fields.get('M') ?? 'authentication failed', fields);
    }
    if (type === 'v') continue;
    if (type !== 'R')
      throw new UpstreamError('upstream-protocol', `unexpected message ${type} during authentication`);
    const r = new BodyReader(frame.body);
    const code = r.int32();
    switch (code) {
      case 0:
        if (scram && !scramDone)
          throw new UpstreamError('upstream-auth', 'server skipped SCRAM verification');
        return scram?.mechanism ?? method;
      case 3:
        method = 'password';
        socket.write(passwordMessage(target.password));
        break;
      case 5: {
        method = 'md5';
        const salt = r.bytes(4);
        const inner = createHash('md5')
          .update(target.password + target.username)
          .digest('hex');
        const outer = createHash('md5')
          .update(Buffer.concat([Buffer.from(inner), salt]))
          .digest('hex');
        socket.write(passwordMessage(`md5${outer}`));
        break;
      }
      case 10: {
        const mechanisms: string[] = [];
        for (;;) {
          const name = r.cstring();
          if (name === '') break;
          mechanisms.push(name);
        }
        const secure = socket as TLSSocket;
        if (tls && mechanisms.includes('SCRAM-SHA-256-PLUS')) {
          const raw = secure.getPeerCertificate?.()?.raw;
          if (!raw) throw new UpstreamError('upstream-auth', 'no server certificate for channel binding');
          scram = scramClient(target.password, { bindingData: tlsServerEndPoint(raw), tls });
        } else if (mechanisms.includes('SCRAM-SHA-256')) {
          scram = scramClient(target.password, { tls });
        } else {
          throw new UpstreamError(
            'upstream-auth',
            `no supported SASL mechanism among ${mechanisms.join(', ')}`,
          );
        }
        socket.write(saslInitialResponse(scram.mechanism, scram.first()));
        break;
      }
      case 11:
        if (!scram) throw new UpstreamError('upstream-protocol', 'SASL continue before SASL start');
        socket.write(saslResponse(scram.final(r.rest())));
        break;
      case 12:
        if (!scram) throw new UpstreamError('upstream-protocol', 'SASL final before SASL start');
        try {
          scram.verify(r.rest());
        } catch (error) {
          throw new UpstreamError('upstream-auth', (error as Error).message);
        }
        scramDone = true;
        break;
      default:
        throw new UpstreamError('upstream-auth', `unsupported authentication method ${code}`);
    }
  }
}

/** Sends a CancelRequest for the upstream backend on its own connection, as libpq does. */
export async function cancelUpstream(target: UpstreamTarget, pid: number, secret: number): Promise<void> {
  const socket = await openChannel(target);
  await new Promise<void>((resolve) => {
    socket.on('error', () => resolve());
    socket.on('close', () => resolve());
    socket.end(encodeCancelRequest(pid, secret));
    socket.resume();
  });
}
