// The session-event schema: the wire contract between the sidecar, the collector, the audit
// store, the CLI and the sessions API, one for every protocol. Events never carry a masked
// value, a credential or a bound parameter value. The collector checks what it ingests against
// the same schema as data (events-schema.ts); the sidecar, which only emits them, loads no zod.
import type { Identity } from './bundle.ts';

export const sessionEventVersion = 1;

export type Outcome = 'allowed' | 'masked' | 'blocked' | 'approved' | 'denied' | 'expired' | 'error';

/**
 * Why a request did not complete, the same in every protocol, so one query finds a condition
 * wherever it happened. The protocol's own form of it (SQLSTATE, SSH exit status, HTTP status,
 * the socket's errno) is the error's `wire`.
 */
export const errorCodes = [
  /** A rule, or masking that could not cover the request, refused it. */
  'policy-denied',
  /** A person denied it, or approvals could not be asked. */
  'approval-denied',
  /** Nobody decided before the rule's timeout. */
  'approval-expired',
  /** The audit trail cannot record it (the spool is full under fail-closed). */
  'audit-unavailable',
  /** The target could not be reached or refused Airlock's connection. */
  'upstream-unreachable',
  /** The target answered with its own error. */
  'target-error',
  /** The client broke its protocol, or sent what Airlock cannot read as the target would. */
  'protocol-violation',
  /** A form Airlock does not govern (a setting, a transfer mode), refused rather than let through. */
  'unsupported',
  /** The client withdrew the request (a cancel, a closed connection) while it waited. */
  'cancelled',
  /** A response could not be masked whole, so it was cut off. */
  'masking-failed',
  /** The end user's token (Connection endUser) was missing, or failed verification. */
  'unauthenticated',
] as const;
export type ErrorCode = (typeof errorCodes)[number];

export interface RequestError {
  code: ErrorCode;
  message: string;
  /** The code the client saw on its protocol: SQLSTATE, exit status, HTTP status, errno. */
  wire?: string;
}

interface EventBase {
  version: typeof sessionEventVersion;
  /** Unique id (UUID); ingest is idempotent on it. */
  id: string;
  sessionId: string;
  /** Order within the session, from 0. */
  seq: number;
  time: string;
  connection: { name: string; namespace: string; protocol: string };
  identity: Identity;
}

export interface SessionStart extends EventBase {
  type: 'session.start';
  client: { address: string; user?: string; application?: string };
}

export interface SessionEnd extends EventBase {
  type: 'session.end';
  reason: string;
  bytesIn: number;
  bytesOut: number;
}

/** One statement, command or request and what Airlock did with it. */
export interface RequestEvent extends EventBase {
  type: 'request';
  /** SQL text, command line or "METHOD path"; bound parameters are never included. */
  text: string;
  kind?: string;
  outcome: Outcome;
  /** The policy and rule that decided, when one did. */
  policy?: string;
  rule?: string;
  reasons?: string[];
  /** What audit-mode policies would have done. */
  wouldHave?: { action: string; policy: string; rule?: string; reason: string }[];
  approval?: { request: string; decidedBy?: string };
  rows?: number;
  /** Exit status of an SSH command. */
  exitStatus?: number | string;
  /** HTTP response status. */
  status?: number;
  /** Size in bytes of the result the client received (an MCP tool result, resource or prompt). */
  bytes?: number;
  /** Masked value counts by masking rule and detector or column. */
  masked?: Record<string, number>;
  durationMs: number;
  error?: RequestError;
}

/** Terminal output (asciicast v2 frames) and other opaque protocol records. */
export interface DataEvent extends EventBase {
  type: 'data';
  stream: 'input' | 'output';
  /** Seconds since session start, as asciicast v2 has it. */
  at: number;
  data: string;
}

export interface ProtocolErrorEvent extends EventBase {
  type: 'protocol.error';
  code: string;
  message: string;
}

export type SessionEvent = SessionStart | SessionEnd | RequestEvent | DataEvent | ProtocolErrorEvent;

/** Where a session's events go: the local store, the collector, or a test's array. */
export interface EventSink {
  emit(event: SessionEvent): void;
  /**
   * Set when the sink cannot take more events and the policy is to fail closed (the audit
   * spool is full): the message the enforcer refuses new sessions and requests with. Enforcers
   * ask again for every session and request, so work resumes as soon as it clears.
   */
  refusal?(): string | undefined;
  /** Resolves once every event emitted so far is delivered or spooled (the sidecar's drain). */
  flush?(): Promise<void>;
}
