// What the enforcer masks in server messages, as pure functions of the bytes: given the masker,
// a result's column layout and a DataRow, CopyData, FunctionCallResponse, NoticeResponse,
// ErrorResponse, NotificationResponse or ParameterStatus, the message to relay instead (or the
// same one) and the counts of what was masked. No sockets and no session state: the session decides which layout and which request
// a message belongs to.
import { isAscii as isAsciiBytes, isUtf8 } from 'node:buffer';
import { maskEncoded } from '../policy/encoded.ts';
import { ByteOutput } from '../policy/masking.ts';
import { RowWriter } from './datarow.ts';
import {
  type ColumnDescription,
  decodeFields,
  decodeNotification,
  decodeParameterStatus,
  encodeCopyData,
  encodeFields,
  type Fields,
  notificationResponse,
  ProtocolViolation,
  parameterStatus,
} from './messages.ts';
import type { ColumnMask, ColumnRef, Masker, MaskResult } from './policy.ts';
import { byteaBytes, byteaText, type Held, heldText, heldTypes } from './values.ts';

/** Where counts of masked values go (a request's record): by masking rule and detector or column. */
export interface MaskTally {
  masked?: Record<string, number>;
  /** What audit-mode policies would have masked. */
  wouldMask?: Record<string, number>;
}

type ColumnAction = 'skip' | 'text' | 'lossy' | 'mask';

/** How one result column's values are read and masked. */
export interface ColumnPlan {
  action: ColumnAction;
  /** The column's type is text, so masked text stays valid for the client's decoder. */
  textual: boolean;
  binary: boolean;
  /** jsonb in binary format: its text follows a version byte. */
  jsonb: boolean;
  /** json or jsonb, in either format: text a client reads with its escapes decoded. */
  json: boolean;
  /** Read by what the type holds (bytea's bytes; binary int8, numeric, inet as their text). */
  held?: Held;
  rule?: ColumnMask;
}

/** One plan per column of a result, in RowDescription's order. */
export type Layout = ColumnPlan[];

/** Binary-format types whose bytes are UTF-8 text (jsonb has a leading version byte). */
const textTypes = new Set([25, 1043, 1042, 19, 114, 142, 705, 3802, 18]);
/** Binary-format types that cannot hold detectable text. */
const opaqueTypes = new Set([
  16, 20, 21, 23, 26, 700, 701, 1082, 1083, 1114, 1184, 1186, 1266, 1700, 2950, 790, 600, 601, 602, 603, 604,
  718, 869, 650, 829, 774, 3220, 28, 29, 5069, 24, 2202, 2203, 2204, 2205, 2206, 3734, 3769, 4089, 4096, 1560,
  1562,
]);

/** A column without a description: scanned, and NULL when anything is found. */
const unknownColumn: ColumnPlan = {
  action: 'lossy',
  textual: false,
  binary: true,
  jsonb: false,
  json: false,
};

/**
 * The layout of a result: each column's rule (from the table columns `refsOf` says it shows)
 * or how detectors read it, by its type and format.
 */
export function planColumns(
  masker: Masker,
  columns: ColumnDescription[],
  refsOf: (tableOid: number, attnum: number) => ColumnRef[],
): Layout {
  return columns.map((c): ColumnPlan => {
    const refs = masker.columns && c.tableOid !== 0 ? refsOf(c.tableOid, c.attnum) : [];
    let rule: ColumnMask | undefined;
    for (const ref of refs) {
      rule = masker.columnRule(ref);
      if (rule) break;
    }
    const textual = textTypes.has(c.typeOid);
    const binary = c.format === 1;
    const plan: ColumnPlan = {
      action: 'skip',
      textual,
      binary,
      jsonb: binary && c.typeOid === 3802,
      json: c.typeOid === 114 || c.typeOid === 3802,
    };
    const held = heldTypes.get(c.typeOid);
    if (rule !== undefined) {
      plan.action = 'mask';
      plan.rule = rule;
    } else if (!masker.scans) plan.action = 'skip';
    else if (held === 'bytea' || (held && binary)) {
      plan.action = 'text';
      plan.held = held;
    } else if (!binary || textual) plan.action = 'text';
    else plan.action = opaqueTypes.has(c.typeOid) ? 'skip' : 'lossy';
    return plan;
  });
}

