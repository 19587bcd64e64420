// Unbounded writes: whether a write's WHERE (or MERGE ON) bounds the rows it touches, by folding
// constants and recognising conditions that hold for every row.
import { type AstNode, type AstObject, refShape, stringList } from './sql-tree.ts';

/**
 * Whether a WHERE (or MERGE ON) clause limits which rows of the target are touched. It does
 * not when it is always true (constants, TRUE, 1=1, 'a'='a', x = x, x LIKE '%', x IS NULL OR
 * x IS NOT NULL, any OR arm that is always true), or when it never refers to the target
 * table's columns (then it is all or nothing: WHERE now() > '2000-01-01', WHERE u.x = 1 in
 * DELETE … USING u, WHERE EXISTS (SELECT 1 FROM other)). WHERE CURRENT OF bounds.
 */
export function boundsRows(where: AstNode, names: ReadonlySet<string>): boolean {
  if (truth(where) === true) return false;
  return refersToTarget(where, names, false);
}

export function targetNames(relation: AstObject): Set<string> {
  const names = new Set<string>([String(relation['relname'])]);
  const alias = (relation['alias'] as AstObject | undefined)?.['aliasname'];
  if (typeof alias === 'string') {
    // With an alias, PostgreSQL no longer accepts the table name as a qualifier.
    names.clear();
    names.add(alias);
  }
  return names;
}

function refersToTarget(value: unknown, names: ReadonlySet<string>, inSubquery: boolean): boolean {
  if (Array.isArray(value)) return value.some((item) => refersToTarget(item, names, inSubquery));
  if (value === null || typeof value !== 'object') return false;
  const object = value as AstObject;
  if ('CurrentOfExpr' in object) return true;
  const ref = object['ColumnRef'] as AstObject | undefined;
  if (ref) {
    const { names: parts } = refShape(ref);
    // Inside a subquery an unqualified name may belong to the subquery's own tables.
    if (parts.length <= 1) return !inSubquery;
    return names.has(parts.at(-2)!);
  }
  if ('SubLink' in object) {
    const sublink = object['SubLink'] as AstObject;
    return (
      refersToTarget(sublink['testexpr'], names, inSubquery) ||
      refersToTarget(sublink['subselect'], names, true)
    );
  }
  for (const key in object) if (refersToTarget(object[key], names, inSubquery)) return true;
  return false;
}

type Constant = boolean | number | string | null;

/** Constant value of an expression, when it is one. */
function constant(node: AstNode | undefined): { value: Constant } | undefined {
  if (!node) return undefined;
  const a = node['A_Const'];
  if (a) {
    if (a['isnull']) return { value: null };
    const bool = a['boolval'] as AstObject | undefined;
    if (bool) return { value: bool['boolval'] === true };
    const ival = a['ival'] as AstObject | undefined;
    if (ival) return { value: Number(ival['ival'] ?? 0) };
    const fval = a['fval'] as AstObject | undefined;
    if (fval) return { value: Number(fval['fval']) };
    const sval = a['sval'] as AstObject | undefined;
    if (sval) return { value: String(sval['sval'] ?? '') };
    return undefined;
  }
  const cast = node['TypeCast'];
  if (cast) {
    const inner = constant(cast['arg'] as AstNode);
    if (!inner) return undefined;
    const type = stringList((cast['typeName'] as AstObject | undefined)?.['names']).at(-1);
    if (type === 'bool' || type === 'boolean') {
      const b = toBool(inner.value);
      return b === undefined ? undefined : { value: b };
    }
    return inner;
  }
  return undefined;
}

function toBool(value: Constant): boolean | null | undefined {
  if (value === null || typeof value === 'boolean') return value;
  if (typeof value === 'number') return undefined;
  const text = value.trim().toLowerCase();
  if (['t', 'tr', 'tru', 'true', 'y', 'ye', 'yes', 'on', '1'].includes(text)) return true;
  if (['f', 'fa', 'fal', 'fals', 'false', 'n', 'no', 'of', 'off', '0'].includes(text)) return false;
  return undefined;
}

