// The server's side of a session: each server message is attributed to the request it answers
// (the head of the pending queue), masked by that request's result layout, and relayed; the
// request's record collects rows, masked counts and errors, and becomes an event when the
// server completes it. A denied message's poison answer is swapped for the denial here.
import type { Catalog } from './catalog.ts';
import { copyFormat } from './decisions.ts';
import type { Frame, MessageRun } from './frames.ts';
import type { SessionGate } from './gate.ts';
import {
  type Layout,
  maskCopyRow,
  maskFields,
  maskFunctionResult,
  maskNotice,
  maskNotification,
  maskParameterStatus,
  planColumns,
  RowMasker,
} from './masking.ts';
import {
  type ColumnDescription,
  decodeCommandComplete,
  decodeCopyResponse,
  decodeFields,
  decodeParameterStatus,
  decodeRowDescription,
  encodeFields,
  rowsFromTag,
  type TransactionStatus,
} from './messages.ts';
import { type Pending, type PendingQueue, type RequestRecord, recordOf } from './pending.ts';
import type { Masker, PolicyEngine } from './policy.ts';
import type { Relay } from './relay.ts';
import type { ServerReading } from './settings.ts';
import type { PreparedNames } from './statements.ts';

const schemaChanging = new Set(['ALTER', 'DROP', 'CREATE', 'COMMENT', 'IMPORT']);

/** The session as its server side sees it. */
export interface ResponseHost {
  readonly relay: Relay;
  readonly gate: SessionGate;
  readonly catalog: Catalog | undefined;
  readonly pending: PendingQueue;
  readonly names: PreparedNames;
  /** How the server reads the client's text, as it reports it. */
  readonly reading: ServerReading;
  fatal(code: string, message: string): void;
  /** ReadyForQuery: the transaction status it carries. */
  ready(status: TransactionStatus): void;
  /** A ReadyForQuery completed the last Query, Sync or FunctionCall forwarded: nothing owes one. */
  settled(): void;
  /** The server skips to a Sync the client has not sent yet: its messages up to it are dropped. */
  skipClientUntilSync(): void;
}

export class Responses {
  private readonly host: ResponseHost;
  private readonly engine: PolicyEngine;
  private readonly masker: Masker | undefined;
  private readonly rows: RowMasker | undefined;
  /** Layouts of described portals (null: the portal returns no rows). */
  private readonly portalLayouts = new Map<string, Layout | null>();
  /** The layout of the simple-protocol result being relayed. */
  private layout: Layout | undefined;
  private copyOut: { csv: boolean } | undefined;

  constructor(host: ResponseHost, engine: PolicyEngine) {
    this.host = host;
    this.engine = engine;
    this.masker = engine.masker;
    this.rows = this.masker && new RowMasker(this.masker);
  }

  /** A new batch of server messages: rows rewritten for earlier batches may still be queued. */
  batch(): void {
    this.rows?.batch();
  }

  /** DataRows in bulk: unchanged rows go out as one view of the received chunk. */
  dataRows(run: MessageRun, out: Buffer[]): void {
    const head = this.host.pending.head;
    const record = recordOf(head);
    if (record) record.rows = (record.rows ?? 0) + run.count;
    const { chunk, end } = run;
    if (!this.rows) {
      out.push(chunk.subarray(run.start, end));
      return;
    }
    this.rows.maskRun(chunk, run.start, end, this.currentLayout(head), record, out);
  }

