// Masking of what the server sends the agent. Every string runs through the detectors and
// patterns; the masking rules' JSON paths apply to the JSON documents inside a result: a tool's
// structuredContent, and every text (tool result content, resource contents) that is a JSON
// object or array, which is where tools put their data. Base64 blobs of a textual type are
// decoded, masked and encoded again (images, audio and other binary blobs pass as they are); a
// document nested too deep to walk is refused whole.
import { AirlockError } from '../core/errors.ts';
import { maskJson } from '../policy/json-mask.ts';
import type { JsonPathRule } from '../policy/json-paths.ts';
import type { MaskingPlan } from '../policy/masking.ts';

/** Deeper than this, a message is not masked but refused (JSON.parse reads any depth). */
export const maxDepth = 64;

export interface Masked {
  value: unknown;
  counts: Record<string, number>;
  wouldMask: Record<string, number>;
}

export interface Masker {
  plan: MaskingPlan;
  paths: JsonPathRule[];
}

/** A result (or notification params) masked: JSON paths inside its documents, detectors everywhere. */
export function maskMessageValue(masker: Masker, value: unknown): Masked {
  if (!within(value, maxDepth))
    throw new AirlockError(
      'masking-failed',
      `airlock: a message nested deeper than ${maxDepth} levels cannot be masked`,
    );
  const counts: Record<string, number> = {};
  const wouldMask: Record<string, number> = {};
  const add = (r: { counts: Record<string, number>; wouldMask: Record<string, number> }) => {
    for (const k in r.counts) counts[k] = (counts[k] ?? 0) + r.counts[k]!;
    for (const k in r.wouldMask) wouldMask[k] = (wouldMask[k] ?? 0) + r.wouldMask[k]!;
  };
  const document = (doc: unknown): unknown => {
    const r = maskJson(doc, masker.plan, masker.paths);
    add(r);
    return r.value;
  };
  /** A JSON document in a text, masked and written again; undefined when the text is not one. */
  const json = (s: string): string | undefined => {
    const trimmed = s.trimStart();
    if (!(trimmed.startsWith('{') || trimmed.startsWith('['))) return undefined;
    let parsed: unknown;
    try {
      // Read without its leading blanks, a byte order mark among them (JSON.parse refuses one).
      parsed = JSON.parse(trimmed);
    } catch {
      return undefined;
    }
    if (!within(parsed, maxDepth)) return undefined;
    const r = maskJson(parsed, masker.plan, masker.paths);
    if (Object.keys(r.counts).length === 0 && Object.keys(r.wouldMask).length === 0) return s;
    add(r);
    return JSON.stringify(r.value);
  };
  const text = (s: string): string => {
    const whole = json(s);
    if (whole !== undefined) return whole;
    // JSON lines (a tool's rows one document a line): each line a document of its own.
    if (masker.paths.length > 0 && s.includes('\n') && /^\s*[{[]/.test(s)) {
      const lines = s.split('\n');
      const masked = lines.map((line) => (line.trim() === '' ? line : json(line)));
      if (masked.every((line) => line !== undefined)) return masked.join('\n');
    }
    const r = masker.plan.maskText(s);
    add(r);
    return r.value;
  };
  // Keys carry data too (a map by e-mail): the detectors read them.
  const maskKey = (k: string): string => {
    if (!masker.plan.hasScanners) return k;
    const r = masker.plan.maskText(k);
    add(r);
    return r.value;
  };
  const walk = (v: unknown, key: string | undefined, owner: Record<string, unknown> | undefined): unknown => {
    if (typeof v === 'string') {
      // Resource contents carry a blob, image and audio content their data, in base64.
      if (key === 'blob' && owner && 'uri' in owner) {
        if (!textual(owner.mimeType)) return v;
        const decoded = Buffer.from(v, 'base64').toString('utf8');
        const masked = text(decoded);
        return masked === decoded ? v : Buffer.from(masked, 'utf8').toString('base64');
      }
      if (key === 'data' && (owner?.type === 'image' || owner?.type === 'audio')) return v;
      return text(v);
    }
    if (typeof v === 'number') {
      const r = masker.plan.maskText(String(v));
      add(r);
      return r.value === String(v) ? v : r.value;
    }
    if (Array.isArray(v)) return v.map((item) => walk(item, undefined, undefined));
    if (v !== null && typeof v === 'object') {
      const o = v as Record<string, unknown>;
      const out: Record<string, unknown> = {};
      for (const [k, item] of Object.entries(o))
        out[maskKey(k)] = k === 'structuredContent' && key === undefined ? document(item) : walk(item, k, o);
      return out;
    }
    return v;
  };
  return { value: walk(value, undefined, undefined), counts, wouldMask };
}

/** A blob is text to mask when its type says so, or says nothing. */
function textual(mimeType: unknown): boolean {
  if (typeof mimeType !== 'string') return true;
  const type = mimeType.toLowerCase();
  return type.startsWith('text/') || /[/+](json|xml|yaml|csv|javascript)\b/.test(type);
}

/** Whether a parsed value nests at most `depth` levels. */
export function within(value: unknown, depth: number): boolean {
  if (value === null || typeof value !== 'object') return true;
  if (depth === 0) return false;
  const items = Array.isArray(value) ? value : Object.values(value);
  return items.every((item) => within(item, depth - 1));
}
