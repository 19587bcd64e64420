// Glob matching for policy criteria. Globs come from AccessPolicies (at most 512 characters,
// validated by the CRD); each compiles once to an anchored RegExp with no nested quantifiers,
// so matching is linear.

const cache = new Map<string, RegExp>();

/**
 * `*` matches any run of characters (across `/` and spaces too), `?` one character; all
 * else is literal. For SSH command lines and for the parts of SQL names.
 */
export function matchGlob(glob: string, value: string, ignoreCase = false): boolean {
  return compile(glob, ignoreCase ? 'i' : '', false).test(value);
}

/** HTTP paths: `*` stays within a segment, `**` crosses segments. */
export function matchPathGlob(glob: string, path: string): boolean {
  return compile(glob, '', true).test(path);
}

function compile(glob: string, flags: string, segments: boolean): RegExp {
  const key = `${flags}${segments ? 'p' : 'g'}:${glob}`;
  let re = cache.get(key);
  if (!re) {
    let source = '';
    for (let i = 0; i < glob.length; i++) {
      const ch = glob[i]!;
      if (ch === '*') {
        if (segments && glob[i + 1] === '*') {
          source += '.*';
          i++;
        } else source += segments ? '[^/]*' : '.*';
      } else if (ch === '?') source += segments ? '[^/]' : '.';
      else source += ch.replace(/[\\^$.|+()[\]{}]/g, '\\$&');
    }
    re = new RegExp(`^${source}$`, `s${flags}`);
    if (cache.size > 10_000) cache.clear();
    cache.set(key, re);
  }
  return re;
}

/** Splits 'schema.table' (or 'table'); only the first dot separates the schema. */
export function splitQualified(name: string): { schema?: string; name: string } {
  const dot = name.indexOf('.');
  return dot < 0 ? { name } : { schema: name.slice(0, dot), name: name.slice(dot + 1) };
}

/**
 * A glob over [schema.]name against a relation or function as written in SQL. SQL names are
 * compared without regard to case, so a quoted "Customers" matches customers: for deny rules
 * and masking, matching more is the safe side. A glob without a schema matches any schema.
 * An unqualified name is resolved by search_path, which the client controls (SET search_path
 * = audit, then DELETE FROM events), so its schema is unknown: it matches a schema-qualified
 * glob whenever the name part matches. Rules only deny or hold for approval, so matching
 * more can only make Airlock stricter.
 */
export function matchSqlName(glob: string, written: string): boolean {
  const g = splitQualified(glob);
  const w = splitQualified(written);
  if (!matchGlob(g.name, w.name, true)) return false;
  if (g.schema === undefined || w.schema === undefined) return true;
  return matchGlob(g.schema, w.schema, true);
}

/** Splits a column glob [schema.]table.column; a bare name is a column of any table. */
export function splitColumnGlob(glob: string): { schema?: string; table?: string; column: string } {
  const parts = glob.split('.');
  if (parts.length === 1) return { column: parts[0]! };
  if (parts.length === 2) return { table: parts[0]!, column: parts[1]! };
  return { schema: parts[0]!, table: parts.slice(1, -1).join('.'), column: parts.at(-1)! };
}
