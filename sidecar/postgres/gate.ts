// The PostgreSQL session on the shared enforcer core: its events go through the core's recorder
// (masked where they quote the agent's text), and a verdict passes the core's approval gate
// before a request runs. What is PostgreSQL's own: an open transaction bounds an approval wait
// (it holds locks and a snapshot upstream), a CancelRequest withdraws a waiting statement, and
// an AirlockError reaches the client as an ErrorResponse with the SQLSTATE of its code.
import { type BundleConnection, endUserOf, type Identity } from '../../api/bundle.ts';
import type { EventSink, Outcome, RequestError, SessionStart } from '../../api/events.ts';
import type { Approvals } from '../core/enforcer.ts';
import { AirlockError, sqlStates } from '../core/errors.ts';
import { ApprovalGate, type ApprovalRef, passageFields } from '../core/gate.ts';
import { maskingFields, SessionRecorder } from '../core/recorder.ts';
import type { ActingFor } from '../identity/session.ts';
import { maskText } from './masking.ts';
import type { RequestRecord } from './pending.ts';
import type { PolicyEngine, Verdict } from './policy.ts';

/** What the gate decided for a request. */
export interface Gate {
  outcome: Outcome;
  /** Set when the request must not run: the error the client gets (its SQLSTATE is `wire`). */
  error?: RequestError;
  /** Cursor position of that error (P field), for syntax errors. */
  position?: number;
  approval?: ApprovalRef;
}

export interface GateOptions {
  sessionId: string;
  connection: BundleConnection;
  identity: Identity;
  engine: PolicyEngine;
  events: EventSink;
  approvals?: Approvals;
  /** Longest approval wait while a transaction is open upstream (default 60 s). */
  transactionHoldMs?: number;
}

/** An Airlock refusal as a request records it: the code, and the SQLSTATE the client saw. */
export function refusal(code: AirlockError['code'], message: string): RequestError {
  return new AirlockError(code, message).event(sqlStates[code]);
}

export class SessionGate {
  private options: GateOptions;
  readonly recorder: SessionRecorder;
  private readonly gate: ApprovalGate;
  /** Set while a statement waits for approval: withdraws it. */
  private withdraw: AbortController | undefined;

  constructor(options: GateOptions) {
    this.options = options;
    this.recorder = new SessionRecorder(
      options.connection,
      options.identity,
      options.events,
      options.sessionId,
    );
    this.gate = new ApprovalGate({
      sessionId: options.sessionId,
      connection: options.connection.name,
      ...(options.approvals && { approvals: options.approvals }),
      unrecorded: () => options.events.refusal?.(),
      endUser: () => endUserOf(this.options.identity),
    });
  }

  /** The session acts for its verified end user, under the policies that apply to them (before it starts). */
  actFor(acting: ActingFor, engine: PolicyEngine): void {
    this.options = {
      ...this.options,
      identity: acting.identity,
      engine,
      connection: { ...this.options.connection, policies: acting.policies },
    };
    this.recorder.identity = acting.identity;
  }

  // ---------------------------------------------------------------------------------------
  // Events

  start(client: SessionStart['client']): void {
    this.recorder.start(client);
  }

  end(reason: string, bytesIn: number, bytesOut: number): void {
    this.recorder.bytesIn = bytesIn;
    this.recorder.bytesOut = bytesOut;
    this.recorder.end(reason);
  }

  /** The request's event, once (a record reaches it from several responses). */
  request(record: RequestRecord): void {
    if (record.emitted) return;
    record.emitted = true;
    const v = record.verdict;
    const counted = maskingFields(
      this.options.connection.policies,
      record.masked ?? {},
      record.wouldMask ?? {},
      v?.wouldHave,
    );
    this.recorder.request({
      ...(v && passageFields(v, { go: true, outcome: 'allowed' })),
      ...counted,
      // Literals typed by the agent can carry the values masking protects: the detectors scan
      // the recorded text too, so an email in a WHERE clause is not kept in the trail.
      text: maskText(this.options.engine.masker, record.text),
      outcome: record.outcome === 'allowed' && record.masked ? 'masked' : record.outcome,
      durationMs: Date.now() - record.started,
      ...(record.kind && { kind: record.kind }),
      ...(record.approval && { approval: record.approval }),
      ...(record.rows !== undefined && { rows: record.rows }),
      ...(record.error && { error: record.error }),
    });
  }

  protocolError(code: string, message: string): void {
    this.recorder.error(code, message);
  }

  // ---------------------------------------------------------------------------------------
  // Audit refusal and approvals

  /** Set when the audit trail cannot record what would run: the message it is refused with. */
  refusal(): string | undefined {
    return this.gate.unrecorded()?.message;
  }

  /** A statement is waiting for approval. */
  get holding(): boolean {
    return this.withdraw !== undefined;
  }

  /** Ends an approval wait as cancelled (a CancelRequest, the session closing); false when none. */
  cancelWait(): boolean {
    if (!this.withdraw) return false;
    this.withdraw.abort();
    return true;
  }

  /**
   * Applies a verdict through the core's gate. transactionOpen: a transaction holds locks and
   * a snapshot upstream, so the wait is bounded.
   */
  async admit(verdict: Verdict, text: string, transactionOpen: boolean): Promise<Gate> {
    const withdraw = new AbortController();
    this.withdraw = withdraw;
    const passage = await this.gate
      .pass({
        decision: verdict,
        text: maskText(this.options.engine.masker, text),
        what: 'statement',
        signal: withdraw.signal,
        ...(transactionOpen && { holdCapMs: this.options.transactionHoldMs ?? 60_000 }),
      })
      .finally(() => {
        if (this.withdraw === withdraw) this.withdraw = undefined;
      });
    const approval = passage.approval && { approval: passage.approval };
    if (passage.go) return { outcome: passage.outcome, ...approval };
    const { code } = passage.error;
    // A withdrawn statement reads as the server's own cancel.
    const message =
      code === 'cancelled'
        ? 'canceling statement due to user request (it was waiting for approval)'
        : code === 'policy-denied'
          ? this.options.engine.denialMessage(verdict)
          : passage.error.message;
    return { outcome: passage.outcome, error: refusal(code, message), ...approval };
  }
}
