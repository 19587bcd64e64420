// Memory of the data path's processes and of those that hold the embedded audit store, read from
// /proc (VmRSS, VmHWM):
// - `airlock sidecar` serving a PostgreSQL Connection, against the operator's control API and
//   collector (bench/memory/control-api.ts): idle with its bundle, peak under pgbench through
//   it (every statement an event delivered to the collector), idle again after it.
// - `airlock local` on a new store: idle once ready (beside the same process recording to
//   PostgreSQL: the embedded store's share), peak under pgbench through its PostgreSQL listener
//   (every statement is an event in the store), idle again after it.
// - `airlock operator` on a new embedded store, against a real API server: idle once ready,
//   first start (the store's first batches, 20,000 events in batches of 500 from 2 senders, as
//   sidecars send them) and steady (after the ingest settles).
// Each process runs as the image runs it: JavaScript compiled from this checkout's sources
// (image/compile.sh), with the V8 flags its command runs with (bin/node-flags.js).
import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { nodeFlags } from '../bin/node-flags.js';
import { startControlPlane } from '../test/support/controlplane.ts';
import { createAgentPod, startOperatorProcess } from '../test/support/operator.ts';
import { type PostgresServer, startPostgres } from '../test/support/postgres.ts';
import { freePort, type Service, startService, waitFor } from '../test/support/process.ts';

const run = promisify(execFile);
const repository = new URL('../', import.meta.url).pathname;

/** The image's folders of this checkout and the measured collector, compiled as the image runs them. */
async function compiledApp(work: string): Promise<string> {
  const app = join(work, 'app');
  for (const folder of 'api audit bin cli console local metrics operator policy sidecar'.split(' '))
    cpSync(join(repository, folder), join(app, folder), {
      recursive: true,
      filter: (path) => !/\.(test|bench)\.ts$/.test(path),
    });
  cpSync(join(repository, 'bench/memory/control-api.ts'), join(app, 'bench/memory/control-api.ts'));
  cpSync(join(repository, 'package.json'), join(app, 'package.json'));
  symlinkSync(join(repository, 'node_modules'), join(app, 'node_modules'));
  await run('bash', [join(repository, 'image/compile.sh'), app, join(repository, 'node_modules/.bin/tsc')]);
  return app;
}

function memory(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0);
  return { rss: kb('VmRSS') / 1024, peak: kb('VmHWM') / 1024 };
}

interface Row {
  process: string;
  measure: string;
  mb: number;
  goal: number;
}

/** The bench's Connection to `db` and the policy granting it to bench/agent, in a directory of their own. */
function writeManifests(db: PostgresServer, work: string): string {
  const manifests = join(work, 'manifests');
  mkdirSync(manifests);
  writeFileSync(
    join(manifests, 'bench.yaml'),
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
    - {name: pii, detectors: [credit-card, email, us-ssn, phone, iban], strategy: partial}
  rules:
    - {name: no-ddl, action: deny, sql: {statements: [DROP, TRUNCATE, ALTER]}}
`,
  );
  return manifests;
}

/** pgbench -S through `port` for 10 s with 4 clients. */
async function pgbenchThrough(db: PostgresServer, port: number): Promise<void> {
  await run(
    'pgbench',
    [
      '-n',
      '-S',
      '-c',
      '4',
      '-j',
      '2',
      '-T',
      '10',
      '-h',
      '127.0.0.1',
      '-p',
      String(port),
      '-U',
      db.user,
      db.database,
    ],
    { env: { ...process.env, PGPASSWORD: db.password } },
  );
}

async function benchSidecar(
  db: PostgresServer,
  work: string,
  app: string,
  manifests: string,
): Promise<Row[]> {
  const logFile = join(work, 'control-api.log');
  const caFile = join(work, 'operator-ca.crt');
  const operator = startService(
    'control API',
    process.execPath,
    [
      ...nodeFlags('operator'),
      join(app, 'bench/memory/control-api.js'),
      manifests,
      join(work, 'sidecar-store'),
      caFile,
    ],
    { logFile },
  );
  try {
    let controlApi = '';
    await waitFor(
      'control API',
      async () => {
        controlApi = /listening on (\S+)/.exec(readFileSync(logFile, 'utf8'))?.[1] ?? '';
        return controlApi !== '';
      },
      { service: operator },
    );
    const tokenFile = join(work, 'token');
    writeFileSync(tokenFile, 'bench');
    const port = await freePort();
    const healthPort = await freePort();
    const sidecar = startService(
      'airlock sidecar',
      process.execPath,
      [
        ...nodeFlags('sidecar'),
        join(app, 'bin/airlock.js'),
        'sidecar',
        `--control-api=${controlApi}`,
        `--token-file=${tokenFile}`,
        `--ca-file=${caFile}`,
        `--listen=bench-db=127.0.0.1:${port}/postgres`,
        `--health-port=${healthPort}`,
        `--metrics-port=${await freePort()}`,
        '--no-audit-log',
      ],
      { logFile: join(work, 'sidecar.log') },
    );
    try {
      await waitFor('sidecar ready', async () => (await fetch(`http://127.0.0.1:${healthPort}/readyz`)).ok, {
        service: sidecar,
      });
      await sleep(3000);
      const idle = memory(sidecar.child.pid!);
      await pgbenchThrough(db, port);
      await sleep(3000);
      const after = memory(sidecar.child.pid!);
      return [
        { process: 'airlock sidecar', measure: 'idle, a PostgreSQL Connection', mb: idle.rss, goal: 60 },
        {
          process: 'airlock sidecar',
          measure: 'peak (pgbench -S, 4 clients, 10 s)',
          mb: after.peak,
          goal: 120,
        },
        { process: 'airlock sidecar', measure: 'idle after the load', mb: after.rss, goal: 60 },
      ];
    } finally {
      await sidecar.stop();
    }
  } finally {
    await operator.stop();
  }
}

