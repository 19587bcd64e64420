// Resolves result columns to table columns (RowDescription carries only table OID and
// attribute number) over a side connection with the same held credential.
//
// Views and materialized views report their own OID, so a view over a masked column would
// escape a column rule. For them the enforcer follows the column's lineage: it describes the
// view's definition (pg_get_viewdef) on the side connection, and the server's RowDescription
// names the base table column behind each view column, recursively. A view column the server
// cannot trace (an expression) is treated as possibly any column the view depends on
// (pg_depend), so a masked column inside an expression stays masked.
//
// A partition or an inheritance child holds rows of its ancestors under its own name and OID,
// with their columns by name, and a read of a parent returns its descendants' rows: a column
// carries the identity of the same-named column of every table it inherits from or that
// inherits from it, so a rule on the parent's column covers the child read directly, and one on
// a child's column covers the parent's.
//
// Answers are cached briefly: a table is looked up again after ttlMs, when an attribute number
// is new to the cache, and after the session itself changes the schema (invalidate()), so a
// renamed or added column cannot keep an old identity for long.
import type { Socket } from 'node:net';
import { FrameReader, maxServerMessageLength } from './frames.ts';
import {
  BodyReader,
  decodeFields,
  decodeRowDescription,
  describe,
  parse,
  query,
  sync,
  terminate,
} from './messages.ts';
import type { ColumnRef } from './policy.ts';
import { connectUpstream, type UpstreamTarget } from './upstream.ts';

interface Relation {
  loaded: number;
  columns: Map<number, ColumnRef>;
  /** View column → the column it shows, when the server can tell. */
  lineage?: Map<number, { tableOid: number; attnum: number }>;
  /** Every table column the view's definition depends on. */
  depends?: { tableOid: number; attnum: number }[];
  /** The tables it inherits from and those that inherit from it (partitions too), transitively. */
  kin: { schema: string; table: string }[];
}

interface RelationName {
  loaded: number;
  /** Every relation the name may mean (none: no relation by that name). */
  relations: { oid: number; kind: string; kin: { schema: string; table: string }[] }[];
}

/** `select` over kin(rel, other): each relation in `relations` (SQL) with its ancestors and descendants. */
const withKin = (relations: string, select: string): string =>
  'WITH RECURSIVE up(rel, other) AS (' +
  `SELECT i.inhrelid, i.inhparent FROM pg_catalog.pg_inherits i WHERE i.inhrelid IN (${relations}) ` +
  'UNION SELECT up.rel, i.inhparent FROM up JOIN pg_catalog.pg_inherits i ON i.inhrelid = up.other), ' +
  'down(rel, other) AS (' +
  `SELECT i.inhparent, i.inhrelid FROM pg_catalog.pg_inherits i WHERE i.inhparent IN (${relations}) ` +
  'UNION SELECT down.rel, i.inhrelid FROM down JOIN pg_catalog.pg_inherits i ON i.inhparent = down.other), ' +
  'kin(rel, other) AS (SELECT rel, other FROM up UNION SELECT rel, other FROM down) ' +
  select;

/** Kin rows as JSON [[schema, table], …] (null: none). */
function kinList(json: string | null | undefined): { schema: string; table: string }[] {
  if (!json) return [];
  return (JSON.parse(json) as [string, string][]).map(([schema, table]) => ({ schema, table }));
}

const maxViewDepth = 8;

export class Catalog {
  private readonly target: UpstreamTarget;
  private socket: Socket | undefined;
  private reader: FrameReader | undefined;
  private chain: Promise<unknown> = Promise.resolve();
  private readonly ttlMs: number;
  private readonly relations = new Map<number, Relation>();
  /** Relation names as SQL writes them → OID (0: none) and relkind, looked up at `loaded`. */
  private readonly names = new Map<string, RelationName>();

  constructor(target: UpstreamTarget, options: { ttlMs?: number } = {}) {
    this.target = target;
    this.ttlMs = options.ttlMs ?? 5000;
  }

