// Static analysis of SQL text with PostgreSQL's own parser (libpg_query, WASM): what each
// statement is, what it touches, and how it uses columns. Pure: no sockets, no Kubernetes.
// Anything the parser rejects is reported as ok:false and the caller denies it; nothing here
// guesses from text. The whole tree is walked generically, so a statement nested anywhere
// (CTE, subquery, EXPLAIN, PREPARE, SQL-standard function body) is found.
import { loadModule, parseSync, scanSync } from 'libpg-query';
import type { SqlClass, SqlStatementKind } from '../../api/v1alpha1.ts';
import { adminFunctions, builtinFunctions, valueReadingFunctions } from './functions.ts';

export interface ColumnUse {
  /** The table as written ('schema.table' or 'table'), resolved through aliases; undefined when it cannot be told. */
  table?: string;
  /** Column name, or '*' for a star or a whole-row reference. */
  column: string;
  /** true only for a bare column (or star) in the target list of a plain top-level SELECT. */
  direct: boolean;
}

export interface SqlStatement {
  /** The outermost statement's kind. */
  kind: SqlStatementKind;
  /** Every statement kind found anywhere inside, outer kind first, without repeats. */
  kinds: SqlStatementKind[];
  classes: SqlClass[];
  /** Relations as written: 'schema.table' or 'table', lower-cased unless quoted. */
  tables: string[];
  /** Called functions: lower-cased unless quoted, schema-qualified when written so. */
  functions: string[];
  /** An UPDATE, DELETE or MERGE (anywhere inside) that can touch every row, or a TRUNCATE. */
  unboundedWrite: boolean;
  /**
   * Whether running it may change how the server reads the SQL text that follows
   * (client_encoding, standard_conforming_strings): a SET of either, set_config, DO, CALL,
   * ALTER SYSTEM, or a function outside the built-ins (its body may call set_config).
   */
  changesReading: boolean;
  columnUses: ColumnUse[];
  /** This statement's own source text. */
  text: string;
  /** For PREPARE: the prepared statement, analysed as if it ran at top level. */
  prepared?: { name: string; inner: SqlStatement };
  /** For EXECUTE: the name of the prepared statement it runs. */
  executes?: string;
  /** For COPY: what the parse tree says it moves, where, and in which format. */
  copy?: SqlCopy;
}

export interface SqlCopy {
  direction: 'from' | 'to';
  /** stdio: the client's copy stream; file and program are on the server. */
  endpoint: 'stdio' | 'file' | 'program';
  /**
   * text and csv, from the options in any position and the legacy keywords (BINARY, WITH CSV);
   * binary also stands for any format the server would refuse or options naming several.
   */
  format: 'text' | 'csv' | 'binary';
  /** COPY table: the table as written; COPY (query): undefined. */
  relation?: string;
  /** The column list as written; empty for every column (or a query). */
  columns: string[];
}

export type SqlAnalysis =
  | { ok: true; statements: SqlStatement[] }
  | {
      ok: false;
      error: string;
      /** Set when the text does not parse: the parser's message and 1-based character position, as the server reports them. */
      syntax?: { message: string; position: number };
    };

/** Longer texts are refused rather than parsed: a policy decision, not a parser limit. */
export const maxSqlLength = 1 << 22;

let loading: Promise<void> | undefined;
let loaded = false;

/** Loads the WASM parser once; analyzeSql is synchronous afterwards. */
export function loadSqlParser(): Promise<void> {
  loading ??= loadModule().then(() => {
    loaded = true;
  });
  return loading;
}

export interface AnalyzeOptions {
  /** false: parse afresh, neither reading nor filling the caches (tests compare both paths). */
  cache?: boolean;
}

/**
 * The analysis of one query text. Results are frozen and shared between callers (they come
 * from a cache): read them, never mutate them.
 */
