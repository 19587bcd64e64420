// How long a policy change takes to reach 100 connected sidecars: a real API server, the
// operator as its own process (`airlock operator`), and 100 bundle streams authenticated with
// real pod-bound tokens. Each round changes the AccessPolicy and times, from the moment the
// API server has stored the change, until every stream has received the new bundle. Goal: <= 2 s.
//
//   node bench/propagation.ts [--sidecars 100] [--rounds 5]

import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CoreV1Api, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { webhookConfiguration } from '../operator/injection/configuration.ts';
import { mergePatch } from '../operator/kube.ts';
import { startControlPlane } from '../test/support/controlplane.ts';
import { freePort, startService, waitFor } from '../test/support/process.ts';

const { values } = parseArgs({
  options: { sidecars: { type: 'string', default: '100' }, rounds: { type: 'string', default: '5' } },
});
const sidecars = Number(values.sidecars);
const rounds = Number(values.rounds);
const repository = new URL('../', import.meta.url).pathname;
const namespace = 'agents';

const cluster = await startControlPlane();
const work = mkdtempSync(join(tmpdir(), 'airlock-bench-propagation-'));
const config = new KubeConfig();
config.loadFromFile(cluster.kubeconfig.admin);
const core = config.makeApiClient(CoreV1Api);
const custom = config.makeApiClient(CustomObjectsApi);
let operator: ReturnType<typeof startService> | undefined;
const streams: { destroy(): void }[] = [];
try {
  await cluster.installCrds();
  for (const ns of ['airlock-system', namespace])
    await core.createNamespace({ body: { metadata: { name: ns } } });
  await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name: 'agent' } } });
  await core.createNamespacedSecret({
    namespace,
    body: { metadata: { name: 'db' }, stringData: { username: 'agent', password: 'held' } },
  });
  await custom.createNamespacedCustomObject({
    group: 'airlock.dev',
    version: 'v1alpha1',
    namespace,
    plural: 'connections',
    body: {
      apiVersion: 'airlock.dev/v1alpha1',
      kind: 'Connection',
      metadata: { name: 'db' },
      spec: {
        protocol: 'postgres',
        host: 'db.data.svc.cluster.local',
        port: 5432,
        credentials: { secretRef: { name: 'db' } },
      },
    },
  });
  const policy = (round: number) => ({
    apiVersion: 'airlock.dev/v1alpha1',
    kind: 'AccessPolicy',
    metadata: { name: 'agents' },
    spec: {
      subjects: [{ kind: 'ServiceAccount', name: 'agent' }],
      connections: ['db'],
      rules: [{ name: `round-${round}`, action: 'deny', sql: { statements: ['DROP'] } }],
    },
  });
  await custom.createNamespacedCustomObject({
    group: 'airlock.dev',
    version: 'v1alpha1',
    namespace,
    plural: 'accesspolicies',
    body: policy(0),
  });

  const [webhookPort, controlApiPort, probePort] = [await freePort(), await freePort(), await freePort()];
  await cluster.kubectl(['apply', '-f', '-'], {
    input: JSON.stringify(
      webhookConfiguration({
        operatorNamespace: 'airlock-system',
        url: `https://127.0.0.1:${webhookPort}/inject`,
      }),
    ),
  });
  operator = startService(
    'airlock operator',
    process.execPath,
    [
      join(repository, 'bin/airlock.js'),
      'operator',
      `--kubeconfig=${cluster.kubeconfig.admin}`,
      '--namespace=airlock-system',
      '--identity=operator-0',
      `--store=${join(work, 'audit')}`,
      '--tls-ip=127.0.0.1',
      `--webhook-port=${webhookPort}`,
      `--control-api-port=${controlApiPort}`,
      `--probe-port=${probePort}`,
      `--control-api-url=https://127.0.0.1:${controlApiPort}`,
      '--log-level=warn',
    ],
    { logFile: join(work, 'operator.log') },
  );
  await waitFor('operator', async () => (await fetch(`http://127.0.0.1:${probePort}/readyz`)).ok, {
    service: operator,
  });
  await waitFor('CA secret', async () => {
    await core.readNamespacedSecret({ name: 'airlock-operator-tls', namespace: 'airlock-system' });
    return true;
  });
  const secret = await core.readNamespacedSecret({
    name: 'airlock-operator-tls',
    namespace: 'airlock-system',
  });
  const ca = Buffer.from(secret.data!['ca.crt']!, 'base64').toString();

  // 100 pods (never scheduled: no kubelet) with the injected annotation, and their tokens.
  const tokens: string[] = [];
  for (let i = 0; i < sidecars; i++) {
    const pod = await core.createNamespacedPod({
      namespace,
      body: {
        metadata: { name: `agent-${i}`, annotations: { 'airlock.dev/injected': '{"version":"bench"}' } },
        spec: { serviceAccountName: 'agent', containers: [{ name: 'agent', image: 'agent:1' }] },
      },
    });
    const token = await core.createNamespacedServiceAccountToken({
      name: 'agent',
      namespace,
      body: {
        spec: {
          audiences: ['airlock'],
          expirationSeconds: 3600,
          boundObjectRef: {
            kind: 'Pod',
            apiVersion: 'v1',
            name: pod.metadata!.name!,
            uid: pod.metadata!.uid!,
          },
        },
      },
    });
    tokens.push(token.status!.token!);
  }

  const received: Map<string, number>[] = tokens.map(() => new Map());
  await Promise.all(
    tokens.map(
      (token, i) =>
        new Promise<void>((resolve, reject) => {
          const req = request(
            {
              host: '127.0.0.1',
              port: controlApiPort,
              path: '/v1/bundle',
              ca,
              headers: { authorization: `Bearer ${token}` },
            },
            (res) => {
              if (res.statusCode !== 200) return reject(new Error(`stream ${i}: ${res.statusCode}`));
              let buffer = '';
              res.setEncoding('utf8');
              res.on('data', (chunk: string) => {
                buffer += chunk;
                for (let n = buffer.indexOf('\n'); n >= 0; n = buffer.indexOf('\n')) {
                  const line = JSON.parse(buffer.slice(0, n));
                  buffer = buffer.slice(n + 1);
                  const rule = line.bundle?.connections?.[0]?.policies?.[0]?.rules?.[0]?.name;
                  if (rule) received[i]!.set(rule, Date.now());
                }
                resolve();
              });
            },
          );
          req.on('error', reject);
          req.end();
          streams.push(req);
        }),
    ),
  );

  const times: number[] = [];
  for (let round = 1; round <= rounds; round++) {
    await custom.patchNamespacedCustomObject(
      {
        group: 'airlock.dev',
        version: 'v1alpha1',
        namespace,
        plural: 'accesspolicies',
        name: 'agents',
        body: { spec: policy(round).spec },
      },
      mergePatch,
    );
    const stored = Date.now();
    const rule = `round-${round}`;
    const deadline = stored + 30_000;
    while (received.some((r) => !r.has(rule)) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 5));
    const arrivals = received.map((r) => (r.get(rule) ?? Number.NaN) - stored).sort((a, b) => a - b);
    const all = arrivals.at(-1)!;
    times.push(all);
    console.log(
      `  round ${round}: first ${arrivals[0]} ms, median ${arrivals[Math.floor(arrivals.length / 2)]} ms, all ${sidecars} in ${all} ms`,
    );
    await new Promise((r) => setTimeout(r, 500));
  }
  const sorted = [...times].sort((a, b) => a - b);
  console.log(`\n| measure | value | goal |\n|---|---|---|`);
  console.log(
    `| policy change reaching all ${sidecars} connected sidecars, median of ${rounds} | ${sorted[Math.floor(sorted.length / 2)]} ms | <= 2000 ms |`,
  );
  console.log(`| worst round | ${sorted.at(-1)} ms | |`);
} finally {
  for (const stream of streams) stream.destroy();
  await operator?.stop();
  await cluster.stop();
  rmSync(work, { recursive: true, force: true });
}
