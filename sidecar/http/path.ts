// The path a request is forwarded with, and every path a server could read from it. The
// forwarded path is one canonical form: percent-encoded unreserved characters decoded, dot
// segments removed, duplicate slashes collapsed, escapes in upper case. Servers still read that
// path differently (Tomcat and Spring drop `;` path parameters, IIS trims trailing dots, most
// routers decode escapes or ignore a trailing slash, Rails drops a format suffix, some fold
// case), so rules are matched
// against each reading and the most restrictive decision wins. What servers disagree on beyond
// that (an encoded slash, backslash or dot segment, a double-encoded one, NUL, bad or overlong
// UTF-8, a fragment, raw non-ASCII, a target that is not a path) is refused.
// Pure: no I/O.

export type NormalizedTarget =
  | {
      ok: true;
      /** The canonical path: forwarded to the target, and recorded. */
      path: string;
      /** The query string as sent, with its '?' (or empty). */
      query: string;
      /** Every path a server could act on, the canonical one first: rules are matched on each. */
      readings: string[];
    }
  | { ok: false; reason: string };

export interface TargetOptions {
  /** The target serves paths without regard to case: readings are folded to lower case. */
  caseInsensitive?: boolean;
}

const unreserved = /[A-Za-z0-9\-._~]/;
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

export function normalizeTarget(target: string, options: TargetOptions = {}): NormalizedTarget {
  if (!target.startsWith('/'))
    return { ok: false, reason: 'the request target must be a path (origin form)' };
  if (/[^\x21-\x7e]/.test(target))
    return { ok: false, reason: 'control character, space or non-ASCII byte in request target' };
  const q = target.indexOf('?');
  const rawPath = q === -1 ? target : target.slice(0, q);
  const query = q === -1 ? '' : target.slice(q);
  if (target.includes('#')) return { ok: false, reason: 'fragment in request target' };
  if (rawPath.includes('\\')) return { ok: false, reason: 'backslash in path' };
  let canonical = '';
  for (let i = 0; i < rawPath.length; i++) {
    const c = rawPath[i]!;
    if (c !== '%') {
      canonical += c;
      continue;
    }
    const hex = rawPath.slice(i + 1, i + 3);
    if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return { ok: false, reason: 'malformed percent-encoding in path' };
    const ch = String.fromCharCode(Number.parseInt(hex, 16));
    canonical += unreserved.test(ch) ? ch : `%${hex.toUpperCase()}`;
    i += 2;
  }
  // An encoded dot segment (%2e, %2e%2e, .%2e) means something else to some targets.
  for (const segment of rawPath.split('/')) {
    if (/%2e/i.test(segment) && /^(\.|%2e){1,2}$/i.test(segment))
      return { ok: false, reason: 'encoded dot segment in path' };
  }
  const decoded = decodeEscapes(canonical);
  if (!decoded.ok) return decoded;
  // A second decoding (double-encoded %252e) must not turn into something the first refused.
  if (/%25[0-9A-F]{2}/i.test(canonical)) {
    const twice = decodeEscapes(decoded.text, true);
    if (!twice.ok)
      return { ok: false, reason: `double-encoded ${twice.reason.replace(/ in path$/, '')} in path` };
    if (hasDotSegment(twice.text)) return { ok: false, reason: 'double-encoded dot segment in path' };
  }
  const path = removeDotSegments(canonical);
  return { ok: true, path, query, readings: readingsOf(path, options) };
}

/**
 * The canonical path as servers read it: decoded, without path parameters, without trailing dots
 * and spaces in segments, without a format suffix, with or without a trailing slash, and
 * (optionally) in lower case; each
 * combination, the canonical path first.
 */
