// What of an agent's message (or batch) reaches the server. Every request is classified: tool
// calls, resource reads and prompt gets are decided by the policies (and a changed tool by its
// pin), the transport's own requests (initialize, ping, the lists, completion, logging) pass
// (an initialize while the server's instructions differ from their pin waits for a person),
// and any other method is refused: the enforcer forwards only what it knows how to govern. A
// batch goes whole or not at all: one refused request refuses all of it, so a denied call
// cannot ride along with allowed ones; held requests are held one after another, then the
// batch goes. Forwarded messages are the parsed ones serialized again, so the server reads
// exactly what was decided (no duplicate keys, no escapes read differently).
import { AirlockError } from '../core/errors.ts';
import { passageFields } from '../core/gate.ts';
import { type Decision, defaultApproval, denialMessage } from '../policy/decide.ts';
import { maskJson } from '../policy/json-mask.ts';
import { decideMcp, isPlainToolName, type McpRequest } from '../policy/mcp.ts';
import type { Context, Pending, Session } from './context.ts';
import { instructionsPin, type ToolChange } from './fingerprints.ts';
import { type Body, type Id, jsonRpcCodes, type Message } from './jsonrpc.ts';
import { maxDepth, within } from './mask.ts';

/** Requests that pass without a decision: the session's life, listings, completion, logging. */
const transportMethods = new Set([
  'initialize',
  'ping',
  'tools/list',
  'resources/list',
  'resources/templates/list',
  'resources/unsubscribe',
  'prompts/list',
  'completion/complete',
  'logging/setLevel',
]);

/** Notifications an agent sends that the server may receive. */
const clientNotifications = new Set([
  'notifications/initialized',
  'notifications/cancelled',
  'notifications/progress',
  'notifications/roots/list_changed',
]);

/** The longest arguments text an event keeps. */
const maxEventText = 4096;

export interface Refusal {
  id: Id;
  error: AirlockError;
  policy?: string;
  rule?: string;
}

export type Admission = { go: true; forward: Record<string, unknown>[] } | { go: false; refusals: Refusal[] };

export interface AdmitOptions {
  /** Aborted when the agent goes away: every hold is withdrawn. */
  signal: AbortSignal;
  /** Told when a request starts to wait for a person, with its progress token if it gave one. */
  onHold: (id: Id, message: string, progressToken: unknown) => void;
}

interface Step {
  message: Message;
  raw: Record<string, unknown>;
  /** For a request: what its response is recorded and masked as. */
  pending?: Pending;
  decision?: Decision;
  refusal?: AirlockError;
}

export async function admit(
  context: Context,
  session: Session,
  body: Body,
  options: AdmitOptions,
): Promise<Admission> {
  const steps = body.messages.map((message, i) => classify(context, message, body.raw[i]!));
  // The agent withdrew a request it is still waiting on: the hold ends, the server never sees it.
  for (const { message } of steps)
    if (message.kind === 'notification' && message.method === 'notifications/cancelled')
      session.holds.get(message.params?.requestId as Id)?.abort();
  // An id already in flight would make two answers one: the second request is refused.
  const ids = new Set<Id>();
  for (const step of steps) {
    const { message } = step;
    if (message.kind !== 'request') continue;
    if (ids.has(message.id) || session.pending.has(message.id) || session.holds.has(message.id))
      step.refusal = new AirlockError(
        'protocol-violation',
        `airlock: request id ${JSON.stringify(message.id)} is already in flight`,
      );
    ids.add(message.id);
  }
  const unrecorded = session.gate.unrecorded();
  const first = steps.find((s) => s.refusal || s.decision?.action === 'deny');
  if (unrecorded || first) {
    return refuseAll(
      session,
      steps,
      (step) =>
        unrecorded ?? step.refusal ?? (step.decision?.action === 'deny' ? undefined : batchRefusal(first!)),
    );
  }
  for (const step of steps) {
    const { message, decision, pending } = step;
    if (message.kind !== 'request' || !decision || !pending) continue;
    const withdrawn = new AbortController();
    session.holds.set(message.id, withdrawn);
    const progressToken = (message.params?._meta as Record<string, unknown> | undefined)?.progressToken;
    try {
      const passage = await session.gate.pass({
        decision,
        text: pending.text,
        what: whatOf(message.method),
        signal: AbortSignal.any([options.signal, withdrawn.signal]),
        onHold: (text) => options.onHold(message.id, text, progressToken),
      });
      pending.fields = passageFields(decision, passage);
      if (!passage.go) {
        step.refusal = passage.error;
        return refuseAll(session, steps, (s) => (s === step ? passage.error : batchRefusal(step)));
      }
      if (pending.change && passage.outcome === 'approved') context.pins.accept(pending.change);
    } finally {
      session.holds.delete(message.id);
    }
  }
  const forward: Record<string, unknown>[] = [];
  for (const step of steps) {
    const { message } = step;
    if (message.kind === 'notification' && !clientNotifications.has(message.method)) {
      session.recorder.error(
        'protocol-violation',
        `airlock: notification ${message.method} was not passed on`,
      );
      continue;
    }
    if (message.kind === 'response') {
      if (message.id === null || !session.serverRequests.delete(message.id)) {
        session.recorder.error(
          'protocol-violation',
          'airlock: a response to no request the server made was not passed on',
        );
        continue;
      }
    }
    if (message.kind === 'request' && step.pending) session.pending.set(message.id, step.pending);
    forward.push(step.raw);
  }
  return { go: true, forward };
}

