// The shape of libpg_query's JSON parse tree and small readers of it (name lists, column
// references, qualified relation names).

export type AstObject = Record<string, unknown>;
export type AstNode = Record<string, AstObject>;

/**
 * Whether a query has a star in a target list anywhere inside: a star in a subquery or CTE
 * passes the columns on unrecorded (the outer query names them), so renaming them by an alias
 * column list hides which column is which.
 */
export function hasStarTarget(value: unknown): boolean {
  if (Array.isArray(value)) return value.some(hasStarTarget);
  if (value === null || typeof value !== 'object') return false;
  const object = value as AstObject;
  const ref = ((object['ResTarget'] as AstObject | undefined)?.['val'] as AstNode | undefined)?.['ColumnRef'];
  if (ref && refShape(ref).star) return true;
  for (const key in object) if (hasStarTarget(object[key])) return true;
  return false;
}

export function refShape(ref: AstObject): { names: string[]; star: boolean } {
  const fields = (ref['fields'] as AstNode[] | undefined) ?? [];
  const star = fields.length > 0 && 'A_Star' in fields[fields.length - 1]!;
  return { names: stringList(star ? fields.slice(0, -1) : fields), star };
}

/** The sval of each String node in a list. */
export function stringList(value: unknown): string[] {
  if (!Array.isArray(value)) return [];
  const out: string[] = [];
  for (const item of value as AstNode[]) {
    const s = item?.['String']?.['sval'];
    if (typeof s === 'string') out.push(s);
  }
  return out;
}

export function qualifiedName(rangeVar: AstObject): string {
  const relname = String(rangeVar['relname']);
  const schema = rangeVar['schemaname'];
  return typeof schema === 'string' ? `${schema}.${relname}` : relname;
}
