// The two sockets of a session and the flow between them. Each side is read one whole message
// at a time and handed to the session; a side is paused while the session has an async step in
// progress for it (upstream connect, approval, column lookup) or while the other side's socket
// is full, and resumed when it drains. Nothing is buffered beyond what the sockets hold.
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import {
  type Frame,
  type FrameError,
  FrameReader,
  type MessageRun,
  maxClientMessageLength,
} from './frames.ts';
import type { Upstream } from './upstream.ts';

/** Client bytes read ahead while a message waits. */
const readAheadLimit = 1024 * 1024;

/** What the session does with each side's messages. A returned promise pauses that side until it settles. */
export interface RelayHandlers {
  clientFrame(frame: Frame): Promise<void> | undefined;
  /** The client's bytes do not frame (bad length, too large). */
  clientFramingError(error: FrameError): void;
  /** A client message could not be handled (it threw, or its step was rejected). */
  clientFailure(error: unknown): void;
  /** Server messages are handled in batches whose output is written at once. */
  serverBatch(): void;
  /** A run of DataRows in one received chunk. */
  serverRows(run: MessageRun, out: Buffer[]): void;
  serverFrame(frame: Frame, out: Buffer[]): Promise<void> | undefined;
  /** The server's bytes do not frame, or a message could not be handled; out is what was relayed before. */
  serverFailure(code: 'server-frame' | 'server-message', error: Error, out: Buffer[]): void;
  /** A server message's step was rejected. */
  serverStepFailure(error: unknown): void;
  close(reason: string): void;
}

export class Relay {
  client: Socket | TLSSocket;
  readonly clientReader = new FrameReader({ maxLength: maxClientMessageLength, startup: true });
  upstream: Upstream | undefined;
  bytesIn = 0;
  bytesOut = 0;
  private stopped = false;
  private readonly handlers: RelayHandlers;
  private clientBusy = false;
  private serverBusy = false;
  private clientBlocked = false;
  private serverBlocked = false;

  constructor(client: Socket, handlers: RelayHandlers) {
    this.client = client;
    this.handlers = handlers;
    client.setNoDelay(true);
    this.attachClient(client);
  }

  /** Nothing more is relayed: the session ended (or the connection never became one). */
  get closed(): boolean {
    return this.stopped;
  }

  /** A message of either side is being handled. */
  get busy(): boolean {
    return this.clientBusy || this.serverBusy;
  }

  /** SSLRequest answered 'S': the rest of the client's bytes come over TLS. */
  upgradeClient(tls: { cert: string; key: string }): void {
    const plain = this.client;
    plain.removeAllListeners('data');
    plain.removeAllListeners('drain');
    plain.removeAllListeners('end');
    plain.removeAllListeners('close');
    plain.removeAllListeners('error');
    plain.on('error', () => undefined);
    const secure = new TLSSocket(plain, { isServer: true, cert: tls.cert, key: tls.key });
    secure.on('error', (error) => this.handlers.close(`client TLS error: ${error.message}`));
    this.client = secure;
    this.attachClient(secure);
  }

  /** Starts relaying the server's messages (the session is up). */
  attachUpstream(upstream: Upstream): void {
    this.upstream = upstream;
    const socket = upstream.socket;
    socket.on('data', (chunk: Buffer) => {
      upstream.reader.push(chunk);
      this.pumpServer();
    });
    socket.on('drain', () => {
      this.clientBlocked = false;
      this.flowClient();
    });
    socket.on('end', () => this.handlers.close('server closed the connection'));
    socket.on('close', () => this.handlers.close('server closed the connection'));
    socket.on('error', (error) => this.handlers.close(`server socket error: ${error.message}`));
    socket.resume();
  }

  /**
   * One write per batch: adjacent views of the same received chunk (unchanged messages) are
   * joined without copying; anything else is concatenated once. Many small writes cost far
   * more than one memcpy.
   */
  writeClient(buffers: Buffer[]): void {
    if (buffers.length === 0 || this.closed) return;
    const joined: Buffer[] = [];
    let size = 0;
    let last: Buffer | undefined;
    for (const b of buffers) {
      size += b.length;
      if (last && last.buffer === b.buffer && last.byteOffset + last.length === b.byteOffset) {
        last = Buffer.from(last.buffer, last.byteOffset, last.length + b.length);
        joined[joined.length - 1] = last;
      } else {
        joined.push(b);
        last = b;
      }
    }
    this.bytesOut += size;
    this.client.write(joined.length === 1 ? joined[0]! : Buffer.concat(joined, size));
    if (this.client.writableNeedDrain) {
      this.serverBlocked = true;
      this.flowUpstream();
    }
  }