const unchanged: unique symbol = Symbol('unchanged');
/** The masked value is the next one in RowMasker's maskedBytes. */
const inOutput: unique symbol = Symbol('in output');

/**
 * Masks DataRows. It keeps only scratch space between calls (and the batch its rewritten rows
 * are written into), so one per session serves every result.
 */
export class RowMasker {
  private readonly masker: Masker;
  private readonly rows = new RowWriter();
  /** The DataRow being masked, decoded once when it is ASCII. */
  private rowText: string | undefined;
  private rowAscii: boolean | undefined;
  private readonly changedAt: number[] = [];
  private readonly changedTo: (string | Buffer | null)[] = [];
  /** A row's values masked as bytes, one after another; inBytes[c] says where change c's ends (-1: not there). */
  private readonly maskedBytes = new ByteOutput();
  private readonly inBytes: number[] = [];
  /** The masker, and again over the text with its escapes decoded (sidecar/policy/encoded.ts). */
  private readonly maskDecoded: (text: string) => MaskResult;

  constructor(masker: Masker) {
    this.masker = masker;
    this.maskDecoded = maskEncoded((text) => masker.mask(text));
  }

  /** Starts a batch: rows rewritten before it may still be queued on a socket, so never reuse them. */
  batch(): void {
    this.rows.reset();
  }

  /**
   * DataRows in bulk, the messages in chunk[start, end): unchanged rows go out as one view of
   * the received chunk, rewritten rows one after another as one view of the batch's buffer.
   */
  maskRun(
    chunk: Buffer,
    start: number,
    end: number,
    layout: Layout | undefined,
    tally: MaskTally | undefined,
    out: Buffer[],
  ): void {
    const rows = this.rows;
    /** Where the chunk's bytes not yet sent start. */
    let span = start;
    let at = start;
    /** The rewritten rows not yet sent: run[runFrom, runTo), runFrom -1 for none. */
    let run = rows.buffer;
    let runFrom = -1;
    let runTo = 0;
    while (at < end) {
      const next =
        at +
        1 +
        (((chunk[at + 1]! << 24) | (chunk[at + 2]! << 16) | (chunk[at + 3]! << 8) | chunk[at + 4]!) >>> 0);
      const rewritten = this.rewrite(chunk, at, next, layout, tally);
      if (rewritten >= 0) {
        if (span < at || rows.buffer !== run || rewritten !== runTo || runFrom < 0) {
          if (runFrom >= 0) out.push(run.subarray(runFrom, runTo));
          if (span < at) out.push(chunk.subarray(span, at));
          run = rows.buffer;
          runFrom = rewritten;
        }
        runTo = rows.used;
        span = next;
      }
      at = next;
    }
    if (runFrom >= 0) out.push(run.subarray(runFrom, runTo));
    if (span < end) out.push(chunk.subarray(span, end));
  }

  /**
   * Masks the DataRow at raw[base, limit); undefined when nothing changed. The hot path: field
   * boundaries are read straight from the bytes, and only a changed value allocates. A row
   * whose fields do not fit its message is refused (ProtocolViolation).
   */
  maskRow(
    raw: Buffer,
    base: number,
    limit: number,
    layout: Layout | undefined,
    tally: MaskTally | undefined,
  ): Buffer | undefined {
    const rewritten = this.rewrite(raw, base, limit, layout, tally);
    return rewritten < 0 ? undefined : this.rows.buffer.subarray(rewritten, this.rows.used);
  }

