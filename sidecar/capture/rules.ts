// What `airlock init` installs, as data: the local route for the virtual range and the
// iptables-restore text of Airlock's own chains. Pure, so the exact rules are unit-tested
// (golden files) and the runner (command.ts) only executes them.
import { isIP, isIPv4, isIPv6 } from 'node:net';
import { z } from 'zod';

/** Airlock's chains: flushed and refilled on every run, so a re-run never duplicates a rule. */
export const chains = { nat: 'AIRLOCK_OUTPUT', filter: 'AIRLOCK_OUTPUT' } as const;

const hostPort = z.string().transform((value, context) => {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(value);
  const host = match?.[1] ?? match?.[2];
  const port = Number(match?.[3]);
  if (!host || !(isIPv4(host) || isIPv6(host)) || !(port >= 1 && port <= 65535)) {
    context.addIssue({ code: 'custom', message: `"${value}" is not IP:PORT` });
    return z.NEVER;
  }
  return { host, port };
});

const cidr = z.string().refine((value) => {
  const [address, bits, extra] = value.split('/');
  const max = isIPv4(address ?? '') ? 32 : isIPv6(address ?? '') ? 128 : -1;
  return (
    extra === undefined && max > 0 && (bits === undefined || (/^\d+$/.test(bits) && Number(bits) <= max))
  );
}, 'not a CIDR');

const port = z.coerce.number().int().min(1).max(65535);

export const captureOptionsSchema = z.object({
  egress: z.enum(['strict', 'permissive']).default('strict'),
  sidecarUid: z.coerce.number().int().min(1),
  virtualCidr: cidr.refine((value) => isIPv4(value.split('/')[0] ?? ''), 'the virtual range is IPv4'),
  /** NAME=VIP:PORT, one per granted Connection: served by the sidecar, reached through the local route. */
  virtual: z.array(
    z.string().transform((value, context) => {
      const at = value.indexOf('=');
      const target = hostPort.safeParse(value.slice(at + 1));
      if (at <= 0 || !target.success) {
        context.addIssue({ code: 'custom', message: `--virtual "${value}" is not NAME=VIP:PORT` });
        return z.NEVER;
      }
      return { name: value.slice(0, at), vip: target.data.host, port: target.data.port };
    }),
  ),
  /** IP:PORT=VIP:PORT, one per IP-literal Connection: the agent's connection is DNATed to the sidecar. */
  redirect: z.array(
    z.string().transform((value, context) => {
      const at = value.lastIndexOf('=');
      const from = hostPort.safeParse(value.slice(0, at));
      const to = hostPort.safeParse(value.slice(at + 1));
      if (at <= 0 || !from.success || !to.success) {
        context.addIssue({ code: 'custom', message: `--redirect "${value}" is not IP:PORT=VIP:PORT` });
        return z.NEVER;
      }
      return { from: from.data, to: to.data };
    }),
  ),
  excludeOutboundCidrs: z.array(cidr),
  excludeOutboundPorts: z.array(port),
  /** The pod's nameservers: the only addresses port 53 (UDP and TCP) may reach in strict mode. */
  dns: z.array(z.string().refine((value) => isIP(value) !== 0, 'not an IP address')).default([]),
});
export type CaptureOptions = z.output<typeof captureOptionsSchema>;
export type CaptureOptionsInput = z.input<typeof captureOptionsSchema>;

export interface CapturePlan {
  /** `ip` argument lists, run in order. */
  routes: string[][];
  /** iptables-restore --noflush input for IPv4 and IPv6. */
  ipv4: string;
  ipv6: string;
  /** The jumps from the built-in chains into Airlock's, checked (-C) and added (-I) once each. */
  jumps: { family: 4 | 6; table: 'nat' | 'filter'; chain: string; target: string }[];
  /** Lines for the operator to read: what was installed and why. */
  summary: string[];
}

export class CaptureError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
  }
}

/**
 * The rules for one pod. In strict mode the agent may reach, besides loopback and the virtual
 * range, only the pod's nameservers on port 53 (UDP and TCP) and the exclusions: any other TCP
 * is reset and any other UDP rejected, so neither a DNS-shaped port nor a datagram leaves.
 */
