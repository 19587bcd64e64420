// Status conditions, following the Kubernetes conventions: CamelCase reasons, the generation
// they were computed from, and a lastTransitionTime that moves only when the status flips.
import type { Condition } from '../api/v1alpha1.ts';

export type ConditionStatus = Condition['status'];

export interface DesiredCondition {
  type: string;
  status: ConditionStatus;
  reason: string;
  message: string;
}

/** Merges desired conditions into existing ones; returns the new list (existing is not changed). */
export function setConditions(
  existing: Condition[] | undefined,
  desired: DesiredCondition[],
  generation: number | undefined,
  now: Date,
): Condition[] {
  const result = [...(existing ?? [])];
  for (const want of desired) {
    const index = result.findIndex((c) => c.type === want.type);
    const previous = index >= 0 ? result[index] : undefined;
    const next: Condition = {
      ...want,
      ...(generation !== undefined && { observedGeneration: generation }),
      lastTransitionTime:
        previous && previous.status === want.status
          ? previous.lastTransitionTime
          : now.toISOString().replace(/\.\d+Z$/, 'Z'),
    };
    if (index >= 0) result[index] = next;
    else result.push(next);
  }
  return result;
}

/** Whether writing `next` would change what is stored. */
export function conditionsChanged(previous: Condition[] | undefined, next: Condition[]): boolean {
  return JSON.stringify(previous ?? []) !== JSON.stringify(next);
}