async function benchLocal(db: PostgresServer, work: string, app: string, manifests: string): Promise<Row[]> {
  const port = await freePort();
  // The same process recording to PostgreSQL: what it takes without an embedded store.
  await db.admin(`CREATE DATABASE airlock_audit OWNER ${db.user}`);
  const withoutStore = await startLocal(
    app,
    work,
    manifests,
    port,
    `postgres://${db.user}:${encodeURIComponent(db.password)}@127.0.0.1:${db.port}/airlock_audit`,
  );
  await sleep(3000);
  const baseline = memory(withoutStore.child.pid!);
  await withoutStore.stop();
  const service = await startLocal(app, work, manifests, port, join(work, 'local-store'));
  try {
    await sleep(3000);
    const idle = memory(service.child.pid!);
    await pgbenchThrough(db, port);
    await sleep(3000);
    const after = memory(service.child.pid!);
    return [
      {
        process: 'airlock local',
        measure: 'idle, recording to PostgreSQL instead',
        mb: baseline.rss,
        goal: 120,
      },
      { process: 'airlock local', measure: 'idle (new store)', mb: idle.rss, goal: 120 },
      { process: 'airlock local', measure: 'peak (pgbench -S, 4 clients, 10 s)', mb: after.peak, goal: 250 },
      { process: 'airlock local', measure: 'idle after the load', mb: after.rss, goal: 120 },
    ];
  } finally {
    await service.stop();
  }
}

async function startLocal(
  app: string,
  work: string,
  manifests: string,
  port: number,
  store: string,
): Promise<Service> {
  const logFile = join(work, `local-${Date.now()}.log`);
  const service = startService(
    'airlock local',
    process.execPath,
    [
      ...nodeFlags('local'),
      join(app, 'bin/airlock.js'),
      'local',
      '-f',
      manifests,
      '--as',
      'system:serviceaccount:bench:agent',
      '--listen',
      `bench-db=127.0.0.1:${port}`,
      '--store',
      store,
    ],
    { logFile },
  );
  await waitFor('airlock local', async () => readFileSync(logFile, 'utf8').includes('ready'), { service });
  return service;
}

