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
    raw.copy(out, start, base, base + 7);
    let from = base + 7;
    let to = start + 7;
    let next = 0;
    for (let i = 0; i < count; i++) {
      const length = (raw[from]! << 24) | (raw[from + 1]! << 16) | (raw[from + 2]! << 8) | raw[from + 3]!;
      const fieldEnd = from + 4 + (length > 0 ? length : 0);
      if (next < changes && changedAt[next] === i) {
        const value = changedTo[next++];
        if (value === null || value === undefined) {
          out.writeInt32BE(-1, to);
          to += 4;
        } else {
          const written =
            typeof value === 'string' ? out.write(value, to + 4, 'utf8') : value.copy(out, to + 4);
          out.writeInt32BE(written, to);
          to += 4 + written;
        }
      } else {
        to += raw.copy(out, to, from, fieldEnd);
      }
      from = fieldEnd;
    }
    out.writeInt32BE(to - start - 1, start + 1);
    this.used = to;
    return out.subarray(start, to);
  }
}
