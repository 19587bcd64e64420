// `airlock audit verify|prune` as a process, against a store (embedded SQLite, and PostgreSQL)
// that a database superuser tampered with in each way: the command exits 1 and names the first
// bad event.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import type { SessionEvent } from '../api/events.ts';
import {
  backendName,
  backendOptions,
  backends,
  startBackend,
  type TestBackend,
} from '../test/support/audit-backends.ts';
import { parseRetention } from './settings.ts';
import { AuditStore } from './store.ts';

const run = promisify(execFile);
const cli = new URL('../bin/airlock.js', import.meta.url).pathname;
let directory: string;
let keyFile: string;
const key = 'k'.repeat(40);

before(async () => {
  directory = await mkdtemp(join(tmpdir(), 'airlock-audit-cli-'));
  keyFile = join(directory, 'audit.key');
  await writeFile(keyFile, key);
});
after(async () => rm(directory, { recursive: true, force: true }));

function events(count: number, time = () => new Date().toISOString()): SessionEvent[] {
  return Array.from({ length: count }, (_, seq) => ({
    version: 1 as const,
    id: randomUUID(),
    sessionId: 's1',
    seq,
    time: time(),
    connection: { name: 'orders-db', namespace: 'agents', protocol: 'postgres' },
    identity: { namespace: 'agents', serviceAccount: 'agent', pod: 'agent-0' },
    type: 'request' as const,
    text: `SELECT ${seq}`,
    outcome: 'allowed' as const,
    durationMs: 1,
  }));
}

async function verify(store: string, withKey = true): Promise<{ code: number; stdout: string }> {
  try {
    const { stdout } = await run(process.execPath, [
      cli,
      'audit',
      'verify',
      `--store=${store}`,
      ...(withKey ? [`--key=${keyFile}`] : []),
    ]);
    return { code: 0, stdout };
  } catch (error) {
    const { code, stdout, stderr } = error as { code: number; stdout: string; stderr: string };
    return { code, stdout: stdout + stderr };
  }
}

test('parseRetention reads days, hours, minutes and seconds', () => {
  assert.equal(parseRetention('30d'), 30 * 86_400_000);
  assert.equal(parseRetention('12h'), 12 * 3_600_000);
  assert.throws(() => parseRetention('30'), /number and a unit/);
});

