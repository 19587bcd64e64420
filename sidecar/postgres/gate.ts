// What a PostgreSQL session shares with every enforcer, kept in one place so the shared
// enforcer core can take it over whole: the session's events (numbered, stamped, masked where
// they quote the agent's text), the approval gate a verdict goes through before a request runs,
// and the refusal when the audit spool cannot record it.
import { randomUUID } from 'node:crypto';
import type { BundleConnection, Identity } from '../../api/bundle.ts';
import {
  type EventSink,
  type Outcome,
  type RequestEvent,
  type SessionEvent,
  sessionEventVersion,
} from '../../api/events.ts';
import type { ApprovalResult, Approvals } from '../core/enforcer.ts';
import { maskText } from './masking.ts';
import type { RequestRecord } from './pending.ts';
import type { PolicyEngine, Verdict } from './policy.ts';

/** 53100 disk_full: the audit spool is full, so nothing more may run. */
export const auditUnavailableSqlState = '53100';

/** The fields the gate stamps on every event. */
type Stamped = 'version' | 'id' | 'sessionId' | 'seq' | 'time' | 'connection' | 'identity';
/** Omit over each member of a union, so the event's type still picks its fields. */
type EventFields<E> = E extends SessionEvent ? Omit<E, Stamped> : never;

/** What the gate decided for a request. */
export interface Gate {
  outcome: Outcome;
  /** Set when the request must not run: the message of the error the client gets. */
  error?: string;
  /** SQLSTATE of that error; 42501 when omitted. */
  code?: string;
  /** Cursor position of that error (P field), for syntax errors. */
  position?: number;
  approval?: { request: string; decidedBy?: string };
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
  /** Approval wait when the rule gives none (default 15 min). */
  defaultApprovalMs?: number;
}

export class SessionGate {
  private readonly options: GateOptions;
  private seq = 0;
  private readonly sessionApprovals = new Set<string>();
  /** Set while a statement waits for approval. */
  private cancelHold: (() => void) | undefined;

  constructor(options: GateOptions) {
    this.options = options;
  }

  // ---------------------------------------------------------------------------------------
  // Events

  emit(event: EventFields<SessionEvent>): void {
    const { connection, identity, sessionId } = this.options;
    this.options.events.emit({
      version: sessionEventVersion,
      id: randomUUID(),
      sessionId,
      seq: this.seq++,
      time: new Date().toISOString(),
      connection: { name: connection.name, namespace: connection.namespace, protocol: 'postgres' },
      identity,
      ...event,
    });
  }

  /** The request's event, once (a record reaches it from several responses). */
  request(record: RequestRecord): void {
    if (record.emitted) return;
    record.emitted = true;
    const v = record.verdict;
    const decided = v !== undefined && v.action !== 'allow';
    const event: EventFields<RequestEvent> = {
      type: 'request',
      // Literals typed by the agent can carry the values masking protects: the detectors scan
      // the recorded text too, so an email in a WHERE clause is not kept in the trail.
      text: maskText(this.options.engine.masker, record.text),
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

  protocolError(code: string, message: string): void {
    this.emit({ type: 'protocol.error', code, message });
  }

  /** The audit-mode policy whose masking rule a count key (<rule>/<detector or column>) names. */
  private auditPolicyOf(key: string): string {
    const rule = key.split('/')[0];
    const policy = this.options.connection.policies.find(
      (p) => p.mode === 'audit' && p.masking.some((m) => m.name === rule),
    );
    return policy?.name ?? '';
  }

  // ---------------------------------------------------------------------------------------
  // Audit refusal and approvals

  /** Set when the audit trail cannot record what would run: the message it is refused with. */
  refusal(): string | undefined {
    return this.options.events.refusal?.();
  }

  /** A statement is waiting for approval. */
  get holding(): boolean {
    return this.cancelHold !== undefined;
  }

  /** Ends an approval wait as cancelled (a CancelRequest, the session closing); false when none. */
  cancelWait(): boolean {
    if (!this.cancelHold) return false;
    this.cancelHold();
    return true;
  }

  /**
   * Applies a verdict: resolves to an error message when the request must not run.
   * transactionOpen: a transaction holds locks and a snapshot upstream, so the wait is bounded.
   */
  async admit(verdict: Verdict, text: string, transactionOpen: boolean): Promise<Gate> {
    // Fail closed when the audit trail cannot record what would run.
    const unrecorded = this.refusal();
    if (unrecorded) return { outcome: 'error', error: unrecorded, code: auditUnavailableSqlState };
    if (verdict.action === 'allow') return { outcome: 'allowed' };
    if (verdict.action === 'deny') {
      const message = this.options.engine.denialMessage(verdict);
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
    if (transactionOpen) timeoutMs = Math.min(timeoutMs, this.options.transactionHoldMs ?? 60_000);
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
            sessionId: this.options.sessionId,
            connection: this.options.connection.name,
            policy,
            rule,
            text: maskText(this.options.engine.masker, text),
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
      request: result.request ?? randomUUID(),
      ...(result.decidedBy && { decidedBy: result.decidedBy }),
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
}
