// The methods a target may act on for one request. Frameworks let a client override the request
// line's method: by header (X-HTTP-Method-Override, X-HTTP-Method, X-Method-Override: Google
// APIs, ASP.NET, Symfony, express method-override) and by a `_method` parameter in the query or
// in a form, multipart or JSON body (Rails, Laravel, Symfony). Airlock does not guess which one
// a target honours: a request is decided as every method it names (the most restrictive wins),
// and a body that may carry `_method` but cannot be read whole within a bound is decided as
// every method a rule names. Pure: no I/O.

/** Header names that override the method, lower case. */
export const overrideHeaders = ['x-http-method-override', 'x-http-method', 'x-method-override'] as const;

/** Methods a request is also decided as when its override cannot be read. */
export const everyMethod = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'TRACE', 'CONNECT'];

function methodsIn(values: Iterable<string>): string[] {
  const out: string[] = [];
  for (const value of values)
    for (const part of value.split(',')) {
      const method = part.trim().toUpperCase();
      if (method) out.push(method);
    }
  return out;
}

/** The methods named by override headers (any casing, repeated, comma lists) and the query's `_method`. */
export function requestOverrides(headers: Record<string, string[] | undefined>, query: string): string[] {
  const named: string[] = [];
  for (const name of overrideHeaders) named.push(...methodsIn(headers[name] ?? []));
  named.push(...methodsIn(parameters(query.replace(/^\?/, ''))));
  return named;
}

/**
 * Whether a parameter name is `_method` as some framework reads it: in any case, around blanks,
 * encoded (`%5Fmethod`), as PHP names it (a `.` or space in a name is `_`: `.method` is
 * `_method` to Symfony and Laravel; a NUL ends it) and with brackets (`_method[]=DELETE` is an array to qs
 * and PHP, and express's method-override takes its first element).
 */
export function isMethodParameter(name: string): boolean {
  const base = name.trim().toLowerCase().split(/[[\0]/)[0]!.replace(/[. ]/g, '_');
  return base === '_method';
}

/**
 * Values of `_method` in a query or form however its name is spelled or encoded (`%5Fmethod`,
 * `_METHOD`, `.method`, `_method[]`), with pairs split at `&` and also at `;` (older Rack).
 */
function parameters(text: string): string[] {
  const values: string[] = [];
  const pairs = new URLSearchParams(text);
  if (text.includes(';'))
    for (const pair of new URLSearchParams(text.replaceAll(';', '&'))) pairs.append(...pair);
  for (const [name, value] of pairs) if (isMethodParameter(name)) values.push(value);
  return values;
}

/**
 * Body types a framework reads `_method` from; undefined for a body that cannot carry one. Rack
 * (Rails) reads a POST without a type as a form, any multipart type (mixed, related) as a form's
 * parts, and the type as what comes before a `;` or a `,`.
 */
export function overrideBodyType(contentType: string | undefined): 'form' | 'multipart' | 'json' | undefined {
  const type = (contentType ?? '').split(/[;,]/)[0]!.trim().toLowerCase();
  if (type === 'application/x-www-form-urlencoded' || type === '') return 'form';
  if (type.startsWith('multipart/')) return 'multipart';
  if (type === 'application/json' || type.endsWith('+json')) return 'json';
  return undefined;
}

/**
 * The methods a whole body names in `_method`, or undefined when it cannot be read (malformed,
 * or a multipart body without its boundary): the caller decides it as every method.
 */
export function bodyOverrides(
  kind: 'form' | 'multipart' | 'json',
  contentType: string,
  body: Buffer,
): string[] | undefined {
  const text = body.toString('utf8');
  if (kind === 'form') return methodsIn(parameters(text));
  if (kind === 'json') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      return text.trim() === '' ? [] : undefined;
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return [];
    // Parsers disagree on a repeated key (first or last wins): more than one is unreadable.
    const unescaped = text.replace(/\\u([0-9A-Fa-f]{4})/g, (_, hex: string) =>
      String.fromCharCode(Number.parseInt(hex, 16)),
    );
    if ((unescaped.match(/"\s*_method\s*"\s*:/gi) ?? []).length > 1) return undefined;
    const values = Object.entries(parsed as Record<string, unknown>)
      .filter(([name]) => name.trim().toLowerCase() === '_method')
      .map(([, value]) => value);
    if (values.some((v) => typeof v !== 'string')) return undefined;
    return methodsIn(values as string[]);
  }
  const boundary = /;\s*boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType);
  const delimiter = boundary?.[1] ?? boundary?.[2];
  if (!delimiter) return undefined;
  const parts = text.split(`--${delimiter}`);
  if (parts.length < 2) return undefined;
  const values: string[] = [];
  for (const part of parts.slice(1)) {
    if (part.startsWith('--')) break;
    const split = part.indexOf('\r\n\r\n');
    if (split < 0) return undefined;
    const head = part.slice(0, split);
    const name = /content-disposition:[^\r\n]*;\s*name\*?=(?:"([^"]*)"|([^;\s]+))/i.exec(head);
    const field = name?.[1] ?? name?.[2];
    if (field === undefined) continue;
    if (isMethodParameter(decodeURIComponentSafe(field)))
      values.push(part.slice(split + 4).replace(/\r\n$/, ''));
  }
  return methodsIn(values);
}

function decodeURIComponentSafe(text: string): string {
  try {
    return decodeURIComponent(text.replace(/^utf-8''/i, ''));
  } catch {
    return text;
  }
}
