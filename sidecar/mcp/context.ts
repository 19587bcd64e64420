// What the MCP enforcer's parts share: the per-listener context (the Connection's options, the
// masking, the tool pins, the upstream) and one MCP session (Mcp-Session-Id): its recorder and
// gate, the requests it has in flight and the server requests it let through.
import type { Agent as HttpAgent } from 'node:http';
import type { BundleConnection } from '../../api/bundle.ts';
import type { McpServerRequest } from '../../api/names.ts';
import type { EnforcerOptions } from '../core/enforcer.ts';
import type { ApprovalGate } from '../core/gate.ts';
import type { RequestFields, SessionRecorder } from '../core/recorder.ts';
import type { ToolChange, ToolPins } from './fingerprints.ts';
import type { Id } from './jsonrpc.ts';
import type { Masker } from './mask.ts';
import type { ClientCredentials } from './oauth.ts';

export interface McpOptions {
  scheme: 'http' | 'https';
  transport: 'streamable-http' | 'sse';
  path: string;
  serverRequests: readonly McpServerRequest[];
  toolChanges: 'require-approval' | 'deny';
  maxMessageBytes: number;
}

export interface McpEnforcerOptions extends EnforcerOptions {
  /** How often a held request with a progress token is told it still waits. */
  progressEveryMs?: number;
  /** How long a session with nothing in progress lives on (agents rarely end their sessions). */
  idleSessionMs?: number;
}

export interface Upstream {
  secure: boolean;
  agent: HttpAgent;
  tls: { rejectUnauthorized: boolean; ca?: string; servername?: string };
  /** The headers that carry the held credential. */
  credential: Record<string, string>;
  /** An OAuth client whose access token is the bearer token, when the Connection holds one. */
  oauth?: ClientCredentials;
}

export interface Context {
  options: McpEnforcerOptions;
  connection: BundleConnection;
  mcp: McpOptions;
  masker: Masker;
  pins: ToolPins;
  upstream: Upstream;
}

/** A governed request on its way: what its response is recorded and masked as. */
export interface Pending {
  method: string;
  /** The event's text: the method and what it names, with detected values masked. */
  text: string;
  kind: string;
  started: number;
  fields: Pick<RequestFields, 'outcome' | 'policy' | 'rule' | 'reasons' | 'wouldHave' | 'approval'>;
  /** Recorded when its response comes (tools/call, resources/read, prompts/get). */
  recorded: boolean;
  /** A changed tool whose call a person approved: its definition is pinned once the call is made. */
  change?: ToolChange;
}

export interface Session {
  recorder: SessionRecorder;
  gate: ApprovalGate;
  /** The server's Mcp-Session-Id, once it named one. */
  id?: string;
  pending: Map<Id, Pending>;
  /** Server requests passed to the agent, whose responses may go back. */
  serverRequests: Set<Id>;
  /** Held requests, by id: a notifications/cancelled for one withdraws it. */
  holds: Map<Id, AbortController>;
  /** Requests and streams of the agent's in progress, and when the last one ended (epoch ms). */
  busy: number;
  lastSeen: number;
}
