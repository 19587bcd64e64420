// HTTP data path: wrk with keep-alive against a node:http target, direct vs through the
// enforcer, interleaved round by round, for a small JSON response (masking on, detectors
// finding three values in it) and a 1 MB JSON response (an email in every record); a denied
// path answered by the enforcer alone; the enforcer's idle and peak RSS. The enforcer runs as
// `airlock local` in its own process, twice: recording to the embedded store (its default, in
// the same process) and to PostgreSQL. After each run the control socket waits for the
// recording to catch up, so a backlog neither spills into the next run nor goes unseen.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { nodeFlags } from '../bin/node-flags.js';
import { callControl, controlSocket } from '../local/control.ts';
import { type PostgresServer, startPostgres } from '../test/support/postgres.ts';
import { freePort, type Service, startService, waitFor } from '../test/support/process.ts';
import { findTool } from '../test/support/tools.ts';

const run = promisify(execFile);
const repository = new URL('../', import.meta.url).pathname;
const seconds = Number(process.env.BENCH_SECONDS ?? 5);
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const connections = Number(process.env.BENCH_CONNECTIONS ?? 8);

export interface Load {
  rps: number;
  p99Ms: number;
}

export const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function memory(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0);
  return { rss: kb('VmRSS') / 1024, peak: kb('VmHWM') / 1024 };
}

// The target, run with `node -e` in its own process: fixed bodies built once, so it costs as
// little as a target can.
const targetSource = `
const { createServer } = require('node:http');
const small = JSON.stringify({
  customer: { name: 'Alice', email: 'alice@example.com', card: '4111111111111111', tier: 'gold' },
  note: 'card on file 4111 1111 1111 1111',
  count: 3,
});
const records = [];
for (let i = 0, size = 0; size < 1024 * 1024; i++) {
  const record = { id: i, email: 'user' + i + '@example.com', status: i % 3 ? 'shipped' : 'pending',
    amount: (i * 37 % 10000) / 100, sku: 'SKU-' + String(i * 7919 % 1000000).padStart(6, '0') };
  size += JSON.stringify(record).length + 1;
  records.push(record);
}
const big = Buffer.from(JSON.stringify({ orders: records }));
const smallBuffer = Buffer.from(small);
createServer((req, res) => {
  const body = req.url === '/big' ? big : smallBuffer;
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
  res.end(body);
}).listen(Number(process.argv[1]), '127.0.0.1');
`;

export async function startTarget(work: string): Promise<{ port: number; service: Service }> {
  const port = await freePort();
  const service = startService('target', process.execPath, ['-e', targetSource, String(port)], {
    logFile: join(work, 'target.log'),
  });
  await waitFor('target', async () => (await fetch(`http://127.0.0.1:${port}/small`)).ok, { service });
  return { port, service };
}

interface Enforcer {
  name: string;
  port: number;
  pid: number;
  store: string;
  stop(): Promise<void>;
}

