// The connection to the Redis target: TCP, TLS by the Connection's mode (Redis speaks TLS from
// the first byte), then AUTH with the held credential (an ACL user and password, or the default
// user's password) before any of the agent's bytes. The agent never sees the credential.
import { isIP, type LookupFunction, connect as netConnect, type Socket } from 'node:net';
import { checkServerIdentity, connect as tlsConnect } from 'node:tls';
import type { BundleConnection } from '../../api/bundle.ts';
import { AirlockError } from '../core/errors.ts';
import { encodeCommand } from './commands-reader.ts';
import { decodeReply, ReplyScanner, T } from './replies.ts';

/** The AUTH command of the held credential, or undefined for a Redis without AUTH. */
export function authCommand(connection: BundleConnection): Buffer | undefined {
  const { username, password } = connection.credentials;
  if (!password) return undefined;
  return encodeCommand(username ? ['AUTH', username, password] : ['AUTH', password]);
}

export async function connectUpstream(
  connection: BundleConnection,
  options: { lookup?: LookupFunction; timeoutMs: number },
): Promise<Socket> {
  const { host, port, tls } = connection;
  const deadline = AbortSignal.timeout(options.timeoutMs);
  let socket: Socket;
  if (tls.mode === 'disable') {
    socket = netConnect({ host, port, ...(options.lookup && { lookup: options.lookup }) });
  } else {
    const name = tls.serverName ?? host;
    const verify = tls.mode === 'verify-full';
    socket = tlsConnect({
      host,
      port,
      ...(options.lookup && { lookup: options.lookup }),
      ...(isIP(name) === 0 && { servername: name }),
      ...(tls.ca !== undefined && { ca: tls.ca }),
      rejectUnauthorized: verify,
      checkServerIdentity: (_host, cert) => (verify ? checkServerIdentity(name, cert) : undefined),
    });
  }
  socket.setNoDelay(true);
  const fail = (message: string) => {
    socket.destroy();
    return new AirlockError('upstream-unreachable', message);
  };
  try {
    await new Promise<void>((resolve, reject) => {
      const onAbort = () => reject(fail('connect timed out'));
      deadline.addEventListener('abort', onAbort, { once: true });
      socket.once(tls.mode === 'disable' ? 'connect' : 'secureConnect', () => {
        deadline.removeEventListener('abort', onAbort);
        resolve();
      });
      socket.once('error', (error) => reject(fail(error.message)));
    });
    const auth = authCommand(connection);
    if (auth) await authenticate(socket, auth, deadline);
  } catch (error) {
    socket.destroy();
    throw error instanceof AirlockError ? error : new AirlockError('upstream-unreachable', String(error));
  }
  socket.removeAllListeners('error');
  return socket;
}

/** Sends AUTH and reads its one reply: anything but +OK ends the attempt. */
async function authenticate(socket: Socket, auth: Buffer, deadline: AbortSignal): Promise<void> {
  const scanner = new ReplyScanner();
  const chunks: Buffer[] = [];
  const reply = await new Promise<Buffer>((resolve, reject) => {
    const onAbort = () => reject(new AirlockError('upstream-unreachable', 'AUTH timed out'));
    deadline.addEventListener('abort', onAbort, { once: true });
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      try {
        if (scanner.scan(chunk, 0) < 0) return;
      } catch (error) {
        reject(new AirlockError('upstream-unreachable', `AUTH: ${(error as Error).message}`));
        return;
      }
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.pause();
      deadline.removeEventListener('abort', onAbort);
      resolve(Buffer.concat(chunks));
    };
    socket.on('data', onData);
    const onClose = () => reject(new AirlockError('upstream-unreachable', 'the target closed during AUTH'));
    socket.once('close', onClose);
    socket.write(auth);
  });
  const { reply: decoded, end } = decodeReply(reply);
  if (end !== reply.length) throw new AirlockError('upstream-unreachable', 'unexpected bytes after AUTH');
  if (decoded.type !== T.simple) {
    // The server's message names the failure (WRONGPASS, no password set); never the credential.
    throw new AirlockError(
      'upstream-unreachable',
      `AUTH refused by the target: ${decoded.data?.toString() ?? ''}`,
    );
  }
}
