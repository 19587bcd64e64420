// SPDY/3 as kubectl's SPDY streams write it (github.com/moby/spdystream, the framing of the
// SPDY/3 draft): frames, and the zlib-compressed header blocks of SYN_STREAM and SYN_REPLY.
// Each side compresses every header block it sends in one zlib stream with the SPDY dictionary,
// flushed at each frame's end. The enforcer reads the agent's blocks by inflating that stream
// from its start each time (a stream opens a handful of SPDY streams, each block a few dozen
// bytes, bounded below), and writes its own as stored deflate blocks, which any zlib reader
// reads and which need no compressor's state.
import { constants, inflateSync } from 'node:zlib';

export const frameTypes = {
  synStream: 1,
  synReply: 2,
  rstStream: 3,
  settings: 4,
  ping: 6,
  goAway: 7,
  headers: 8,
  windowUpdate: 9,
} as const;
/** The flag that ends a sender's side of a stream, on DATA and SYN frames. */
export const finFlag = 0x01;
const version = 3;
/** The largest frame the enforcer reads: kubectl writes at most 32 KiB of stdin at a time. */
export const maxFrameBytes = 1024 * 1024;
/** What the agent's header blocks may add up to, compressed and inflated. */
const maxCompressedHeaderBytes = 64 * 1024;
const maxHeaderBytes = 256 * 1024;

export class SpdyError extends Error {}

export type SpdyFrame =
  | { control: false; streamId: number; flags: number; data: Buffer }
  | { control: true; type: number; flags: number; data: Buffer };

/** Reads frames as they arrive, split or joined anywhere. */
export class SpdyFrameReader {
  private buffer: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): SpdyFrame[] {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    const frames: SpdyFrame[] = [];
    while (this.buffer.length >= 8) {
      // The header is checked as soon as it is whole, not when the frame is.
      const first = this.buffer.readUInt32BE(0);
      const control = (first & 0x80000000) !== 0;
      const frameVersion = (first >>> 16) & 0x7fff;
      if (control && frameVersion !== version)
        throw new SpdyError(`a SPDY/${frameVersion} frame where SPDY/3 is spoken`);
      if (!control && first === 0) throw new SpdyError('data on stream 0');
      const length = this.buffer.readUIntBE(5, 3);
      if (length > maxFrameBytes) throw new SpdyError(`a frame of ${length} bytes, more than is read`);
      if (this.buffer.length < 8 + length) break;
      const flags = this.buffer[4]!;
      const data = this.buffer.subarray(8, 8 + length);
      frames.push(
        control ? { control, type: first & 0xffff, flags, data } : { control, streamId: first, flags, data },
      );
      this.buffer = this.buffer.subarray(8 + length);
    }
    return frames;
  }
}

export function controlFrame(type: number, flags: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt16BE(0x8000 | version, 0);
  head.writeUInt16BE(type, 2);
  head[4] = flags;
  head.writeUIntBE(payload.length, 5, 3);
  return Buffer.concat([head, payload]);
}

export function dataFrame(streamId: number, flags: number, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(streamId & 0x7fffffff, 0);
  head[4] = flags;
  head.writeUIntBE(data.length, 5, 3);
  return Buffer.concat([head, data]);
}

export type HeaderBlock = Map<string, string[]>;

/** The agent's header blocks, read from its one zlib stream. */
export class HeaderInflater {
  private readonly compressed: Buffer[] = [];
  private compressedBytes = 0;
  private inflatedBytes = 0;

  read(block: Buffer): HeaderBlock {
    this.compressedBytes += block.length;
    if (this.compressedBytes > maxCompressedHeaderBytes)
      throw new SpdyError('more header blocks than a stream of kubectl sends');
    this.compressed.push(block);
    let inflated: Buffer;
    try {
      inflated = inflateSync(Buffer.concat(this.compressed), {
        dictionary,
        finishFlush: constants.Z_SYNC_FLUSH,
        maxOutputLength: maxHeaderBytes,
      });
    } catch (error) {
      throw new SpdyError(`a header block that does not inflate: ${(error as Error).message}`);
    }
    const own = inflated.subarray(this.inflatedBytes);
    this.inflatedBytes = inflated.length;
    return parseHeaderBlock(own);
  }
}

