// One client session through the PostgreSQL enforcer: client ↔ enforcer ↔ server.
//
// The session coordinates the parts that do each job: the relay moves messages between the
// two sockets with flow control, the startup phase runs until the first ReadyForQuery, the
// client's messages are analysed and decided here before they are forwarded, the responses
// side masks and records the server's messages, and the gate holds approvals and events.
// Nothing is buffered beyond one message.
//
// Ordering: every forwarded client message that the server answers is expected in `pending`,
// in order, so the enforcer knows which request each response belongs to (for events, masking
// layouts and error skipping). The enforcer never answers a client message by itself once the
// session is up: a denied message is replaced upstream by a "poison" message that the server
// rejects (a syntax error, or Execute of a portal that does not exist), and the server's
// ErrorResponse is replaced by the denial. So the denial arrives in order with pipelined
// results, the server skips to Sync after it exactly as after its own errors, an implicit
// transaction is rolled back and an explicit one goes to E (failed), and ReadyForQuery
// carries the true transaction status.
import { randomUUID } from 'node:crypto';
import type { LookupFunction, Socket } from 'node:net';
import type { BundleConnection, Identity } from '../../api/bundle.ts';
import type { EventSink } from '../../api/events.ts';
import type { Approvals } from '../core/enforcer.ts';
import { sqlStates } from '../core/errors.ts';
import type { ActingFor, PolicyVariants } from '../identity/session.ts';
import type { EndUserVerifier } from '../identity/verifier.ts';
import { readsTheSameUnderAnySettings } from '../policy/sql-text.ts';
import { Catalog } from './catalog.ts';
import { checkMaskable, rememberPrepared, syntaxError, throughViews, withPrepared } from './decisions.ts';
import type { Frame, FrameError } from './frames.ts';
import { type Gate, refusal, SessionGate } from './gate.ts';
import {
  BodyReader,
  decodeBind,
  decodeExecute,
  decodeParse,
  decodeQuery,
  decodeTarget,
  describe,
  errorResponse,
  type ParseMessage,
  ProtocolViolation,
  parse,
  query,
  type TransactionStatus,
  terminate,
} from './messages.ts';
import { type Pending, PendingQueue, type RequestRecord } from './pending.ts';
import type { Masker, PolicyEngine, SqlAnalysisResult, Verdict } from './policy.ts';
import { Relay } from './relay.ts';
import { type ResponseHost, Responses } from './responses.ts';
import { ServerReading } from './settings.ts';
import { onStartupFrame, type StartupHost } from './startup.ts';
import { PreparedNames } from './statements.ts';
import { cancelUpstream, type Upstream, type UpstreamTarget } from './upstream.ts';

// How a held statement gets a human decision: the contract every enforcer shares.

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
  /** On a Connection with endUser: the token's verifier, and the engine of each set of policies. */
  endUser?: { verifier: EndUserVerifier; engines: PolicyVariants<Promise<PolicyEngine>> };
}

const poisonQuery = 'AIRLOCK DENIED';
const deniedSqlState = '42501';

const rereadMessage =
  'Airlock reads no new SQL text after a statement ran before Sync when the text holds a byte outside ASCII or a backslash: code the statement ran (a function, a trigger, a view, a row-level security policy) may have changed client_encoding or standard_conforming_strings, which the server reports only at Sync. Send Sync first, or pass such values as parameters';

export class PostgresSession implements StartupHost, ResponseHost {
  readonly id = randomUUID();
  readonly options: SessionOptions;
  readonly relay: Relay;
  readonly gate: SessionGate;
  readonly pending = new PendingQueue();
  readonly names = new PreparedNames();
  readonly reading = new ServerReading();
  catalog: Catalog | undefined;
  passwordStep: StartupHost['passwordStep'];
  private engine: PolicyEngine;
  private responses: Responses;
  private status: TransactionStatus = 'I';
  private key = { pid: 0, secret: 0 };

  // Client-side protocol state.
  private skipUntilSync = false;
  /** Extended-protocol messages forwarded since the last Sync (an implicit transaction is open). */
  private unsynced = false;
  /**
   * A Bind or Execute was forwarded since the last Sync: code it ran (a function, a trigger, a
   * view, a row-level security policy, a domain's check) may have changed how the server reads
   * SQL text, and the server reports that only at Sync.
   */
  private ranUnsynced = false;
  /** Waiting for every ReadyForQuery owed (see settled). */
  private readonly settleWaiters: (() => void)[] = [];