export function captureRules(input: CaptureOptionsInput): CapturePlan {
  const options = captureOptionsSchema.parse(input);
  const uid = String(options.sidecarUid);
  const v6Redirects = options.redirect.filter((r) => isIPv6(r.from.host) || isIPv6(r.to.host));
  if (v6Redirects.length > 0) {
    throw new CaptureError(
      'IPv6Redirect',
      `IPv6-literal Connections cannot be redirected to the IPv4 virtual range: ${v6Redirects
        .map((r) => `[${r.from.host}]:${r.from.port}`)
        .join(', ')}. Name the target by hostname instead.`,
    );
  }
  const v4Excluded = options.excludeOutboundCidrs.filter((c) => isIPv4(c.split('/')[0] ?? ''));
  const v6Excluded = options.excludeOutboundCidrs.filter((c) => isIPv6(c.split('/')[0] ?? ''));

  const nat = [
    '*nat',
    `:${chains.nat} - [0:0]`,
    ...options.redirect.map(
      (r) =>
        `-A ${chains.nat} -p tcp -d ${r.from.host}/32 --dport ${r.from.port} -m owner ! --uid-owner ${uid} -j DNAT --to-destination ${r.to.host}:${r.to.port}`,
    ),
    'COMMIT',
  ];
  const filter = (family: 4 | 6, excluded: string[]) => {
    if (options.egress === 'permissive') return ['*filter', `:${chains.filter} - [0:0]`, 'COMMIT'];
    const nameservers = options.dns.filter((a) => (family === 4 ? isIPv4(a) : isIPv6(a)));
    const rules = [
      '-o lo -j RETURN',
      ...(family === 4 ? [`-d ${options.virtualCidr} -j RETURN`] : []),
      `-m owner --uid-owner ${uid} -j RETURN`,
      '-m conntrack --ctstate ESTABLISHED,RELATED -j RETURN',
      ...nameservers.flatMap((a) => [
        `-d ${a}/${family === 4 ? 32 : 128} -p udp --dport 53 -j RETURN`,
        `-d ${a}/${family === 4 ? 32 : 128} -p tcp --dport 53 -j RETURN`,
      ]),
      ...excluded.map((c) => `-d ${c} -j RETURN`),
      ...options.excludeOutboundPorts.flatMap((p) => [
        `-p tcp --dport ${p} -j RETURN`,
        `-p udp --dport ${p} -j RETURN`,
      ]),
      '-p tcp -j REJECT --reject-with tcp-reset',
      `-p udp -j REJECT --reject-with ${family === 4 ? 'icmp-port-unreachable' : 'icmp6-port-unreachable'}`,
    ];
    return [
      '*filter',
      `:${chains.filter} - [0:0]`,
      ...rules.map((r) => `-A ${chains.filter} ${r}`),
      'COMMIT',
    ];
  };
  const ipv4 = [...nat, ...filter(4, v4Excluded), ''].join('\n');
  const ipv6 = [...filter(6, v6Excluded), ''].join('\n');

  const summary = [
    `route: ${options.virtualCidr} is local (served on lo)`,
    ...options.virtual.map((v) => `virtual: ${v.name} on ${v.vip}:${v.port}`),
    ...options.redirect.map(
      (r) => `redirect: ${r.from.host}:${r.from.port} -> ${r.to.host}:${r.to.port} (all uids but ${uid})`,
    ),
    options.egress === 'strict'
      ? `egress strict: TCP and UDP from uids other than ${uid} are rejected, IPv4 and IPv6, except loopback, ${options.virtualCidr}, DNS (53) to ${
          options.dns.length > 0 ? options.dns.join(', ') : 'no nameserver'
        }${
          options.excludeOutboundCidrs.length > 0 ? `, ${options.excludeOutboundCidrs.join(', ')}` : ''
        }${options.excludeOutboundPorts.length > 0 ? `, ports ${options.excludeOutboundPorts.join(', ')}` : ''}`
      : 'egress permissive: traffic outside the Connections is not restricted',
  ];
  return {
    routes: [['route', 'replace', 'local', options.virtualCidr, 'dev', 'lo']],
    ipv4,
    ipv6,
    jumps: [
      { family: 4, table: 'nat', chain: 'OUTPUT', target: chains.nat },
      { family: 4, table: 'filter', chain: 'OUTPUT', target: chains.filter },
      { family: 6, table: 'filter', chain: 'OUTPUT', target: chains.filter },
    ],
    summary,
  };
}
