// Rewriting DataRows with some fields replaced. Rows rewritten in one batch are written one
// after another into a shared buffer, so a run of masked rows leaves as one contiguous view
// (one allocation per batch, not per row).

import { copyBytes } from '../policy/masking.ts';

const minimumBatch = 256 * 1024;

export class RowWriter {
  /** The batch's buffer: rows are written at `used`, one after another (a new one when full). */
  buffer: Buffer = Buffer.alloc(0);
  used = 0;

  /** Starts a new batch: earlier views may still be queued on a socket, so never reuse them. */
  reset(): void {
    this.buffer = Buffer.alloc(0);
    this.used = 0;
  }

  /**
   * Writes the DataRow raw[base, limit) with fields changedAt[i] replaced by changedTo[i] (a
   * string, written as UTF-8, bytes, or null for SQL NULL); changedAt is ascending. Returns a
   * view of the new row.
   */
  write(
    raw: Buffer,
    base: number,
    limit: number,
    changedAt: number[],
    changedTo: (string | Buffer | null)[],
    changes: number,
  ): Buffer {
    const start = this.append(raw, base, limit, changedAt, changedTo, changes);
    return this.buffer.subarray(start, this.used);
  }

  /**
   * write() without the view: the row is buffer[returned offset, used). A change c with
   * bytesEnd[c] >= 0 is bytes[the previous such change's end (or 0), bytesEnd[c]) instead of
   * changedTo[c]: values masked as bytes, one after another.
   */
  append(
    raw: Buffer,
    base: number,
    limit: number,
    changedAt: number[],
    changedTo: (string | Buffer | null)[],
    changes: number,
    bytes?: Buffer,
    bytesEnd?: number[],
  ): number {
    let bound = limit - base;
    let bytesUsed = 0;
    for (let c = 0; c < changes; c++) {
      const value = changedTo[c];
      if (bytesEnd && bytesEnd[c]! >= 0) bytesUsed = bytesEnd[c]!;
      else bound += typeof value === 'string' ? value.length * 3 : (value?.length ?? 0);
    }
    bound += bytesUsed;
    if (this.buffer.length - this.used < bound) {
      this.buffer = Buffer.allocUnsafe(Math.max(minimumBatch, bound));
      this.used = 0;
    }
    const out = this.buffer;
    const start = this.used;
    const count = (raw[base + 5]! << 8) | raw[base + 6]!;
    let from = base + 7;
    let to = start + copyBytes(raw, base, from, out, start);
    // Unchanged fields between two changed ones are one run in both rows: copied at once.
    let run = from;
    let next = 0;
    let bytesFrom = 0;
    for (let i = 0; i < count; i++) {
      const length = (raw[from]! << 24) | (raw[from + 1]! << 16) | (raw[from + 2]! << 8) | raw[from + 3]!;
      const fieldEnd = from + 4 + (length > 0 ? length : 0);
      if (next < changes && changedAt[next] === i) {
        if (run < from) to += copyBytes(raw, run, from, out, to);
        const end = bytesEnd ? bytesEnd[next]! : -1;
        const value = changedTo[next++];
        if (end >= 0) {
          const written = copyBytes(bytes!, bytesFrom, end, out, to + 4);
          writeInt32(out, to, written);
          to += 4 + written;
          bytesFrom = end;
        } else if (value === null || value === undefined) {
          writeInt32(out, to, -1);
          to += 4;
        } else {
          const written =
            typeof value === 'string' ? out.write(value, to + 4, 'utf8') : value.copy(out, to + 4);
          writeInt32(out, to, written);
          to += 4 + written;
        }
        run = fieldEnd;
      }
      from = fieldEnd;
    }
    // Up to the last field's end, as the row's fields say (not to the message's end).
    if (run < from) to += copyBytes(raw, run, from, out, to);
    writeInt32(out, start + 1, to - start - 1);
    this.used = to;
    return start;
  }
}

/** A big-endian Int32 at `at`, where the caller has made room (no range checks on the hot path). */
function writeInt32(out: Buffer, at: number, value: number): void {
  out[at] = value >>> 24;
  out[at + 1] = value >>> 16;
  out[at + 2] = value >>> 8;
  out[at + 3] = value;
}
