// Masking of response values. compileMasking turns the policies' masking rules into a plan
// once per bundle; the plan then runs on every text value of every row, so the path for a
// value with nothing to mask is a pre-scan that rules detectors out (native searches for long
// values without a digit, one JS pass otherwise), and it returns the same string. ASCII values
// of rows and JSON bodies are masked on their bytes (maskAscii) to the same bytes, without a
// string per value; text beyond ASCII, where disguises live, keeps maskText.
//
// Strategies:
//   redact  → "[REDACTED:<detector or pattern>]" for findings, "[REDACTED]" for whole columns
//   partial → every letter and digit but the last 4 becomes '*', separators stay
//             ("4111-1111-1111-1111" → "****-****-****-1111"); a value with fewer than 8
//             letters and digits is starred entirely, so at most half of it is ever shown
//   hash    → "h:" and 12 hex digits of HMAC-SHA256(key, value): stable per key, so joins and
//             group-bys still work, and not reversible without the key
// Values are text here; what a masked non-text column (int, date, bytea) becomes on the wire
// (a changed type OID, or NULL) is the protocol layer's decision.
import { createHmac } from 'node:crypto';
import { RE2JS } from 're2js';
import type { BundlePolicy } from '../../api/bundle.ts';
import type { MaskingRule } from '../../api/v1alpha1.ts';
import {
  type DetectorScanner,
  detectorScanners,
  detectorView,
  nativeScanFrom,
  type Profile,
  profile,
  profileBytes,
  type Span,
} from './detectors.ts';
import { matchGlob, splitColumnGlob } from './glob.ts';

export type Strategy = MaskingRule['strategy'];

/** redact > hash > partial: how much of the value survives. */
const strength: Record<Strategy, number> = { partial: 1, hash: 2, redact: 3 };

export interface ColumnMask {
  strategy: Strategy;
  policy: string;
  /** The masking rule's name. */
  rule: string;
  /** The column glob that matched. */
  glob: string;
  /** Count key: <rule>/<glob>. */
  key: string;
  /** Only audit-mode policies mask this column: the value is left alone and counted in wouldMask. */
  audit: boolean;
  /** Count keys of audit-mode rules that also match (counted in wouldMask). */
  wouldMask: string[];
}

export interface MaskResult {
  /** The same string when nothing was masked. */
  value: string;
  counts: Record<string, number>;
  /** What audit-mode policies would have masked. */
  wouldMask: Record<string, number>;
}

export interface MaskingPlan {
  /** Some detector or pattern scans free text (so maskText on an unmasked column can change it). */
  hasScanners: boolean;
  /** Some rule masks columns (so columnRule can return something). */
  hasColumns: boolean;
  /**
   * Shortest text a detector or pattern can find something in (Infinity without scanners):
   * maskText leaves shorter text as it is, so a caller may skip it without making a string.
   */
  minLength: number;
  columnRule(qualified: { schema: string; table: string; column: string }): ColumnMask | undefined;
  /** ascii: the caller knows the value is ASCII, so there is no disguise to look through. */
  maskText(value: string, column?: ColumnMask, ascii?: boolean): MaskResult;
  /**
   * For ASCII text in bytes[start, end): false when no detector or pattern can find anything in
   * it (maskText would return it as it is), read from the bytes without making a string.
   */
  mayFind(bytes: Uint8Array, start: number, end: number): boolean;
  /**
   * maskText over the ASCII text in bytes[start, end), read and masked as bytes (no string is
   * made unless a detector without a byte search or a pattern must read one): appends the masked
   * text to `out` and returns true, or returns false when nothing changed. Counts go into `tally`.
   * The result is byte for byte maskText's. It reads the text as it is: a caller whose maskText
   * also reads escapes decoded (sidecar/policy/encoded.ts) gives text holding one to maskText.
   */
  maskAscii(bytes: Buffer, start: number, end: number, tally: Tally, out: ByteOutput): boolean;
  /**
   * Every label a redaction writes is letters, digits, dots, dashes and underscores, so
   * maskAscii's output is ASCII that needs no escaping in JSON and holds no escape of its own.
   */
  plainLabels: boolean;
}