for (const kind of backends) {
  describe(`airlock audit on ${backendName(kind)}`, backendOptions(kind), () => {
    let backend: TestBackend;
    before(async () => {
      backend = await startBackend(kind);
    });
    after(() => backend.stop());

    /** A fresh store of ten events, then the superuser's SQL, with the append-only trigger off. */
    async function tampered(name: string, sql: string): Promise<{ store: string; ids: string[] }> {
      const location = await backend.fresh(name.replace(/-/g, '_'));
      const store = await AuditStore.open(location, { key: Buffer.from(key) });
      const written = events(10);
      await store.append(written.slice(0, 5));
      await store.append(written.slice(5));
      await store.close();
      if (sql) await backend.tamper(location, sql);
      return { store: location, ids: written.map((e) => e.id) };
    }

    test('a clean store verifies, anchored by the signed head checkpoint', async () => {
      const { store } = await tampered('clean', '');
      const result = await verify(store);
      assert.equal(result.code, 0, result.stdout);
      assert.match(result.stdout, /ok: 10 events verified .*no tail was cut/);
    });

    test('every kind of tampering makes verify exit 1 and name the first bad event', async () => {
      const cases: { name: string; sql: string; position: number; problem: RegExp; id?: number }[] = [
        {
          name: 'edit',
          sql: `UPDATE audit_events SET body = ${kind === 'postgres' ? `jsonb_set(body, '{text}', '"SELECT 42"')` : `json_set(body, '$.text', 'SELECT 42')`} WHERE position = 4`,
          position: 4,
          problem: /edited/,
          id: 3,
        },
        {
          name: 'session-column',
          sql: "UPDATE audit_events SET session_id = 'elsewhere' WHERE position = 5",
          position: 5,
          problem: /session_id column does not match its hashed body/,
          id: 4,
        },
        {
          name: 'time-column',
          sql: `UPDATE audit_events SET time = time - ${kind === 'postgres' ? "interval '1 hour'" : '3600000000'} WHERE position = 6`,
          position: 6,
          problem: /time column does not match its hashed body/,
          id: 5,
        },
        {
          name: 'delete',
          sql: 'DELETE FROM audit_events WHERE position = 6',
          position: 7,
          problem: /deleted or moved/,
          id: 6,
        },
        {
          name: 'insert',
          sql: "UPDATE audit_events SET position = -position WHERE position >= 3; UPDATE audit_events SET position = -position + 1 WHERE position < 0; INSERT INTO audit_events SELECT 3, 'forged', session_id, type, time, body, prev_hash, hash FROM audit_events WHERE position = 2",
          position: 3,
          problem: /predecessor hash|edited/,
        },
        {
          name: 'reorder',
          sql: 'UPDATE audit_events SET position = -2 WHERE position = 2; UPDATE audit_events SET position = 2 WHERE position = 3; UPDATE audit_events SET position = 3 WHERE position = -2',
          position: 2,
          problem: /predecessor hash/,
          id: 2,
        },
        {
          name: 'truncate',
          sql: 'DELETE FROM audit_events WHERE position > 7',
          position: 8,
          problem: /3 events were cut from the tail/,
        },
        {
          name: 'prefix',
          sql: 'DELETE FROM audit_events WHERE position <= 2',
          position: 3,
          problem: /deleted or moved/,
        },
      ];
      for (const c of cases) {
        const { store, ids } = await tampered(c.name, c.sql);
        const result = await verify(store);
        assert.equal(result.code, 1, `${c.name}: ${result.stdout}`);
        assert.match(result.stdout, new RegExp(`^TAMPERED: .* at position ${c.position}: `), c.name);
        assert.match(result.stdout, c.problem, c.name);
        if (c.id !== undefined) assert.ok(result.stdout.includes(ids[c.id]!), `${c.name} names the event`);
      }
    });

    test('a forged head checkpoint is caught; without the key a cut tail is reported as unanchored', async () => {
      const { store } = await tampered(
        'forged-head',
        "DELETE FROM audit_events WHERE position > 7; UPDATE audit_checkpoints SET position = 7, hash = (SELECT hash FROM audit_events WHERE position = 7) WHERE kind = 'head'",
      );
      const result = await verify(store);
      assert.equal(result.code, 1, result.stdout);
      assert.match(result.stdout, /head checkpoint's signature does not match/);
      const { store: cut } = await tampered('cut-no-key', 'DELETE FROM audit_events WHERE position > 7');
      const unkeyed = await verify(cut, false);
      assert.equal(unkeyed.code, 1, 'the unsigned head still catches a cut it was written before');
    });

    test('prune drops events past retention and the chain still verifies; more deletion is caught', async () => {
      const location = await backend.fresh('retention');
      const store = await AuditStore.open(location, { key: Buffer.from(key) });
      const old = new Date(Date.now() - 40 * 86_400_000).toISOString();
      await store.append(events(6, () => old));
      await store.append(events(4));
      await store.close();
      const { stdout } = await run(process.execPath, [
        cli,
        'audit',
        'prune',
        `--store=${location}`,
        '--retention=30d',
        `--key=${keyFile}`,
      ]);
      assert.match(stdout, /pruned 6 events/);
      const clean = await verify(location);
      assert.equal(clean.code, 0, clean.stdout);
      assert.match(clean.stdout, /ok: 4 events verified .*pruned through position 6/);
      await backend.tamper(
        location,
        "UPDATE audit_checkpoints SET position = 7, hash = (SELECT hash FROM audit_events WHERE position = 7) WHERE kind = 'genesis'; DELETE FROM audit_events WHERE position = 7",
      );
      const moved = await verify(location);
      assert.equal(moved.code, 1);
      assert.match(moved.stdout, /genesis checkpoint's signature does not match/);
    });
  });
}
