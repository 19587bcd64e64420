// The kubeconfig an agent's kubectl uses for a kubernetes Connection: the enforcer's listener as
// the server, plain HTTP (the listener is on loopback or inside the agent's pod, and the
// enforcer holds the cluster's credential, not the agent), and no user credentials at all.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface AgentKubeconfig {
  /** The Connection's name: the cluster, user and context are named after it. */
  connection: string;
  /** http://host:port of the enforcer's listener. */
  server: string;
  /** The namespace kubectl uses when none is given. */
  namespace?: string;
}

export function agentKubeconfig(config: AgentKubeconfig): string {
  const name = `airlock-${config.connection}`;
  return JSON.stringify(
    {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name, cluster: { server: config.server } }],
      users: [{ name, user: {} }],
      contexts: [
        {
          name,
          context: { cluster: name, user: name, ...(config.namespace && { namespace: config.namespace }) },
        },
      ],
      'current-context': name,
    },
    null,
    2,
  );
}

/** The listener's URL as a kubeconfig names it (IPv6 hosts in brackets). */
export function listenerUrl(address: { address: string; port: number }): string {
  const host = address.address.includes(':') ? `[${address.address}]` : address.address;
  return `http://${host}:${address.port}`;
}

/**
 * Writes the agent's kubeconfig for a kubernetes Connection served by `airlock local` beside its
 * control socket (`directory`), and returns its path.
 */
export async function writeAgentKubeconfig(
  directory: string,
  connection: string,
  address: { address: string; port: number },
): Promise<string> {
  await mkdir(directory, { recursive: true });
  const file = join(directory, `${connection}.kubeconfig`);
  await writeFile(file, agentKubeconfig({ connection, server: listenerUrl(address) }), { mode: 0o600 });
  return file;
}