/** Where masked counts are added (created at the first count). */
export interface Tally {
  masked?: Record<string, number>;
  wouldMask?: Record<string, number>;
}

/**
 * Copies from[start, end) to to[at…] and returns the count: a loop for a few bytes, where
 * Buffer.copy's native call costs more than the copy.
 */
export function copyBytes(from: Buffer, start: number, end: number, to: Buffer, at: number): number {
  if (end - start > 64) return from.copy(to, at, start, end);
  for (let i = start; i < end; i++) to[at + i - start] = from[i]!;
  return end - start;
}

/** A growing byte buffer maskAscii appends to: bytes[0, length) is what was written. */
export class ByteOutput {
  bytes: Buffer = Buffer.allocUnsafe(256);
  length = 0;

  /** Makes room for `count` more bytes. */
  reserve(count: number): void {
    if (this.length + count <= this.bytes.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.bytes.length * 2, this.length + count));
    this.bytes.copy(next, 0, 0, this.length);
    this.bytes = next;
  }
}

export interface MaskingOptions {
  /** Key for the hash strategy; per bundle, so hashes cannot be compared across tenants. */
  hashKey?: string | Uint8Array;
  /** false: run every scanner on every value, skipping the cheap prefilters (tests compare). */
  prefilter?: boolean;
}

export const defaultHashKey = 'airlock-mask-v1';

/** A user pattern compiled with RE2 (linear time). */
export interface CompiledPattern {
  regex: string;
  re: RE2JS;
}

export function compilePattern(
  regex: string,
): { ok: true; pattern: CompiledPattern } | { ok: false; error: string } {
  try {
    return { ok: true, pattern: { regex, re: RE2JS.compile(regex) } };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    return { ok: false, error: `invalid RE2 pattern ${JSON.stringify(regex)}: ${message}` };
  }
}

export function applyStrategy(
  strategy: Strategy,
  value: string,
  label: string,
  hashKey: string | Uint8Array,
): string {
  switch (strategy) {
    case 'redact':
      return label ? `[REDACTED:${label}]` : '[REDACTED]';
    case 'hash':
      return `h:${createHmac('sha256', hashKey).update(value).digest('hex').slice(0, 12)}`;
    case 'partial':
      return partial(value);
  }
}

/** Letters and digits as isAlnum reads them: every UTF-16 code unit beyond ASCII counts. */
const alnumRe = /[0-9A-Za-z\u0080-\uffff]/g;

/** partial() over ASCII bytes[start, end), written into out at `at`: the same number of bytes. */
function partialBytes(bytes: Uint8Array, start: number, end: number, out: Uint8Array, at: number): void {
  let alnum = 0;
  let from = start;
  for (let i = end - 1; i >= start && alnum < 8; i--) {
    if (!isAlnum(bytes[i]!)) continue;
    if (++alnum === 4) from = i;
  }
  if (alnum < 8) from = end;
  for (let i = start; i < end; i++) {
    const ch = bytes[i]!;
    out[at + i - start] = i < from && isAlnum(ch) ? 42 : ch;
  }
}

function partial(value: string): string {
  // From the end: where the fourth-last letter or digit is, and whether there are eight at all.
  let alnum = 0;
  let from = 0;
  for (let i = value.length - 1; i >= 0 && alnum < 8; i--) {
    if (!isAlnum(value.charCodeAt(i))) continue;
    if (++alnum === 4) from = i;
  }
  if (alnum < 8) return value.replace(alnumRe, '*');
  // The last four letters and digits stay: everything before the fourth-last is starred.
  return value.slice(0, from).replace(alnumRe, '*') + value.slice(from);
}

function isAlnum(ch: number): boolean {
  return (ch >= 48 && ch <= 57) || (ch >= 65 && ch <= 90) || (ch >= 97 && ch <= 122) || ch > 127;
}

