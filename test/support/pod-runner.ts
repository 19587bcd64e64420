// Runs a pod, as the real API server stored it after injection, on this machine: a network
// namespace per pod joined by a veth to a "cluster" bridge in the root namespace, the init
// container's `airlock init` as root in the pod's namespace, the sidecar as uid 1337 and the
// agent as its own uid there, /etc/hosts from hostAliases (ip netns exec mounts
// /etc/netns/NAME/hosts over /etc/hosts). Addresses are link-local (169.254.240.0/24) and
// documentation IPv6 (2001:db8:a1::/64) on interfaces created here, so nothing leaves the
// machine. Test code, not product.
//
// One deliberate difference from a kubelet: the sidecar's --token-file, --ca-file and
// --spool-dir are rewritten to a per-pod directory (owned by uid 1337, mode 0700; the token
// 0400) instead of mounting volumes at the spec's paths.

import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { nodeFlags } from '../../bin/node-flags.js';
import { type Service, startService, temporaryDirectory } from './process.ts';

const run = promisify(execFile);
const repository = new URL('../../', import.meta.url).pathname;
const cli = join(repository, 'bin/airlock.js');

export const clusterAddress = '169.254.240.1';
export const clusterAddress6 = '2001:db8:a1::1';
export const podCidrs = ['169.254.240.0/24', '2001:db8:a1::/64'];

const cleanups = new Map<string, () => void>();
process.on('exit', () => {
  for (const cleanup of [...cleanups.values()].reverse()) cleanup();
});

function quietly(command: string, args: string[]): void {
  try {
    execFileSync(command, args, { stdio: 'ignore' });
  } catch {}
}

async function ip(...args: string[]): Promise<void> {
  await run('ip', args);
}

export interface ClusterNetwork {
  bridge: string;
  address: string;
  address6: string;
  stop(): Promise<void>;
}

/** The root-namespace side: a bridge holding the cluster's addresses, where servers listen. */
export async function startClusterNetwork(): Promise<ClusterNetwork> {
  const bridge = `alkbr${randomBytes(3).toString('hex')}`;
  const cleanup = () => quietly('ip', ['link', 'del', bridge]);
  cleanups.set(bridge, cleanup);
  await ip('link', 'add', bridge, 'type', 'bridge');
  await ip('addr', 'add', `${clusterAddress}/24`, 'dev', bridge);
  await ip('-6', 'addr', 'add', `${clusterAddress6}/64`, 'dev', bridge, 'nodad');
  await ip('link', 'set', bridge, 'up');
  return {
    bridge,
    address: clusterAddress,
    address6: clusterAddress6,
    async stop() {
      cleanup();
      cleanups.delete(bridge);
    },
  };
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunningPod {
  namespace: string;
  address: string;
  address6: string;
  /** The directory holding the sidecar's token, CA and spool (0700, uid 1337). */
  sidecarDirectory: string;
  initOutput: string;
  sidecar: Service;
  /** Runs a command in the pod's network namespace as the agent's uid (or another). */
  exec(
    command: string,
    args: string[],
    options?: { uid?: number; env?: Record<string, string> },
  ): Promise<ExecResult>;
  stop(): Promise<void>;
}

export interface RunPodOptions {
  network: ClusterNetwork;
  /** The projected token the kubelet would mount for the sidecar (TokenRequest, audience airlock). */
  token: string;
  /** The CA ConfigMap's ca.crt. */
  ca: string;
  /** Host byte of the pod's addresses in the cluster network, 10..250. */
  index?: number;
}

function container(pod: V1Pod, name: string): V1Container {
  const found = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].find(
    (c) => c.name === name,
  );
  if (!found) throw new Error(`pod has no container ${name}`);
  return found;
}

function fieldValue(pod: V1Pod, path: string): string {
  const values: Record<string, string | undefined> = {
    'metadata.name': pod.metadata?.name,
    'metadata.namespace': pod.metadata?.namespace,
    'metadata.uid': pod.metadata?.uid,
    'spec.serviceAccountName': pod.spec?.serviceAccountName,
  };
  return values[path] ?? '';
}

function rewrite(args: string[], replacements: Record<string, string>): string[] {
  return args.map((arg, i) =>
    i > 0 && replacements[args[i - 1] as string] !== undefined
      ? (replacements[args[i - 1] as string] as string)
      : arg,
  );
}

