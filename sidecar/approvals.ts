// Approvals through the operator: a held request becomes an AccessRequest (POST /v1/approvals
// with the pod's token; the operator takes who asked from the token, never from the body), then
// the sidecar waits for its phase with a long poll that the operator answers as soon as the
// phase leaves Pending. Any failure to ask is a denial (the enforcer's rule: no decision, no
// access); a failure while waiting is retried until the request expires or the session ends.
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { ApprovalRequest, ApprovalResult, Approvals } from './core/enforcer.ts';
import { https } from './core/node-http.ts';

export interface OperatorApprovalsOptions {
  /** The control API's base URL, as for the bundle. */
  controlApi: string;
  tokenFile: string;
  caFile: string;
  logger?: Logger;
  /** How long one wait request may stay open (the operator caps it too). */
  longPollMs?: number;
}

interface ApprovalState {
  name: string;
  namespace: string;
  phase: 'Pending' | 'Approved' | 'Denied' | 'Expired';
  expiresAt?: string;
  decidedBy?: string;
  reason?: string;
}

class ApprovalApiError extends Error {
  override name = 'ApprovalApiError';
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

export class OperatorApprovals implements Approvals {
  readonly #options: OperatorApprovalsOptions;
  readonly #agent = new https.Agent({ keepAlive: true });

  constructor(options: OperatorApprovalsOptions) {
    this.#options = options;
  }

  async #call<T>(method: 'GET' | 'POST', path: string, body: unknown, signal?: AbortSignal): Promise<T> {
    // Re-read on every call: the kubelet rotates the projected token.
    const [token, ca] = await Promise.all([
      readFile(this.#options.tokenFile, 'utf8').then((t) => t.trim()),
      readFile(this.#options.caFile, 'utf8'),
    ]);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise<T>((resolve, reject) => {
      const req = https.request(
        new URL(path, this.#options.controlApi),
        {
          method,
          ca,
          agent: this.#agent,
          headers: {
            authorization: `Bearer ${token}`,
            ...(payload !== undefined && {
              'content-type': 'application/json',
              'content-length': Buffer.byteLength(payload),
            }),
          },
          ...(signal && { signal }),
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            text += chunk;
          });
          res.on('end', () => {
            let parsed: { message?: string } | undefined;
            try {
              parsed = JSON.parse(text);
            } catch {
              parsed = undefined;
            }
            if ((res.statusCode ?? 0) >= 300) {
              reject(
                new ApprovalApiError(res.statusCode ?? 0, parsed?.message ?? `status ${res.statusCode}`),
              );
            } else resolve(parsed as T);
          });
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
  }

  async request(held: ApprovalRequest, signal?: AbortSignal): Promise<ApprovalResult> {
    const ended = (): ApprovalResult => ({ approved: false, outcome: 'denied', reason: 'the session ended' });
    if (signal?.aborted) return ended();
    const created = await this.#call<ApprovalState>(
      'POST',
      '/v1/approvals',
      {
        sessionId: held.sessionId,
        connection: held.connection,
        policy: held.policy,
        rule: held.rule,
        text: held.text,
        reasons: held.reasons,
        timeoutMs: held.timeoutMs,
        ...(held.endUser && { user: held.endUser.user, groups: held.endUser.groups }),
      },
      signal,
    ).catch((error: unknown) => {
      if (signal?.aborted) return undefined;
      throw error;
    });
    if (!created) return ended();
    this.#options.logger?.info(
      { event: 'approval-requested', request: created.name, policy: held.policy, rule: held.rule },
      'held for approval',
    );
    const longPollMs = this.#options.longPollMs ?? 25_000;
    const path = `/v1/approvals?name=${encodeURIComponent(created.name)}&waitMs=${longPollMs}`;
    let failures = 0;
    for (;;) {
      if (signal?.aborted) return { ...ended(), request: created.name };
      let state: ApprovalState;
      try {
        state = await this.#call<ApprovalState>('GET', path, undefined, signal);
        failures = 0;
      } catch (error) {
        if (signal?.aborted) return { ...ended(), request: created.name };
        if (error instanceof ApprovalApiError && error.status === 404) {
          return { approved: false, outcome: 'denied', reason: error.message, request: created.name };
        }
        // The operator restarts, or a replica goes away: ask again, with backoff, until the
        // enforcer's own bound (the rule's timeout) ends the wait.
        this.#options.logger?.warn(
          { event: 'approval-wait-failed', request: created.name, err: (error as Error).message },
          'waiting for the decision failed; retrying',
        );
        await new Promise((r) => setTimeout(r, Math.min(100 * 2 ** failures++, 5_000)));
        continue;
      }
      if (state.phase === 'Pending') continue;
      return {
        approved: state.phase === 'Approved',
        outcome: state.phase === 'Approved' ? 'approved' : state.phase === 'Denied' ? 'denied' : 'expired',
        request: state.name,
        ...(state.decidedBy && { decidedBy: state.decidedBy }),
        ...(state.reason
          ? { reason: state.reason }
          : state.phase === 'Expired' && { reason: 'nobody decided in time' }),
      };
    }
  }

  close(): void {
    this.#agent.destroy();
  }
}