  /** maskRow, the row rewritten into the batch's buffer: where it starts there, or -1 when nothing changed. */
  private rewrite(
    raw: Buffer,
    base: number,
    limit: number,
    layout: Layout | undefined,
    tally: MaskTally | undefined,
  ): number {
    const masker = this.masker;
    if (limit - base < 7) throw new ProtocolViolation('DataRow shorter than its header');
    const count = (raw[base + 5]! << 8) | raw[base + 6]!;
    let at = base + 7;
    const changedAt = this.changedAt;
    const changedTo = this.changedTo;
    let changes = 0;
    // An ASCII row is decoded once, and its fields are substrings: one native call per row
    // instead of one per value.
    this.rowText = undefined;
    this.rowAscii = undefined;
    this.maskedBytes.length = 0;
    const inBytes = this.inBytes;
    for (let i = 0; i < count; i++) {
      if (at + 4 > limit) throw new ProtocolViolation('DataRow shorter than its fields');
      const length = (raw[at]! << 24) | (raw[at + 1]! << 16) | (raw[at + 2]! << 8) | raw[at + 3]!;
      at += 4;
      if (length < 0) continue;
      const end = at + length;
      if (end > limit) throw new ProtocolViolation('DataRow field beyond the message');
      const plan = layout?.[i] ?? unknownColumn;
      if (
        plan.action === 'mask' ||
        (plan.action !== 'skip' && (length >= masker.minScanLength || plan.held !== undefined))
      ) {
        const result = this.maskValue(raw, base + 7, limit, at, end, plan, tally);
        if (result !== unchanged) {
          changedAt[changes] = i;
          inBytes[changes] = result === inOutput ? this.maskedBytes.length : -1;
          changedTo[changes++] = result === inOutput ? null : result;
        }
      }
      at = end;
    }
    if (changes === 0) return -1;
    return this.rows.append(raw, base, limit, changedAt, changedTo, changes, this.maskedBytes.bytes, inBytes);
  }

  /** The masked value of raw[start, end), null for NULL, or `unchanged`. */
  private maskValue(
    raw: Buffer,
    fieldsStart: number,
    limit: number,
    start: number,
    end: number,
    plan: ColumnPlan,
    tally: MaskTally | undefined,
  ): string | Buffer | null | typeof unchanged | typeof inOutput {
    const masker = this.masker;
    if (plan.held) return maskHeld(masker, raw, start, end, plan.held, plan.binary, tally);
    const rule = plan.rule;
    if (plan.action === 'mask' && rule && plan.binary && !plan.textual) {
      // A binary non-text value cannot carry a mask: it becomes NULL.
      const wouldMask = Object.fromEntries(rule.wouldMask.map((key) => [key, 1]));
      if (rule.audit) {
        addCounts(tally, {}, { ...wouldMask, [rule.key]: 1 });
        return unchanged;
      }
      addCounts(tally, { [rule.key]: 1 }, wouldMask);
      return null;
    }
    if (
      plan.action === 'lossy' &&
      plan.binary &&
      (maskParts(masker, raw, start, end, tally, this.maskDecoded) ||
        maskRuns(masker, raw, start, end, tally))
    )
      return null;
    const from = plan.jsonb ? start + 1 : start;
    if (this.rowAscii === undefined) this.rowAscii = isAsciiBytes(raw.subarray(fieldsStart, limit));
    // JSON with an escape is read decoded too (a card after \u0001 is a card to the client), as
    // text; so is a value of another type (an array of json), which becomes NULL if masked.
    const escaped = (plan.json || !plan.textual) && plan.action !== 'mask' && hasBackslash(raw, from, end);
    if (this.rowAscii && plan.action !== 'mask' && !escaped) {
      // ASCII is masked as bytes, straight into the row's masked values: no string per value.
      if (masker.maskAscii) return this.maskAscii(raw, from, end, plan, tally, masker.maskAscii);
      // Most values cannot hold a finding: told from their bytes, they are never made strings.
      if (!masker.mayFind(raw, from, end)) return unchanged;
    }
    let text: string;
    if (this.rowAscii) {
      this.rowText ??= raw.toString('latin1', fieldsStart, limit);
      text = this.rowText.substring(from - fieldsStart, end - fieldsStart);
    } else {
      text = raw.toString('utf8', from, end);
    }
    const result = !escaped
      ? masker.mask(text, plan.action === 'mask' ? rule : undefined, this.rowAscii)
      : plan.json
        ? maskJsonText(masker, text, this.rowAscii)
        : this.maskUnescaped(text);
    if (hasKeys(result.counts) || hasKeys(result.wouldMask))
      addCounts(tally, result.counts, result.wouldMask);
    if (result.value === text) return unchanged;
    // Masked text in a non-text column would not decode: send NULL instead.
    if (!plan.textual || plan.action === 'lossy') return null;
    // jsonb binary keeps its version byte (1).
    return plan.jsonb ? `\u0001${result.value}` : result.value;
  }

