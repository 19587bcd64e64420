// `airlock init`: parses the injector's arguments (operator/injection/README.md), builds the
// plan (rules.ts) and installs it with ip and iptables-restore. Needs root or NET_ADMIN.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { parseArgs, promisify } from 'node:util';
import { CaptureError, type CapturePlan, captureRules } from './rules.ts';

const run = promisify(execFile);

export const initUsage = `Usage: airlock init --sidecar-uid UID --virtual-cidr CIDR [--egress strict|permissive]
       [--virtual NAME=VIP:PORT]... [--redirect IP:PORT=VIP:PORT]...
       [--exclude-outbound-cidrs CIDR,...] [--exclude-outbound-ports PORT,...]
       [--dns IP]... (default: the nameservers in /etc/resolv.conf) [--dry-run]`;

/** Which iptables backend the image's iptables speaks: nf_tables or legacy. */
export async function iptablesBackend(): Promise<'nft' | 'legacy'> {
  const { stdout } = await run('iptables', ['--version']);
  return /nf_tables/.test(stdout) ? 'nft' : 'legacy';
}

function tool(base: 'iptables' | 'ip6tables', backend: 'nft' | 'legacy', suffix = ''): string {
  const specific = `${base}-${backend}${suffix}`;
  for (const dir of ['/usr/sbin', '/sbin', '/usr/bin', '/bin']) {
    if (existsSync(`${dir}/${specific}`)) return specific;
  }
  return `${base}${suffix}`;
}

async function restore(command: string, text: string): Promise<void> {
  const child = execFile(command, ['--noflush', '--wait']);
  const done = new Promise<void>((resolve, reject) => {
    let stderr = '';
    child.stderr?.on('data', (chunk) => {
      stderr += chunk;
    });
    child.once('error', reject);
    child.once('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`${command} exited ${code}: ${stderr.trim()}`)),
    );
  });
  child.stdin?.end(text);
  await done;
}

/** IPv6 is off in the pod when the kernel has no IPv6 addresses at all. */
function ipv6Enabled(): boolean {
  return existsSync('/proc/net/if_inet6');
}

export async function installCapture(plan: CapturePlan): Promise<string[]> {
  const installed: string[] = [];
  for (const args of plan.routes) {
    await run('ip', args);
    installed.push(`ip ${args.join(' ')}`);
  }
  const backend = await iptablesBackend();
  installed.push(`iptables backend: ${backend}`);
  const families = ipv6Enabled() ? ([4, 6] as const) : ([4] as const);
  for (const family of families) {
    const base = family === 4 ? 'iptables' : 'ip6tables';
    await restore(tool(base, backend, '-restore'), family === 4 ? plan.ipv4 : plan.ipv6);
    for (const jump of plan.jumps.filter((j) => j.family === family)) {
      const rule = [jump.chain, '-j', jump.target];
      const command = tool(base, backend);
      const present = await run(command, ['--wait', '-t', jump.table, '-C', ...rule]).then(
        () => true,
        () => false,
      );
      if (!present) await run(command, ['--wait', '-t', jump.table, '-I', ...rule]);
      installed.push(`${base} -t ${jump.table} ${jump.chain} -> ${jump.target}${present ? ' (kept)' : ''}`);
    }
  }
  if (!families.includes(6 as never)) installed.push('ipv6: disabled in this pod, nothing to capture');
  return installed;
}

/** The pod's nameservers as the kubelet wrote them (dnsPolicy, dnsConfig); scoped ones are skipped. */
export function resolvConfNameservers(text = readResolvConf()): string[] {
  return [...text.matchAll(/^\s*nameserver\s+(\S+)/gm)]
    .map((m) => m[1]!)
    .filter((address) => !address.includes('%') && isIP(address) !== 0);
}

function readResolvConf(): string {
  try {
    return readFileSync('/etc/resolv.conf', 'utf8');
  } catch {
    return '';
  }
}

const list = (values: string[] | undefined) =>
  (values ?? [])
    .flatMap((v) => v.split(','))
    .map((v) => v.trim())
    .filter((v) => v.length > 0);

export async function runInit(args: string[]): Promise<number> {
  let plan: CapturePlan;
  let dryRun = false;
  try {
    const { values } = parseArgs({
      args,
      options: {
        egress: { type: 'string', default: 'strict' },
        'sidecar-uid': { type: 'string' },
        'virtual-cidr': { type: 'string' },
        virtual: { type: 'string', multiple: true },
        redirect: { type: 'string', multiple: true },
        'exclude-outbound-cidrs': { type: 'string', multiple: true },
        'exclude-outbound-ports': { type: 'string', multiple: true },
        dns: { type: 'string', multiple: true },
        'dry-run': { type: 'boolean', default: false },
      },
    });
    for (const required of ['sidecar-uid', 'virtual-cidr'] as const) {
      if (!values[required]) throw new Error(`--${required} is required`);
    }
    dryRun = values['dry-run'] ?? false;
    plan = captureRules({
      egress: values.egress as 'strict' | 'permissive',
      sidecarUid: values['sidecar-uid'] as string,
      virtualCidr: values['virtual-cidr'] as string,
      virtual: values.virtual ?? [],
      redirect: values.redirect ?? [],
      excludeOutboundCidrs: list(values['exclude-outbound-cidrs']),
      excludeOutboundPorts: list(values['exclude-outbound-ports']),
      dns: values.dns ? list(values.dns) : resolvConfNameservers(),
    });
  } catch (error) {
    const message =
      error instanceof CaptureError
        ? error.message
        : ((error as { issues?: { message: string }[] }).issues?.map((i) => i.message).join('; ') ??
          (error as Error).message);
    console.error(`airlock init: ${message}\n\n${initUsage}`);
    return 2;
  }
  for (const line of plan.summary) console.log(`airlock init: ${line}`);
  if (dryRun) {
    console.log(
      `# ipv4 (iptables-restore --noflush)\n${plan.ipv4}# ipv6 (ip6tables-restore --noflush)\n${plan.ipv6}`,
    );
    return 0;
  }
  try {
    for (const line of await installCapture(plan)) console.log(`airlock init: installed ${line}`);
  } catch (error) {
    console.error(
      `airlock init: could not install the capture (root or NET_ADMIN needed): ${(error as Error).message}`,
    );
    return 1;
  }
  console.log('airlock init: capture installed');
  return 0;
}