export function analyzeSql(text: string, options: AnalyzeOptions = {}): SqlAnalysis {
  if (!loaded) return { ok: false, error: 'SQL parser not loaded (call loadSqlParser first)' };
  if (text.length > maxSqlLength) {
    return { ok: false, error: `statement text longer than ${maxSqlLength} characters` };
  }
  if (text.includes('\0')) return { ok: false, error: 'statement text contains a NUL character' };
  // libpg_query refuses "" outright; PostgreSQL treats it as an empty query.
  if (text === '') return { ok: true, statements: [] };
  if (options.cache === false || text.length > maxCachedText) return freeze(parseAndAnalyze(text));
  const exact = exactCache.get(text);
  if (exact) return exact;
  const shape = literalShape(text);
  if (shape !== undefined) {
    const same = shapeCache.get(shape);
    // Not added to the exact cache: pgbench and ORMs send a new literal every time.
    if (same) return withText(same, ownText(text));
  }
  const analysis = freeze(parseAndAnalyze(text));
  // Failures are not cached: a walk that ran out of stack might succeed from a shallower one.
  if (!analysis.ok) return analysis;
  exactCache.set(text, analysis, text.length);
  if (shape !== undefined && literalIndependent(analysis) && analysis.statements[0]!.text === ownText(text)) {
    shapeCache.set(shape, analysis, shape.length + text.length);
  }
  return analysis;
}

/** Empties the analysis caches (benchmarks measure a cold parse with it). */
export function clearSqlCache(): void {
  exactCache.clear();
  shapeCache.clear();
}

function parseAndAnalyze(text: string): SqlAnalysis {
  let tree: { stmts?: RawStmt[] };
  try {
    tree = parseSync(text) as { stmts?: RawStmt[] };
  } catch (error) {
    const details = (error as { sqlDetails?: { message: string; cursorPosition: number } }).sqlDetails;
    return {
      ok: false,
      error: `syntax error: ${errorMessage(error)}`,
      // libpg_query reports the server's cursor position less one.
      ...(details && { syntax: { message: details.message, position: details.cursorPosition + 1 } }),
    };
  }
  try {
    const source = new SourceText(text);
    const statements = (tree.stmts ?? []).map((raw) => {
      const start = raw.stmt_location ?? 0;
      const own = source.slice(start, raw.stmt_len ? start + raw.stmt_len : undefined).trim();
      return analyzeStatement(raw.stmt as AstNode, own);
    });
    return { ok: true, statements };
  } catch (error) {
    // A tree too deep for the walker (RangeError) or a shape it does not know: refuse.
    return { ok: false, error: `cannot analyze statement: ${errorMessage(error)}` };
  }
}

/** The name a PREPARE defines, or undefined for any other statement. */
export function preparedStatementName(stmt: SqlStatement): string | undefined {
  return stmt.prepared?.name;
}

// ---------------------------------------------------------------------------------------
// Caches and the literal fast path

/** Texts longer than this are always parsed: agents' ad-hoc queries, not a hot loop. */
const maxCachedText = 8 * 1024;

/** A bounded LRU: a Map keeps insertion order, so a hit moves to the back and eviction takes the front. */
class LruCache<V> {
  readonly maxEntries: number;
  /** Bound on the summed costs (about the characters held), so long texts cannot hoard memory. */
  readonly maxCost: number;
  #entries = new Map<string, { value: V; cost: number }>();
  #cost = 0;

  constructor(maxEntries: number, maxCost: number) {
    this.maxEntries = maxEntries;
    this.maxCost = maxCost;
  }

  get(key: string): V | undefined {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    this.#entries.delete(key);
    this.#entries.set(key, entry);
    return entry.value;
  }

  set(key: string, value: V, cost: number): void {
    const old = this.#entries.get(key);
    if (old) {
      this.#cost -= old.cost;
      this.#entries.delete(key);
    }
    this.#entries.set(key, { value, cost });
    this.#cost += cost;
    while (this.#entries.size > this.maxEntries || this.#cost > this.maxCost) {
      const [oldest, entry] = this.#entries.entries().next().value!;
      this.#entries.delete(oldest);
      this.#cost -= entry.cost;
    }
  }

  clear(): void {
    this.#entries.clear();
    this.#cost = 0;
  }
}

// Costs count the key and the statement texts held (about twice the text): 2 × 4 Mi characters.
const exactCache = new LruCache<SqlAnalysis>(2_000, 4 << 20);
const shapeCache = new LruCache<SqlAnalysis>(2_000, 4 << 20);

function freeze(analysis: SqlAnalysis): SqlAnalysis {
  if (analysis.ok) {
    for (const statement of analysis.statements) freezeStatement(statement);
    Object.freeze(analysis.statements);
  }
  return Object.freeze(analysis);
}

