// Response bodies as the masker reads them: other text encodings transcoded to UTF-8 (UTF-16 by
// its byte order mark or the zero bytes of its first characters), text masked chunk by chunk
// with the stream masker's carry-over, JSON token by token.
import { Transform, type TransformCallback } from 'node:stream';
import { TextDecoder } from 'node:util';
import { encodeText, MaskingTransform, StreamMasker } from '../core/stream-masker.ts';
import { type Context, defaultMaxJsonToken } from './context.ts';
import { JsonStreamMasker, JsonSyntaxError } from './json.ts';

/** Text in some charset read as UTF-8, chunk by chunk. */
export interface Utf8Reader {
  /** The chunk as UTF-8 (the chunk itself for UTF-8 text). */
  push(chunk: Buffer): Buffer;
  /** What is left at the end of the body. */
  end(): Buffer;
}

/**
 * Reads text in `charset` as UTF-8: a pass-through for UTF-8, which a byte order mark (or the
 * zero bytes of UTF-16's first characters) overrides. Undefined for a charset that cannot be
 * decoded.
 */
export function utf8Reader(charset: string): Utf8Reader | undefined {
  let decoder: TextDecoder | undefined;
  try {
    if (charset !== 'utf-8' && charset !== 'utf8') decoder = new TextDecoder(charset);
  } catch {
    return undefined;
  }
  if (decoder && !['utf-16le', 'utf-16be'].includes(decoder.encoding) && /^utf-?(16|32)/.test(charset))
    return undefined;
  let sniffed = decoder !== undefined;
  let head = Buffer.alloc(0);
  return {
    push(chunk) {
      if (!sniffed) {
        head = Buffer.concat([head, chunk]);
        if (head.length < 4) return empty;
        sniffed = true;
        decoder = utf16Of(head);
        chunk = head;
      }
      return decoder ? Buffer.from(decoder.decode(chunk, { stream: true }), 'utf8') : chunk;
    },
    end() {
      if (!sniffed && head.length > 0) decoder = utf16Of(head);
      const rest = !sniffed ? head : empty;
      return decoder ? Buffer.from(decoder.decode(rest), 'utf8') : rest;
    },
  };
}

const empty = Buffer.alloc(0);

/** A stream that turns text into UTF-8 with `reader`. */
export function toUtf8(reader: Utf8Reader): Transform {
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      callback(null, reader.push(chunk));
    },
    flush(callback) {
      callback(null, reader.end());
    },
  });
}

/**
 * UTF-16 by its byte order mark, or by the zero bytes of its first two characters (how RFC 8259
 * tells JSON's encoding; text in UTF-8 has no zero bytes).
 */
function utf16Of(head: Buffer): TextDecoder | undefined {
  if (head[0] === 0xff && head[1] === 0xfe) return new TextDecoder('utf-16le');
  if (head[0] === 0xfe && head[1] === 0xff) return new TextDecoder('utf-16be');
  const zero = (i: number) => i >= head.length || head[i] === 0;
  if (head.length >= 2 && head[0] === 0 && head[1] !== 0 && zero(2)) return new TextDecoder('utf-16be');
  if (head.length >= 2 && head[0] !== 0 && head[1] === 0 && zero(3)) return new TextDecoder('utf-16le');
  return undefined;
}

export interface Counting {
  counts(): Record<string, number>;
  wouldMask(): Record<string, number>;
}

/** Text bodies: detectors chunk by chunk, with the masker's carry-over for split values. */
export class TextMasking extends MaskingTransform implements Counting {
  constructor(context: Context) {
    super(new StreamMasker(context.maskText, context.shape));
  }
  counts() {
    return this.masker.counts;
  }
  wouldMask() {
    return this.masker.wouldMask;
  }
}

export function jsonMasker(context: Context): JsonStreamMasker {
  return new JsonStreamMasker(context.jsonPlan, context.jsonPaths, {
    maxToken: context.options.maxJsonToken ?? defaultMaxJsonToken,
    shape: context.shape,
  });
}

/**
 * JSON bodies: masked token by token as they arrive (JSON paths and detectors), with only the
 * current token and the path held; from the first byte that is not JSON, masked as text.
 */
export class JsonMasking extends Transform implements Counting {
  private readonly masker: JsonStreamMasker;

  constructor(context: Context) {
    super();
    this.masker = jsonMasker(context);
  }

