// Masking of a JSON body: every string (and number) runs through the policies' detectors, and
// the values at the masking rules' jsonPaths are replaced whole with the rule's strategy.
// JSON paths are read by sidecar/policy/json-paths.ts. The enforcer
// masks bodies as they arrive (JsonStreamMasker); its tests hold it to a reference walk over a
// parsed document (sidecar/policy/json-mask.ts).
import { encodeText, hasKeptBytes, StreamMasker, type ValueShape } from '../core/stream-masker.ts';
import { type JsonPathRule, maskSelected, matchesJsonPath } from '../policy/json-paths.ts';
import { ByteOutput, copyBytes, defaultHashKey, type MaskingPlan, type Tally } from '../policy/masking.ts';

function add(into: Record<string, number>, key: string, n: number): void {
  into[key] = (into[key] ?? 0) + n;
}

function addAll(into: Record<string, number>, from: Record<string, number>): void {
  for (const key in from) add(into, key, from[key]!);
}

// ---------------------------------------------------------------------------------------
// Streaming: the masking, token by token, as the body arrives.

/** A JSON body that cannot be masked as JSON, so what follows is not passed on. */
export class JsonMaskingError extends Error {}

/** A JSON body went past a bound the masker keeps (a token's length, the nesting depth). */
export class JsonLimitError extends JsonMaskingError {}

/**
 * A body labelled JSON that is not, under enforced JSON-path rules: masked as text, the values
 * they select would pass (text masking knows no paths), so it is refused instead.
 */
export class JsonSyntaxError extends JsonMaskingError {}

export interface JsonStreamOptions {
  hashKey?: string | Uint8Array;
  /** Longest token held whole, in bytes (a string with its quotes, a number). */
  maxToken?: number;
  /** Deepest nesting of objects and arrays. */
  maxDepth?: number;
  /** What the text masker must never cut, once the body is not JSON (every detector by default). */
  shape?: ValueShape;
}

export const defaultMaxToken = 8 * 1024 * 1024;
/** How many keys without findings a masker keeps (a record's keys, a few nested objects' too). */
const cleanKeysKept = 32;
export const defaultMaxDepth = 256;

// What may come next outside a token.
const VALUE = 0; // a value: at the top, after ':' or after an array's ','
const VALUE_OR_CLOSE = 1; // after '['
const KEY = 2; // after an object's ','
const KEY_OR_CLOSE = 3; // after '{'
const COLON = 4;
const AFTER = 5; // after a value in an object or array: ',' or its close
const DONE = 6; // after the top-level value: whitespace only
// A token held across chunks.
const NONE = 0;
const STRING = 1;
const NUMBER = 2;
const LITERAL = 3;

const OBJECT = 0;
const ARRAY = 1;

const numberRe = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$/;
const empty = Buffer.alloc(0);
const noRules: JsonPathRule[] = [];
/** A token that is not JSON: the body is masked as text from its first byte. */
const invalid = Symbol('invalid');
type Masked = string | undefined | typeof invalid;

// What a string's bytes are to the tokenizer: one table read per byte.
const PLAIN = 0;
const QUOTE = 1;
const BACKSLASH = 2;
const CONTROL = 3;
const BEYOND_ASCII = 4;
/** '%' and '&': a percent-encoding or character reference may start there. */
const ENCODING = 5;
const stringBytes = new Uint8Array(256).fill(CONTROL, 0, 0x20).fill(BEYOND_ASCII, 0x80);
stringBytes[0x22] = QUOTE;
stringBytes[0x5c] = BACKSLASH;
stringBytes[0x25] = ENCODING;
stringBytes[0x26] = ENCODING;

const isNumberByte = (c: number) =>
  (c >= 0x30 && c <= 0x39) || c === 0x2e || c === 0x65 || c === 0x45 || c === 0x2b || c === 0x2d;
const isLetter = (c: number) => c >= 0x61 && c <= 0x7a;

