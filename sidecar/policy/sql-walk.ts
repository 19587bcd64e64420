// The walk of one statement's parse tree: every node is visited generically, so a statement
// nested anywhere (CTE, subquery, EXPLAIN, PREPARE, SQL-standard function body) is found; the
// nodes that matter are read for what the statement is (kinds, classes), touches (tables,
// functions) and how it uses columns (resolved by ColumnScopes), and whether a write is
// unbounded or the statement may change how the server reads the SQL text that follows.
import { type SqlClass, type SqlStatementKind, sqlClasses, sqlStatementKinds } from '../../api/names.ts';
import { adminFunctions, builtinFunctions, valueReadingFunctions, writingFunctions } from './functions.ts';
import type { ColumnUse } from './sql.ts';
import { ColumnScopes } from './sql-columns.ts';
import { armKinds, classify, identitySettings, relationObjectTypes } from './sql-kinds.ts';
import { demotesPgCatalog } from './sql-text.ts';
import {
  type AstNode,
  type AstObject,
  hasStarTarget,
  qualifiedName,
  refShape,
  stringList,
} from './sql-tree.ts';
import { boundsRows, constString, targetNames } from './sql-where.ts';

/** Catalogs that hold column values (planner and extended statistics): reading one reads every column. */
export const valueCatalogs: ReadonlySet<string> = new Set([
  'pg_statistic',
  'pg_statistic_ext_data',
  'pg_stats',
  'pg_stats_ext',
  'pg_stats_ext_exprs',
]);

/** A use of every column of every table: what a call the analysis cannot see into may read. */
const everyColumn: ColumnUse = Object.freeze({ column: '*', direct: false });

/**
 * How a SELECT's output is used, which decides what its target list reveals:
 * top   - returned to the client as is, where the protocol layer masks by column origin;
 * sub   - feeds an outer query that names its columns (FROM subquery, CTE, sublink);
 * sink  - leaves the query unmasked (INSERT … SELECT, CREATE … AS, COPY, cursors, set operations).
 */
type Role = 'top' | 'sub' | 'sink';

export class Walk extends ColumnScopes {
  kinds: SqlStatementKind[] = [];
  classes = new Set<SqlClass>();
  tables = new Set<string>();
  functions = new Set<string>();
  unboundedWrite = false;

  /** Any value of the tree: arrays, wrapped nodes ({Type: {...}}), or bare structs. */
  value(value: unknown): void {
    if (Array.isArray(value)) {
      for (const item of value) this.value(item);
      return;
    }
    if (value === null || typeof value !== 'object') return;
    const object = value as AstObject;
    const keys = Object.keys(object);
    if (keys.length === 1) {
      const type = keys[0]!;
      const body = object[type];
      if (/^[A-Z]/.test(type) && body !== null && typeof body === 'object' && !Array.isArray(body)) {
        this.node(type, body as AstObject);
        return;
      }
    }
    // Bare structs: fields typed as a specific message are not wrapped in the JSON tree.
    if (typeof object['relname'] === 'string') this.rangeVar(object);
    else if ('funcformat' in object && Array.isArray(object['funcname'])) this.funcCall(object);
    else this.fields(object);
  }

  fields(body: AstObject, skip?: ReadonlySet<string>): void {
    for (const key in body) if (!skip?.has(key)) this.value(body[key]);
  }

  node(type: string, body: AstObject): void {
    if (type.endsWith('Stmt') && type !== 'RawStmt' && type !== 'ReturnStmt' && type !== 'PLAssignStmt') {
      this.statement(type, body, 'sink');
      return;
    }
    switch (type) {
      case 'RangeVar':
        this.rangeVar(body);
        return;
      case 'FuncCall':
        this.funcCall(body);
        return;
      case 'A_Expr': {
        // OPERATOR(schema.op) outside pg_catalog runs a user-defined function, like a call.
        const schema = stringList(body['name']).at(-2);
        if (schema !== undefined && schema !== 'pg_catalog') {
          this.classes.add('admin');
          this.columnUses.push(everyColumn);
        }
        this.fields(body);
        return;
      }
      case 'ColumnRef':
        this.columnRef(body, 'harmful');
        return;
      case 'SubLink': {
        this.value(body['testexpr']);
        // A sublink's columns become values of the outer expression (ARRAY(SELECT * …), IN):
        // nothing names them again, so even a star is a use; EXISTS ignores them.
        const exists = body['subLinkType'] === 'EXISTS_SUBLINK';
        this.query(body['subselect'], exists ? 'sub' : 'sink', exists);
        return;
      }
      case 'JoinExpr':
        this.join(body);
        return;
      case 'RangeSubselect':
        this.query(body['subquery'], 'sub');
        return;
      case 'CommonTableExpr':
        this.query(body['ctequery'], 'sub');
        return;
      default:
        this.fields(body);
    }
  }

