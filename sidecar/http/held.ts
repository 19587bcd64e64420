// Response bodies read for the credential the enforcer holds (sidecar/policy/held.ts), whatever
// the policies mask: each occurrence overwritten byte for byte with '*' (the same length, so a
// declared Content-Length still holds), also where one is split across chunks.
import { Transform, type TransformCallback } from 'node:stream';

/**
 * A byte stream with every held value overwritten, also where one is split across chunks: only
 * a chunk's tail that could begin a held value waits for the next chunk.
 */
export class HeldFilter extends Transform {
  private readonly held: Buffer[];
  private tail: Buffer = Buffer.alloc(0);

  constructor(held: Buffer[]) {
    super();
    this.held = held;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    let bytes = this.tail.length > 0 ? Buffer.concat([this.tail, chunk]) : chunk;
    // Copied only where a value is overwritten: the chunk itself is not ours to change.
    if (this.held.some((value) => bytes.includes(value))) {
      if (bytes === chunk) bytes = Buffer.from(chunk);
      overwrite(this.held, bytes);
    }
    const keep = pendingPrefix(this.held, bytes);
    this.tail = Buffer.from(bytes.subarray(bytes.length - keep));
    if (bytes.length > keep) this.push(bytes.subarray(0, bytes.length - keep));
    callback();
  }

  override _flush(callback: TransformCallback): void {
    if (this.tail.length > 0) this.push(this.tail);
    callback();
  }
}

function overwrite(held: Buffer[], bytes: Buffer): void {
  for (const value of held)
    for (let at = bytes.indexOf(value); at !== -1; at = bytes.indexOf(value, at + value.length))
      bytes.fill(0x2a, at, at + value.length);
}

/** The longest tail of `bytes` that is the start of a held value. */
function pendingPrefix(held: Buffer[], bytes: Buffer): number {
  let longest = 0;
  for (const value of held)
    for (let n = Math.min(value.length - 1, bytes.length); n > longest; n--)
      if (bytes.subarray(bytes.length - n).equals(value.subarray(0, n))) {
        longest = n;
        break;
      }
  return longest;
}
