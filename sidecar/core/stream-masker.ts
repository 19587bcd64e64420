// Masking of a byte stream of text (command output, terminal output, a text HTTP body) by
// the policies' detectors and patterns. Detectors work on whole values, and TCP and the remote
// program cut output anywhere, so the masker holds back the tail that could still be the start
// of a value, and releases everything before it. What is held is decided by the shape of the
// values, never by time: a pause releases nothing that could be part of a value, and the tail
// is released as soon as it provably cannot be (a prompt ending in "$ " is not held). Each
// detector's shape says which characters a value is made of, which may start it and how long
// it can be; a pattern's is read from its regular expression. A tail longer than the carry
// bound (an unbounded token, or a pattern without a bound) cannot be masked whole: the masker
// throws rather than cut inside it. UTF-8 sequences split across chunks are reassembled; bytes
// that are not UTF-8 travel as lone surrogates U+DC80-U+DCFF (no detector reads them) and are
// written back as the bytes they were, so text with nothing to mask leaves byte for byte.

import { Transform, type TransformCallback } from 'node:stream';
import type { BundlePolicy } from '../../api/bundle.ts';
import { type Detector, detectors } from '../../api/names.ts';
import { detectorView } from '../policy/detectors.ts';

export interface MaskResult {
  value: string;
  /** Masked values by masking rule and detector. */
  counts: Record<string, number>;
  /** What audit-mode policies would have masked. */
  wouldMask?: Record<string, number>;
}

export type MaskText = (text: string) => MaskResult;

/** Longest tail held back, in characters: the longest value the masker can mask whole. */
export const maxCarry = 64 * 1024;

/** How much released text the next text is masked after (a bearer token's scheme, a lookbehind). */
const contextLength = 32;

function minus(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, n] of Object.entries(a)) if (n - (b[k] ?? 0) > 0) out[k] = n - (b[k] ?? 0);
  return out;
}

/** How far back a value that a cut would split is looked for, per step. */
const straddleWindow = 4096;

/**
 * Where a value that may not have ended yet could start in `text`: the earliest such index, or
 * text.length when every value in it is complete.
 */
export type OpenValue = (text: string) => number;

/** The values a masker must never cut: one OpenValue per detector or pattern. */
export type ValueShape = OpenValue[];

const code = (text: string, i: number) => text.charCodeAt(i);
const isDigit = (c: number) => c >= 48 && c <= 57;
const isUpper = (c: number) => c >= 65 && c <= 90;
const isLower = (c: number) => c >= 97 && c <= 122;
const isAlnum = (c: number) => isDigit(c) || isUpper(c) || isLower(c);
const oneOf = (chars: string) => (c: number) => chars.includes(String.fromCharCode(c));

/** Start of the run of `inValue` characters that ends `text`, at most `longest` back. */
function runStart(text: string, inValue: (c: number) => boolean, longest: number): number {
  let i = text.length;
  while (i > 0 && text.length - i < longest && inValue(code(text, i - 1))) i--;
  return i;
}

/**
 * A value of characters `inValue`, starting with one of `starts` but not right after one of
 * `notAfter` (the detector's lookbehind), at most `longest` long.
 */
function bounded(
  inValue: (c: number) => boolean,
  starts: (c: number) => boolean,
  longest: number,
  notAfter: (c: number) => boolean = () => false,
): OpenValue {
  return (text) => {
    // A value still open at the end started less than `longest` characters before it. What
    // precedes the text is not known here: a value may start at its first character.
    for (let i = runStart(text, inValue, longest - 1); i < text.length; i++)
      if (starts(code(text, i)) && (i === 0 || !notAfter(code(text, i - 1)))) return i;
    return text.length;
  };
}

const emailChar = (c: number) => isAlnum(c) || oneOf('._%+-@')(c);
const localChar = (c: number) => isAlnum(c) || oneOf('._%+-')(c);
const base64url = (c: number) => isAlnum(c) || c === 45 || c === 95;
const tokenChar = (c: number) => isAlnum(c) || oneOf('-._~+/=')(c);

