// What a request to the Kubernetes API will do, read from its method and URL the way the API
// server's request-info parser reads them (k8s.io/apiserver/pkg/endpoints/request/requestinfo.go),
// so rules are decided on the verb, group, resource, namespace, name and subresource the API
// server authorizes. Where that parser and the routing behind it could read a URL two ways (an
// empty or dot segment, an encoded slash, a malformed escape, a `;` in the query), the request is
// refused instead. Pure: no I/O.

export interface KubernetesRequest {
  /** The decoded path the API server reads. */
  path: string;
  /** false: a non-resource URL (/version, /apis, /openapi/v3, /healthz). */
  resourceRequest: boolean;
  /** get, list, watch, create, update, patch, delete, deletecollection, proxy; a non-resource request's method in lower case. */
  verb: string;
  /** '' for the core group (/api). */
  group: string;
  version: string;
  /** '' when the request names none: cluster-scoped resources, lists across namespaces. */
  namespace: string;
  resource: string;
  subresource: string;
  /** '' when the request names none (list, watch, deletecollection, create). */
  name: string;
  /** The query as Go's url.Query() reads it: each key's values in order. */
  query: Map<string, string[]>;
}

export type ParsedKubernetesRequest =
  | { ok: true; request: KubernetesRequest }
  | { ok: false; reason: string };

const apiPrefixes = new Set(['api', 'apis']);
const grouplessPrefixes = new Set(['api']);
const specialVerbs = new Set(['proxy', 'watch']);
const namespaceSubresources = new Set(['status', 'finalize']);
const verbsByMethod: Record<string, string> = {
  POST: 'create',
  GET: 'get',
  HEAD: 'get',
  PUT: 'update',
  PATCH: 'patch',
  DELETE: 'delete',
};

export function parseKubernetesRequest(method: string, target: string): ParsedKubernetesRequest {
  if (!target.startsWith('/')) return { ok: false, reason: 'the request target must be a path' };
  if (/[^\x21-\x7e]/.test(target))
    return { ok: false, reason: 'control character, space or non-ASCII byte in request target' };
  if (target.includes('#')) return { ok: false, reason: 'fragment in request target' };
  const q = target.indexOf('?');
  const rawPath = q < 0 ? target : target.slice(0, q);
  const query = parseQuery(q < 0 ? '' : target.slice(q + 1));
  if (!query.ok) return query;
  // Go decodes the path before the parser splits it, so an encoded slash would split a
  // segment: refused, as are segments a router might resolve or collapse.
  if (/%2f/i.test(rawPath)) return { ok: false, reason: 'encoded slash in path' };
  const path = percentDecode(rawPath, false);
  if (path === undefined) return { ok: false, reason: 'malformed percent-encoding in path' };
  const trimmed = path.replace(/^\/+|\/+$/g, '');
  if (path.startsWith('//') || (trimmed !== '' && path.endsWith('//')))
    return { ok: false, reason: 'duplicate slash in path' };
  const parts = trimmed === '' ? [] : trimmed.split('/');
  for (const part of parts) {
    if (part === '') return { ok: false, reason: 'empty segment in path' };
    if (part === '.' || part === '..') return { ok: false, reason: 'dot segment in path' };
  }
  const upper = method.toUpperCase();
  const request: KubernetesRequest = {
    path,
    resourceRequest: false,
    verb: method.toLowerCase(),
    group: '',
    version: '',
    namespace: '',
    resource: '',
    subresource: '',
    name: '',
    query: query.values,
  };
  let rest = parts;
  if (rest.length < 3 || !apiPrefixes.has(rest[0]!)) return { ok: true, request };
  const prefix = rest[0]!;
  rest = rest.slice(1);
  if (!grouplessPrefixes.has(prefix)) {
    if (rest.length < 3) return { ok: true, request };
    request.group = rest[0]!;
    rest = rest.slice(1);
  }
  request.resourceRequest = true;
  request.version = rest[0]!;
  rest = rest.slice(1);
  if (specialVerbs.has(rest[0]!)) {
    if (rest.length < 2) return { ok: false, reason: 'no resource after the verb in the path' };
    request.verb = rest[0]!;
    rest = rest.slice(1);
  } else request.verb = verbsByMethod[upper] ?? '';
  if (rest[0] === 'namespaces') {
    if (rest.length > 1) {
      request.namespace = rest[1]!;
      if (rest.length > 2 && !namespaceSubresources.has(rest[2]!)) rest = rest.slice(2);
    }
  }
  if (rest.length >= 3 && request.verb !== 'proxy') request.subresource = rest[2]!;
  if (rest.length >= 2) request.name = rest[1]!;
  request.resource = rest[0] ?? '';
  if (request.name === '' && request.verb === 'get') {
    request.verb = goBool(query.values.get('watch')) ? 'watch' : 'list';
    request.name = nameFromFieldSelector(query.values) ?? '';
  }
  if (request.name === '' && request.verb === 'delete') request.verb = 'deletecollection';
  return { ok: true, request };
}