  /** A nested query; a SELECT gets the role, any other statement is walked as a statement. */
  query(value: unknown, role: Role, exists = false): void {
    const wrapped = value as AstNode | undefined;
    const select = wrapped?.['SelectStmt'];
    if (select) this.select(select, role, exists);
    else this.value(value);
  }

  /**
   * Code the agent sends that the analysis cannot read (a DO block) runs here: it may run any
   * statement on any column, so it is every kind and class and a use of every column: a rule on
   * DELETE holds it as a script that could delete. Whether a write in it is bounded cannot be
   * told, so it is not called unbounded (a rule on unbounded writes alone does not match it).
   */
  opaqueCode(): void {
    for (const kind of sqlStatementKinds) this.addKind(kind);
    for (const cls of sqlClasses) this.classes.add(cls);
    this.columnUses.push(everyColumn);
  }

  addKind(kind: SqlStatementKind): void {
    if (!this.kinds.includes(kind)) this.kinds.push(kind);
  }

  statement(type: string, body: AstObject, role: Role): void {
    const { kind, classes } = classify(type, body);
    this.addKind(kind);
    for (const cls of classes) this.classes.add(cls);
    switch (type) {
      case 'SelectStmt':
        this.select(body, body['intoClause'] ? 'sink' : role);
        return;
      case 'UpdateStmt':
      case 'DeleteStmt':
        this.updateOrDelete(type, body);
        return;
      case 'MergeStmt':
        this.merge(body);
        return;
      case 'InsertStmt':
        this.insert(body);
        return;
      case 'DoStmt':
        this.opaqueCode();
        this.fields(body);
        return;
      case 'CreateTrigStmt':
      case 'CreateEventTrigStmt':
        // Code the analysis cannot see (a DO body, a trigger's function) may read any column.
        this.columnUses.push(everyColumn);
        this.fields(body);
        return;
      case 'CreateFunctionStmt':
        // A body in a string ($$ … $$) is opaque: calling the function later (or firing it
        // as a trigger) may copy any column; a SQL-standard body is walked like any query.
        if (!body['sql_body']) this.columnUses.push(everyColumn);
        this.fields(body);
        return;
      case 'TruncateStmt':
        this.unboundedWrite = true;
        this.fields(body);
        return;
      case 'CopyStmt':
        this.copy(body);
        return;
      case 'RenameStmt':
      case 'AlterObjectSchemaStmt':
        this.moveRelation(body);
        this.fields(body);
        return;
      case 'VariableSetStmt':
        if (body['name'] === 'search_path' && body['kind'] === 'VAR_SET_VALUE') {
          const args = (body['args'] as AstNode[] | undefined) ?? [];
          const schemas = args.map(constString);
          this.searchPath(schemas.includes(undefined) || schemas.indexOf('pg_catalog') > 0);
        }
        return;
      case 'DropStmt':
        this.dropObjects(body);
        this.fields(body);
        return;
      case 'CallStmt':
        this.funcCall(body['funccall'] as AstObject);
        return;
      case 'ExplainStmt':
      case 'PrepareStmt':
        // The inner statement runs as written (EXPLAIN ANALYZE executes it; PREPARE is checked
        // now and again at EXECUTE), so it is analysed as a top-level statement.
        this.nestedTop(body['query']);
        this.fields(body, new Set(['query']));
        return;
      case 'DeclareCursorStmt':
        this.query(body['query'], 'sink');
        return;
      case 'CreateTableAsStmt':
      case 'ViewStmt':
        this.query(body['query'], 'sink');
        this.fields(body, new Set(['query']));
        return;
      default:
        this.fields(body);
    }
  }

  nestedTop(value: unknown): void {
    const wrapped = value as AstNode | undefined;
    if (!wrapped) return;
    const [type] = Object.keys(wrapped);
    if (type) this.statement(type, wrapped[type]!, 'top');
  }