/** "Bearer" in any case, as the detector reads it, and each of its beginnings. */
const bearerWord = /^b(?:e(?:a(?:r(?:e(?:r)?)?)?)?)?$/i;
const fullBearer = /^bearer$/i;

const detectorShapes: Record<Detector, OpenValue> = {
  // 19 digits with single spaces or dashes between them.
  'credit-card': bounded(oneOf('0123456789 -'), isDigit, 37, isDigit),
  // 64 characters of local part, '@', 253 of domain.
  email: bounded(emailChar, localChar, 318),
  'us-ssn': bounded(oneOf('0123456789-'), isDigit, 11, (c) => isDigit(c) || c === 45),
  iban: bounded((c) => isUpper(c) || isDigit(c) || c === 32, isUpper, 64, isAlnum),
  phone: bounded(oneOf('0123456789 .-()+'), oneOf('0123456789(+'), 32, (c) => isAlnum(c) || c === 43),
  ipv4: bounded(oneOf('0123456789.'), isDigit, 15, (c) => isDigit(c) || c === 46),
  ipv6: bounded(
    (c) => isDigit(c) || oneOf('abcdefABCDEF:.')(c),
    () => true,
    45,
    (c) => isAlnum(c) || c === 58 || c === 46,
  ),
  'aws-access-key': bounded(
    (c) => isUpper(c) || isDigit(c),
    (c) => c === 65,
    20,
    isAlnum,
  ),
  // Unbounded: "eyJ" and base64url segments separated by dots.
  jwt(text) {
    const start = runStart(text, (c) => base64url(c) || c === 46, Number.POSITIVE_INFINITY);
    for (let i = start; i < text.length; i++) {
      const rest = text.length - i;
      if (rest < 3 ? 'eyJ'.startsWith(text.slice(i)) : text.startsWith('eyJ', i)) {
        // A JWT header is a small JSON object: a run with no dot for 8 KiB is base64, not a JWT.
        const dot = text.indexOf('.', i);
        if ((dot >= 0 && dot - i <= 8192) || (dot < 0 && rest <= 8192)) return i;
      }
    }
    return text.length;
  },
  // Unbounded: "Bearer", blanks, a token; or the word itself, whole or begun, at the end.
  'bearer-token'(text) {
    const token = runStart(text, tokenChar, Number.POSITIVE_INFINITY);
    let word = token;
    while (word > 0 && (code(text, word - 1) === 32 || code(text, word - 1) === 9)) word--;
    const wordStart = word - 6;
    if (
      word < token &&
      wordStart >= 0 &&
      fullBearer.test(text.slice(wordStart, word)) &&
      !isAlnum(code(text, wordStart - 1))
    )
      return wordStart;
    for (let k = Math.min(6, text.length); k > 0; k--) {
      const start = text.length - k;
      if (bearerWord.test(text.slice(start)) && !isAlnum(code(text, start - 1))) return start;
    }
    return text.length;
  },
  // Spans lines: from a BEGIN line of a private key to its END line.
  'private-key'(text) {
    for (let at = text.indexOf('-----BEGIN'); at >= 0; at = text.indexOf('-----BEGIN', at + 1)) {
      const header = /-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY-----/y;
      header.lastIndex = at;
      if (header.test(text)) {
        if (!/-----END [A-Z0-9 ]{0,40}PRIVATE KEY-----/.test(text.slice(header.lastIndex))) return at;
      } else if (text.length - at < 62 && /^-----BEGIN[A-Z0-9 -]*$/.test(text.slice(at))) return at;
    }
    for (let k = Math.min(10, text.length); k > 0; k--)
      if (text.endsWith('-----BEGIN'.slice(0, k))) return text.length - k;
    return text.length;
  },
};

/**
 * A user pattern's shape, read conservatively from its RE2 source: the characters it can match
 * (every character for `.`, negated classes and \D \W \S \p), and its longest match (unbounded
 * with * + or {n,}; otherwise at most the source's length times every repetition bound).
 */