function freezeStatement(statement: SqlStatement): void {
  Object.freeze(statement.kinds);
  Object.freeze(statement.classes);
  Object.freeze(statement.tables);
  Object.freeze(statement.functions);
  for (const use of statement.columnUses) Object.freeze(use);
  Object.freeze(statement.columnUses);
  if (statement.prepared) {
    freezeStatement(statement.prepared.inner);
    Object.freeze(statement.prepared);
  }
  if (statement.copy) {
    Object.freeze(statement.copy.columns);
    Object.freeze(statement.copy);
  }
  Object.freeze(statement);
}

/** A cached single-statement analysis for a text that differs only in literal values. */
function withText(analysis: SqlAnalysis, text: string): SqlAnalysis {
  if (!analysis.ok) return analysis;
  const statement = Object.freeze({ ...analysis.statements[0]!, text });
  return Object.freeze({ ok: true as const, statements: Object.freeze([statement]) as SqlStatement[] });
}

/** A lone statement's own text: what the parser's location and length give for it. */
function ownText(text: string): string {
  const trimmed = text.trim();
  return trimmed.endsWith(';') ? trimmed.slice(0, -1).trim() : trimmed;
}

/**
 * Whether an analysis holds for every text of the same literal shape. It does for one plain
 * read-only SELECT that calls no function: the grammar never picks a different production for
 * a different value of a literal in the same place (the exception, a precision such as
 * float(54) or char(99999999999), is kept verbatim by literalShape), and the walk reads literal
 * values only to judge a write's WHERE (1=1, x LIKE '%' make it unbounded) and the setting
 * named by set_config ('role' is admin, 'search_path' is not). Everything else is excluded:
 * writes, SELECT … INTO, function calls, several statements.
 */
function literalIndependent(analysis: SqlAnalysis): boolean {
  if (!analysis.ok || analysis.statements.length !== 1) return false;
  const s = analysis.statements[0]!;
  return (
    s.kinds.length === 1 &&
    s.kinds[0] === 'SELECT' &&
    s.classes.every((cls) => cls === 'read') &&
    s.functions.length === 0 &&
    !s.unboundedWrite &&
    s.prepared === undefined &&
    s.executes === undefined
  );
}

const isDigit = (ch: number) => ch >= 48 && ch <= 57;
const isIdentStart = (ch: number) => (ch >= 97 && ch <= 122) || (ch >= 65 && ch <= 90) || ch === 95;
const isIdentChar = (ch: number) => isIdentStart(ch) || isDigit(ch);
const isLowerIdentChar = (ch: number) => (ch >= 97 && ch <= 122) || isDigit(ch) || ch === 95;
const isSpace = (ch: number) => ch === 32 || ch === 10 || ch === 9 || ch === 13;
/** Printable ASCII but '$' (dollar quotes, $n parameters) and '\' (escapes). */
const isPlain = (ch: number) => ch >= 33 && ch <= 126 && ch !== 36 && ch !== 92;
const isCommentStart = (ch: number, next: number) => (ch === 45 && next === 45) || (ch === 47 && next === 42);

/**
 * The text with each numeric literal replaced by $i (integer) or $d (decimal) and each plain
 * string literal by $s, everything else verbatim; undefined when the text has no literal or
 * holds anything this small lexer does not fully understand (then the text is parsed):
 * characters outside printable ASCII (tab, newline, CR aside); backslashes (escapes, and
 * strings whose end depends on standard_conforming_strings); dollar signs (dollar quotes,
 * $n parameters); comment markers, even inside strings; E'', U&'', B'', X'', N'' (a quote
 * right after a letter, digit or &); doubled quotes; adjacent strings (PostgreSQL joins
 * them across a newline); quoted identifiers other than [a-z0-9_]+; numbers with exponents,
 * underscores, hex or a leading dot; any ';' but one at the end. '$' never survives in a
 * shape, so a shape cannot collide with a verbatim text. A number right after '(' or ',' is
 * kept verbatim: it may be a type's precision, where the grammar takes only some values
 * (float(54) is a syntax error), or a position in GROUP BY 1, 2 or DISTINCT ON (2); so is one
 * right after BY (ORDER BY 2), which names an output column.
 */
