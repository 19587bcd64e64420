// A watch response is a stream of JSON events ({type, object}), one after another, for as long
// as the watch lasts. Each event is masked whole as soon as it is complete and sent on, so the
// agent sees events as they happen; nothing of an event is sent before all of it is read.
import { Transform, type TransformCallback } from 'node:stream';

/**
 * Splits a byte stream into complete top-level JSON values (objects or arrays) by tracking
 * nesting outside strings; whitespace between them is dropped. A value longer than `limit`
 * bytes is an error: it could not be masked whole.
 */
export class JsonValueSplitter {
  private readonly limit: number;
  private pending: Buffer[] = [];
  private pendingSize = 0;
  private depth = 0;
  private inString = false;
  private escaped = false;

  constructor(limit: number) {
    this.limit = limit;
  }

  /** The values completed by `chunk`, as UTF-8 text. */
  push(chunk: Buffer): string[] {
    const values: string[] = [];
    let start = 0;
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk[i]!;
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (c === 0x5c) this.escaped = true;
        else if (c === 0x22) this.inString = false;
        continue;
      }
      if (this.depth === 0) {
        // Between events: whitespace, then the next event's opening brace.
        if (isSpace(c)) start = i + 1;
        else if (c === 0x7b || c === 0x5b) this.depth++;
        else throw new Error('a watch event is not a JSON object');
        continue;
      }
      if (c === 0x22) this.inString = true;
      else if (c === 0x7b || c === 0x5b) this.depth++;
      else if (c === 0x7d || c === 0x5d) {
        this.depth--;
        if (this.depth === 0) {
          this.pending.push(chunk.subarray(start, i + 1));
          values.push(Buffer.concat(this.pending).toString('utf8'));
          this.pending = [];
          this.pendingSize = 0;
          start = i + 1;
        }
      }
    }
    if (start < chunk.length) {
      this.pending.push(chunk.subarray(start));
      this.pendingSize += chunk.length - start;
      if (this.pendingSize > this.limit)
        throw new Error(`a watch event larger than ${this.limit} bytes cannot be masked whole`);
    }
    return values;
  }

  /** Whether a value was begun and not finished. */
  get partial(): boolean {
    return this.pendingSize > 0;
  }
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

/** Masks each event of a watch stream (`mask` gets and returns one event's JSON text), one line each. */
export class WatchMasker extends Transform {
  private readonly splitter: JsonValueSplitter;
  private readonly mask: (event: string) => string;

  constructor(limit: number, mask: (event: string) => string) {
    super();
    this.splitter = new JsonValueSplitter(limit);
    this.mask = mask;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      for (const event of this.splitter.push(chunk)) this.push(`${this.mask(event)}\n`);
    } catch (error) {
      callback(error as Error);
      return;
    }
    callback();
  }

  override _flush(callback: TransformCallback): void {
    callback(this.splitter.partial ? new Error('the watch stream ended inside an event') : undefined);
  }
}
