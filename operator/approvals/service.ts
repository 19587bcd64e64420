// The approval workflow in the operator: sidecars ask for an approval (POST /v1/approvals),
// which becomes an AccessRequest in the pod's namespace; they wait for its phase with a long
// poll (GET /v1/approvals?name=NAME); the reconciler moves the phase from the decision and the
// expiry; the admission webhooks (admission.ts) guard who decides. The leader also sends the
// notifications each request is owed (notify.ts) and records in its status what the receivers
// acknowledged.
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { z } from 'zod';
import { grants, type Identity } from '../../api/bundle.ts';
import { durationMs } from '../../api/duration.ts';
import {
  type AccessPolicy,
  type AccessRequest,
  accessRequestNotificationTypes,
  apiVersion,
  group,
  version,
} from '../../api/v1alpha1.ts';
import { type ControlApi, Refusal, respondJson } from '../control-api.ts';
import {
  type Clients,
  customResourcePath,
  describeError,
  keyOf,
  listCustom,
  patchStatus,
  splitKey,
  statusCode,
  Watched,
} from '../kube.ts';
import { type ReconcileResult, WorkQueue } from '../queue.ts';
import {
  type AdmissionRequest,
  type AdmissionResponse,
  decidedByAnnotation,
  mutateAccessRequest,
  validateAccessRequest,
} from './admission.ts';
import { mutatePath, validatePath } from './configuration.ts';
import {
  type AccessRequestNotification,
  type Approvers,
  dueNotifications,
  type NotificationType,
  notificationOf,
} from './notify.ts';

export const approvalsPath = '/v1/approvals';
export const requesterPodLabel = 'airlock.dev/requester-pod';

export const approvalBodySchema = z.object({
  sessionId: z.string().max(128).optional(),
  connection: z.string().min(1).max(253),
  policy: z.string().min(1).max(253),
  rule: z.string().min(1).max(63),
  text: z.string().min(1),
  reasons: z.array(z.string()).max(256).default([]),
  timeoutMs: z.number().int().min(1),
  /** The person the session acts for, from the token the sidecar verified (Connection endUser). */
  user: z.string().min(1).max(253).optional(),
  groups: z.array(z.string().min(1).max(253)).max(256).optional(),
});
export type ApprovalBody = z.infer<typeof approvalBodySchema>;

/** What a sidecar learns about its request. */
export interface ApprovalState {
  name: string;
  namespace: string;
  phase: 'Pending' | 'Approved' | 'Denied' | 'Expired';
  expiresAt?: string;
  decidedBy?: string;
  decidedAt?: string;
  reason?: string;
}

type Stored = AccessRequest & KubernetesObject;

export function stateOf(request: AccessRequest): ApprovalState {
  const status = request.status ?? {};
  return {
    name: request.metadata.name,
    namespace: request.metadata.namespace ?? '',
    phase: status.phase ?? 'Pending',
    ...(status.expiresAt && { expiresAt: status.expiresAt }),
    ...(status.decidedBy && { decidedBy: status.decidedBy }),
    ...(status.decidedAt && { decidedAt: status.decidedAt }),
    ...(request.spec.decision?.reason && { reason: request.spec.decision.reason }),
  };
}

/**
 * How long the replica that created a request has to write its status (phase Pending and the
 * expiry it chose, which may be shorter than the rule's) before the leader writes one itself.
 */
export const creatorGraceMs = 5_000;

/** The status a request should have now, or undefined when it has it; and when to look again. */
export function desiredStatus(
  request: AccessRequest,
  now: Date,
  defaultTimeoutMs: number,
): { status?: NonNullable<AccessRequest['status']>; requeueAfterMs?: number } {
  const status = request.status ?? {};
  if (status.phase && status.phase !== 'Pending') return {};
  const decision = request.spec.decision;
  if (decision) {
    return {
      status: {
        phase: decision.action === 'approve' ? 'Approved' : 'Denied',
        decidedBy: request.metadata.annotations?.[decidedByAnnotation] ?? 'unknown',
        decidedAt: now.toISOString(),
      },
    };
  }
  const created = Date.parse(request.metadata.creationTimestamp ?? now.toISOString());
  const graceLeft = created + creatorGraceMs - now.getTime();
  if (!status.phase && graceLeft > 0) return { requeueAfterMs: graceLeft };
  const expiresAt = status.expiresAt ?? new Date(created + defaultTimeoutMs).toISOString();
  const left = Date.parse(expiresAt) - now.getTime();
  if (left <= 0) return { status: { phase: 'Expired' } };
  if (status.phase !== 'Pending' || status.expiresAt !== expiresAt) {
    return { status: { phase: 'Pending', expiresAt }, requeueAfterMs: left };
  }
  return { requeueAfterMs: left };
}