function readingsOf(path: string, options: TargetOptions): string[] {
  const transforms: ((p: string) => string)[] = [
    (p) => {
      const decoded = decodeEscapes(p);
      return decoded.ok ? removeDotSegments(decoded.text) : p;
    },
    (p) => removeDotSegments(stripParameters(p)),
    (p) => removeDotSegments(trimSegments(p)),
    stripFormatSuffix,
    toggleTrailingSlash,
  ];
  if (options.caseInsensitive) transforms.push((p) => p.toLowerCase());
  let readings = [path];
  for (const transform of transforms) {
    const next = new Set(readings);
    for (const reading of readings) next.add(transform(reading));
    readings = [...next];
  }
  return options.caseInsensitive ? readings.filter((r) => r === r.toLowerCase()) : readings;
}

type Decoded = { ok: true; text: string } | { ok: false; reason: string };

/** Decodes every %XX escape as UTF-8; refuses what decodes to a separator, NUL or bad UTF-8. */
function decodeEscapes(path: string, lenient = false): Decoded {
  let out = '';
  for (let i = 0; i < path.length; ) {
    if (path[i] !== '%' || !/^[0-9A-Fa-f]{2}$/.test(path.slice(i + 1, i + 3))) {
      if (path[i] === '%' && !lenient) return { ok: false, reason: 'malformed percent-encoding in path' };
      out += path[i];
      i++;
      continue;
    }
    const bytes: number[] = [];
    while (path[i] === '%' && /^[0-9A-Fa-f]{2}$/.test(path.slice(i + 1, i + 3))) {
      bytes.push(Number.parseInt(path.slice(i + 1, i + 3), 16));
      i += 3;
    }
    let text: string;
    try {
      // Overlong forms (%c0%ae for '.') and other invalid UTF-8 are refused, not guessed at.
      text = strictUtf8.decode(Uint8Array.from(bytes));
    } catch {
      return { ok: false, reason: 'invalid or overlong UTF-8 in path' };
    }
    if (/[/\\]/.test(text)) return { ok: false, reason: 'encoded slash or backslash in path' };
    if (text.includes('\0')) return { ok: false, reason: 'encoded NUL in path' };
    out += text;
  }
  return { ok: true, text: out };
}

function hasDotSegment(path: string): boolean {
  return path.split('/').some((s) => s === '.' || s === '..');
}

/** `/a;v=1/..;/b;jsessionid=x` → `/a/../b`: the path Tomcat, Jetty and Spring route. */
function stripParameters(path: string): string {
  return path
    .split('/')
    .map((s) => s.split(';')[0]!)
    .join('/');
}

/** `/admin./x ` → `/admin/x`: Windows servers drop trailing dots and spaces of a segment. */
function trimSegments(path: string): string {
  return path
    .split('/')
    .map((s) => (/^\.+$/.test(s) ? s : s.replace(/(?:\.|%20| )+$/i, '')))
    .join('/');
}

/**
 * `/v1/refunds.json` → `/v1/refunds`: Rails, Django REST framework and older Spring route a
 * format suffix on the last segment to the path without it.
 */
function stripFormatSuffix(path: string): string {
  return path.replace(/([^/.])\.[A-Za-z0-9]{1,8}(\/?)$/, '$1$2');
}

function toggleTrailingSlash(path: string): string {
  if (path === '/') return path;
  return path.endsWith('/') ? path.slice(0, -1) : `${path}/`;
}

/** Removes dot segments and collapses empty segments; keeps a trailing slash. */
function removeDotSegments(decoded: string): string {
  const output: string[] = [];
  const segments = decoded.split('/').filter((s, i, all) => s !== '' || i === all.length - 1);
  for (const segment of segments) {
    if (segment === '.') continue;
    if (segment === '..') {
      output.pop();
      continue;
    }
    output.push(segment);
  }
  const trailing = decoded.length > 1 && (decoded.endsWith('/') || /\/\.{1,2}$/.test(decoded));
  let path = `/${output.filter((s) => s !== '').join('/')}`;
  if (trailing && path !== '/') path += '/';
  return path;
}
