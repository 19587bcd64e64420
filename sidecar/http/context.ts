// What the HTTP enforcer's parts share: its options, the per-listener context (masking plans,
// the target, the policies rules are matched with), and the enforcer's own answers (problem
// documents).
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { BundlePolicy } from '../../api/bundle.ts';
import type { EnforcerOptions } from '../core/enforcer.ts';
import { type AirlockError, httpProblems, problemType } from '../core/errors.ts';
import type { MaskText, ValueShape } from '../core/stream-masker.ts';
import type { JsonPathRule } from '../policy/json-paths.ts';
import type { MaskingPlan } from '../policy/masking.ts';
import type { Upstream } from './upstream.ts';

export interface HttpEnforcerOptions extends EnforcerOptions {
  /** Bodies up to this size are recorded whole; larger ones are summarized. */
  maxRecordedBody?: number;
  /**
   * JSON responses of declared length up to this size are answered with their masked length
   * (held until masked whole); larger ones, and those of unknown length, stream chunked.
   */
  maxJsonBody?: number;
  /**
   * Longest JSON string or number held to be masked whole; a longer one, or nesting deeper than
   * 256 levels, ends the response with an error (it cannot be masked, nor passed on unmasked).
   */
  maxJsonToken?: number;
  /**
   * A form, multipart or JSON request body up to this size is read whole when its `_method`
   * could change the decision; a larger one is decided as every method.
   */
  maxOverrideBody?: number;
}

export const defaultMaxRecordedBody = 64 * 1024;
export const defaultMaxJsonBody = 8 * 1024 * 1024;
export const defaultMaxJsonToken = 8 * 1024 * 1024;
export const defaultMaxOverrideBody = 1024 * 1024;

export interface Target {
  secure: boolean;
  upstream: Upstream;
}

export interface Context {
  options: HttpEnforcerOptions;
  plan: MaskingPlan;
  /** The plan JSON strings are masked by: they are already unescaped. */
  jsonPlan: MaskingPlan;
  jsonPaths: JsonPathRule[];
  target: Target;
  caseInsensitive: boolean;
  /** Free text masked by detectors and patterns, encoded forms included. */
  maskText: MaskText;
  /** What the text masker must never cut. */
  shape: ValueShape;
  /** The policies rules are matched with (path globs in lower case for a case-insensitive target). */
  rulePolicies: BundlePolicy[];
  /** Every method a request with an unreadable override is decided as. */
  ruleMethods: string[];
  /** The credential values the enforcer puts on requests, kept out of every response (policy/held.ts). */
  heldText: string[];
  /** The same, as bytes: what response bodies are read for. */
  held: Buffer[];
}

/** The enforcer's own answer for an error code: a problem document (RFC 9457). */
export function problem(
  res: ServerResponse,
  code: AirlockError['code'],
  detail: string,
  extra: Record<string, unknown> = {},
): void {
  const { status, title } = httpProblems[code];
  const body = JSON.stringify({
    type: problemType(code),
    title,
    status,
    detail,
    code,
    airlock: true,
    ...extra,
  });
  res.writeHead(status, {
    'content-type': 'application/problem+json',
    'content-length': Buffer.byteLength(body),
    'x-airlock': 'enforced',
  });
  res.end(body);
}

/** Header names that carry the agent's credentials: never forwarded, never recorded. */
export function credentialHeaders(context: Context): Set<string> {
  const names = new Set(['authorization', 'proxy-authorization', 'cookie']);
  const header = context.options.connection.credentials.header;
  if (header) names.add(header.toLowerCase());
  return names;
}

export function describeHeaders(headers: IncomingHttpHeaders, secret: Set<string>): string {
  return Object.entries(headers)
    .map(
      ([name, value]) =>
        `${name}: ${secret.has(name) || name === 'set-cookie' ? '[REDACTED]' : String(value)}`,
    )
    .join('\r\n');
}

export function redactText(context: Context, text: string): string {
  return context.plan.hasScanners ? context.maskText(text).value : text;
}

export function hasBody(req: IncomingMessage): boolean {
  return req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
}

export function method(req: IncomingMessage): string {
  return (req.method ?? 'GET').toUpperCase();
}
