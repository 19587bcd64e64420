// What of the server's messages reaches the agent, one message at a time, whether they come in
// a JSON response or on an event stream. Listings are filtered: a tool every call to which is
// denied, a tool with a name outside the plain set, a tool whose definition changed since it was
// pinned, and resources and prompts every read or get of which is denied are left out. The
// server's initialize instructions are masked, and withheld while they differ from their pin. Results
// of governed requests are masked and recorded, server requests are refused unless the
// Connection allows them (the server gets the error, the agent never sees them), notifications
// are masked. Whatever cannot be read as JSON-RPC, or answers no request in flight, is dropped.
import { AirlockError } from '../core/errors.ts';
import { maskingFields } from '../core/recorder.ts';
import { decideMcp, isPlainToolName, toolOffered } from '../policy/mcp.ts';
import type { Context, Pending, Session } from './context.ts';
import { instructionsFingerprint, instructionsPin, toolFingerprint } from './fingerprints.ts';
import { errorResponse, type Id, jsonRpcCodes, readMessage } from './jsonrpc.ts';
import { maskMessageValue } from './mask.ts';

/** Server requests by the Connection option that lets them through. */
const serverRequestOptions: Record<string, string> = {
  'sampling/createMessage': 'sampling',
  'elicitation/create': 'elicitation',
  'roots/list': 'roots',
};

export interface Relay {
  context: Context;
  session: Session;
  /** Sends the server the enforcer's own answer to a server request it refused. */
  answerServer: (message: Record<string, unknown>) => void;
}

/** The message as the agent receives it, or undefined when it is not passed on. */
export function relay(r: Relay, raw: unknown): Record<string, unknown> | undefined {
  const { session } = r;
  const message = readMessage(raw);
  if (typeof message === 'string') {
    session.recorder.error('protocol-violation', `airlock: the server sent ${message}; it was not passed on`);
    return undefined;
  }
  if (message.kind === 'notification') return masked(r, raw as Record<string, unknown>, 'params');
  if (message.kind === 'request') {
    const option = serverRequestOptions[message.method];
    const allowed =
      message.method === 'ping' ||
      (option !== undefined && (r.context.mcp.serverRequests as readonly string[]).includes(option));
    if (!allowed) {
      refuseServerRequest(r, message.id, message.method);
      return undefined;
    }
    session.serverRequests.add(message.id);
    return masked(r, raw as Record<string, unknown>, 'params');
  }
  if (message.id === null) return masked(r, raw as Record<string, unknown>, 'error');
  const pending = session.pending.get(message.id);
  if (!pending) {
    session.recorder.error(
      'protocol-violation',
      'airlock: the server answered no request in flight; it was not passed on',
    );
    return undefined;
  }
  session.pending.delete(message.id);
  if (message.error !== undefined) {
    const answer = masked(r, raw as Record<string, unknown>, 'error');
    if (pending.recorded) {
      const error = new AirlockError(
        'target-error',
        `the server answered with an error: ${errorText(answer?.error)}`,
      );
      record(r, pending, { outcome: 'error', error: error.event(errorCode(answer?.error)) });
    }
    return answer;
  }
  if (pending.method === 'initialize') return initialized(r, pending, raw as Record<string, unknown>);
  if (pending.method === 'tools/list')
    return { ...(raw as Record<string, unknown>), result: listed(r, message.result) };
  if (pending.method === 'resources/list' || pending.method === 'prompts/list')
    return { ...(raw as Record<string, unknown>), result: listedOthers(r, pending.method, message.result) };
  if (!pending.recorded) return raw as Record<string, unknown>;
  try {
    const result = maskMessageValue(r.context.masker, message.result);
    const counted = maskingFields(
      r.context.connection.policies,
      result.counts,
      result.wouldMask,
      pending.fields.wouldHave,
    );
    const outcome =
      counted.masked && pending.fields.outcome === 'allowed' ? 'masked' : pending.fields.outcome;
    const answer = { jsonrpc: '2.0', id: message.id, result: result.value };
    record(r, pending, { ...counted, outcome, bytes: Buffer.byteLength(JSON.stringify(result.value)) });
    return answer;
  } catch (error) {
    const refusal =
      error instanceof AirlockError
        ? error
        : new AirlockError('masking-failed', `airlock: the result could not be masked: ${String(error)}`);
    record(r, pending, { outcome: 'error', error: refusal.event(jsonRpcCodes[refusal.code]) });
    return errorResponse(message.id, refusal);
  }
}

/** A governed request's event, once its answer is known. */
export function record(
  r: Relay,
  pending: Pending,
  fields: Partial<Parameters<Session['recorder']['request']>[0]>,
): void {
  r.session.recorder.request({
    text: pending.text,
    kind: pending.kind,
    ...pending.fields,
    ...fields,
    outcome: fields.outcome ?? pending.fields.outcome,
    durationMs: Date.now() - pending.started,
  });
}