  writeUpstream(buffer: Buffer): void {
    const socket = this.upstream?.socket;
    if (!socket || this.closed) return;
    if (!socket.write(buffer)) {
      this.clientBlocked = true;
      this.flowClient();
    }
  }

  /** Ends the client side with a last message (counted), as the session ends. */
  endClient(last: Buffer): void {
    this.bytesOut += last.length;
    this.client.end(last);
  }

  /** Stops relaying and ends both sockets, the server's with Terminate. */
  close(terminate: Buffer): void {
    this.stopped = true;
    const upstream = this.upstream?.socket;
    if (upstream && !upstream.destroyed) {
      upstream.end(terminate);
      upstream.destroySoon?.();
    }
    if (!this.client.destroyed) {
      this.client.end();
      setTimeout(() => this.client.destroy(), 1000).unref();
    }
  }

  /** Stops relaying and ends the client side only: the connection never became a session (CancelRequest). */
  hangUp(): void {
    this.stopped = true;
    this.client.end();
  }

  private attachClient(socket: Socket | TLSSocket): void {
    socket.on('data', (chunk: Buffer) => {
      this.bytesIn += chunk.length;
      this.clientReader.push(chunk);
      if (this.clientBusy) this.flowClient();
      else this.pumpClient();
    });
    socket.on('drain', () => {
      this.serverBlocked = false;
      this.flowUpstream();
    });
    socket.on('end', () => this.handlers.close('client closed the connection'));
    socket.on('close', () => this.handlers.close('client closed the connection'));
    socket.on('error', (error) => this.handlers.close(`client socket error: ${error.message}`));
  }

  private flowClient(): void {
    if (this.closed) return;
    // While a message waits (upstream connect, approval), keep reading a little ahead so that
    // a client that goes away is noticed; beyond that, stop reading.
    if (this.clientBlocked || (this.clientBusy && this.clientReader.buffered > readAheadLimit))
      this.client.pause();
    else if (this.clientBusy) this.client.resume();
    else {
      this.client.resume();
      if (this.clientReader.buffered > 0) queueMicrotask(() => this.pumpClient());
    }
  }

  private flowUpstream(): void {
    const socket = this.upstream?.socket;
    if (!socket || this.closed) return;
    if (this.serverBusy || this.serverBlocked) socket.pause();
    else {
      socket.resume();
      if ((this.upstream?.reader.buffered ?? 0) > 0) queueMicrotask(() => this.pumpServer());
    }
  }

  /**
   * Handles the client's buffered messages. What they send upstream goes in one write: a
   * driver's Bind, Execute and Sync arrive together, and a write per message costs a system
   * call (and a wake-up of the server) each.
   */
  private pumpClient(): void {
    const upstream = this.upstream?.socket;
    upstream?.cork();
    try {
      this.handleClientFrames();
    } finally {
      upstream?.uncork();
    }
  }

  private handleClientFrames(): void {
    while (!this.clientBusy && !this.closed) {
      let frame: Frame | undefined;
      try {
        frame = this.clientReader.next();
      } catch (error) {
        this.handlers.clientFramingError(error as FrameError);
        return;
      }
      if (!frame) return;
      let step: Promise<void> | undefined;
      try {
        step = this.handlers.clientFrame(frame);
      } catch (error) {
        this.handlers.clientFailure(error);
        return;
      }
      if (step) {
        this.clientBusy = true;
        this.flowClient();
        step.then(
          () => {
            this.clientBusy = false;
            this.flowClient();
            this.pumpClient();
          },
          (error: unknown) => this.handlers.clientFailure(error),
        );
        return;
      }
    }
  }

  private pumpServer(): void {
    const upstream = this.upstream;
    if (!upstream) return;
    const out: Buffer[] = [];
    this.handlers.serverBatch();
    while (!this.serverBusy && !this.closed) {
      let frame: Frame | undefined;
      try {
        const run = upstream.reader.takeRun(0x44);
        if (run) {
          this.handlers.serverRows(run, out);
          continue;
        }
        frame = upstream.reader.next();
      } catch (error) {
        this.handlers.serverFailure('server-frame', error as Error, out);
        return;
      }
      if (!frame) break;
      let step: Promise<void> | undefined;
      try {
        step = this.handlers.serverFrame(frame, out);
      } catch (error) {
        this.handlers.serverFailure('server-message', error as Error, out);
        return;
      }
      if (step) {
        this.writeClient(out);
        out.length = 0;
        this.serverBusy = true;
        this.flowUpstream();
        step.then(
          () => {
            this.serverBusy = false;
            this.flowUpstream();
            this.pumpServer();
          },
          (error: unknown) => this.handlers.serverStepFailure(error),
        );
        return;
      }
    }
    this.writeClient(out);
  }
}