  /**
   * A value of a type that is not text, with a backslash: masked only to tell whether it becomes
   * NULL, so read as a client may unescape it too, an array's quoting (\\ and \") undone first.
   */
  private maskUnescaped(text: string): MaskResult {
    const result = this.maskDecoded(text);
    if (result.value !== text) return result;
    const unquoted = text.replace(/\\(.)/gs, '$1');
    const again = unquoted === text ? result : this.maskDecoded(unquoted);
    return again.value === unquoted ? result : again;
  }

  /** maskValue for ASCII raw[start, end): the masked value appended to maskedBytes (inOutput). */
  private maskAscii(
    raw: Buffer,
    start: number,
    end: number,
    plan: ColumnPlan,
    tally: MaskTally | undefined,
    maskAscii: NonNullable<Masker['maskAscii']>,
  ): null | typeof unchanged | typeof inOutput {
    const out = this.maskedBytes;
    const at = out.length;
    if (plan.jsonb) {
      // jsonb binary keeps its version byte (1).
      out.reserve(1);
      out.bytes[out.length++] = 1;
    }
    if (!maskAscii(raw, start, end, tally ?? {}, out)) {
      out.length = at;
      return unchanged;
    }
    if (plan.textual && plan.action !== 'lossy') return inOutput;
    // Masked text in a non-text column would not decode: send NULL instead.
    out.length = at;
    return null;
  }
}

/**
 * A binary array or record read element by element: read whole, an element's length prefix is
 * read with it, and its last byte may be a digit (a 48-byte element's length ends in '0') that
 * hides the card or SSN the element starts with. True when an element holds something an
 * enforcing policy masks (the value then becomes NULL); false when the value is neither, or
 * its elements hold nothing (it is then read whole, as any binary value).
 */
function maskParts(
  masker: Masker,
  raw: Buffer,
  start: number,
  end: number,
  tally: MaskTally | undefined,
  maskDecoded: (text: string) => MaskResult,
): boolean {
  const parts: number[] = [];
  if (!binaryParts(raw, start, end, 0, parts)) return false;
  let masked = false;
  const counts: Record<string, number> = {};
  const wouldMask: Record<string, number> = {};
  for (let k = 0; k < parts.length; k += 2) {
    const from = parts[k]!;
    const to = parts[k + 1]!;
    if (to - from < masker.minScanLength) continue;
    const text = raw.toString(isUtf8(raw.subarray(from, to)) ? 'utf8' : 'latin1', from, to);
    // An element with an escape (a jsonb in an array) is read decoded too.
    const result = text.includes('\\') ? maskDecoded(text) : masker.mask(text);
    addAll(counts, result.counts);
    addAll(wouldMask, result.wouldMask);
    if (result.value !== text) masked = true;
  }
  if (!masked) return false;
  addCounts(tally, counts, wouldMask);
  return true;
}

/** Bytes a binary value's fields are taken off a run of text by (a 4-byte length, count or position). */
const fieldBytes = 4;

/**
 * A binary value of another type (hstore, tsvector, ranges, an extension's), read whole: its
 * length, count and position fields sit beside its text, and their low bytes may be digits (a
 * 48-byte value's length ends in '0') that join a card or SSN the text starts or ends with into
 * a run of digits no detector reads as one. Each run of printable bytes is also read with one to
 * four bytes taken off either end. True when such a reading finds something an enforcing policy
 * masks (the value then becomes NULL); reading the whole value is the caller's.
 */
