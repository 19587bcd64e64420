// The session-event schema, one for every protocol. Events never carry a masked value, a
// credential or a bound parameter value.
import type { Identity } from '../../api/bundle.ts';

export const sessionEventVersion = 1;

export type Outcome = 'allowed' | 'masked' | 'blocked' | 'approved' | 'denied' | 'expired' | 'error';

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
  /** Masked value counts by masking rule and detector or column. */
  masked?: Record<string, number>;
  durationMs: number;
  error?: { code: string; message: string };
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
}
