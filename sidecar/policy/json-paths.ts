// JSON paths in policies: masking rules' jsonPaths, and the MCP rules' argument matchers.
// The subset: $, .name, ['name'], [n], [*], .*, and ..name / ..* (descendants). Pure, shared by
// the enforcers that read JSON (the HTTP body masker, the MCP enforcer).
import type { BundlePolicy } from '../../api/bundle.ts';
import { applyStrategy, type Strategy } from './masking.ts';

export type Step = { descendant: boolean; key: string | number | '*' };

export interface JsonPathRule {
  policy: string;
  rule: string;
  path: string;
  /** Count key: <rule>/<path>. */
  key: string;
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
          key: `${masking.name}/${path}`,
          steps: steps ?? [{ descendant: true, key: '*' }],
          strategy: masking.strategy,
          audit: policy.mode === 'audit',
        });
      }
    }
  }
  return rules;
}

/** Whether a JSON path's steps select the value at a path of keys and indexes. */
export function matchesJsonPath(steps: Step[], path: (string | number)[]): boolean {
  // Each step takes one level (a descendant step may skip levels before it) and the last step
  // the last level: most paths are ruled out by their depth or their last key.
  const last = steps[steps.length - 1];
  if (last === undefined) return path.length === 0;
  if (steps.length > path.length || (last.key !== '*' && last.key !== path[path.length - 1])) return false;
  return matchesFrom(steps, path, 0, 0);
}

function matchesFrom(steps: Step[], path: (string | number)[], s: number, p: number): boolean {
  if (s === steps.length) return p === path.length;
  if (p === path.length) return false;
  const step = steps[s]!;
  const keyMatches = step.key === '*' || step.key === path[p];
  if (keyMatches && matchesFrom(steps, path, s + 1, p + 1)) return true;
  // A descendant step may skip any number of levels.
  return step.descendant && matchesFrom(steps, path, s, p + 1);
}

/**
 * A scalar selected by JSON-path rules: audit-mode rules count it in wouldMask; enforced ones
 * replace it whole with the strongest strategy (redact > hash > others) and count it. null is
 * left as it is. Undefined when it is not replaced.
 */
export function maskSelected(
  hits: JsonPathRule[],
  value: unknown,
  counts: Record<string, number>,
  wouldMask: Record<string, number>,
  hashKey: string | Uint8Array,
): string | undefined {
  let strongest: Strategy | undefined;
  for (const rule of hits) {
    if (rule.audit) add(wouldMask, rule.key, 1);
    else if (value !== null) {
      add(counts, rule.key, 1);
      if (strongest === undefined || strength[rule.strategy] > strength[strongest]) strongest = rule.strategy;
    }
  }
  return strongest === undefined ? undefined : applyStrategy(strongest, String(value), '', hashKey);
}

const strength: Record<Strategy, number> = { partial: 1, hash: 2, redact: 3 };

function add(into: Record<string, number>, key: string, n: number): void {
  into[key] = (into[key] ?? 0) + n;
}
