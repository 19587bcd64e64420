// Resolves result columns to table columns (RowDescription carries only table OID and
// attribute number) over a side connection with the same held credential. Answers are cached
// briefly: a table is looked up again after ttlMs, when an attribute number is new to the
// cache, and after the session itself changes the schema (the session calls invalidate()), so
// a renamed or added column cannot keep an old identity for long.
import type { Socket } from 'node:net';
import { FrameReader, maxServerMessageLength } from './frames.ts';
import { BodyReader, decodeFields, query, terminate } from './messages.ts';
import type { ColumnRef } from './policy.ts';
import { connectUpstream, type UpstreamTarget } from './upstream.ts';

export class Catalog {
  private readonly target: UpstreamTarget;
  private socket: Socket | undefined;
  private reader: FrameReader | undefined;
  private chain: Promise<unknown> = Promise.resolve();
  private readonly ttlMs: number;
  private readonly tables = new Map<number, { loaded: number; columns: Map<number, ColumnRef> }>();

  constructor(target: UpstreamTarget, options: { ttlMs?: number } = {}) {
    this.target = target;
    this.ttlMs = options.ttlMs ?? 5000;
  }

  /** Whether (table OID, attnum) must be looked up before column() can answer for it. */
  needs(tableOid: number, attnum: number): boolean {
    if (tableOid === 0 || attnum <= 0) return false;
    const entry = this.tables.get(tableOid);
    return !entry || Date.now() - entry.loaded > this.ttlMs || !entry.columns.has(attnum);
  }

  invalidate(): void {
    this.tables.clear();
  }

  /** Loads the columns of these tables in one catalog query. */
  async resolve(oids: number[]): Promise<void> {
    const missing = [...new Set(oids)].filter((oid) => oid !== 0);
    if (missing.length === 0) return;
    const rows = await this.query(
      'SELECT a.attrelid::int8, a.attnum, n.nspname, c.relname, a.attname FROM pg_catalog.pg_attribute a ' +
        'JOIN pg_catalog.pg_class c ON c.oid = a.attrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace ' +
        `WHERE a.attrelid IN (${missing.map((oid) => `${oid}::oid`).join(',')}) AND a.attnum > 0`,
    );
    const loaded = Date.now();
    for (const oid of missing) this.tables.set(oid, { loaded, columns: new Map() });
    for (const [relid, attnum, schema, table, column] of rows) {
      this.tables
        .get(Number(relid))
        ?.columns.set(Number(attnum), { schema: schema!, table: table!, column: column! });
    }
  }

  /** Columns of a table named in SQL, resolved with the side connection's search_path. */
  async columnsOf(name: string): Promise<ColumnRef[]> {
    const literal = `'${name.replaceAll("'", "''")}'`;
    const rows = await this.query(
      'SELECT n.nspname, c.relname, a.attname FROM pg_catalog.pg_attribute a ' +
        'JOIN pg_catalog.pg_class c ON c.oid = a.attrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace ' +
        `WHERE a.attrelid = pg_catalog.to_regclass(${literal}) AND a.attnum > 0 AND NOT a.attisdropped`,
    );
    return rows.map(([schema, table, column]) => ({ schema: schema!, table: table!, column: column! }));
  }

  column(tableOid: number, attnum: number): ColumnRef | undefined {
    return this.tables.get(tableOid)?.columns.get(attnum);
  }

  close(): void {
    if (this.socket && !this.socket.destroyed) this.socket.end(terminate());
    this.socket = undefined;
  }

  private query(text: string): Promise<(string | null)[][]> {
    const run = this.chain.then(() => this.run(text));
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async run(text: string): Promise<(string | null)[][]> {
    if (!this.socket || this.socket.destroyed) {
      const upstream = await connectUpstream(this.target, [['application_name', 'airlock-catalog']]);
      this.socket = upstream.socket;
      this.reader = upstream.reader;
      this.socket.on('error', () => undefined);
    }
    const socket = this.socket;
    const reader = this.reader ?? new FrameReader({ maxLength: maxServerMessageLength });
    socket.write(query(text));
    const rows: (string | null)[][] = [];
    let error: string | undefined;
    return new Promise((resolve, reject) => {
      const onData = (chunk: Buffer) => {
        reader.push(chunk);
        for (let frame = reader.next(); frame; frame = reader.next()) {
          const type = String.fromCharCode(frame.type);
          if (type === 'D') {
            const r = new BodyReader(frame.body);
            const count = r.int16();
            const row: (string | null)[] = [];
            for (let i = 0; i < count; i++) {
              const length = r.int32();
              row.push(length < 0 ? null : r.bytes(length).toString('utf8'));
            }
            rows.push(row);
          } else if (type === 'E') {
            error = decodeFields(frame.body).get('M');
          } else if (type === 'Z') {
            cleanup();
            if (error) reject(new Error(`catalog lookup failed: ${error}`));
            else resolve(rows);
            return;
          }
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
