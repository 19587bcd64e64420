// The real single-node cluster (test/cluster/up.sh) for the end-to-end suites: the kubelet,
// containerd and runc run the pods, CoreDNS answers for the Services, kube-proxy routes them,
// and Airlock is installed from its chart with the image `make image` built. There is one
// cluster per machine: a suite holds a lock while it has one, and it is torn down (down.sh
// restores the host) when the suite stops it, when its process exits or crashes, or, after a
// SIGKILL, by the next up.sh.
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { apiServiceName } from '../../operator/sessions-api.ts';
import { type ControlPlane, kubectlAs, type UserName } from './controlplane.ts';
import { waitFor } from './process.ts';
import { requires, tool } from './tools.ts';

const run = promisify(execFile);
const repository = new URL('../../', import.meta.url).pathname;
const scripts = join(repository, 'test/cluster');
const version = JSON.parse(readFileSync(join(repository, 'package.json'), 'utf8')).version as string;

/** The images `make image` and `make image-agent` build, as the chart and the pods name them. */
export const images = {
  airlock: {
    archive: join(repository, `dist/airlock-${version}.oci.tar`),
    name: `ghcr.io/airlock-dev/airlock:${version}`,
  },
  agent: {
    archive: join(repository, `dist/airlock-agent-${version}.oci.tar`),
    name: `ghcr.io/airlock-dev/airlock-agent:${version}`,
  },
};

/** test/cluster/cluster.env, as the scripts read it. */
function readLayout(): Record<string, string> {
  const names = ['CLUSTER_DIR', 'NODE_IP', 'NODE_IP6', 'POD_CIDR', 'POD_CIDR6', 'DNS_SERVICE_IP'];
  const out = execFileSync(
    'bash',
    [
      '-c',
      `source "$1"; ${names.map((n) => `echo "$${n}"`).join('; ')}`,
      'layout',
      join(scripts, 'cluster.env'),
    ],
    { encoding: 'utf8' },
  ).split('\n');
  return Object.fromEntries(names.map((name, i) => [name, out[i] ?? '']));
}
const layout = readLayout();

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  namespace?: string;
  /** The agent's container by default. */
  container?: string;
  env?: Record<string, string>;
  timeoutMs?: number;
}

export interface Cluster extends Pick<ControlPlane, 'kubectl' | 'plugin' | 'kubeconfig'> {
  directory: string;
  /** The node's addresses, where the host's test servers listen and pods reach them. */
  nodeIp: string;
  nodeIp6: string;
  podCidrs: string[];
  /** Runs a command in a pod's container (kubectl exec), with the container's own user. */
  exec(pod: string, command: string[], options?: ExecOptions): Promise<ExecResult>;
  logs(pod: string, container: string, options?: { namespace?: string; previous?: boolean }): Promise<string>;
  /** SIGKILLs a container's process from the node, as the OOM killer would. */
  killContainer(namespace: string, pod: string, container: string): Promise<void>;
  /**
   * A Service without selector, NAME.NAMESPACE.svc.cluster.local:PORT, whose EndpointSlice
   * points at a server on the node's address: how the suites' databases and hosts get real
   * cluster DNS names.
   */
  serviceOnNode(namespace: string, name: string, port: number, targetPort: number): Promise<void>;
  helm(args: string[]): Promise<string>;
  /** `helm install` of charts/airlock; waits until the API server trusts its webhooks. */
  installAirlock(values?: string[]): Promise<void>;
  /** A pod from the agent image (its user, `sleep infinity` or `command`) in namespace agents, once Ready. */
  runAgent(
    name: string,
    options?: { serviceAccount?: string; command?: string[]; restartPolicy?: 'Always' | 'Never' },
  ): Promise<void>;
  stop(): Promise<void>;
}

