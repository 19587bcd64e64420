// The approval round trip: how long after an approver's decision is written the held statement
// runs. Real parts throughout: a kube-apiserver with the approval webhooks, the `airlock
// operator` and `airlock sidecar` processes, PostgreSQL, and a pg client as the agent. Each
// iteration holds an UPDATE, waits for its AccessRequest, then times from the moment the
// approver's merge patch is sent (through both admission webhooks) until the statement's
// result arrives. Goal: p99 ≤ 1 s.
//
//   node bench/approval.ts [--iterations 50]
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import pg from 'pg';
import { approvalWebhookConfigurations } from '../operator/approvals/configuration.ts';
import { webhookConfiguration } from '../operator/injection/configuration.ts';
import { startControlPlane } from '../test/support/controlplane.ts';
import { grantApprovers, grantOrdersDb } from '../test/support/operator.ts';
import { startPostgres } from '../test/support/postgres.ts';
import { freePort, startService, waitFor } from '../test/support/process.ts';
import { startSidecarProcess } from '../test/support/sidecar.ts';
import { findTool } from '../test/support/tools.ts';

const { values } = parseArgs({ options: { iterations: { type: 'string', default: '50' } } });
const iterations = Number(values.iterations);
const cli = new URL('../bin/airlock.js', import.meta.url).pathname;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;
}

for (const tool of ['etcd', 'kube-apiserver', 'kubectl', 'postgres']) {
  if (!findTool(tool)) {
    console.log(`approval: skipped, ${tool} is not available`);
    process.exit(0);
  }
}