function event(n: number) {
  const base = {
    version: 1,
    id: `bench-${n}`,
    sessionId: `session-${Math.floor(n / 50)}`,
    seq: n % 50,
    time: new Date().toISOString(),
    connection: { name: 'orders-db', namespace: 'agents', protocol: 'postgres' },
    identity: { namespace: 'agents', serviceAccount: 'agent', pod: 'agent-0' },
  };
  if (n % 50 === 0) return { ...base, type: 'session.start', client: { address: '10.0.0.5:40000' } };
  return {
    ...base,
    type: 'request',
    text: `SELECT id, email FROM customers WHERE id = $1 -- ${n}`,
    kind: 'SELECT',
    outcome: 'masked',
    policy: 'agent-orders',
    masked: { 'pii/email': 1 },
    rows: 1,
    durationMs: 2,
  };
}

/** POSTs one NDJSON batch to the operator's collector as the agent pod's sidecar does. */
function postEvents(url: string, token: string, ca: string, body: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      url,
      {
        method: 'POST',
        ca,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-ndjson' },
      },
      (res) => {
        res.resume();
        res.on('end', () =>
          res.statusCode === 200 ? resolve() : reject(new Error(`collector answered ${res.statusCode}`)),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * `airlock operator` on its embedded store against a real API server: idle once ready, first
 * start (the store's first batch, then 20,000 events in batches of 500 from 2 senders, as
 * sidecars send them, each authenticated with the agent pod's token) and steady (after the
 * ingest settles).
 */
async function benchOperator(work: string, app: string): Promise<Row[]> {
  const cluster = await startControlPlane();
  try {
    await cluster.installCrds();
    for (const namespace of ['airlock-system', 'agents'])
      await cluster.kubectl(['create', 'namespace', namespace]);
    await cluster.kubectl(['create', 'serviceaccount', 'agent', '-n', 'agents']);
    const token = await createAgentPod(cluster);
    const directory = join(work, 'operator');
    mkdirSync(directory);
    const operator = await startOperatorProcess(cluster, directory, { app });
    try {
      const pid = operator.service.child.pid!;
      let ca = '';
      await waitFor('the operator CA published', async () => {
        const map = JSON.parse(
          await cluster.kubectl(['get', 'configmap', 'airlock-ca', '-n', 'agents', '-o', 'json']),
        );
        ca = map.data['ca.crt'];
        return true;
      });
      await sleep(3000);
      const idle = memory(pid);
      const url = `${operator.controlApiUrl}/v1/events`;
      const batches: string[] = [];
      for (let start = 0; start < 20_000; start += 500)
        batches.push(
          `${Array.from({ length: 500 }, (_, i) => JSON.stringify(event(start + i))).join('\n')}\n`,
        );
      let next = 0;
      await Promise.all(
        Array.from({ length: 2 }, async () => {
          while (next < batches.length) await postEvents(url, token, ca, batches[next++]!);
        }),
      );
      await sleep(5000);
      const settled = memory(pid);
      return [
        { process: 'airlock operator', measure: 'idle, ready', mb: idle.rss, goal: 150 },
        {
          process: 'airlock operator',
          measure: "first start (peak: the store's first batches, 20,000 events)",
          mb: settled.peak,
          goal: 200,
        },
        { process: 'airlock operator', measure: 'steady (after the ingest)', mb: settled.rss, goal: 150 },
      ];
    } finally {
      await operator.stop();
    }
  } finally {
    await cluster.stop();
  }
}

const work = mkdtempSync(join(tmpdir(), 'airlock-bench-memory-'));
const db = await startPostgres();
try {
  await run(
    'pgbench',
    ['-i', '-s', '1', '-q', '-h', '127.0.0.1', '-p', String(db.port), '-U', db.user, db.database],
    {
      env: { ...process.env, PGPASSWORD: db.password },
    },
  );
  const app = await compiledApp(work);
  const manifests = writeManifests(db, work);
  const rows = [
    ...(await benchSidecar(db, work, app, manifests)),
    ...(await benchLocal(db, work, app, manifests)),
    ...(await benchOperator(work, app)),
  ];
  console.log('| process | measure | RSS | goal | |\n|---|---|---|---|---|');
  for (const row of rows)
    console.log(
      `| ${row.process} | ${row.measure} | ${row.mb.toFixed(0)} MB | ≤ ${row.goal} MB | ${row.mb <= row.goal ? 'OK' : 'ABOVE GOAL'} |`,
    );
} finally {
  await db.stop();
  rmSync(work, { recursive: true, force: true });
}