/** Decides one message as far as it can without waiting. */
function classify(context: Context, message: Message, raw: Record<string, unknown>): Step {
  if (message.kind !== 'request') return { message, raw };
  const { method, params } = message;
  const pending = (text: string, kind: string, recorded: boolean): Pending => ({
    method,
    text,
    kind,
    started: Date.now(),
    fields: { outcome: 'allowed' },
    recorded,
  });
  if (method === 'initialize') return initializeStep(context, message, raw, pending);
  if (transportMethods.has(method)) return { message, raw, pending: pending(method, 'mcp', false) };
  const request = governed(method, params);
  if (typeof request === 'string') {
    const step: Step = {
      message,
      raw,
      pending: pending(method, 'mcp', true),
      refusal: refusalOf(method, request),
    };
    return step;
  }
  const text = requestText(context, method, request, params);
  const kind = `mcp-${request.kind}`;
  let decision = decideMcp(context.connection.policies, request);
  let change: ToolChange | undefined;
  if (request.kind === 'tool') {
    change = context.pins.change(request.name);
    decision = withChange(decision, change, context.mcp.toolChanges);
  }
  const p = pending(text, kind, true);
  if (change) p.change = change;
  return { message, raw, pending: p, decision };
}

/**
 * An initialize passes, unless the server's instructions changed since they were pinned and
 * changes wait for a person: then it is held, and its approval pins the new instructions. With
 * toolChanges: deny the changed instructions are withheld for good and initialize passes.
 */
function initializeStep(
  context: Context,
  message: Message,
  raw: Record<string, unknown>,
  pending: (text: string, kind: string, recorded: boolean) => Pending,
): Step {
  const change = context.pins.change(instructionsPin);
  if (!change || context.mcp.toolChanges === 'deny')
    return { message, raw, pending: pending('initialize', 'mcp', false) };
  const p = pending('initialize', 'mcp', true);
  p.change = change;
  const allow: Decision = { action: 'allow', reasons: [], wouldHave: [] };
  return { message, raw, pending: p, decision: withChange(allow, change, 'require-approval') };
}

/** The request a governed method names, or why it cannot be read. */
function governed(method: string, params: Record<string, unknown> | undefined): McpRequest | string {
  switch (method) {
    case 'tools/call': {
      const name = params?.name;
      if (typeof name !== 'string') return 'tools/call without a tool name';
      if (!isPlainToolName(name))
        return `tool name ${JSON.stringify(name)} is outside the plain set (ASCII letters, digits, _ - . /)`;
      const args = params?.arguments;
      if (args !== undefined && (args === null || typeof args !== 'object' || Array.isArray(args)))
        return 'tools/call with arguments that are not an object';
      if (!within(args, maxDepth)) return `tools/call with arguments nested deeper than ${maxDepth} levels`;
      return { kind: 'tool', name, arguments: args ?? {} };
    }
    case 'resources/read':
    case 'resources/subscribe': {
      const uri = params?.uri;
      return typeof uri === 'string' ? { kind: 'resource', uri } : `${method} without a URI`;
    }
    case 'prompts/get': {
      const name = params?.name;
      return typeof name === 'string' ? { kind: 'prompt', name } : 'prompts/get without a prompt name';
    }
    default:
      return `unsupported:${method}`;
  }
}