  constructor(client: Socket, options: SessionOptions) {
    this.options = options;
    this.engine = options.engine;
    this.gate = new SessionGate({ ...options, sessionId: this.id });
    this.responses = new Responses(this, options.engine);
    this.relay = new Relay(client, {
      clientFrame: (frame) =>
        this.passwordStep
          ? this.passwordStep(frame)
          : this.relay.clientReader.startup
            ? onStartupFrame(frame, this)
            : this.onClientFrame(frame),
      clientFramingError: (error) => this.onFramingError(error),
      clientFailure: (error) => this.onClientError(error),
      serverBatch: () => this.responses.batch(),
      serverRows: (run, out) => this.responses.dataRows(run, out),
      serverFrame: (frame, out) => this.responses.frame(frame, out),
      serverFailure: (code, error, out) => {
        this.gate.protocolError(code, error.message);
        this.relay.writeClient(out);
        this.fatal('08P01', `invalid message from the server: ${error.message}`);
      },
      serverStepFailure: (error) => {
        this.gate.protocolError('masking-error', (error as Error).message);
        this.fatal(
          'XX000',
          `Airlock could not resolve result columns for masking: ${(error as Error).message}`,
        );
      },
      close: (reason) => this.close(reason),
    });
  }

  /** A statement is running, held for approval or being answered: a drain waits for it. */
  busy(): boolean {
    if (this.relay.closed) return false;
    return !this.pending.empty || this.relay.busy || this.gate.holding;
  }

  close(reason: string): void {
    if (this.relay.closed) return;
    this.relay.close(terminate());
    this.gate.cancelWait();
    if (this.key.pid) this.options.cancels.unregister(this.key.pid, this.key.secret);
    this.catalog?.close();
    this.gate.end(reason, this.relay.bytesIn, this.relay.bytesOut);
  }

  /** Sends a FATAL error to the client and ends the session. */
  fatal(code: string, message: string): void {
    if (this.relay.closed) return;
    this.relay.endClient(errorResponse(code, message, { severity: 'FATAL' }));
    this.close(message);
  }

  // ---------------------------------------------------------------------------------------
  // What the startup phase and the server side report

  adopt(upstream: Upstream, target: UpstreamTarget): { pid: number; secret: number } {
    this.relay.upstream = upstream;
    this.catalog = new Catalog(target);
    this.status = upstream.status;
    this.key = randomKey();
    const upstreamKey = upstream.backendKey;
    this.options.cancels.register(this.key.pid, this.key.secret, async () => {
      if (this.gate.cancelWait()) return;
      if (upstreamKey) {
        await cancelUpstream(target, upstreamKey.pid, upstreamKey.secret);
      }
    });
    return this.key;
  }

  get masker(): Masker | undefined {
    return this.engine.masker;
  }

  async actFor(acting: ActingFor): Promise<void> {
    const engine = await this.options.endUser!.engines.for(acting.policies);
    this.engine = engine;
    // Nothing has come from the server yet: its responses are read under the session's policies.
    this.responses = new Responses(this, engine);
    this.gate.actFor(acting, engine);
  }

  ready(status: TransactionStatus): void {
    this.status = status;
  }

  settled(): void {
    for (const resolve of this.settleWaiters.splice(0)) queueMicrotask(resolve);
  }

  skipClientUntilSync(): void {
    this.skipUntilSync = true;
  }

  // ---------------------------------------------------------------------------------------
  // Client side

  private onFramingError(error: FrameError): void {
    this.gate.protocolError(error.code, error.message);
    // The server answers a startup packet of an invalid length by closing, without a word.
    if (this.relay.clientReader.startup) this.close(`invalid startup packet: ${error.message}`);
    else this.fatal(error.code === 'frame-too-large' ? '54000' : '08P01', error.message);
  }

  private onClientError(error: unknown): void {
    if (error instanceof ProtocolViolation) {
      this.gate.protocolError(error.code, error.message);
      this.fatal('08P01', `invalid message from client: ${error.message}`);
      return;
    }
    this.gate.protocolError('internal-error', (error as Error).message);
    this.fatal('XX000', `Airlock enforcer error: ${(error as Error).message}`);
  }