export async function runPod(pod: V1Pod, options: RunPodOptions): Promise<RunningPod> {
  const id = randomBytes(3).toString('hex');
  const namespace = `airlock-${id}`;
  const index = options.index ?? 10;
  const address = `169.254.240.${index}`;
  const address6 = `2001:db8:a1::${index.toString(16)}`;
  const host = `alk${id}h`;
  const work = await temporaryDirectory('pod');
  chmodSync(work.path, 0o755);
  const services: Service[] = [];
  const etc = `/etc/netns/${namespace}`;
  const cleanup = () => {
    for (const service of services) {
      if (service.child.pid && service.child.exitCode === null && service.child.signalCode === null) {
        try {
          process.kill(-service.child.pid, 'SIGKILL');
        } catch {}
      }
    }
    try {
      for (const pid of execFileSync('ip', ['netns', 'pids', namespace], { encoding: 'utf8' }).split('\n')) {
        if (pid.trim()) process.kill(Number(pid), 'SIGKILL');
      }
    } catch {}
    quietly('ip', ['netns', 'del', namespace]);
    quietly('ip', ['link', 'del', host]);
    rmSync(etc, { recursive: true, force: true });
    rmSync(work.path, { recursive: true, force: true });
  };
  cleanups.set(namespace, cleanup);
  const inPod = (args: string[]) => ['netns', 'exec', namespace, ...args];
  try {
    await ip('netns', 'add', namespace);
    await ip('link', 'add', host, 'type', 'veth', 'peer', 'name', `alk${id}p`);
    await ip('link', 'set', `alk${id}p`, 'netns', namespace);
    await ip('link', 'set', host, 'master', options.network.bridge, 'up');
    await ip(...inPod(['ip', 'link', 'set', `alk${id}p`, 'name', 'eth0']));
    await ip(...inPod(['ip', 'addr', 'add', `${address}/24`, 'dev', 'eth0']));
    await ip(...inPod(['ip', '-6', 'addr', 'add', `${address6}/64`, 'dev', 'eth0', 'nodad']));
    await ip(...inPod(['ip', 'link', 'set', 'eth0', 'up']));
    await ip(...inPod(['ip', 'link', 'set', 'lo', 'up']));
    // As containerd does for every pod: any uid may bind ports below 1024 (ssh on 22, http on
    // 80), in this namespace only.
    await run('ip', inPod(['sysctl', '-q', '-w', 'net.ipv4.ip_unprivileged_port_start=0']));

    // /etc/hosts as the kubelet writes it: localhost, the pod, then hostAliases in order.
    mkdirSync(etc, { recursive: true });
    const hosts = [
      '127.0.0.1\tlocalhost',
      '::1\tlocalhost ip6-localhost ip6-loopback',
      `${address}\t${pod.metadata?.name}`,
      ...(pod.spec?.hostAliases ?? []).map(
        (a) => `# Entries added by HostAliases.\n${a.ip}\t${(a.hostnames ?? []).join('\t')}`,
      ),
      '',
    ];
    writeFileSync(join(etc, 'hosts'), hosts.join('\n'));
    // No cluster DNS here: a name outside hostAliases does not resolve.
    writeFileSync(join(etc, 'resolv.conf'), 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n');

    const init = container(pod, 'airlock-init');
    const initResult = await run('ip', inPod([process.execPath, cli, 'init', ...(init.args ?? [])])).catch(
      (error: { stdout?: string; stderr?: string; message: string }) => {
        throw new Error(`airlock init failed: ${error.stderr || error.message}\n${error.stdout ?? ''}`);
      },
    );

    const sidecarSpec = container(pod, 'airlock-sidecar');
    const sidecarUid = sidecarSpec.securityContext?.runAsUser ?? 1337;
    const sidecarDirectory = join(work.path, 'sidecar');
    mkdirSync(join(sidecarDirectory, 'spool'), { recursive: true });
    writeFileSync(join(sidecarDirectory, 'token'), options.token.trim(), { mode: 0o400 });
    writeFileSync(join(sidecarDirectory, 'ca.crt'), options.ca, { mode: 0o444 });
    for (const file of ['', 'spool', 'token', 'ca.crt']) {
      chownSync(join(sidecarDirectory, file), sidecarUid, sidecarUid);
    }
    chmodSync(sidecarDirectory, 0o700);
    const args = rewrite(sidecarSpec.args ?? [], {
      '--token-file': join(sidecarDirectory, 'token'),
      '--ca-file': join(sidecarDirectory, 'ca.crt'),
      '--spool-dir': join(sidecarDirectory, 'spool'),
    });
    const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/tmp' };
    for (const variable of sidecarSpec.env ?? []) {
      env[variable.name] = variable.value ?? fieldValue(pod, variable.valueFrom?.fieldRef?.fieldPath ?? '');
    }
    const asUid = (uid: number) => ['setpriv', `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups'];
    const startSidecar = () => {
      const service = startService(
        'airlock sidecar',
        'ip',
        inPod([...asUid(sidecarUid), process.execPath, ...nodeFlags('sidecar'), cli, 'sidecar', ...args]),
        { logFile: join(work.path, 'sidecar.log'), env },
      );
      services.push(service);
      return service;
    };
    const sidecar = startSidecar();

    const agent = (pod.spec?.containers ?? [])[0];
    const agentUid = agent?.securityContext?.runAsUser ?? pod.spec?.securityContext?.runAsUser ?? 1000;
    return {
      namespace,
      address,
      address6,
      sidecarDirectory,
      initOutput: initResult.stdout,
      sidecar,
      async exec(command, commandArgs, execOptions = {}) {
        const uid = execOptions.uid ?? agentUid;
        return run('ip', inPod([...asUid(uid), command, ...commandArgs]), {
          env: { PATH: '/usr/bin:/bin', HOME: '/tmp', ...execOptions.env },
          timeout: 30_000,
        }).then(
          (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
          (e: { code?: number; stdout?: string; stderr?: string }) => ({
            code: typeof e.code === 'number' ? e.code : -1,
            stdout: e.stdout ?? '',
            stderr: e.stderr ?? '',
          }),
        );
      },
      async stop() {
        for (const service of services) await service.stop();
        cleanup();
        cleanups.delete(namespace);
      },
    };
  } catch (error) {
    cleanup();
    cleanups.delete(namespace);
    throw error;
  }
}
