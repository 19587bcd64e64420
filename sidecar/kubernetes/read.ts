// A request as the API server reads it (policy/kubernetes-request.ts), or why it is refused
// before any rule is asked: a URL it could read two ways, or what the Connection refuses
// whatever the rules say (impersonation, dry runs, foreign field managers).
import type { IncomingMessage } from 'node:http';
import { AirlockError } from '../core/errors.ts';
import { describeRequest, type KubernetesAllowances, refusedByConnection } from '../policy/kubernetes.ts';
import { type KubernetesRequest, parseKubernetesRequest } from '../policy/kubernetes-request.ts';
import { impersonationHeaders } from './headers.ts';

export type Read =
  | { ok: true; request: KubernetesRequest; text: string }
  | { ok: false; error: AirlockError; text: string; reasons: string[] };

/** The request as the API server reads it, or why it is refused before any rule is asked. */
export function read(allowances: KubernetesAllowances, req: IncomingMessage): Read {
  const method = (req.method ?? 'GET').toUpperCase();
  const parsed = parseKubernetesRequest(method, req.url ?? '');
  if (!parsed.ok) {
    const message = `airlock: ambiguous request: ${parsed.reason}`;
    return {
      ok: false,
      error: new AirlockError('protocol-violation', message),
      text: `${method} (unreadable path)`,
      reasons: [parsed.reason],
    };
  }
  const text = describeRequest(parsed.request);
  const refused = refusedByConnection(parsed.request, impersonationHeaders(req.headers), allowances);
  if (refused)
    return {
      ok: false,
      error: new AirlockError('policy-denied', `airlock: ${text} denied: ${refused}`),
      text,
      reasons: [refused],
    };
  return { ok: true, request: parsed.request, text };
}
