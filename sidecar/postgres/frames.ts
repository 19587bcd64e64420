// Incremental framing of PostgreSQL protocol messages, for both directions. Pure: it keeps a
// queue of received chunks and cursors, hands out whole messages, and knows nothing of
// sockets. A message that lies within one received chunk is returned as a view of it (no copy).
//
// Two shapes: the startup phase (client only: Int32 length, then body; SSLRequest,
// GSSENCRequest, CancelRequest and StartupMessage) and typed messages (Byte1 type, Int32
// length, body). The length counts itself but not the type byte.

/** Largest startup-phase message after its length word, as the server has it (MAX_STARTUP_PACKET_LENGTH). */
export const maxStartupLength = 10_000;
/**
 * Largest client message the enforcer accepts: 64 MiB. The server allows 1 GiB, but a query or
 * a CopyData row that large from an agent is a mistake or an attack, and we must hold a whole
 * client message to analyse it.
 */
export const maxClientMessageLength = 64 * 1024 * 1024;
/** Largest server message: the server's own bound (a 1 GiB field plus its framing). */
export const maxServerMessageLength = 1024 * 1024 * 1024 + 1024;

export interface Frame {
  /** Message type byte, or 0 for a startup-phase message. */
  type: number;
  /** The whole message as received, header included: forward this when it is unchanged. */
  raw: Buffer;
  /** The message body after the header (for startup messages it starts with the Int32 code). */
  body: Buffer;
}

/** Consecutive whole messages of one type: chunk[start, end). */
export interface MessageRun {
  chunk: Buffer;
  start: number;
  end: number;
  count: number;
}

export type FrameErrorCode = 'frame-too-large' | 'frame-invalid-length';

export class FrameError extends Error {
  readonly code: FrameErrorCode;
  readonly length: number;
  constructor(code: FrameErrorCode, message: string, length: number) {
    super(message);
    this.name = 'FrameError';
    this.code = code;
    this.length = length;
  }
}

export interface FrameReaderOptions {
  /** Largest accepted length field, for typed messages. */
  maxLength: number;
  /** Start in the startup phase (client side). */
  startup?: boolean;
}

export class FrameReader {
  /** True while messages are untyped (startup phase). The owner switches it off. */
  startup: boolean;
  readonly maxLength: number;
  private chunks: Buffer[] = [];
  private offset = 0;
  private available = 0;
  private failed: FrameError | undefined;

  constructor(options: FrameReaderOptions) {
    this.maxLength = options.maxLength;
    this.startup = options.startup ?? false;
  }

  /** Bytes received and not yet returned as messages. */
  get buffered(): number {
    return this.available;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.available += chunk.length;
  }

  /** The next whole message, or undefined until more bytes arrive. Throws FrameError (and keeps throwing it). */
  next(): Frame | undefined {
    if (this.failed) throw this.failed;
    const headerLength = this.startup ? 4 : 5;
    if (this.available < headerLength) return undefined;
    const type = this.startup ? 0 : this.byteAt(0);
    const length = this.int32At(this.startup ? 0 : 1);
    const minimum = this.startup ? 8 : 4;
    const maximum = this.startup ? maxStartupLength + 4 : this.maxLength;
    if (length < minimum) {
      this.failed = new FrameError('frame-invalid-length', `invalid message length ${length}`, length);
      throw this.failed;
    }
    if (length > maximum) {
      this.failed = new FrameError(
        'frame-too-large',
        `message of ${length} bytes exceeds the limit of ${maximum} bytes`,
        length,
      );
      throw this.failed;
    }
    const total = this.startup ? length : length + 1;
    if (this.available < total) return undefined;
    const raw = this.take(total);
    return { type, raw, body: raw.subarray(headerLength) };
  }

  /**
   * Consumes the longest run of whole messages of one type that lie in the current chunk, and
   * returns where they are, without allocating per message (the DataRow fast path). Anything
   * unusual (another type, a bad length, a message crossing chunks) is left for next().
   */
  takeRun(type: number): MessageRun | undefined {
    if (this.failed || this.startup) return undefined;
    const chunk = this.chunks[0];
    if (!chunk) return undefined;
    const start = this.offset;
    let at = start;
    let count = 0;
    while (at + 5 <= chunk.length && chunk[at] === type) {
      const length =
        ((chunk[at + 1]! << 24) | (chunk[at + 2]! << 16) | (chunk[at + 3]! << 8) | chunk[at + 4]!) >>> 0;
      if (length < 4 || length > this.maxLength || at + 1 + length > chunk.length) break;
      at += 1 + length;
      count++;
    }
    if (count === 0) return undefined;
    this.available -= at - start;
    if (at === chunk.length) {
      this.chunks.shift();
      this.offset = 0;
    } else {
      this.offset = at;
    }
    return { chunk, start, end: at, count };
  }

  /** Removes and returns every buffered byte (used when the stream changes hands, e.g. TLS). */
  drain(): Buffer {
    const rest = this.take(this.available);
    return rest;
  }

  private byteAt(index: number): number {
    let i = index + this.offset;
    for (const chunk of this.chunks) {
      if (i < chunk.length) return chunk[i]!;
      i -= chunk.length;
    }
    throw new RangeError('byteAt beyond buffered data');
  }

  private int32At(index: number): number {
    const first = this.chunks[0]!;
    if (this.offset + index + 4 <= first.length) return first.readInt32BE(this.offset + index);
    return (
      (((this.byteAt(index) << 24) |
        (this.byteAt(index + 1) << 16) |
        (this.byteAt(index + 2) << 8) |
        this.byteAt(index + 3)) >>>
        0) |
      0
    );
  }

  private take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    const first = this.chunks[0]!;
    if (this.offset + n <= first.length) {
      const view = first.subarray(this.offset, this.offset + n);
      this.offset += n;
      this.available -= n;
      if (this.offset === first.length) {
        this.chunks.shift();
        this.offset = 0;
      }
      return view;
    }
    const out = Buffer.allocUnsafe(n);
    let written = 0;
    while (written < n) {
      const chunk = this.chunks[0]!;
      const count = Math.min(chunk.length - this.offset, n - written);
      chunk.copy(out, written, this.offset, this.offset + count);
      written += count;
      this.offset += count;
      if (this.offset === chunk.length) {
        this.chunks.shift();
        this.offset = 0;
      }
    }
    this.available -= n;
    return out;
  }
}
