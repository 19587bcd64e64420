// Masking of a JSON body: every string (and number) runs through the policies' detectors, and
// the values at the masking rules' jsonPaths are replaced whole with the rule's strategy.
// JSON paths: $, .name, ['name'], [n], [*], .*, and ..name / ..* (descendants). Pure.
import type { BundlePolicy } from '../../api/bundle.ts';
import { applyStrategy, defaultHashKey, type MaskingPlan, type Strategy } from '../policy/masking.ts';

type Step = { descendant: boolean; key: string | number | '*' };

export interface JsonPathRule {
  policy: string;
  rule: string;
  path: string;
  steps: Step[];
  strategy: Strategy;
  audit: boolean;
}

/** Parses a JSON path; undefined when it is outside the supported subset. */
export function parseJsonPath(path: string): Step[] | undefined {
  if (!path.startsWith('$')) return undefined;
  const steps: Step[] = [];
  let i = 1;
  while (i < path.length) {
    let descendant = false;
    if (path.startsWith('..', i)) {
      descendant = true;
      i += 2;
    } else if (path[i] === '.') {
      i++;
    } else if (path[i] !== '[') {
      return undefined;
    }
    if (path[i] === '[') {
      const end = path.indexOf(']', i);
      if (end === -1) return undefined;
      const inner = path.slice(i + 1, end).trim();
      i = end + 1;
      if (inner === '*') steps.push({ descendant, key: '*' });
      else if (/^[0-9]+$/.test(inner)) steps.push({ descendant, key: Number(inner) });
      else if (/^'[^']*'$|^"[^"]*"$/.test(inner)) steps.push({ descendant, key: inner.slice(1, -1) });
      else return undefined;
      continue;
    }
    const name = /^(\*|[A-Za-z_$][A-Za-z0-9_$-]*)/.exec(path.slice(i))?.[0];
    if (!name) return undefined;
    steps.push({ descendant, key: name });
    i += name.length;
  }
  return steps;
}

export function compileJsonPaths(policies: BundlePolicy[]): JsonPathRule[] {
  const rules: JsonPathRule[] = [];
  for (const policy of policies) {
    for (const masking of policy.masking) {
      for (const path of masking.jsonPaths ?? []) {
        const steps = parseJsonPath(path);
        // A path we cannot read would silently mask nothing: mask every leaf instead (fail closed).
        rules.push({
          policy: policy.name,
          rule: masking.name,
          path,
          steps: steps ?? [{ descendant: true, key: '*' }],
          strategy: masking.strategy,
          audit: policy.mode === 'audit',
        });
      }
    }
  }
  return rules;
}

function matches(steps: Step[], path: (string | number)[], s = 0, p = 0): boolean {
  if (s === steps.length) return p === path.length;
  if (p === path.length) return false;
  const step = steps[s]!;
  const keyMatches = step.key === '*' || step.key === path[p];
  if (keyMatches && matches(steps, path, s + 1, p + 1)) return true;
  // A descendant step may skip any number of levels.
  return step.descendant && matches(steps, path, s, p + 1);
}

export interface JsonMaskResult {
  value: unknown;
  counts: Record<string, number>;
  wouldMask: Record<string, number>;
}

export function maskJson(
  document: unknown,
  plan: MaskingPlan,
  paths: JsonPathRule[],
  hashKey: string | Uint8Array = defaultHashKey,
): JsonMaskResult {
  const counts: Record<string, number> = {};
  const wouldMask: Record<string, number> = {};
  const add = (into: Record<string, number>, key: string, n: number) => {
    into[key] = (into[key] ?? 0) + n;
  };
  const addAll = (into: Record<string, number>, from: Record<string, number>) => {
    for (const key in from) add(into, key, from[key]!);
  };
  // One path stack for the whole walk (pushed and popped around each child), and no path work
  // at all without JSON-path rules: a large body is mostly leaves for the detectors.
  const path: (string | number)[] = [];
  // A path that selects an object or array masks every value under it.
  const walk = (value: unknown, depth: number, inherited: JsonPathRule[]): unknown => {
    if (depth > 256) return value;
    let hits = inherited;
    for (const rule of paths) {
      if (hits.includes(rule) || !matches(rule.steps, path)) continue;
      if (hits === inherited) hits = [...inherited];
      hits.push(rule);
    }
    const leaf = value === null || typeof value !== 'object';
    if (hits.length > 0 && leaf) {
      for (const rule of hits) if (rule.audit) add(wouldMask, `${rule.rule}/${rule.path}`, 1);
      const enforced = hits.filter((rule) => !rule.audit);
      if (enforced.length > 0 && value !== null) {
        const strongest =
          enforced.find((r) => r.strategy === 'redact') ??
          enforced.find((r) => r.strategy === 'hash') ??
          enforced[0]!;
        for (const rule of enforced) add(counts, `${rule.rule}/${rule.path}`, 1);
        return applyStrategy(strongest.strategy, String(value), '', hashKey);
      }
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
        out[key] = walk((value as Record<string, unknown>)[key], depth + 1, hits);
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
