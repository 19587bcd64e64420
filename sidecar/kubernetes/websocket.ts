// WebSocket framing (RFC 6455) for the streams kubectl opens through the enforcer: the frames
// read from either side, reassembled into whole messages, and written again. Both hops are read
// strictly, since the enforcer must see every byte it relays: no extension is negotiated (so
// every reserved bit is zero), a client's frames are masked and a server's are not, control
// frames are whole and short, and a fragment must continue a message. Anything else is an error
// that ends the stream.
import { createHash, randomBytes } from 'node:crypto';

export const opcodes = { continuation: 0, text: 1, binary: 2, close: 8, ping: 9, pong: 10 } as const;

/** A whole message, or a control frame. */
export interface Message {
  opcode: number;
  payload: Buffer;
}

/** The most a reassembled message may hold; kubectl and the kubelet write 32 KiB at most. */
export const maxMessageBytes = 16 * 1024 * 1024;

export class FrameError extends Error {}

/** The Sec-WebSocket-Accept answer to a client's Sec-WebSocket-Key. */
export function acceptKey(key: string): string {
  return createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
}

/** A fresh Sec-WebSocket-Key. */
export function newKey(): string {
  return randomBytes(16).toString('base64');
}

/** Whether a Sec-WebSocket-Key is what RFC 6455 asks: 16 bytes in base64. */
export function validKey(key: string | undefined): key is string {
  return key !== undefined && /^[A-Za-z0-9+/]{22}==$/.test(key);
}

/**
 * Reads frames from one side. `masked`: whether that side must mask its frames (a client)
 * or must not (a server).
 */
export class FrameReader {
  private buffer: Buffer = Buffer.alloc(0);
  private fragments: Buffer[] = [];
  private fragmentOpcode = -1;
  private fragmentBytes = 0;
  private readonly masked: boolean;

  constructor(masked: boolean) {
    this.masked = masked;
  }

  /** The messages and control frames the bytes complete; throws FrameError on any violation. */
  push(chunk: Buffer): Message[] {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    const messages: Message[] = [];
    for (;;) {
      const frame = this.frame();
      if (!frame) return messages;
      const message = this.assemble(frame);
      if (message) messages.push(message);
    }
  }

  /** The next whole frame in the buffer, unmasked, or undefined until more bytes come. */
  private frame(): { fin: boolean; opcode: number; payload: Buffer } | undefined {
    const b = this.buffer;
    if (b.length < 2) return undefined;
    const fin = (b[0]! & 0x80) !== 0;
    if ((b[0]! & 0x70) !== 0) throw new FrameError('reserved bits set with no extension negotiated');
    const opcode = b[0]! & 0x0f;
    if (![0, 1, 2, 8, 9, 10].includes(opcode)) throw new FrameError(`unknown opcode ${opcode}`);
    const masked = (b[1]! & 0x80) !== 0;
    if (masked !== this.masked)
      throw new FrameError(this.masked ? 'a client frame is not masked' : 'a server frame is masked');
    let length = b[1]! & 0x7f;
    let offset = 2;
    if (length === 126) {
      if (b.length < 4) return undefined;
      length = b.readUInt16BE(2);
      offset = 4;
    } else if (length === 127) {
      if (b.length < 10) return undefined;
      const long = b.readBigUInt64BE(2);
      if (long > BigInt(maxMessageBytes)) throw new FrameError('frame larger than the message limit');
      length = Number(long);
      offset = 10;
    }
    if (opcode >= 8 && (!fin || length > 125)) throw new FrameError('fragmented or long control frame');
    if (length > maxMessageBytes) throw new FrameError('frame larger than the message limit');
    const keyAt = offset;
    if (masked) offset += 4;
    if (b.length < offset + length) return undefined;
    const payload = Buffer.from(b.subarray(offset, offset + length));
    if (masked) for (let i = 0; i < payload.length; i++) payload[i]! ^= b[keyAt + (i & 3)]!;
    this.buffer = b.subarray(offset + length);
    return { fin, opcode, payload };
  }

  private assemble(frame: { fin: boolean; opcode: number; payload: Buffer }): Message | undefined {
    const { fin, opcode, payload } = frame;
    if (opcode >= 8) {
      if (opcode === opcodes.close && payload.length === 1) throw new FrameError('close frame of one byte');
      return { opcode, payload };
    }
    if (opcode === opcodes.continuation) {
      if (this.fragmentOpcode < 0) throw new FrameError('continuation frame with no message to continue');
    } else {
      if (this.fragmentOpcode >= 0) throw new FrameError('new message inside a fragmented one');
      if (fin) return { opcode, payload };
      this.fragmentOpcode = opcode;
    }
    this.fragmentBytes += payload.length;
    if (this.fragmentBytes > maxMessageBytes) throw new FrameError('message larger than the limit');
    this.fragments.push(payload);
    if (!fin) return undefined;
    const message = { opcode: this.fragmentOpcode, payload: Buffer.concat(this.fragments) };
    this.fragments = [];
    this.fragmentOpcode = -1;
    this.fragmentBytes = 0;
    return message;
  }
}

/** One unfragmented frame; masked with a fresh key when written by the client side. */
export function frame(opcode: number, payload: Buffer, mask: boolean): Buffer {
  const length = payload.length;
  const lengthBytes = length < 126 ? 0 : length < 0x10000 ? 2 : 8;
  const head = Buffer.alloc(2 + lengthBytes + (mask ? 4 : 0));
  head[0] = 0x80 | opcode;
  head[1] = (mask ? 0x80 : 0) | (lengthBytes === 0 ? length : lengthBytes === 2 ? 126 : 127);
  if (lengthBytes === 2) head.writeUInt16BE(length, 2);
  else if (lengthBytes === 8) head.writeBigUInt64BE(BigInt(length), 2);
  if (!mask) return Buffer.concat([head, payload]);
  const key = randomBytes(4);
  key.copy(head, 2 + lengthBytes);
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i]! ^= key[i & 3]!;
  return Buffer.concat([head, body]);
}

/** A close frame's payload: the status code and a reason of at most 123 bytes. */
export function closePayload(code: number, reason = ''): Buffer {
  const text = Buffer.from(reason).subarray(0, 123);
  const payload = Buffer.alloc(2 + text.length);
  payload.writeUInt16BE(code, 0);
  text.copy(payload, 2);
  return payload;
}