/**
 * Masks a JSON body as it arrives, to the result of the tests' reference walk (maskJson in
 * sidecar/policy/json-mask.ts): values at the JSON-path rules' paths (or under a selected
 * object or array) are replaced whole, every other string and number goes through the
 * detectors, keys are left alone. Only the current token and the path are held.
 * What is not masked is passed on byte for byte (whitespace, structure, keys, unchanged
 * values); a masked value is written as a JSON string. From the first byte that is not JSON (a
 * syntax error, a second top-level value, a string cut off by the end of the body) the rest is
 * masked as text, as an unparsable body is (or, under enforced JSON-path rules, JsonSyntaxError
 * is thrown: text masking cannot apply them). A token longer than maxToken, or nesting deeper than
 * maxDepth, throws JsonLimitError: what follows could be neither held nor placed on a path, and
 * is not passed on unchecked.
 */
export class JsonStreamMasker {
  /** Masked values by rule, in tokens (the text masker counts what follows the JSON). */
  private readonly tokenCounts: Record<string, number> = {};
  private readonly tokenWouldMask: Record<string, number> = {};
  /** The token counts, as the byte path adds to them. */
  private readonly tally: Tally = { masked: this.tokenCounts, wouldMask: this.tokenWouldMask };
  /** A value masked as bytes, before it is written as a JSON string. */
  private readonly masked = new ByteOutput();
  /** Keys in which the detectors found nothing, as bytes (see maskAsciiKey). */
  private readonly cleanKeys: Buffer[] = [];
  /** What one key's masking counted. */
  private readonly keyTally: Tally = {};
  private readonly plan: MaskingPlan;
  private readonly paths: JsonPathRule[];
  private readonly hashKey: string | Uint8Array;
  private readonly maxToken: number;
  private readonly maxDepth: number;
  private readonly shape: ValueShape | undefined;
  private state = VALUE;
  /** OBJECT or ARRAY per open container. */
  private readonly kinds: number[] = [];
  /** The key or index in each open container (kept only with JSON-path rules). */
  private readonly path: (string | number)[] = [];
  /** The rules selecting each open container (kept only with JSON-path rules). */
  private readonly selected: JsonPathRule[][] = [];
  /** A token cut by the end of a chunk: its kind and bytes so far. */
  private token = NONE;
  private key = false;
  private parts: Buffer[] = [];
  private length = 0;
  private escaped = false;
  private escapes = false;
  /** Set once the body is not JSON: the rest is masked as text. */
  private text: StreamMasker | undefined;
  /** The output of the current chunk, once it differs from the input. */
  private out = empty;
  private written = 0;
  /** The current chunk as latin1 text, made at its first ASCII token: tokens are slices of it. */
  private latin1: string | undefined;
  /** The current chunk's length: what its output is first sized by. */
  private chunkLength = 0;

  constructor(plan: MaskingPlan, paths: JsonPathRule[], options: JsonStreamOptions = {}) {
    this.plan = plan;
    this.paths = paths;
    this.hashKey = options.hashKey ?? defaultHashKey;
    this.maxToken = options.maxToken ?? defaultMaxToken;
    this.maxDepth = options.maxDepth ?? defaultMaxDepth;
    this.shape = options.shape;
  }

  /** Masked values by masking rule and detector or path. */
  get counts(): Record<string, number> {
    if (!this.text) return this.tokenCounts;
    const all = { ...this.tokenCounts };
    addAll(all, this.text.counts);
    return all;
  }

  /** What audit-mode policies would have masked. */
  get wouldMask(): Record<string, number> {
    if (!this.text) return this.tokenWouldMask;
    const all = { ...this.tokenWouldMask };
    addAll(all, this.text.wouldMask);
    return all;
  }

  /** The body is masked as text (it stopped being JSON). */
  get asText(): boolean {
    return this.text !== undefined;
  }

