// The caches in front of the SQL analysis: an LRU of exact texts, and one of literal shapes, the
// fast path for a hot loop that sends the same query with new literal values (pgbench, ORMs).
// Analyses are frozen because the caches share them between callers.
import type { SqlAnalysis, SqlStatement } from './sql.ts';

/** Texts longer than this are always parsed: agents' ad-hoc queries, not a hot loop. */
const maxCachedText = 8 * 1024;

/**
 * The analysis of a text through the caches: the exact text first, then a text of the same
 * literal shape; otherwise analysed afresh and remembered.
 */
export function analyzeCached(text: string, analyze: (text: string) => SqlAnalysis): SqlAnalysis {
  if (text.length > maxCachedText) return freeze(analyze(text));
  const exact = exactCache.get(text);
  if (exact) return exact;
  const shape = literalShape(text);
  if (shape !== undefined) {
    const same = shapeCache.get(shape);
    // Not added to the exact cache: pgbench and ORMs send a new literal every time.
    if (same) return withText(same, ownText(text));
  }
  const analysis = freeze(analyze(text));
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

export function freeze(analysis: SqlAnalysis): SqlAnalysis {
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
