// Built-in detectors of sensitive values in free text. Each one has a cheap prefilter over a
// per-value character profile (so the common value costs one pass over its characters), a
// linear candidate search (bounded regexes with no nested quantifiers, or indexOf), and a
// validator (Luhn, MOD-97, SSA rules, JSON header, octet ranges) that keeps false positives down.
import type { Detector } from '../../api/names.ts';

/**
 * What prefilters look at, from one pre-scan of a value. A long ASCII value without a digit (most
 * free text) is not walked in JS: native searches tell which characters are present, and a
 * present character's count is given as the value's length, an upper bound. Gates compare
 * counts with minimums, so a bound can only let a detector run, never hide a finding.
 */
export interface Profile {
  digits: number;
  upper: number;
  at: number;
  dash: number;
  dot: number;
  colon: number;
  plus: number;
  space: number;
  /** Characters beyond ASCII (a disguise may be among them). */
  nonAscii: number;
  /** Longest run of digits where up to two spaces, dashes or dots between digits do not break it. */
  cardRun: number;
}

const digitRe = /[0-9]/;
const upperRe = /[A-Z]/;
/** Below this length one JS pass costs less than the native searches of the digitless path. */
export const nativeScanFrom = 48;
/**
 * From this length (a chunk of command output, a text body) ASCII text is profiled by native
 * searches even with digits: its gates almost always open anyway, and the detectors' own
 * searches are native too.
 */
const boundedFrom = 4096;

export function profile(value: string, into: Profile): Profile {
  // Beyond ASCII there may be digits of other scripts: a UTF-8 length equal to the string's
  // length is the cheapest native test that there are none.
  if (value.length >= nativeScanFrom) {
    const digit = digitRe.test(value);
    if ((!digit || value.length >= boundedFrom) && Buffer.byteLength(value) === value.length) {
      // ASCII: without a digit every detector that needs digits is ruled out; the rest (and,
      // in long text, those too) need only presence.
      const bound = value.length;
      into.digits = digit ? bound : 0;
      into.cardRun = digit ? bound : 0;
      into.upper = upperRe.test(value) ? bound : 0;
      into.at = value.indexOf('@') < 0 ? 0 : bound;
      into.dash = value.indexOf('-') < 0 ? 0 : bound;
      into.dot = value.indexOf('.') < 0 ? 0 : bound;
      into.colon = value.indexOf(':') < 0 ? 0 : bound;
      into.plus = value.indexOf('+') < 0 ? 0 : bound;
      into.space = value.indexOf(' ') < 0 ? 0 : bound;
      into.nonAscii = 0;
      return into;
    }
  }
  let digits = 0;
  let upper = 0;
  let at = 0;
  let dash = 0;
  let dot = 0;
  let colon = 0;
  let plus = 0;
  let space = 0;
  let nonAscii = 0;
  let run = 0;
  let cardRun = 0;
  let separators = 0;
  for (let i = 0; i < value.length; i++) {
    const ch = value.charCodeAt(i);
    if (ch >= 48 && ch <= 57) {
      digits++;
      separators = 0;
      if (++run > cardRun) cardRun = run;
    } else {
      if (ch >= 65 && ch <= 90) upper++;
      else if (ch === 64) at++;
      else if (ch === 45) dash++;
      else if (ch === 46) dot++;
      else if (ch === 58) colon++;
      else if (ch === 43) plus++;
      else if (ch === 32) space++;
      else if (ch > 127) nonAscii++;
      // Up to two spaces, dashes or dots between digits continue a card-number run.
      if (!((ch === 32 || ch === 45 || ch === 46) && ++separators <= 2)) run = 0;
    }
  }
  into.digits = digits;
  into.upper = upper;
  into.at = at;
  into.dash = dash;
  into.dot = dot;
  into.colon = colon;
  into.plus = plus;
  into.space = space;
  into.nonAscii = nonAscii;
  into.cardRun = cardRun;
  return into;
}

