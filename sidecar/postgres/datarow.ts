// Rewriting DataRows with some fields replaced. Rows rewritten in one batch are written one
// after another into a shared buffer, so a run of masked rows leaves as one contiguous view
// (one allocation per batch, not per row).

const minimumBatch = 256 * 1024;

export class RowWriter {
  private buffer: Buffer = Buffer.alloc(0);
  private used = 0;

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
    let bound = limit - base;
    for (let c = 0; c < changes; c++) {
      const value = changedTo[c];
      bound += typeof value === 'string' ? value.length * 3 : (value?.length ?? 0);
    }
    if (this.buffer.length - this.used < bound) {
      this.buffer = Buffer.allocUnsafe(Math.max(minimumBatch, bound));
      this.used = 0;
    }
    const out = this.buffer;
    const start = this.used;
    const count = (raw[base + 5]! << 8) | raw[base + 6]!;
    let from = base + 7;
    let to = start + raw.copy(out, start, base, from);
    // Unchanged fields between two changed ones are one run in both rows: copied at once.
    let run = from;
    let next = 0;
    for (let i = 0; i < count; i++) {
      const length = (raw[from]! << 24) | (raw[from + 1]! << 16) | (raw[from + 2]! << 8) | raw[from + 3]!;
      const fieldEnd = from + 4 + (length > 0 ? length : 0);
      if (next < changes && changedAt[next] === i) {
        if (run < from) to += raw.copy(out, to, run, from);
        const value = changedTo[next++];
        if (value === null || value === undefined) {
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
    if (run < from) to += raw.copy(out, to, run, from);
    writeInt32(out, start + 1, to - start - 1);
    this.used = to;
    return out.subarray(start, to);
  }
}

/** A big-endian Int32 at `at`, where the caller has made room (no range checks on the hot path). */
function writeInt32(out: Buffer, at: number, value: number): void {
  out[at] = value >>> 24;
  out[at + 1] = value >>> 16;
  out[at + 2] = value >>> 8;
  out[at + 3] = value;
}
