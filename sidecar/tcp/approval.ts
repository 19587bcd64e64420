// Holding a request for approval, for every enforcer: asks options.approvals, bounded by the
// rule's timeout (plus a grace for the approval service's own expiry) and by the client going
// away. An approval service that fails is a denial: no decision, no access.
import type { ApprovalRequest, ApprovalResult, Approvals } from '../enforcer.ts';

/** Extra time past the rule's timeout before the enforcer stops waiting on its own. */
export const approvalGraceMs = 5_000;

export async function holdForApproval(
  approvals: Approvals,
  request: ApprovalRequest,
  signal?: AbortSignal,
): Promise<ApprovalResult> {
  const timeout = AbortSignal.timeout(request.timeoutMs + approvalGraceMs);
  const combined = signal ? AbortSignal.any([signal, timeout]) : timeout;
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<ApprovalResult>((resolve) => {
    onAbort = () =>
      resolve(
        timeout.aborted
          ? { approved: false, outcome: 'expired', reason: 'nobody decided in time' }
          : { approved: false, outcome: 'denied', reason: 'the client went away' },
      );
    if (combined.aborted) onAbort();
    else combined.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([approvals.request(request, combined), aborted]);
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
