// The server's side of RESP2 and RESP3: replies and pushes. Two readers over the same bytes.
// ReplyScanner is an incremental state machine that only finds where each top-level reply ends
// (it keeps a stack of element counts and the bytes of a bulk string left to pass), so a reply
// with nothing to mask streams through chunk by chunk whatever its size. decodeReply reads a
// whole reply into a tree for masking, and encodeReply writes a tree back.

import { RespError } from './commands-reader.ts';

const CR = 13;
const LF = 10;

/** Reply type bytes. */
export const T = {
  simple: 43, // +
  error: 45, // -
  integer: 58, // :
  bulk: 36, // $
  array: 42, // *
  null: 95, // _
  double: 44, // ,
  boolean: 35, // #
  blobError: 33, // !
  verbatim: 61, // =
  bigNumber: 40, // (
  map: 37, // %
  set: 126, // ~
  attribute: 124, // |
  push: 62, // >
} as const;

/** Bulk types: a length line, then that many bytes and CRLF. */
const bulkTypes = new Set<number>([T.bulk, T.blobError, T.verbatim]);
/** Aggregates: a count line, then that many elements (pairs for maps and attributes). */
const aggregateTypes = new Set<number>([T.array, T.set, T.push, T.map, T.attribute]);
/** One line each. */
const lineTypes = new Set<number>([T.simple, T.error, T.integer, T.null, T.double, T.boolean, T.bigNumber]);

/** Longest header or simple line kept while it arrives. */
const maxLine = 16 * 1024 * 1024;

export class ReplyScanner {
  /** Elements still to come in each open aggregate, innermost last. */
  readonly #remaining: number[] = [];
  readonly #attribute: boolean[] = [];
  /** Bytes of a bulk string (with its CRLF) still to pass. */
  #skip = 0;
  #partial: Buffer[] = [];
  #partialLength = 0;
  #inFrame = false;
  /** The type byte of the reply being scanned (after any attribute). */
  type = 0;

  /** Whether a reply has started and not ended. */
  get inFrame(): boolean {
    return this.#inFrame;
  }