/** Options for describe(): the suite needs the cluster's tools and the built images. */
export function requiresCluster(...tools: string[]): { skip?: string } {
  const needed = requires(
    'etcd',
    'kube-apiserver',
    'kubectl',
    'helm',
    'kubelet',
    'kube-proxy',
    'kube-scheduler',
    'kube-controller-manager',
    'coredns',
    'containerd',
    'runc',
    'ctr',
    'nft',
    ...tools,
  );
  if (needed.skip) return needed;
  const missing = Object.values(images)
    .map((image) => image.archive)
    .filter((archive) => !existsSync(archive));
  if (missing.length === 0) return {};
  if (process.env.CI === 'true') throw new Error(`CI=true and an image is missing: ${missing.join(', ')}`);
  return { skip: `not run: missing ${missing.join(', ')} (make image image-agent)` };
}

/** Holds the machine's cluster lock until release() or this process's end. */
async function lock(): Promise<{ release(): void }> {
  const holder: ChildProcess = spawn(
    'flock',
    [`${layout.CLUSTER_DIR}.lock`, 'sh', '-c', 'echo locked; exec cat >/dev/null'],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  await new Promise<void>((resolve, reject) => {
    holder.stdout?.once('data', () => resolve());
    holder.once('exit', (code) => reject(new Error(`flock exited with ${code}`)));
  });
  return {
    release() {
      holder.stdin?.end();
      holder.stdout?.destroy();
    },
  };
}

const down = () => execFileSync('bash', [join(scripts, 'down.sh')], { stdio: 'inherit' });

export async function startCluster(): Promise<Cluster> {
  const held = await lock();
  // Torn down at exit whatever happens (process.ts turns SIGINT and SIGTERM into an exit).
  let running = true;
  const atExit = () => {
    if (running) down();
    running = false;
  };
  process.on('exit', atExit);
  try {
    await run('bash', [join(scripts, 'up.sh'), images.airlock.archive, images.agent.archive], {
      maxBuffer: 16 * 1024 * 1024,
    });
  } catch (error) {
    atExit();
    held.release();
    const failure = error as { stderr?: string; message: string };
    throw new Error(`the cluster did not start: ${failure.stderr?.trim() || failure.message}`);
  }
  const directory = layout.CLUSTER_DIR as string;
  const kubeconfig = Object.fromEntries(
    (['admin', 'approver', 'user'] as UserName[]).map((user) => [
      user,
      join(directory, `${user}.kubeconfig`),
    ]),
  ) as Record<UserName, string>;
  const { kubectl, plugin } = kubectlAs(kubeconfig, directory);
  const apply = (manifest: object) => kubectl(['apply', '-f', '-'], { input: JSON.stringify(manifest) });
  const helm = (args: string[]) =>
    run(tool('helm'), [`--kubeconfig=${kubeconfig.admin}`, ...args], {
      env: {
        ...process.env,
        HELM_CACHE_HOME: join(directory, 'helm'),
        HELM_CONFIG_HOME: join(directory, 'helm'),
      },
    }).then((r) => r.stdout);

  const cluster: Cluster = {
    directory,
    kubeconfig,
    kubectl,
    plugin,
    nodeIp: layout.NODE_IP as string,
    nodeIp6: layout.NODE_IP6 as string,
    podCidrs: [layout.POD_CIDR as string, layout.POD_CIDR6 as string],
    async exec(pod, command, options = {}) {
      const env = Object.entries(options.env ?? {}).map(([k, v]) => `${k}=${v}`);
      return run(
        tool('kubectl'),
        [
          `--kubeconfig=${kubeconfig.admin}`,
          'exec',
          `--namespace=${options.namespace ?? 'agents'}`,
          pod,
          `--container=${options.container ?? 'agent'}`,
          '--',
          ...(env.length > 0 ? ['env', ...env] : []),
          ...command,
        ],
        { timeout: options.timeoutMs ?? 60_000, maxBuffer: 16 * 1024 * 1024 },
      ).then(
        (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
        (e: { code?: number; stdout?: string; stderr?: string }) => ({
          code: typeof e.code === 'number' ? e.code : -1,
          stdout: e.stdout ?? '',
          stderr: e.stderr ?? '',
        }),
      );
    },
    async logs(pod, container, options = {}) {
      return kubectl([
        'logs',
        `--namespace=${options.namespace ?? 'agents'}`,
        pod,
        `--container=${container}`,
        ...(options.previous ? ['--previous'] : []),
      ]);
    },
    async killContainer(namespace, pod, container) {
      const status = JSON.parse(await kubectl(['get', 'pod', pod, '-n', namespace, '-o', 'json'])).status;
      const found = [...(status.initContainerStatuses ?? []), ...(status.containerStatuses ?? [])].find(
        (c: { name: string }) => c.name === container,
      );
      const id = String(found?.containerID ?? '').replace(/^containerd:\/\//, '');
      if (!id) throw new Error(`${namespace}/${pod} has no running container ${container}`);
      await run('ctr', [
        `--address=${join(directory, 'containerd.sock')}`,
        '--namespace=k8s.io',
        'tasks',
        'kill',
        '--signal=SIGKILL',
        id,
      ]);
    },
    async serviceOnNode(namespace, name, port, targetPort) {
      await kubectl(['create', 'namespace', namespace]).catch((error: Error) => {
        if (!/AlreadyExists/.test(error.message)) throw error;
      });
      await apply({
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name, namespace },
        spec: { ports: [{ name: 'main', port, targetPort, protocol: 'TCP' }] },
      });
      await apply({
        apiVersion: 'discovery.k8s.io/v1',
        kind: 'EndpointSlice',
        metadata: { name, namespace, labels: { 'kubernetes.io/service-name': name } },
        addressType: 'IPv4',
        endpoints: [{ addresses: [layout.NODE_IP] }],
        ports: [{ name: 'main', port: targetPort, protocol: 'TCP' }],
      });
    },
    helm,
    async installAirlock(values = []) {
      await helm([
        'install',
        'airlock',
        join(repository, 'charts/airlock'),
        '--namespace=airlock-system',
        '--create-namespace',
        '--wait',
        '--timeout=5m',
        ...values.flatMap((value) => ['--set', value]),
      ]);
      await waitFor(
        'the API server trusts the operator (webhooks and sessions API)',
        async () => {
          const webhooks = await Promise.all(
            [
              ['mutatingwebhookconfiguration', 'airlock-injector'],
              ['mutatingwebhookconfiguration', 'airlock-approvals'],
              ['validatingwebhookconfiguration', 'airlock-approvals'],
            ].map(async ([kind, name]) =>
              JSON.parse(await kubectl(['get', kind as string, name as string, '-o', 'json'])),
            ),
          );
          const apiService = JSON.parse(await kubectl(['get', 'apiservice', apiServiceName, '-o', 'json']));
          return (
            webhooks.every((w) =>
              w.webhooks.every((h: { clientConfig: { caBundle?: string } }) => h.clientConfig.caBundle),
            ) &&
            apiService.status?.conditions?.some(
              (c: { type: string; status: string }) => c.type === 'Available' && c.status === 'True',
            )
          );
        },
        { timeoutMs: 120_000 },
      );
    },
    async runAgent(name, options = {}) {
      await apply({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name, namespace: 'agents' },
        spec: {
          serviceAccountName: options.serviceAccount ?? 'agent',
          restartPolicy: options.restartPolicy ?? 'Always',
          terminationGracePeriodSeconds: 30,
          containers: [
            {
              name: 'agent',
              image: images.agent.name,
              imagePullPolicy: 'IfNotPresent',
              ...(options.command ? { command: options.command } : {}),
            },
          ],
        },
      });
      await kubectl(['wait', '--for=condition=Ready', `pod/${name}`, '-n', 'agents', '--timeout=180s']);
    },
    async stop() {
      atExit();
      process.off('exit', atExit);
      held.release();
    },
  };
  return cluster;
}
