// The control API: a sidecar proves who it is with its projected ServiceAccount token
// (audience "airlock"), and receives the bundle for exactly the Connections an AccessPolicy
// grants its ServiceAccount, followed by a new bundle whenever that changes.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AuthenticationV1Api, CoreV1Api, V1Pod } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { Bundle, BundleSources, Identity } from '../api/bundle.ts';
import { compileBundle } from '../api/compile-bundle.ts';
import { statusCode } from './kube.ts';
import type { Metrics } from './metrics.ts';

export const tokenAudience = 'airlock';
export const injectedAnnotation = 'airlock.dev/injected';
const podNameClaim = 'authentication.kubernetes.io/pod-name';
const podUidClaim = 'authentication.kubernetes.io/pod-uid';

export type RefusalReason =
  | 'NoToken'
  | 'TokenRejected'
  | 'NotAServiceAccount'
  | 'NotPodBound'
  | 'PodNotFound'
  | 'PodMismatch'
  | 'PodNotInjected'
  | 'NoGrant';

export class Refusal extends Error {
  override name = 'Refusal';
  readonly reason: RefusalReason;
  readonly status: number;
  constructor(reason: RefusalReason, message: string, status = 403) {
    super(message);
    this.reason = reason;
    this.status = status;
  }
}

export interface ControlApiOptions {
  authentication: AuthenticationV1Api;
  core: CoreV1Api;
  logger: Logger;
  metrics: Metrics;
  /** The current Connections, AccessPolicies and Secrets, from the operator's caches. */
  sources: () => BundleSources;
  heartbeatMs?: number;
}

interface Follower {
  identity: Identity;
  revision: string;
  response: ServerResponse;
}

export class ControlApi {
  readonly #options: ControlApiOptions;
  readonly #followers = new Set<Follower>();
  #pushTimer?: NodeJS.Timeout;

  constructor(options: ControlApiOptions) {
    this.#options = options;
  }

  get followers(): number {
    return this.#followers.size;
  }

  /** Verifies a sidecar's token and the pod it is bound to; returns the identity to serve. */
  async authenticate(authorization: string | undefined): Promise<Identity> {
    const token = /^Bearer (\S+)$/.exec(authorization ?? '')?.[1];
    if (!token) throw new Refusal('NoToken', 'a bearer token is required', 401);
    const review = await this.#options.authentication.createTokenReview({
      body: {
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenReview',
        spec: { token, audiences: [tokenAudience] },
      },
    });
    const status = review.status;
    if (!status?.authenticated || !(status.audiences ?? []).includes(tokenAudience)) {
      throw new Refusal('TokenRejected', `the token is not valid for audience "${tokenAudience}"`, 401);
    }
    const match = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(status.user?.username ?? '');
    if (!match) throw new Refusal('NotAServiceAccount', 'the token does not belong to a ServiceAccount');
    const [, namespace, serviceAccount] = match as unknown as [string, string, string];
    const podName = status.user?.extra?.[podNameClaim]?.[0];
    const podUid = status.user?.extra?.[podUidClaim]?.[0];
    if (!podName || !podUid) throw new Refusal('NotPodBound', 'the token is not bound to a pod');
    let pod: V1Pod;
    try {
      pod = await this.#options.core.readNamespacedPod({ name: podName, namespace });
    } catch (error) {
      if (statusCode(error) === 404)
        throw new Refusal('PodNotFound', `pod ${namespace}/${podName} does not exist`);
      throw error;
    }
    if (pod.metadata?.uid !== podUid || (pod.spec?.serviceAccountName ?? 'default') !== serviceAccount) {
      throw new Refusal('PodMismatch', `pod ${namespace}/${podName} is not the pod the token was issued for`);
    }
    if (!pod.metadata?.annotations?.[injectedAnnotation]) {
      throw new Refusal('PodNotInjected', `pod ${namespace}/${podName} was not injected by Airlock`);
    }
    return { namespace, serviceAccount, pod: podName };
  }

  bundleFor(identity: Identity): Bundle {
    const { bundle, problems } = compileBundle(this.#options.sources(), identity);
    for (const problem of problems) {
      this.#options.logger.warn({ identity, ...problem }, 'granted Connection left out of the bundle');
    }
    return bundle;
  }

  /** GET /v1/bundle: authenticates, then streams the bundle as NDJSON until the client leaves. */
  async serveBundle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const { logger, metrics } = this.#options;
    const started = process.hrtime.bigint();
    let identity: Identity;
    try {
      identity = await this.authenticate(request.headers.authorization);
    } catch (error) {
      const refusal =
        error instanceof Refusal ? error : new Refusal('TokenRejected', 'authentication failed', 503);
      if (!(error instanceof Refusal))
        logger.error({ err: String((error as Error)?.message) }, 'authentication error');
      metrics.bundleRefusals.inc({ reason: refusal.reason });
      logger.warn(
        { reason: refusal.reason, remote: request.socket.remoteAddress, message: refusal.message },
        'bundle request refused',
      );
      respondJson(response, refusal.status, { reason: refusal.reason, message: refusal.message });
      return;
    } finally {
      metrics.controlApiLatency.observe(Number(process.hrtime.bigint() - started) / 1e9);
    }
    const bundle = this.bundleFor(identity);
    if (bundle.connections.length === 0) {
      metrics.bundleRefusals.inc({ reason: 'NoGrant' });
      logger.warn(
        { identity },
        'bundle request refused: no AccessPolicy grants this ServiceAccount a Connection',
      );
      respondJson(response, 403, {
        reason: 'NoGrant',
        message: `no AccessPolicy grants ServiceAccount ${identity.namespace}/${identity.serviceAccount} a Connection`,
      });
      return;
    }
    response.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
    const follower: Follower = { identity, revision: bundle.revision, response };
    this.#followers.add(follower);
    metrics.connectedSidecars.set(this.#followers.size);
    metrics.bundlePushes.inc({ reason: 'initial' });
    logger.info(
      { identity, revision: bundle.revision, connections: bundle.connections.map((c) => c.name) },
      'sidecar connected',
    );
    response.write(`${JSON.stringify({ type: 'bundle', bundle })}\n`);
    const heartbeat = setInterval(
      () => response.write('{"type":"heartbeat"}\n'),
      this.#options.heartbeatMs ?? 15_000,
    );
    const leave = () => {
      clearInterval(heartbeat);
      if (this.#followers.delete(follower)) {
        metrics.connectedSidecars.set(this.#followers.size);
        logger.info({ identity }, 'sidecar disconnected');
      }
    };
    response.on('close', leave);
    request.on('close', leave);
  }

  /** Called when sources change: recompiles (debounced) and pushes changed bundles. */
  sourcesChanged(): void {
    if (this.#pushTimer) return;
    this.#pushTimer = setTimeout(() => {
      this.#pushTimer = undefined;
      this.pushChanges();
    }, 20);
  }

  pushChanges(): void {
    for (const follower of this.#followers) {
      const bundle = this.bundleFor(follower.identity);
      if (bundle.revision === follower.revision) continue;
      follower.revision = bundle.revision;
      this.#options.metrics.bundlePushes.inc({ reason: 'change' });
      follower.response.write(`${JSON.stringify({ type: 'bundle', bundle })}\n`);
    }
  }

  close(): void {
    clearTimeout(this.#pushTimer);
    for (const follower of this.#followers) follower.response.end();
    this.#followers.clear();
  }
}

export function respondJson(response: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  response.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  response.end(text);
}