  /**
   * Scans `chunk` from `from`: the offset just past the reply that ends in it, or -1 when the
   * chunk ends inside a reply. Throws RespError on bytes that are not RESP.
   */
  scan(chunk: Buffer, from: number): number {
    let i = from;
    const length = chunk.length;
    while (i < length) {
      if (this.#skip > 0) {
        const n = Math.min(this.#skip, length - i);
        this.#skip -= n;
        i += n;
        if (this.#skip > 0) return -1;
        if (this.#complete()) return i;
        continue;
      }
      const lf = chunk.indexOf(LF, i);
      if (lf < 0) {
        this.#partial.push(chunk.subarray(i));
        this.#partialLength += length - i;
        if (this.#partialLength > maxLine) throw new RespError('reply line too long');
        return -1;
      }
      const line =
        this.#partial.length === 0
          ? chunk.subarray(i, lf + 1)
          : Buffer.concat([...this.#partial, chunk.subarray(i, lf + 1)]);
      this.#partial = [];
      this.#partialLength = 0;
      i = lf + 1;
      if (line.length < 3 || line[line.length - 2] !== CR) throw new RespError('malformed reply line');
      const type = line[0]!;
      if (!this.#inFrame) this.#inFrame = true;
      if (this.#remaining.length === 0 && type !== T.attribute) this.type = type;
      if (lineTypes.has(type)) {
        if (this.#complete()) return i;
      } else if (bulkTypes.has(type)) {
        const n = lengthOf(line);
        if (n < 0) {
          if (type !== T.bulk || n !== -1) throw new RespError('invalid bulk length');
          if (this.#complete()) return i;
        } else this.#skip = n + 2;
      } else if (aggregateTypes.has(type)) {
        const n = lengthOf(line);
        if (n < 0) {
          if (type !== T.array || n !== -1) throw new RespError('invalid aggregate length');
          if (this.#complete()) return i;
          continue;
        }
        const count = type === T.map || type === T.attribute ? 2 * n : n;
        if (count === 0) {
          if (type !== T.attribute && this.#complete()) return i;
          continue;
        }
        this.#remaining.push(count);
        this.#attribute.push(type === T.attribute);
      } else throw new RespError(`unknown reply type '${String.fromCharCode(type)}'`);
    }
    return -1;
  }

  /** One element ended: closes the aggregates it completes; true when the reply ended. */
  #complete(): boolean {
    const remaining = this.#remaining;
    while (remaining.length > 0) {
      const last = remaining.length - 1;
      if (--remaining[last]! > 0) return false;
      remaining.pop();
      // An attribute is not an element of its parent: the value it describes follows.
      if (this.#attribute.pop()) return false;
    }
    this.#inFrame = false;
    return true;
  }
}

/** The signed decimal after the type byte of a header line (which ends in CRLF). */
function lengthOf(line: Buffer): number {
  const end = line.length - 2;
  if (end < 2 || end > 12) {
    if (line[1] === 63 /* ? */) throw new RespError('streamed RESP3 types are not supported');
    throw new RespError('invalid length');
  }
  let i = 1;
  let sign = 1;
  if (line[1] === 45 /* - */) {
    sign = -1;
    i = 2;
  }
  let n = 0;
  for (; i < end; i++) {
    const c = line[i]! - 48;
    if (c < 0 || c > 9) throw new RespError('invalid length');
    n = n * 10 + c;
  }
  return sign * n;
}

/** A reply read whole. */
export interface Reply {
  type: number;
  /** Line types: the line's text; bulk types: the bytes, null for a RESP2 null bulk string. */
  data?: Buffer | null;
  /** Aggregates: the elements (maps: key, value, key, value...); null for a RESP2 null array. */
  items?: Reply[] | null;
  /** The attribute that came before it, if any. */
  attribute?: Reply;
}

/** Reads one whole reply starting at `at`. Throws RespError. */
export function decodeReply(buf: Buffer, at = 0): { reply: Reply; end: number } {
  const lf = buf.indexOf(LF, at);
  if (lf < 0 || lf - at < 2 || buf[lf - 1] !== CR) throw new RespError('malformed reply line');
  const type = buf[at]!;
  const next = lf + 1;
  if (lineTypes.has(type)) return { reply: { type, data: buf.subarray(at + 1, lf - 1) }, end: next };
  const n = lengthOf(buf.subarray(at, next));
  if (bulkTypes.has(type)) {
    if (n < 0) return { reply: { type, data: null }, end: next };
    if (buf.length < next + n + 2 || buf[next + n] !== CR || buf[next + n + 1] !== LF)
      throw new RespError('bulk string not terminated by CRLF');
    return { reply: { type, data: buf.subarray(next, next + n) }, end: next + n + 2 };
  }
  if (!aggregateTypes.has(type)) throw new RespError(`unknown reply type '${String.fromCharCode(type)}'`);
  if (n < 0) return { reply: { type, items: null }, end: next };
  const count = type === T.map || type === T.attribute ? 2 * n : n;
  const items: Reply[] = new Array(count);
  let end = next;
  for (let i = 0; i < count; i++) {
    const element = decodeReply(buf, end);
    items[i] = element.reply;
    end = element.end;
  }
  if (type === T.attribute) {
    const value = decodeReply(buf, end);
    return { reply: { ...value.reply, attribute: { type, items } }, end: value.end };
  }
  return { reply: { type, items }, end };
}

/** Writes a reply tree as RESP. */
export function encodeReply(reply: Reply, out: Buffer[] = []): Buffer[] {
  if (reply.attribute) encodeReply(reply.attribute, out);
  const { type } = reply;
  const prefix = String.fromCharCode(type);
  if (lineTypes.has(type)) {
    out.push(Buffer.from(prefix), reply.data ?? Buffer.alloc(0), Buffer.from('\r\n'));
  } else if (bulkTypes.has(type)) {
    if (reply.data === null || reply.data === undefined) out.push(Buffer.from(`${prefix}-1\r\n`));
    else out.push(Buffer.from(`${prefix}${reply.data.length}\r\n`), reply.data, Buffer.from('\r\n'));
  } else {
    const items = reply.items;
    if (items === null || items === undefined) out.push(Buffer.from(`${prefix}-1\r\n`));
    else {
      const count = type === T.map || type === T.attribute ? items.length / 2 : items.length;
      out.push(Buffer.from(`${prefix}${count}\r\n`));
      for (const item of items) encodeReply(item, out);
    }
  }
  return out;
}

/** An error reply; CR and LF in the message would end it early, so they become spaces. */
export function errorReply(message: string): Buffer {
  return Buffer.from(`-${message.replace(/[\r\n]+/g, ' ')}\r\n`);
}
