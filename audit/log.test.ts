// The embedded store's worker from the caller's side: its end is an answer, never a silence.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { openAuditLog } from './log.ts';

test('a closed embedded store refuses its calls instead of leaving them pending; close is idempotent', async () => {
  const directory = await mkdtemp(join(tmpdir(), 'airlock-log-'));
  try {
    const log = await openAuditLog(join(directory, 'store'));
    assert.equal(await log.head(), 0);
    const [first, second] = [log.close(), log.close()];
    assert.equal(first, second, 'one close, however often it is asked for');
    await first;
    await log.close();
    await assert.rejects(log.head(), /the audit store worker ended/);
    await assert.rejects(log.add([]), /the audit store worker ended/);
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
});