// What profileBytes counts each byte as (0: nothing a gate reads): one table read per byte
// instead of a chain of tests.
const DIGIT = 1;
const UPPER = 2;
const AT = 3;
const DASH = 4;
const DOT = 5;
const COLON = 6;
const PLUS = 7;
const SPACE = 8;
const NON_ASCII = 9;
const byteKinds = new Uint8Array(256).fill(NON_ASCII, 128);
byteKinds.fill(DIGIT, 48, 58);
byteKinds.fill(UPPER, 65, 91);
byteKinds[64] = AT;
byteKinds[45] = DASH;
byteKinds[46] = DOT;
byteKinds[58] = COLON;
byteKinds[43] = PLUS;
byteKinds[32] = SPACE;
const kindCounts = new Int32Array(10);

/**
 * The profile of ASCII text in bytes[start, end), read from the bytes (no string is made). Its
 * counts are exact; a byte beyond ASCII is counted in nonAscii (the text is then not ASCII). The
 * card run is read only where there are digits enough for a card number (13); below that it is
 * the digit count, which no card gate passes either.
 */
export function profileBytes(bytes: Uint8Array, start: number, end: number, into: Profile): Profile {
  const counts = kindCounts;
  counts.fill(0);
  for (let i = start; i < end; i++) counts[byteKinds[bytes[i]!]!]!++;
  const digits = counts[DIGIT]!;
  into.digits = digits;
  into.upper = counts[UPPER]!;
  into.at = counts[AT]!;
  into.dash = counts[DASH]!;
  into.dot = counts[DOT]!;
  into.colon = counts[COLON]!;
  into.plus = counts[PLUS]!;
  into.space = counts[SPACE]!;
  into.nonAscii = counts[NON_ASCII]!;
  into.cardRun = digits < 13 ? digits : cardRunOf(bytes, start, end);
  return into;
}

/** Longest run of digits in bytes[start, end), up to two spaces, dashes or dots between digits. */
function cardRunOf(bytes: Uint8Array, start: number, end: number): number {
  let run = 0;
  let cardRun = 0;
  let separators = 0;
  for (let i = start; i < end; i++) {
    const kind = byteKinds[bytes[i]!]!;
    if (kind === DIGIT) {
      separators = 0;
      if (++run > cardRun) cardRun = run;
    } else if (!((kind === SPACE || kind === DASH || kind === DOT) && ++separators <= 2)) run = 0;
  }
  return cardRun;
}

// ---------------------------------------------------------------------------------------
// What detectors read: a value's disguises undone

/**
 * Non-ASCII characters that can disguise what detectors look for: decimal digits of any script
 * (Arabic-Indic, fullwidth, Devanagari, mathematical…) and other digit forms, invisible
 * characters (zero-width, soft hyphen, combining marks), other spaces and dashes, fullwidth and
 * mathematical letters and punctuation (＠, ．).
 */
const disguiseRe =
  /[[\p{Nd}\p{No}\p{Cf}\p{Mn}\p{Me}\p{Zs}\p{Pd}\u2212\u2024\u3002\uFE6B\uFF01-\uFF5E\uFF61\u{1D400}-\u{1D7FF}]--[\0-\x7F]]/v;
const ndRe = /^\p{Nd}$/u;
const droppedRe = /^[\p{Cf}\p{Mn}\p{Me}]$/u;
const spaceRe = /^\p{Zs}$/u;
const dashRe = /^[\p{Pd}\u2212]$/u;
const stops = new Set([0x2024, 0x3002, 0xff0e, 0xff61]);
const viewChars = new Map<number, string>();

/** What a detector reads for one code point: an ASCII look-alike, '' to drop it, or itself. */
function viewChar(cp: number): string {
  let ch = viewChars.get(cp);
  if (ch !== undefined) return ch;
  const own = String.fromCodePoint(cp);
  if (ndRe.test(own)) {
    // Unicode encodes each script's decimal digits as a contiguous run from 0 to 9 (runs may
    // follow one another, as the mathematical digits do).
    let first = cp;
    while (ndRe.test(String.fromCodePoint(first - 1))) first--;
    ch = String((cp - first) % 10);
  } else if (droppedRe.test(own)) ch = '';
  else if (spaceRe.test(own)) ch = ' ';
  else if (dashRe.test(own)) ch = '-';
  else if (stops.has(cp)) ch = '.';
  else {
    const compatible = own.normalize('NFKC');
    ch = compatible.length === 1 && compatible.charCodeAt(0) < 0x80 ? compatible : own;
  }
  if (viewChars.size < 4096) viewChars.set(cp, ch);
  return ch;
}

