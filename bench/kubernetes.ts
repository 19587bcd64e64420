// Kubernetes API data path: requests per second direct to a test control plane's kube-apiserver
// (TLS, the agent's ServiceAccount token) and through the Kubernetes enforcer run as `airlock
// local` in its own process (plain HTTP from the agent, the same token held by the enforcer),
// interleaved round by round. wrk with keep-alive: a get of one ConfigMap (detectors on), a
// list of 20 Secrets (every value redacted), and a denied delete answered by the enforcer alone;
// then the real kubectl, `kubectl get configmap` in a loop, where the process start dominates.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { nodeFlags } from '../bin/node-flags.js';
import { startControlPlane } from '../test/support/controlplane.ts';
import { agentToken } from '../test/support/kubernetes.ts';
import { freePort, startService, waitFor } from '../test/support/process.ts';
import { findTool, tool } from '../test/support/tools.ts';
import { type Load, median } from './http.ts';

const run = promisify(execFile);
const repository = new URL('../', import.meta.url).pathname;
const seconds = Number(process.env.BENCH_SECONDS ?? 5);
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const connections = Number(process.env.BENCH_CONNECTIONS ?? 8);
const kubectlRuns = Number(process.env.BENCH_KUBECTL_RUNS ?? 20);

const units: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000 };

/** One wrk run with the given headers; every response must have `status`. */
async function wrk(url: string, headers: string[], status: number, method = 'GET'): Promise<Load> {
  const script = join(tmpdir(), `airlock-bench-kubernetes-${method}.lua`);
  writeFileSync(script, `wrk.method = "${method}"\n`);
  const { stdout } = await run(
    'wrk',
    [
      '-t1',
      `-c${connections}`,
      `-d${seconds}s`,
      '--timeout',
      '10s',
      '--latency',
      '-s',
      script,
      ...headers.flatMap((h) => ['-H', h]),
      url,
    ],
    { maxBuffer: 1 << 20 },
  );
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1];
  const p99 = /^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$/m.exec(stdout);
  if (!rps || !p99) throw new Error(`wrk printed no rate or latency:\n${stdout}`);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(stdout)?.[1] ?? 0);
  const requests = Number(/(\d+) requests in/.exec(stdout)?.[1] ?? 0);
  if (non2xx !== (status < 300 ? 0 : requests))
    throw new Error(`${url}: expected every response to be ${status}:\n${stdout}`);
  return { rps: Number(rps), p99Ms: Number(p99[1]) * units[p99[2]!]! };
}

/** kubectl runs one after another: runs per second. */
async function kubectlLoop(kubeconfig: string, home: string): Promise<number> {
  const started = performance.now();
  for (let i = 0; i < kubectlRuns; i++)
    await run(tool('kubectl'), ['get', 'configmap', 'bench', '-o', 'name'], {
      env: { ...process.env, KUBECONFIG: kubeconfig, HOME: home },
    });
  return kubectlRuns / ((performance.now() - started) / 1000);
}

