// An earlier release's embedded store (PGlite) is refused with the command that converts it, and
// `airlock audit migrate` copies it into SQLite whole: the same chain, checkpoints, cursors and
// listings, still appendable and verifiable, with the key that signed it.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import type { SessionEvent } from '../api/events.ts';
import { openPglite } from './pglite.ts';
import { AuditStore } from './store.ts';

const run = promisify(execFile);
const cli = new URL('../bin/airlock.js', import.meta.url).pathname;
const key = Buffer.from('m'.repeat(40));
let directory: string;
before(async () => {
  directory = await mkdtemp(join(tmpdir(), 'airlock-migrate-'));
});
after(() => rm(directory, { recursive: true, force: true }));

function session(sessionId: string, count: number, time: () => string): SessionEvent[] {
  const base = {
    version: 1 as const,
    sessionId,
    connection: { name: 'orders-db', namespace: 'agents', protocol: 'postgres' },
    identity: { namespace: 'agents', serviceAccount: 'agent' },
  };
  return [
    { ...base, id: randomUUID(), seq: 0, time: time(), type: 'session.start', client: { address: 'a' } },
    ...Array.from(
      { length: count },
      (_, i): SessionEvent => ({
        ...base,
        id: randomUUID(),
        seq: i + 1,
        // Microseconds, which both stores keep.
        time: time().replace('Z', '123Z'),
        type: 'request',
        text: `SELECT ${i}`,
        outcome: i % 2 ? 'blocked' : 'masked',
        masked: { 'pii/email': i },
        durationMs: 1,
      }),
    ),
  ];
}

test('a PGlite store is refused with the command that converts it; migrate copies it whole', async () => {
  const store = join(directory, 'store');
  const keyFile = join(directory, 'store.key');
  await writeFile(keyFile, key);
  const old = await AuditStore.on(await openPglite(store), store, { key });
  const longAgo = () => new Date(Date.now() - 40 * 86_400_000).toISOString();
  await old.append(session('pruned', 3, longAgo));
  await old.append(session('kept', 4, () => new Date().toISOString()));
  await old.append(session('open', 2, () => new Date().toISOString()));
  assert.equal((await old.prune(new Date(Date.now() - 30 * 86_400_000))).pruned, 4);
  const cursor = await old.advanceExportCursor('https://receiver.example/hook', 7);
  const before = {
    verified: await old.verify(),
    sessions: await old.sessions(),
    kept: await old.session('kept'),
    head: await old.head(),
  };
  assert.equal(before.verified.ok, true);
  await old.close();

  await assert.rejects(
    AuditStore.open(store),
    /earlier Airlock \(PGlite\); convert it with `airlock audit migrate --store /,
  );

  const { stdout } = await run(process.execPath, [
    cli,
    'audit',
    'migrate',
    `--store=${store}`,
    `--key=${keyFile}`,
  ]);
  assert.match(stdout, /migrated 8 events .*the chain verifies, anchored by the signed head checkpoint/);
  const migrated = await AuditStore.open(store, { key });
  try {
    assert.deepEqual(
      {
        verified: await migrated.verify(),
        sessions: await migrated.sessions(),
        kept: await migrated.session('kept'),
        head: await migrated.head(),
      },
      before,
    );
    assert.equal(await migrated.exportCursor('https://receiver.example/hook'), cursor);
    await migrated.append(session('after', 1, () => new Date().toISOString()));
    assert.deepEqual(await migrated.verify(), { ok: true, events: 10, anchored: true, prunedThrough: 4 });
  } finally {
    await migrated.close();
  }
  const again = await run(process.execPath, [cli, 'audit', 'migrate', `--store=${store}`]).catch((e) => e);
  assert.equal(again.code, 2);
  assert.match(again.stderr, /was migrated already/);
});