/** A value as detectors read it; at[i] is where view character i comes from in the value. */
export interface View {
  text: string;
  /** Length text.length + 1: at[text.length] is the value's length. */
  at: Int32Array;
}

/** The value with its disguises undone, or undefined when it has none (the common case). */
export function detectorView(value: string): View | undefined {
  // Every disguise is beyond ASCII: a UTF-8 length equal to the string's rules them out natively.
  if (Buffer.byteLength(value) === value.length || !disguiseRe.test(value)) return undefined;
  const parts: string[] = [];
  const at = new Int32Array(value.length + 1);
  let n = 0;
  for (let i = 0; i < value.length; ) {
    const cp = value.codePointAt(i)!;
    const size = cp > 0xffff ? 2 : 1;
    const ch = cp < 0x80 ? value[i]! : viewChar(cp);
    for (let k = 0; k < ch.length; k++) at[n++] = i + Math.min(k, size - 1);
    parts.push(ch);
    i += size;
  }
  at[n] = value.length;
  return { text: parts.join(''), at: at.subarray(0, n + 1) };
}

/** A finding: value.slice(start, end) is sensitive. */
export interface Span {
  start: number;
  end: number;
}

export interface DetectorScanner {
  name: Detector;
  /** Shortest value that can hold a finding. */
  minLength: number;
  /**
   * Cheap test; false means find() would find nothing in a value of this profile and length.
   * Without the value (bytes not made a string), it answers from the profile alone.
   */
  maybe(value: string | undefined, p: Profile, length: number): boolean;
  /** Appends findings in order of start. */
  find(value: string, out: Span[]): void;
  /**
   * find() over the ASCII text in bytes[start, end), read from the bytes (spans count from
   * start). Detectors without it are given the text as a string.
   */
  findBytes?(bytes: Uint8Array, start: number, end: number, out: Span[]): void;
  /**
   * For the ASCII text in bytes[start, end): false when find() would find nothing in it, told by
   * a test of its bytes cheaper than making it a string (a timestamp has the digits and
   * separators a phone number gates on, never its shape).
   */
  mayMatchBytes?(bytes: Uint8Array, start: number, end: number): boolean;
}

function each(re: RegExp, value: string, visit: (m: RegExpExecArray) => void): void {
  re.lastIndex = 0;
  for (let m = re.exec(value); m !== null; m = re.exec(value)) {
    visit(m);
    if (m[0].length === 0) re.lastIndex++;
  }
}

// ---------------------------------------------------------------------------------------
// Validators (exported for tests and for the operator's examples)

export function luhnValid(digits: string): boolean {
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return false;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return digits.length > 0 && sum % 10 === 0;
}

/** IBAN check digits: rearranged, letters as 10..35, the number mod 97 is 1. */
export function ibanValid(iban: string): boolean {
  if (iban.length < 15 || iban.length > 34 || !/^[A-Z]{2}[0-9]{2}[A-Z0-9]+$/.test(iban)) return false;
  const rearranged = iban.slice(4) + iban.slice(0, 4);
  let rest = 0;
  for (let i = 0; i < rearranged.length; i++) {
    const ch = rearranged.charCodeAt(i);
    if (ch >= 65) rest = (rest * 100 + (ch - 55)) % 97;
    else rest = (rest * 10 + (ch - 48)) % 97;
  }
  return rest === 1;
}

/** SSA rules: area not 000, 666 or 900-999; group not 00; serial not 0000. */
export function ssnValid(area: string, group: string, serial: string): boolean {
  return area !== '000' && area !== '666' && area[0] !== '9' && group !== '00' && serial !== '0000';
}

function ipv4Valid(text: string): boolean {
  const parts = text.split('.');
  return (
    parts.length === 4 &&
    parts.every((p) => p.length > 0 && p.length <= 3 && (p === '0' || p[0] !== '0') && Number(p) <= 255)
  );
}