interface Row {
  what: string;
  path: string;
  direct?: Load;
  through: Load;
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'airlock-bench-kubernetes-'));
  const plane = await startControlPlane();
  let stop: () => Promise<void> = async () => {};
  try {
    const token = await agentToken(plane);
    await plane.kubectl(['create', 'configmap', 'bench', '--from-literal=owner=ada@example.com']);
    for (let i = 0; i < 20; i++)
      await plane.kubectl(['create', 'secret', 'generic', `s${i}`, `--from-literal=password=hunter2-${i}`]);
    const api = new URL(plane.url);
    const manifests = join(work, 'manifests.yaml');
    writeFileSync(
      manifests,
      `apiVersion: v1
kind: Secret
metadata: {name: cluster, namespace: bench}
stringData:
  token: ${token}
  ca.crt: ${JSON.stringify(plane.ca)}
---
apiVersion: airlock.dev/v1alpha1
kind: Connection
metadata: {name: cluster, namespace: bench}
spec:
  protocol: kubernetes
  host: ${api.hostname}
  port: ${api.port}
  tls: {mode: verify-full, caSecretRef: {name: cluster}}
  credentials: {secretRef: {name: cluster}}
---
apiVersion: airlock.dev/v1alpha1
kind: AccessPolicy
metadata: {name: bench-agent, namespace: bench}
spec:
  subjects: [{kind: ServiceAccount, name: agent}]
  connections: [cluster]
  masking:
    - name: pii
      detectors: [credit-card, email, us-ssn, phone, iban]
      strategy: redact
  rules:
    - {name: no-namespace-deletes, action: deny, kubernetes: {verbs: [delete], resources: [/namespaces]}}
`,
    );
    const port = await freePort();
    const logFile = join(work, 'airlock.log');
    const service = startService(
      'airlock local',
      process.execPath,
      [
        ...nodeFlags('local'),
        join(repository, 'bin/airlock.js'),
        'local',
        '-f',
        manifests,
        '--as',
        'system:serviceaccount:bench:agent',
        '--listen',
        `cluster=127.0.0.1:${port}`,
        '--store',
        join(work, 'store'),
      ],
      { logFile },
    );
    stop = () => service.stop();
    await waitFor('airlock local', async () => readFileSync(logFile, 'utf8').includes('ready'), { service });
    const agentKubeconfig = /KUBECONFIG=(\S+) kubectl/.exec(readFileSync(logFile, 'utf8'))![1]!;
    const directKubeconfig = join(work, 'direct.kubeconfig');
    writeFileSync(
      directKubeconfig,
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [
          {
            name: 'direct',
            cluster: {
              server: plane.url,
              'certificate-authority-data': Buffer.from(plane.ca).toString('base64'),
            },
          },
        ],
        users: [{ name: 'agent', user: { token } }],
        contexts: [{ name: 'direct', context: { cluster: 'direct', user: 'agent', namespace: 'default' } }],
        'current-context': 'direct',
      }),
    );
    // The enforcer is really in the path: Secrets come back redacted.
    const listed = await (await fetch(`http://127.0.0.1:${port}/api/v1/namespaces/default/secrets`)).text();
    if (listed.includes(Buffer.from('hunter2-0').toString('base64')))
      throw new Error('a Secret came back unmasked');
    const bearer = `Authorization: Bearer ${token}`;
    const rows: Row[] = [];
    for (const [what, path] of [
      ['get one ConfigMap, an email masked', '/api/v1/namespaces/default/configmaps/bench'],
      ['list 20 Secrets, every value redacted', '/api/v1/namespaces/default/secrets'],
    ] as const) {
      const direct: Load[] = [];
      const through: Load[] = [];
      for (let round = 0; round < rounds; round++) {
        direct.push(await wrk(`${plane.url}${path}`, [bearer], 200));
        through.push(await wrk(`http://127.0.0.1:${port}${path}`, [], 200));
      }
      rows.push({ what, path, direct: medianLoad(direct), through: medianLoad(through) });
    }
    rows.push({
      what: 'delete namespace, denied by the enforcer',
      path: '/api/v1/namespaces/kube-system',
      through: await wrk(`http://127.0.0.1:${port}/api/v1/namespaces/kube-system`, [], 403, 'DELETE'),
    });
    const ratio = (a: number, b?: number) => (b ? `${(a / b).toFixed(2)}×` : '');
    const lines = [
      '| request | path | direct | Airlock | rps vs direct | p99 direct | p99 Airlock |',
      '|---|---|---|---|---|---|---|',
      ...rows.map(
        ({ what, path, direct, through }) =>
          `| ${what} | ${path} | ${direct ? `${direct.rps.toFixed(0)} rps` : ''} | ${through.rps.toFixed(0)} rps | ${ratio(through.rps, direct?.rps)} | ${direct ? `${direct.p99Ms.toFixed(2)} ms` : ''} | ${through.p99Ms.toFixed(2)} ms |`,
      ),
    ];
    const directKubectl = await kubectlLoop(directKubeconfig, work);
    const throughKubectl = await kubectlLoop(agentKubeconfig, work);
    lines.push(
      `| kubectl get configmap, ${kubectlRuns} runs in a row | (discovery, then the get) | ${directKubectl.toFixed(1)} runs/s | ${throughKubectl.toFixed(1)} runs/s | ${ratio(throughKubectl, directKubectl)} | | |`,
    );
    console.log(lines.join('\n'));
  } finally {
    await stop();
    await plane.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

function medianLoad(loads: Load[]): Load {
  return { rps: median(loads.map((l) => l.rps)), p99Ms: median(loads.map((l) => l.p99Ms)) };
}

if (import.meta.main) {
  if (!findTool('wrk') || !findTool('kube-apiserver')) {
    console.log('Kubernetes: not run: wrk or the test control plane is missing');
    process.exit(1);
  }
  console.log(
    `Kubernetes API: wrk -t1 -c${connections} keep-alive, ${seconds}s per run, median of ${rounds} interleaved rounds`,
  );
  await main();
}