  /** Whether (table OID, attnum) must be looked up before refs() can answer for it. */
  needs(tableOid: number, attnum: number): boolean {
    if (tableOid === 0 || attnum <= 0) return false;
    const entry = this.relations.get(tableOid);
    return !entry || Date.now() - entry.loaded > this.ttlMs || !entry.columns.has(attnum);
  }

  invalidate(): void {
    this.relations.clear();
    this.names.clear();
  }

  /**
   * Whether these names are known, freshly, to name no view and nothing that inherits: then
   * columnsBehind has nothing to add.
   */
  namesStandAlone(names: string[]): boolean {
    const now = Date.now();
    return names.every((name) => {
      const entry = this.names.get(name);
      return (
        entry !== undefined &&
        now - entry.loaded <= this.ttlMs &&
        !entry.relations.some((r) => r.kind === 'v' || r.kind === 'm' || r.kin.length > 0)
      );
    });
  }

  /**
   * The table columns behind a column of a relation named in SQL: for a view or materialized
   * view, what it shows (every column of the view for '*' or a name it does not have), through
   * nested views; for a table with kin (partitions, inheritance), the same column of each.
   * Undefined when the name is neither. A qualified name is the relation it names; an
   * unqualified one may be any relation of that name, in any schema, since the client's
   * search_path (which it may set) decides which one the server reads.
   */
  async columnsBehind(name: string, column: string): Promise<ColumnRef[] | undefined> {
    const behind: ColumnRef[] = [];
    let any = false;
    for (const relation of (await this.relationNamed(name)).relations) {
      const refs = await this.relationColumnsBehind(relation, column);
      if (refs === undefined) continue;
      any = true;
      behind.push(...refs);
    }
    return any ? behind : undefined;
  }

  private async relationColumnsBehind(
    entry: RelationName['relations'][number],
    column: string,
  ): Promise<ColumnRef[] | undefined> {
    if (entry.kind !== 'v' && entry.kind !== 'm') {
      return entry.kin.length > 0 ? entry.kin.map((k) => ({ ...k, column })) : undefined;
    }
    const oid = entry.oid;
    if (this.needs(oid, 1)) await this.resolve([oid]);
    const relation = this.relations.get(oid);
    if (!relation) return undefined;
    const attnums = [...relation.columns]
      .filter(([, ref]) => ref.column === column)
      .map(([attnum]) => attnum);
    const chosen = attnums.length > 0 ? attnums : [...relation.columns.keys()];
    // refs() names the view's own column first, then what it shows.
    return chosen.flatMap((attnum) => this.refs(oid, attnum).slice(1));
  }

  private async relationNamed(name: string): Promise<RelationName> {
    let entry = this.names.get(name);
    if (!entry || Date.now() - entry.loaded > this.ttlMs) {
      const meant = relationsMeant(name);
      const rows = await this.query(
        withKin(
          `SELECT c.oid FROM pg_catalog.pg_class c WHERE ${meant}`,
          'SELECT c.oid::int8, c.relkind, (SELECT pg_catalog.json_agg(pg_catalog.json_build_array(n.nspname, k.relname)) ' +
            'FROM kin JOIN pg_catalog.pg_class k ON k.oid = kin.other JOIN pg_catalog.pg_namespace n ON n.oid = k.relnamespace ' +
            `WHERE kin.rel = c.oid) FROM pg_catalog.pg_class c WHERE ${meant} AND c.relkind IN ('r', 'p', 'v', 'm', 'f')`,
        ),
      );
      entry = {
        loaded: Date.now(),
        relations: rows.map(([oid, kind, kin]) => ({
          oid: Number(oid),
          kind: kind ?? '',
          kin: kinList(kin),
        })),
      };
      this.names.set(name, entry);
    }
    return entry;
  }

