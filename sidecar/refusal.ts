// Fail closed: while a listed Connection has no bundle (none received yet, or the grant was
// revoked), its address still answers, with an error the agent's client shows, and nothing
// is forwarded anywhere.
import { createServer, type Server, type Socket } from 'node:net';
import type { Protocol } from '../api/names.ts';
import type { Enforcer } from './core/enforcer.ts';
import { errorResponse, sslRequestCode } from './postgres/messages.ts';

function refusePostgres(socket: Socket, message: string) {
  let buffered = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    if (buffered.length < 8) return;
    if (buffered.length === 8 && buffered.readInt32BE(4) === sslRequestCode) {
      buffered = Buffer.alloc(0);
      socket.write('N');
      return;
    }
    socket.end(errorResponse('08004', message, { severity: 'FATAL' }));
  });
}

function refuseHttp(socket: Socket, message: string) {
  socket.once('data', () => {
    const body = JSON.stringify({
      type: 'about:blank',
      title: 'Service Unavailable',
      status: 503,
      detail: message,
    });
    socket.end(
      `HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
  });
}

/** A listener that refuses every client of one Connection at the protocol level. */
export async function serveRefusal(
  protocol: Protocol | undefined,
  connection: string,
  listen: { host: string; port: number },
  reason: string,
): Promise<Enforcer> {
  const message = `airlock: access to ${connection} is closed: ${reason}`;
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    socket.setTimeout(10_000, () => socket.destroy());
    if (protocol === 'postgres') refusePostgres(socket, message);
    else if (protocol === 'http' || protocol === 'mcp') refuseHttp(socket, message);
    else socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => resolve());
  });
  return {
    address: server.address() as Enforcer['address'],
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