function maskRuns(
  masker: Masker,
  raw: Buffer,
  start: number,
  end: number,
  tally: MaskTally | undefined,
): boolean {
  for (let at = start; at < end; ) {
    while (at < end && (raw[at]! < 0x20 || raw[at]! > 0x7e)) at++;
    let stop = at;
    while (stop < end && raw[stop]! >= 0x20 && raw[stop]! <= 0x7e) stop++;
    for (let front = 0; front <= fieldBytes; front++)
      for (let back = 0; back <= fieldBytes; back++) {
        if ((front === 0 && back === 0) || stop - back - (at + front) < masker.minScanLength) continue;
        const text = raw.toString('latin1', at + front, stop - back);
        const result = masker.mask(text);
        if (result.value === text) continue;
        addCounts(tally, result.counts, result.wouldMask);
        return true;
      }
    at = stop;
  }
  return false;
}

/**
 * The elements of a binary array (dimensions, then each element's length and bytes) or record
 * (field count, then each field's type, length and bytes) at raw[start, end), appended to `parts`
 * as start and end pairs, with the elements of elements that are arrays or records themselves.
 * False when the bytes are not exactly one or the other.
 */
function binaryParts(raw: Buffer, start: number, end: number, depth: number, parts: number[]): boolean {
  if (depth > 4 || end - start < 4) return false;
  const mark = parts.length;
  const int = (at: number) => raw.readInt32BE(at);
  let at: number;
  let count: number;
  let header: number;
  const first = int(start);
  if (end - start >= 12 && first >= 1 && first <= 6 && (int(start + 4) === 0 || int(start + 4) === 1)) {
    // An array: ndim, has-nulls flag, element type, then size and lower bound per dimension.
    at = start + 12 + 8 * first;
    if (at > end) return false;
    count = 1;
    for (let d = 0; d < first; d++) {
      const size = int(start + 12 + 8 * d);
      if (size < 0) return false;
      count *= size;
    }
    header = 4;
  } else if (first >= 1 && first <= 1664) {
    // A record: field count, then each field's type OID before its length.
    at = start + 4;
    count = first;
    header = 8;
  } else return false;
  for (let i = 0; i < count && at <= end; i++) {
    const length = at + header > end ? -2 : int(at + header - 4);
    at += header;
    if (length === -1) continue;
    if (length < 0 || at + length > end) {
      at = end + 1;
      break;
    }
    parts.push(at, at + length);
    binaryParts(raw, at, at + length, depth + 1, parts);
    at += length;
  }
  if (at === end) return true;
  parts.length = mark;
  return false;
}

/**
 * JSON text read as a client reads it: each string with an escape is read decoded (a card
 * after \u0001, an e-mail written ada\u0040example.com) and, where something is found, written
 * back as a JSON string of its masked value; then the whole text is read as it is, as any value
 * is. The text is valid JSON (the server's json or jsonb output), so a quote after an even run
 * of backslashes ends a string.
 */
export function maskJsonText(masker: Masker, text: string, ascii = false): MaskResult {
  let out = '';
  let copied = 0;
  const counts: Record<string, number> = {};
  const wouldMask: Record<string, number> = {};
  for (let i = text.indexOf('"'); i >= 0; i = text.indexOf('"', i + 1)) {
    // i is an opening quote: find its closing one, noting whether the string has an escape.
    let end = i + 1;
    let escapes = false;
    while (end < text.length && text.charCodeAt(end) !== 0x22) {
      if (text.charCodeAt(end) === 0x5c) {
        escapes = true;
        end++;
      }
      end++;
    }
    if (end >= text.length) break;
    if (escapes) {
      let value: string | undefined;
      try {
        value = JSON.parse(text.slice(i, end + 1)) as string;
      } catch {
        value = undefined;
      }
      if (value !== undefined) {
        const result = masker.mask(value);
        addAll(counts, result.counts);
        addAll(wouldMask, result.wouldMask);
        if (result.value !== value) {
          out += text.slice(copied, i) + JSON.stringify(result.value);
          copied = end + 1;
        }
      }
    }
    i = end;
  }
  const decoded = copied === 0 ? text : out + text.slice(copied);
  // A string written back may hold what its escapes wrote (é for \u00e9): ASCII no longer.
  const whole = masker.mask(decoded, undefined, ascii && decoded === text);
  addAll(counts, whole.counts);
  addAll(wouldMask, whole.wouldMask);
  return { value: whole.value, counts, wouldMask };
}

