// PostgreSQL data path: pgbench select-only (simple and prepared, 1 and 8 clients) direct vs
// pgbouncer vs the enforcer with a realistic policy, interleaved round by round; a 1M-row
// result with masking on, direct vs the enforcer, with the enforcer's peak RSS; its idle RSS.
// The enforcer runs as `airlock local` in its own process, recording to PostgreSQL.
import { execFile, spawn } from 'node:child_process';
import { chownSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { nodeFlags } from '../bin/node-flags.js';
import { type PostgresServer, startPostgres } from '../test/support/postgres.ts';
import { freePort, startService, waitFor } from '../test/support/process.ts';

const run = promisify(execFile);
const repository = new URL('../', import.meta.url).pathname;
const seconds = Number(process.env.BENCH_SECONDS ?? 5);
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);

export interface Row {
  name: string;
  values: Record<string, number>;
  unit: string;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function memory(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0);
  return { rss: kb('VmRSS') / 1024, peak: kb('VmHWM') / 1024 };
}

async function pgbench(
  port: number,
  user: string,
  password: string,
  database: string,
  mode: string,
  clients: number,
) {
  const { stdout } = await run(
    'pgbench',
    [
      '-n',
      '-S',
      '-M',
      mode,
      '-c',
      String(clients),
      '-j',
      String(Math.min(clients, 2)),
      '-T',
      String(seconds),
      '-h',
      '127.0.0.1',
      '-p',
      String(port),
      '-U',
      user,
      database,
    ],
    { env: { ...process.env, PGPASSWORD: password }, maxBuffer: 1 << 20 },
  );
  const tps = /tps = ([\d.]+) \(without initial connection time\)/.exec(stdout)?.[1];
  if (!tps) throw new Error(`pgbench printed no tps:\n${stdout}`);
  return Number(tps);
}

async function startPgbouncer(
  db: PostgresServer,
  work: string,
): Promise<{ port: number; stop(): Promise<void> }> {
  const port = await freePort();
  writeFileSync(join(work, 'userlist.txt'), `"${db.user}" "${db.password}"\n`);
  writeFileSync(
    join(work, 'pgbouncer.ini'),
    `[databases]
${db.database} = host=127.0.0.1 port=${db.port} dbname=${db.database}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = ${join(work, 'userlist.txt')}
pool_mode = session
max_client_conn = 100
default_pool_size = 20
logfile = ${join(work, 'pgbouncer.log')}
`,
  );
  const postgresUser = Number((await run('id', ['-u', 'postgres'])).stdout);
  const postgresGroup = Number((await run('id', ['-g', 'postgres'])).stdout);
  if (process.getuid?.() === 0) {
    for (const f of ['', 'userlist.txt', 'pgbouncer.ini'])
      chownSync(join(work, f), postgresUser, postgresGroup);
  }
  const service = startService('pgbouncer', 'pgbouncer', [join(work, 'pgbouncer.ini')], {
    logFile: join(work, 'pgbouncer.out'),
    ...(process.getuid?.() === 0 && { uid: postgresUser, gid: postgresGroup }),
  });
  await waitFor(
    'pgbouncer',
    async () => await run('pg_isready', ['-h', '127.0.0.1', '-p', String(port)]).then(() => true),
    {
      service,
    },
  );
  return { port, stop: () => service.stop() };
}

async function startEnforcer(db: PostgresServer, work: string) {
  await db.admin(`CREATE DATABASE airlock_audit OWNER ${db.user}`);
  const port = await freePort();
  writeFileSync(
    join(work, 'manifests.yaml'),
    `apiVersion: v1
kind: Secret
metadata: {name: bench-db, namespace: bench}
stringData: {username: ${db.user}, password: ${db.password}}
---
apiVersion: airlock.dev/v1alpha1
kind: Connection
metadata: {name: bench-db, namespace: bench}
spec:
  protocol: postgres
  host: 127.0.0.1
  port: ${db.port}
  tls: {mode: disable}
  credentials: {secretRef: {name: bench-db}}
  postgres: {database: ${db.database}}
---
apiVersion: airlock.dev/v1alpha1
kind: AccessPolicy
metadata: {name: bench-agent, namespace: bench}
spec:
  subjects: [{kind: ServiceAccount, name: agent}]
  connections: [bench-db]
  masking:
    - name: pii
      detectors: [credit-card, email, us-ssn, phone, iban]
      strategy: partial
    - name: identity
      columns: ["*.ssn", "public.pgbench_accounts.filler"]
      strategy: redact
  rules:
    - {name: no-ddl, action: deny, sql: {statements: [DROP, TRUNCATE, ALTER]}}
    - {name: no-admin, action: deny, sql: {classes: [admin, dcl]}}
    - {name: no-unbounded-writes, action: deny, sql: {unboundedWrites: true}}
`,
  );
  const service = startService(
    'airlock local',
    process.execPath,
    [
      ...nodeFlags('local'), // as the CLI would re-run itself; so the measured process is the enforcer
      join(repository, 'bin/airlock.js'),
      'local',
      '-f',
      join(work, 'manifests.yaml'),
      '--as',
      'system:serviceaccount:bench:agent',
      '--listen',
      `bench-db=127.0.0.1:${port}`,
      '--store',
      `postgres://${db.user}:${db.password}@127.0.0.1:${db.port}/airlock_audit`,
    ],
    { logFile: join(work, 'airlock.log') },
  );
  await waitFor(
    'airlock local',
    async () => readFileSync(join(work, 'airlock.log'), 'utf8').includes('ready'),
    {
      service,
    },
  );
  return { port, pid: service.child.pid!, stop: () => service.stop() };
}