export function literalShape(text: string): string | undefined {
  const n = text.length;
  let shape = '';
  let copied = 0;
  let literals = 0;
  /** The previous character that is not white space. */
  let last = 0;
  let ended = false;
  let afterBy = false;
  for (let i = 0; i < n; ) {
    const ch = text.charCodeAt(i);
    if (isSpace(ch)) {
      i++;
      continue;
    }
    if (ended || !isPlain(ch)) return undefined;
    const before = i > 0 ? text.charCodeAt(i - 1) : 0;
    const previousWasBy = afterBy;
    afterBy = false;
    if (isIdentStart(ch)) {
      const start = i;
      i++;
      while (i < n && isIdentChar(text.charCodeAt(i))) i++;
      afterBy = i - start === 2 && text.slice(start, i).toLowerCase() === 'by';
      last = 97;
    } else if (ch === 39) {
      if (isIdentChar(before) || before === 38 || before === 34) return undefined;
      let close = i + 1;
      for (; close < n; close++) {
        const c = text.charCodeAt(close);
        if (c === 39) break;
        if (!isPlain(c) && !isSpace(c)) return undefined;
        // Not a comment inside a string, but nothing here depends on knowing that.
        if (isCommentStart(c, text.charCodeAt(close + 1))) return undefined;
      }
      if (close === n) return undefined;
      const after = text.charCodeAt(close + 1);
      if (after === 39 || after === 34 || isIdentChar(after)) return undefined;
      let k = close + 1;
      while (k < n && isSpace(text.charCodeAt(k))) k++;
      if (text.charCodeAt(k) === 39) return undefined;
      shape += `${text.slice(copied, i)}$s`;
      copied = close + 1;
      literals++;
      i = close + 1;
      last = 39;
    } else if (isDigit(ch)) {
      if (before === 46 || before === 34) return undefined;
      let j = i + 1;
      while (j < n && isDigit(text.charCodeAt(j))) j++;
      let decimal = false;
      if (text.charCodeAt(j) === 46) {
        if (!isDigit(text.charCodeAt(j + 1))) return undefined;
        decimal = true;
        j++;
        while (j < n && isDigit(text.charCodeAt(j))) j++;
      }
      const after = text.charCodeAt(j);
      if (isIdentChar(after) || after === 46 || after === 34 || after === 39) return undefined;
      // After BY a number names an output column by position (ORDER BY 2): kept verbatim.
      if (last !== 40 && last !== 44 && !previousWasBy) {
        shape += `${text.slice(copied, i)}${decimal ? '$d' : '$i'}`;
        copied = j;
        literals++;
      }
      i = j;
      last = 48;
    } else if (ch === 34) {
      // "identifier": lower-case letters, digits and underscores only, not after U&.
      if (isIdentChar(before) || before === 38 || before === 34) return undefined;
      let j = i + 1;
      while (j < n && isLowerIdentChar(text.charCodeAt(j))) j++;
      if (j === i + 1 || text.charCodeAt(j) !== 34) return undefined;
      i = j + 1;
      last = 34;
    } else {
      if (isCommentStart(ch, text.charCodeAt(i + 1))) return undefined;
      if (ch === 59) ended = true;
      last = ch;
      i++;
    }
  }
  if (literals === 0) return undefined;
  return shape + text.slice(copied);
}

// ---------------------------------------------------------------------------------------
// Statement classification

type Classified = { kind: SqlStatementKind; classes: SqlClass[] };
const c = (kind: SqlStatementKind, ...classes: SqlClass[]): Classified => ({ kind, classes });