  /** Masks a chunk; returns what can be sent now (the chunk itself when nothing changed). */
  push(chunk: Buffer): Buffer {
    if (this.text) return Buffer.from(this.text.push(chunk));
    this.out = empty;
    this.written = 0;
    this.latin1 = undefined;
    this.chunkLength = chunk.length;
    const n = chunk.length;
    /** Start of the bytes of this chunk not yet sent. */
    let copy = 0;
    let i = 0;
    if (this.token !== NONE) {
      // The token cut by the last chunk.
      const end = this.token === STRING ? this.scanString(chunk) : this.scanBare(chunk);
      if (end === -2) return this.fallback(chunk, 0, 0);
      if (end === -1) return this.hold(chunk, 0, 0);
      this.grow(end);
      const bytes = Buffer.concat([...this.parts, chunk.subarray(0, end)]);
      const masked = this.completeHeld(bytes);
      if (masked === invalid) return this.fallback(chunk, 0, 0);
      if (masked === undefined) for (const part of this.parts) this.emit(part, 0, part.length);
      else {
        this.emitText(masked);
        copy = end;
      }
      this.parts = [];
      this.length = 0;
      this.token = NONE;
      i = end;
    }
    let state = this.state;
    const kinds = this.kinds;
    const paths = this.paths.length > 0;
    const values = paths || this.plan.hasScanners;
    const maxToken = this.maxToken;
    const minLength = this.plan.minLength;
    // ASCII strings without escapes are masked as bytes where no path rule applies (the plan's
    // redactions then need no escaping in JSON).
    const bytePath = !paths && this.plan.hasScanners && this.plan.plainLabels;
    while (i < n) {
      const c = chunk[i]!;
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) {
        i++;
        continue;
      }
      if (c === 0x22) {
        const key = state === KEY || state === KEY_OR_CLOSE;
        if (!key && state !== VALUE && state !== VALUE_OR_CLOSE) break;
        let j = i + 1;
        let escapes = false;
        let ascii = true;
        let encoded = false;
        for (; j < n; j++) {
          const kind = stringBytes[chunk[j]!]!;
          if (kind === PLAIN) continue;
          if (kind === QUOTE || kind === CONTROL) break;
          if (kind === BACKSLASH) {
            escapes = true;
            j++;
          } else if (kind === BEYOND_ASCII) ascii = false;
          else encoded = true;
        }
        if (j >= n) {
          // Cut by the end of the chunk (j > n: right after a backslash).
          this.state = state;
          this.token = STRING;
          this.key = key;
          this.escapes = escapes;
          this.escaped = j > n;
          return this.hold(chunk, copy, i);
        }
        if (chunk[j] !== 0x22) break;
        const end = j + 1;
        if (end - i > maxToken) this.tooLong();
        const length = end - i - 2;
        if (bytePath && ascii && !escapes && !encoded) {
          // Keys carry data too (a map by e-mail or card number): the detectors read them. A
          // string with a percent-encoding or character reference is read below, where the
          // plan reads those decoded.
          if (
            length >= minLength &&
            (key ? this.maskAsciiKey(chunk, i + 1, end - 1) : this.maskAscii(chunk, i + 1, end - 1))
          ) {
            this.emit(chunk, copy, i);
            this.emitMasked();
            copy = end;
          }
          state = key ? COLON : kinds.length === 0 ? DONE : AFTER;
        } else if (key) {
          // Keys carry data too (a map by e-mail or card number): the detectors read them where
          // they may find something.
          const scan =
            this.plan.hasScanners &&
            (escapes ||
              (end - i - 2 >= minLength && (!ascii || encoded || this.plan.mayFind(chunk, i + 1, end - 1))));
          if (paths || escapes || scan) {
            // A key stays on the path while its value is read: a long one is decoded on its own
            // rather than sliced from the chunk's text, which it would keep alive (a short
            // slice is a copy).
            const name =
              ascii && end - i <= 14
                ? parseString(this.ascii(chunk, i, end), escapes)
                : decode(chunk, i, end, escapes);
            if (name === invalid) break;
            if (paths) this.path[this.path.length - 1] = name;
            const masked = scan ? this.maskKey(name) : undefined;
            if (masked !== undefined) {
              this.emit(chunk, copy, i);
              this.emitText(masked);
              copy = end;
            }
          }
          state = COLON;
        } else if (
          escapes ||
          paths ||
          (end - i - 2 >= minLength && (!ascii || encoded || this.plan.mayFind(chunk, i + 1, end - 1)))
        ) {
          // A string in which nothing can be found (too short, or told so by its bytes), with no
          // path rule to apply, is passed on as it came without being made a string (escapes
          // are still read: a bad one is not JSON).
          const value = ascii
            ? parseString(this.ascii(chunk, i, end), escapes)
            : decode(chunk, i, end, escapes);
          if (value === invalid) break;
          const masked = values ? this.maskString(value) : undefined;
          if (masked !== undefined) {
            this.emit(chunk, copy, i);
            this.emitText(masked);
            copy = end;
          }
          state = kinds.length === 0 ? DONE : AFTER;
        } else state = kinds.length === 0 ? DONE : AFTER;
        i = end;
        continue;
      }
      if (state === VALUE || state === VALUE_OR_CLOSE) {
        if (c === 0x2d || (c >= 0x30 && c <= 0x39) || c === 0x74 || c === 0x66 || c === 0x6e) {
          // A number or a literal (true, false, null).
          const number = c <= 0x39;
          let j = i + 1;
          while (j < n && (number ? isNumberByte(chunk[j]!) : isLetter(chunk[j]!))) j++;
          if (j === n) {
            this.state = state;
            this.token = number ? NUMBER : LITERAL;
            this.key = false;
            return this.hold(chunk, copy, i);
          }
          if (j - i > maxToken) this.tooLong();
          if (number && bytePath && plainNumber(chunk, i, j)) {
            // A number the detectors read as it is written: masked as bytes.
            if (j - i >= minLength && this.maskAscii(chunk, i, j)) {
              this.emit(chunk, copy, i);
              this.emitMasked();
              copy = j;
            }
            state = kinds.length === 0 ? DONE : AFTER;
            i = j;
            continue;
          }
          const raw = this.ascii(chunk, i, j);
          const masked = number ? this.maskNumber(raw) : this.maskLiteral(raw);
          if (masked === invalid) break;
          if (masked !== undefined) {
            this.emit(chunk, copy, i);
            this.emitText(masked);
            copy = j;
          }
          state = kinds.length === 0 ? DONE : AFTER;
          i = j;
          continue;
        }
        if (c === 0x7b || c === 0x5b) {
          state = this.open(c === 0x7b ? OBJECT : ARRAY);
          i++;
          continue;
        }
        if (c === 0x5d && state === VALUE_OR_CLOSE) {
          state = this.close();
          i++;
          continue;
        }
        break;
      }
      if (state === AFTER) {
        const kind = kinds[kinds.length - 1];
        if (c === 0x2c) {
          if (kind === OBJECT) state = KEY;
          else {
            state = VALUE;
            if (paths) {
              const top = this.path.length - 1;
              this.path[top] = (this.path[top] as number) + 1;
            }
          }
        } else if ((c === 0x5d && kind === ARRAY) || (c === 0x7d && kind === OBJECT)) state = this.close();
        else break;
        i++;
        continue;
      }
      if (state === COLON && c === 0x3a) state = VALUE;
      else if (state === KEY_OR_CLOSE && c === 0x7d) state = this.close();
      else break;
      i++;
    }
    this.state = state;
    if (i < n) return this.fallback(chunk, copy, i);
    return this.finish(chunk, copy, n);
  }

  /** Ends the body; returns what is left to send. */
  end(): Buffer {
    if (this.text) return Buffer.from(this.text.flush());
    if (this.token === NONE) return empty;
    this.out = empty;
    this.written = 0;
    const bytes = Buffer.concat(this.parts);
    // A number or literal may end with the body; a string may not.
    const masked = this.token === STRING ? invalid : this.completeHeld(bytes);
    if (masked === invalid) {
      this.fallback(empty, 0, 0);
      this.emitText(this.text!.flush());
      return this.out.subarray(0, this.written);
    }
    this.parts = [];
    this.token = NONE;
    return masked === undefined ? bytes : Buffer.from(masked);
  }

  /** The ASCII text chunk[start, end) masked as bytes into `masked`: false when nothing changed. */
  private maskAscii(chunk: Buffer, start: number, end: number): boolean {
    this.masked.length = 0;
    return this.plan.maskAscii(chunk, start, end, this.tally, this.masked);
  }

  /**
   * maskAscii for a key. An object's keys repeat in every record of an array: a key in which
   * the detectors found nothing (no change, nothing counted) is kept, and the same bytes are
   * not read again.
   */
  private maskAsciiKey(chunk: Buffer, start: number, end: number): boolean {
    const length = end - start;
    for (const clean of this.cleanKeys) {
      if (clean.length !== length) continue;
      let k = 0;
      while (k < length && clean[k] === chunk[start + k]) k++;
      if (k === length) return false;
    }
    const found = this.keyTally;
    found.masked = undefined;
    found.wouldMask = undefined;
    this.masked.length = 0;
    const changed = this.plan.maskAscii(chunk, start, end, found, this.masked);
    if (found.masked) addAll(this.tokenCounts, found.masked);
    if (found.wouldMask) addAll(this.tokenWouldMask, found.wouldMask);
    if (!changed && !found.masked && !found.wouldMask && this.cleanKeys.length < cleanKeysKept)
      this.cleanKeys.push(Buffer.from(chunk.subarray(start, end)));
    return changed;
  }

  /** `masked` as a JSON string: ASCII that needs no escaping (plainLabels). */
  private emitMasked(): void {
    const masked = this.masked;
    this.reserve(masked.length + 2);
    const out = this.out;
    out[this.written++] = 0x22;
    this.written += copyBytes(masked.bytes, 0, masked.length, out, this.written);
    out[this.written++] = 0x22;
  }

  /** Bytes [start, end) of the chunk, all ASCII, as text. */
  private ascii(chunk: Buffer, start: number, end: number): string {
    if (this.latin1 === undefined) this.latin1 = chunk.toString('latin1');
    return this.latin1.slice(start, end);
  }

  private tooLong(): never {
    throw new JsonLimitError(`a JSON value or key is longer than ${this.maxToken} bytes`);
  }

  private grow(bytes: number): void {
    this.length += bytes;
    if (this.length > this.maxToken) this.tooLong();
  }

  /** Holds the token starting at `from` until the next chunk; sends what is before it. */
  private hold(chunk: Buffer, copy: number, from: number): Buffer {
    this.grow(chunk.length - from);
    if (from < chunk.length) this.parts.push(chunk.subarray(from));
    return this.finish(chunk, copy, from);
  }

  /** This chunk's output: the chunk (or a part of it) when nothing in it was masked. */
  private finish(chunk: Buffer, copy: number, to: number): Buffer {
    if (this.written === 0) return copy === 0 && to === chunk.length ? chunk : chunk.subarray(copy, to);
    this.emit(chunk, copy, to);
    return this.out.subarray(0, this.written);
  }

  private reserve(bytes: number): void {
    if (this.written + bytes <= this.out.length) return;
    // About the chunk's size at first: a small body's output then comes from Node's shared pool
    // instead of a buffer of its own.
    const next = Buffer.allocUnsafe(
      Math.max(this.out.length * 2, this.written + bytes, this.chunkLength + 256),
    );
    this.out.copy(next, 0, 0, this.written);
    this.out = next;
  }

  private emit(from: Buffer, start: number, end: number): void {
    if (end <= start) return;
    this.reserve(end - start);
    this.written += copyBytes(from, start, end, this.out, this.written);
  }

  private emitText(text: string): void {
    if (hasKeptBytes(text)) {
      const bytes = encodeText(text);
      this.reserve(bytes.length);
      this.written += bytes.copy(this.out, this.written);
      return;
    }
    // Written straight into the output: no buffer of its own per masked value.
    this.reserve(Buffer.byteLength(text));
    this.written += this.out.write(text, this.written);
  }

  /** The rest of a string cut by the last chunk: its end (after the quote), -1 past the chunk, -2 when invalid. */
  private scanString(chunk: Buffer): number {
    let escaped = this.escaped;
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk[i]!;
      if (escaped) escaped = false;
      else if (c === 0x22) return i + 1;
      else if (c === 0x5c) {
        escaped = true;
        this.escapes = true;
      } else if (c < 0x20) return -2;
    }
    this.escaped = escaped;
    return -1;
  }

  /** The rest of a number or literal cut by the last chunk: its end, -1 past the chunk. */
  private scanBare(chunk: Buffer): number {
    const number = this.token === NUMBER;
    for (let i = 0; i < chunk.length; i++) {
      if (!(number ? isNumberByte(chunk[i]!) : isLetter(chunk[i]!))) return i;
    }
    return -1;
  }

  /** A token held across chunks, whole. */
  private completeHeld(bytes: Buffer): Masked {
    let masked: Masked;
    if (this.token === STRING) {
      const text = decode(bytes, 0, bytes.length, this.escapes);
      if (text === invalid) return invalid;
      if (this.key) {
        if (this.paths.length > 0) this.path[this.path.length - 1] = text;
        this.state = COLON;
        return this.plan.hasScanners ? this.maskKey(text) : undefined;
      }
      masked = this.paths.length > 0 || this.plan.hasScanners ? this.maskString(text) : undefined;
    } else {
      const raw = bytes.toString('latin1');
      masked = this.token === NUMBER ? this.maskNumber(raw) : this.maskLiteral(raw);
      if (masked === invalid) return invalid;
    }
    this.state = this.kinds.length === 0 ? DONE : AFTER;
    return masked;
  }

  private open(kind: number): number {
    if (this.kinds.length >= this.maxDepth)
      throw new JsonLimitError(`JSON nested deeper than ${this.maxDepth} levels`);
    if (this.paths.length > 0) {
      this.selected.push(this.rulesHere());
      this.path.push(kind === ARRAY ? 0 : '');
    }
    this.kinds.push(kind);
    return kind === ARRAY ? VALUE_OR_CLOSE : KEY_OR_CLOSE;
  }

  private close(): number {
    this.kinds.pop();
    if (this.paths.length > 0) {
      this.path.pop();
      this.selected.pop();
    }
    return this.kinds.length === 0 ? DONE : AFTER;
  }

  /** The rules selecting the value at the current path (or an object or array it is in). */
  private rulesHere(): JsonPathRule[] {
    const inherited = this.selected.length === 0 ? noRules : this.selected[this.selected.length - 1]!;
    let hits = inherited;
    for (const rule of this.paths) {
      if ((inherited.length > 0 && inherited.includes(rule)) || !matchesJsonPath(rule.steps, this.path))
        continue;
      if (hits === inherited) hits = [...inherited];
      hits.push(rule);
    }
    return hits;
  }

  /** A value selected by JSON-path rules: its replacement, or undefined. */
  private selectedValue(value: string | boolean | null): string | undefined {
    if (this.paths.length === 0) return undefined;
    const hits = this.rulesHere();
    if (hits.length === 0) return undefined;
    const masked = maskSelected(hits, value, this.tokenCounts, this.tokenWouldMask, this.hashKey);
    return masked === undefined ? undefined : JSON.stringify(masked);
  }

  /** A key, read by the detectors (JSON paths select values, not keys): its JSON text, or undefined. */
  private maskKey(name: string): string | undefined {
    const result = this.scan(name);
    return result === name ? undefined : JSON.stringify(result);
  }

  /** A string value: the JSON text to send instead, or undefined to send it as it came. */
  private maskString(value: string): string | undefined {
    const selected = this.selectedValue(value);
    if (selected !== undefined || !this.plan.hasScanners) return selected;
    const result = this.scan(value);
    return result === value ? undefined : JSON.stringify(result);
  }

  private maskNumber(raw: string): Masked {
    if (!numberRe.test(raw)) return invalid;
    // maskJson sees the number as parsed: String(Number(raw)), which is raw in the common forms.
    const canonical = plainText(raw) ? raw : String(Number(raw));
    const selected = this.selectedValue(canonical);
    if (selected !== undefined || !this.plan.hasScanners) return selected;
    if (raw === canonical) {
      if (raw.length < this.plan.minLength) return undefined;
      const result = this.scan(raw);
      return result === raw ? undefined : JSON.stringify(result);
    }
    // Read differently as parsed (digits past a double's precision, an exponent): the agent may
    // read either, so the detectors see both; the number as parsed first, as maskJson does.
    const parsed = this.plan.maskText(canonical);
    const sent = parsed.value === canonical ? this.plan.maskText(raw) : undefined;
    const result = sent === undefined || sent.value === raw ? parsed : sent;
    addAll(this.tokenCounts, result.counts);
    addAll(this.tokenWouldMask, result.wouldMask);
    return result === parsed && parsed.value === canonical ? undefined : JSON.stringify(result.value);
  }

  private maskLiteral(raw: string): Masked {
    if (raw !== 'true' && raw !== 'false' && raw !== 'null') return invalid;
    return this.selectedValue(raw === 'null' ? null : raw === 'true');
  }

  private scan(text: string): string {
    const result = this.plan.maskText(text);
    addAll(this.tokenCounts, result.counts);
    addAll(this.tokenWouldMask, result.wouldMask);
    return result.value;
  }

  /**
   * Not JSON from `from` on (with the token held before it): masked as text from there, unless
   * enforced JSON-path rules would then go unapplied.
   */
  private fallback(chunk: Buffer, copy: number, from: number): Buffer {
    if (this.paths.some((rule) => !rule.audit))
      throw new JsonSyntaxError('the body is not JSON, so its JSON-path masking rules cannot apply');
    this.emit(chunk, copy, from);
    this.text = new StreamMasker((text) => this.plan.maskText(text), this.shape);
    for (const part of this.parts) this.emitText(this.text.push(part));
    this.emitText(this.text.push(chunk.subarray(from)));
    this.parts = [];
    this.token = NONE;
    return this.out.subarray(0, this.written);
  }
}