// ---------------------------------------------------------------------------------------

interface Consumer {
  key: string;
  strategy: Strategy;
}

/** One detector or pattern, shared by every rule that uses it. */
interface Scanner {
  label: string;
  /** Reads the value with its disguises undone (built-in detectors); patterns read it as it is. */
  view: boolean;
  minLength: number;
  maybe(value: string | undefined, p: Profile, length: number): boolean;
  find(value: string, out: Span[]): void;
  findBytes: DetectorScanner['findBytes'];
  mayMatchBytes: DetectorScanner['mayMatchBytes'];
  enforce: Consumer[];
  audit: Consumer[];
  /** Strongest enforce strategy. */
  strategy: Strategy | undefined;
}

interface Finding extends Span {
  scanner: Scanner;
}

const noCounts: Record<string, number> = Object.freeze({}) as Record<string, number>;

export function compileMasking(policies: BundlePolicy[], options: MaskingOptions = {}): MaskingPlan {
  const hashKey = options.hashKey ?? defaultHashKey;
  const scanners = new Map<string, Scanner>();
  const columnRules: { policy: BundlePolicy; rule: MaskingRule }[] = [];
  for (const policy of policies) {
    const audit = policy.mode === 'audit';
    for (const rule of policy.masking) {
      if (rule.columns && rule.columns.length > 0) columnRules.push({ policy, rule });
      for (const detector of rule.detectors ?? []) {
        const scanner = scannerFor(scanners, `d:${detector}`, () => fromDetector(detectorScanners[detector]));
        (audit ? scanner.audit : scanner.enforce).push({
          key: propertyName(`${rule.name}/${detector}`),
          strategy: rule.strategy,
        });
      }
      for (const pattern of rule.patterns ?? []) {
        const compiled = compilePattern(pattern.regex);
        // The operator validates patterns before they reach a bundle; one that still fails to
        // compile must not silently mask nothing.
        if (!compiled.ok) throw new Error(`masking rule ${rule.name} of ${policy.name}: ${compiled.error}`);
        const scanner = scannerFor(scanners, `p:${pattern.name}:${pattern.regex}`, () =>
          fromPattern(pattern.name, compiled.pattern),
        );
        (audit ? scanner.audit : scanner.enforce).push({
          key: propertyName(`${rule.name}/${pattern.name}`),
          strategy: rule.strategy,
        });
      }
    }
  }
  const list = [...scanners.values()];
  for (const scanner of list) {
    scanner.strategy = scanner.enforce.reduce<Strategy | undefined>(
      (best, c) => (best === undefined || strength[c.strategy] > strength[best] ? c.strategy : best),
      undefined,
    );
  }
  const minLength = list.length === 0 ? Infinity : Math.min(...list.map((s) => s.minLength));
  const prefilter = options.prefilter ?? true;
  const scratch: Profile = {
    digits: 0,
    upper: 0,
    at: 0,
    dash: 0,
    dot: 0,
    colon: 0,
    plus: 0,
    space: 0,
    nonAscii: 0,
    cardRun: 0,
  };
  const columnCache = new Map<string, ColumnMask | undefined>();

  function columnRule(q: { schema: string; table: string; column: string }): ColumnMask | undefined {
    const cacheKey = `${q.schema}\u0000${q.table}\u0000${q.column}`;
    if (columnCache.has(cacheKey)) return columnCache.get(cacheKey);
    let enforce: ColumnMask | undefined;
    let audit: ColumnMask | undefined;
    const wouldMask: string[] = [];
    const seen = new Set<BundlePolicy>();
    for (const { policy, rule } of columnRules) {
      // The first matching rule of each policy decides for that policy.
      if (seen.has(policy)) continue;
      const glob = rule.columns!.find((g) => columnGlobMatches(g, q));
      if (glob === undefined) continue;
      seen.add(policy);
      const mask: ColumnMask = {
        strategy: rule.strategy,
        policy: policy.name,
        rule: rule.name,
        glob,
        key: propertyName(`${rule.name}/${glob}`),
        audit: policy.mode === 'audit',
        wouldMask,
      };
      if (mask.audit) {
        wouldMask.push(mask.key);
        audit ??= mask;
      } else if (!enforce || strength[mask.strategy] > strength[enforce.strategy]) enforce = mask;
    }
    const result = enforce ?? (audit && { ...audit, wouldMask: wouldMask.filter((k) => k !== audit!.key) });
    columnCache.set(cacheKey, result);
    return result;
  }

  function maskText(value: string, column?: ColumnMask, ascii = false): MaskResult {
    if (column) {
      const wouldMask = column.wouldMask.length === 0 ? noCounts : countKeys(column.wouldMask);
      if (column.audit) return { value, counts: noCounts, wouldMask: { ...wouldMask, [column.key]: 1 } };
      return {
        value: applyStrategy(column.strategy, value, '', hashKey),
        counts: { [column.key]: 1 },
        wouldMask,
      };
    }
    if (prefilter && value.length < minLength) return { value, counts: noCounts, wouldMask: noCounts };
    // Digits of other scripts, invisible separators, fullwidth forms: detectors read through
    // them. The profile tells whether there is anything beyond ASCII to look at.
    if (prefilter) profile(value, scratch);
    const view = ascii || (prefilter && scratch.nonAscii === 0) ? undefined : detectorView(value);
    const seen = view ? view.text : value;
    if (prefilter && view) profile(seen, scratch);
    let findings: Finding[] | undefined;
    for (const scanner of list) {
      const input = scanner.view ? seen : value;
      if (prefilter && !scanner.maybe(input, scratch, input.length)) continue;
      const spans: Span[] = [];
      scanner.find(input, spans);
      if (spans.length === 0) continue;
      findings ??= [];
      const at = scanner.view ? view?.at : undefined;
      for (const span of spans) {
        findings.push(
          at
            ? { start: at[span.start]!, end: at[span.end]!, scanner }
            : { start: span.start, end: span.end, scanner },
        );
      }
    }
    if (!findings) return { value, counts: noCounts, wouldMask: noCounts };
    return applyFindings(value, findings, hashKey);
  }

  const bytesProfile: Profile = { ...scratch };

  function mayFind(bytes: Uint8Array, start: number, end: number): boolean {
    if (end - start < minLength) return false;
    if (!prefilter) return true;
    profileBytes(bytes, start, end, bytesProfile);
    // Beyond ASCII there may be disguises: maskText looks through them.
    if (bytesProfile.nonAscii > 0) return true;
    for (const scanner of list) if (scanner.maybe(undefined, bytesProfile, end - start)) return true;
    return false;
  }

  /** Spans found by one scanner; a new one after each that found some (emptying one is slower). */
  let asciiSpans: Span[] = [];

  function maskAscii(bytes: Buffer, start: number, end: number, tally: Tally, out: ByteOutput): boolean {
    const length = end - start;
    if (prefilter && length < minLength) return false;
    // Longer text is read by native searches, which a string allows (see profile()).
    if (length >= nativeScanFrom) return maskLongAscii(bytes, start, end, tally, out);
    if (prefilter) profileBytes(bytes, start, end, bytesProfile);
    let findings: Finding[] | undefined;
    /** The text as a string, made only for a scanner that has no byte search. */
    let text: string | undefined;
    let spans = asciiSpans;
    for (const scanner of list) {
      if (prefilter && !scanner.maybe(undefined, bytesProfile, length)) continue;
      if (scanner.findBytes) scanner.findBytes(bytes, start, end, spans);
      else if (prefilter && scanner.mayMatchBytes && !scanner.mayMatchBytes(bytes, start, end)) continue;
      else {
        text ??= bytes.toString('latin1', start, end);
        if (prefilter && !scanner.maybe(text, bytesProfile, length)) continue;
        scanner.find(text, spans);
      }
      if (spans.length === 0) continue;
      findings ??= [];
      for (const span of spans) findings.push({ start: span.start, end: span.end, scanner });
      spans = asciiSpans = [];
    }
    if (!findings) return false;
    return writeFindings(bytes, start, end, findings, tally, out, hashKey);
  }

  /** maskAscii by maskText over the text as a string. */
  function maskLongAscii(bytes: Buffer, start: number, end: number, tally: Tally, out: ByteOutput): boolean {
    const text = bytes.toString('latin1', start, end);
    const result = maskText(text, undefined, true);
    for (const key in result.counts) {
      tally.masked ??= {};
      tally.masked[key] = (tally.masked[key] ?? 0) + result.counts[key]!;
    }
    for (const key in result.wouldMask) {
      tally.wouldMask ??= {};
      tally.wouldMask[key] = (tally.wouldMask[key] ?? 0) + result.wouldMask[key]!;
    }
    if (result.value === text) return false;
    out.reserve(Buffer.byteLength(result.value));
    out.length += out.bytes.write(result.value, out.length);
    return true;
  }

  return {
    hasScanners: list.length > 0,
    hasColumns: columnRules.length > 0,
    minLength,
    columnRule,
    maskText,
    mayFind,
    maskAscii,
    plainLabels: list.every((scanner) => /^[A-Za-z0-9._-]*$/.test(scanner.label)),
  };
}

