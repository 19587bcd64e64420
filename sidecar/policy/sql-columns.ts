// Which table a column reference names: the FROM items and CTEs in scope (aliases, alias column
// lists, functions in FROM), and the column uses a statement makes, recorded as they resolve.
import type { ColumnUse } from './sql.ts';
import {
  type AstNode,
  type AstObject,
  hasStarTarget,
  qualifiedName,
  refShape,
  stringList,
} from './sql-tree.ts';

/** A FROM item visible to column references: its reference name and the table behind it. */
export interface RangeItem {
  name: string;
  table: string | undefined;
  /**
   * Column names given by an alias column list (`t AS x(a, b)`, `WITH w(a, b)`): they name
   * columns by position, so which column of the table each one is cannot be told here.
   */
  renamed?: ReadonlySet<string>;
  /**
   * A function in FROM (generate_series(…) g, XMLTABLE): its values come from its arguments,
   * which are recorded where the call is walked, so its columns and whole row add nothing.
   */
  derived?: boolean;
}

/** The names in scope while a statement is walked, and the column uses they resolve. */
export class ColumnScopes {
  columnUses: ColumnUse[] = [];
  /** Innermost last. */
  scopes: RangeItem[][] = [];
  /** CTE names in scope, innermost last: each one's alias column list, and whether a star passes its columns on. */
  ctes: Map<string, { colnames: string[]; star: boolean }>[] = [];

  inScope<T>(items: RangeItem[], walk: () => T): T {
    this.scopes.push(items);
    try {
      return walk();
    } finally {
      this.scopes.pop();
    }
  }

  /** The range item a single-name reference denotes as a whole row, if any. */
  wholeRow(ref: AstObject): RangeItem | undefined {
    const { names, star } = refShape(ref);
    if (star || names.length !== 1) return undefined;
    return this.lookup(names[0]!);
  }

  lookup(name: string): RangeItem | undefined {
    for (let i = this.scopes.length - 1; i >= 0; i--) {
      const found = this.scopes[i]!.find((item) => item.name === name);
      if (found) return found;
    }
    return undefined;
  }

  /**
   * Records a column reference. mode: direct (a bare top-level target), harmful (everything
   * else), skip (a star whose columns are named again outside, so not a use by itself).
   */
  columnRef(ref: AstObject, mode: 'direct' | 'harmful' | 'skip'): void {
    const { names, star } = refShape(ref);
    if (star) {
      // A star passes renamed columns on under names the outer query cannot trace: a use.
      const covered = names.length === 0 ? (this.scopes.at(-1) ?? []) : [this.lookup(names.at(-1)!)];
      if (mode === 'skip' && !covered.some((item) => item?.renamed)) return;
      const direct = mode === 'direct';
      if (names.length === 0) {
        const scope = this.scopes.at(-1) ?? [];
        for (const item of scope) {
          if (!item.derived) this.columnUses.push({ table: item.table, column: '*', direct });
        }
        if (scope.length === 0) this.columnUses.push({ column: '*', direct });
      } else if (!(names.length === 1 && covered[0]?.derived)) {
        this.columnUses.push({ table: this.resolveQualifier(names), column: '*', direct });
      }
      return;
    }
    const whole = this.wholeRow(ref);
    if (whole?.derived) return;
    if (whole) {
      // A whole-row reference yields a composite value: no column origin, so never direct.
      this.columnUses.push({ table: whole.table, column: '*', direct: false });
      return;
    }
    const column = names.at(-1);
    if (column === undefined) return;
    const qualifier = names.slice(0, -1);
    const use =
      qualifier.length === 1
        ? this.itemColumn(this.lookup(qualifier[0]!), column)
        : qualifier.length > 1
          ? { table: this.resolveQualifier(qualifier), column }
          : this.unqualifiedColumn(this.scopes.flat(), column);
    this.columnUses.push({ ...use, direct: mode === 'direct' });
  }

