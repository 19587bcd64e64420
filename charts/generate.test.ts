import assert from 'node:assert/strict';
import { test } from 'node:test';
import { syncChart } from './generate.ts';

test('the chart templates match the code (run `make crds` after changing it)', async () => {
  assert.deepEqual(await syncChart(true), []);
});
