// The request headers the API server gets: the agent's, less anything that authenticates or
// could (its Authorization, front-proxy X-Remote-* headers), less hop-by-hop headers, with the
// Connection's bearer token; and an Accept that asks for JSON only, the one encoding the
// enforcer can mask (not protobuf, CBOR or YAML). Responses come uncompressed for the same reason.
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';

const dropped = new Set([
  'authorization',
  'proxy-authorization',
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
  'accept-encoding',
  'accept',
  'cookie',
]);

/** The Impersonate-* headers a request carries, by name. */
export function impersonationHeaders(headers: IncomingHttpHeaders): string[] {
  return Object.keys(headers).filter((name) => name.toLowerCase().startsWith('impersonate-'));
}

/**
 * `jsonOnly`: the response is an API object (not a log or a proxied page), so only JSON is
 * asked for.
 */
export function upstreamHeaders(
  headers: IncomingHttpHeaders,
  token: string,
  host: string,
  jsonOnly: boolean,
): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  // Headers named in Connection are hop-by-hop too.
  const named = new Set(
    String(headers.connection ?? '')
      .split(',')
      .map((h) => h.trim().toLowerCase()),
  );
  for (const [name, value] of Object.entries(headers)) {
    const lower = name.toLowerCase();
    if (value === undefined || dropped.has(lower) || named.has(lower) || lower.startsWith('x-remote-'))
      continue;
    out[lower] = value;
  }
  out.host = host;
  if (jsonOnly) out.accept = jsonAccept(headers.accept);
  else if (headers.accept !== undefined) out.accept = headers.accept;
  out['accept-encoding'] = 'identity';
  if (token !== '') out.authorization = `Bearer ${token}`;
  return out;
}

/**
 * The agent's Accept with every media range but JSON taken out; a wildcard becomes JSON. The
 * JSON ranges keep their parameters (as=Table;g=meta.k8s.io;v=v1: kubectl get's tables).
 */
export function jsonAccept(accept: string | undefined): string {
  const kept: string[] = [];
  for (const range of (accept ?? '').split(',')) {
    const type = range.split(';')[0]!.trim().toLowerCase();
    if (type === 'application/json') kept.push(range.trim());
    else if (type === '*/*' || type === 'application/*') kept.push('application/json');
  }
  return kept.length === 0 ? 'application/json' : [...new Set(kept)].join(', ');
}