/** Statement node types whose kind and classes do not depend on their fields. */
const fixedKinds: Record<string, Classified> = {
  InsertStmt: c('INSERT', 'write'),
  UpdateStmt: c('UPDATE', 'write'),
  DeleteStmt: c('DELETE', 'write'),
  MergeStmt: c('MERGE', 'write'),
  TruncateStmt: c('TRUNCATE', 'write', 'ddl'),
  // Procedures may write anything; their bodies are not visible here.
  CallStmt: c('CALL', 'write'),
  DoStmt: c('DO', 'admin'),
  CommentStmt: c('COMMENT', 'ddl'),
  SecLabelStmt: c('SECURITY LABEL', 'dcl'),
  ReassignOwnedStmt: c('REASSIGN', 'dcl'),
  ImportForeignSchemaStmt: c('IMPORT', 'ddl'),
  VariableShowStmt: c('SHOW', 'read'),
  ExecuteStmt: c('EXECUTE'),
  DeallocateStmt: c('DEALLOCATE'),
  PrepareStmt: c('PREPARE'),
  // Strong lock modes stall production as surely as a write.
  LockStmt: c('LOCK', 'write'),
  ClusterStmt: c('CLUSTER', 'admin'),
  ReindexStmt: c('REINDEX', 'admin'),
  CheckPointStmt: c('CHECKPOINT', 'admin'),
  RefreshMatViewStmt: c('REFRESH', 'write'),
  ListenStmt: c('LISTEN'),
  UnlistenStmt: c('UNLISTEN'),
  NotifyStmt: c('NOTIFY'),
  DiscardStmt: c('DISCARD'),
  DeclareCursorStmt: c('DECLARE', 'read'),
  ClosePortalStmt: c('CLOSE'),
  LoadStmt: c('LOAD', 'admin'),
  ConstraintsSetStmt: c('SET'),
  // CREATE
  CreateStmt: c('CREATE', 'ddl'),
  CreateSchemaStmt: c('CREATE', 'ddl'),
  CreateSeqStmt: c('CREATE', 'ddl'),
  CreateDomainStmt: c('CREATE', 'ddl'),
  CompositeTypeStmt: c('CREATE', 'ddl'),
  CreateEnumStmt: c('CREATE', 'ddl'),
  CreateRangeStmt: c('CREATE', 'ddl'),
  DefineStmt: c('CREATE', 'ddl'),
  ViewStmt: c('CREATE', 'ddl'),
  IndexStmt: c('CREATE', 'ddl'),
  RuleStmt: c('CREATE', 'ddl'),
  CreateTrigStmt: c('CREATE', 'ddl'),
  CreateStatsStmt: c('CREATE', 'ddl'),
  CreateCastStmt: c('CREATE', 'ddl'),
  CreateConversionStmt: c('CREATE', 'ddl'),
  CreateOpClassStmt: c('CREATE', 'ddl'),
  CreateOpFamilyStmt: c('CREATE', 'ddl'),
  CreateTransformStmt: c('CREATE', 'ddl'),
  CreatedbStmt: c('CREATE', 'ddl'),
  CreatePublicationStmt: c('CREATE', 'ddl'),
  CreateForeignTableStmt: c('CREATE', 'ddl'),
  CreateFunctionStmt: c('CREATE', 'ddl', 'admin'),
  CreateExtensionStmt: c('CREATE', 'ddl', 'admin'),
  CreateEventTrigStmt: c('CREATE', 'ddl', 'admin'),
  CreatePLangStmt: c('CREATE', 'ddl', 'admin'),
  CreateAmStmt: c('CREATE', 'ddl', 'admin'),
  CreateFdwStmt: c('CREATE', 'ddl', 'admin'),
  CreateForeignServerStmt: c('CREATE', 'ddl', 'admin'),
  CreateUserMappingStmt: c('CREATE', 'dcl', 'admin'),
  CreateSubscriptionStmt: c('CREATE', 'ddl', 'admin'),
  CreateTableSpaceStmt: c('CREATE', 'ddl', 'admin'),
  CreateRoleStmt: c('CREATE', 'dcl'),
  CreatePolicyStmt: c('CREATE', 'ddl', 'dcl'),
  // ALTER
  AlterTableStmt: c('ALTER', 'ddl'),
  AlterTableMoveAllStmt: c('ALTER', 'ddl'),
  ReplicaIdentityStmt: c('ALTER', 'ddl'),
  AlterCollationStmt: c('ALTER', 'ddl'),
  AlterDomainStmt: c('ALTER', 'ddl'),
  AlterSeqStmt: c('ALTER', 'ddl'),
  AlterEnumStmt: c('ALTER', 'ddl'),
  AlterTypeStmt: c('ALTER', 'ddl'),
  AlterOperatorStmt: c('ALTER', 'ddl'),
  AlterOpFamilyStmt: c('ALTER', 'ddl'),
  AlterStatsStmt: c('ALTER', 'ddl'),
  AlterObjectDependsStmt: c('ALTER', 'ddl'),
  AlterObjectSchemaStmt: c('ALTER', 'ddl'),
  AlterTSDictionaryStmt: c('ALTER', 'ddl'),
  AlterTSConfigurationStmt: c('ALTER', 'ddl'),
  AlterDatabaseStmt: c('ALTER', 'ddl'),
  AlterDatabaseRefreshCollStmt: c('ALTER', 'ddl'),
  AlterPublicationStmt: c('ALTER', 'ddl'),
  AlterForeignServerStmt: c('ALTER', 'ddl', 'admin'),
  AlterFdwStmt: c('ALTER', 'ddl', 'admin'),
  AlterUserMappingStmt: c('ALTER', 'dcl', 'admin'),
  AlterSubscriptionStmt: c('ALTER', 'ddl', 'admin'),
  AlterTableSpaceOptionsStmt: c('ALTER', 'ddl', 'admin'),
  AlterExtensionStmt: c('ALTER', 'ddl', 'admin'),
  AlterExtensionContentsStmt: c('ALTER', 'ddl', 'admin'),
  AlterEventTrigStmt: c('ALTER', 'ddl', 'admin'),
  AlterFunctionStmt: c('ALTER', 'ddl', 'admin'),
  AlterDatabaseSetStmt: c('ALTER', 'ddl', 'admin'),
  AlterSystemStmt: c('ALTER', 'admin'),
  RenameStmt: c('ALTER', 'ddl'),
  AlterOwnerStmt: c('ALTER', 'ddl', 'dcl'),
  AlterPolicyStmt: c('ALTER', 'ddl', 'dcl'),
  AlterDefaultPrivilegesStmt: c('ALTER', 'dcl'),
  AlterRoleStmt: c('ALTER', 'dcl'),
  AlterRoleSetStmt: c('ALTER', 'dcl', 'admin'),
  // DROP
  DropStmt: c('DROP', 'ddl'),
  DropdbStmt: c('DROP', 'ddl'),
  DropTableSpaceStmt: c('DROP', 'ddl', 'admin'),
  DropUserMappingStmt: c('DROP', 'dcl', 'admin'),
  DropSubscriptionStmt: c('DROP', 'ddl', 'admin'),
  DropRoleStmt: c('DROP', 'dcl'),
  DropOwnedStmt: c('DROP', 'ddl', 'dcl'),
};

