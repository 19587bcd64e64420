import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TerminalError, WorkQueue } from './queue.ts';

/** Resolves once `reached()` holds (a slow machine may take longer than the timers ask). */
async function until(reached: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!reached()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

test('a key added many times while waiting is reconciled once', async () => {
  const seen: string[] = [];
  const queue = new WorkQueue(
    async (key) => {
      seen.push(key);
      if (key === 'slow') await new Promise((resolve) => setTimeout(resolve, 10));
    },
    () => {},
    { workers: 1 },
  );
  queue.add('slow');
  queue.add('a');
  queue.add('b');
  queue.add('a');
  queue.add('a');
  await queue.drained();
  assert.deepEqual(seen, ['slow', 'a', 'b']);
});

test('a key is never processed twice at once; added while running, it runs once more after', async () => {
  let running = 0;
  let maxRunning = 0;
  let runs = 0;
  const queue = new WorkQueue(
    async () => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      runs++;
      if (runs === 1) {
        queue.add('a');
        queue.add('a');
      }
      await new Promise((resolve) => setTimeout(resolve, 5));
      running--;
    },
    () => {},
    { workers: 4 },
  );
  queue.add('a');
  await new Promise((resolve) => setTimeout(resolve, 50));
  await queue.drained();
  assert.equal(maxRunning, 1);
  assert.equal(runs, 2);
});

test('failures retry with exponential backoff; terminal errors do not retry', async () => {
  const times: number[] = [];
  const errors: string[] = [];
  const queue = new WorkQueue(
    async (key) => {
      if (key === 'terminal') throw new TerminalError('bad spec');
      times.push(Date.now());
      if (times.length < 4) throw new Error('transient');
    },
    (key, error) => errors.push(`${key}: ${(error as Error).message}`),
    { baseDelayMs: 10 },
  );
  queue.add('terminal');
  queue.add('flaky');
  await until(() => times.length === 4, 'the fourth try');
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(times.length, 4, 'no try after the one that succeeded');
  const gaps = times.slice(1).map((t, i) => t - times[i]!);
  assert.ok(gaps[0]! >= 9 && gaps[1]! >= 19 && gaps[2]! >= 39, `gaps ${gaps}`);
  assert.equal(errors.filter((e) => e.startsWith('terminal')).length, 1);
  assert.equal(queue.backoff(30), 60_000);
  queue.stop();
});

test('requeueAfter schedules another look', async () => {
  let runs = 0;
  const queue = new WorkQueue(
    async () => (++runs < 3 ? { requeueAfterMs: 5 } : undefined),
    () => {},
  );
  queue.add('a');
  await until(() => runs === 3, 'the third run');
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(runs, 3, 'no run after the one that asked for none');
});