export interface ApprovalServiceOptions {
  clients: Clients;
  logger: Logger;
  controlApi: ControlApi;
  policies: Watched<AccessPolicy & KubernetesObject>;
  isLeader: () => boolean;
  /** Where notifications of created and decided requests go; resolves true once acknowledged. */
  notify?: (notification: AccessRequestNotification) => Promise<boolean>;
  /** Longest a wait request stays open before it answers Pending (the sidecar asks again). */
  longPollMs?: number;
}

const maxBody = 1024 * 1024;

function readJson(request: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    request.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBody) {
        reject(new Error('request body too large'));
        request.destroy();
        return;
      }
      chunks.push(chunk);
    });
    request.on('end', () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      } catch (error) {
        reject(error);
      }
    });
    request.on('error', reject);
  });
}

export class ApprovalService {
  readonly requests: Watched<Stored>;
  readonly #queue: WorkQueue;
  readonly #options: ApprovalServiceOptions;
  readonly #waiters = new Map<string, Set<() => void>>();
  /** Notification ids sent and not yet acknowledged. */
  readonly #sending = new Set<string>();
  /** By request uid: the notifications acknowledged that the cache does not show recorded yet. */
  readonly #acknowledged = new Map<string, Set<NotificationType>>();
  #stopping = false;

  constructor(options: ApprovalServiceOptions) {
    this.#options = options;
    const { clients, logger } = options;
    this.#queue = new WorkQueue(
      (key) => this.reconcile(key),
      (key, error) =>
        logger.warn({ kind: 'AccessRequest', key, err: describeError(error) }, 'reconcile failed; retrying'),
    );
    this.requests = new Watched<Stored>({
      name: 'accessrequests',
      config: clients.config,
      path: customResourcePath('accessrequests'),
      list: listCustom(clients.custom, 'accessrequests'),
      onChange: (request) => {
        const key = keyOf(request);
        this.#queue.add(key);
        for (const wake of this.#waiters.get(key) ?? []) wake();
      },
      onError: (error, restartInMs) =>
        logger.warn(
          { informer: 'accessrequests', err: describeError(error), restartInMs },
          'watch stopped; restarting',
        ),
    });
  }

  async start(): Promise<void> {
    await this.requests.start();
  }

  async stop(): Promise<void> {
    this.#queue.stop();
    this.#stopping = true;
    for (const waiters of [...this.#waiters.values()]) for (const wake of [...waiters]) wake();
    await this.requests.stop();
  }

  resync(): void {
    for (const request of this.requests.list()) this.#queue.add(keyOf(request));
  }

  /** HTTPS routes for the operator listener (sidecars) and the webhook server (API server). */
  get routes(): Record<string, (req: IncomingMessage, res: ServerResponse) => Promise<void>> {
    return { [approvalsPath]: (req, res) => this.serve(req, res) };
  }

  get admissionRoutes(): Record<string, (req: IncomingMessage, res: ServerResponse) => Promise<void>> {
    const lookup = (namespace: string, name: string) => this.#options.policies.get(namespace, name);
    return {
      [mutatePath]: (req, res) => this.#admission(req, res, mutateAccessRequest),
      [validatePath]: (req, res) => this.#admission(req, res, (r) => validateAccessRequest(r, lookup)),
    };
  }

  async #admission(
    req: IncomingMessage,
    res: ServerResponse,
    decide: (request: AdmissionRequest) => AdmissionResponse,
  ): Promise<void> {
    if (req.method !== 'POST') return respondJson(res, 405, { reason: 'MethodNotAllowed' });
    let review: { apiVersion?: string; kind?: string; request?: AdmissionRequest };
    try {
      review = (await readJson(req)) as typeof review;
    } catch (error) {
      return respondJson(res, 400, { message: `bad AdmissionReview: ${(error as Error).message}` });
    }
    if (review.kind !== 'AdmissionReview' || !review.request?.uid) {
      return respondJson(res, 400, { message: 'expected an admission.k8s.io/v1 AdmissionReview' });
    }
    const response = decide(review.request);
    if (!response.allowed) {
      this.#options.logger.info(
        {
          event: 'accessrequest-refused',
          name: review.request.object?.metadata?.name,
          namespace: review.request.namespace,
          user: review.request.userInfo?.username,
        },
        response.status?.message ?? 'refused',
      );
    }
    respondJson(res, 200, { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response });
  }