/** The string token at [start, end) of `bytes` (quotes included), or invalid. */
function decode(bytes: Buffer, start: number, end: number, escapes: boolean): string | typeof invalid {
  if (!escapes) return bytes.toString('utf8', start + 1, end - 1);
  return parseString(bytes.toString('utf8', start, end), true);
}

/** A string token's value (the token with its quotes), or invalid. */
function parseString(token: string, escapes: boolean): string | typeof invalid {
  if (!escapes) return token.slice(1, -1);
  try {
    return JSON.parse(token) as string;
  } catch {
    return invalid;
  }
}

/**
 * Whether bytes[start, end), a run of number bytes, is a valid JSON number that plainNumber
 * accepts: its text is what maskJson reads, so the detectors read the bytes as they are.
 */
function plainNumber(bytes: Buffer, start: number, end: number): boolean {
  // -?(0|[1-9][0-9]*)(\.[0-9]+)? with at most 15 digits, not -0, no trailing zero in a
  // fraction, and not 0.000000… (written in exponent form).
  let i = start;
  if (bytes[i] === 0x2d) i++;
  const intStart = i;
  while (i < end && bytes[i]! >= 0x30 && bytes[i]! <= 0x39) i++;
  const intDigits = i - intStart;
  if (intDigits === 0 || (intDigits > 1 && bytes[intStart] === 0x30)) return false;
  if (i === end) return intDigits <= 15 && !(intDigits === 1 && bytes[intStart] === 0x30 && intStart > start);
  if (bytes[i] !== 0x2e) return false;
  const point = i++;
  while (i < end && bytes[i]! >= 0x30 && bytes[i]! <= 0x39) i++;
  const fraction = i - point - 1;
  if (i !== end || fraction === 0 || intDigits + fraction > 15 || bytes[end - 1] === 0x30) return false;
  if (intDigits > 1 || bytes[intStart] !== 0x30) return true;
  let zeros = 0;
  while (bytes[point + 1 + zeros] === 0x30) zeros++;
  return zeros < 6;
}

/**
 * Whether String(Number(raw)) is raw, for a valid JSON number: true for the common forms (up to
 * 15 digits, no exponent, no trailing zero in a fraction, not below 1e-6, not -0); false means
 * "not known", and the caller converts.
 */
function plainText(raw: string): boolean {
  const sign = raw.charCodeAt(0) === 0x2d ? 1 : 0;
  let digits = 0;
  let point = -1;
  for (let i = sign; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c === 0x2e) point = i;
    else if (c >= 0x30 && c <= 0x39) digits++;
    else return false;
  }
  if (digits > 15) return false;
  if (point < 0) return raw !== '-0';
  if (raw.charCodeAt(raw.length - 1) === 0x30) return false;
  // 0.000001 is written so, 0.0000001 as 1e-7.
  if (point !== sign + 1 || raw.charCodeAt(sign) !== 0x30) return true;
  let zeros = 0;
  while (raw.charCodeAt(point + 1 + zeros) === 0x30) zeros++;
  return zeros < 6;
}
