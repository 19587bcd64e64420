// Masking of a parsed JSON document, value by value: the values at the masking rules' JSON
// paths (and everything under a selected object or array) replaced whole, every other string,
// number and key run through the detectors and patterns. The MCP enforcer masks tool results and
// resources with it; the HTTP enforcer masks bodies as they stream (JsonStreamMasker) to the
// same result, and its tests hold it to this walk.
import { type JsonPathRule, maskSelected, matchesJsonPath } from './json-paths.ts';
import { defaultHashKey, type MaskingPlan } from './masking.ts';

export interface JsonMaskResult {
  value: unknown;
  counts: Record<string, number>;
  wouldMask: Record<string, number>;
}

/** A parsed document masked value by value, as a copy; values nested deeper than 256 levels are left as they are. */
export function maskJson(
  document: unknown,
  plan: MaskingPlan,
  paths: JsonPathRule[],
  hashKey: string | Uint8Array = defaultHashKey,
): JsonMaskResult {
  const counts: Record<string, number> = {};
  const wouldMask: Record<string, number> = {};
  // One path stack for the whole walk (pushed and popped around each child), and no path work
  // at all without JSON-path rules: a large body is mostly leaves for the detectors.
  const path: (string | number)[] = [];
  // Keys carry data too (a map by e-mail or card number): the detectors read them; JSON paths
  // select values.
  const maskKey = (key: string): string => {
    if (!plan.hasScanners) return key;
    const result = plan.maskText(key);
    addAll(counts, result.counts);
    addAll(wouldMask, result.wouldMask);
    return result.value;
  };
  // A path that selects an object or array masks every value under it.
  const walk = (value: unknown, depth: number, inherited: JsonPathRule[]): unknown => {
    if (depth > 256) return value;
    let hits = inherited;
    for (const rule of paths) {
      if (hits.includes(rule) || !matchesJsonPath(rule.steps, path)) continue;
      if (hits === inherited) hits = [...inherited];
      hits.push(rule);
    }
    const leaf = value === null || typeof value !== 'object';
    if (hits.length > 0 && leaf) {
      const masked = maskSelected(hits, value, counts, wouldMask, hashKey);
      if (masked !== undefined) return masked;
    }
    if (Array.isArray(value)) {
      const out = new Array<unknown>(value.length);
      for (let i = 0; i < value.length; i++) {
        path.push(i);
        out[i] = walk(value[i], depth + 1, hits);
        path.pop();
      }
      return out;
    }
    if (value !== null && typeof value === 'object') {
      const out: Record<string, unknown> = {};
      for (const key of Object.keys(value)) {
        path.push(key);
        out[maskKey(key)] = walk((value as Record<string, unknown>)[key], depth + 1, hits);
        path.pop();
      }
      return out;
    }
    if ((typeof value === 'string' || typeof value === 'number') && plan.hasScanners) {
      const text = typeof value === 'string' ? value : String(value);
      const result = plan.maskText(text);
      addAll(counts, result.counts);
      addAll(wouldMask, result.wouldMask);
      return result.value === text ? value : result.value;
    }
    return value;
  };
  return { value: walk(document, 0, []), counts, wouldMask };
}

function addAll(into: Record<string, number>, from: Record<string, number>): void {
  for (const key in from) into[key] = (into[key] ?? 0) + from[key]!;
}
