// Masking of Kubernetes API objects in every shape a response carries them: one object, a list's
// items, a watch event's object, a Table's rows (kubectl get, -o wide). A Secret's data and
// stringData are always redacted, whoever asks and whatever the policy says, and so is the
// Secret kept in a kubectl.kubernetes.io/last-applied-configuration annotation; the policies'
// detectors mask every other string, and their JSON paths select values in each object (the
// path is read from the object's root, whatever shape carries it). Numbers keep their source
// text, so int64 values survive a response that had something masked.
import { type JsonPathRule, maskSelected, matchesJsonPath } from '../policy/json-paths.ts';
import type { MaskingPlan } from '../policy/masking.ts';

export const lastApplied = 'kubectl.kubernetes.io/last-applied-configuration';
/** What a Secret's data value becomes: still base64, so clients that decode it (kubectl describe) do. */
export const redactedData = Buffer.from('[REDACTED]').toString('base64');
export const redactedText = '[REDACTED]';
/** The count key of the built-in Secret redaction. */
export const secretCountKey = 'secrets/data';

/** JSON.rawJSON and JSON.isRawJSON (V8 ships them; TypeScript's lib does not declare them yet). */
const rawJson = JSON as JSON & { rawJSON(text: string): object; isRawJSON(value: unknown): boolean };

type Json = null | boolean | number | string | Json[] | { [key: string]: Json } | object;

export interface ObjectMasking {
  plan: MaskingPlan;
  jsonPaths: JsonPathRule[];
  hashKey: string | Uint8Array;
}

/** Counts for one response. */
export interface MaskTally {
  counts: Record<string, number>;
  wouldMask: Record<string, number>;
  changed: boolean;
}

export const newTally = (): MaskTally => ({ counts: {}, wouldMask: {}, changed: false });

/**
 * Parses JSON, keeping a number's source text where reading it as a double would change it. Only
 * a run of 16 digits or more can lose precision: text without one skips the (slower) reviver.
 */
export function parseJson(text: string): Json {
  if (!/[0-9]{16}/.test(text)) return JSON.parse(text);
  return JSON.parse(text, (_key, value, context?: { source?: string }) =>
    typeof value === 'number' && context?.source !== undefined && String(value) !== context.source
      ? rawJson.rawJSON(context.source)
      : value,
  );
}

/**
 * Masks a response document in place. `secrets`: the request was for core Secrets, so every
 * object in it is one (list items carry no kind).
 */
export function maskDocument(
  document: Json,
  secrets: boolean,
  masking: ObjectMasking,
  tally: MaskTally,
): Json {
  if (!isObject(document)) return maskValue(document, undefined, masking, tally);
  const kind = typeof document.kind === 'string' ? document.kind : '';
  // A watch event: {type, object}, whose object may be a Table (kubectl get --watch).
  if (kind === '' && typeof document.type === 'string' && isObject(document.object)) {
    document.object = maskDocument(document.object, secrets, masking, tally);
    return document;
  }
  if (kind === 'Table' && Array.isArray(document.rows)) {
    for (const row of document.rows) {
      if (!isObject(row)) continue;
      if (Array.isArray(row.cells)) row.cells = row.cells.map((c) => maskValue(c, undefined, masking, tally));
      if (isObject(row.object)) row.object = maskObject(row.object, secrets, masking, tally);
    }
    return maskRest(document, ['rows'], masking, tally);
  }
  if (Array.isArray(document.items) && (kind === '' || kind.endsWith('List'))) {
    document.items = document.items.map((item) => maskObject(item, secrets, masking, tally));
    return maskRest(document, ['items'], masking, tally);
  }
  return maskObject(document, secrets, masking, tally);
}

/** The fields of a list or table other than its objects: detectors only. */
function maskRest(document: Record<string, Json>, skip: string[], masking: ObjectMasking, tally: MaskTally) {
  for (const [key, value] of Object.entries(document))
    if (!skip.includes(key)) document[key] = maskValue(value, undefined, masking, tally);
  return document;
}

