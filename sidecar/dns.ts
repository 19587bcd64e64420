// How the sidecar finds a Connection's upstream: by asking the cluster's DNS, never the pod's
// hosts file. The injector writes each granted Connection's names into that file (pod
// hostAliases) so the agent's lookups land on the sidecar's virtual IPs; every container of the
// pod shares the file, so a sidecar resolving the ordinary way (getaddrinfo) would dial itself.
import { Resolver } from 'node:dns/promises';
import { readFileSync } from 'node:fs';
import type { LookupFunction } from 'node:net';
import { isIP } from 'node:net';

/** The resolver settings of resolv.conf that decide which names are asked: search list and ndots. */
export interface SearchSettings {
  search: string[];
  ndots: number;
}

/** Reads `search`/`domain` and `options ndots:N` as the C library does (last `search` or `domain` wins). */
export function parseResolvConf(text: string): SearchSettings {
  let search: string[] = [];
  let ndots = 1;
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[#;].*/, '').trim();
    const [keyword, ...values] = line.split(/\s+/);
    if (keyword === 'search' || keyword === 'domain') search = values.filter(Boolean);
    else if (keyword === 'options') {
      for (const option of values) {
        const match = /^ndots:(\d+)$/.exec(option);
        if (match) ndots = Math.min(Number(match[1]), 15);
      }
    }
  }
  return { search, ndots };
}

/**
 * The names the C library's resolver would ask for, in order: a name with at least `ndots` dots
 * is tried as written first, others after the search list; a trailing dot means as written only.
 */
export function candidateNames(name: string, settings: SearchSettings): string[] {
  if (name.endsWith('.')) return [name.slice(0, -1)];
  const searched = settings.search.map((domain) => `${name}.${domain.replace(/\.$/, '')}`);
  const dots = name.split('.').length - 1;
  return dots >= settings.ndots ? [name, ...searched] : [...searched, name];
}

export interface UpstreamResolverOptions {
  /** DNS servers as `host` or `host:port`; by default those of /etc/resolv.conf. */
  servers?: string[];
  /** By default those of /etc/resolv.conf. */
  settings?: SearchSettings;
  timeoutMs?: number;
}

// Answers that send the search on to the next candidate name, as the C library's resolver does.
const notFound = new Set(['ENOTFOUND', 'ENODATA', 'ESERVFAIL', 'EREFUSED']);

/**
 * A `lookup` for net.connect, tls.connect and http.request that resolves over DNS only. IP
 * literals pass unchanged; `localhost` is loopback (RFC 6761), as it is for every resolver.
 */
export function upstreamLookup(options: UpstreamResolverOptions = {}): LookupFunction {
  const resolver = new Resolver({ timeout: options.timeoutMs ?? 5_000, tries: 2 });
  if (options.servers) resolver.setServers(options.servers);
  const settings = options.settings ?? parseResolvConf(readResolvConf());

  const resolve = async (hostname: string, family: number): Promise<{ address: string; family: 4 | 6 }[]> => {
    const literal = isIP(hostname);
    if (literal) return [{ address: hostname, family: literal as 4 | 6 }];
    const bare = hostname.toLowerCase().replace(/\.$/, '');
    if (bare === 'localhost' || bare.endsWith('.localhost')) {
      return family === 6 ? [{ address: '::1', family: 6 }] : [{ address: '127.0.0.1', family: 4 }];
    }
    let lastError: unknown;
    for (const name of candidateNames(hostname, settings)) {
      const wanted = family === 6 ? [6] : family === 4 ? [4] : [4, 6];
      const answers = await Promise.allSettled(
        wanted.map((f) => (f === 4 ? resolver.resolve4(name) : resolver.resolve6(name))),
      );
      const found: { address: string; family: 4 | 6 }[] = [];
      answers.forEach((answer, i) => {
        if (answer.status === 'fulfilled') {
          for (const address of answer.value) found.push({ address, family: wanted[i] as 4 | 6 });
        } else if (!notFound.has((answer.reason as NodeJS.ErrnoException).code ?? '')) {
          throw answer.reason;
        } else lastError = answer.reason;
      });
      if (found.length > 0) return found;
    }
    const error = new Error(`cannot resolve ${hostname} over DNS`) as NodeJS.ErrnoException;
    error.code = (lastError as NodeJS.ErrnoException | undefined)?.code ?? 'ENOTFOUND';
    throw error;
  };

  return (hostname, lookupOptions, callback) => {
    const family = typeof lookupOptions.family === 'number' ? lookupOptions.family : 0;
    resolve(hostname, family).then(
      (addresses) => {
        if (lookupOptions.all) callback(null, addresses);
        else callback(null, addresses[0]!.address, addresses[0]!.family);
      },
      (error: NodeJS.ErrnoException) => callback(error, '', 0),
    );
  };
}

function readResolvConf(): string {
  try {
    return readFileSync('/etc/resolv.conf', 'utf8');
  } catch {
    return '';
  }
}