function refusalOf(method: string, reason: string): AirlockError {
  if (reason.startsWith('unsupported:'))
    return new AirlockError(
      'unsupported',
      `airlock: ${method} is not a method Airlock governs, so it was not passed on`,
    );
  return new AirlockError('protocol-violation', `airlock: ${reason}`);
}

/** A changed tool: held for a person to approve its new definition, or denied (toolChanges). */
function withChange(
  decision: Decision,
  change: ToolChange | undefined,
  toolChanges: 'require-approval' | 'deny',
): Decision {
  if (!change || decision.action === 'deny') return decision;
  const what = change.tool === instructionsPin ? "the server's instructions" : `tool "${change.tool}"`;
  const reason = `${what} changed since Airlock first saw it (its definition was ${change.pinned.slice(0, 12)}, is now ${change.seen.slice(0, 12)})`;
  const base = {
    // A rule of its own per definition: a session-wide approval of some rule never covers it.
    rule: `tool-changed:${change.tool}:${change.seen.slice(0, 12)}`,
    message: reason,
    reasons: [reason, ...decision.reasons],
    wouldHave: decision.wouldHave,
  };
  if (toolChanges === 'deny') return { action: 'deny', ...base };
  return {
    action: 'require-approval',
    ...base,
    approval: { ...(decision.approval ?? defaultApproval), scope: 'statement' },
  };
}

/** The request as events and approvers see it: arguments and URIs with detected values masked. */
function requestText(
  context: Context,
  method: string,
  request: McpRequest,
  params: Record<string, unknown> | undefined,
): string {
  const { plan, paths } = context.masker;
  if (request.kind === 'resource') return `${method} ${plan.maskText(request.uri).value}`;
  const { name } = request;
  const args = request.kind === 'tool' ? request.arguments : (params?.arguments ?? {});
  const masked = within(args, maxDepth) ? JSON.stringify(maskJson(args, plan, paths).value) : '[too deep]';
  const text = `${method} ${name} ${masked}`;
  return text.length > maxEventText ? `${text.slice(0, maxEventText)}…` : text;
}

function whatOf(method: string): string {
  if (method === 'initialize') return 'initialize';
  return method === 'tools/call' ? 'tool call' : method === 'prompts/get' ? 'prompt' : 'resource read';
}

function batchRefusal(step: Step): AirlockError {
  const id = step.message.kind === 'request' ? JSON.stringify(step.message.id) : '';
  return new AirlockError(
    'policy-denied',
    `airlock: not passed on: request ${id} in the same batch was refused, and a batch goes whole or not at all`,
  );
}

/** Answers every request of the batch with its refusal and records each; nothing is forwarded. */
function refuseAll(
  session: Session,
  steps: Step[],
  errorOf: (step: Step) => AirlockError | undefined,
): Admission {
  const refusals: Refusal[] = [];
  for (const step of steps) {
    const { message, decision, pending } = step;
    if (message.kind !== 'request') continue;
    const error =
      errorOf(step) ?? new AirlockError('policy-denied', denialMessage(decision!, whatOf(message.method)));
    const fields = decision
      ? {
          ...passageFields(decision, { go: false, outcome: outcomeOf(error), error }),
          ...(pending?.fields.approval && { approval: pending.fields.approval }),
        }
      : { outcome: outcomeOf(error) };
    refusals.push({
      id: message.id,
      error,
      ...(decision?.policy !== undefined && { policy: decision.policy }),
      ...(decision?.rule !== undefined && { rule: decision.rule }),
    });
    session.recorder.request({
      text: pending?.text ?? message.method,
      kind: pending?.kind ?? 'mcp',
      ...fields,
      outcome: outcomeOf(error),
      error: error.event(jsonRpcCodes[error.code]),
      durationMs: pending ? Date.now() - pending.started : 0,
    });
  }
  return { go: false, refusals };
}

function outcomeOf(error: AirlockError): 'blocked' | 'denied' | 'expired' | 'error' {
  switch (error.code) {
    case 'policy-denied':
    case 'protocol-violation':
    case 'unsupported':
      return 'blocked';
    case 'approval-denied':
      return 'denied';
    case 'approval-expired':
      return 'expired';
    default:
      return 'error';
  }
}
