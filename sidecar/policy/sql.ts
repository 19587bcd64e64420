// Static analysis of SQL text with PostgreSQL's own parser (libpg_query, WASM): what each
// statement is, what it touches, and how it uses columns. Pure: no sockets, no Kubernetes.
// Anything the parser rejects is reported as ok:false and the caller denies it; nothing here
// guesses from text. The whole tree is walked generically, so a statement nested anywhere
// (CTE, subquery, EXPLAIN, PREPARE, SQL-standard function body) is found.
//
// This file is the entry and the analysis of one statement. Beside it: sql-walk.ts (the walk of
// the tree), sql-columns.ts (which table a column reference names), sql-kinds.ts (statement
// kinds and classes), sql-where.ts (whether a write's WHERE bounds rows), sql-cache.ts (the
// caches and the literal-shape fast path), sql-tree.ts and sql-text.ts (small readers).
import { loadModule, parseSync, scanSync } from 'libpg-query';
import type { SqlClass, SqlStatementKind } from '../../api/names.ts';
import { analyzeCached, freeze } from './sql-cache.ts';
import { SourceText } from './sql-text.ts';
import { type AstNode, type AstObject, qualifiedName, stringList } from './sql-tree.ts';
import { Walk } from './sql-walk.ts';

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
  if (options.cache === false) return freeze(parseAndAnalyze(text));
  return analyzeCached(text, parseAndAnalyze);
}

interface RawStmt {
  stmt: unknown;
  stmt_location?: number;
  stmt_len?: number;
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
    columnUses: walk.columnUses,
    text,
  };
  if (type === 'PrepareStmt') {
    const name = String(body['name']);
    const query = body['query'] as AstNode;
    const inner = analyzeStatement(query, preparedBody(text) ?? text);
    statement.prepared = { name, inner };
  } else if (type === 'CopyStmt') {
    statement.copy = copyOf(body);
  }
  const executes = executedName(stmt);
  if (executes !== undefined) statement.executes = executes;
  return statement;
}

/**
 * The prepared statement a statement runs: EXECUTE name at top level, or wrapped
 * (EXPLAIN ANALYZE EXECUTE name, CREATE TABLE … AS EXECUTE name), found at any depth.
 */
function executedName(node: unknown): string | undefined {
  if (Array.isArray(node)) {
    for (const item of node) {
      const found = executedName(item);
      if (found !== undefined) return found;
    }
    return undefined;
  }
  if (node === null || typeof node !== 'object') return undefined;
  const execute = (node as AstObject)['ExecuteStmt'] as AstObject | undefined;
  if (execute) return String(execute['name']);
  for (const value of Object.values(node)) {
    const found = executedName(value);
    if (found !== undefined) return found;
  }
  return undefined;
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

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