  withCtes(body: AstObject, walk: () => void): void {
    const withClause = body['withClause'] as AstObject | undefined;
    const ctes = (withClause?.['ctes'] as AstNode[] | undefined) ?? [];
    const names = new Map<string, { colnames: string[]; star: boolean }>();
    for (const cte of ctes) {
      const body = cte['CommonTableExpr'];
      const name = body?.['ctename'];
      if (typeof name === 'string') {
        names.set(name, {
          colnames: stringList(body?.['aliascolnames']),
          star: hasStarTarget(body?.['ctequery']),
        });
      }
    }
    this.ctes.push(names);
    try {
      this.value(ctes);
      walk();
    } finally {
      this.ctes.pop();
    }
  }

  select(body: AstObject, role: Role, exists = false): void {
    // FOR UPDATE, NO KEY UPDATE, SHARE, KEY SHARE lock the rows, which the server allows only
    // with UPDATE privilege: others wait on them as on a write.
    if (body['lockingClause']) this.classes.add('write');
    this.withCtes(body, () => {
      if (body['op'] && body['op'] !== 'SETOP_NONE') {
        // Set operations lose column origins: everything in either branch is indirect.
        this.select(body['larg'] as AstObject, 'sink');
        this.select(body['rarg'] as AstObject, 'sink');
        this.fields(body, new Set(['larg', 'rarg', 'withClause']));
        return;
      }
      const from = body['fromClause'];
      const items = this.fromItems(from);
      // JOIN … ON needs the FROM names in scope. A subquery in FROM sees them too, which can
      // only make an unqualified column there more ambiguous, never wrongly attributed.
      this.inScope(items, () => {
        this.value(from);
        const targets = (body['targetList'] as AstNode[] | undefined) ?? [];
        for (const target of targets) {
          const res = target['ResTarget'];
          const ref = (res?.['val'] as AstNode | undefined)?.['ColumnRef'];
          if (res && ref) this.targetColumn(ref, role, exists);
          else this.value(target);
        }
        this.targetsReferencedBy(body, targets);
        this.fields(body, new Set(['targetList', 'fromClause', 'withClause', 'larg', 'rarg']));
      });
    });
  }

  /**
   * ORDER BY, GROUP BY and DISTINCT ON may name a target by position (`ORDER BY 2`) or by its
   * alias (`SELECT ssn AS s … ORDER BY s`): that sorts or groups by the target's value, an
   * indirect use, though the clause itself names no column of a table.
   */
  targetsReferencedBy(body: AstObject, targets: AstNode[]): void {
    const clauses = [
      ...((body['sortClause'] as AstNode[] | undefined) ?? []).map(
        (s) => s['SortBy']?.['node'] as AstNode | undefined,
      ),
      ...((body['groupClause'] as AstNode[] | undefined) ?? []),
      ...((body['distinctClause'] as AstNode[] | undefined) ?? []),
    ];
    for (const item of clauses) {
      if (!item) continue;
      let target: AstObject | undefined;
      const constant = item['A_Const'] as AstObject | undefined;
      if (constant && constant['ival'] !== undefined) {
        const position = Number((constant['ival'] as AstObject)['ival'] ?? 0);
        // A position at or after a star may be any column the star expands to (SELECT * … ORDER BY 3).
        const stars = targets
          .slice(0, position)
          .map((t) => (t['ResTarget']?.['val'] as AstNode | undefined)?.['ColumnRef'])
          .filter((ref) => ref !== undefined && refShape(ref).star);
        for (const ref of stars) this.columnRef(ref!, 'harmful');
        if (stars.length > 0) continue;
        target = targets[position - 1]?.['ResTarget'];
      }
      const columnRef = item['ColumnRef'] as AstObject | undefined;
      if (!target && columnRef) {
        const { names, star } = refShape(columnRef);
        if (!star && names.length === 1)
          target = targets.map((t) => t['ResTarget']).find((r) => r?.['name'] === names[0]);
      }
      const value = target?.['val'] as AstNode | undefined;
      if (!value) continue;
      if (value['ColumnRef']) this.columnRef(value['ColumnRef'] as AstObject, 'harmful');
      else this.value(value);
    }
  }

  /** A bare column reference in a target list. */
  targetColumn(ref: AstObject, role: Role, exists: boolean): void {
    const { star } = refShape(ref);
    if (star) {
      if (role === 'top') this.columnRef(ref, 'direct');
      else if (role === 'sink') this.columnRef(ref, 'harmful');
      // sub: the outer query names these columns again; EXISTS ignores them altogether.
      else if (!exists) this.columnRef(ref, 'skip');
      return;
    }
    this.columnRef(ref, role === 'top' ? 'direct' : 'harmful');
  }