/** Settings that change who the session is, or switch off triggers and rules. */
const identitySettings = new Set(['role', 'session_authorization', 'session_replication_role']);

const relationObjectTypes = new Set([
  'OBJECT_TABLE',
  'OBJECT_VIEW',
  'OBJECT_MATVIEW',
  'OBJECT_FOREIGN_TABLE',
]);

/** What a MERGE arm does, by its command type. */
const armKinds: Record<string, SqlStatementKind> = {
  CMD_UPDATE: 'UPDATE',
  CMD_DELETE: 'DELETE',
  CMD_INSERT: 'INSERT',
};

const transactionKinds: Record<string, Classified> = {
  TRANS_STMT_BEGIN: c('BEGIN'),
  TRANS_STMT_START: c('BEGIN'),
  TRANS_STMT_COMMIT: c('COMMIT'),
  TRANS_STMT_ROLLBACK: c('ROLLBACK'),
  TRANS_STMT_SAVEPOINT: c('SAVEPOINT'),
  TRANS_STMT_RELEASE: c('SAVEPOINT'),
  TRANS_STMT_ROLLBACK_TO: c('ROLLBACK'),
  // Two-phase commit leaves transactions (and their locks) behind the session.
  TRANS_STMT_PREPARE: c('COMMIT', 'admin'),
  TRANS_STMT_COMMIT_PREPARED: c('COMMIT', 'admin'),
  TRANS_STMT_ROLLBACK_PREPARED: c('ROLLBACK', 'admin'),
};

function classify(type: string, body: AstObject): Classified {
  const fixed = fixedKinds[type];
  if (fixed) return fixed;
  switch (type) {
    case 'SelectStmt':
      return body['intoClause'] ? c('SELECT', 'read', 'write', 'ddl') : c('SELECT', 'read');
    case 'CreateTableAsStmt':
      return c('CREATE', 'write', 'ddl');
    case 'ExplainStmt':
      return c('EXPLAIN', 'read');
    case 'CopyStmt': {
      const classes: SqlClass[] = [body['is_from'] ? 'write' : 'read'];
      // PROGRAM runs a shell command; a file name reads or writes the server's filesystem.
      if (body['is_program'] || typeof body['filename'] === 'string') classes.push('admin');
      return { kind: 'COPY', classes };
    }
    case 'VariableSetStmt': {
      const kind = body['kind'] === 'VAR_RESET' || body['kind'] === 'VAR_RESET_ALL' ? 'RESET' : 'SET';
      const name = typeof body['name'] === 'string' ? body['name'].toLowerCase() : '';
      return identitySettings.has(name) ? c(kind, 'admin') : c(kind);
    }
    case 'TransactionStmt':
      return transactionKinds[String(body['kind'])] ?? c('BEGIN');
    case 'GrantStmt':
    case 'GrantRoleStmt':
      return body['is_grant'] ? c('GRANT', 'dcl') : c('REVOKE', 'dcl');
    case 'VacuumStmt':
      return body['is_vacuumcmd'] ? c('VACUUM', 'admin') : c('ANALYZE', 'admin');
    case 'FetchStmt':
      return body['ismove'] ? c('FETCH') : c('FETCH', 'read');
    default:
      throw new Error(`unsupported statement type ${type}`);
  }
}

