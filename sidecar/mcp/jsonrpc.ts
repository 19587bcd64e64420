// JSON-RPC 2.0 as MCP carries it: what a message is (request, notification, response), read
// strictly so that anything the enforcer cannot classify is refused rather than passed on, and
// the enforcer's own error responses, with every AirlockError code on one JSON-RPC code.
import type { ErrorCode } from '../../api/events.ts';
import { AirlockError } from '../core/errors.ts';
import { within } from './mask.ts';

export type Id = string | number;

export type Message =
  | { kind: 'request'; id: Id; method: string; params: Record<string, unknown> | undefined }
  | { kind: 'notification'; method: string; params: Record<string, unknown> | undefined }
  | { kind: 'response'; id: Id | null; result?: unknown; error?: unknown };

/** A parsed body: one message, or a batch (an array, as the 2025-03-26 transport allows). */
export interface Body {
  batch: boolean;
  messages: Message[];
  /** Each message as parsed, in order: what is forwarded is these, serialized again. */
  raw: Record<string, unknown>[];
}

/**
 * JSON-RPC codes of the enforcer's refusals, in the implementation-defined server range
 * (-32000 to -32099) where JSON-RPC names none: a client tells Airlock's refusal from the
 * server's own errors by the code and by `data.airlock`.
 */
export const jsonRpcCodes: Record<ErrorCode, number> = {
  'policy-denied': -32003,
  'approval-denied': -32003,
  'approval-expired': -32003,
  'audit-unavailable': -32004,
  'upstream-unreachable': -32005,
  'target-error': -32006,
  'protocol-violation': -32600,
  unsupported: -32601,
  cancelled: -32800,
  'masking-failed': -32007,
  unauthenticated: -32001,
};

/** JSON-RPC's own codes for a body that is not JSON, and a message that is not JSON-RPC. */
const parseErrorCode = -32700;

/**
 * Deeper than this, a post is refused whole: no message needs it (arguments are bounded at 64
 * levels), and what is forwarded is written again, which a deep enough value would not survive.
 */
export const maxMessageDepth = 128;

/** Parses a body as JSON-RPC, or says what of it cannot be read. */
export function parseBody(
  text: string,
): { ok: true; body: Body } | { ok: false; error: AirlockError; code: number } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    return {
      ok: false,
      code: parseErrorCode,
      error: new AirlockError('protocol-violation', `airlock: the body is not JSON (${reason})`),
    };
  }
  if (!within(value, maxMessageDepth)) return invalid(`a body nested deeper than ${maxMessageDepth} levels`);
  const batch = Array.isArray(value);
  const items: unknown[] = batch ? (value as unknown[]) : [value];
  if (items.length === 0) return invalid('an empty batch');
  const messages: Message[] = [];
  const raw: Record<string, unknown>[] = [];
  for (const item of items) {
    const message = readMessage(item);
    if (typeof message === 'string') return invalid(message);
    messages.push(message);
    raw.push(item as Record<string, unknown>);
  }
  return { ok: true, body: { batch, messages, raw } };
}

/** One JSON-RPC message, or why it is not one. */
export function readMessage(item: unknown): Message | string {
  if (item === null || typeof item !== 'object' || Array.isArray(item))
    return 'a message that is not an object';
  const m = item as Record<string, unknown>;
  if (m.jsonrpc !== '2.0') return 'a message without jsonrpc "2.0"';
  const hasId = 'id' in m;
  const id = m.id;
  if (hasId && id !== null && typeof id !== 'string' && !(typeof id === 'number' && Number.isFinite(id)))
    return 'an id that is neither a string nor a number';
  if ('method' in m) {
    if (typeof m.method !== 'string' || m.method.length === 0 || m.method.length > 256)
      return 'a method that is not a name';
    if ('result' in m || 'error' in m) return 'a message that is both a request and a response';
    const params = m.params;
    if (params !== undefined && (params === null || typeof params !== 'object' || Array.isArray(params)))
      return `${m.method} with params that are not an object`;
    const p = params as Record<string, unknown> | undefined;
    if (!hasId) return { kind: 'notification', method: m.method, params: p };
    if (id === null) return `${m.method} with a null id`;
    return { kind: 'request', id: id as Id, method: m.method, params: p };
  }
  if (!hasId) return 'a message that is neither a request, a notification nor a response';
  if ('result' in m === 'error' in m) return 'a response with both or neither of result and error';
  return {
    kind: 'response',
    id: id as Id | null,
    ...('result' in m ? { result: m.result } : { error: m.error }),
  };
}

function invalid(what: string) {
  return {
    ok: false as const,
    code: jsonRpcCodes['protocol-violation'],
    error: new AirlockError('protocol-violation', `airlock: not a JSON-RPC request: ${what}`),
  };
}

/** The enforcer's error response to a request (id null when the request could not be read). */
export function errorResponse(
  id: Id | null,
  error: AirlockError,
  extra: { code?: number; policy?: string; rule?: string } = {},
): Record<string, unknown> {
  return {
    jsonrpc: '2.0',
    id,
    error: {
      code: extra.code ?? jsonRpcCodes[error.code],
      message: error.message,
      data: {
        airlock: true,
        code: error.code,
        ...(extra.policy !== undefined && { policy: extra.policy }),
        ...(extra.rule !== undefined && { rule: extra.rule }),
      },
    },
  };
}
