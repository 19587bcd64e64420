// The gate every request passes, in every protocol: the audit trail must be able to record it
// (fail closed when the spool is full), then the policy's decision applies: allow, deny, or
// hold for a person's approval. A hold asks the approval service (the operator's AccessRequest
// flow, or `airlock local`'s queue) and waits, bounded by the rule's timeout plus a grace that
// lets the service's own expiry land first, by the protocol's cap (an open transaction holds
// locks upstream), and by the client going away. Session-scope approvals are remembered for
// the session. Whatever happens, the outcome is one of the event outcomes, and a refusal is an
// AirlockError whose code every protocol maps onto its wire (errors.ts).
import { channel } from 'node:diagnostics_channel';
import type { EndUser } from '../../api/bundle.ts';
import type { Outcome } from '../../api/events.ts';
import { type Approval, type Decision, defaultApproval, denialMessage } from '../policy/decide.ts';
import type { ApprovalResult, Approvals } from './enforcer.ts';
import { AirlockError } from './errors.ts';
import type { RequestFields } from './recorder.ts';

/** Every hold's end, for metrics: which rule, how it ended, how long the request waited. */
export const approvalChannel = channel('airlock:approval');

export interface ApprovalWait {
  connection: string;
  policy: string;
  rule: string;
  outcome: 'approved' | 'denied' | 'expired' | 'cancelled';
  waitMs: number;
}

/** Extra time past the rule's timeout before the enforcer stops waiting on its own. */
export const approvalGraceMs = 5_000;

/** The approval a request ran or was refused under: the AccessRequest's name, and who decided. */
export interface ApprovalRef {
  request: string;
  decidedBy?: string;
}

export type Passage =
  | { go: true; outcome: 'allowed' | 'approved'; approval?: ApprovalRef }
  | {
      go: false;
      outcome: Exclude<Outcome, 'allowed' | 'approved' | 'masked'>;
      error: AirlockError;
      approval?: ApprovalRef;
    };

export interface GateOptions {
  sessionId: string;
  connection: string;
  /** Absent: a hold is refused (nobody could be asked). */
  approvals?: Approvals;
  /** The audit sink's refusal, asked before every request (see EventSink.refusal). */
  unrecorded?: () => string | undefined;
  /** For a decision that names no approval settings. */
  defaultApproval?: Approval;
  graceMs?: number;
  /** The person the session acts for, asked when a request is held (known once the session verified them). */
  endUser?: () => EndUser | undefined;
}

export interface GateRequest {
  decision: Decision;
  /** The request as the approver sees it, with detected values already masked. */
  text: string;
  /** What the request is called in messages: statement, command, request. */
  what: string;
  /** Aborted when the client withdraws the request (a cancel, a closed channel). */
  signal?: AbortSignal;
  /** The protocol's bound on a hold (e.g. while a transaction is open upstream). */
  holdCapMs?: number;
  /** Told before a hold starts, with the message the client may show while it waits. */
  onHold?: (message: string) => void;
}

export class ApprovalGate {
  readonly #options: GateOptions;
  /** Session-scope approvals: "policy/rule" → the request that granted them. */
  readonly #sessionApprovals = new Map<string, ApprovalRef>();

  constructor(options: GateOptions) {
    this.#options = options;
  }

  /** The refusal while the audit trail cannot record what would run, or undefined. */
  unrecorded(): AirlockError | undefined {
    const message = this.#options.unrecorded?.();
    return message === undefined ? undefined : new AirlockError('audit-unavailable', message);
  }