/**
 * The initialize result with its instructions masked, pinned on first sight, and left out while
 * they differ from their pin (a rug pull, like a changed tool's). An initialize held for a
 * person's approval of the new instructions is recorded.
 */
function initialized(r: Relay, pending: Pending, raw: Record<string, unknown>): Record<string, unknown> {
  const result = raw.result as Record<string, unknown> | null;
  const instructions = result !== null && typeof result === 'object' ? result.instructions : undefined;
  if (pending.recorded) record(r, pending, {});
  if (instructions === undefined) return raw;
  const { instructions: _, ...rest } = result as Record<string, unknown>;
  if (typeof instructions !== 'string') return { ...raw, result: rest };
  const change = r.context.pins.see(instructionsPin, instructionsFingerprint(instructions));
  if (change) {
    r.session.recorder.error(
      'tool-changed',
      `airlock: the server's instructions changed since Airlock first saw them (${change.pinned.slice(0, 12)} → ${change.seen.slice(0, 12)}); they are withheld until a person approves them`,
    );
    return { ...raw, result: rest };
  }
  try {
    return {
      ...raw,
      result: { ...rest, instructions: maskMessageValue(r.context.masker, instructions).value },
    };
  } catch (error) {
    r.session.recorder.error('masking-failed', error instanceof Error ? error.message : String(error));
    return { ...raw, result: rest };
  }
}

/** tools/list as the policies offer it: tools are pinned on first sight, changed ones withheld. */
function listed(r: Relay, result: unknown): unknown {
  const { context, session } = r;
  if (result === null || typeof result !== 'object' || !Array.isArray((result as { tools?: unknown }).tools))
    return { tools: [] };
  const tools = (result as { tools: unknown[] }).tools.filter((tool): tool is Record<string, unknown> => {
    if (tool === null || typeof tool !== 'object') return false;
    const name = (tool as { name?: unknown }).name;
    if (typeof name !== 'string' || !isPlainToolName(name)) return false;
    if (!toolOffered(context.connection.policies, name)) return false;
    const change = context.pins.see(name, toolFingerprint(tool as Record<string, unknown>));
    if (change) {
      session.recorder.error(
        'tool-changed',
        `airlock: tool "${name}" changed since Airlock first saw it (${change.pinned.slice(0, 12)} → ${change.seen.slice(0, 12)}); it is withheld until a person approves a call to it`,
      );
      return false;
    }
    return true;
  });
  return { ...(result as Record<string, unknown>), tools };
}

/** resources/list and prompts/list without what every read or get of would be denied. */
function listedOthers(r: Relay, method: 'resources/list' | 'prompts/list', result: unknown): unknown {
  const key = method === 'resources/list' ? 'resources' : 'prompts';
  const items = (result as Record<string, unknown> | null)?.[key];
  if (!Array.isArray(items)) return { [key]: [] };
  const { policies } = r.context.connection;
  const kept = items.filter((item: unknown) => {
    const { uri, name } = (item ?? {}) as { uri?: unknown; name?: unknown };
    if (method === 'resources/list')
      return typeof uri === 'string' && decideMcp(policies, { kind: 'resource', uri }).action !== 'deny';
    return typeof name === 'string' && decideMcp(policies, { kind: 'prompt', name }).action !== 'deny';
  });
  return { ...(result as Record<string, unknown>), [key]: kept };
}

/** A message with one of its members masked (params of notifications, an error's text). */
function masked(
  r: Relay,
  raw: Record<string, unknown>,
  member: 'params' | 'error',
): Record<string, unknown> | undefined {
  if (raw[member] === undefined) return raw;
  try {
    return { ...raw, [member]: maskMessageValue(r.context.masker, raw[member]).value };
  } catch (error) {
    r.session.recorder.error('masking-failed', error instanceof Error ? error.message : String(error));
    return undefined;
  }
}

function refuseServerRequest(r: Relay, id: Id, method: string): void {
  const error = new AirlockError(
    'policy-denied',
    `airlock: the server's ${method} request is not allowed on Connection ${r.context.connection.name} (mcp.serverRequests)`,
  );
  r.session.recorder.request({
    text: method,
    kind: 'mcp-server-request',
    outcome: 'blocked',
    reasons: [error.message],
    error: error.event(jsonRpcCodes[error.code]),
    durationMs: 0,
  });
  r.answerServer(errorResponse(id, error));
}

function errorText(error: unknown): string {
  const message = (error as { message?: unknown } | undefined)?.message;
  return typeof message === 'string' ? message : 'no message';
}

function errorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === 'number' ? String(code) : undefined;
}