function scannerFor(scanners: Map<string, Scanner>, key: string, make: () => Scanner): Scanner {
  let scanner = scanners.get(key);
  if (!scanner) {
    scanner = make();
    scanners.set(key, scanner);
  }
  return scanner;
}

function fromDetector(d: DetectorScanner): Scanner {
  return {
    label: d.name,
    view: true,
    minLength: d.minLength,
    maybe: d.maybe,
    find: d.find,
    findBytes: d.findBytes,
    mayMatchBytes: d.mayMatchBytes,
    enforce: [],
    audit: [],
    strategy: undefined,
  };
}

function fromPattern(name: string, pattern: CompiledPattern): Scanner {
  const re = pattern.re;
  return {
    label: name,
    view: false,
    minLength: 1,
    // RE2's DFA answers "is there a match" without building match state.
    maybe: (value) => value === undefined || re.test(value),
    find(value, out) {
      const m = re.matcher(value);
      let from = 0;
      while (from <= value.length && m.find(from)) {
        const start = m.start();
        const end = m.end();
        if (end > start) out.push({ start, end });
        from = end > start ? end : start + 1;
      }
    },
    findBytes: undefined,
    mayMatchBytes: undefined,
    enforce: [],
    audit: [],
    strategy: undefined,
  };
}

/**
 * The text as V8 keeps a property's name. Counts are kept under these keys on the hot path
 * (tally.masked[key]), and a key built by concatenation is another string with the same text:
 * code optimised for the name deoptimises on it. sidecar/postgres/masking.bench.ts, whose
 * tallies are plain objects of one key, had writeFindings deoptimised and optimised again about
 * a thousand times in 900,000 rows (3.3 against 1.2-1.7 µs per row).
 */