/** Whether raw[start, end) holds a backslash: a loop for a short value, a native search for a long one. */
function hasBackslash(raw: Buffer, start: number, end: number): boolean {
  if (end - start > 64) return raw.subarray(start, end).includes(0x5c);
  for (let i = start; i < end; i++) if (raw[i] === 0x5c) return true;
  return false;
}

function addAll(into: Record<string, number>, from: Record<string, number>): void {
  for (const key in from) into[key] = (into[key] ?? 0) + from[key]!;
}

/**
 * A value read by what its type holds. A bytea is its bytes (never its hex digits): text found
 * in them is masked and the value stays a bytea of the masked bytes. Binary int8, numeric and
 * inet are scanned as the text the server would have sent, and become NULL when anything is found.
 */
function maskHeld(
  masker: Masker,
  raw: Buffer,
  start: number,
  end: number,
  held: Held,
  binary: boolean,
  tally: MaskTally | undefined,
): string | Buffer | null | typeof unchanged {
  if (held !== 'bytea') {
    const text = heldText(held, raw, start, end);
    const result = masker.mask(text);
    if (hasKeys(result.counts) || hasKeys(result.wouldMask))
      addCounts(tally, result.counts, result.wouldMask);
    return result.value === text ? unchanged : null;
  }
  const decoded = binary
    ? { bytes: raw.subarray(start, end), hex: false }
    : byteaBytes(raw.subarray(start, end));
  if (decoded.bytes.length < masker.minScanLength) return unchanged;
  // Bytes that are not UTF-8 are read one character per byte, so they come back unchanged.
  const encoding = isUtf8(decoded.bytes) ? 'utf8' : 'latin1';
  const text = decoded.bytes.toString(encoding);
  const result = masker.mask(text);
  if (hasKeys(result.counts) || hasKeys(result.wouldMask)) addCounts(tally, result.counts, result.wouldMask);
  if (result.value === text) return unchanged;
  const masked = Buffer.from(result.value, encoding);
  return binary ? masked : byteaText(masked, decoded.hex);
}

/**
 * A COPY TO STDOUT row (the CopyData message `raw`): detectors over each tab-separated field
 * (text format) or over the whole line (CSV). The same message when nothing changed. Where
 * there is a backslash, a json or jsonb value's escapes may hide a finding: a text field is
 * also read as JSON (maskCopyField), a CSV line, whose quoting JSON cannot be read through,
 * also with its escapes decoded (maskEncoded).
 */
export function maskCopyRow(masker: Masker, raw: Buffer, csv: boolean, tally: MaskTally | undefined): Buffer {
  if (!masker.scans) return raw;
  const line = raw.toString('utf8', 5);
  const fields = csv ? [line] : line.split('\t');
  let changed = false;
  const masked = fields.map((field) => {
    const result = !field.includes('\\')
      ? masker.mask(field)
      : csv
        ? maskEncoded((text) => masker.mask(text))(field)
        : maskCopyField(masker, field);
    addCounts(tally, result.counts, result.wouldMask);
    if (result.value !== field) changed = true;
    return result.value;
  });
  return changed ? encodeCopyData(Buffer.from(masked.join('\t'), 'utf8')) : raw;
}

/**
 * A COPY text field with an escape: read as it is, and as its JSON (a json or jsonb column's text
 * after COPY's escapes are undone) is read by maskJsonText; where that finds what reading it as
 * it is does not, its masked text is written back with COPY's escapes.
 */
function maskCopyField(masker: Masker, field: string): MaskResult {
  const plain = masker.mask(field);
  const text = field.replace(copyEscapeRe, (pair) => copyUnescapes[pair[1]!] ?? pair.slice(1));
  if (!text.includes('\\')) return plain;
  const read = maskJsonText(masker, text);
  if (read.value === text) return plain;
  return { ...read, value: read.value.replace(copyEscapedRe, (ch) => copyEscapes[ch]!) };
}

