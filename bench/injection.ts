// What the injection webhook adds to pod creation, against a real kube-apiserver: pods are
// created open-loop at a fixed rate, in rounds that alternate between the webhook not
// registered and registered, and the create latencies are compared side by side. The webhook
// server runs in a worker thread, as it runs in its own process in the operator, so the load
// generator does not share its event loop; creates are plain HTTPS requests on keep-alive.
//
//   node bench/injection.ts [--rate 50] [--seconds 10] [--rounds 2]
import { Agent, request } from 'node:https';
import { parseArgs } from 'node:util';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { KubeConfig } from '@kubernetes/client-node';
import { type Histogram, Registry } from '../metrics/registry.ts';
import { createCertificateManager } from '../operator/certificates.ts';
import { webhookConfiguration } from '../operator/injection/configuration.ts';
import { injectionOptions } from '../operator/injection/inject.ts';
import { startInjectionServer } from '../operator/injection/server.ts';
import { startControlPlane } from '../test/support/controlplane.ts';
import { freePort } from '../test/support/process.ts';

const { values } = parseArgs({
  args: isMainThread ? process.argv.slice(2) : [],
  options: {
    rate: { type: 'string', default: '50' },
    seconds: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '2' },
  },
});
const rate = Number(values.rate);
const seconds = Number(values.seconds);
const rounds = Number(values.rounds);

const namespace = 'bench';
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;
}

interface ServeData {
  port: number;
  certificate: string;
  privateKey: string;
}

/** The worker: the webhook server alone on its event loop. */
async function serve(data: ServeData): Promise<void> {
  const registry = new Registry();
  const pair = { certificate: data.certificate, privateKey: data.privateKey };
  await startInjectionServer({
    host: '127.0.0.1',
    port: data.port,
    injection: injectionOptions({
      image: 'ghcr.io/airlock-dev/airlock:0.1.0',
      version: '0.1.0',
      controlApiUrl: 'https://airlock-operator.airlock-system.svc:8443',
    }),
    certificates: { current: () => pair, onChange: () => () => {} },
    grantsFor: () => [
      { name: 'orders-db', host: 'orders-db.data.svc.cluster.local', port: 5432, protocol: 'postgres' },
      { name: 'crm-api', host: 'api.crm.example.com', port: 443, protocol: 'http' },
    ],
    registry,
  });
  parentPort!.on('message', () => {
    const histogram = registry.get('airlock_injection_duration_seconds') as Histogram<'result'> | undefined;
    parentPort!.postMessage(histogram?.series() ?? []);
  });
  parentPort!.postMessage('ready');
}