/** A full IPv6 address (with at most one '::' and an optional IPv4 tail), at least 3 groups. */
export function ipv6Valid(text: string): boolean {
  const halves = text.split('::');
  if (halves.length > 2) return false;
  let groups = 0;
  let written = 0;
  for (let h = 0; h < halves.length; h++) {
    const half = halves[h]!;
    if (half === '') continue;
    const parts = half.split(':');
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i]!;
      const last = h === halves.length - 1 && i === parts.length - 1;
      if (last && part.includes('.')) {
        if (!ipv4Valid(part)) return false;
        groups += 2;
        written += 2;
      } else if (/^[0-9A-Fa-f]{1,4}$/.test(part)) {
        groups++;
        written++;
      } else return false;
    }
  }
  if (halves.length === 2 ? groups > 7 : groups !== 8) return false;
  return written >= 3;
}

function jwtHeaderValid(header: string): boolean {
  try {
    const parsed: unknown = JSON.parse(Buffer.from(header, 'base64url').toString('utf8'));
    return (
      typeof parsed === 'object' && parsed !== null && typeof (parsed as { alg?: unknown }).alg === 'string'
    );
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------
// Scanners

// Issuer prefixes 2-6 (Mastercard 2-series, Amex/Diners/JCB, Visa, Mastercard, Discover/
// UnionPay): a 13-digit epoch-milliseconds timestamp starts with 1 and is left alone. Up to two
// spaces, dashes or dots may separate digits (the view has turned other separators into these).
const cardRe = /(?<![0-9])[2-6](?:[ .-]{0,2}[0-9]){12,18}(?![0-9])/g;
const creditCard: DetectorScanner = {
  name: 'credit-card',
  minLength: 13,
  maybe: (_v, p) => p.cardRun >= 13,
  find(value, out) {
    cardRe.lastIndex = 0;
    for (let m = cardRe.exec(value); m !== null; m = cardRe.exec(value)) {
      const end = luhnPrefix(m[0]);
      if (end > 0) {
        out.push({ start: m.index, end: m.index + end });
        cardRe.lastIndex = m.index + end;
      } else {
        // The greedy candidate may have run into other digits: try the next start too.
        cardRe.lastIndex = m.index + 1;
      }
    }
  },
  findBytes(bytes, first, last, out) {
    // cardRe tried at each start as its global search does, then luhnPrefix over the bytes.
    for (let start = first; start < last; ) {
      const end = cardMatch(bytes, first, last, start);
      if (end < 0) {
        start++;
        continue;
      }
      const valid = luhnPrefixBytes(bytes, start, end);
      if (valid > 0) {
        out.push({ start: start - first, end: start - first + valid });
        start += valid;
      } else start++;
    }
  },
};

/**
 * Where cardRe's match at `start` ends, or -1. Each group (up to two separators, then a digit)
 * parses one way only, so the greedy match is the longest run of 12 to 18 groups after which
 * no digit follows.
 */
function cardMatch(bytes: Uint8Array, first: number, last: number, start: number): number {
  const lead = bytes[start]!;
  if (lead < 50 || lead > 54 || (start > first && isDigit(bytes[start - 1]!))) return -1;
  const ends = cardEnds;
  let groups = 0;
  let at = start + 1;
  while (groups < 18) {
    // Up to two separators, taken only where a digit follows them.
    if (at < last && isDigit(bytes[at]!)) at += 1;
    else if (at + 1 < last && isSeparator(bytes[at]!) && isDigit(bytes[at + 1]!)) at += 2;
    else if (
      at + 2 < last &&
      isSeparator(bytes[at]!) &&
      isSeparator(bytes[at + 1]!) &&
      isDigit(bytes[at + 2]!)
    )
      at += 3;
    else break;
    ends[++groups] = at;
  }
  for (let k = groups; k >= 12; k--) {
    const end = ends[k]!;
    if (end >= last || !isDigit(bytes[end]!)) return end;
  }
  return -1;
}
const cardEnds = new Int32Array(19);

/** luhnPrefix over the candidate bytes[start, end): the length of its longest valid prefix, or 0. */
function luhnPrefixBytes(bytes: Uint8Array, start: number, end: number): number {
  for (let to = end; to > start; to--) {
    if (to < end && !isSeparator(bytes[to]!)) continue;
    if (isSeparator(bytes[to - 1]!)) continue;
    let digits = 0;
    let sum = 0;
    for (let i = to - 1; i >= start; i--) {
      const ch = bytes[i]!;
      if (isSeparator(ch)) continue;
      let d = ch - 48;
      if (digits++ % 2 === 1) {
        d *= 2;
        if (d > 9) d -= 9;
      }
      sum += d;
    }
    if (digits < 13) return 0;
    if (sum % 10 === 0) return to - start;
  }
  return 0;
}

/** Length of the longest Luhn-valid prefix of 13+ digits ending before a separator, or 0. */
function luhnPrefix(candidate: string): number {
  for (let end = candidate.length; end > 0; end--) {
    if (end < candidate.length && !isSeparator(candidate.charCodeAt(end))) continue;
    if (isSeparator(candidate.charCodeAt(end - 1))) continue;
    const digits = candidate.slice(0, end).replace(/[ .-]/g, '');
    if (digits.length < 13) return 0;
    if (luhnValid(digits)) return end;
  }
  return 0;
}

const localChar = (ch: number) =>
  (ch >= 97 && ch <= 122) ||
  (ch >= 65 && ch <= 90) ||
  (ch >= 48 && ch <= 57) ||
  ch === 46 ||
  ch === 95 ||
  ch === 37 ||
  ch === 43 ||
  ch === 45;
const domainChar = (ch: number) =>
  (ch >= 97 && ch <= 122) || (ch >= 65 && ch <= 90) || (ch >= 48 && ch <= 57) || ch === 46 || ch === 45;
const domainRe = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$/;
const email: DetectorScanner = {
  name: 'email',
  minLength: 6,
  maybe: (_v, p) => p.at > 0 && p.dot > 0,
  find(value, out) {
    // Expand around each '@' (linear, unlike a regex that retries the local part at every start).
    let from = 0;
    for (let at = value.indexOf('@', from); at >= 0; at = value.indexOf('@', from)) {
      from = at + 1;
      let start = at;
      while (start > 0 && at - start < 64 && localChar(value.charCodeAt(start - 1))) start--;
      while (start < at && value.charCodeAt(start) === 46) start++;
      let end = at + 1;
      while (end < value.length && end - at <= 253 && domainChar(value.charCodeAt(end))) end++;
      while (end > at + 1 && (value.charCodeAt(end - 1) === 46 || value.charCodeAt(end - 1) === 45)) end--;
      if (start === at || !domainRe.test(value.slice(at + 1, end))) continue;
      out.push({ start, end });
      from = end;
    }
  },
  findBytes(bytes, first, last, out) {
    // The same expansion over the bytes, and domainRe read label by label.
    let from = first;
    for (;;) {
      let at = from;
      while (at < last && bytes[at] !== 64) at++;
      if (at >= last) return;
      from = at + 1;
      let start = at;
      while (start > first && at - start < 64 && localChar(bytes[start - 1]!)) start--;
      while (start < at && bytes[start] === 46) start++;
      let end = at + 1;
      while (end < last && end - at <= 253 && domainChar(bytes[end]!)) end++;
      while (end > at + 1 && (bytes[end - 1] === 46 || bytes[end - 1] === 45)) end--;
      if (start === at || !domainBytesValid(bytes, at + 1, end)) continue;
      out.push({ start: start - first, end: end - first });
      from = end;
    }
  },
};

/**
 * domainRe over bytes[start, end), which hold only domainChar bytes: dot-separated labels of 1 to
 * 63 letters, digits and dashes that start and end with a letter or digit, then a last label of 2
 * to 63 letters.
 */
function domainBytesValid(bytes: Uint8Array, start: number, end: number): boolean {
  let labels = 0;
  for (let i = start; ; ) {
    let j = i;
    while (j < end && bytes[j] !== 46) j++;
    const length = j - i;
    if (j === end) {
      if (labels === 0 || length < 2 || length > 63) return false;
      for (let k = i; k < j; k++) if (!isLetter(bytes[k]!)) return false;
      return true;
    }
    if (length < 1 || length > 63 || bytes[i] === 45 || bytes[j - 1] === 45) return false;
    labels++;
    i = j + 1;
  }
}

function isLetter(ch: number): boolean {
  return (ch >= 97 && ch <= 122) || (ch >= 65 && ch <= 90);
}

// Only the separated form in free text (ddd-dd-dddd, or the same with spaces or dots): a bare
// 9-digit number is too often something else. Columns known to hold SSNs are masked whole
// through `columns`.
// Not inside a longer number grouped the same way (12-123-45-6789, 123-45-6789-12).
const ssnRe = /(?<![0-9])([0-9]{3})([ .-])([0-9]{2})\2([0-9]{4})(?![0-9]|\2[0-9])/g;
const usSsn: DetectorScanner = {
  name: 'us-ssn',
  minLength: 11,
  maybe: (_v, p) => p.digits >= 9 && (p.dash >= 2 || p.space >= 2 || p.dot >= 2),
  find(value, out) {
    each(ssnRe, value, (m) => {
      const grouped = m.index >= 2 && value[m.index - 1] === m[2] && isDigit(value.charCodeAt(m.index - 2));
      if (!grouped && ssnValid(m[1]!, m[3]!, m[4]!)) out.push({ start: m.index, end: m.index + m[0].length });
    });
  },
  findBytes(bytes, first, last, out) {
    // ssnRe tried at each position, as its global search does: after a match, from its end.
    for (let i = first; i + 11 <= last; ) {
      const sep = bytes[i + 3]!;
      if (
        !isSeparator(sep) ||
        bytes[i + 6] !== sep ||
        (i > first && isDigit(bytes[i - 1]!)) ||
        !digitsAt(bytes, i, 3) ||
        !digitsAt(bytes, i + 4, 2) ||
        !digitsAt(bytes, i + 7, 4) ||
        (i + 11 < last && isDigit(bytes[i + 11]!)) ||
        (i + 12 < last && bytes[i + 11] === sep && isDigit(bytes[i + 12]!))
      ) {
        i++;
        continue;
      }
      const grouped = i - first >= 2 && bytes[i - 1] === sep && isDigit(bytes[i - 2]!);
      if (!grouped && ssnBytesValid(bytes, i)) out.push({ start: i - first, end: i - first + 11 });
      i += 11;
    }
  },
};

/** Whether bytes[start, end) hold the ASCII text `needle`. */
function hasBytes(bytes: Uint8Array, start: number, end: number, needle: string): boolean {
  const first = needle.charCodeAt(0);
  for (let i = start; i + needle.length <= end; i++) {
    if (bytes[i] !== first) continue;
    let k = 1;
    while (k < needle.length && bytes[i + k] === needle.charCodeAt(k)) k++;
    if (k === needle.length) return true;
  }
  return false;
}

function countOf(bytes: Uint8Array, start: number, end: number, byte: number): number {
  let count = 0;
  for (let i = start; i < end; i++) if (bytes[i] === byte) count++;
  return count;
}

function digitsAt(bytes: Uint8Array, at: number, count: number): boolean {
  for (let k = at; k < at + count; k++) if (!isDigit(bytes[k]!)) return false;
  return true;
}

/** ssnValid over the digits of the SSN-shaped bytes at `at` (ddd-dd-dddd). */
function ssnBytesValid(bytes: Uint8Array, at: number): boolean {
  const area = bytes[at]! * 10000 + bytes[at + 1]! * 100 + bytes[at + 2]!;
  // '000' and '666' as byte triples; '9' as the area's first byte.
  if (area === 48 * 10101 || area === 54 * 10101 || bytes[at] === 57) return false;
  if (bytes[at + 4] === 48 && bytes[at + 5] === 48) return false;
  return !(bytes[at + 7] === 48 && bytes[at + 8] === 48 && bytes[at + 9] === 48 && bytes[at + 10] === 48);
}

function isDigit(ch: number): boolean {
  return ch >= 48 && ch <= 57;
}

function isSeparator(ch: number): boolean {
  return ch === 32 || ch === 45 || ch === 46;
}

// Uppercase electronic form or groups of four separated by single spaces.
const ibanRe = /(?<![A-Za-z0-9])[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])/g;
const iban: DetectorScanner = {
  name: 'iban',
  minLength: 15,
  maybe: (_v, p, length) => length >= 15 && p.upper >= 2 && p.digits >= 2,
  find(value, out) {
    each(ibanRe, value, (m) => {
      const text = m[0];
      // The greedy candidate may run into a following word in capitals: try shorter ends.
      for (let end = text.length; end >= 15; end--) {
        if (end < text.length && text[end] !== ' ') continue;
        if (ibanValid(text.slice(0, end).replace(/ /g, ''))) {
          out.push({ start: m.index, end: m.index + end });
          return;
        }
      }
    });
  },
};

// E.164 (+ and 8-15 digits, single separators allowed) or NANP with separators: (555) 234-5678,
// 555-234-5678, 555.234.5678, +1 555 234 5678. A bare run of digits is not a phone number here.
const e164Re = /(?<![0-9A-Za-z+])\+[1-9](?:[ .-]?[0-9]){7,14}(?![0-9])/g;
const nanpRe =
  /(?<![0-9A-Za-z+])(?:\+?1[ .-]?)?(?:\([2-9][0-9]{2}\)[ .-]?|[2-9][0-9]{2}[ .-])[2-9][0-9]{2}[ .-][0-9]{4}(?![0-9])/y;
/** ddd, a separator, dddd not followed by a digit: where a NANP number ends. */
const nanpTail = /[0-9]{3}[ .-][0-9]{4}(?![0-9])/g;
const phone: DetectorScanner = {
  name: 'phone',
  minLength: 9,
  maybe: (_v, p) => (p.plus > 0 && p.digits >= 8) || p.digits >= 10,
  find(value, out) {
    const found: Span[] = [];
    if (value.includes('+'))
      each(e164Re, value, (m) => found.push({ start: m.index, end: m.index + m[0].length }));
    // NANP: anchor on the separator before the last four digits (found natively, each start
    // tried so overlapping candidates are not skipped), then try the few possible candidates
    // with a sticky regex (a handful of positions, not every one).
    nanpTail.lastIndex = 4;
    for (let m = nanpTail.exec(value); m !== null; m = nanpTail.exec(value)) {
      nanpTail.lastIndex = m.index + 1;
      const i = m.index + 3;
      for (const back of [12, 11, 10, 9, 8, 7]) {
        const start = i - back;
        if (start < 0) continue;
        nanpRe.lastIndex = start;
        const n = nanpRe.exec(value);
        if (n && n.index + n[0].length === i + 5) {
          found.push({ start, end: i + 5 });
          break;
        }
      }
    }
    found.sort((a, b) => a.start - b.start);
    for (const span of found) out.push(span);
  },
  mayMatchBytes(bytes, first, last) {
    // Every E.164 finding starts with '+' and a digit 1-9; every NANP one ends where nanpTail
    // matches from the value's fifth character on.
    for (let i = first; i < last; i++) {
      const ch = bytes[i]!;
      if (ch === 43) {
        if (i + 1 < last && bytes[i + 1]! >= 49 && bytes[i + 1]! <= 57) return true;
      } else if (
        isSeparator(ch) &&
        i - first >= 7 &&
        i + 5 <= last &&
        digitsAt(bytes, i - 3, 3) &&
        digitsAt(bytes, i + 1, 4) &&
        !(i + 5 < last && isDigit(bytes[i + 5]!))
      )
        return true;
    }
    return false;
  },
};

const ipv4Re = /(?<![0-9.])(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?![0-9]|\.[0-9])/g;
const ipv4: DetectorScanner = {
  name: 'ipv4',
  minLength: 7,
  maybe: (_v, p) => p.dot >= 3 && p.digits >= 4,
  find(value, out) {
    each(ipv4Re, value, (m) => {
      if (ipv4Valid(m[0])) out.push({ start: m.index, end: m.index + m[0].length });
    });
  },
};

const ipv6Re = /(?<![0-9A-Za-z:.])[0-9A-Fa-f:.]{3,45}(?![0-9A-Za-z:])/g;
const ipv6: DetectorScanner = {
  name: 'ipv6',
  minLength: 5,
  maybe: (v, p) => p.colon >= 7 || (p.colon >= 2 && (v === undefined || v.includes('::'))),
  mayMatchBytes: (bytes, start, end) =>
    hasBytes(bytes, start, end, '::') || countOf(bytes, start, end, 58) >= 7,
  find(value, out) {
    each(ipv6Re, value, (m) => {
      let text = m[0];
      while (text.endsWith('.')) text = text.slice(0, -1);
      if (text.includes(':') && ipv6Valid(text)) out.push({ start: m.index, end: m.index + text.length });
    });
  },
};

const jwtRe = /(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*/g;
const jwt: DetectorScanner = {
  name: 'jwt',
  minLength: 16,
  maybe: (v, p) => p.dot >= 2 && (v === undefined || v.includes('eyJ')),
  mayMatchBytes: (bytes, start, end) => hasBytes(bytes, start, end, 'eyJ'),
  find(value, out) {
    each(jwtRe, value, (m) => {
      const header = m[0].slice(0, m[0].indexOf('.'));
      if (jwtHeaderValid(header)) out.push({ start: m.index, end: m.index + m[0].length });
    });
  },
};

const awsHint = /A[KS]IA/;
const awsRe = /(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])/g;
const awsAccessKey: DetectorScanner = {
  name: 'aws-access-key',
  minLength: 20,
  maybe: (v, p) => p.upper >= 4 && (v === undefined || awsHint.test(v)),
  mayMatchBytes: (bytes, start, end) =>
    hasBytes(bytes, start, end, 'AKIA') || hasBytes(bytes, start, end, 'ASIA'),
  find(value, out) {
    each(awsRe, value, (m) => out.push({ start: m.index, end: m.index + m[0].length }));
  },
};

const pemBegin = /-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY-----/y;
const pemEnd = /-----END [A-Z0-9 ]{0,40}PRIVATE KEY-----/g;
const privateKey: DetectorScanner = {
  name: 'private-key',
  minLength: 30,
  maybe: (v, p) => p.dash >= 10 && (v === undefined || v.includes('-----BEGIN')),
  mayMatchBytes: (bytes, start, end) => hasBytes(bytes, start, end, '-----BEGIN'),
  find(value, out) {
    let from = 0;
    for (let at = value.indexOf('-----BEGIN', from); at >= 0; at = value.indexOf('-----BEGIN', from)) {
      pemBegin.lastIndex = at;
      if (!pemBegin.test(value)) {
        from = at + 1;
        continue;
      }
      pemEnd.lastIndex = pemBegin.lastIndex;
      const end = pemEnd.exec(value);
      // A key cut off before its END line is still a key: mask to the end of the value.
      const stop = end ? end.index + end[0].length : value.length;
      out.push({ start: at, end: stop });
      from = stop;
    }
  },
};

// The token after "Bearer " is masked, the scheme kept; the scheme in any case, as HTTP reads it
// (RFC 9110: an authentication scheme is case-insensitive). A word after "bearer" in prose is
// not a token: at least 8 characters with a digit, or 20 characters.
/** One native search instead of two includes(). */
const bearerHint = /bearer/i;
const bearerRe = /(?<![A-Za-z0-9])bearer[ \t]+([A-Za-z0-9\-._~+/]+=*)/gi;
const bearerToken: DetectorScanner = {
  name: 'bearer-token',
  minLength: 15,
  maybe: (v) => v === undefined || bearerHint.test(v),
  mayMatchBytes(bytes, start, end) {
    // bearerHint over the bytes: "bearer" in any case (an ASCII letter | 0x20 is its lower case).
    for (let i = start; i + 6 <= end; i++) {
      let k = 0;
      while (k < 6 && (bytes[i + k]! | 0x20) === 'bearer'.charCodeAt(k)) k++;
      if (k === 6) return true;
    }
    return false;
  },
  find(value, out) {
    each(bearerRe, value, (m) => {
      const token = m[1]!;
      if (token.length < 20 && (token.length < 8 || !/[0-9]/.test(token))) return;
      const end = m.index + m[0].length;
      out.push({ start: end - token.length, end });
    });
  },
};

export const detectorScanners: Record<Detector, DetectorScanner> = {
  'credit-card': creditCard,
  email,
  'us-ssn': usSsn,
  iban,
  phone,
  ipv4,
  ipv6,
  jwt,
  'aws-access-key': awsAccessKey,
  'private-key': privateKey,
  'bearer-token': bearerToken,
};