function propertyName(text: string): string {
  return Object.keys({ [text]: 0 })[0]!;
}

function countKeys(keys: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const key of keys) counts[key] = (counts[key] ?? 0) + 1;
  return counts;
}

function applyFindings(value: string, findings: Finding[], hashKey: string | Uint8Array): MaskResult {
  const counts: Record<string, number> = {};
  const wouldMask: Record<string, number> = {};
  let audited = false;
  for (const f of findings) {
    for (const c of f.scanner.enforce) counts[c.key] = (counts[c.key] ?? 0) + 1;
    for (const c of f.scanner.audit) {
      wouldMask[c.key] = (wouldMask[c.key] ?? 0) + 1;
      audited = true;
    }
  }
  const masking =
    findings.length === 1
      ? findings[0]!.scanner.strategy === undefined
        ? []
        : findings
      : findings.filter((f) => f.scanner.strategy !== undefined);
  if (masking.length === 0) return { value, counts: noCounts, wouldMask };
  if (masking.length > 1) masking.sort((a, b) => a.start - b.start || b.end - a.end);
  // Overlapping findings (a card inside an IBAN, a JWT after "Bearer") merge into one span,
  // masked with the strongest strategy among them.
  let out = '';
  let cursor = 0;
  for (let i = 0; i < masking.length; ) {
    const first = masking[i]!;
    let end = first.end;
    let strategy = first.scanner.strategy!;
    let label = first.scanner.label;
    let j = i + 1;
    for (; j < masking.length && masking[j]!.start < end; j++) {
      const next = masking[j]!;
      end = Math.max(end, next.end);
      if (strength[next.scanner.strategy!] > strength[strategy]) {
        strategy = next.scanner.strategy!;
        label = next.scanner.label;
      }
    }
    out +=
      value.slice(cursor, first.start) +
      applyStrategy(strategy, value.slice(first.start, end), label, hashKey);
    cursor = end;
    i = j;
  }
  out += value.slice(cursor);
  return { value: out, counts, wouldMask: audited ? wouldMask : noCounts };
}

