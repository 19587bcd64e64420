// One error vocabulary for the data path. A request that does not complete ends in an
// AirlockError with a stable code (api/events.ts lists them); each protocol shows it on its own
// wire through one table: a SQLSTATE for PostgreSQL clients, an exit status for SSH, a problem
// type and status for HTTP. Events carry the code and the wire form, so one query over the audit
// trail finds a condition in every protocol.
import type { ErrorCode, RequestError } from '../../api/events.ts';

export class AirlockError extends Error {
  override name = 'AirlockError';
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string) {
    super(message);
    this.code = code;
  }

  /** The error as a request event records it, with the code its client saw. */
  event(wire?: string | number): RequestError {
    return { code: this.code, message: this.message, ...(wire !== undefined && { wire: String(wire) }) };
  }
}

/** PostgreSQL: the SQLSTATE a client receives. */
export const sqlStates: Record<ErrorCode, string> = {
  'policy-denied': '42501',
  'approval-denied': '42501',
  'approval-expired': '42501',
  'audit-unavailable': '53100',
  'upstream-unreachable': '08006',
  'target-error': 'XX000',
  'protocol-violation': '08P01',
  unsupported: '0A000',
  cancelled: '57014',
  'masking-failed': '42501',
  unauthenticated: '28P01',
};

/** SSH: the exit status of a refused command or shell (126: found but not run; 255: ssh's own failure). */
export const sshExitStatuses: Record<ErrorCode, number> = {
  'policy-denied': 126,
  'approval-denied': 126,
  'approval-expired': 126,
  'audit-unavailable': 126,
  'upstream-unreachable': 255,
  'target-error': 255,
  'protocol-violation': 255,
  unsupported: 126,
  cancelled: 130,
  'masking-failed': 255,
  unauthenticated: 255,
};

/** HTTP: the status and problem type (RFC 9457) of the enforcer's own answer. */
export const httpProblems: Record<ErrorCode, { status: number; title: string }> = {
  'policy-denied': { status: 403, title: 'Denied by Airlock' },
  'approval-denied': { status: 403, title: 'Denied by an approver' },
  'approval-expired': { status: 403, title: 'Not approved in time' },
  'audit-unavailable': { status: 503, title: 'Refused by Airlock: the audit trail is unavailable' },
  'upstream-unreachable': { status: 502, title: 'The target is unreachable' },
  'target-error': { status: 502, title: 'The target failed' },
  'protocol-violation': { status: 400, title: 'Airlock rejected an ambiguous request' },
  unsupported: { status: 502, title: 'Airlock cannot mask this response' },
  cancelled: { status: 499, title: 'The client went away' },
  'masking-failed': { status: 502, title: 'Airlock cannot mask this response' },
  unauthenticated: { status: 401, title: "Airlock could not verify the end user's token" },
};

/** The problem type URI of a code. */
export function problemType(code: ErrorCode): string {
  return `https://airlock.dev/problems/${code}`;
}

/** Redis: the error reply's code word; NOPERM, as for Redis's own ACL refusals, when a policy or approver refused. */
export const redisErrors: Record<ErrorCode, string> = {
  'policy-denied': 'NOPERM',
  'approval-denied': 'NOPERM',
  'approval-expired': 'NOPERM',
  'audit-unavailable': 'ERR',
  'upstream-unreachable': 'ERR',
  'target-error': 'ERR',
  'protocol-violation': 'ERR',
  unsupported: 'ERR',
  cancelled: 'ERR',
  'masking-failed': 'ERR',
  unauthenticated: 'WRONGPASS',
};