async function startEnforcer(
  work: string,
  name: string,
  targetPort: number,
  store: string,
): Promise<Enforcer> {
  const port = await freePort();
  const manifests = join(work, 'manifests.yaml');
  writeFileSync(
    manifests,
    `apiVersion: v1
kind: Secret
metadata: {name: orders-api, namespace: bench}
stringData: {token: bench-token}
---
apiVersion: airlock.dev/v1alpha1
kind: Connection
metadata: {name: orders-api, namespace: bench}
spec:
  protocol: http
  host: 127.0.0.1
  port: ${targetPort}
  http: {scheme: http}
  credentials: {secretRef: {name: orders-api}}
---
apiVersion: airlock.dev/v1alpha1
kind: AccessPolicy
metadata: {name: bench-agent, namespace: bench}
spec:
  subjects: [{kind: ServiceAccount, name: agent}]
  connections: [orders-api]
  masking:
    - name: pii
      detectors: [credit-card, email, us-ssn, phone, iban]
      strategy: partial
  rules:
    - {name: no-admin, action: deny, http: {paths: [/admin, /admin/**]}}
    - {name: no-deletes, action: deny, http: {methods: [DELETE]}}
`,
  );
  const logFile = join(work, `airlock-${name.replace(/\W+/g, '-')}.log`);
  const service = startService(
    'airlock local',
    process.execPath,
    [
      ...nodeFlags('local'), // as the CLI would re-run itself; so the measured process is the enforcer
      join(repository, 'bin/airlock.js'),
      'local',
      '-f',
      manifests,
      '--as',
      'system:serviceaccount:bench:agent',
      '--listen',
      `orders-api=127.0.0.1:${port}`,
      '--store',
      store,
    ],
    { logFile },
  );
  await waitFor('airlock local', async () => readFileSync(logFile, 'utf8').includes('ready'), { service });
  return { name, port, pid: service.child.pid!, store, stop: () => service.stop() };
}

/** Waits until the enforcer has recorded every event of the last run: its control socket flushes. */
async function drain(enforcer: Enforcer): Promise<number> {
  const started = performance.now();
  const response = await callControl(controlSocket(enforcer.store), 'GET', '/sessions?limit=1');
  if (response?.status !== 200)
    throw new Error(`${enforcer.name}: control socket answered ${response?.status}`);
  return (performance.now() - started) / 1000;
}

const units: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000 };

/** One wrk run: keep-alive, one thread, `connections` connections, `seconds` long. */
export async function wrk(url: string, expectStatus = 200): Promise<Load> {
  const { stdout } = await run(
    'wrk',
    ['-t1', `-c${connections}`, `-d${seconds}s`, '--timeout', '10s', '--latency', url],
    { maxBuffer: 1 << 20 },
  );
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1];
  const p99 = /^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$/m.exec(stdout);
  if (!rps || !p99) throw new Error(`wrk printed no rate or latency:\n${stdout}`);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(stdout)?.[1] ?? 0);
  const requests = Number(/(\d+) requests in/.exec(stdout)?.[1] ?? 0);
  if (non2xx !== (expectStatus === 200 ? 0 : requests)) {
    throw new Error(`${url}: expected every response to be ${expectStatus}:\n${stdout}`);
  }
  if (/Socket errors/.test(stdout)) console.log(`  ${url}: ${/Socket errors.*/.exec(stdout)![0]}`);
  return { rps: Number(rps), p99Ms: Number(p99[1]) * units[p99[2]!]! };
}

/** The enforcer is really in the path: the small body comes back masked, /admin is refused. */
async function check(enforcerPort: number): Promise<void> {
  const small = await (await fetch(`http://127.0.0.1:${enforcerPort}/small`)).text();
  if (small.includes('alice@example.com') || small.includes('4111111111111111'))
    throw new Error(`the enforcer did not mask: ${small}`);
  const admin = await fetch(`http://127.0.0.1:${enforcerPort}/admin/users`);
  await admin.arrayBuffer();
  if (admin.status !== 403) throw new Error(`/admin/users answered ${admin.status}, not 403`);
}

interface Row {
  response: string;
  path: string;
  load: Load;
  direct?: Load;
  /** Seconds the enforcer still spent recording after the run ended. */
  drain?: number;
}