  counts() {
    return this.masker.counts;
  }
  wouldMask() {
    return this.masker.wouldMask;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    sendMasked(this, () => this.masker.push(chunk), callback);
  }

  override _flush(callback: TransformCallback): void {
    sendMasked(this, () => this.masker.end(), callback);
  }
}

/**
 * Text of a type not labelled JSON (text/plain, text/json, NDJSON, no type) where JSON-path rules
 * apply: a target serves JSON under any type, and the text masker knows no paths. A body whose
 * first character (after blanks and a byte order mark) opens an object or array is masked as
 * JSON, which refuses what follows the first document; any other body as text.
 */
export class SniffedMasking extends Transform implements Counting {
  private readonly context: Context;
  private head = empty;
  private json: JsonStreamMasker | undefined;
  private text: StreamMasker | undefined;

  constructor(context: Context) {
    super();
    this.context = context;
  }

  counts() {
    return this.json?.counts ?? this.text?.counts ?? {};
  }
  wouldMask() {
    return this.json?.wouldMask ?? this.text?.wouldMask ?? {};
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (!this.json && !this.text) {
      this.head = Buffer.concat([this.head, chunk]);
      const first = firstSignificant(this.head);
      const opens = first !== -1 && (this.head[first] === 0x7b || this.head[first] === 0x5b);
      const wrapped = first === -1 || opens ? false : wrappedJson(this.head.subarray(first));
      if (first === -1 || wrapped === undefined) {
        callback();
        return;
      }
      if (wrapped) {
        // JSONP (cb({...})) or a guard before JSON ()]}', while(1);): JSON the JSON reader cannot
        // start on, nor the text masker apply paths to.
        if (this.context.jsonPaths.some((rule) => !rule.audit)) {
          callback(
            new JsonSyntaxError(
              'the body wraps JSON (JSONP or a guard), so its JSON-path rules cannot apply',
            ),
          );
          return;
        }
      }
      if (opens) this.json = jsonMasker(this.context);
      else this.text = new StreamMasker(this.context.maskText, this.context.shape);
      chunk = this.head;
      this.head = empty;
    }
    sendMasked(this, () => this.mask(chunk), callback);
  }

  override _flush(callback: TransformCallback): void {
    sendMasked(
      this,
      () => {
        if (!this.json && !this.text) {
          this.text = new StreamMasker(this.context.maskText, this.context.shape);
          return Buffer.concat([this.mask(this.head), this.rest()]);
        }
        return this.rest();
      },
      callback,
    );
  }

  private mask(chunk: Buffer): Buffer {
    return this.json ? this.json.push(chunk) : encodeText(this.text!.push(chunk));
  }

  private rest(): Buffer {
    return this.json ? this.json.end() : encodeText(this.text!.flush());
  }
}

/** Pushes what a masking step gives; an error it throws fails the stream. */
function sendMasked(stream: Transform, mask: () => Buffer, callback: TransformCallback): void {
  let out: Buffer;
  try {
    out = mask();
  } catch (error) {
    callback(error as Error);
    return;
  }
  if (out.length > 0) stream.push(out);
  callback();
}

/** The longest head read to tell wrapped JSON from text. */
const maxWrapper = 256;

/**
 * Whether a body that does not open with `{` or `[` wraps JSON: a JSONP callback (`cb({`, after
 * an optional comment as Google APIs write it) or a guard against script inclusion (`)]}'`,
 * `while(1);`, `for(;;);`); undefined while more bytes are needed to tell.
 */
function wrappedJson(head: Buffer): boolean | undefined {
  const text = head.subarray(0, maxWrapper).toString('latin1');
  if (/^(\)\]\}'|while\s*\(\s*1\s*\)\s*;|for\s*\(\s*;\s*;\s*\)\s*;)/.test(text)) return true;
  if (/^(\/\*\*\/\s*)?[A-Za-z_$][\w$.]*\s*\(\s*[{[]/.test(text)) return true;
  // A callback name or guard still arriving, and nothing yet that says it is not one.
  if (head.length < 32 && /^[\w$.()[\]}';\s/*]*$/.test(text)) return undefined;
  return false;
}

/** Where the first byte that is not JSON whitespace nor part of a UTF-8 byte order mark is; -1 if none yet. */
function firstSignificant(bytes: Buffer): number {
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    if (b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d) continue;
    if (i < 3 && (b === 0xef || b === 0xbb || b === 0xbf)) continue;
    return i;
  }
  return -1;
}
