// The path a rule is matched on, and the path forwarded: one normalization, so the target never
// sees a different path than the one decided. Percent-encoded unreserved characters are decoded,
// dot segments removed and duplicate slashes collapsed; what targets disagree on (an encoded
// slash or backslash, an encoded dot segment, a backslash, NUL, a bad escape) is rejected.
// Pure: no I/O.

export type NormalizedTarget = { ok: true; path: string; query: string } | { ok: false; reason: string };

const unreserved = /[A-Za-z0-9\-._~]/;

export function normalizeTarget(target: string): NormalizedTarget {
  if (!target.startsWith('/'))
    return { ok: false, reason: 'the request target must be a path (origin form)' };
  const q = target.indexOf('?');
  const rawPath = q === -1 ? target : target.slice(0, q);
  const query = q === -1 ? '' : target.slice(q);
  if (query.includes('#') || rawPath.includes('#'))
    return { ok: false, reason: 'fragment in request target' };
  if (/[\\\0]/.test(rawPath)) return { ok: false, reason: 'backslash or NUL in path' };
  if (/[\x00-\x20\x7f]/.test(target))
    return { ok: false, reason: 'control character or space in request target' };
  let decoded = '';
  for (let i = 0; i < rawPath.length; i++) {
    const c = rawPath[i]!;
    if (c !== '%') {
      decoded += c;
      continue;
    }
    const hex = rawPath.slice(i + 1, i + 3);
    if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return { ok: false, reason: 'malformed percent-encoding in path' };
    const byte = Number.parseInt(hex, 16);
    const ch = String.fromCharCode(byte);
    if (byte === 0x2f || byte === 0x5c) return { ok: false, reason: 'encoded slash or backslash in path' };
    if (byte === 0) return { ok: false, reason: 'encoded NUL in path' };
    if (byte < 0x80 && unreserved.test(ch)) {
      decoded += ch;
    } else {
      decoded += `%${hex.toUpperCase()}`;
    }
    i += 2;
  }
  // An encoded dot segment (%2e, %2e%2e, .%2e) means something else to some targets.
  const rawSegments = rawPath.split('/');
  for (const segment of rawSegments) {
    if (/%2e/i.test(segment) && /^(\.|%2e){1,2}$/i.test(segment)) {
      return { ok: false, reason: 'encoded dot segment in path' };
    }
  }
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
  return { ok: true, path, query };
}
