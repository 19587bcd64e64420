// Approvals in `airlock local`: held requests wait in memory until someone with access to the
// running process decides them (`airlock approve|deny`), or until they expire.
import { randomBytes } from 'node:crypto';
import type { ApprovalRequest, ApprovalResult, Approvals } from '../sidecar/core/enforcer.ts';

export interface PendingApproval {
  id: string;
  request: ApprovalRequest;
  requestedAt: string;
  expiresAt: string;
}

interface Waiter extends PendingApproval {
  resolve: (result: ApprovalResult) => void;
  timer: NodeJS.Timeout;
}

export class LocalApprovals implements Approvals {
  readonly #pending = new Map<string, Waiter>();
  readonly #approver: string;

  constructor(approver: string) {
    this.#approver = approver;
  }

  request(request: ApprovalRequest, signal?: AbortSignal): Promise<ApprovalResult> {
    const id = `ar-${randomBytes(4).toString('hex')}`;
    const now = Date.now();
    return new Promise((resolve) => {
      const finish = (result: ApprovalResult) => {
        const waiter = this.#pending.get(id);
        if (!waiter) return;
        clearTimeout(waiter.timer);
        this.#pending.delete(id);
        resolve({ ...result, request: id });
      };
      const timer = setTimeout(
        () =>
          finish({
            approved: false,
            outcome: 'expired',
            reason: `no decision within ${Math.round(request.timeoutMs / 1000)} s`,
          }),
        request.timeoutMs,
      );
      this.#pending.set(id, {
        id,
        request,
        requestedAt: new Date(now).toISOString(),
        expiresAt: new Date(now + request.timeoutMs).toISOString(),
        resolve: finish,
        timer,
      });
      signal?.addEventListener('abort', () =>
        finish({ approved: false, outcome: 'denied', reason: 'the session ended' }),
      );
    });
  }

  list(): PendingApproval[] {
    return [...this.#pending.values()].map(({ id, request, requestedAt, expiresAt }) => ({
      id,
      request,
      requestedAt,
      expiresAt,
    }));
  }

  /** Decides a pending request; false when there is none with that id. */
  decide(id: string, approved: boolean, reason?: string): boolean {
    const waiter = this.#pending.get(id);
    if (!waiter) return false;
    waiter.resolve({
      approved,
      outcome: approved ? 'approved' : 'denied',
      decidedBy: this.#approver,
      ...(reason !== undefined && { reason }),
    });
    return true;
  }

  close(): void {
    for (const waiter of this.#pending.values()) {
      waiter.resolve({ approved: false, outcome: 'denied', reason: 'airlock local is shutting down' });
    }
  }
}