// ---------------------------------------------------------------------------------------
// The walk

type AstObject = Record<string, unknown>;
type AstNode = Record<string, AstObject>;
interface RawStmt {
  stmt: unknown;
  stmt_location?: number;
  stmt_len?: number;
}

/** A FROM item visible to column references: its reference name and the table behind it. */
interface RangeItem {
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

/** Settings that decide how the server reads SQL text (the enforcer reads it as UTF-8, standard strings). */
const readingSettings: ReadonlySet<string> = new Set(['client_encoding', 'standard_conforming_strings']);

class Walk {
  kinds: SqlStatementKind[] = [];
  classes = new Set<SqlClass>();
  tables = new Set<string>();
  functions = new Set<string>();
  unboundedWrite = false;
  changesReading = false;
  columnUses: ColumnUse[] = [];
  /** Innermost last. */
  scopes: RangeItem[][] = [];
  /** CTE names in scope, innermost last: each one's alias column list, and whether a star passes its columns on. */
  ctes: Map<string, { colnames: string[]; star: boolean }>[] = [];

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
        this.changesReading = true;
        this.columnUses.push(everyColumn);
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
      case 'AlterSystemStmt':
        this.changesReading = true;
        this.fields(body);
        return;
      case 'VariableSetStmt':
        if (readingSettings.has(String(body['name']).toLowerCase())) this.changesReading = true;
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
        this.changesReading = true;
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

  inScope<T>(items: RangeItem[], walk: () => T): T {
    this.scopes.push(items);
    try {
      return walk();
    } finally {
      this.scopes.pop();
    }
  }