async function main(): Promise<void> {
  const cluster = await startControlPlane();
  try {
    const kubeConfig = new KubeConfig();
    kubeConfig.loadFromFile(cluster.kubeconfig.admin);
    const port = await freePort();
    const configuration = webhookConfiguration({
      operatorNamespace: 'airlock-system',
      url: `https://127.0.0.1:${port}/inject`,
    });
    await cluster.kubectl(['create', '-f', '-'], {
      input: JSON.stringify({
        apiVersion: 'v1',
        kind: 'List',
        items: [
          { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'airlock-system' } },
          {
            apiVersion: 'v1',
            kind: 'Namespace',
            metadata: { name: namespace, labels: { 'airlock.dev/injection': 'enabled' } },
          },
          { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'default', namespace } },
          { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'agent', namespace } },
          { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'bench-plain' } },
          {
            apiVersion: 'v1',
            kind: 'ServiceAccount',
            metadata: { name: 'default', namespace: 'bench-plain' },
          },
          { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'agent', namespace: 'bench-plain' } },
        ],
      }),
    });
    const certificates = createCertificateManager(kubeConfig, {
      namespace: 'airlock-system',
      secretName: 'airlock-webhook-tls',
      serviceName: 'airlock-operator',
      ipAddresses: ['127.0.0.1'],
      mutatingWebhookConfigurations: ['airlock-injector'],
    });
    await certificates.start();
    const worker = new Worker(new URL(import.meta.url), {
      workerData: { port, ...certificates.current()! } satisfies ServeData,
    });
    await new Promise((resolve) => worker.once('message', resolve));
    const metrics = () =>
      new Promise<{ labels: Record<string, string>; sum: number; count: number }[]>((resolve) => {
        worker.once('message', resolve);
        worker.postMessage('metrics');
      });

    const user = kubeConfig.getCurrentUser()!;
    const cluster_ = kubeConfig.getCurrentCluster()!;
    const agent = new Agent({
      keepAlive: true,
      maxSockets: 256,
      ca: Buffer.from(cluster_.caData!, 'base64'),
      cert: Buffer.from(user.certData!, 'base64'),
      key: Buffer.from(user.keyData!, 'base64'),
    });
    const createPod = (target = namespace): Promise<{ initContainers: number }> =>
      new Promise((resolve, reject) => {
        const body = JSON.stringify({ ...pod(), metadata: { ...pod().metadata, namespace: target } });
        const req = request(
          `${cluster.url}/api/v1/namespaces/${target}/pods`,
          {
            method: 'POST',
            agent,
            headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => {
              const text = Buffer.concat(chunks).toString();
              if (res.statusCode !== 201) return reject(new Error(`create pod: ${res.statusCode} ${text}`));
              resolve({ initContainers: JSON.parse(text).spec?.initContainers?.length ?? 0 });
            });
          },
        );
        req.on('error', reject);
        req.end(body);
      });
    let optOut = false;
    const pod = () => ({
      metadata: {
        generateName: 'bench-',
        namespace,
        ...(optOut && { labels: { 'airlock.dev/inject': 'false' } }),
      },
      spec: {
        serviceAccountName: 'agent',
        containers: [{ name: 'agent', image: 'ghcr.io/example/agent:1.0.0' }],
      },
    });
    const injected = async () => (await createPod()).initContainers > 0;
    let registered = false;
    const register = async (on: boolean) => {
      if (on === registered) return;
      registered = on;
      if (on) {
        await cluster.kubectl(['create', '-f', '-'], {
          input: JSON.stringify({ ...configuration, webhooks: configuration.webhooks }),
        });
        await certificates.reconcile(); // writes the caBundle
      } else {
        await cluster.kubectl([
          'delete',
          'mutatingwebhookconfiguration',
          'airlock-injector',
          '--ignore-not-found',
        ]);
      }
      // The API server picks configurations up from an informer: wait until it agrees.
      while ((await injected()) !== on) await sleep(100);
      for (let i = 0; i < 20; i++) if ((await injected()) !== on) i = 0;
    };
    const round = async (): Promise<number[]> => {
      const latencies: number[] = [];
      const total = rate * seconds;
      const started = performance.now();
      const pending: Promise<void>[] = [];
      for (let i = 0; i < total; i++) {
        const due = started + (i * 1000) / rate;
        const wait = due - performance.now();
        if (wait > 0) await sleep(wait);
        const t0 = performance.now();
        pending.push(
          createPod().then(() => {
            latencies.push(performance.now() - t0);
          }),
        );
      }
      await Promise.all(pending);
      return latencies;
    };

    // Warm up connections and caches.
    await register(false);
    for (let i = 0; i < 50; i++) await injected();
    // without: no webhook registered. skipped: registered, called, the pod opts out (no patch):
    // the cost of the call alone. injected: registered, called, the pod injected and stored.
    const modes = ['without', 'skipped', 'injected'] as const;
    const samples: Record<(typeof modes)[number], number[]> = { without: [], skipped: [], injected: [] };
    for (let r = 0; r < rounds; r++) {
      for (const mode of modes) {
        optOut = false;
        await register(mode !== 'without');
        optOut = mode === 'skipped';
        const latencies = await round();
        samples[mode].push(...latencies);
        process.stderr.write(`round ${r + 1} ${mode}: ${latencies.length} pods\n`);
      }
    }

    // Side by side under the same background load, at the same total rate: the webhook
    // registered, pods alternate between the opted-in namespace (injected) and a namespace
    // the webhook's namespaceSelector leaves out (the webhook is not called).
    optOut = false;
    await register(true);
    const interleaved = { plain: [] as number[], injected: [] as number[] };
    {
      const started = performance.now();
      const pending: Promise<void>[] = [];
      for (let i = 0; i < 2 * rate * seconds; i++) {
        const wait = started + (i * 1000) / rate - performance.now();
        if (wait > 0) await sleep(wait);
        const [target, into] =
          i % 2 === 0 ? ['bench-plain', interleaved.plain] : [namespace, interleaved.injected];
        const t0 = performance.now();
        pending.push(createPod(target).then(() => void into.push(performance.now() - t0)));
      }
      await Promise.all(pending);
    }

    const stats = (xs: number[]) => {
      const sorted = [...xs].sort((a, b) => a - b);
      return [50, 90, 99].map((p) => percentile(sorted, p)).concat(sorted.at(-1)!);
    };
    const base = stats(samples.without);
    const ms = (x: number) => `${x.toFixed(1).padStart(7)} ms`;
    const row = (label: string, s: number[]) => `${label.padEnd(34)}${s.map(ms).join('')}`;
    const added = (s: number[]) => s.map((x, i) => x - base[i]!);
    const skipped = stats(samples.skipped);
    const injectedStats = stats(samples.injected);
    const histogram = await metrics();
    const serverMean = (result: string) => {
      const { sum, count } = histogram.find((series) => series.labels.result === result) ?? {
        sum: 0,
        count: 0,
      };
      return `${((sum / Math.max(count, 1)) * 1000).toFixed(2)} ms over ${count}`;
    };
    console.log(
      [
        `pod create latency, ${rate} pods/s open loop, ${rounds} alternating rounds of ${seconds} s per mode (${samples.without.length} pods per mode)`,
        `${''.padEnd(34)}${['p50', 'p90', 'p99', 'max'].map((h) => h.padStart(10)).join('')}`,
        row('without webhook', base),
        row('with webhook, pod opted out', skipped),
        row('with webhook, pod injected', injectedStats),
        row('added: call only (opted out)', added(skipped)),
        row('added: injected', added(injectedStats)),
        '',
        `interleaved, webhook registered, ${rate} pods/s alternating (${interleaved.plain.length} pods each)`,
        row('namespace not selected', stats(interleaved.plain)),
        row('namespace selected, injected', stats(interleaved.injected)),
        row(
          'added: injected',
          stats(interleaved.injected).map((x, i) => x - stats(interleaved.plain)[i]!),
        ),
        '',
        `webhook server time (mean): injected ${serverMean('injected')}, skipped ${serverMean('skipped')}`,
        `goal: added p99 <= 20 ms when injected: ${added(injectedStats)[2]! <= 20 ? 'met' : 'NOT met'}`,
      ].join('\n'),
    );
    certificates.stop();
    agent.destroy();
    await worker.terminate();
  } finally {
    await cluster.stop();
  }
}

if (isMainThread) await main();
else await serve(workerData as ServeData);