  private onClientFrame(frame: Frame): Promise<void> | undefined {
    const type = String.fromCharCode(frame.type);
    if (this.skipUntilSync && type !== 'S' && type !== 'X') return undefined;
    // SQL text that the server could read otherwise than the enforcer, once code it ran changed
    // a setting, is read only once the server has reported every change (at ReadyForQuery).
    if ((type === 'Q' || type === 'P') && !readsTheSameUnderAnySettings(sqlTextOf(frame))) {
      if (this.ranUnsynced) {
        this.refuseUnread(type);
        return undefined;
      }
      if (this.pending.owesReady) return this.untilSettled().then(() => this.onClientFrame(frame));
    }
    switch (type) {
      case 'Q':
        return this.onQuery(frame);
      case 'P':
        return this.onParse(frame);
      case 'B': {
        const bind = decodeBind(frame.body);
        this.names.bound(bind.portal, bind.statement, bind.parameterCount > 0);
        this.ranUnsynced = true;
        this.forward(frame, { kind: 'bind', portal: bind.portal });
        return undefined;
      }
      case 'D': {
        const target = decodeTarget(frame.body);
        if (target.kind === 'P') this.names.described(target.name);
        this.forward(frame, { kind: 'describe', target: target.kind, name: target.name, internal: false });
        return undefined;
      }
      case 'E':
        return this.onExecute(frame);
      case 'C': {
        const target = decodeTarget(frame.body);
        if (target.kind === 'P') this.names.closedPortal(target.name);
        // A statement's name is forgotten when the server says it closed it, not before.
        this.forward(frame, { kind: 'close', ...(target.kind === 'S' && { statement: target.name }) });
        return undefined;
      }
      case 'S':
        this.names.synced();
        this.skipUntilSync = false;
        this.unsynced = false;
        this.ranUnsynced = false;
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
        this.relay.writeUpstream(frame.raw);
        this.close('client terminated the session');
        return undefined;
      default:
        throw new ProtocolViolation(`unexpected message type ${JSON.stringify(type)}`);
    }
  }

  /** Resolves once every Query, Sync and FunctionCall forwarded has its ReadyForQuery. */
  private untilSettled(): Promise<void> {
    if (!this.pending.owesReady) return Promise.resolve();
    return new Promise((resolve) => this.settleWaiters.push(resolve));
  }

  /** Text that could read otherwise, sent after a Bind or Execute before Sync: refused, so the server rolls any change back. */
  private refuseUnread(type: string): void {
    const record: RequestRecord = {
      text: `${type} message before Sync`,
      kind: undefined,
      outcome: 'blocked',
      started: Date.now(),
      error: refusal('unsupported', rereadMessage),
    };
    const replaceError = errorResponse(sqlStates.unsupported, rereadMessage);
    if (type === 'Q') {
      this.pending.expect({ kind: 'query', records: [record], index: 0, replaceError });
      this.relay.writeUpstream(query(poisonQuery));
      return;
    }
    this.pending.expect({ kind: 'parse', record, replaceError });
    this.relay.writeUpstream(parse('', poisonQuery));
    this.skipUntilSync = true;
  }

  private forward(frame: Frame, entry?: Pending): void {
    if (entry && entry.kind !== 'sync' && entry.kind !== 'query') this.unsynced = true;
    if (entry) this.pending.expect(entry);
    this.relay.writeUpstream(frame.raw);
  }

  /** Applies a verdict through the gate: an open transaction upstream bounds an approval wait. */
  private admit(verdict: Verdict, text: string): Promise<Gate> {
    // An open transaction (explicit, or the implicit one of an unsynced extended-protocol
    // group) holds locks and a snapshot upstream while we wait.
    return this.gate.admit(verdict, text, this.status !== 'I' || this.unsynced);
  }