  frame(frame: Frame, out: Buffer[]): Promise<void> | undefined {
    const { pending, gate } = this.host;
    const head = pending.head;
    switch (frame.type) {
      case 0x44: {
        // DataRow: the hot path.
        const record = recordOf(head);
        const masked = this.rows?.maskRow(frame.raw, 0, frame.raw.length, this.currentLayout(head), record);
        out.push(masked ?? frame.raw);
        if (record) record.rows = (record.rows ?? 0) + 1;
        return undefined;
      }
      case 0x4e: // NoticeResponse
        out.push(maskNotice(this.masker, frame.raw));
        return undefined;
      case 0x41: // NotificationResponse
        out.push(maskNotification(this.masker, frame.raw));
        return undefined;
      case 0x53: {
        // ParameterStatus: a SET that makes the server read SQL otherwise than the enforcer ends the session.
        const [name, value] = decodeParameterStatus(frame.body);
        this.host.reading.note(name, value);
        const refused = this.host.reading.refusal();
        if (refused) {
          this.host.relay.writeClient(out.splice(0));
          gate.protocolError('unsupported-setting', refused);
          this.host.fatal('42501', refused);
          return undefined;
        }
        out.push(maskParameterStatus(this.masker, frame.raw));
        return undefined;
      }
      case 0x45: // ErrorResponse
        this.onError(frame, head, out);
        return undefined;
      case 0x5a: // ReadyForQuery
        this.host.ready(String.fromCharCode(frame.body[0] ?? 73) as TransactionStatus);
        this.completeThrough(out, frame.raw);
        return undefined;
      case 0x54: {
        // RowDescription
        const columns = decodeRowDescription(frame.body);
        const described = pending.complete('describe');
        if (described) {
          if (!described.internal) out.push(frame.raw);
          if (described.target === 'P' && this.masker)
            return this.compileLayout(columns, (l) => this.portalLayouts.set(described.name, l));
          return undefined;
        }
        out.push(frame.raw);
        if (this.masker) return this.compileLayout(columns, (l) => (this.layout = l));
        return undefined;
      }
      case 0x6e: {
        // NoData
        const described = pending.complete('describe');
        if (described) {
          if (described.target === 'P') this.portalLayouts.set(described.name, null);
          if (described.internal) return undefined;
        }
        out.push(frame.raw);
        return undefined;
      }
      case 0x74: // ParameterDescription (Describe statement: RowDescription or NoData follows)
        out.push(frame.raw);
        return undefined;
      case 0x31: // ParseComplete
      case 0x32: // BindComplete
      case 0x33: {
        // CloseComplete
        const done = pending.complete('parse', 'bind', 'close');
        // The server now holds exactly this statement under the name, or none.
        if (done?.kind === 'parse' && done.prepared)
          this.host.names.confirmParsed(done.name ?? '', done.prepared);
        if (done?.kind === 'close' && done.statement !== undefined)
          this.host.names.confirmClosed(done.statement);
        out.push(frame.raw);
        return undefined;
      }
      case 0x43: // CommandComplete
        this.finishStatement(head, decodeCommandComplete(frame.body));
        this.copyOut = undefined;
        this.layout = undefined;
        out.push(frame.raw);
        return undefined;
      case 0x73: {
        // PortalSuspended
        const executed = pending.complete('execute');
        if (executed) gate.request(executed.record);
        out.push(frame.raw);
        return undefined;
      }
      case 0x49: // EmptyQueryResponse
        this.finishStatement(head, undefined);
        out.push(frame.raw);
        return undefined;
      case 0x48: {
        // CopyOutResponse
        const copy = decodeCopyResponse(frame.body);
        if (copy.format !== 0 && this.masker) {
          throw new Error('binary COPY output while masking is configured');
        }
        this.copyOut = { csv: copyFormat(this.engine, recordOf(head)?.text ?? '') !== 'text' };
        out.push(frame.raw);
        return undefined;
      }
      case 0x64: // CopyData
        if (this.copyOut && this.masker)
          out.push(maskCopyRow(this.masker, frame.raw, this.copyOut.csv, recordOf(head)));
        else out.push(frame.raw);
        return undefined;
      case 0x56: // FunctionCallResponse
        out.push(this.masker ? maskFunctionResult(this.masker, frame.raw) : frame.raw);
        return undefined;
      default:
        // CopyInResponse, CopyDone, CopyBothResponse and anything newer: relay unchanged.
        out.push(frame.raw);
        return undefined;
    }
  }

  private currentLayout(head: Pending | undefined): Layout | undefined {
    if (head?.kind === 'execute') return this.portalLayouts.get(head.portal) ?? undefined;
    return this.layout;
  }

