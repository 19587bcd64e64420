// Streaming cost and memory of the PostgreSQL enforcer: a large result set through the
// enforcer (its own process) against the same stream direct. Slow: runs when
// AIRLOCK_PERF=1 (rows from AIRLOCK_PERF_ROWS, default 1,000,000).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { FrameReader } from '../../sidecar/postgres/frames.ts';
import { query as queryMessage } from '../../sidecar/postgres/messages.ts';
import { loadPolicyEngine } from '../../sidecar/postgres/policy.ts';
import { servePostgres } from '../../sidecar/postgres/server.ts';
import { connectionFor, type PostgresServer, policy, RawClient, startPostgres } from '../support/postgres.ts';

const rows = Number(process.env.AIRLOCK_PERF_ROWS ?? 1_000_000);
const masking = [
  {
    name: 'pii',
    detectors: ['email', 'credit-card', 'us-ssn'] as ('email' | 'credit-card' | 'us-ssn')[],
    columns: ['public.big.note'],
    strategy: 'redact' as const,
    indirectUse: 'allow' as const,
  },
];

/** Child mode: serve one enforcer and report its port, RSS on request. */
async function child(): Promise<void> {
  const config = JSON.parse(process.env.AIRLOCK_PERF_CHILD!) as {
    server: PostgresServer;
    mask: boolean | 'noop';
  };
  const policies = [policy('p', config.mask ? { masking } : {})];
  const engine = await loadPolicyEngine(policies);
  if (config.mask === 'noop' && engine.masker) {
    // The enforcer's own cost: every value decoded and offered to a masker that finds nothing.
    const nothing = { counts: {}, wouldMask: {} };
    engine.masker.mask = (value) => ({ value, ...nothing });
  }
  const enforcer = await servePostgres({
    engine,
    connection: connectionFor(config.server, policies),
    identity: { namespace: 'default', serviceAccount: 'perf' },
    events: { emit: () => undefined },
  });
  let peak = 0;
  let detail = {};
  setInterval(() => {
    const m = process.memoryUsage();
    if (m.rss > peak) {
      peak = m.rss;
      detail = {
        heapTotal: m.heapTotal / 1e6,
        heapUsed: m.heapUsed / 1e6,
        external: m.external / 1e6,
        arrayBuffers: m.arrayBuffers / 1e6,
      };
    }
  }, 20).unref();
  process.stdout.write(`${JSON.stringify({ port: enforcer.port, rss: process.memoryUsage().rss })}\n`);
  process.stdin.on('data', () => {
    peak = Math.max(peak, process.memoryUsage().rss);
    process.stdout.write(`${JSON.stringify({ rss: process.memoryUsage().rss, peak, detail })}\n`);
  });
  process.stdin.on('end', () => process.exit(0));
}

interface Child {
  port: number;
  idleRss: number;
  stats(): Promise<{ rss: number; peak: number }>;
  stop(): void;
}

