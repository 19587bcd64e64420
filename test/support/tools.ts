// Which external tools a suite needs. Under CI=true a missing tool fails the run with its
// name; otherwise the suite is reported as not run, naming what is missing.
import { execFileSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';

const repository = new URL('../../', import.meta.url).pathname;

/** The directory of the cached control-plane binaries, or undefined when they are not built. */
export function controlPlaneBin(): string | undefined {
  if (process.env.AIRLOCK_CONTROLPLANE_BIN) return process.env.AIRLOCK_CONTROLPLANE_BIN;
  try {
    return execFileSync('bash', [join(repository, 'test/controlplane/build.sh'), '--check'], {
      encoding: 'utf8',
    }).trim();
  } catch {
    return undefined;
  }
}

/** The directory of the cached node binaries (kubelet, kube-proxy, ...), or undefined. */
export function nodeBin(): string | undefined {
  try {
    return execFileSync('bash', [join(repository, 'test/controlplane/build.sh'), '--node', '--check'], {
      encoding: 'utf8',
    }).trim();
  } catch {
    return undefined;
  }
}

const nodeTools = ['kubelet', 'kube-proxy', 'kube-scheduler', 'kube-controller-manager', 'coredns'];

const locations: Record<string, () => string | undefined> = {
  ...Object.fromEntries(nodeTools.map((name) => [name, () => nodeBin() && join(nodeBin()!, name)])),
  'kube-apiserver': () => controlPlaneBin() && join(controlPlaneBin()!, 'kube-apiserver'),
  etcd: () => controlPlaneBin() && join(controlPlaneBin()!, 'etcd'),
  kubectl: () => controlPlaneBin() && join(controlPlaneBin()!, 'kubectl'),
  helm: () => controlPlaneBin() && join(controlPlaneBin()!, 'helm'),
  postgres: () => '/usr/lib/postgresql/15/bin/postgres',
  initdb: () => '/usr/lib/postgresql/15/bin/initdb',
  sshd: () => '/usr/sbin/sshd',
};

function onPath(tool: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    const candidate = join(dir, tool);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {}
  }
  return undefined;
}

/** The absolute path of a tool, or undefined. */
export function findTool(tool: string): string | undefined {
  const known = locations[tool]?.();
  if (known) {
    try {
      accessSync(known, constants.X_OK);
      return known;
    } catch {}
  }
  return onPath(tool);
}

export function tool(name: string): string {
  const path = findTool(name);
  if (!path) throw new Error(`required tool not found: ${name}`);
  return path;
}

/**
 * Options for describe(): skips the suite, naming the missing tools, unless CI=true, where a
 * missing tool is an error.
 */
export function requires(...tools: string[]): { skip?: string } {
  const missing = tools.filter((t) => !findTool(t));
  if (missing.length === 0) return {};
  const message = `not run: missing ${missing.join(', ')}`;
  if (process.env.CI === 'true')
    throw new Error(`CI=true and a required tool is missing: ${missing.join(', ')}`);
  return { skip: message };
}