  select(body: AstObject, role: Role, exists = false): void {
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
    if (!builtin || base === 'set_config' || base === 'pg_reload_conf') this.changesReading = true;
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

function analyzeStatement(stmt: AstNode, text: string): SqlStatement {
  const [type] = Object.keys(stmt);
  if (!type) throw new Error('empty statement node');
  const body = stmt[type]!;
  const walk = new Walk();
  walk.statement(type, body, 'top');
  const statement: SqlStatement = {
    kind: walk.kinds[0]!,
    kinds: walk.kinds,
    classes: [...walk.classes],
    tables: [...walk.tables],
    functions: [...walk.functions],
    unboundedWrite: walk.unboundedWrite,
    changesReading: walk.changesReading,
    columnUses: walk.columnUses,
    text,
  };
  if (type === 'PrepareStmt') {
    const name = String(body['name']);
    const query = body['query'] as AstNode;
    const inner = analyzeStatement(query, preparedBody(text) ?? text);
    statement.prepared = { name, inner };
  } else if (type === 'ExecuteStmt') {
    statement.executes = String(body['name']);
  } else if (type === 'CopyStmt') {
    statement.copy = copyOf(body);
  }
  return statement;
}

/** A COPY as the server reads it: options in any position, legacy keywords included. */
function copyOf(body: AstObject): SqlCopy {
  const formats = new Set<string>();
  for (const option of (body['options'] as AstNode[] | undefined) ?? []) {
    const element = option['DefElem'];
    if (element?.['defname'] !== 'format') continue;
    // FORMAT takes a name or a string, compared as written ('CSV' is refused by the server).
    const arg = element['arg'] as AstNode | undefined;
    formats.add(String(arg?.['String']?.['sval'] ?? ''));
  }
  const [only] = formats;
  const format =
    formats.size === 0 ? 'text' : formats.size === 1 && (only === 'text' || only === 'csv') ? only : 'binary';
  const relation = body['relation'] as AstObject | undefined;
  return {
    direction: body['is_from'] ? 'from' : 'to',
    endpoint: body['is_program'] ? 'program' : typeof body['filename'] === 'string' ? 'file' : 'stdio',
    format,
    ...(relation && { relation: qualifiedName(relation) }),
    columns: stringList(body['attlist']),
  };
}

/** The text after PREPARE name [(types)] AS, found with the real scanner. */
function preparedBody(text: string): string | undefined {
  const source = new SourceText(text);
  let depth = 0;
  for (const token of scanSync(text).tokens) {
    if (token.text === '(') depth++;
    else if (token.text === ')') depth--;
    else if (depth === 0 && token.keywordKind !== 0 && token.text.toLowerCase() === 'as')
      return source.slice(token.end).trim();
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------
// Unbounded writes

/**
 * Whether a WHERE (or MERGE ON) clause limits which rows of the target are touched. It does
 * not when it is always true (constants, TRUE, 1=1, 'a'='a', x = x, x LIKE '%', x IS NULL OR
 * x IS NOT NULL, any OR arm that is always true), or when it never refers to the target
 * table's columns (then it is all or nothing: WHERE now() > '2000-01-01', WHERE u.x = 1 in
 * DELETE … USING u, WHERE EXISTS (SELECT 1 FROM other)). WHERE CURRENT OF bounds.
 */
function boundsRows(where: AstNode, names: ReadonlySet<string>): boolean {
  if (truth(where) === true) return false;
  return refersToTarget(where, names, false);
}

function targetNames(relation: AstObject): Set<string> {
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

// ---------------------------------------------------------------------------------------
// Small helpers

/**
 * Whether a query has a star in a target list anywhere inside: a star in a subquery or CTE
 * passes the columns on unrecorded (the outer query names them), so renaming them by an alias
 * column list hides which column is which.
 */
function hasStarTarget(value: unknown): boolean {
  if (Array.isArray(value)) return value.some(hasStarTarget);
  if (value === null || typeof value !== 'object') return false;
  const object = value as AstObject;
  const ref = ((object['ResTarget'] as AstObject | undefined)?.['val'] as AstNode | undefined)?.['ColumnRef'];
  if (ref && refShape(ref).star) return true;
  for (const key in object) if (hasStarTarget(object[key])) return true;
  return false;
}

function refShape(ref: AstObject): { names: string[]; star: boolean } {
  const fields = (ref['fields'] as AstNode[] | undefined) ?? [];
  const star = fields.length > 0 && 'A_Star' in fields[fields.length - 1]!;
  return { names: stringList(star ? fields.slice(0, -1) : fields), star };
}

/** The sval of each String node in a list. */
function stringList(value: unknown): string[] {
  if (!Array.isArray(value)) return [];
  const out: string[] = [];
  for (const item of value as AstNode[]) {
    const s = item?.['String']?.['sval'];
    if (typeof s === 'string') out.push(s);
  }
  return out;
}

/**
 * Whether a search_path value (as SET, set_config or a startup option give it) names another
 * schema before pg_catalog, so that built-in function names may resolve to other functions.
 */
export function demotesPgCatalog(searchPath: string): boolean {
  return splitSearchPath(searchPath).indexOf('pg_catalog') > 0;
}

/** A search_path string as the server splits it: quoted names as written, others lower-cased. */
function splitSearchPath(value: string): string[] {
  return value.split(',').map((part) => {
    const name = part.trim();
    return name.startsWith('"') && name.endsWith('"') && name.length >= 2
      ? name.slice(1, -1).replaceAll('""', '"')
      : name.toLowerCase();
  });
}

function constString(node: AstNode | undefined): string | undefined {
  const k = constant(node);
  return typeof k?.value === 'string' ? k.value : undefined;
}

function qualifiedName(rangeVar: AstObject): string {
  const relname = String(rangeVar['relname']);
  const schema = rangeVar['schemaname'];
  return typeof schema === 'string' ? `${schema}.${relname}` : relname;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** libpg_query reports byte offsets into the UTF-8 text. */
class SourceText {
  readonly text: string;
  readonly bytes: Buffer | undefined;
  constructor(text: string) {
    this.text = text;
    const length = Buffer.byteLength(text);
    this.bytes = length === text.length ? undefined : Buffer.from(text);
  }
  slice(start: number, end?: number): string {
    if (!this.bytes) return this.text.slice(start, end);
    return this.bytes.subarray(start, end).toString('utf8');
  }
}
