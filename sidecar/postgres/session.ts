// One client session through the PostgreSQL enforcer: client ↔ enforcer ↔ server.
//
// The session is a streaming state machine over raw frames. Client messages are analysed and
// decided before they are forwarded; server messages are relayed as they arrive, with DataRow,
// CopyData, ErrorResponse and NoticeResponse values masked. Nothing is buffered beyond one
// message.
//
// Ordering: every forwarded client message that the server answers gets an entry in `pending`,
// in order, so the enforcer knows which request each response belongs to (for events, masking
// layouts and error skipping). The enforcer never answers a client message by itself once the
// session is up: a denied message is replaced upstream by a "poison" message that the server
// rejects (a syntax error, or Execute of a portal that does not exist), and the server's
// ErrorResponse is replaced by the denial. So the denial arrives in order with pipelined
// results, the server skips to Sync after it exactly as after its own errors, an implicit
// transaction is rolled back and an explicit one goes to E (failed), and ReadyForQuery
// carries the true transaction status.
import { isAscii as isAsciiBytes, isUtf8 } from 'node:buffer';
import { randomUUID } from 'node:crypto';
import type { LookupFunction, Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import type { BundleConnection, Identity } from '../../api/bundle.ts';
import type { EventSink, Outcome, RequestEvent, SessionEvent } from '../../api/events.ts';
import type { ApprovalRequest, ApprovalResult, Approvals } from '../enforcer.ts';
import { Catalog } from './catalog.ts';
import { RowWriter } from './datarow.ts';
import {
  type Frame,
  type FrameError,
  FrameReader,
  type MessageRun,
  maxClientMessageLength,
} from './frames.ts';
import {
  authenticationOk,
  BodyReader,
  backendKeyData,
  type ColumnDescription,
  cancelRequestCode,
  decodeBind,
  decodeCommandComplete,
  decodeCopyResponse,
  decodeExecute,
  decodeFields,
  decodeParameterStatus,
  decodeParse,
  decodeQuery,
  decodeRowDescription,
  decodeStartup,
  decodeTarget,
  describe,
  encodeCopyData,
  encodeFields,
  errorResponse,
  gssEncRequestCode,
  legacyErrorResponse,
  negotiateProtocolVersion,
  ProtocolViolation,
  parameterStatus,
  parse,
  query,
  readyForQuery,
  rowsFromTag,
  type StartupMessage,
  sslRequestCode,
  type TransactionStatus,
  terminate,
} from './messages.ts';
import type {
  ColumnMask,
  ColumnRef,
  Masker,
  PolicyEngine,
  SqlAnalysisResult,
  SqlStatementInfo,
  Verdict,
} from './policy.ts';
import { filterOptions, parameterRefusal, settingRefusal } from './settings.ts';
import {
  cancelUpstream,
  connectUpstream,
  type Upstream,
  type UpstreamError,
  type UpstreamTarget,
} from './upstream.ts';
import { byteaBytes, byteaText, type Held, heldText, heldTypes } from './values.ts';

// How a held statement gets a human decision: the contract every enforcer shares.
export type { ApprovalRequest, ApprovalResult, Approvals };

/** Enforcer-issued cancel keys, mapped to the session that can cancel upstream. */
export interface CancelRegistry {
  register(pid: number, secret: number, cancel: () => Promise<void>): void;
  unregister(pid: number, secret: number): void;
  cancel(pid: number, secret: number): Promise<boolean>;
}

export interface SessionOptions {
  connection: BundleConnection;
  identity: Identity;
  engine: PolicyEngine;
  events: EventSink;
  approvals?: Approvals;
  cancels: CancelRegistry;
  /** Certificate for the client side; without it SSLRequest is answered 'N'. */
  tls?: { cert: string; key: string };
  /** Longest approval wait while a transaction is open upstream (default 60 s). */
  transactionHoldMs?: number;
  /** Approval wait when the rule gives none (default 15 min). */
  defaultApprovalMs?: number;
  clientAddress: string;
  /** How the upstream's name is resolved: the system's resolver when absent. */
  lookup?: LookupFunction;
}

/** Binary-format types whose bytes are UTF-8 text (jsonb has a leading version byte). */
const textTypes = new Set([25, 1043, 1042, 19, 114, 142, 705, 3802, 18]);
/** Binary-format types that cannot hold detectable text. */
const opaqueTypes = new Set([
  16, 20, 21, 23, 26, 700, 701, 1082, 1083, 1114, 1184, 1186, 1266, 1700, 2950, 790, 600, 601, 602, 603, 604,
  718, 869, 650, 829, 774, 3220, 28, 29, 5069, 24, 2202, 2203, 2204, 2205, 2206, 3734, 3769, 4089, 4096, 1560,
  1562,
]);

const poisonQuery = 'AIRLOCK DENIED';
const schemaChanging = new Set(['ALTER', 'DROP', 'CREATE', 'COMMENT', 'IMPORT']);
/** Client bytes read ahead while a message waits. */
const readAheadLimit = 1024 * 1024;
const deniedSqlState = '42501';

/** One statement or message and what happened to it; becomes a RequestEvent. */
interface RequestRecord {
  text: string;
  kind: string | undefined;
  outcome: Outcome;
  verdict?: Verdict;
  approval?: { request: string; decidedBy?: string };
  started: number;
  rows?: number;
  masked?: Record<string, number>;
  wouldMask?: Record<string, number>;
  error?: { code: string; message: string };
  emitted?: boolean;
}

/** 53100 disk_full: the audit spool is full, so nothing more may run. */
const auditUnavailableSqlState = '53100';

interface Gate {
  outcome: Outcome;
  /** Set when the request must not run: the message of the error the client gets. */
  error?: string;
  /** SQLSTATE of that error; 42501 when omitted. */
  code?: string;
  /** Cursor position of that error (P field), for syntax errors. */
  position?: number;
  approval?: { request: string; decidedBy?: string };
}

type ColumnAction = 'skip' | 'text' | 'lossy' | 'mask';
interface ColumnPlan {
  action: ColumnAction;
  /** The column's type is text, so masked text stays valid for the client's decoder. */
  textual: boolean;
  binary: boolean;
  jsonb: boolean;
  /** Read by what the type holds (bytea's bytes; binary int8, numeric, inet as their text). */
  held?: Held;
  rule?: ColumnMask;
}
type Layout = ColumnPlan[];

type Pending =
  | { kind: 'query'; records: RequestRecord[]; index: number; replaceError?: Buffer }
  | { kind: 'function'; record: RequestRecord; replaceError?: Buffer }
  | { kind: 'parse'; record?: RequestRecord; replaceError?: Buffer; text?: string }
  | { kind: 'bind'; portal: string }
  | { kind: 'describe'; target: 'S' | 'P'; name: string; internal: boolean; sawParameters?: boolean }
  | { kind: 'execute'; portal: string; record: RequestRecord; replaceError?: Buffer }
  | { kind: 'close' }
  | { kind: 'sync' };

interface PreparedStatement {
  text: string;
  verdict: Verdict;
  kind: string | undefined;
  changesReading: boolean;
}

/** Client messages that may pass while the server's reading settings are unknown: none of them is SQL text. */
const unreadMessages = new Set(['d', 'c', 'f', 'H', 'X']);
const rereadMessage =
  'Airlock forwards nothing after a statement that may change how the server reads SQL text (client_encoding, standard_conforming_strings: SET, set_config, DO, CALL, a function outside the built-ins) until Sync';

export class PostgresSession {
  readonly id = randomUUID();
  private readonly options: SessionOptions;
  private readonly engine: PolicyEngine;
  private readonly masker: Masker | undefined;
  private client: Socket | TLSSocket;
  private readonly clientReader = new FrameReader({ maxLength: maxClientMessageLength, startup: true });
  private upstream: Upstream | undefined;
  private catalog: Catalog | undefined;
  private seq = 0;
  private bytesIn = 0;
  private bytesOut = 0;
  private closed = false;
  private status: TransactionStatus = 'I';
  private key = { pid: 0, secret: 0 };

  // Flow control: a side is paused while it has an async step in progress or the other side's
  // socket is full.
  private clientBusy = false;
  private serverBusy = false;
  private clientBlocked = false;
  private serverBlocked = false;

  // Client-side protocol state.
  private skipUntilSync = false;
  /** Extended-protocol messages forwarded since the last Sync (an implicit transaction is open). */
  private unsynced = false;
  private readonly statements = new Map<string, PreparedStatement>();
  /** Portal → the statement it was bound to, and whether Bind carried parameter values. */
  private readonly portals = new Map<string, { statement: string; parameters: boolean }>();
  private readonly describedPortals = new Set<string>();
  /** SQL-level PREPAREd statements by name, to decide EXECUTE name on what it runs. */
  private readonly sqlPrepared = new Map<string, SqlStatementInfo>();
  private readonly sessionApprovals = new Set<string>();
  /** The DataRow being masked, decoded once when it is ASCII. */
  private rowText: string | undefined;
  private rowAscii: boolean | undefined;
  private readonly changedAt: number[] = [];
  private readonly changedTo: (string | Buffer | null)[] = [];
  private readonly rows = new RowWriter();
  /** Set while a statement waits for approval. */
  private cancelHold: (() => void) | undefined;
  /**
   * After a statement that may change how the server reads SQL text ran: 'sync' until the
   * client's Sync (extended protocol), then 'wait' until the server's ReadyForQuery, which
   * follows its ParameterStatus. SQL text is read only once it is known again.
   */
  private rereading: 'sync' | 'wait' | undefined;
  private readonly idleWaiters: (() => void)[] = [];

  // Server-side protocol state.
  private readonly pending: Pending[] = [];
  private readonly portalLayouts = new Map<string, Layout | null>();
  private layout: Layout | undefined;
  private copyOut: { csv: boolean } | undefined;

  constructor(client: Socket, options: SessionOptions) {
    this.options = options;
    this.engine = options.engine;
    this.masker = options.engine.masker;
    this.client = client;
    client.setNoDelay(true);
    this.attachClient(client);
  }

  // ---------------------------------------------------------------------------------------
  // Events

  private emit(event: Record<string, unknown> & { type: SessionEvent['type'] }): void {
    const { connection, identity } = this.options;
    this.options.events.emit({
      version: 1,
      id: randomUUID(),
      sessionId: this.id,
      seq: this.seq++,
      time: new Date().toISOString(),
      connection: { name: connection.name, namespace: connection.namespace, protocol: 'postgres' },
      identity,
      ...event,
    } as SessionEvent);
  }

  private emitRequest(record: RequestRecord): void {
    if (record.emitted) return;
    record.emitted = true;
    const v = record.verdict;
    const decided = v !== undefined && v.action !== 'allow';
    const event: Omit<
      RequestEvent,
      'version' | 'id' | 'sessionId' | 'seq' | 'time' | 'connection' | 'identity'
    > = {
      type: 'request',
      // Literals typed by the agent can carry the values masking protects: the detectors scan
      // the recorded text too, so an email in a WHERE clause is not kept in the trail.
      text: this.maskText(record.text),
      outcome: record.outcome === 'allowed' && record.masked ? 'masked' : record.outcome,
      durationMs: Date.now() - record.started,
      ...(record.kind && { kind: record.kind }),
      ...(decided && v.policy && { policy: v.policy }),
      ...(decided && v.rule && { rule: v.rule }),
      ...(decided && v.reasons?.length && { reasons: v.reasons }),
      ...((v?.wouldHave?.length || record.wouldMask) && {
        wouldHave: [
          ...(v?.wouldHave ?? []),
          ...Object.entries(record.wouldMask ?? {}).map(([key, n]) => ({
            action: 'mask',
            policy: this.auditPolicyOf(key),
            rule: `masking:${key}`,
            reason: `${n} value(s) would have been masked`,
          })),
        ],
      }),
      ...(record.approval && { approval: record.approval }),
      ...(record.rows !== undefined && { rows: record.rows }),
      ...(record.masked && { masked: record.masked }),
      ...(record.error && { error: record.error }),
    };
    this.emit(event);
  }

  /** The audit-mode policy whose masking rule a count key (<rule>/<detector or column>) names. */
  private auditPolicyOf(key: string): string {
    const rule = key.split('/')[0];
    const policy = this.options.connection.policies.find(
      (p) => p.mode === 'audit' && p.masking.some((m) => m.name === rule),
    );
    return policy?.name ?? '';
  }

  private protocolError(code: string, message: string): void {
    this.emit({ type: 'protocol.error', code, message });
  }

  // ---------------------------------------------------------------------------------------
  // Sockets and flow control

  private attachClient(socket: Socket | TLSSocket): void {
    socket.on('data', (chunk: Buffer) => {
      this.bytesIn += chunk.length;
      this.clientReader.push(chunk);
      if (this.clientBusy) this.flowClient();
      else this.pumpClient();
    });
    socket.on('drain', () => {
      this.serverBlocked = false;
      this.flowUpstream();
    });
    socket.on('end', () => this.close('client closed the connection'));
    socket.on('close', () => this.close('client closed the connection'));
    socket.on('error', (error) => this.close(`client socket error: ${error.message}`));
  }

  private attachUpstream(upstream: Upstream): void {
    const socket = upstream.socket;
    socket.on('data', (chunk: Buffer) => {
      upstream.reader.push(chunk);
      this.pumpServer();
    });
    socket.on('drain', () => {
      this.clientBlocked = false;
      this.flowClient();
    });
    socket.on('end', () => this.close('server closed the connection'));
    socket.on('close', () => this.close('server closed the connection'));
    socket.on('error', (error) => this.close(`server socket error: ${error.message}`));
    socket.resume();
  }

  private flowClient(): void {
    if (this.closed) return;
    // While a message waits (upstream connect, approval), keep reading a little ahead so that
    // a client that goes away is noticed; beyond that, stop reading.
    if (this.clientBlocked || (this.clientBusy && this.clientReader.buffered > readAheadLimit))
      this.client.pause();
    else if (this.clientBusy) this.client.resume();
    else {
      this.client.resume();
      if (this.clientReader.buffered > 0) queueMicrotask(() => this.pumpClient());
    }
  }

  private flowUpstream(): void {
    const socket = this.upstream?.socket;
    if (!socket || this.closed) return;
    if (this.serverBusy || this.serverBlocked) socket.pause();
    else {
      socket.resume();
      if ((this.upstream?.reader.buffered ?? 0) > 0) queueMicrotask(() => this.pumpServer());
    }
  }

  /**
   * One write per batch: adjacent views of the same received chunk (unchanged messages) are
   * joined without copying; anything else is concatenated once. Many small writes cost far
   * more than one memcpy.
   */
  private writeClient(buffers: Buffer[]): void {
    if (buffers.length === 0 || this.closed) return;
    const joined: Buffer[] = [];
    let size = 0;
    let last: Buffer | undefined;
    for (const b of buffers) {
      size += b.length;
      if (last && last.buffer === b.buffer && last.byteOffset + last.length === b.byteOffset) {
        last = Buffer.from(last.buffer, last.byteOffset, last.length + b.length);
        joined[joined.length - 1] = last;
      } else {
        joined.push(b);
        last = b;
      }
    }
    this.bytesOut += size;
    this.client.write(joined.length === 1 ? joined[0]! : Buffer.concat(joined, size));
    if (this.client.writableNeedDrain) {
      this.serverBlocked = true;
      this.flowUpstream();
    }
  }

  private writeUpstream(buffer: Buffer): void {
    const socket = this.upstream?.socket;
    if (!socket || this.closed) return;
    if (!socket.write(buffer)) {
      this.clientBlocked = true;
      this.flowClient();
    }
  }

  /** Sends a FATAL error to the client and ends the session. */
  private fatal(code: string, message: string, detail?: string): void {
    if (this.closed) return;
    const fields = errorResponse(code, message, { severity: 'FATAL', ...(detail && { detail }) });
    this.bytesOut += fields.length;
    this.client.end(fields);
    this.close(message);
  }

  /** A statement is running, held for approval or being answered: a drain waits for it. */
  busy(): boolean {
    if (this.closed) return false;
    return this.pending.length > 0 || this.clientBusy || this.serverBusy || this.cancelHold !== undefined;
  }

  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.cancelHold?.();
    if (this.key.pid) this.options.cancels.unregister(this.key.pid, this.key.secret);
    const upstream = this.upstream?.socket;
    if (upstream && !upstream.destroyed) {
      upstream.end(terminate());
      upstream.destroySoon?.();
    }
    this.catalog?.close();
    if (!this.client.destroyed) {
      this.client.end();
      setTimeout(() => this.client.destroy(), 1000).unref();
    }
    this.emit({ type: 'session.end', reason, bytesIn: this.bytesIn, bytesOut: this.bytesOut });
  }

  // ---------------------------------------------------------------------------------------
  // Client side

  private pumpClient(): void {
    while (!this.clientBusy && !this.closed) {
      let frame: Frame | undefined;
      try {
        frame = this.clientReader.next();
      } catch (error) {
        const e = error as FrameError;
        this.protocolError(e.code, e.message);
        // The server answers a startup packet of an invalid length by closing, without a word.
        if (this.clientReader.startup) this.close(`invalid startup packet: ${e.message}`);
        else this.fatal(e.code === 'frame-too-large' ? '54000' : '08P01', e.message);
        return;
      }
      if (!frame) return;
      let step: Promise<void> | undefined;
      try {
        step = this.clientReader.startup ? this.onStartupFrame(frame) : this.onClientFrame(frame);
      } catch (error) {
        this.onClientError(error);
        return;
      }
      if (step) {
        this.clientBusy = true;
        this.flowClient();
        step.then(
          () => {
            this.clientBusy = false;
            this.flowClient();
            this.pumpClient();
          },
          (error: unknown) => this.onClientError(error),
        );
        return;
      }
    }
  }

  private onClientError(error: unknown): void {
    if (error instanceof ProtocolViolation) {
      this.protocolError(error.code, error.message);
      this.fatal('08P01', `invalid message from client: ${error.message}`);
      return;
    }
    this.protocolError('internal-error', (error as Error).message);
    this.fatal('XX000', `Airlock enforcer error: ${(error as Error).message}`);
  }

  private onStartupFrame(frame: Frame): Promise<void> | undefined {
    const code = frame.body.readInt32BE(0);
    // As the server: SSLRequest and GSSENCRequest are answered whatever their length; a
    // CancelRequest of the wrong length is dropped without an answer.
    if (code === sslRequestCode) {
      if (this.client instanceof TLSSocket)
        throw new ProtocolViolation('SSLRequest on an encrypted connection');
      if (this.clientReader.buffered > 0) {
        // Bytes sent before the handshake would be taken as if they came over TLS.
        this.protocolError('plaintext-before-tls', 'client sent unencrypted data after SSLRequest');
        this.fatal('08P01', 'received unencrypted data after SSL request');
        return undefined;
      }
      if (!this.options.tls) {
        this.client.write('N');
        return undefined;
      }
      this.client.write('S');
      this.upgradeClient(this.options.tls);
      return undefined;
    }
    if (code === gssEncRequestCode) {
      this.client.write('N');
      return undefined;
    }
    if (code === cancelRequestCode) {
      if (frame.body.length !== 12) {
        this.protocolError('protocol-violation', 'invalid CancelRequest length');
        this.close('invalid CancelRequest length');
        return undefined;
      }
      const pid = frame.body.readInt32BE(4);
      const secret = frame.body.readInt32BE(8);
      return this.options.cancels.cancel(pid, secret).then(() => {
        this.closed = true;
        this.client.end();
      });
    }
    return this.onStartup(frame);
  }

  private upgradeClient(tls: { cert: string; key: string }): void {
    const plain = this.client;
    plain.removeAllListeners('data');
    plain.removeAllListeners('drain');
    plain.removeAllListeners('end');
    plain.removeAllListeners('close');
    plain.removeAllListeners('error');
    plain.on('error', () => undefined);
    const secure = new TLSSocket(plain, { isServer: true, cert: tls.cert, key: tls.key });
    secure.on('error', (error) => this.close(`client TLS error: ${error.message}`));
    this.client = secure;
    this.attachClient(secure);
  }

  private async onStartup(frame: Frame): Promise<void> {
    // The server's checks, in its order: protocol version, packet layout, user name.
    const version = frame.body.readUInt32BE(0);
    const major = version >>> 16;
    if (major !== 3) {
      const message = `unsupported frontend protocol ${major}.${version & 0xffff}: server supports 3.0 to 3.0`;
      this.protocolError('unsupported-protocol', message);
      if (major < 3) {
        // An older client reads only the protocol-2 error format.
        this.client.end(legacyErrorResponse(message));
        this.close(message);
      } else this.fatal('0A000', message);
      return;
    }
    let startup: StartupMessage;
    try {
      startup = decodeStartup(frame.body);
    } catch (error) {
      if (!(error instanceof ProtocolViolation)) throw error;
      this.protocolError(error.code, error.message);
      this.fatal('08P01', error.message);
      return;
    }
    const params = startup.parameters;
    if (!params.get('user')) {
      this.fatal('28000', 'no PostgreSQL user name specified in startup packet');
      return;
    }
    const unrecorded = this.options.events.refusal?.();
    if (unrecorded) {
      this.fatal(auditUnavailableSqlState, unrecorded);
      return;
    }
    this.emit({
      type: 'session.start',
      client: {
        address: this.options.clientAddress,
        ...(params.has('user') && { user: params.get('user') }),
        ...(params.has('application_name') && { application: params.get('application_name') }),
      },
    });
    if (
      params.has('replication') &&
      params.get('replication') !== 'false' &&
      params.get('replication') !== '0'
    ) {
      this.fatal('42501', 'Airlock does not allow replication connections through the enforcer');
      return;
    }
    const forwarded: [string, string][] = [];
    const unrecognized: string[] = [];
    for (const [name, value] of params) {
      const lower = name.toLowerCase();
      if (name.startsWith('_pq_.')) unrecognized.push(name);
      else if (lower === 'user' || lower === 'database' || lower === 'replication') continue;
      else {
        const result =
          lower === 'options'
            ? filterOptions(value)
            : { options: value, refused: settingRefusal(name, value) };
        if (result.refused) {
          this.fatal('42501', result.refused);
          return;
        }
        if (result.options) forwarded.push([name, result.options]);
      }
    }
    if (startup.minor > 0 || unrecognized.length > 0) {
      // We speak 3.0 upstream; newer clients (PG18's 3.2) fall back when told so.
      this.client.write(negotiateProtocolVersion(0, unrecognized));
    }
    const connection = this.options.connection;
    const username = connection.credentials.username;
    const password = connection.credentials.password;
    if (!username || password === undefined) {
      this.fatal('28000', `Airlock has no credential for Connection ${connection.name}`);
      return;
    }
    const target: UpstreamTarget = {
      host: connection.host,
      port: connection.port,
      tls: connection.tls,
      username,
      password,
      database: connection.postgres?.database ?? username,
      ...(this.options.lookup && { lookup: this.options.lookup }),
    };
    let upstream: Upstream;
    try {
      upstream = await connectUpstream(target, forwarded);
    } catch (error) {
      const e = error as UpstreamError;
      this.protocolError(e.code ?? 'upstream-error', e.message);
      const fields = e.fields;
      if (fields && e.code === 'upstream-rejected') {
        // The server refused the session itself (database missing, too many connections): relay it.
        fields.set('S', 'FATAL');
        fields.set('V', 'FATAL');
        this.client.end(encodeFields('E', this.maskFields(fields)));
        this.close(e.message);
        return;
      }
      this.fatal(
        e.code === 'upstream-auth' ? '28000' : '08006',
        `Airlock could not connect to ${connection.name}: ${e.message}`,
      );
      return;
    }
    if (this.closed) {
      upstream.socket.destroy();
      return;
    }
    for (const [name, value] of upstream.parameters) {
      const refused = parameterRefusal(name, value);
      if (refused) {
        upstream.socket.end(terminate());
        this.fatal('42501', refused);
        return;
      }
    }
    this.upstream = upstream;
    this.catalog = new Catalog(target);
    this.status = upstream.status;
    this.key = randomKey();
    const upstreamKey = upstream.backendKey;
    this.options.cancels.register(this.key.pid, this.key.secret, async () => {
      if (this.cancelHold) {
        this.cancelHold();
        return;
      }
      if (upstreamKey) {
        await cancelUpstream(target, upstreamKey.pid, upstreamKey.secret);
      }
    });
    const out = [authenticationOk()];
    for (const [name, value] of upstream.parameters) {
      // The client sees the held user, as it is what the server reports.
      out.push(parameterStatus(name, value));
    }
    out.push(...upstream.notices.map((n) => this.maskNotice(n)));
    out.push(backendKeyData(this.key.pid, this.key.secret), readyForQuery(upstream.status));
    this.clientReader.startup = false;
    this.writeClient(out);
    this.attachUpstream(upstream);
  }

  private onClientFrame(frame: Frame): Promise<void> | undefined {
    const type = String.fromCharCode(frame.type);
    if (this.skipUntilSync && type !== 'S' && type !== 'X') return undefined;
    if (this.rereading && !unreadMessages.has(type)) {
      if (this.rereading === 'wait') return this.untilIdle().then(() => this.onClientFrame(frame));
      if (type !== 'S') {
        this.refuseUnread(type);
        return undefined;
      }
      this.rereading = 'wait';
    }
    switch (type) {
      case 'Q':
        return this.onQuery(frame);
      case 'P':
        return this.onParse(frame);
      case 'B': {
        const bind = decodeBind(frame.body);
        this.portals.set(bind.portal, { statement: bind.statement, parameters: bind.parameterCount > 0 });
        this.describedPortals.delete(bind.portal);
        this.forward(frame, { kind: 'bind', portal: bind.portal });
        return undefined;
      }
      case 'D': {
        const target = decodeTarget(frame.body);
        if (target.kind === 'P') this.describedPortals.add(target.name);
        this.forward(frame, { kind: 'describe', target: target.kind, name: target.name, internal: false });
        return undefined;
      }
      case 'E':
        return this.onExecute(frame);
      case 'C': {
        const target = decodeTarget(frame.body);
        if (target.kind === 'S') this.statements.delete(target.name);
        else this.portals.delete(target.name);
        this.forward(frame, { kind: 'close' });
        return undefined;
      }
      case 'S':
        this.skipUntilSync = false;
        this.unsynced = false;
        this.forward(frame, { kind: 'sync' });
        return undefined;
      case 'H':
      case 'd':
      case 'c':
      case 'f':
        this.forward(frame);
        return undefined;
      case 'F':
        return this.onFunctionCall(frame);
      case 'X':
        this.writeUpstream(frame.raw);
        this.close('client terminated the session');
        return undefined;
      default:
        throw new ProtocolViolation(`unexpected message type ${JSON.stringify(type)}`);
    }
  }

  /** Resolves once the server has answered everything forwarded. */
  private untilIdle(): Promise<void> {
    if (this.pending.length === 0) {
      this.rereading = undefined;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** A message sent after a reading-changing Execute, before Sync: refused, so the server rolls the change back. */
  private refuseUnread(type: string): void {
    const record: RequestRecord = {
      text: `${type} message before Sync`,
      kind: undefined,
      outcome: 'blocked',
      started: Date.now(),
      error: { code: '0A000', message: rereadMessage },
    };
    const replaceError = errorResponse('0A000', rereadMessage);
    if (type === 'Q') {
      this.pending.push({ kind: 'query', records: [record], index: 0, replaceError });
      this.writeUpstream(query(poisonQuery));
      return;
    }
    this.pending.push({ kind: 'parse', record, replaceError });
    this.writeUpstream(parse('', poisonQuery));
    this.skipUntilSync = true;
  }

  private forward(frame: Frame, entry?: Pending): void {
    if (entry && entry.kind !== 'sync' && entry.kind !== 'query') this.unsynced = true;
    if (entry) this.pending.push(entry);
    this.writeUpstream(frame.raw);
  }

  /** Statements to decide on: the analysis plus, for EXECUTE name, the PREPAREd statement's. */
  private effectiveAnalysis(analysis: SqlAnalysisResult): SqlAnalysisResult {
    if (!analysis.ok) return analysis;
    const extra: SqlStatementInfo[] = [];
    const prepared = new Map(this.sqlPrepared);
    for (const statement of analysis.statements) {
      // PREPARE and EXECUTE may come in the same query string.
      if (statement.prepared) prepared.set(statement.prepared.name, statement.prepared.inner);
      if (statement.executes === undefined) continue;
      const inner = prepared.get(statement.executes);
      if (inner !== undefined) extra.push(inner);
    }
    return extra.length > 0 ? { ok: true, statements: [...analysis.statements, ...extra] } : analysis;
  }

  private rememberPrepared(analysis: SqlAnalysisResult): void {
    if (!analysis.ok) return;
    for (const statement of analysis.statements) {
      if (statement.prepared) this.sqlPrepared.set(statement.prepared.name, statement.prepared.inner);
    }
  }

  private onQuery(frame: Frame): Promise<void> | undefined {
    const text = decodeQuery(frame.body);
    const started = Date.now();
    const analysis = this.engine.analyze(text);
    const effectiveAnalysis = this.effectiveAnalysis(analysis);
    const decided = this.engine.decide(effectiveAnalysis);
    const syntax = syntaxError(analysis);
    if (syntax) {
      this.startQuery(frame, text, analysis, decided, started, syntax);
      return undefined;
    }
    const viewed = this.throughViews(effectiveAnalysis, decided);
    const copyOut = analysis.ok && analysis.statements.some((s) => s.copy !== undefined);
    if (
      !(viewed instanceof Promise) &&
      viewed.action === 'allow' &&
      !(this.masker && copyOut) &&
      !this.options.events.refusal?.()
    ) {
      this.startQuery(frame, text, analysis, viewed, started, { outcome: 'allowed' });
      if (changesReading(effectiveAnalysis)) this.rereading = 'wait';
      return undefined;
    }
    return (async () => {
      const verdict = await viewed;
      // A COPY masking cannot cover is refused whatever else holds it (an approval included).
      const effective =
        verdict.action === 'deny' ? verdict : ((await this.checkMaskable(analysis)) ?? verdict);
      const gate = await this.gate(effective, text);
      this.startQuery(frame, text, analysis, effective, started, gate);
      if (!gate.error && changesReading(effectiveAnalysis)) this.rereading = 'wait';
    })();
  }

  private startQuery(
    frame: Frame,
    text: string,
    analysis: SqlAnalysisResult,
    verdict: Verdict,
    started: number,
    gate: Gate,
  ): void {
    const statements = analysis.ok && analysis.statements.length > 0 ? analysis.statements : undefined;
    const records: RequestRecord[] = (statements ?? [{ text, kind: undefined }]).map((s) => ({
      text: s.text || text,
      kind: s.kind,
      outcome: 'allowed',
      verdict,
      started,
    }));
    for (const r of records) {
      r.outcome = gate.outcome;
      if (gate.approval) r.approval = gate.approval;
    }
    if (gate.error) {
      // Deny the whole query before anything runs: the server would run earlier statements.
      const first = records[0]!;
      records.splice(1);
      first.text = text;
      first.error = { code: gate.code ?? deniedSqlState, message: gate.error };
      this.pending.push({
        kind: 'query',
        records,
        index: 0,
        replaceError: errorResponse(gate.code ?? deniedSqlState, gate.error, {
          ...(gate.position !== undefined && { position: gate.position }),
        }),
      });
      this.writeUpstream(query(poisonQuery));
      return;
    }
    this.rememberPrepared(analysis);
    this.pending.push({ kind: 'query', records, index: 0 });
    this.writeUpstream(frame.raw);
  }

  /**
   * COPY TO STDOUT can be masked only by detectors (its rows carry no column identities), and
   * binary COPY not at all: refuse what masking could not cover.
   */
  private async checkMaskable(analysis: SqlAnalysisResult): Promise<Verdict | undefined> {
    if (!analysis.ok || !this.masker) return undefined;
    for (const statement of analysis.statements) {
      if (statement.copy?.direction !== 'to' || statement.copy.endpoint !== 'stdio') continue;
      if (statement.copy.format === 'binary') return this.copyRefusal('binary COPY output cannot be masked');
      if (!this.masker.columns || !this.catalog) continue;
      // Only the columns the COPY reads matter ('*' reads them all).
      const columnsByTable = new Map<string, ColumnRef[]>();
      for (const use of statement.columnUses) {
        for (const table of use.table ? [use.table] : statement.tables) {
          let columns = columnsByTable.get(table);
          if (!columns) {
            columns = await this.catalog.columnsOf(table);
            columnsByTable.set(table, columns);
          }
          const masked = columns.find(
            (c) =>
              (use.column === '*' || c.column === use.column) && this.masker?.columnRule(c) !== undefined,
          );
          if (masked) {
            return this.copyRefusal(
              `COPY TO STDOUT cannot mask column ${masked.schema}.${masked.table}.${masked.column}; use SELECT`,
            );
          }
        }
      }
    }
    return undefined;
  }

  /**
   * Views that already exist name a table's columns anew for every statement that reads them,
   * so a use of a view's column inside an expression or a predicate is a use of the table
   * columns it shows (through nested views): decided again with those uses added. Settles at
   * once when every relation is known to be no view.
   */
  private throughViews(analysis: SqlAnalysisResult, verdict: Verdict): Verdict | Promise<Verdict> {
    const catalog = this.catalog;
    if (verdict.action === 'deny' || !this.masker?.columns || !catalog || !analysis.ok) return verdict;
    const statements = analysis.statements;
    if (!statements.some((s) => s.columnUses.some((use) => !use.direct))) return verdict;
    if (catalog.namesNoView([...new Set(statements.flatMap((s) => s.tables))])) return verdict;
    const expand = async (statement: SqlStatementInfo): Promise<SqlStatementInfo> => {
      const behind: SqlStatementInfo['columnUses'] = [];
      for (const use of statement.columnUses) {
        if (use.direct) continue;
        for (const table of use.table ? [use.table] : statement.tables) {
          for (const ref of (await catalog.viewColumns(table, use.column)) ?? []) {
            behind.push({ table: `${ref.schema}.${ref.table}`, column: ref.column, direct: false });
          }
        }
      }
      return behind.length === 0
        ? statement
        : { ...statement, columnUses: [...statement.columnUses, ...behind] };
    };
    return (async () => {
      const expanded: SqlStatementInfo[] = [];
      for (const statement of statements) expanded.push(await expand(statement));
      return this.engine.decide({ ok: true, statements: expanded });
    })().catch(
      (): Verdict => ({
        action: 'deny',
        message: 'the relations it reads could not be checked for views over masked columns',
        reasons: ['masking'],
        wouldHave: [],
      }),
    );
  }

  /** A COPY refused before it runs because masking could not cover its output. */
  private copyRefusal(message: string): Verdict {
    return { action: 'deny', message, reasons: ['masking'], wouldHave: [] };
  }

  /** Applies a verdict: resolves to an error message when the request must not run. */
  private async gate(verdict: Verdict, text: string): Promise<Gate> {
    // Fail closed when the audit trail cannot record what would run.
    const unrecorded = this.options.events.refusal?.();
    if (unrecorded) return { outcome: 'error', error: unrecorded, code: auditUnavailableSqlState };
    if (verdict.action === 'allow') return { outcome: 'allowed' };
    if (verdict.action === 'deny') {
      const message = this.engine.denialMessage(verdict);
      return { outcome: 'blocked', error: message };
    }
    const policy = verdict.policy ?? '';
    const rule = verdict.rule ?? '';
    const sessionKey = `${policy}/${rule}`;
    if (this.sessionApprovals.has(sessionKey))
      return { outcome: 'approved', approval: { request: 'session' } };
    const approvals = this.options.approvals;
    if (!approvals) {
      return {
        outcome: 'blocked',
        error: `Airlock: AccessPolicy ${policy} rule ${rule} requires approval, and approvals are not available`,
      };
    }
    let timeoutMs = verdict.approval?.timeoutMs ?? this.options.defaultApprovalMs ?? 15 * 60_000;
    // An open transaction (explicit, or the implicit one of an unsynced extended-protocol
    // group) holds locks and a snapshot upstream while we wait: bound the wait.
    if (this.status !== 'I' || this.unsynced)
      timeoutMs = Math.min(timeoutMs, this.options.transactionHoldMs ?? 60_000);
    const scope = verdict.approval?.scope ?? 'statement';
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<'expired'>((resolve) => {
      timer = setTimeout(() => resolve('expired'), timeoutMs);
    });
    // A CancelRequest for this session ends the wait, as it would end a running statement.
    const withdrawn = new AbortController();
    const cancelled = new Promise<'cancelled'>((resolve) => {
      this.cancelHold = () => resolve('cancelled');
    });
    const result = await Promise.race([
      cancelled,
      approvals
        .request(
          {
            sessionId: this.id,
            connection: this.options.connection.name,
            policy,
            rule,
            text: this.maskText(text),
            reasons: verdict.reasons ?? [],
            timeoutMs,
            scope,
            approvers: verdict.approval?.approvers ?? { groups: [], users: [] },
          },
          withdrawn.signal,
        )
        .catch(
          (error: unknown): ApprovalResult => ({
            approved: false,
            outcome: 'denied',
            reason: `approval failed: ${(error as Error).message}`,
          }),
        ),
      expired,
    ]).finally(() => {
      clearTimeout(timer);
      this.cancelHold = undefined;
    });
    if (result === 'cancelled' || result === 'expired') withdrawn.abort();
    if (result === 'cancelled') {
      return {
        outcome: 'error',
        code: '57014',
        error: 'canceling statement due to user request (it was waiting for approval)',
      };
    }
    if (result === 'expired' || (!result.approved && result.outcome === 'expired')) {
      return {
        outcome: 'expired',
        error: `Airlock: approval for AccessPolicy ${policy} rule ${rule} expired after ${Math.round(timeoutMs / 1000)} s; the statement did not run`,
      };
    }
    const approval = {
      request: (result as ApprovalResult).request ?? randomUUID(),
      ...((result as ApprovalResult).decidedBy && { decidedBy: (result as ApprovalResult).decidedBy }),
    };
    if (result.approved) {
      if (scope === 'session') this.sessionApprovals.add(sessionKey);
      return { outcome: 'approved', approval };
    }
    return {
      outcome: 'denied',
      approval,
      error: `Airlock: approval for AccessPolicy ${policy} rule ${rule} was denied${result.reason ? `: ${result.reason}` : ''}`,
    };
  }

  private onParse(frame: Frame): Promise<void> | undefined {
    const message = decodeParse(frame.body);
    const analysis = this.engine.analyze(message.text);
    const effectiveAnalysis = this.effectiveAnalysis(analysis);
    const viewed = this.throughViews(effectiveAnalysis, this.engine.decide(effectiveAnalysis));
    const copy = this.masker && analysis.ok && analysis.statements.some((s) => s.copy !== undefined);
    if (viewed instanceof Promise || copy) {
      return (async () => {
        const decided = await viewed;
        const verdict =
          decided.action === 'deny' ? decided : ((await this.checkMaskable(analysis)) ?? decided);
        this.parseDecided(frame, message, analysis, verdict);
      })();
    }
    this.parseDecided(frame, message, analysis, viewed);
    return undefined;
  }

  private parseDecided(
    frame: Frame,
    message: ReturnType<typeof decodeParse>,
    analysis: SqlAnalysisResult,
    verdict: Verdict,
  ): void {
    const kind = analysis.ok ? analysis.statements[0]?.kind : undefined;
    const syntax = syntaxError(analysis);
    if (syntax || verdict.action === 'deny') {
      const code = syntax ? syntax.code : deniedSqlState;
      const error = syntax ? syntax.error : this.engine.denialMessage(verdict);
      const record: RequestRecord = {
        text: message.text,
        kind,
        outcome: syntax ? syntax.outcome : 'blocked',
        verdict,
        started: Date.now(),
        error: { code, message: error },
      };
      this.pending.push({
        kind: 'parse',
        record,
        replaceError: errorResponse(code, error, { ...(syntax && { position: syntax.position }) }),
      });
      this.writeUpstream(parse(message.name, poisonQuery));
      this.skipUntilSync = true;
      return;
    }
    // Held statements wait at Execute, so each execution is approved.
    this.statements.set(message.name, {
      text: message.text,
      verdict,
      kind,
      changesReading: changesReading(analysis),
    });
    this.rememberPrepared(analysis);
    this.forward(frame, { kind: 'parse', text: message.text });
  }

  private onExecute(frame: Frame): Promise<void> | undefined {
    const { portal } = decodeExecute(frame.body);
    const statementName = this.portals.get(portal)?.statement;
    const statement = statementName === undefined ? undefined : this.statements.get(statementName);
    const record: RequestRecord = {
      text: statement?.text ?? '',
      kind: statement?.kind,
      outcome: 'allowed',
      started: Date.now(),
      ...(statement && { verdict: statement.verdict }),
    };
    if (statement && (statement.verdict.action !== 'allow' || this.options.events.refusal?.())) {
      return this.gate(statement.verdict, statement.text).then((gate) => {
        record.outcome = gate.outcome;
        if (gate.approval) record.approval = gate.approval;
        if (!gate.error) {
          this.startExecute(frame, portal, record);
          return;
        }
        record.error = { code: gate.code ?? deniedSqlState, message: gate.error };
        this.pending.push({
          kind: 'execute',
          portal,
          record,
          replaceError: errorResponse(gate.code ?? deniedSqlState, gate.error),
        });
        // Executing a portal that does not exist fails without side effects.
        const poison = Buffer.from(`E\0\0\0\0airlock-denied-${randomUUID()}\0\0\0\0\0`, 'latin1');
        poison.writeInt32BE(poison.length - 1, 1);
        this.writeUpstream(poison);
        this.skipUntilSync = true;
      });
    }
    this.startExecute(frame, portal, record);
    return undefined;
  }

  private startExecute(frame: Frame, portal: string, record: RequestRecord): void {
    const statementName = this.portals.get(portal)?.statement;
    if (statementName !== undefined && this.statements.get(statementName)?.changesReading)
      this.rereading = 'sync';
    if (this.masker && !this.describedPortals.has(portal)) {
      // Rows must be masked by column: learn the portal's columns without the client seeing it.
      this.describedPortals.add(portal);
      this.pending.push({ kind: 'describe', target: 'P', name: portal, internal: true });
      this.writeUpstream(describe('P', portal));
    }
    this.forward(frame, { kind: 'execute', portal, record });
  }

  private onFunctionCall(frame: Frame): undefined {
    const oid = new BodyReader(frame.body).uint32();
    const record: RequestRecord = {
      text: `FunctionCall ${oid}`,
      kind: 'CALL',
      outcome: 'allowed',
      started: Date.now(),
    };
    // A FunctionCall runs a function by OID, outside SQL analysis: it is refused whenever an
    // enforce-mode policy has rules or masking for this Connection.
    if (this.engine.enforcing) {
      const message =
        'Airlock denied a FunctionCall message: fast-path function calls bypass policy; use SELECT';
      record.outcome = 'blocked';
      record.error = { code: deniedSqlState, message };
      this.pending.push({ kind: 'function', record, replaceError: errorResponse(deniedSqlState, message) });
      this.writeUpstream(query(poisonQuery));
      return undefined;
    }
    this.forward(frame, { kind: 'function', record });
    // A function called by OID may be set_config.
    this.rereading = 'wait';
    return undefined;
  }

  // ---------------------------------------------------------------------------------------
  // Server side

  private pumpServer(): void {
    const upstream = this.upstream;
    if (!upstream) return;
    const out: Buffer[] = [];
    this.rows.reset();
    while (!this.serverBusy && !this.closed) {
      let frame: Frame | undefined;
      try {
        const run = upstream.reader.takeRun(0x44);
        if (run) {
          this.onDataRows(run, out);
          continue;
        }
        frame = upstream.reader.next();
      } catch (error) {
        this.protocolError('server-frame', (error as Error).message);
        this.writeClient(out);
        this.fatal('08P01', `invalid message from the server: ${(error as Error).message}`);
        return;
      }
      if (!frame) break;
      let step: Promise<void> | undefined;
      try {
        step = this.onServerFrame(frame, out);
      } catch (error) {
        this.protocolError('server-message', (error as Error).message);
        this.writeClient(out);
        this.fatal('08P01', `invalid message from the server: ${(error as Error).message}`);
        return;
      }
      if (step) {
        this.writeClient(out);
        out.length = 0;
        this.serverBusy = true;
        this.flowUpstream();
        step.then(
          () => {
            this.serverBusy = false;
            this.flowUpstream();
            this.pumpServer();
          },
          (error: unknown) => {
            this.protocolError('masking-error', (error as Error).message);
            this.fatal(
              'XX000',
              `Airlock could not resolve result columns for masking: ${(error as Error).message}`,
            );
          },
        );
        return;
      }
    }
    this.writeClient(out);
  }

  private onServerFrame(frame: Frame, out: Buffer[]): Promise<void> | undefined {
    const type = frame.type;
    const head = this.pending[0];
    switch (type) {
      case 0x44: {
        // DataRow: the hot path.
        const masked = this.masker
          ? this.maskRow(frame.raw, 0, frame.raw.length, this.currentLayout(head), this.recordOf(head))
          : undefined;
        out.push(masked ?? frame.raw);
        this.countRow(head);
        return undefined;
      }
      case 0x4e: // NoticeResponse
        out.push(this.maskNotice(frame.raw));
        return undefined;
      case 0x41: // NotificationResponse
        out.push(frame.raw);
        return undefined;
      case 0x53: {
        // ParameterStatus: a SET that makes the server read SQL otherwise than the enforcer ends the session.
        const [name, value] = decodeParameterStatus(frame.body);
        const refused = parameterRefusal(name, value);
        if (refused) {
          this.writeClient(out.splice(0));
          this.protocolError('unsupported-setting', refused);
          this.fatal('42501', refused);
          return undefined;
        }
        out.push(frame.raw);
        return undefined;
      }
      case 0x45: // ErrorResponse
        this.onServerError(frame, head, out);
        return undefined;
      case 0x5a: // ReadyForQuery
        this.status = String.fromCharCode(frame.body[0] ?? 73) as TransactionStatus;
        this.completeThrough(head, out, frame.raw);
        return undefined;
      case 0x54: {
        // RowDescription
        const columns = decodeRowDescription(frame.body);
        if (head?.kind === 'describe') {
          this.pending.shift();
          if (!head.internal) out.push(frame.raw);
          if (head.target === 'P' && this.masker)
            return this.compileLayout(columns, (l) => this.portalLayouts.set(head.name, l));
          return undefined;
        }
        out.push(frame.raw);
        if (this.masker) return this.compileLayout(columns, (l) => (this.layout = l));
        return undefined;
      }
      case 0x6e: // NoData
        if (head?.kind === 'describe') {
          this.pending.shift();
          if (head.target === 'P') this.portalLayouts.set(head.name, null);
          if (head.internal) return undefined;
        }
        out.push(frame.raw);
        return undefined;
      case 0x74: // ParameterDescription (Describe statement: RowDescription or NoData follows)
        out.push(frame.raw);
        return undefined;
      case 0x31: // ParseComplete
      case 0x32: // BindComplete
      case 0x33: // CloseComplete
        if (head && (head.kind === 'parse' || head.kind === 'bind' || head.kind === 'close'))
          this.pending.shift();
        out.push(frame.raw);
        return undefined;
      case 0x43: {
        // CommandComplete
        this.finishStatement(head, decodeCommandComplete(frame.body));
        this.copyOut = undefined;
        this.layout = undefined;
        out.push(frame.raw);
        return undefined;
      }
      case 0x73: // PortalSuspended
        if (head?.kind === 'execute') {
          this.pending.shift();
          this.emitRequest(head.record);
        }
        out.push(frame.raw);
        return undefined;
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
        this.copyOut = { csv: this.copyFormat(this.recordOf(head)) !== 'text' };
        out.push(frame.raw);
        return undefined;
      }
      case 0x64: // CopyData
        if (this.copyOut && this.masker) out.push(this.maskCopyRow(frame, this.recordOf(head)));
        else out.push(frame.raw);
        return undefined;
      case 0x56: // FunctionCallResponse
        out.push(this.masker ? this.maskLossyMessage(frame) : frame.raw);
        return undefined;
      default:
        // CopyInResponse, CopyDone, CopyBothResponse and anything newer: relay unchanged.
        out.push(frame.raw);
        return undefined;
    }
  }

  /** DataRows in bulk: unchanged rows go out as one view of the received chunk. */
  private onDataRows(run: MessageRun, out: Buffer[]): void {
    const head = this.pending[0];
    const record = this.recordOf(head);
    if (record) record.rows = (record.rows ?? 0) + run.count;
    const { chunk, end } = run;
    if (!this.masker) {
      out.push(chunk.subarray(run.start, end));
      return;
    }
    const layout = this.currentLayout(head);
    let span = run.start;
    let at = run.start;
    while (at < end) {
      const next =
        at +
        1 +
        (((chunk[at + 1]! << 24) | (chunk[at + 2]! << 16) | (chunk[at + 3]! << 8) | chunk[at + 4]!) >>> 0);
      const masked = this.maskRow(chunk, at, next, layout, record);
      if (masked) {
        if (span < at) out.push(chunk.subarray(span, at));
        out.push(masked);
        span = next;
      }
      at = next;
    }
    if (span < end) out.push(chunk.subarray(span, end));
  }

  private recordOf(head: Pending | undefined): RequestRecord | undefined {
    if (!head) return undefined;
    if (head.kind === 'query') return head.records[head.index];
    if (head.kind === 'execute' || head.kind === 'function') return head.record;
    return undefined;
  }

  private countRow(head: Pending | undefined): void {
    const record = this.recordOf(head);
    if (record) record.rows = (record.rows ?? 0) + 1;
  }

  private finishStatement(head: Pending | undefined, tag: string | undefined): void {
    if (!head) return;
    const record = this.recordOf(head);
    if (record) {
      const rows = tag === undefined ? undefined : rowsFromTag(tag);
      if (rows !== undefined) record.rows = rows;
    }
    // After this session changes the schema, column identities are looked up again.
    if (record?.kind && schemaChanging.has(record.kind)) this.catalog?.invalidate();
    if (head.kind === 'query') {
      if (record) this.emitRequest(record);
      head.index++;
    } else if (head.kind === 'execute') {
      this.pending.shift();
      this.emitRequest(head.record);
    }
  }

  private onServerError(frame: Frame, head: Pending | undefined, out: Buffer[]): void {
    const replaced = head && 'replaceError' in head ? head.replaceError : undefined;
    const fields = decodeFields(frame.body);
    const record = this.recordOf(head) ?? this.recordForFailure(head);
    if (replaced) out.push(replaced);
    else out.push(this.masker ? encodeFields('E', this.maskFields(fields)) : frame.raw);
    if (record && !record.error) {
      // A server error (the denial's own error is already recorded).
      // Server messages can quote bound parameter values ("invalid input syntax for type
      // integer: ..."), which events never carry.
      const bound =
        head &&
        (head.kind === 'bind' || head.kind === 'execute') &&
        this.portals.get(head.portal)?.parameters;
      record.error = {
        code: fields.get('C') ?? 'XX000',
        message: bound
          ? 'server error (message withheld: it may quote bound parameters)'
          : this.maskText(fields.get('M') ?? ''),
      };
      if (record.outcome === 'allowed') record.outcome = 'error';
    }
    this.copyOut = undefined;
    this.layout = undefined;
    if (!head) return;
    if (head.kind === 'query') {
      if (record) this.emitRequest(record);
      head.index = head.records.length;
      return;
    }
    if (head.kind === 'function') return;
    // Extended protocol: the server skips everything up to Sync, so the enforcer drops what the
    // client sends before it (it would never be answered).
    if (record) this.emitRequest(record);
    while (this.pending.length > 0 && this.pending[0]!.kind !== 'sync') this.pending.shift();
    if (this.pending.length === 0) this.skipUntilSync = true;
  }

  /** A record for an extended-protocol statement that failed before Execute (at Parse or Bind). */
  private recordForFailure(head: Pending | undefined): RequestRecord | undefined {
    if (head?.kind === 'parse') {
      if (head.record) return head.record;
      if (head.text === undefined) return undefined;
      return { text: head.text, kind: undefined, outcome: 'error', started: Date.now() };
    }
    if (head?.kind === 'bind') {
      const name = this.portals.get(head.portal)?.statement;
      const statement = name === undefined ? undefined : this.statements.get(name);
      if (!statement) return undefined;
      return { text: statement.text, kind: statement.kind, outcome: 'error', started: Date.now() };
    }
    return undefined;
  }

  private completeThrough(head: Pending | undefined, out: Buffer[], raw: Buffer): void {
    if (head && (head.kind === 'sync' || head.kind === 'query' || head.kind === 'function')) {
      this.pending.shift();
      if (head.kind === 'query')
        for (const r of head.records)
          if (r.error || r.rows !== undefined || r.outcome !== 'allowed') this.emitRequest(r);
      if (head.kind === 'function') this.emitRequest(head.record);
      if (this.pending.length === 0 && this.rereading === 'wait') {
        this.rereading = undefined;
        for (const resolve of this.idleWaiters.splice(0)) queueMicrotask(resolve);
      }
    }
    this.layout = undefined;
    out.push(raw);
  }

  // ---------------------------------------------------------------------------------------
  // Masking

  private currentLayout(head: Pending | undefined): Layout | undefined {
    if (head?.kind === 'execute') return this.portalLayouts.get(head.portal) ?? undefined;
    return this.layout;
  }

  private compileLayout(
    columns: ColumnDescription[],
    set: (layout: Layout) => void,
  ): Promise<void> | undefined {
    const masker = this.masker;
    if (!masker) return undefined;
    const build = (): void => {
      set(
        columns.map((c): ColumnPlan => {
          const refs =
            masker.columns && c.tableOid !== 0 ? (this.catalog?.refs(c.tableOid, c.attnum) ?? []) : [];
          let rule: ColumnMask | undefined;
          for (const ref of refs) {
            rule = masker.columnRule(ref);
            if (rule) break;
          }
          const textual = textTypes.has(c.typeOid);
          const binary = c.format === 1;
          const plan: ColumnPlan = { action: 'skip', textual, binary, jsonb: binary && c.typeOid === 3802 };
          const held = heldTypes.get(c.typeOid);
          if (rule !== undefined) {
            plan.action = 'mask';
            plan.rule = rule;
          } else if (!masker.scans) plan.action = 'skip';
          else if (held === 'bytea' || (held && binary)) {
            plan.action = 'text';
            plan.held = held;
          } else if (!binary || textual) plan.action = 'text';
          else plan.action = opaqueTypes.has(c.typeOid) ? 'skip' : 'lossy';
          return plan;
        }),
      );
    };
    const catalog = this.catalog;
    const unresolved =
      masker.columns && catalog ? columns.filter((c) => catalog.needs(c.tableOid, c.attnum)) : [];
    if (unresolved.length === 0 || !this.catalog) {
      build();
      return undefined;
    }
    // Hold the result stream until the columns' tables are known.
    return this.catalog.resolve(unresolved.map((c) => c.tableOid)).then(build);
  }

  private addCounts(
    record: RequestRecord | undefined,
    result: { counts: Record<string, number>; wouldMask?: Record<string, number> },
  ): void {
    if (!record) return;
    for (const key in result.counts) {
      const n = result.counts[key]!;
      if (n === 0) continue;
      record.masked ??= {};
      record.masked[key] = (record.masked[key] ?? 0) + n;
    }
    for (const key in result.wouldMask) {
      const n = result.wouldMask[key]!;
      if (n === 0) continue;
      record.wouldMask ??= {};
      record.wouldMask[key] = (record.wouldMask[key] ?? 0) + n;
    }
  }

  /**
   * Masks the DataRow at raw[base, limit); undefined when nothing changed. The hot path: field
   * boundaries are read straight from the bytes, and only a changed value allocates.
   */
  private maskRow(
    raw: Buffer,
    base: number,
    limit: number,
    layout: Layout | undefined,
    record: RequestRecord | undefined,
  ): Buffer | undefined {
    const masker = this.masker!;
    if (limit - base < 7) throw new ProtocolViolation('DataRow shorter than its header');
    const count = (raw[base + 5]! << 8) | raw[base + 6]!;
    let at = base + 7;
    const changedAt = this.changedAt;
    const changedTo = this.changedTo;
    let changes = 0;
    // An ASCII row is decoded once, and its fields are substrings: one native call per row
    // instead of one per value.
    this.rowText = undefined;
    this.rowAscii = undefined;
    for (let i = 0; i < count; i++) {
      if (at + 4 > limit) throw new ProtocolViolation('DataRow shorter than its fields');
      const length = (raw[at]! << 24) | (raw[at + 1]! << 16) | (raw[at + 2]! << 8) | raw[at + 3]!;
      at += 4;
      if (length < 0) continue;
      const end = at + length;
      if (end > limit) throw new ProtocolViolation('DataRow field beyond the message');
      const plan = layout?.[i] ?? unknownColumn;
      if (
        plan.action === 'mask' ||
        (plan.action !== 'skip' && (length >= masker.minScanLength || plan.held !== undefined))
      ) {
        const result = this.maskValue(masker, raw, base + 7, limit, at, end, plan, record);
        if (result !== unchanged) {
          changedAt[changes] = i;
          changedTo[changes++] = result;
        }
      }
      at = end;
    }
    if (changes === 0) return undefined;
    return this.rows.write(raw, base, limit, changedAt, changedTo, changes);
  }

  /** The masked value of raw[start, end), null for NULL, or `unchanged`. */
  private maskValue(
    masker: Masker,
    raw: Buffer,
    fieldsStart: number,
    limit: number,
    start: number,
    end: number,
    plan: ColumnPlan,
    record: RequestRecord | undefined,
  ): string | Buffer | null | typeof unchanged {
    if (plan.held) return this.maskHeld(masker, raw, start, end, plan.held, plan.binary, record);
    const rule = plan.rule;
    if (plan.action === 'mask' && rule && plan.binary && !plan.textual) {
      // A binary non-text value cannot carry a mask: it becomes NULL.
      const wouldMask = Object.fromEntries(rule.wouldMask.map((key) => [key, 1]));
      if (rule.audit) {
        this.addCounts(record, { counts: {}, wouldMask: { ...wouldMask, [rule.key]: 1 } });
        return unchanged;
      }
      this.addCounts(record, { counts: { [rule.key]: 1 }, wouldMask });
      return null;
    }
    const from = plan.jsonb ? start + 1 : start;
    if (this.rowAscii === undefined) this.rowAscii = isAscii(raw, fieldsStart, limit);
    let text: string;
    if (this.rowAscii) {
      this.rowText ??= raw.toString('latin1', fieldsStart, limit);
      text = this.rowText.substring(from - fieldsStart, end - fieldsStart);
    } else {
      text = raw.toString('utf8', from, end);
    }
    const result = masker.mask(text, plan.action === 'mask' ? rule : undefined, this.rowAscii);
    if (record && (hasKeys(result.counts) || hasKeys(result.wouldMask))) this.addCounts(record, result);
    if (result.value === text) return unchanged;
    // Masked text in a non-text column would not decode: send NULL instead.
    if (!plan.textual || plan.action === 'lossy') return null;
    // jsonb binary keeps its version byte (1).
    return plan.jsonb ? `\u0001${result.value}` : result.value;
  }

  /**
   * A value read by what its type holds. A bytea is its bytes (never its hex digits): text found
   * in them is masked and the value stays a bytea of the masked bytes. Binary int8, numeric and
   * inet are scanned as the text the server would have sent, and become NULL when anything is found.
   */
  private maskHeld(
    masker: Masker,
    raw: Buffer,
    start: number,
    end: number,
    held: Held,
    binary: boolean,
    record: RequestRecord | undefined,
  ): string | Buffer | null | typeof unchanged {
    if (held !== 'bytea') {
      const text = heldText(held, raw, start, end);
      const result = masker.mask(text);
      if (record && (hasKeys(result.counts) || hasKeys(result.wouldMask))) this.addCounts(record, result);
      return result.value === text ? unchanged : null;
    }
    const decoded = binary
      ? { bytes: raw.subarray(start, end), hex: false }
      : byteaBytes(raw.subarray(start, end));
    if (decoded.bytes.length < masker.minScanLength) return unchanged;
    // Bytes that are not UTF-8 are read one character per byte, so they come back unchanged.
    const encoding = isUtf8(decoded.bytes) ? 'utf8' : 'latin1';
    const text = decoded.bytes.toString(encoding);
    const result = masker.mask(text);
    if (record && (hasKeys(result.counts) || hasKeys(result.wouldMask))) this.addCounts(record, result);
    if (result.value === text) return unchanged;
    const masked = Buffer.from(result.value, encoding);
    return binary ? masked : byteaText(masked, decoded.hex);
  }

  /** The format of the COPY a record runs, from its parse tree (csv when it cannot be told: whole lines). */
  private copyFormat(record: RequestRecord | undefined): string {
    const analysis = this.engine.analyze(record?.text ?? '');
    return (analysis.ok && analysis.statements.find((s) => s.copy)?.copy?.format) || 'csv';
  }

  /** COPY TO STDOUT rows: detectors over each field (text format) or the whole line (CSV). */
  private maskCopyRow(frame: Frame, record: RequestRecord | undefined): Buffer {
    const masker = this.masker!;
    if (!masker.scans) return frame.raw;
    const line = frame.body.toString('utf8');
    const fields = this.copyOut?.csv ? [line] : line.split('\t');
    let changed = false;
    const masked = fields.map((field) => {
      const result = masker.mask(field);
      this.addCounts(record, result);
      if (result.value !== field) changed = true;
      return result.value;
    });
    return changed ? encodeCopyData(Buffer.from(masked.join('\t'), 'utf8')) : frame.raw;
  }

  private maskLossyMessage(frame: Frame): Buffer {
    const text = frame.body.toString('utf8');
    const result = this.masker!.mask(text);
    if (result.value === text) return frame.raw;
    // A FunctionCallResponse whose value would be masked becomes a NULL result.
    return Buffer.from([0x56, 0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff]);
  }

  private maskText(text: string): string {
    return this.masker ? this.masker.mask(text).value : text;
  }

  /** Error and notice text can carry values (CAST(ssn AS int) puts the value in the message). */
  private maskFields(fields: Map<string, string>): Map<string, string> {
    if (!this.masker) return fields;
    for (const code of ['M', 'D', 'H', 'W', 'q']) {
      const value = fields.get(code);
      if (value !== undefined) fields.set(code, this.maskText(value));
    }
    return fields;
  }

  private maskNotice(raw: Buffer): Buffer {
    if (!this.masker) return raw;
    return encodeFields('N', this.maskFields(decodeFields(raw.subarray(5))));
  }
}

const unchanged: unique symbol = Symbol('unchanged');

/** A column without a description: scanned, and NULL when anything is found. */
const unknownColumn: ColumnPlan = { action: 'lossy', textual: false, binary: true, jsonb: false };

function isAscii(bytes: Buffer, start: number, end: number): boolean {
  return isAsciiBytes(bytes.subarray(start, end));
}

function hasKeys(object: Record<string, number> | undefined): boolean {
  for (const _ in object) return true;
  return false;
}

/**
 * Text the parser rejects fails as the server would fail it (42601, the parser's message and
 * position) without reaching the server; what it cannot analyze otherwise is a policy refusal.
 */
function syntaxError(
  analysis: SqlAnalysisResult,
): (Gate & { error: string; code: string; position: number }) | undefined {
  if (analysis.ok || !analysis.syntax) return undefined;
  return {
    outcome: 'error',
    error: analysis.syntax.message,
    code: '42601',
    position: analysis.syntax.position,
  };
}

function randomKey(): { pid: number; secret: number } {
  const bytes = new Uint32Array(2);
  crypto.getRandomValues(bytes);
  return { pid: (bytes[0]! & 0x7fffffff) | 1, secret: bytes[1]! | 0 };
}

/** Whether running the analysed text may change how the server reads the SQL text that follows. */
function changesReading(analysis: SqlAnalysisResult): boolean {
  return analysis.ok && analysis.statements.some((s) => s.changesReading);
}