export async function benchHttp(log: (line: string) => void): Promise<{ rows: Row[]; notes: string[] }> {
  const work = mkdtempSync(join(tmpdir(), 'airlock-bench-http-'));
  const target = await startTarget(work);
  const enforcers: Enforcer[] = [];
  let db: PostgresServer | undefined;
  const rows: Row[] = [];
  const notes: string[] = [];
  try {
    enforcers.push(await startEnforcer(work, 'enforcer, embedded store', target.port, join(work, 'store')));
    if (findTool('postgres') && findTool('initdb')) {
      db = await startPostgres();
      await db.admin(`CREATE DATABASE airlock_audit OWNER ${db.user}`);
      const url = `postgres://${db.user}:${db.password}@127.0.0.1:${db.port}/airlock_audit`;
      enforcers.push(await startEnforcer(work, 'enforcer, PostgreSQL store', target.port, url));
    } else notes.push('PostgreSQL store: not run (postgres missing)');
    const idle = enforcers.map((e) => memory(e.pid).rss);
    for (const enforcer of enforcers) await check(enforcer.port);
    for (const [response, path] of [
      ['small JSON (~150 B), 3 values masked', '/small'],
      ['1 MB JSON, ~10k emails masked', '/big'],
    ] as const) {
      const direct: Load[] = [];
      const through = enforcers.map(() => ({ loads: [] as Load[], drains: [] as number[] }));
      for (let round = 0; round < rounds; round++) {
        direct.push(await wrk(`http://127.0.0.1:${target.port}${path}`));
        for (const [i, enforcer] of enforcers.entries()) {
          through[i]!.loads.push(await wrk(`http://127.0.0.1:${enforcer.port}${path}`));
          through[i]!.drains.push(await drain(enforcer));
        }
      }
      const summary = (loads: Load[]) => ({
        rps: median(loads.map((l) => l.rps)),
        p99Ms: median(loads.map((l) => l.p99Ms)),
      });
      const base = summary(direct);
      rows.push({ response, path: 'direct', load: base });
      for (const [i, enforcer] of enforcers.entries()) {
        rows.push({
          response,
          path: enforcer.name,
          load: summary(through[i]!.loads),
          direct: base,
          drain: median(through[i]!.drains),
        });
      }
      log(
        `  ${response}: ${rows
          .slice(-1 - enforcers.length)
          .map((r) => `${r.path} ${r.load.rps.toFixed(0)} rps`)
          .join(', ')}`,
      );
    }
    for (const enforcer of enforcers) {
      rows.push({
        response: 'denied /admin/users (403)',
        path: enforcer.name,
        load: await wrk(`http://127.0.0.1:${enforcer.port}/admin/users`, 403),
        drain: await drain(enforcer),
      });
    }
    for (const [i, enforcer] of enforcers.entries()) {
      notes.push(
        `${enforcer.name}: RSS idle ${idle[i]!.toFixed(0)} MB, peak ${memory(enforcer.pid).peak.toFixed(0)} MB`,
      );
    }
  } finally {
    for (const enforcer of enforcers) await enforcer.stop();
    await db?.stop();
    await target.service.stop();
    rmSync(work, { recursive: true, force: true });
  }
  return { rows, notes };
}

function table(rows: Row[]): string {
  const lines = [
    '| response | path | rate | p99 latency | rate / direct | p99 / direct | recording backlog after the run |',
    '|---|---|---|---|---|---|---|',
  ];
  const ratio = (a: number, b?: number) => (b ? `${(a / b).toFixed(2)}×` : '');
  for (const { response, path, load, direct, drain } of rows) {
    lines.push(
      `| ${response} | ${path} | ${load.rps.toFixed(0)} rps | ${load.p99Ms.toFixed(2)} ms | ${ratio(load.rps, direct?.rps)} | ${ratio(load.p99Ms, direct?.p99Ms)} | ${drain === undefined ? '' : `${drain.toFixed(2)} s`} |`,
    );
  }
  return lines.join('\n');
}

if (import.meta.main) {
  if (!findTool('wrk')) {
    console.log('HTTP: not run: wrk is missing (apt-get install wrk)');
    process.exit(1);
  }
  console.log(
    `HTTP: wrk -t1 -c${connections} keep-alive, ${seconds}s per run, median of ${rounds} interleaved rounds`,
  );
  const { rows, notes } = await benchHttp((line) => console.log(line));
  console.log(table(rows));
  for (const note of notes) console.log(note);
}