/** count, then (name length, name, value length, value) pairs; a value's parts split at NUL. */
function parseHeaderBlock(block: Buffer): HeaderBlock {
  const headers: HeaderBlock = new Map();
  let at = 0;
  const take = (): Buffer => {
    if (at + 4 > block.length) throw new SpdyError('a header block cut short');
    const length = block.readUInt32BE(at);
    if (at + 4 + length > block.length) throw new SpdyError('a header block cut short');
    const bytes = block.subarray(at + 4, at + 4 + length);
    at += 4 + length;
    return bytes;
  };
  if (block.length < 4) throw new SpdyError('a header block cut short');
  const count = block.readUInt32BE(0);
  at = 4;
  if (count > 64) throw new SpdyError(`a header block of ${count} headers`);
  for (let i = 0; i < count; i++) {
    const name = take().toString('latin1');
    const value = take().toString('latin1');
    // As the Go framer reads them: names lower-case and each once, or the frame is refused.
    if (name === '' || name !== name.toLowerCase() || headers.has(name))
      throw new SpdyError(`a header block naming ${JSON.stringify(name)} out of form`);
    headers.set(name, value.split('\0'));
  }
  if (at !== block.length) throw new SpdyError('bytes after a header block');
  return headers;
}

/** The enforcer's header blocks: one zlib stream of stored blocks. */
export class HeaderDeflater {
  private started = false;

  write(headers: [string, string][]): Buffer {
    const parts: Buffer[] = [u32(headers.length)];
    for (const [name, value] of headers) {
      const n = Buffer.from(name, 'latin1');
      const v = Buffer.from(value, 'latin1');
      parts.push(u32(n.length), n, u32(v.length), v);
    }
    const block = Buffer.concat(parts);
    if (block.length > 0xffff) throw new SpdyError('a header block larger than one stored block');
    // zlib's header (deflate, no dictionary needed to read stored blocks), once; then a
    // stored block that is not the last (BFINAL 0, BTYPE 00, LEN and its complement), and an
    // empty one, as a sync flush ends each block: Go's reader hands the block's bytes over
    // when it reads that, without reading into the next frame.
    const zlibHead = this.started ? Buffer.alloc(0) : Buffer.from([0x78, 0x01]);
    this.started = true;
    const stored = Buffer.alloc(5);
    stored.writeUInt16LE(block.length, 1);
    stored.writeUInt16LE(~block.length & 0xffff, 3);
    return Buffer.concat([zlibHead, stored, block, syncFlush]);
  }
}

const syncFlush = Buffer.from([0x00, 0x00, 0x00, 0xff, 0xff]);

function u32(value: number): Buffer {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE(value);
  return bytes;
}

/** SPDY/3's header dictionary: length-prefixed header names and values, then common text. */
export const dictionary = Buffer.concat([
  ...[
    'options',
    'head',
    'post',
    'put',
    'delete',
    'trace',
    'accept',
    'accept-charset',
    'accept-encoding',
    'accept-language',
    'accept-ranges',
    'age',
    'allow',
    'authorization',
    'cache-control',
    'connection',
    'content-base',
    'content-encoding',
    'content-language',
    'content-length',
    'content-location',
    'content-md5',
    'content-range',
    'content-type',
    'date',
    'etag',
    'expect',
    'expires',
    'from',
    'host',
    'if-match',
    'if-modified-since',
    'if-none-match',
    'if-range',
    'if-unmodified-since',
    'last-modified',
    'location',
    'max-forwards',
    'pragma',
    'proxy-authenticate',
    'proxy-authorization',
    'range',
    'referer',
    'retry-after',
    'server',
    'te',
    'trailer',
    'transfer-encoding',
    'upgrade',
    'user-agent',
    'vary',
    'via',
    'warning',
    'www-authenticate',
    'method',
    'get',
    'status',
    '200 OK',
    'version',
    'HTTP/1.1',
    'url',
    'public',
    'set-cookie',
    'keep-alive',
    'origin',
  ].flatMap((word) => [u32(word.length), Buffer.from(word, 'latin1')]),
  Buffer.from(
    '100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505' +
      '203 Non-Authoritative Information' +
      '204 No Content' +
      '301 Moved Permanently' +
      '400 Bad Request' +
      '401 Unauthorized' +
      '403 Forbidden' +
      '404 Not Found' +
      '500 Internal Server Error' +
      '501 Not Implemented' +
      '503 Service Unavailable' +
      'Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT' +
      'chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,' +
      'publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.',
    'latin1',
  ),
]);
