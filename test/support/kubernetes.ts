// The Kubernetes enforcer in-process in front of a test control plane's API server, with a
// ServiceAccount token as the Connection's credential, and the real kubectl as the agent with a
// kubeconfig that names only the enforcer.
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { BundleConnection, BundlePolicy } from '../../api/bundle.ts';
import type { SessionEvent } from '../../api/events.ts';
import { agentKubeconfig, listenerUrl } from '../../local/kubeconfig.ts';
import type { Approvals, Enforcer } from '../../sidecar/core/enforcer.ts';
import { serveKubernetes } from '../../sidecar/kubernetes/enforcer.ts';
import type { ControlPlane } from './controlplane.ts';
import { tool } from './tools.ts';

const run = promisify(execFile);

export interface EnforcedCluster {
  enforcer: Enforcer;
  url: string;
  events: SessionEvent[];
  connection: BundleConnection;
  /** kubectl as the agent; resolves with stdout, rejects with stderr. */
  kubectl(args: string[], input?: string): Promise<string>;
  /** kubectl as the agent; resolves with the exit code, stdout and stderr. */
  attempt(args: string[]): Promise<{ code: number; out: string; err: string }>;
}

/** A ServiceAccount `agent` in default, bound to cluster-admin, and a token for it. */
export async function agentToken(plane: ControlPlane): Promise<string> {
  await plane.kubectl(['create', 'serviceaccount', 'agent', '-n', 'default']);
  await plane.kubectl([
    'create',
    'clusterrolebinding',
    'agent-admin',
    '--clusterrole=cluster-admin',
    '--serviceaccount=default:agent',
  ]);
  return (await plane.kubectl(['create', 'token', 'agent', '-n', 'default', '--duration=2h'])).trim();
}

export async function enforceCluster(
  plane: ControlPlane,
  token: string,
  policies: BundlePolicy[],
  options: {
    approvals?: Approvals;
    kubernetes?: BundleConnection['kubernetes'];
    name?: string;
    /** The audit sink's refusal (see EventSink.refusal). */
    refusal?: () => string | undefined;
  } = {},
): Promise<EnforcedCluster> {
  const events: SessionEvent[] = [];
  const api = new URL(plane.url);
  const connection: BundleConnection = {
    name: options.name ?? 'cluster',
    namespace: 'default',
    protocol: 'kubernetes',
    host: api.hostname,
    port: Number(api.port),
    tls: { mode: 'verify-full', ca: plane.ca },
    credentials: { token },
    ...(options.kubernetes && { kubernetes: options.kubernetes }),
    policies,
  };
  const enforcer = await serveKubernetes({
    connection,
    identity: { namespace: 'default', serviceAccount: 'agent' },
    listen: { host: '127.0.0.1', port: 0 },
    events: { emit: (event) => events.push(event), ...(options.refusal && { refusal: options.refusal }) },
    approvals: options.approvals ?? { request: async () => ({ approved: false, outcome: 'denied' }) },
  });
  const url = listenerUrl(enforcer.address);
  const file = join(plane.directory, `agent-${connection.name}.kubeconfig`);
  await writeFile(file, agentKubeconfig({ connection: connection.name, server: url, namespace: 'default' }));
  const env = { ...process.env, KUBECONFIG: file, HOME: plane.directory };
  const kubectl = async (args: string[], input?: string) => {
    const child = run(tool('kubectl'), args, { env, maxBuffer: 64 * 1024 * 1024 });
    if (input !== undefined) child.child.stdin?.end(input);
    try {
      return (await child).stdout;
    } catch (error) {
      const failure = error as { stderr?: string; message: string };
      throw new Error(`kubectl ${args.join(' ')}: ${failure.stderr?.trim() || failure.message}`);
    }
  };
  const attempt = (args: string[]) =>
    run(tool('kubectl'), args, { env, maxBuffer: 64 * 1024 * 1024 }).then(
      (r) => ({ code: 0, out: r.stdout, err: r.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => ({
        code: e.code,
        out: e.stdout,
        err: e.stderr,
      }),
    );
  return { enforcer, url, events, connection, kubectl, attempt };
}