/** One API object: its JSON paths from its own root. */
export function maskObject(object: Json, secrets: boolean, masking: ObjectMasking, tally: MaskTally): Json {
  if (!isObject(object)) return maskValue(object, undefined, masking, tally);
  const secret = secrets || object.kind === 'Secret';
  if (secret) redactSecret(object, tally);
  const annotations = isObject(object.metadata) ? object.metadata.annotations : undefined;
  if (isObject(annotations) && typeof annotations[lastApplied] === 'string')
    annotations[lastApplied] = maskLastApplied(annotations[lastApplied] as string, secret, masking, tally);
  return maskValue(object, masking.jsonPaths.length > 0 ? [] : undefined, masking, tally);
}

function redactSecret(object: Record<string, Json>, tally: MaskTally): void {
  for (const [field, replacement] of [
    ['data', redactedData],
    ['stringData', redactedText],
  ] as const) {
    const values = object[field];
    if (!isObject(values)) continue;
    for (const key of Object.keys(values)) {
      if (values[key] === null || values[key] === replacement) continue;
      values[key] = replacement;
      tally.counts[secretCountKey] = (tally.counts[secretCountKey] ?? 0) + 1;
      tally.changed = true;
    }
  }
}

/** The object kubectl apply last applied, masked as the object itself; redacted whole when it cannot be read. */
function maskLastApplied(text: string, secret: boolean, masking: ObjectMasking, tally: MaskTally): string {
  let applied: Json;
  try {
    applied = parseJson(text);
  } catch {
    if (!secret) return text;
    tally.counts[secretCountKey] = (tally.counts[secretCountKey] ?? 0) + 1;
    tally.changed = true;
    return redactedText;
  }
  const inner = newTally();
  const masked = maskObject(applied, secret, masking, inner);
  if (!inner.changed) return text;
  merge(tally, inner);
  tally.changed = true;
  return JSON.stringify(masked);
}

/**
 * Walks a value: strings through the detectors, and, where `path` is given, every scalar
 * selected by a JSON path replaced. Keys are names, not values: they are left alone.
 */
function maskValue(
  value: Json,
  path: (string | number)[] | undefined,
  masking: ObjectMasking,
  tally: MaskTally,
): Json {
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++)
      value[i] = maskValue(value[i]!, path && [...path, i], masking, tally);
    return value;
  }
  if (isObject(value)) {
    // A Secret inside another object (a custom resource's template, a List's item) is one too.
    if (value.kind === 'Secret') redactSecret(value, tally);
    for (const key of Object.keys(value))
      value[key] = maskValue(value[key]!, path && [...path, key], masking, tally);
    return value;
  }
  if (path !== undefined && value !== null) {
    const hits = masking.jsonPaths.filter((rule) => matchesJsonPath(rule.steps, path));
    if (hits.length > 0) {
      const replaced = maskSelected(hits, value, tally.counts, tally.wouldMask, masking.hashKey);
      if (replaced !== undefined) {
        tally.changed = true;
        return replaced;
      }
    }
  }
  if (typeof value === 'string' && masking.plan.hasScanners) {
    const result = masking.plan.maskText(value);
    addCounts(tally.counts, result.counts);
    addCounts(tally.wouldMask, result.wouldMask);
    if (result.value !== value) {
      tally.changed = true;
      return result.value;
    }
  }
  return value;
}

function isObject(value: unknown): value is Record<string, Json> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !rawJson.isRawJSON(value);
}

function merge(into: MaskTally, from: MaskTally): void {
  addCounts(into.counts, from.counts);
  addCounts(into.wouldMask, from.wouldMask);
}

function addCounts(into: Record<string, number>, from: Record<string, number>): void {
  for (const [key, n] of Object.entries(from)) into[key] = (into[key] ?? 0) + n;
}