async function spawnEnforcer(server: PostgresServer, mask: boolean | 'noop'): Promise<Child> {
  const { admin: _a, asUser: _u, logs: _l, stop: _s, ...plain } = server;
  // --liftoff-only: V8's optimizing tier for the SQL parser's WASM costs hundreds of MB of
  // RSS while it compiles (see the report); the sidecar runs with it too.
  const proc = spawn(process.execPath, ['--liftoff-only', fileURLToPath(import.meta.url)], {
    env: { ...process.env, AIRLOCK_PERF_CHILD: JSON.stringify({ server: plain, mask }) },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines: string[] = [];
  let waiting: (() => void) | undefined;
  let buffer = '';
  proc.stdout.on('data', (d: Buffer) => {
    buffer += d.toString();
    for (let i = buffer.indexOf('\n'); i >= 0; i = buffer.indexOf('\n')) {
      lines.push(buffer.slice(0, i));
      buffer = buffer.slice(i + 1);
      waiting?.();
    }
  });
  const nextLine = async (): Promise<string> => {
    while (lines.length === 0) await new Promise<void>((r) => (waiting = r));
    return lines.shift()!;
  };
  const first = JSON.parse(await nextLine()) as { port: number; rss: number };
  return {
    port: first.port,
    idleRss: first.rss,
    async stats() {
      proc.stdin.write('\n');
      return JSON.parse(await nextLine());
    },
    stop: () => proc.stdin.end(),
  };
}

/** Streams the query with a client that only counts DataRows, in a tight loop. */
async function stream(
  host: string,
  port: number,
  params: [string, string][] = [],
): Promise<{ ms: number; rows: number; sample: string }> {
  const raw = await RawClient.session(host, port, params);
  const socket = raw.socket;
  socket.removeAllListeners('data');
  const reader = new FrameReader({ maxLength: 1 << 30 });
  const started = performance.now();
  let count = 0;
  let sample = '';
  await new Promise<void>((resolve, reject) => {
    socket.on('close', () => reject(new Error('closed')));
    socket.on('data', (chunk: Buffer) => {
      reader.push(chunk);
      for (let frame = reader.next(); frame; frame = reader.next()) {
        if (frame.type === 0x44) {
          if (count === 5) sample = frame.body.toString('utf8');
          count++;
        } else if (frame.type === 0x5a) resolve();
      }
    });
    socket.write(queryMessage('SELECT id, email, note, n FROM big'));
  });
  const ms = performance.now() - started;
  raw.close();
  return { ms, rows: count, sample };
}

if (process.env.AIRLOCK_PERF_CHILD) {
  await child();
} else {
  describe('postgres enforcer: streaming performance', { skip: process.env.AIRLOCK_PERF !== '1' }, () => {
    let server: PostgresServer;
    before(async () => {
      server = await startPostgres({ auth: 'password' });
      await server.asUser(
        `CREATE TABLE big AS SELECT g AS id, 'user' || g || '@example.com' AS email, 'some note ' || g AS note, g * 2 AS n FROM generate_series(1, ${rows}) g`,
      );
    });
    after(async () => server?.stop());

    test('masked stream within 1.3x of direct, memory flat', { timeout: 600_000 }, async () => {
      const plainChild = await spawnEnforcer(server, false);
      const maskChild = await spawnEnforcer(server, true);
      const noopChild = await spawnEnforcer(server, 'noop');
      try {
        const results: Record<string, number[]> = { direct: [], plain: [], noop: [], masked: [] };
        const direct = [
          ['user', server.user],
          ['database', server.database],
        ] as [string, string][];
        let sample = '';
        for (let i = 0; i < 3; i++) {
          results.direct!.push((await stream(server.socketDir, server.port, direct)).ms);
          results.plain!.push((await stream('127.0.0.1', plainChild.port)).ms);
          results.noop!.push((await stream('127.0.0.1', noopChild.port)).ms);
          const masked = await stream('127.0.0.1', maskChild.port);
          assert.equal(masked.rows, rows);
          sample = masked.sample;
          results.masked!.push(masked.ms);
        }
        const stats = await maskChild.stats();
        const base = Math.min(...results.direct!);
        const plain = Math.min(...results.plain!);
        const masked = Math.min(...results.masked!);
        const noop = Math.min(...results.noop!);
        console.log(
          JSON.stringify({
            rows,
            directMs: Math.round(base),
            plainMs: Math.round(plain),
            maskedMs: Math.round(masked),
            plainRatio: plain / base,
            noopScanRatio: noop / base,
            maskedRatio: masked / base,
            idleRssMB: maskChild.idleRss / 1e6,
            peakRssMB: stats.peak / 1e6,
            detail: (stats as { detail?: unknown }).detail,
            plain: await plainChild.stats(),
          }),
        );
        assert.match(sample, /REDACTED/);
        assert.ok(stats.peak < 150e6, `peak RSS ${stats.peak}`);
        assert.ok(masked / base < 1.3, `masked stream ${masked / base} times direct`);
      } finally {
        plainChild.stop();
        maskChild.stop();
        noopChild.stop();
      }
    });
  });
}