export function patternShape(source: string): OpenValue {
  const chars = new Set<number>();
  let any = false;
  let anyLine = false;
  const fold = /\(\?[a-z]*i/.test(source);
  const add = (c: number) => {
    chars.add(c);
    if (fold && (isUpper(c) || isLower(c))) chars.add(c ^ 32);
  };
  const addRange = (from: number, to: number) => {
    for (let c = from; c <= to && c - from < 0x10000; c++) add(c);
  };
  const classEscape = (c: string) => {
    if (c === 'd') addRange(48, 57);
    else if (c === 'w') {
      addRange(48, 57);
      addRange(65, 90);
      addRange(97, 122);
      add(95);
    } else if (c === 's') for (const w of ' \t\n\r\f\v') add(code(w, 0));
    else if (c === 'n') add(10);
    else if (c === 't') add(9);
    else if (c === 'r') add(13);
    else if ('bBAzZ'.includes(c))
      return; // assertions: no character
    else if (/[A-Za-z0-9]/.test(c)) any = true;
    else add(code(c, 0));
  };
  let longest = source.length;
  for (let i = 0; i < source.length; i++) {
    const c = source[i]!;
    if (c === '\\') classEscape(source[++i] ?? '');
    else if (c === '.') anyLine = true;
    else if (c === '*' || c === '+') longest = Number.POSITIVE_INFINITY;
    else if (c === '{') {
      const repeat = /^\{(\d+)(,(\d*))?\}/.exec(source.slice(i));
      if (repeat) {
        longest *=
          repeat[2] === undefined
            ? Number(repeat[1])
            : repeat[3]
              ? Number(repeat[3])
              : Number.POSITIVE_INFINITY;
        i += repeat[0].length - 1;
      } else add(123);
    } else if (c === '[') {
      const negated = source[i + 1] === '^';
      if (negated) any = true;
      let j = negated ? i + 2 : i + 1;
      for (let first = true; j < source.length && (source[j] !== ']' || first); j++, first = false) {
        const ch = source[j]!;
        if (ch === '\\') {
          classEscape(source[++j] ?? '');
          continue;
        }
        if (ch === '[' && source[j + 1] === ':') any = true;
        if (source[j + 1] === '-' && source[j + 2] !== undefined && source[j + 2] !== ']') {
          addRange(code(ch, 0), code(source, j + 2));
          j += 2;
        } else add(code(ch, 0));
      }
      i = j;
    } else if (!'()|?^$'.includes(c)) add(code(c, 0));
  }
  const dotAll = /\(\?[a-z]*s/.test(source);
  const inValue = any
    ? () => true
    : anyLine
      ? (c: number) => c !== 10 || dotAll
      : (c: number) => chars.has(c);
  return bounded(inValue, inValue, Math.max(1, Math.min(longest, Number.MAX_SAFE_INTEGER)));
}

/** The shape of every value the policies' masking rules find in free text. */
export function valueShape(policies: BundlePolicy[]): ValueShape {
  const found = new Set<Detector>();
  const patterns = new Set<string>();
  for (const policy of policies)
    for (const rule of policy.masking) {
      for (const detector of rule.detectors ?? []) found.add(detector);
      for (const pattern of rule.patterns ?? []) patterns.add(pattern.regex);
    }
  return [...[...found].map((d) => detectorShapes[d]), ...[...patterns].map(patternShape)];
}

/** Every built-in detector: the shape for a caller that does not say which ones it masks. */
export const detectorsShape: ValueShape = detectors.map((d) => detectorShapes[d]);

export class StreamMasker {
  readonly counts: Record<string, number> = {};
  readonly wouldMask: Record<string, number> = {};
  private readonly mask: MaskText;
  private readonly shape: ValueShape;
  private readonly carryLimit: number;
  private readonly decoder = new Utf8Decoder();
  private carry = '';
  /** The last characters released: the context the next text is read in. */
  private released = '';

  constructor(mask: MaskText, shape: ValueShape = detectorsShape, carryLimit = maxCarry) {
    this.mask = mask;
    this.shape = shape;
    this.carryLimit = carryLimit;
  }

  /** Masks what can be masked now; returns the text to send (possibly empty). */
  push(chunk: Buffer): string {
    const text = this.carry + this.decoder.write(chunk, false);
    let cut = text.length;
    for (const open of this.shape) cut = Math.min(cut, open(text));
    // Detectors read a value with its disguises undone (other scripts' digits, invisible
    // characters between them): so do the shapes, and the cut maps back to the text.
    const view = detectorView(text);
    if (view) for (const open of this.shape) cut = Math.min(cut, view.at[open(view.text)]!);
    cut = this.outside(text, cut);
    // Never between the halves of a surrogate pair.
    if (cut > 0 && cut < text.length && (code(text, cut) & 0xfc00) === 0xdc00) cut--;
    if (text.length - cut > this.carryLimit)
      throw new Error(
        `a value longer than ${this.carryLimit} characters cannot be masked whole (the output was cut off)`,
      );
    this.carry = text.slice(cut);
    return this.apply(text.slice(0, cut));
  }

  /**
   * Moves a cut back until it is outside every value already complete in `text` (a phone number
   * that ends where a word begins, a key block before its last line): the text on each side of
   * it, masked apart, must read as it does masked together. Probes do not count.
   */
  private outside(text: string, cut: number): number {
    for (let tries = 0; cut > 0 && cut < text.length && tries < 16; tries++) {
      const from = Math.max(0, cut - straddleWindow);
      const before = from === 0 ? this.released : text.slice(Math.max(0, from - contextLength), from);
      const apart =
        this.afterContext(before, text.slice(from, cut)).value +
        this.afterContext(before + text.slice(from, cut), text.slice(cut)).value;
      if (this.afterContext(before, text.slice(from)).value === apart) return cut;
      cut = from;
    }
    return cut;
  }

  /** Masks and returns everything held back, at the end of the stream. */
  flush(): string {
    const text = this.carry + this.decoder.write(Buffer.alloc(0), true);
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

  /**
   * `text` masked as it reads after `before`: detectors look back (a card does not start right
   * after a digit, a bearer token follows its scheme), so the last characters released are
   * masked with it, and what they come to is taken off again. When a value took them in (it was
   * masked when released), `text` is masked alone: the reading that masks more.
   */
  private afterContext(before: string, text: string): MaskResult {
    // No detector reads back across a line end (a key block is held whole until its END line).
    if (before === '' || before.endsWith('\n')) return this.mask(text);
    // The context cut from its own start may read as a value it is not: then one character.
    for (const length of [contextLength, 1]) {
      let context = before.slice(-length);
      if (context !== '' && (code(context, 0) & 0xfc00) === 0xdc00) context = context.slice(1);
      if (context === '') break;
      const head = this.mask(context);
      const joined = this.mask(context + text);
      if (!joined.value.startsWith(head.value)) continue;
      return {
        value: joined.value.slice(head.value.length),
        counts: minus(joined.counts, head.counts),
        wouldMask: minus(joined.wouldMask ?? {}, head.wouldMask ?? {}),
      };
    }
    return this.mask(text);
  }

  private apply(text: string): string {
    if (text.length === 0) return '';
    const result = this.afterContext(this.released, text);
    this.released = (this.released + text.slice(-contextLength)).slice(-contextLength);
    for (const [key, n] of Object.entries(result.counts)) this.counts[key] = (this.counts[key] ?? 0) + n;
    for (const [key, n] of Object.entries(result.wouldMask ?? {})) {
      this.wouldMask[key] = (this.wouldMask[key] ?? 0) + n;
    }
    return result.value;
  }
}

/**
 * A Transform that masks through a StreamMasker. It releases text as soon as the masker can
 * tell it holds no unfinished value, so prompts and progress output reach an interactive user,
 * and a value written in pieces with pauses between them is still masked whole.
 */
export class MaskingTransform extends Transform {
  readonly masker: StreamMasker;
  private readonly observe: ((text: string, bytes: number) => void) | undefined;

  /** observe: each text sent, with its length in bytes as sent (a kept byte is one byte). */
  constructor(masker: StreamMasker, options: { observe?: (text: string, bytes: number) => void } = {}) {
    super();
    this.masker = masker;
    this.observe = options.observe;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      this.send(this.masker.push(chunk));
    } catch (error) {
      callback(error as Error);
      return;
    }
    callback();
  }

  override _flush(callback: TransformCallback): void {
    this.send(this.masker.flush());
    callback();
  }

  private send(text: string): void {
    if (text.length === 0) return;
    const bytes = encodeText(text);
    this.observe?.(text, bytes.length);
    this.push(bytes);
  }
}

/** A UTF-8 decoder that keeps bytes it cannot decode, each as U+DC80 + byte. */
export class Utf8Decoder {
  private pending = Buffer.alloc(0);

  write(chunk: Buffer, final: boolean): string {
    const bytes = this.pending.length > 0 ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = Buffer.alloc(0);
    const plain = bytes.toString('utf8');
    // The common case: valid UTF-8 (and no U+FFFD written as itself) that ends on a whole character.
    if (!plain.includes('\ufffd') && (final || sequenceEnd(bytes) === bytes.length)) return plain;
    let out = '';
    let from = 0;
    let i = 0;
    while (i < bytes.length) {
      const length = sequenceLength(bytes, i);
      if (length > 0) {
        i += length;
        continue;
      }
      if (length < 0 && !final) {
        // A character cut by the end of the chunk: kept for the next one.
        out += bytes.toString('utf8', from, i);
        this.pending = Buffer.from(bytes.subarray(i));
        return out;
      }
      out += bytes.toString('utf8', from, i) + String.fromCharCode(0xdc00 + bytes[i]!);
      i++;
      from = i;
    }
    return out + bytes.toString('utf8', from, i);
  }
}

/** Bytes of the valid UTF-8 character at i; 0 when invalid; -1 when cut short by the end. */
function sequenceLength(bytes: Buffer, i: number): number {
  const b = bytes[i]!;
  if (b < 0x80) return 1;
  const length = b >= 0xc2 && b <= 0xdf ? 2 : b >= 0xe0 && b <= 0xef ? 3 : b >= 0xf0 && b <= 0xf4 ? 4 : 0;
  if (length === 0) return 0;
  // The second byte's range excludes overlong forms, surrogates and code points past U+10FFFF.
  const low = b === 0xe0 ? 0xa0 : b === 0xf0 ? 0x90 : 0x80;
  const high = b === 0xed ? 0x9f : b === 0xf4 ? 0x8f : 0xbf;
  for (let k = 1; k < length; k++) {
    if (i + k >= bytes.length) return -1;
    const c = bytes[i + k]!;
    if (k === 1 ? c < low || c > high : c < 0x80 || c > 0xbf) return 0;
  }
  return length;
}

/** Where the last whole character of `bytes` ends. */
function sequenceEnd(bytes: Buffer): number {
  for (let back = 1; back <= 3 && back <= bytes.length; back++) {
    const b = bytes[bytes.length - back]!;
    if (b < 0x80) return bytes.length;
    if (b >= 0xc0)
      return sequenceLength(bytes, bytes.length - back) === -1 ? bytes.length - back : bytes.length;
  }
  return bytes.length;
}

const loneEscape = /(?<![\ud800-\udbff])[\udc80-\udcff]/;

/** Whether `text` holds a kept byte (U+DC80 + byte) that encodeText writes back as that byte. */
export function hasKeptBytes(text: string): boolean {
  return loneEscape.test(text);
}

/** UTF-8 of `text`, with each kept byte (U+DC80 + byte) written back as that byte. */
export function encodeText(text: string): Buffer {
  if (!loneEscape.test(text)) return Buffer.from(text, 'utf8');
  const parts: Buffer[] = [];
  let from = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0xdc80 || c > 0xdcff || (i > 0 && (text.charCodeAt(i - 1) & 0xfc00) === 0xd800)) continue;
    parts.push(Buffer.from(text.slice(from, i), 'utf8'), Buffer.from([c - 0xdc00]));
    from = i + 1;
  }
  parts.push(Buffer.from(text.slice(from), 'utf8'));
  return Buffer.concat(parts);
}