export async function benchPostgres(log: (line: string) => void): Promise<Row[]> {
  const work = mkdtempSync(join(tmpdir(), 'airlock-bench-pg-'));
  const db = await startPostgres();
  const rows: Row[] = [];
  try {
    const env = { ...process.env, PGPASSWORD: db.password };
    await run(
      'pgbench',
      ['-i', '-s', '10', '-q', '-h', '127.0.0.1', '-p', String(db.port), '-U', db.user, db.database],
      { env },
    );
    await db.asUser(
      `CREATE TABLE big AS SELECT g AS id, 'user' || g || '@example.com' AS email, 'order ' || g || ' shipped' AS note, g * 2 AS n, now() AS created FROM generate_series(1, 1000000) g`,
    );
    const bouncer = await startPgbouncer(db, work);
    const enforcer = await startEnforcer(db, work);
    const idle = memory(enforcer.pid);
    rows.push({ name: 'enforcer idle RSS', values: { enforcer: idle.rss }, unit: 'MB' });
    try {
      const targets = { direct: db.port, pgbouncer: bouncer.port, enforcer: enforcer.port };
      for (const mode of ['simple', 'prepared']) {
        for (const clients of [1, 8]) {
          const tps: Record<string, number[]> = { direct: [], pgbouncer: [], enforcer: [] };
          for (let round = 0; round < rounds; round++) {
            for (const [name, port] of Object.entries(targets)) {
              tps[name]!.push(await pgbench(port, db.user, db.password, db.database, mode, clients));
            }
          }
          const values = Object.fromEntries(Object.entries(tps).map(([k, v]) => [k, median(v)]));
          rows.push({
            name: `pgbench -S ${mode}, ${clients} client${clients > 1 ? 's' : ''}`,
            values,
            unit: 'tps',
          });
          log(`  ${rows.at(-1)!.name}: ${JSON.stringify(values)}`);
        }
      }
      const stream: Record<string, number[]> = { direct: [], enforcer: [] };
      for (let round = 0; round < rounds; round++) {
        for (const [name, port] of [
          ['direct', db.port],
          ['enforcer', enforcer.port],
        ] as const) {
          const started = process.hrtime.bigint();
          await new Promise<void>((resolve, reject) => {
            const psql = spawn(
              'psql',
              [
                '-X',
                '-At',
                '-h',
                '127.0.0.1',
                '-p',
                String(port),
                '-U',
                db.user,
                '-d',
                db.database,
                '-c',
                'SELECT * FROM big',
              ],
              {
                env,
                stdio: ['ignore', 'ignore', 'inherit'],
              },
            );
            psql.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`psql exited ${code}`))));
          });
          stream[name]!.push(Number(process.hrtime.bigint() - started) / 1e9);
        }
      }
      rows.push({
        name: '1M rows, masking on (psql wall time)',
        values: Object.fromEntries(Object.entries(stream).map(([k, v]) => [k, median(v)])),
        unit: 's',
      });
      rows.push({ name: 'enforcer peak RSS', values: { enforcer: memory(enforcer.pid).peak }, unit: 'MB' });
    } finally {
      await enforcer.stop();
      await bouncer.stop();
    }
  } finally {
    await db.stop();
    rmSync(work, { recursive: true, force: true });
  }
  return rows;
}

function table(rows: Row[]): string {
  const lines = [
    '| measure | direct | pgbouncer | enforcer | enforcer / pgbouncer | enforcer / direct |',
    '|---|---|---|---|---|---|',
  ];
  const fmt = (v: number | undefined, unit: string) =>
    v === undefined ? '' : `${v.toFixed(unit === 'tps' ? 0 : 2)} ${unit}`;
  for (const row of rows) {
    const { direct, pgbouncer, enforcer } = row.values;
    const ratio = (a?: number, b?: number) =>
      a !== undefined && b !== undefined ? `${(a / b).toFixed(2)}×` : '';
    lines.push(
      `| ${row.name} | ${fmt(direct, row.unit)} | ${fmt(pgbouncer, row.unit)} | ${fmt(enforcer, row.unit)} | ${ratio(enforcer, pgbouncer)} | ${ratio(enforcer, direct)} |`,
    );
  }
  return lines.join('\n');
}

if (import.meta.main) {
  console.log(`PostgreSQL: pgbench ${seconds}s per run, median of ${rounds} interleaved rounds`);
  const rows = await benchPostgres((line) => console.log(line));
  console.log(table(rows));
  console.log(
    'Goals: pgbench -S >= 0.9x pgbouncer; the 1M-row masked result <= 1.5x direct (memory: bench/memory.ts).',
  );
}