/** true when the expression holds for every row (NULL rows aside); undefined when unknown. */
function truth(node: AstNode | undefined): boolean | undefined {
  if (!node) return undefined;
  const k = constant(node);
  if (k) {
    const b = toBool(k.value);
    return b === null ? false : b;
  }
  const bool = node['BoolExpr'];
  if (bool) {
    const args = (bool['args'] as AstNode[] | undefined) ?? [];
    const values = args.map(truth);
    if (bool['boolop'] === 'NOT_EXPR') return values[0] === undefined ? undefined : !values[0];
    if (bool['boolop'] === 'AND_EXPR') {
      if (values.includes(false)) return false;
      return values.every((v) => v === true) ? true : undefined;
    }
    if (values.includes(true) || complementaryNullTests(args) || complementaryArms(args)) return true;
    return values.every((v) => v === false) ? false : undefined;
  }
  const expr = node['A_Expr'];
  if (expr) return exprTruth(expr);
  const nullTest = node['NullTest'];
  if (nullTest) {
    const k2 = constant(nullTest['arg'] as AstNode);
    if (!k2) return undefined;
    const isNull = k2.value === null;
    return nullTest['nulltesttype'] === 'IS_NULL' ? isNull : !isNull;
  }
  const boolTest = node['BooleanTest'];
  if (boolTest) {
    const inner = truth(boolTest['arg'] as AstNode);
    if (inner === undefined) return undefined;
    switch (boolTest['booltesttype']) {
      case 'IS_TRUE':
      case 'IS_NOT_FALSE':
        return inner;
      case 'IS_FALSE':
      case 'IS_NOT_TRUE':
        return !inner;
      default:
        return undefined;
    }
  }
  return undefined;
}

function exprTruth(expr: AstObject): boolean | undefined {
  const op = stringList(expr['name']).at(-1);
  const left = expr['lexpr'] as AstNode | undefined;
  const right = expr['rexpr'] as AstNode | undefined;
  switch (expr['kind']) {
    case 'AEXPR_OP': {
      const l = constant(left);
      const r = constant(right);
      if (l && r && op) return compare(op, l.value, r.value);
      if (left && right && sameColumn(left, right) && (op === '=' || op === '<=' || op === '>=')) return true;
      return undefined;
    }
    case 'AEXPR_NOT_DISTINCT':
      return left && right && sameColumn(left, right) ? true : undefined;
    case 'AEXPR_LIKE':
    case 'AEXPR_ILIKE': {
      const pattern = constant(right);
      if (op?.startsWith('!')) return undefined;
      return typeof pattern?.value === 'string' && /^%+$/.test(pattern.value) ? true : undefined;
    }
    case 'AEXPR_IN': {
      const l = constant(left);
      const items = (right as { List?: { items?: AstNode[] } } | undefined)?.List?.items ?? [];
      if (!l || op !== '=') return undefined;
      return items.some((item) => {
        const k = constant(item);
        return k !== undefined && compare('=', l.value, k.value) === true;
      })
        ? true
        : undefined;
    }
    default:
      return undefined;
  }
}

function compare(op: string, a: Constant, b: Constant): boolean | undefined {
  if (a === null || b === null) return false;
  let x: Constant = a;
  let y: Constant = b;
  // PostgreSQL coerces an untyped literal to the other side's type: 1 = '1' is true.
  if (typeof x === 'number' && typeof y === 'string' && y.trim() !== '' && !Number.isNaN(Number(y)))
    y = Number(y);
  if (typeof y === 'number' && typeof x === 'string' && x.trim() !== '' && !Number.isNaN(Number(x)))
    x = Number(x);
  if (typeof x === 'boolean' && typeof y === 'string') y = toBool(y) ?? y;
  if (typeof y === 'boolean' && typeof x === 'string') x = toBool(x) ?? x;
  if (typeof x !== typeof y) return undefined;
  switch (op) {
    case '=':
      return x === y;
    case '<>':
    case '!=':
      return x !== y;
  }
  // Ordering of strings depends on the collation: only numbers are compared.
  if (typeof x !== 'number' || typeof y !== 'number') return undefined;
  switch (op) {
    case '<':
      return x < y;
    case '>':
      return x > y;
    case '<=':
      return x <= y;
    case '>=':
      return x >= y;
    default:
      return undefined;
  }
}