  /** Loads these relations (and, for views, what their columns show) in a few catalog queries. */
  async resolve(oids: number[], depth = 0): Promise<void> {
    const wanted = [...new Set(oids)].filter((oid) => oid !== 0);
    if (wanted.length === 0) return;
    const list = wanted.map((oid) => `${oid}::oid`).join(',');
    // Columns, then (attnum 0) each relation's kin, in one round trip.
    const rows = await this.query(
      withKin(
        list,
        'SELECT a.attrelid::int8, a.attnum::int4, n.nspname, c.relname, a.attname, c.relkind::text FROM pg_catalog.pg_attribute a ' +
          'JOIN pg_catalog.pg_class c ON c.oid = a.attrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace ' +
          `WHERE a.attrelid IN (${list}) AND a.attnum > 0 ` +
          'UNION ALL SELECT kin.rel::int8, 0, n.nspname, k.relname, NULL, NULL FROM kin ' +
          'JOIN pg_catalog.pg_class k ON k.oid = kin.other JOIN pg_catalog.pg_namespace n ON n.oid = k.relnamespace',
      ),
    );
    const loaded = Date.now();
    const views = new Set<number>();
    for (const oid of wanted) this.relations.set(oid, { loaded, columns: new Map(), kin: [] });
    for (const [relid, attnum, schema, table, column, relkind] of rows) {
      const relation = this.relations.get(Number(relid));
      if (attnum === '0') relation?.kin.push({ schema: schema!, table: table! });
      else relation?.columns.set(Number(attnum), { schema: schema!, table: table!, column: column! });
      if (relkind === 'v' || relkind === 'm') views.add(Number(relid));
    }
    if (views.size === 0) return;
    if (depth >= maxViewDepth) throw new Error(`views nested deeper than ${maxViewDepth}`);
    const next: number[] = [];
    for (const view of views) {
      const relation = this.relations.get(view)!;
      const [definition] = await this.query(`SELECT pg_catalog.pg_get_viewdef(${view}::oid)`);
      const shown = await this.describe(definition?.[0] ?? '');
      relation.lineage = new Map();
      shown.forEach((column, index) => {
        if (column.tableOid === 0) return;
        relation.lineage!.set(index + 1, column);
        next.push(column.tableOid);
      });
      const depends = await this.query(
        'SELECT DISTINCT d.refobjid::int8, d.refobjsubid FROM pg_catalog.pg_depend d ' +
          'JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid ' +
          "WHERE d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass " +
          `AND r.ev_class = ${view}::oid AND d.refobjid <> ${view}::oid AND d.refobjsubid > 0`,
      );
      relation.depends = depends.map(([oid, attnum]) => ({ tableOid: Number(oid), attnum: Number(attnum) }));
      next.push(...relation.depends.map((d) => d.tableOid));
    }
    const unknown = [...new Set(next)].filter((oid) => !this.relations.has(oid));
    await this.resolve(unknown, depth + 1);
  }

  /**
   * Every column identity a result column may carry: its own, its kin's same-named columns,
   * and through views the columns it shows (or, when a view column is an expression,
   * every column the view depends on).
   */
  refs(tableOid: number, attnum: number, depth = 0): ColumnRef[] {
    const relation = this.relations.get(tableOid);
    const own = relation?.columns.get(attnum);
    if (!relation || !own) return [];
    if (relation.kin.length > 0) return [own, ...relation.kin.map((k) => ({ ...k, column: own.column }))];
    if (!relation.lineage || depth >= maxViewDepth) return [own];
    const shown = relation.lineage.get(attnum);
    if (shown) return [own, ...this.refs(shown.tableOid, shown.attnum, depth + 1)];
    return [own, ...(relation.depends ?? []).flatMap((d) => this.refs(d.tableOid, d.attnum, depth + 1))];
  }