/** COPY text format's escapes as the server writes them (backslash, and the control characters it names). */
const copyEscapeRe = /\\[\\bfnrtv]/g;
const copyUnescapes: Record<string, string> = { b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v' };
const copyEscapedRe = /[\\\b\f\n\r\t\v]/g;
const copyEscapes: Record<string, string> = {
  '\\': '\\\\',
  '\b': '\\b',
  '\f': '\\f',
  '\n': '\\n',
  '\r': '\\r',
  '\t': '\\t',
  '\v': '\\v',
};

/** A FunctionCallResponse whose value would be masked becomes a NULL result. */
export function maskFunctionResult(masker: Masker, raw: Buffer): Buffer {
  const text = raw.toString('utf8', 5);
  const result = masker.mask(text);
  if (result.value === text) return raw;
  return Buffer.from([0x56, 0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff]);
}

export function maskText(masker: Masker | undefined, text: string): string {
  return masker ? masker.mask(text).value : text;
}

export const rowDetailWithheld = 'airlock: detail withheld (it shows values of the row, which may be masked)';

/** Fields of a fixed vocabulary or digits (severity, code, positions): nothing there to find. */
const unscannedFields = new Set(['S', 'V', 'C', 'P', 'p']);

/**
 * Error and notice text can carry values: CAST(x AS int) puts the value in the message, and a
 * PL/pgSQL RAISE sets any field (COLUMN, TABLE, CONSTRAINT, DATATYPE, SCHEMA) to any text. Every
 * field but the fixed ones is masked in place. An integrity violation's detail shows stored
 * values of the row it names ("Failing row contains (…)", "Key (a, b)=(…) already exists"), in
 * no column the layout knows, so under enforced column rules it is withheld.
 */
export function maskFields(masker: Masker | undefined, fields: Fields): Fields {
  if (!masker) return fields;
  for (const [code, value] of fields) {
    if (!unscannedFields.has(code)) fields.set(code, masker.mask(value).value);
  }
  if (masker.columnsEnforced && fields.has('D') && fields.get('C')?.startsWith('23'))
    fields.set('D', rowDetailWithheld);
  return fields;
}

/** A NoticeResponse with its text fields masked. */
export function maskNotice(masker: Masker | undefined, raw: Buffer): Buffer {
  if (!masker) return raw;
  return encodeFields('N', maskFields(masker, decodeFields(raw.subarray(5))));
}

/** Adds a masking result's counts to a request's (zero counts leave no key). */
/** A notification's channel and payload carry whatever the notifying statement or trigger put there. */
export function maskNotification(masker: Masker | undefined, raw: Buffer): Buffer {
  if (!masker) return raw;
  const { pid, channel, payload } = decodeNotification(raw.subarray(5));
  const maskedChannel = masker.mask(channel).value;
  const maskedPayload = masker.mask(payload).value;
  if (maskedChannel === channel && maskedPayload === payload) return raw;
  return notificationResponse(pid, maskedChannel, maskedPayload);
}

/** A reported setting's value: set_config(name, value) sets it from any row. */
export function maskParameterStatus(masker: Masker | undefined, raw: Buffer): Buffer {
  if (!masker) return raw;
  const [name, value] = decodeParameterStatus(raw.subarray(5));
  const masked = masker.mask(value).value;
  return masked === value ? raw : parameterStatus(name, masked);
}

export function addCounts(
  tally: MaskTally | undefined,
  counts: Record<string, number>,
  wouldMask: Record<string, number> | undefined,
): void {
  if (!tally) return;
  for (const key in counts) {
    const n = counts[key]!;
    if (n === 0) continue;
    tally.masked ??= {};
    tally.masked[key] = (tally.masked[key] ?? 0) + n;
  }
  for (const key in wouldMask) {
    const n = wouldMask[key]!;
    if (n === 0) continue;
    tally.wouldMask ??= {};
    tally.wouldMask[key] = (tally.wouldMask[key] ?? 0) + n;
  }
}

function hasKeys(object: Record<string, number> | undefined): boolean {
  for (const _ in object) return true;
  return false;
}
