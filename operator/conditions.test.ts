import assert from 'node:assert/strict';
import { test } from 'node:test';
import { conditionsChanged, setConditions } from './conditions.ts';

const t0 = new Date('2026-01-01T00:00:00.123Z');
const t1 = new Date('2026-01-01T00:05:00Z');

test('a new condition gets the current time and the generation', () => {
  const [ready] = setConditions(
    undefined,
    [{ type: 'Ready', status: 'False', reason: 'SecretNotFound', message: 'x' }],
    3,
    t0,
  );
  assert.deepEqual(ready, {
    type: 'Ready',
    status: 'False',
    reason: 'SecretNotFound',
    message: 'x',
    observedGeneration: 3,
    lastTransitionTime: '2026-01-01T00:00:00Z',
  });
});

test('lastTransitionTime moves only when the status flips', () => {
  const first = setConditions(
    undefined,
    [{ type: 'Ready', status: 'False', reason: 'A', message: 'a' }],
    1,
    t0,
  );
  const sameStatus = setConditions(
    first,
    [{ type: 'Ready', status: 'False', reason: 'B', message: 'b' }],
    2,
    t1,
  );
  assert.equal(sameStatus[0]!.lastTransitionTime, '2026-01-01T00:00:00Z');
  assert.equal(sameStatus[0]!.reason, 'B');
  assert.equal(sameStatus[0]!.observedGeneration, 2);
  const flipped = setConditions(
    sameStatus,
    [{ type: 'Ready', status: 'True', reason: 'Resolved', message: '' }],
    2,
    t1,
  );
  assert.equal(flipped[0]!.lastTransitionTime, '2026-01-01T00:05:00Z');
  assert.equal(conditionsChanged(first, first), false);
  assert.equal(conditionsChanged(first, flipped), true);
});

test('other condition types are kept', () => {
  const both = setConditions(
    [{ type: 'Custom', status: 'True', reason: 'X', message: '', lastTransitionTime: 'then' }],
    [{ type: 'Ready', status: 'True', reason: 'Y', message: '' }],
    1,
    t0,
  );
  assert.deepEqual(
    both.map((c) => c.type),
    ['Custom', 'Ready'],
  );
});
