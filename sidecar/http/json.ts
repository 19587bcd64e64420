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
  const add = (into: Record<string, number>, from: Record<string, number>) => {
    for (const [k, n] of Object.entries(from)) into[k] = (into[k] ?? 0) + n;
  };
  // A path that selects an object or array masks every value under it.
  const walk = (
    value: unknown,
    path: (string | number)[],
    depth: number,
    inherited: JsonPathRule[] = [],
  ): unknown => {
    if (depth > 256) return value;
    const own = paths.filter((rule) => matches(rule.steps, path));
    const hits = [...new Set([...inherited, ...own])];
    const enforced = hits.filter((rule) => !rule.audit);
    const leaf = value === null || typeof value !== 'object';
    if (leaf)
      for (const rule of hits.filter((r) => r.audit)) add(wouldMask, { [`${rule.rule}/${rule.path}`]: 1 });
    if (enforced.length > 0 && leaf && value !== null) {
      const strongest =
        enforced.find((r) => r.strategy === 'redact') ??
        enforced.find((r) => r.strategy === 'hash') ??
        enforced[0]!;
      for (const rule of enforced) add(counts, { [`${rule.rule}/${rule.path}`]: 1 });
      return applyStrategy(strongest.strategy, String(value), '', hashKey);
    }
    if (Array.isArray(value)) return value.map((item, i) => walk(item, [...path, i], depth + 1, hits));
    if (value !== null && typeof value === 'object') {
      const out: Record<string, unknown> = {};
      for (const [key, item] of Object.entries(value)) out[key] = walk(item, [...path, key], depth + 1, hits);
      return out;
    }
    if ((typeof value === 'string' || typeof value === 'number') && plan.hasScanners) {
      const text = String(value);
      const result = plan.maskText(text);
      add(counts, result.counts);
      add(wouldMask, result.wouldMask);
      return result.value === text ? value : result.value;
    }
    return value;
  };
  return { value: walk(document, [], 0), counts, wouldMask };
}