  async pass(request: GateRequest): Promise<Passage> {
    const unrecorded = this.unrecorded();
    if (unrecorded) return { go: false, outcome: 'error', error: unrecorded };
    const { decision, what } = request;
    if (decision.action === 'allow') return { go: true, outcome: 'allowed' };
    if (decision.action === 'deny')
      return {
        go: false,
        outcome: 'blocked',
        error: new AirlockError('policy-denied', denialMessage(decision, what)),
      };
    const key = `${decision.policy}/${decision.rule}`;
    const granted = this.#sessionApprovals.get(key);
    if (granted) return { go: true, outcome: 'approved', approval: granted };
    const by = `(AccessPolicy "${decision.policy}" rule "${decision.rule}")`;
    const approvals = this.#options.approvals;
    if (!approvals) {
      const message = `airlock: ${what} requires approval ${by}, and approvals are not available`;
      return { go: false, outcome: 'blocked', error: new AirlockError('approval-denied', message) };
    }
    const approval = decision.approval ?? this.#options.defaultApproval ?? defaultApproval;
    const timeoutMs = Math.min(approval.timeoutMs, request.holdCapMs ?? Number.POSITIVE_INFINITY);
    request.onHold?.(`${denialMessage(decision, what)}; waiting for a decision...`);
    const holding = performance.now();
    const result = await this.#hold(approvals, request, approval, timeoutMs);
    if (approvalChannel.hasSubscribers) {
      const wait: ApprovalWait = {
        connection: this.#options.connection,
        policy: decision.policy ?? '',
        rule: decision.rule ?? '',
        outcome: request.signal?.aborted ? 'cancelled' : result.approved ? 'approved' : result.outcome,
        waitMs: performance.now() - holding,
      };
      approvalChannel.publish(wait);
    }
    // The AccessRequest that recorded it; a service that names none gets the session's own name for it.
    const ref: ApprovalRef = {
      request: result.request ?? `${this.#options.sessionId}/${key}`,
      ...(result.decidedBy !== undefined && { decidedBy: result.decidedBy }),
    };
    const detail = result.reason ? `: ${result.reason}` : '';
    if (result.approved) {
      if (approval.scope === 'session') this.#sessionApprovals.set(key, ref);
      return { go: true, outcome: 'approved', approval: ref };
    }
    const refused = (outcome: 'denied' | 'expired' | 'error', error: AirlockError): Passage => ({
      go: false,
      outcome,
      error,
      approval: ref,
    });
    if (request.signal?.aborted)
      return refused(
        'error',
        new AirlockError('cancelled', `airlock: ${what} withdrawn while it waited for approval ${by}`),
      );
    if (result.outcome === 'expired') {
      const seconds = Math.round(timeoutMs / 1000);
      const message = `airlock: ${what} not approved in time: the approval expired after ${seconds} s ${by}${detail}`;
      return refused('expired', new AirlockError('approval-expired', message));
    }
    const decidedBy = result.decidedBy ? ` ${result.decidedBy}` : '';
    const message = `airlock: ${what} denied by approver${decidedBy} ${by}${detail}`;
    return refused('denied', new AirlockError('approval-denied', message));
  }

  /** Asks and waits: no decision in time is an expiry, a failing service a denial. */
  async #hold(
    approvals: Approvals,
    request: GateRequest,
    approval: Approval,
    timeoutMs: number,
  ): Promise<ApprovalResult> {
    const { decision } = request;
    // The grace lets the service's own expiry land first; a short hold gets a short grace.
    const graceMs = Math.min(this.#options.graceMs ?? approvalGraceMs, timeoutMs);
    const timeout = AbortSignal.timeout(timeoutMs + graceMs);
    const combined = request.signal ? AbortSignal.any([request.signal, timeout]) : timeout;
    let onAbort: (() => void) | undefined;
    const aborted = new Promise<ApprovalResult>((resolve) => {
      onAbort = () =>
        resolve(
          timeout.aborted
            ? { approved: false, outcome: 'expired', reason: 'nobody decided in time' }
            : { approved: false, outcome: 'denied', reason: 'the client withdrew the request' },
        );
      if (combined.aborted) onAbort();
      else combined.addEventListener('abort', onAbort, { once: true });
    });
    const endUser = this.#options.endUser?.();
    try {
      return await Promise.race([
        approvals.request(
          {
            ...(endUser && { endUser }),
            sessionId: this.#options.sessionId,
            connection: this.#options.connection,
            policy: decision.policy ?? '',
            rule: decision.rule ?? '',
            text: request.text,
            reasons: decision.reasons,
            timeoutMs,
            scope: approval.scope,
            approvers: approval.approvers,
          },
          combined,
        ),
        aborted,
      ]);
    } catch (error) {
      return {
        approved: false,
        outcome: 'denied',
        reason: `approval service failed: ${error instanceof Error ? error.message : String(error)}`,
      };
    } finally {
      if (onAbort) combined.removeEventListener('abort', onAbort);
    }
  }
}

/**
 * The event fields a decision and its passage record, the same in every protocol: who decided
 * (when a policy did), what audit-mode policies would have done, the approval, the outcome.
 * The error is the protocol's to add, with the code its client saw.
 */
export function passageFields(
  decision: Decision,
  passage: Passage,
): Pick<RequestFields, 'outcome' | 'policy' | 'rule' | 'reasons' | 'wouldHave' | 'approval'> {
  const decided = decision.action !== 'allow';
  return {
    outcome: passage.outcome,
    ...(decided && decision.policy !== undefined && { policy: decision.policy }),
    ...(decided && decision.rule !== undefined && { rule: decision.rule }),
    ...(decided && decision.reasons.length > 0 && { reasons: decision.reasons }),
    ...(decision.wouldHave.length > 0 && { wouldHave: decision.wouldHave }),
    ...(passage.approval && { approval: passage.approval }),
  };
}