function sameColumn(a: AstNode, b: AstNode): boolean {
  const x = a['ColumnRef'];
  const y = b['ColumnRef'];
  if (!x || !y) return false;
  return JSON.stringify(x['fields']) === JSON.stringify(y['fields']);
}

/** x IS NULL OR x IS NOT NULL (in any order) among OR arms. */
function complementaryNullTests(args: AstNode[]): boolean {
  const tests = args.map((arg) => arg['NullTest']).filter((t) => t !== undefined);
  return tests.some(
    (a) =>
      a['nulltesttype'] === 'IS_NULL' &&
      tests.some((b) => b['nulltesttype'] === 'IS_NOT_NULL' && sameExpression(a['arg'], b['arg'])),
  );
}

/** The comparison each operator's negation is (NULLs aside): x < k OR x >= k holds for every row. */
const negatedOperators: Record<string, string> = {
  '<': '>=',
  '>=': '<',
  '>': '<=',
  '<=': '>',
  '=': '<>',
  '<>': '=',
  '!=': '=',
};
/** The operator seen from the other side: k < x is x > k. */
const mirroredOperators: Record<string, string> = {
  '<': '>',
  '>': '<',
  '<=': '>=',
  '>=': '<=',
  '=': '=',
  '<>': '<>',
  '!=': '<>',
};

/** A comparison of an expression with a constant, written either way round. */
function comparison(node: AstNode): { subject: unknown; op: string; value: Constant } | undefined {
  const expr = node['A_Expr'];
  if (expr?.['kind'] !== 'AEXPR_OP') return undefined;
  const names = stringList(expr['name']);
  const op = names.length === 1 ? names[0]! : undefined;
  if (!op || !(op in negatedOperators)) return undefined;
  const right = constant(expr['rexpr'] as AstNode);
  if (right) return { subject: expr['lexpr'], op, value: right.value };
  const left = constant(expr['lexpr'] as AstNode);
  if (left) return { subject: expr['rexpr'], op: mirroredOperators[op]!, value: left.value };
  return undefined;
}

/**
 * OR arms that cover every row between them (NULLs aside): p OR NOT p, and a comparison with
 * its negation against the same constant (id > 0 OR id <= 0, status = 'a' OR status <> 'a').
 */
function complementaryArms(args: AstNode[]): boolean {
  const negations = args.map((arg) => arg['BoolExpr']).filter((b) => b?.['boolop'] === 'NOT_EXPR');
  for (const not of negations) {
    const inner = (not!['args'] as AstNode[] | undefined)?.[0];
    if (args.some((arg) => sameExpression(arg, inner))) return true;
  }
  const comparisons = args.map(comparison).filter((c) => c !== undefined);
  return comparisons.some((a) =>
    comparisons.some(
      (b) =>
        negatedOperators[a.op] === (b.op === '!=' ? '<>' : b.op) &&
        a.value !== null &&
        a.value === b.value &&
        sameExpression(a.subject, b.subject),
    ),
  );
}

function sameExpression(a: unknown, b: unknown): boolean {
  const strip = (value: unknown) => JSON.stringify(value, (key, v) => (key === 'location' ? undefined : v));
  return strip(a) === strip(b);
}

export function constString(node: AstNode | undefined): string | undefined {
  const k = constant(node);
  return typeof k?.value === 'string' ? k.value : undefined;
}