/** Go's url.ParseQuery: `&`-separated, `+` for space; a `;` is refused where Go would drop the pair. */
function parseQuery(
  raw: string,
): { ok: true; values: Map<string, string[]> } | { ok: false; reason: string } {
  const values = new Map<string, string[]>();
  if (raw === '') return { ok: true, values };
  if (raw.includes(';')) return { ok: false, reason: 'semicolon in query' };
  for (const pair of raw.split('&')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const key = percentDecode(eq < 0 ? pair : pair.slice(0, eq), true);
    const value = percentDecode(eq < 0 ? '' : pair.slice(eq + 1), true);
    if (key === undefined || value === undefined)
      return { ok: false, reason: 'malformed percent-encoding in query' };
    const list = values.get(key);
    if (list) list.push(value);
    else values.set(key, [value]);
  }
  return { ok: true, values };
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** Percent-decoding as Go's url package does it; undefined for a malformed escape or bad UTF-8. */
function percentDecode(text: string, plusIsSpace: boolean): string | undefined {
  if (!text.includes('%')) return plusIsSpace ? text.replaceAll('+', ' ') : text;
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x25) {
      const hex = text.slice(i + 1, i + 3);
      if (!/^[0-9a-fA-F]{2}$/.test(hex)) return undefined;
      bytes.push(Number.parseInt(hex, 16));
      i += 2;
    } else if (c === 0x2b && plusIsSpace) bytes.push(0x20);
    else bytes.push(c);
  }
  try {
    const decoded = strictUtf8.decode(new Uint8Array(bytes));
    return /[\x00-\x1f\x7f]/.test(decoded) ? undefined : decoded;
  } catch {
    return undefined;
  }
}

/** A boolean query parameter as the API server converts it: its first value, false only for 0 and false. */
export function goBool(values: string[] | undefined): boolean {
  if (!values || values.length === 0) return false;
  const first = values[0]!;
  return !(first === '0' || first.toLowerCase() === 'false');
}

/**
 * The object name a list or watch narrows to with a field selector requiring metadata.name to
 * equal one value (kubectl get NAME --watch), as the parser takes it; undefined where the parser
 * would take none, and wherever it is unsure (then the request names no object, which every
 * names criterion matches).
 */
function nameFromFieldSelector(query: Map<string, string[]>): string | undefined {
  const selector = query.get('fieldSelector')?.[0];
  if (!selector || !listOptionsDecode(query)) return undefined;
  let name: string | undefined;
  for (const term of selector.split(',')) {
    // Escapes, spaces and malformed terms are read by the selector grammar: no name from them.
    const match = /^([A-Za-z0-9._/-]+)(==|=|!=)([A-Za-z0-9._-]*)$/.exec(term);
    if (!match) return undefined;
    if (match[1] !== 'metadata.name' || match[2] === '!=') continue;
    if (name !== undefined) return undefined;
    name = match[3];
  }
  // The parser takes it only as a valid path segment name.
  if (name === undefined || name === '' || name === '.' || name === '..') return undefined;
  return name;
}

/**
 * Whether the list options in the query decode, as the parser requires before it reads a name
 * from the field selector: integers must be integers, and a label selector (whose grammar is
 * not read here) is taken as one that may not.
 */
function listOptionsDecode(query: Map<string, string[]>): boolean {
  if (query.has('labelSelector')) return false;
  for (const key of ['limit', 'timeoutSeconds']) {
    const value = query.get(key)?.[0];
    if (value !== undefined && !/^[+-]?[0-9]+$/.test(value)) return false;
  }
  return true;
}