  /**
   * Columns of a table named in SQL (an unqualified name: of every relation so named, as in
   * columnsBehind), each also under the name of every table of its kin.
   */
  async columnsOf(name: string): Promise<ColumnRef[]> {
    const meant = relationsMeant(name);
    const columns = 'JOIN pg_catalog.pg_attribute a ON a.attnum > 0 AND NOT a.attisdropped AND a.attrelid =';
    const rows = await this.query(
      withKin(
        `SELECT c.oid FROM pg_catalog.pg_class c WHERE ${meant}`,
        'SELECT n.nspname, c.relname, a.attname FROM pg_catalog.pg_class c ' +
          `JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace ${columns} c.oid WHERE ${meant} ` +
          'UNION ALL SELECT n.nspname, k.relname, a.attname FROM kin JOIN pg_catalog.pg_class k ON k.oid = kin.other ' +
          `JOIN pg_catalog.pg_namespace n ON n.oid = k.relnamespace ${columns} kin.rel`,
      ),
    );
    return rows.map(([schema, table, column]) => ({ schema: schema!, table: table!, column: column! }));
  }

  close(): void {
    if (this.socket && !this.socket.destroyed) this.socket.end(terminate());
    this.socket = undefined;
  }

  private query(text: string): Promise<(string | null)[][]> {
    return this.serial(async () => {
      const rows: (string | null)[][] = [];
      await this.exchange(query(text), (type, body) => {
        if (type !== 'D') return;
        const r = new BodyReader(body);
        const count = r.int16();
        const row: (string | null)[] = [];
        for (let i = 0; i < count; i++) {
          const length = r.int32();
          row.push(length < 0 ? null : r.bytes(length).toString('utf8'));
        }
        rows.push(row);
      });
      return rows;
    });
  }

  /** The result columns of a query, from Parse + Describe (nothing runs). */
  private describe(text: string): Promise<{ tableOid: number; attnum: number }[]> {
    return this.serial(async () => {
      let columns: { tableOid: number; attnum: number }[] = [];
      await this.exchange(Buffer.concat([parse('', text), describe('S', ''), sync()]), (type, body) => {
        if (type === 'T') columns = decodeRowDescription(body);
      });
      return columns;
    });
  }

  private serial<T>(work: () => Promise<T>): Promise<T> {
    const run = this.chain.then(work);
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** Sends messages and reads up to ReadyForQuery; rejects on an ErrorResponse. */
  private async exchange(messages: Buffer, onFrame: (type: string, body: Buffer) => void): Promise<void> {
    if (!this.socket || this.socket.destroyed) {
      const upstream = await connectUpstream(this.target, [['application_name', 'airlock-catalog']]);
      this.socket = upstream.socket;
      this.reader = upstream.reader;
      this.socket.on('error', () => undefined);
    }
    const socket = this.socket;
    const reader = this.reader ?? new FrameReader({ maxLength: maxServerMessageLength });
    socket.write(messages);
    let error: string | undefined;
    await new Promise<void>((resolve, reject) => {
      const onData = (chunk: Buffer) => {
        reader.push(chunk);
        for (let frame = reader.next(); frame; frame = reader.next()) {
          const type = String.fromCharCode(frame.type);
          if (type === 'E') error = decodeFields(frame.body).get('M');
          else if (type === 'Z') {
            cleanup();
            if (error) reject(new Error(`catalog lookup failed: ${error}`));
            else resolve();
            return;
          } else onFrame(type, frame.body);
        }
      };
      const onClose = () => {
        cleanup();
        reject(new Error('catalog connection closed'));
      };
      const cleanup = () => {
        socket.off('data', onData);
        socket.off('close', onClose);
        socket.pause();
      };
      socket.on('data', onData);
      socket.on('close', onClose);
      socket.resume();
    });
  }
}

/**
 * SQL over pg_class (alias c): the relations a name written in SQL may mean. Qualified, the one
 * it names; unqualified, also every relation of that name in any schema, since the client's
 * search_path decides which the server reads. Each part as the analysis spelled it (lower-cased
 * unless it was quoted).
 */
function relationsMeant(name: string): string {
  const parts = name.split('.');
  const quoted = parts.map((part) => `"${part.replaceAll('"', '""')}"`).join('.');
  const named = `c.oid = pg_catalog.to_regclass('${quoted.replaceAll("'", "''")}')`;
  if (parts.length > 1) return named;
  return `(${named} OR c.relname = '${parts[0]!.replaceAll("'", "''")}')`;
}