  private onQuery(frame: Frame): Promise<void> | undefined {
    const text = decodeQuery(frame.body);
    const started = Date.now();
    const analysis = this.engine.analyze(text);
    const effectiveAnalysis = withPrepared(analysis, this.names);
    const decided = this.engine.decide(effectiveAnalysis);
    const syntax = syntaxError(analysis);
    if (syntax) {
      this.startQuery(frame, text, analysis, decided, started, syntax);
      return undefined;
    }
    const viewed = throughViews(this.engine, this.catalog, effectiveAnalysis, decided);
    const copyOut = analysis.ok && analysis.statements.some((s) => s.copy !== undefined);
    if (
      !(viewed instanceof Promise) &&
      viewed.action === 'allow' &&
      !(this.engine.masker && copyOut) &&
      !this.gate.refusal()
    ) {
      this.startQuery(frame, text, analysis, viewed, started, { outcome: 'allowed' });
      return undefined;
    }
    return (async () => {
      const verdict = await viewed;
      // A COPY masking cannot cover is refused whatever else holds it (an approval included).
      const effective =
        verdict.action === 'deny'
          ? verdict
          : ((await checkMaskable(this.engine.masker, this.catalog, analysis)) ?? verdict);
      const gate = await this.admit(effective, text);
      this.startQuery(frame, text, analysis, effective, started, gate);
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
      first.error = gate.error;
      this.pending.expect({
        kind: 'query',
        records,
        index: 0,
        replaceError: errorResponse(gate.error.wire ?? deniedSqlState, gate.error.message, {
          ...(gate.position !== undefined && { position: gate.position }),
        }),
      });
      this.relay.writeUpstream(query(poisonQuery));
      return;
    }
    rememberPrepared(this.engine, analysis, this.names);
    this.pending.expect({ kind: 'query', records, index: 0 });
    this.relay.writeUpstream(frame.raw);
  }

  private onParse(frame: Frame): Promise<void> | undefined {
    const message = decodeParse(frame.body);
    const analysis = this.engine.analyze(message.text);
    const effectiveAnalysis = withPrepared(analysis, this.names);
    const viewed = throughViews(
      this.engine,
      this.catalog,
      effectiveAnalysis,
      this.engine.decide(effectiveAnalysis),
    );
    const copy = this.engine.masker && analysis.ok && analysis.statements.some((s) => s.copy !== undefined);
    if (viewed instanceof Promise || copy) {
      return (async () => {
        const decided = await viewed;
        const verdict =
          decided.action === 'deny'
            ? decided
            : ((await checkMaskable(this.engine.masker, this.catalog, analysis)) ?? decided);
        this.parseDecided(frame, message, analysis, verdict);
      })();
    }
    this.parseDecided(frame, message, analysis, viewed);
    return undefined;
  }

  private parseDecided(
    frame: Frame,
    message: ParseMessage,
    analysis: SqlAnalysisResult,
    verdict: Verdict,
  ): void {
    const kind = analysis.ok ? analysis.statements[0]?.kind : undefined;
    const syntax = syntaxError(analysis);
    if (syntax || verdict.action === 'deny') {
      const error = syntax ? syntax.error : refusal('policy-denied', this.engine.denialMessage(verdict));
      const code = error.wire ?? deniedSqlState;
      const record: RequestRecord = {
        text: message.text,
        kind,
        outcome: syntax ? syntax.outcome : 'blocked',
        verdict,
        started: Date.now(),
        error,
      };
      this.pending.expect({
        kind: 'parse',
        record,
        replaceError: errorResponse(code, error.message, { ...(syntax && { position: syntax.position }) }),
      });
      this.relay.writeUpstream(parse(message.name, poisonQuery));
      this.skipUntilSync = true;
      return;
    }
    // Held statements wait at Execute, so each execution is approved.
    const prepared = {
      text: message.text,
      verdict,
      kind,
      statement: analysis.ok && analysis.statements.length === 1 ? analysis.statements[0] : undefined,
    };
    this.names.parsed(message.name, prepared, true);
    rememberPrepared(this.engine, analysis, this.names);
    this.forward(frame, { kind: 'parse', text: message.text, name: message.name, prepared });
  }

  private onExecute(frame: Frame): Promise<void> | undefined {
    const { portal } = decodeExecute(frame.body);
    const statement = this.names.statementOf(portal);
    const record: RequestRecord = {
      text: statement?.text ?? '',
      kind: statement?.kind,
      outcome: 'allowed',
      started: Date.now(),
      ...(statement && { verdict: statement.verdict }),
    };
    if (statement && (statement.verdict.action !== 'allow' || this.gate.refusal())) {
      return this.admit(statement.verdict, statement.text).then((gate) => {
        record.outcome = gate.outcome;
        if (gate.approval) record.approval = gate.approval;
        if (!gate.error) {
          this.startExecute(frame, portal, record);
          return;
        }
        record.error = gate.error;
        this.pending.expect({
          kind: 'execute',
          portal,
          record,
          replaceError: errorResponse(gate.error.wire ?? deniedSqlState, gate.error.message),
        });
        // Executing a portal that does not exist fails without side effects.
        const poison = Buffer.from(`E\0\0\0\0airlock-denied-${randomUUID()}\0\0\0\0\0`, 'latin1');
        poison.writeInt32BE(poison.length - 1, 1);
        this.relay.writeUpstream(poison);
        this.skipUntilSync = true;
      });
    }
    this.startExecute(frame, portal, record);
    return undefined;
  }

  private startExecute(frame: Frame, portal: string, record: RequestRecord): void {
    if (this.engine.masker && !this.names.isDescribed(portal)) {
      // Rows must be masked by column: learn the portal's columns without the client seeing it.
      this.names.described(portal);
      this.pending.expect({ kind: 'describe', target: 'P', name: portal, internal: true });
      this.relay.writeUpstream(describe('P', portal));
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
      record.error = refusal('policy-denied', message);
      this.pending.expect({ kind: 'function', record, replaceError: errorResponse(deniedSqlState, message) });
      this.relay.writeUpstream(query(poisonQuery));
      return undefined;
    }
    this.forward(frame, { kind: 'function', record });
    return undefined;
  }
}

/** The SQL text a Query or Parse message carries (a Parse's statement name comes first). */
function sqlTextOf(frame: Frame): Buffer {
  const body = frame.body;
  const start = frame.type === 0x50 ? body.indexOf(0) + 1 : 0;
  const end = body.indexOf(0, start);
  return body.subarray(start, end < 0 ? body.length : end);
}

function randomKey(): { pid: number; secret: number } {
  const bytes = new Uint32Array(2);
  crypto.getRandomValues(bytes);
  return { pid: (bytes[0]! & 0x7fffffff) | 1, secret: bytes[1]! | 0 };
}
