// Masking by Redis key: a masking rule's `keys` globs name the keys whose values are masked
// whatever they hold. A glob may name hash fields after its last '#' (user:*#ssn): then only
// those fields are masked where the reply says which field a value is (HGET, HMGET, HGETALL),
// and the whole reply elsewhere, since an unlabelled value could be one of them. Like columns,
// the strongest enforcing rule wins and audit-mode rules only count what they would have masked.
import type { BundlePolicy } from '../../api/bundle.ts';
import type { MaskingRule } from '../../api/v1alpha1.ts';
import { matchGlob } from './glob.ts';
import type { ColumnMask, Strategy } from './masking.ts';

export interface KeyMaskRule {
  policy: BundlePolicy;
  rule: MaskingRule;
  /** As written in the policy. */
  glob: string;
  keyGlob: string;
  /** Set for key#field globs. */
  fieldGlob?: string;
}

const strength: Record<Strategy, number> = { partial: 1, hash: 2, redact: 3 };

export function keyMaskRules(policies: readonly BundlePolicy[]): KeyMaskRule[] {
  const rules: KeyMaskRule[] = [];
  for (const policy of policies) {
    for (const rule of policy.masking) {
      for (const glob of rule.keys ?? []) {
        const hash = glob.lastIndexOf('#');
        rules.push(
          hash < 0
            ? { policy, rule, glob, keyGlob: glob }
            : { policy, rule, glob, keyGlob: glob.slice(0, hash), fieldGlob: glob.slice(hash + 1) },
        );
      }
    }
  }
  return rules;
}

/** The rules that mask some of this key's value. */
export function rulesForKey(rules: readonly KeyMaskRule[], key: string): KeyMaskRule[] {
  return rules.filter((r) => matchGlob(r.keyGlob, key));
}

/**
 * How a value of `key` is masked: `field` names the hash field the value belongs to, or is
 * undefined when the reply does not say (then field rules mask it too).
 */
export function keyMask(rules: readonly KeyMaskRule[], key: string, field?: string): ColumnMask | undefined {
  let enforce: ColumnMask | undefined;
  let audit: ColumnMask | undefined;
  const wouldMask: string[] = [];
  for (const r of rules) {
    if (!matchGlob(r.keyGlob, key)) continue;
    if (r.fieldGlob !== undefined && field !== undefined && !matchGlob(r.fieldGlob, field)) continue;
    const mask: ColumnMask = {
      strategy: r.rule.strategy,
      policy: r.policy.name,
      rule: r.rule.name,
      glob: r.glob,
      key: `${r.rule.name}/${r.glob}`,
      audit: r.policy.mode === 'audit',
      wouldMask,
    };
    if (mask.audit) {
      wouldMask.push(mask.key);
      audit ??= mask;
    } else if (!enforce || strength[mask.strategy] > strength[enforce.strategy]) enforce = mask;
  }
  if (enforce) return enforce;
  return audit && { ...audit, wouldMask: wouldMask.filter((k) => k !== audit.key) };
}