  updateOrDelete(type: string, body: AstObject): void {
    this.withCtes(body, () => {
      const relation = body['relation'] as AstObject;
      const target = this.rangeItem(relation);
      this.value(relation);
      const others = type === 'UpdateStmt' ? body['fromClause'] : body['usingClause'];
      const items = [target, ...this.fromItems(others)];
      this.value(others);
      const where = body['whereClause'] as AstNode | undefined;
      if (!where || !boundsRows(where, targetNames(relation))) this.unboundedWrite = true;
      this.inScope(items, () =>
        this.fields(body, new Set(['relation', 'fromClause', 'usingClause', 'withClause'])),
      );
    });
  }

  merge(body: AstObject): void {
    this.withCtes(body, () => {
      const relation = body['relation'] as AstObject;
      const target = this.rangeItem(relation);
      this.value(relation);
      const source = body['sourceRelation'];
      const items = [target, ...this.fromItems([source])];
      this.value(source);
      const names = targetNames(relation);
      const on = body['joinCondition'] as AstNode | undefined;
      const onBounds = on !== undefined && boundsRows(on, names);
      for (const item of (body['mergeWhenClauses'] as AstNode[] | undefined) ?? []) {
        const arm = item['MergeWhenClause'];
        if (!arm) continue;
        // Each arm is classified by what it does: THEN DELETE is a DELETE for rules and approvals.
        const command = armKinds[String(arm['commandType'])];
        if (command) this.addKind(command);
        // An arm that updates or deletes matched rows touches every row when neither the join
        // nor its own condition limits the target's rows (ON true, ON t.id = t.id).
        const touchesTarget = command === 'UPDATE' || command === 'DELETE';
        const condition = arm['condition'] as AstNode | undefined;
        if (touchesTarget && !onBounds && !(condition && boundsRows(condition, names))) {
          this.unboundedWrite = true;
        }
      }
      this.inScope(items, () => this.fields(body, new Set(['relation', 'sourceRelation', 'withClause'])));
    });
  }

  /**
   * INSERT … ON CONFLICT DO UPDATE is an UPDATE too. It updates every row when its rows come
   * from a query (which may yield every key of the table) and its arm has no WHERE that limits
   * the target's rows; a VALUES list updates at most the rows it lists.
   */
  insert(body: AstObject): void {
    this.withCtes(body, () => {
      const relation = body['relation'] as AstObject;
      this.value(relation);
      this.query(body['selectStmt'], 'sink');
      const conflict = body['onConflictClause'] as AstObject | undefined;
      if (conflict?.['action'] === 'ONCONFLICT_UPDATE') {
        this.addKind('UPDATE');
        const source = (body['selectStmt'] as AstNode | undefined)?.['SelectStmt'];
        const fromQuery = source !== undefined && !source['valuesLists'];
        const where = conflict['whereClause'] as AstNode | undefined;
        if (fromQuery && !(where && boundsRows(where, targetNames(relation)))) this.unboundedWrite = true;
      }
      const target = this.rangeItem(relation);
      this.inScope([target], () => this.fields(body, new Set(['relation', 'selectStmt', 'withClause'])));
    });
  }

  copy(body: AstObject): void {
    if (body['query']) {
      this.query(body['query'], 'sink');
      this.fields(body, new Set(['query']));
      return;
    }
    const relation = body['relation'] as AstObject | undefined;
    if (relation) {
      this.rangeVar(relation);
      if (!body['is_from']) {
        // COPY table TO sends whole rows in the copy stream, past column masking.
        const table = qualifiedName(relation);
        const columns = stringList(body['attlist']);
        for (const column of columns.length > 0 ? columns : ['*']) {
          this.columnUses.push({ table, column, direct: false });
        }
      }
    }
    this.fields(body, new Set(['relation', 'query', 'attlist']));
  }

  /**
   * Masking rules name columns as [schema.]table.column: renaming a column or its table, or
   * moving the table to another schema, would take the column out from under its rule's name
   * for every later statement's analysis. So it is a use of what it moves.
   */
  moveRelation(body: AstObject): void {
    const relation = body['relation'] as AstObject | undefined;
    if (!relation) return;
    const table = qualifiedName(relation);
    const type = String(body['renameType'] ?? body['objectType']);
    if (type === 'OBJECT_COLUMN' && typeof body['subname'] === 'string') {
      this.columnUses.push({ table, column: body['subname'], direct: false });
    } else if (relationObjectTypes.has(type)) {
      this.columnUses.push({ table, column: '*', direct: false });
    }
  }