  /** A column of a range item: one its alias column list renamed could be any of its columns. */
  itemColumn(item: RangeItem | undefined, column: string): Omit<ColumnUse, 'direct'> {
    if (item?.renamed?.has(column)) return { table: item.table, column: '*' };
    return { table: item?.table, column };
  }

  /** An unqualified column among the items it can come from. */
  unqualifiedColumn(items: RangeItem[], column: string): Omit<ColumnUse, 'direct'> {
    const renaming = items.filter((item) => item.renamed?.has(column));
    // In a valid statement the name is unambiguous: a renaming item is the one it comes from.
    if (renaming.length > 0) {
      return { table: renaming.length === 1 ? renaming[0]!.table : undefined, column: '*' };
    }
    return { table: items.length === 1 ? items[0]!.table : undefined, column };
  }

  resolveQualifier(qualifier: string[]): string | undefined {
    // db.schema.table or schema.table: written out in full, no alias involved.
    if (qualifier.length >= 2) return qualifier.slice(-2).join('.');
    return this.lookup(qualifier[0]!)?.table;
  }

  fromItems(from: unknown): RangeItem[] {
    const items: RangeItem[] = [];
    const visit = (value: unknown): void => {
      if (Array.isArray(value)) {
        for (const item of value) visit(item);
        return;
      }
      const node = value as AstNode | undefined;
      if (!node) return;
      if (node['RangeVar']) items.push(this.rangeItem(node['RangeVar']));
      else if (node['RangeTableSample']) visit(node['RangeTableSample']['relation']);
      else if (node['JoinExpr']) {
        const join = node['JoinExpr'];
        visit(join['larg']);
        visit(join['rarg']);
        const alias = join['alias'] as AstObject | undefined;
        if (typeof alias?.['aliasname'] === 'string') {
          // Renamed join columns could be any column of either side.
          const colnames = stringList(alias['colnames']);
          const renamed = colnames.length > 0 ? new Set(colnames) : undefined;
          items.push({ name: alias['aliasname'], table: undefined, ...(renamed && { renamed }) });
        }
      } else {
        const [type] = Object.keys(node);
        const body = node[type!];
        const alias = body?.['alias'] as AstObject | undefined;
        const name = typeof alias?.['aliasname'] === 'string' ? alias['aliasname'] : '';
        // Subqueries, functions, VALUES: their columns have no table behind them here. Only a
        // subquery's star passes columns on unrecorded; everything else in them is a use.
        const colnames = stringList(alias?.['colnames']);
        const renamed =
          type === 'RangeSubselect' && colnames.length > 0 && hasStarTarget(body?.['subquery'])
            ? new Set(colnames)
            : undefined;
        const derived = type === 'RangeFunction' || type === 'RangeTableFunc';
        items.push({ name, table: undefined, ...(renamed && { renamed }), ...(derived && { derived }) });
      }
    };
    visit(from);
    return items;
  }

  rangeItem(rangeVar: AstObject | undefined): RangeItem {
    if (!rangeVar) return { name: '', table: undefined };
    const relname = String(rangeVar['relname']);
    const alias = rangeVar['alias'] as AstObject | undefined;
    const name = typeof alias?.['aliasname'] === 'string' ? alias['aliasname'] : relname;
    const cte = rangeVar['schemaname'] ? undefined : this.ctes.findLast((names) => names.has(relname));
    const definition = cte?.get(relname);
    if (definition) {
      // A CTE renamed where it is defined or where it is used; only a star passes columns on unrecorded.
      const renamed = new Set([...definition.colnames, ...stringList(alias?.['colnames'])]);
      return { name, table: undefined, ...(renamed.size > 0 && definition.star && { renamed }) };
    }
    const colnames = stringList(alias?.['colnames']);
    return {
      name,
      table: qualifiedName(rangeVar),
      ...(colnames.length > 0 && { renamed: new Set(colnames) }),
    };
  }
}