  /** Plans a result's masking; the stream waits while the columns' tables are looked up. */
  private compileLayout(
    columns: ColumnDescription[],
    set: (layout: Layout) => void,
  ): Promise<void> | undefined {
    const masker = this.masker!;
    const build = (): void =>
      set(planColumns(masker, columns, (oid, attnum) => this.host.catalog?.refs(oid, attnum) ?? []));
    const catalog = this.host.catalog;
    const unresolved =
      masker.columns && catalog ? columns.filter((c) => catalog.needs(c.tableOid, c.attnum)) : [];
    if (unresolved.length === 0 || !catalog) {
      build();
      return undefined;
    }
    // Hold the result stream until the columns' tables are known.
    return catalog.resolve(unresolved.map((c) => c.tableOid)).then(build);
  }

  private finishStatement(head: Pending | undefined, tag: string | undefined): void {
    if (!head) return;
    const record = recordOf(head);
    if (record) {
      const rows = tag === undefined ? undefined : rowsFromTag(tag);
      if (rows !== undefined) record.rows = rows;
    }
    // After this session changes the schema, column identities are looked up again.
    if (record?.kind && schemaChanging.has(record.kind)) this.host.catalog?.invalidate();
    if (head.kind === 'query') {
      if (record) this.host.gate.request(record);
      head.index++;
    } else if (head.kind === 'execute') {
      this.host.pending.complete('execute');
      this.host.gate.request(head.record);
    }
  }

  private onError(frame: Frame, head: Pending | undefined, out: Buffer[]): void {
    const { gate, names } = this.host;
    const replaced = head && 'replaceError' in head ? head.replaceError : undefined;
    const fields = decodeFields(frame.body);
    const record = recordOf(head) ?? this.recordForFailure(head);
    if (replaced) out.push(replaced);
    else out.push(this.masker ? encodeFields('E', maskFields(this.masker, fields)) : frame.raw);
    if (record && !record.error) {
      // A server error (the denial's own error is already recorded).
      // Server messages can quote bound parameter values ("invalid input syntax for type
      // integer: ..."), which events never carry.
      const bound =
        head && (head.kind === 'bind' || head.kind === 'execute') && names.hasParameters(head.portal);
      const message = fields.get('M') ?? '';
      record.error = {
        code: 'target-error',
        wire: fields.get('C') ?? 'XX000',
        message: bound
          ? 'server error (message withheld: it may quote bound parameters)'
          : this.masker
            ? this.masker.mask(message).value
            : message,
      };
      if (record.outcome === 'allowed') record.outcome = 'error';
    }
    this.copyOut = undefined;
    this.layout = undefined;
    if (!head) return;
    if (head.kind === 'query') {
      if (record) gate.request(record);
      head.index = head.records.length;
      return;
    }
    if (head.kind === 'function') return;
    // Extended protocol: the server skips everything up to Sync, so the enforcer drops what the
    // client sends before it (it would never be answered).
    if (record) gate.request(record);
    if (!this.host.pending.skipToSync()) this.host.skipClientUntilSync();
  }

  /** A record for an extended-protocol statement that failed before Execute (at Parse or Bind). */
  private recordForFailure(head: Pending | undefined): RequestRecord | undefined {
    if (head?.kind === 'parse') {
      if (head.record) return head.record;
      if (head.text === undefined) return undefined;
      return { text: head.text, kind: undefined, outcome: 'error', started: Date.now() };
    }
    if (head?.kind === 'bind') {
      const statement = this.host.names.statementOf(head.portal);
      if (!statement) return undefined;
      return { text: statement.text, kind: statement.kind, outcome: 'error', started: Date.now() };
    }
    return undefined;
  }

  /** ReadyForQuery: the Sync, Query or FunctionCall at the head is complete, with every record of it. */
  private completeThrough(out: Buffer[], raw: Buffer): void {
    const { pending, gate } = this.host;
    const head = pending.complete('sync', 'query', 'function');
    if (head) {
      if (head.kind === 'query')
        for (const r of head.records)
          if (r.error || r.rows !== undefined || r.outcome !== 'allowed') gate.request(r);
      if (head.kind === 'function') gate.request(head.record);
      if (!pending.owesReady) this.host.settled();
    }
    this.layout = undefined;
    out.push(raw);
  }
}
