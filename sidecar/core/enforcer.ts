// What every protocol enforcer shares: how it is started for one granted Connection, where
// its session events go, and how it asks for an approval.
import type { AddressInfo, LookupFunction } from 'node:net';
import type { BundleConnection, EndUser, Identity } from '../../api/bundle.ts';
import type { EventSink } from '../../api/events.ts';

export interface ApprovalRequest {
  sessionId: string;
  connection: string;
  policy: string;
  rule: string;
  /** The statement, command or request, with parameters redacted. */
  text: string;
  reasons: string[];
  timeoutMs: number;
  scope: 'statement' | 'session';
  approvers: { groups: string[]; users: string[] };
  /** The person the session acts for, when it verified one: recorded as the requester's user. */
  endUser?: EndUser;
}

export interface ApprovalResult {
  approved: boolean;
  /** 'expired' when nobody decided in time. */
  outcome: 'approved' | 'denied' | 'expired';
  decidedBy?: string;
  reason?: string;
  /** The id of the AccessRequest (or local request) that recorded it. */
  request?: string;
}

/** Where held requests go: the operator's AccessRequest flow, or `airlock local`'s own queue. */
export interface Approvals {
  request(request: ApprovalRequest, signal?: AbortSignal): Promise<ApprovalResult>;
}

export interface EnforcerOptions {
  connection: BundleConnection;
  identity: Identity;
  listen: { host: string; port: number };
  events: EventSink;
  approvals: Approvals;
  /** How the upstream's name is resolved: the system's resolver when absent (see dns.ts). */
  lookup?: LookupFunction;
}

export interface Enforcer {
  address: AddressInfo;
  /** Stops accepting, then ends the open sessions. */
  close(): Promise<void>;
  /**
   * Stops accepting, lets work in flight finish until `deadlineMs` (epoch ms), then ends the
   * open sessions. Without it, draining is `close()`.
   */
  drain?(deadlineMs: number): Promise<void>;
}

/** Refuses every held request, never lets one through (a sidecar with no approval service). */
export const noApprovals: Approvals = {
  request: async () => ({
    approved: false,
    outcome: 'denied',
    reason: 'this sidecar has no approval service; the request was refused',
  }),
};
