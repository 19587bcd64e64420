// Masking of a byte stream of text (command output, terminal output, a text HTTP body) by
// the policy's detectors. Detectors work on whole values, and TCP and the remote program cut
// output anywhere, so the masker holds back the last partial line (up to a bound) until the
// rest arrives, the stream ends, or the producer pauses. A value is missed only when it spans
// a cut in a line longer than the bound. UTF-8 sequences split across chunks are reassembled.

import { Transform, type TransformCallback } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';

export interface MaskResult {
  value: string;
  /** Masked values by masking rule and detector. */
  counts: Record<string, number>;
  /** What audit-mode policies would have masked. */
  wouldMask?: Record<string, number>;
}

export type MaskText = (text: string) => MaskResult;

/** Longest partial line held back, in characters. */
export const defaultCarry = 4096;

export class StreamMasker {
  readonly counts: Record<string, number> = {};
  readonly wouldMask: Record<string, number> = {};
  private readonly mask: MaskText;
  private readonly carryLimit: number;
  private readonly decoder = new StringDecoder('utf8');
  private carry = '';

  constructor(mask: MaskText, carryLimit = defaultCarry) {
    this.mask = mask;
    this.carryLimit = carryLimit;
  }

  /** Masks what can be masked now; returns the text to send (possibly empty). */
  push(chunk: Buffer): string {
    const text = this.carry + this.decoder.write(chunk);
    let cut = text.lastIndexOf('\n') + 1;
    if (cut === 0 && text.length > this.carryLimit) {
      // A very long line: cut at the last blank in the held part, or anywhere.
      const blank = Math.max(text.lastIndexOf(' ', text.length - 1), text.lastIndexOf('\t', text.length - 1));
      cut = blank > text.length - this.carryLimit / 4 ? blank + 1 : text.length - 256;
    }
    this.carry = text.slice(cut);
    return this.apply(text.slice(0, cut));
  }

  /** Masks and returns everything held back (at a pause or at the end). */
  flush(final = false): string {
    const text = this.carry + (final ? this.decoder.end() : '');
    this.carry = '';
    return this.apply(text);
  }

  get pending(): boolean {
    return this.carry.length > 0;
  }

  /** Total masked values, enforce mode. */
  get total(): number {
    return Object.values(this.counts).reduce((a, b) => a + b, 0);
  }

  private apply(text: string): string {
    if (text.length === 0) return '';
    const result = this.mask(text);
    for (const [key, n] of Object.entries(result.counts)) this.counts[key] = (this.counts[key] ?? 0) + n;
    for (const [key, n] of Object.entries(result.wouldMask ?? {})) {
      this.wouldMask[key] = (this.wouldMask[key] ?? 0) + n;
    }
    return result.value;
  }
}

/**
 * A Transform that masks through a StreamMasker, releasing a held partial line after idleMs
 * without new data, so prompts and progress output still reach an interactive user.
 */
export class MaskingTransform extends Transform {
  readonly masker: StreamMasker;
  private readonly idleMs: number;
  private timer: NodeJS.Timeout | undefined;
  private readonly observe: ((text: string) => void) | undefined;

  constructor(masker: StreamMasker, options: { idleMs?: number; observe?: (text: string) => void } = {}) {
    super();
    this.masker = masker;
    this.idleMs = options.idleMs ?? 25;
    this.observe = options.observe;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.send(this.masker.push(chunk));
    this.schedule();
    callback();
  }

  override _flush(callback: TransformCallback): void {
    if (this.timer) clearTimeout(this.timer);
    this.send(this.masker.flush(true));
    callback();
  }

  override _destroy(error: Error | null, callback: (error: Error | null) => void): void {
    if (this.timer) clearTimeout(this.timer);
    callback(error);
  }

  private schedule(): void {
    if (this.timer) clearTimeout(this.timer);
    if (!this.masker.pending) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (!this.destroyed && !this.writableEnded) this.send(this.masker.flush());
    }, this.idleMs);
    this.timer.unref();
  }

  private send(text: string): void {
    if (text.length === 0) return;
    this.observe?.(text);
    this.push(Buffer.from(text, 'utf8'));
  }
}
