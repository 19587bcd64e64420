// Where each granted Connection is captured in the pod: a virtual IP from 240.240.0.0/16 per
// distinct host, allocated in sorted Connection order, and every hostname by which the pod's
// DNS search path reaches that host, for the pod's hostAliases.
import { isIP } from 'node:net';

/** A Connection granted to the pod's ServiceAccount, as the operator computes it. */
export interface Grant {
  name: string;
  host: string;
  port: number;
  protocol: string;
}

export interface CapturedConnection extends Grant {
  /** The virtual IP the sidecar listens on, with the Connection's port. */
  vip: string;
  /** hostAliases names pointing at vip; empty for IP-literal hosts, which iptables redirects. */
  hostnames: string[];
}

export interface CapturePlan {
  connections: CapturedConnection[];
  /** Grants left out, with why (two Connections on the same host and port). */
  dropped: { name: string; why: string }[];
}

export const virtualCidr = '240.240.0.0/16';
const maxVirtualIps = 65534;

export function virtualIp(index: number): string {
  if (index < 1 || index > maxVirtualIps) throw new RangeError(`virtual IP index out of range: ${index}`);
  return `240.240.${index >> 8}.${index & 255}`;
}

/**
 * The names under which a pod in `podNamespace` can reach `host`. A Service name
 * `svc.ns.svc.<domain>` is also reached as `svc.ns.svc` and `svc.ns` through the search path,
 * and as `svc` from its own namespace; any other name only as itself; an IP literal not at all.
 */
export function hostnamesFor(host: string, podNamespace: string, clusterDomain: string): string[] {
  if (isIP(host) !== 0) return [];
  const full = host.toLowerCase().replace(/\.$/, '');
  const serviceSuffix = `.svc.${clusterDomain.toLowerCase()}`;
  if (!full.endsWith(serviceSuffix)) return [full];
  const withSvc = full.slice(0, -(clusterDomain.length + 1));
  const withoutSvc = withSvc.slice(0, -'.svc'.length);
  if (!withoutSvc.includes('.')) return [full];
  const names = [full, withSvc, withoutSvc];
  if (withoutSvc.endsWith(`.${podNamespace}`)) names.push(withoutSvc.slice(0, -(podNamespace.length + 1)));
  return names;
}

/** Allocates virtual IPs and hostnames for the grants of one pod; the same input gives the same plan. */
export function planCapture(
  grants: readonly Grant[],
  podNamespace: string,
  clusterDomain: string,
): CapturePlan {
  const sorted = [...grants].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const vipByHost = new Map<string, string>();
  const taken = new Set<string>();
  const listeners = new Map<string, string>();
  const connections: CapturedConnection[] = [];
  const dropped: CapturePlan['dropped'] = [];
  for (const grant of sorted) {
    const hostKey = grant.host.toLowerCase();
    const listener = `${hostKey}:${grant.port}`;
    const first = listeners.get(listener);
    if (first !== undefined) {
      dropped.push({
        name: grant.name,
        why: `Connection ${first} already captures ${grant.host}:${grant.port}`,
      });
      continue;
    }
    if (connections.some((c) => c.name === grant.name)) continue;
    listeners.set(listener, grant.name);
    let vip = vipByHost.get(hostKey);
    let hostnames: string[] = [];
    if (vip === undefined) {
      vip = virtualIp(vipByHost.size + 1);
      vipByHost.set(hostKey, vip);
      // A name another host already claimed keeps its first owner: /etc/hosts maps a name once.
      hostnames = hostnamesFor(grant.host, podNamespace, clusterDomain).filter((name) => !taken.has(name));
      for (const name of hostnames) taken.add(name);
    }
    connections.push({ ...grant, vip, hostnames });
  }
  return { connections, dropped };
}