/**
 * applyFindings over ASCII bytes[start, end) (findings count from start): counts into tally, the
 * masked text appended to out. False when no finding is masked (audit-mode only).
 */
function writeFindings(
  bytes: Buffer,
  start: number,
  end: number,
  findings: Finding[],
  tally: Tally,
  out: ByteOutput,
  hashKey: string | Uint8Array,
): boolean {
  let masks = 0;
  for (const f of findings) {
    if (f.scanner.strategy !== undefined) masks++;
    for (const c of f.scanner.enforce) {
      tally.masked ??= {};
      tally.masked[c.key] = (tally.masked[c.key] ?? 0) + 1;
    }
    for (const c of f.scanner.audit) {
      tally.wouldMask ??= {};
      tally.wouldMask[c.key] = (tally.wouldMask[c.key] ?? 0) + 1;
    }
  }
  if (masks === 0) return false;
  const masking =
    masks === findings.length ? findings : findings.filter((f) => f.scanner.strategy !== undefined);
  if (masking.length > 1) masking.sort((a, b) => a.start - b.start || b.end - a.end);
  let cursor = start;
  for (let i = 0; i < masking.length; ) {
    const first = masking[i]!;
    let spanEnd = first.end;
    let strategy = first.scanner.strategy!;
    let label = first.scanner.label;
    let j = i + 1;
    for (; j < masking.length && masking[j]!.start < spanEnd; j++) {
      const next = masking[j]!;
      spanEnd = Math.max(spanEnd, next.end);
      if (strength[next.scanner.strategy!] > strength[strategy]) {
        strategy = next.scanner.strategy!;
        label = next.scanner.label;
      }
    }
    const from = start + first.start;
    const to = start + spanEnd;
    out.reserve(from - cursor);
    out.length += copyBytes(bytes, cursor, from, out.bytes, out.length);
    if (strategy === 'partial') {
      out.reserve(to - from);
      partialBytes(bytes, from, to, out.bytes, out.length);
      out.length += to - from;
    } else {
      const masked =
        strategy === 'hash'
          ? `h:${createHmac('sha256', hashKey).update(bytes.subarray(from, to)).digest('hex').slice(0, 12)}`
          : applyStrategy('redact', '', label, hashKey);
      out.reserve(Buffer.byteLength(masked));
      out.length += out.bytes.write(masked, out.length);
    }
    cursor = to;
    i = j;
  }
  out.reserve(end - cursor);
  out.length += copyBytes(bytes, cursor, end, out.bytes, out.length);
  return true;
}

function columnGlobMatches(glob: string, q: { schema: string; table: string; column: string }): boolean {
  const g = splitColumnGlob(glob);
  if (!matchGlob(g.column, q.column, true)) return false;
  if (g.table !== undefined && !matchGlob(g.table, q.table, true)) return false;
  return g.schema === undefined || matchGlob(g.schema, q.schema, true);
}