  /** DROP TABLE/VIEW/… name their relations as name lists, not RangeVars. */
  dropObjects(body: AstObject): void {
    const relationTypes = [
      'OBJECT_TABLE',
      'OBJECT_VIEW',
      'OBJECT_MATVIEW',
      'OBJECT_FOREIGN_TABLE',
      'OBJECT_SEQUENCE',
    ];
    if (!relationTypes.includes(String(body['removeType']))) return;
    for (const object of (body['objects'] as AstNode[] | undefined) ?? []) {
      const names = stringList(object['List']?.['items']);
      if (names.length > 0) this.tables.add(names.slice(-2).join('.'));
    }
  }

  rangeVar(body: AstObject): void {
    this.tables.add(qualifiedName(body));
    const schema = body['schemaname'];
    if (valueCatalogs.has(String(body['relname'])) && (schema === undefined || schema === 'pg_catalog')) {
      // Statistics hold sampled values of every analysed column, masked ones included.
      this.columnUses.push(everyColumn);
    }
    if (body['alias']) this.value((body['alias'] as AstObject)['colnames']);
  }

  /**
   * Built-in functions of pg_catalog are known (functions.ts); any other function, and one that
   * runs SQL text or reads relations by name, may read any column the analysis never saw: it is
   * admin class and a use of every masked column. An unqualified name is taken to be the
   * built-in, which pg_catalog's implicit first place on search_path makes it.
   */
  funcCall(body: AstObject): void {
    const names = stringList(body['funcname']);
    const name = names.join('.');
    this.functions.add(name);
    const base = names.at(-1) ?? '';
    const schema = names.at(-2);
    const builtin = (schema === undefined || schema === 'pg_catalog') && builtinFunctions.has(base);
    const readsValues = (schema === undefined || schema === 'pg_catalog') && valueReadingFunctions.has(base);
    if (adminFunctions.has(base.toLowerCase())) this.classes.add('admin');
    if (builtin && writingFunctions.has(base)) this.classes.add('write');
    if (!builtin || readsValues) {
      this.classes.add('admin');
      this.columnUses.push(everyColumn);
    }
    const args = (body['args'] as AstNode[] | undefined) ?? [];
    if (base === 'set_config') {
      // set_config('role', …) is SET ROLE; a computed setting name could be anything.
      const setting = constString(args[0]);
      if (setting === undefined || identitySettings.has(setting.toLowerCase())) this.classes.add('admin');
      if (setting === undefined || setting.toLowerCase() === 'search_path') {
        const value = constString(args[1]);
        this.searchPath(value === undefined || demotesPgCatalog(value));
      }
    }
    if (base === 'count') {
      // count(*), count(t.*) and count(t) reveal nothing of the row.
      for (const arg of args) {
        const ref = arg['ColumnRef'];
        if (ref && (refShape(ref).star || this.wholeRow(ref))) continue;
        this.value(arg);
      }
      this.fields(body, new Set(['args', 'funcname']));
      return;
    }
    this.fields(body, new Set(['funcname']));
  }

  /**
   * A search_path that names another schema before pg_catalog makes unqualified function
   * names resolve there first, so a built-in's name no longer means the built-in: from then
   * on any call could run any code. Such a setting (or one that cannot be read) is treated
   * like a call of an unknown function.
   */
  searchPath(demotesCatalog: boolean): void {
    if (!demotesCatalog) return;
    this.classes.add('admin');
    this.columnUses.push(everyColumn);
  }

  /** USING and NATURAL compare columns as ON does: a use of each column compared, on both sides. */
  join(body: AstObject): void {
    const using = stringList(body['usingClause']);
    const natural = body['isNatural'] === true;
    for (const side of [body['larg'], body['rarg']]) {
      const items = this.fromItems([side]);
      // NATURAL compares every column the two sides share, which cannot be told here.
      if (natural)
        for (const item of items) this.columnUses.push({ table: item.table, column: '*', direct: false });
      for (const column of using)
        this.columnUses.push({ ...this.unqualifiedColumn(items, column), direct: false });
    }
    this.fields(body);
  }
}