  async serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const { logger, controlApi } = this.#options;
    let identity: Identity;
    try {
      identity = await controlApi.authenticate(req.headers.authorization);
    } catch (error) {
      const refusal =
        error instanceof Refusal ? error : new Refusal('TokenRejected', 'authentication failed', 503);
      logger.warn({ reason: refusal.reason, message: refusal.message }, 'approval request refused');
      return respondJson(res, refusal.status, { reason: refusal.reason, message: refusal.message });
    }
    const url = new URL(req.url ?? '/', 'https://operator');
    if (req.method === 'POST') return this.#create(req, res, identity);
    if (req.method === 'GET') {
      const name = url.searchParams.get('name') ?? '';
      const waitMs = Math.min(
        Number(url.searchParams.get('waitMs') ?? 25_000) || 0,
        this.#options.longPollMs ?? 25_000,
      );
      return this.#wait(req, res, identity, name, waitMs);
    }
    respondJson(res, 405, { reason: 'MethodNotAllowed' });
  }

  async #create(req: IncomingMessage, res: ServerResponse, identity: Identity): Promise<void> {
    const { clients, logger, policies } = this.#options;
    let body: ApprovalBody;
    try {
      body = approvalBodySchema.parse(await readJson(req));
    } catch (error) {
      return respondJson(res, 400, { reason: 'BadRequest', message: describeError(error) });
    }
    const policy = policies.get(identity.namespace, body.policy);
    const rule = policy?.spec.rules?.find((r) => r.name === body.rule);
    // The pod is who the token says; the person it acts for is who its sidecar verified.
    const requester: Identity = body.user
      ? { ...identity, user: body.user, groups: body.groups ?? [] }
      : identity;
    if (
      !policy ||
      !grants(policy, requester) ||
      !policy.spec.connections.includes(body.connection) ||
      !rule?.approval
    ) {
      return respondJson(res, 403, {
        reason: 'NoSuchRule',
        message: `AccessPolicy ${identity.namespace}/${body.policy} has no rule ${body.rule} that holds ${body.connection} for ServiceAccount ${identity.serviceAccount}`,
      });
    }
    // The rule's timeout bounds the wait; the enforcer may ask for less (an open transaction).
    const timeoutMs = Math.min(body.timeoutMs, durationMs(rule.approval.timeout));
    const pod = identity.pod ?? '';
    const name = `ar-${randomBytes(5).toString('hex')}`;
    const object: AccessRequest = {
      apiVersion,
      kind: 'AccessRequest',
      metadata: { name, namespace: identity.namespace, labels: { [requesterPodLabel]: pod } },
      spec: {
        connection: body.connection,
        policy: body.policy,
        rule: body.rule,
        requester: { pod, serviceAccount: identity.serviceAccount, ...(body.user && { user: body.user }) },
        request: body.text.slice(0, 65536),
        reasons: body.reasons.slice(0, 32).map((r) => r.slice(0, 1024)),
      },
    };
    const expiresAt = new Date(Date.now() + timeoutMs).toISOString();
    try {
      await clients.custom.createNamespacedCustomObject({
        group,
        version,
        plural: 'accessrequests',
        namespace: identity.namespace,
        body: object,
      });
      await patchStatus(clients.custom, 'accessrequests', identity.namespace, name, {
        status: { phase: 'Pending', expiresAt },
      });
    } catch (error) {
      logger.error({ err: describeError(error), identity }, 'could not create the AccessRequest');
      return respondJson(res, 503, { reason: 'Unavailable', message: describeError(error) });
    }
    logger.info(
      { event: 'accessrequest-created', name, identity, policy: body.policy, rule: body.rule, expiresAt },
      'request held for approval',
    );
    const state: ApprovalState = { name, namespace: identity.namespace, phase: 'Pending', expiresAt };
    respondJson(res, 201, state);
  }

  async #wait(
    req: IncomingMessage,
    res: ServerResponse,
    identity: Identity,
    name: string,
    waitMs: number,
  ): Promise<void> {
    const key = `${identity.namespace}/${name}`;
    const current = async (): Promise<Stored | undefined> => {
      const cached = this.requests.get(identity.namespace, name);
      if (cached) return cached;
      try {
        return (await this.#options.clients.custom.getNamespacedCustomObject({
          group,
          version,
          plural: 'accessrequests',
          namespace: identity.namespace,
          name,
        })) as Stored;
      } catch (error) {
        if (statusCode(error) === 404) return undefined;
        throw error;
      }
    };
    const first = await current();
    if (!first || first.spec.requester.pod !== identity.pod) {
      return respondJson(res, 404, { reason: 'NotFound', message: `no AccessRequest ${key} for this pod` });
    }
    const decided = (r: Stored | undefined) =>
      r !== undefined && (r.status?.phase ?? 'Pending') !== 'Pending';
    if (decided(first) || waitMs === 0) return respondJson(res, 200, stateOf(first));
    await new Promise<void>((resolve) => {
      const set = this.#waiters.get(key) ?? new Set<() => void>();
      this.#waiters.set(key, set);
      // Woken by every change of the object (or by stop); done by a decision, the time limit, or
      // the client leaving.
      const wake = () => {
        const now = this.requests.get(identity.namespace, name);
        if (this.#stopping || decided(now)) done();
      };
      const done = () => {
        clearTimeout(timer);
        set.delete(wake);
        if (set.size === 0) this.#waiters.delete(key);
        req.off('close', done);
        resolve();
      };
      const timer = setTimeout(done, waitMs);
      set.add(wake);
      req.on('close', done);
      wake();
    });
    if (res.destroyed) return;
    respondJson(res, 200, stateOf((this.requests.get(identity.namespace, name) ?? first) as Stored));
  }

  async reconcile(key: string): Promise<ReconcileResult | undefined> {
    if (!this.#options.isLeader()) return undefined;
    const { namespace, name } = splitKey(key);
    const request = this.requests.get(namespace, name);
    if (!request) return undefined;
    const policy = this.#options.policies.get(namespace, request.spec.policy);
    const approval = policy?.spec.rules?.find((r) => r.name === request.spec.rule)?.approval;
    const timeout = approval?.timeout ?? '15m';
    const { status, requeueAfterMs } = desiredStatus(request, new Date(), durationMs(timeout));
    if (status) {
      try {
        await patchStatus(this.#options.clients.custom, 'accessrequests', namespace, name, {
          metadata: { resourceVersion: request.metadata.resourceVersion },
          status,
        });
      } catch (error) {
        // Gone, or changed since the cache saw it: the newer version's watch event brings it back.
        if (statusCode(error) === 404 || statusCode(error) === 409) return undefined;
        throw error;
      }
      this.#options.logger.info(
        { event: 'accessrequest-phase', key, ...status },
        `AccessRequest ${key} ${status.phase}`,
      );
    }
    this.#notify({ ...request, status: { ...request.status, ...status } }, approval?.approvers);
    return requeueAfterMs === undefined ? undefined : { requeueAfterMs };
  }

  /**
   * Sends what the request is owed and not already on its way, in order; each acknowledged one
   * is added to status.notified. Until the cache shows it there, it is remembered here, so a
   * reconcile from a cache that lags behind does not send it twice.
   */
  #notify(request: Stored, approvers: Approvers | undefined): void {
    const notify = this.#options.notify;
    if (!notify) return;
    const uid = request.metadata.uid ?? keyOf(request);
    const acknowledged = this.#acknowledged.get(uid);
    for (const type of request.status?.notified ?? []) acknowledged?.delete(type);
    if (acknowledged?.size === 0) this.#acknowledged.delete(uid);
    for (const type of dueNotifications(request)) {
      const notification = notificationOf(type, request, { approvers });
      if (this.#sending.has(notification.id) || acknowledged?.has(type)) continue;
      this.#sending.add(notification.id);
      void notify(notification)
        .then(async (delivered) => {
          if (!delivered) return;
          const types = this.#acknowledged.get(uid) ?? new Set<NotificationType>();
          this.#acknowledged.set(uid, types.add(type));
          await this.#recordNotified(request, uid);
        })
        .catch((error: unknown) =>
          this.#options.logger.warn(
            { key: keyOf(request), notification: type, err: describeError(error) },
            'could not record a delivered notification; it may be sent again',
          ),
        )
        .finally(() => this.#sending.delete(notification.id));
    }
  }

  /** Adds what this process saw acknowledged for the request to its status.notified. */
  async #recordNotified(request: Stored, uid: string): Promise<void> {
    const { namespace = '', name } = request.metadata;
    const latest = this.requests.get(namespace, name) ?? request;
    if (latest.metadata.uid !== request.metadata.uid) return;
    const notified = new Set([...(latest.status?.notified ?? []), ...(this.#acknowledged.get(uid) ?? [])]);
    try {
      await patchStatus(this.#options.clients.custom, 'accessrequests', namespace, name, {
        status: { notified: accessRequestNotificationTypes.filter((t) => notified.has(t)) },
      });
    } catch (error) {
      if (statusCode(error) !== 404) throw error;
    }
  }
}