const work = await mkdtemp(join(tmpdir(), 'airlock-bench-approval-'));
const database = await startPostgres();
const cluster = await startControlPlane();
const stops: (() => Promise<void>)[] = [];
try {
  await database.admin(
    "CREATE TABLE orders (id int, status text); INSERT INTO orders VALUES (1, 'paid')",
    database.database,
  );
  await database.admin(`GRANT ALL ON orders TO ${database.user}`, database.database);
  const kubectl = (args: string[], input?: string) =>
    cluster.kubectl(args, input === undefined ? {} : { input });
  const apply = (manifest: object) => kubectl(['apply', '-f', '-'], JSON.stringify(manifest));
  await cluster.installCrds();
  for (const ns of ['airlock-system', 'agents']) await kubectl(['create', 'namespace', ns]);
  await kubectl(['label', 'namespace', 'agents', 'airlock.dev/injection=enabled']);
  await kubectl(['create', 'serviceaccount', 'agent', '-n', 'agents']);
  await grantApprovers(cluster, { groups: ['dba-oncall'] });
  await grantOrdersDb(cluster, database, {
    host: '127.0.0.1',
    policy: {
      rules: [
        {
          name: 'writes',
          action: 'require-approval',
          sql: { statements: ['UPDATE'] },
          approval: { approvers: { groups: ['dba-oncall'] }, timeout: '1m' },
        },
      ],
    },
  });
  const ports = { webhook: await freePort(), controlApi: await freePort(), probe: await freePort() };
  await apply(
    webhookConfiguration({
      operatorNamespace: 'airlock-system',
      url: `https://127.0.0.1:${ports.webhook}/inject`,
    }),
  );
  const hooks = approvalWebhookConfigurations({
    operatorNamespace: 'airlock-system',
    url: `https://127.0.0.1:${ports.webhook}`,
  });
  await apply(hooks.mutating);
  await apply(hooks.validating);
  const operator = startService(
    'airlock operator',
    process.execPath,
    [
      cli,
      'operator',
      `--kubeconfig=${cluster.kubeconfig.admin}`,
      '--namespace=airlock-system',
      '--identity=operator-0',
      `--store=${join(work, 'audit')}`,
      '--tls-ip=127.0.0.1',
      `--webhook-port=${ports.webhook}`,
      `--control-api-port=${ports.controlApi}`,
      `--probe-port=${ports.probe}`,
      `--control-api-url=https://127.0.0.1:${ports.controlApi}`,
      '--image=airlock:test',
      '--log-level=warn',
    ],
    { logFile: join(work, 'operator.log') },
  );
  stops.push(() => operator.stop());
  await waitFor('operator ready', async () => (await fetch(`http://127.0.0.1:${ports.probe}/readyz`)).ok, {
    service: operator,
    timeoutMs: 60_000,
  });
  await waitFor('approval webhooks trust the operator', async () => {
    const v = JSON.parse(
      await kubectl(['get', 'validatingwebhookconfiguration', 'airlock-approvals', '-o', 'json']),
    );
    return Boolean(v.webhooks[0].clientConfig.caBundle);
  });
  const { service: sidecar, port: listenPort } = await startSidecarProcess(cluster, work, {
    controlApiUrl: `https://127.0.0.1:${ports.controlApi}`,
    connection: 'orders-db',
    protocol: 'postgres',
  });
  stops.unshift(() => sidecar.stop());

  const clientFor = (kubeconfig: string) => {
    const config = new KubeConfig();
    config.loadFromFile(kubeconfig);
    return config.makeApiClient(CustomObjectsApi);
  };
  const admin = clientFor(cluster.kubeconfig.admin);
  const alice = clientFor(cluster.kubeconfig.approver);
  const ar = { group: 'airlock.dev', version: 'v1alpha1', plural: 'accessrequests', namespace: 'agents' };
  const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
  const client = new pg.Client({
    host: '127.0.0.1',
    port: listenPort,
    user: 'agent',
    password: 'x',
    database: 'x',
  });
  await client.connect();
  const seen = new Set<string>();
  const roundTrips: number[] = [];
  const afterWrite: number[] = [];
  for (let i = 0; i < iterations; i++) {
    const statement = client.query(`UPDATE orders SET status = 'round ${i}' WHERE id = 1`);
    let name: string | undefined;
    while (!name) {
      const list = (await admin.listNamespacedCustomObject(ar)) as {
        items: { metadata: { name: string }; status?: { phase?: string } }[];
      };
      name = list.items.find((r) => !seen.has(r.metadata.name) && r.status?.phase === 'Pending')?.metadata
        .name;
      if (!name) await new Promise((r) => setTimeout(r, 10));
    }
    seen.add(name);
    const sent = performance.now();
    await alice.patchNamespacedCustomObject(
      { ...ar, name, body: { spec: { decision: { action: 'approve' } } } },
      mergePatch,
    );
    const written = performance.now();
    await statement;
    const released = performance.now();
    roundTrips.push(released - sent);
    afterWrite.push(released - written);
  }
  await client.end();
  const report = (label: string, samples: number[]) => {
    const sorted = [...samples].sort((a, b) => a - b);
    console.log(
      `${label.padEnd(44)} p50 ${percentile(sorted, 50).toFixed(1)} ms  p99 ${percentile(sorted, 99).toFixed(1)} ms  max ${sorted.at(-1)!.toFixed(1)} ms`,
    );
    return percentile(sorted, 99);
  };
  console.log(`approval round trip, ${iterations} held UPDATEs approved one after another`);
  const p99 = report('decision sent (patch + webhooks) → released', roundTrips);
  report('decision written (patch answered) → released', afterWrite);
  console.log(`goal p99 ≤ 1000 ms: ${p99 <= 1000 ? 'met' : 'NOT met'}`);
  if (p99 > 1000) process.exitCode = 1;
} catch (error) {
  console.error(error);
  const log = await readFile(join(work, 'operator.log'), 'utf8').catch(() => '');
  console.error(log.split('\n').slice(-20).join('\n'));
  process.exitCode = 1;
} finally {
  for (const stop of stops) await stop();
  await cluster.stop();
  await database.stop();
  await rm(work, { recursive: true, force: true });
}
