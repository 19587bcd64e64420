// The Connection and AccessPolicy reconcilers. Level-triggered: the queues carry only
// namespace/name; reconcile reads the caches, computes the conditions, and writes status
// (with the resourceVersion it read, so a lost race is a retry) only when it changes.
import type { CoreV1Event, KubernetesObject, V1Secret } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { SecretData } from '../api/bundle.ts';
import { type AccessPolicy, type Connection, group, version } from '../api/v1alpha1.ts';
import { conditionsChanged, type DesiredCondition, setConditions } from './conditions.ts';
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
} from './kube.ts';
import type { Metrics } from './metrics.ts';
import { WorkQueue } from './queue.ts';
import { connectionConditions, policyConditions } from './status.ts';

export function decodeSecret(secret: V1Secret): SecretData {
  const data: Record<string, string> = {};
  for (const [key, value] of Object.entries(secret.data ?? {}))
    data[key] = Buffer.from(value, 'base64').toString('utf8');
  for (const [key, value] of Object.entries(secret.stringData ?? {})) data[key] = value;
  return { namespace: secret.metadata?.namespace ?? '', name: secret.metadata?.name ?? '', data };
}

export interface ControllerOptions {
  clients: Clients;
  logger: Logger;
  metrics: Metrics;
  /** Reconciles only while this is true; the caches are kept warm either way. */
  isLeader: () => boolean;
  /** This replica's name, for Events. */
  identity: string;
  /** AccessPolicies in audit mode longer than this get a RulesEffective warning (default 30 days). */
  auditMaxAgeMs?: number;
  /** Called after any watched object changes (bundle pushes listen here). */
  onSourcesChanged?: () => void;
}

/** The operator's caches of Connections, AccessPolicies and Secrets, and the two reconcilers. */
export class Controllers {
  readonly connections: Watched<Connection & KubernetesObject>;
  readonly policies: Watched<AccessPolicy & KubernetesObject>;
  readonly secrets: Watched<V1Secret>;
  readonly #connectionQueue: WorkQueue;
  readonly #policyQueue: WorkQueue;
  readonly #options: ControllerOptions;

  constructor(options: ControllerOptions) {
    this.#options = options;
    const { clients, logger, metrics } = options;
    const onError = (kind: string) => (key: string, error: unknown) => {
      metrics.reconciles.inc({ kind, result: 'error' });
      logger.warn(
        { kind, key, err: String((error as Error)?.message ?? error) },
        'reconcile failed; retrying',
      );
    };
    this.#connectionQueue = new WorkQueue((key) => this.reconcileConnection(key), onError('Connection'));
    this.#policyQueue = new WorkQueue((key) => this.reconcilePolicy(key), onError('AccessPolicy'));
    const watchError = (name: string) => (error: unknown, restartInMs: number) =>
      logger.warn({ informer: name, err: describeError(error), restartInMs }, 'watch stopped; restarting');
    this.connections = new Watched({
      name: 'connections',
      config: clients.config,
      path: customResourcePath('connections'),
      list: listCustom(clients.custom, 'connections'),
      onChange: (connection) => {
        this.#connectionQueue.add(keyOf(connection));
        for (const policy of this.policies.list(connection.metadata?.namespace)) {
          if (policy.spec.connections.includes(connection.metadata!.name!))
            this.#policyQueue.add(keyOf(policy));
        }
        options.onSourcesChanged?.();
      },
      onError: watchError('connections'),
    });
    this.policies = new Watched({
      name: 'accesspolicies',
      config: clients.config,
      path: customResourcePath('accesspolicies'),
      list: listCustom(clients.custom, 'accesspolicies'),
      onChange: (policy) => {
        this.#policyQueue.add(keyOf(policy));
        options.onSourcesChanged?.();
      },
      onError: watchError('accesspolicies'),
    });
    this.secrets = new Watched({
      name: 'secrets',
      config: clients.config,
      path: '/api/v1/secrets',
      list: () => clients.core.listSecretForAllNamespaces(),
      onChange: (secret) => {
        const namespace = secret.metadata?.namespace;
        const name = secret.metadata?.name;
        let relevant = false;
        for (const connection of this.connections.list(namespace)) {
          const spec = connection.spec;
          if (
            spec.credentials?.secretRef.name === name ||
            spec.tls?.caSecretRef?.name === name ||
            spec.endUser?.caSecretRef?.name === name
          ) {
            this.#connectionQueue.add(keyOf(connection));
            relevant = true;
          }
        }
        if (relevant) options.onSourcesChanged?.();
      },
      onError: watchError('secrets'),
    });
  }

  get watches(): Watched<KubernetesObject>[] {
    return [this.connections, this.policies, this.secrets] as Watched<KubernetesObject>[];
  }

  async start(): Promise<void> {
    await Promise.all(this.watches.map((w) => w.start()));
  }

  async stop(): Promise<void> {
    this.#connectionQueue.stop();
    this.#policyQueue.stop();
    await Promise.all(this.watches.map((w) => w.stop()));
  }

  /** Queues every object: after winning the lease, or on a periodic resync. */
  resync(): void {
    for (const c of this.connections.list()) this.#connectionQueue.add(keyOf(c));
    for (const p of this.policies.list()) this.#policyQueue.add(keyOf(p));
  }

  secretData(namespace: string, name: string): SecretData | undefined {
    const secret = this.secrets.get(namespace, name);
    return secret ? decodeSecret(secret) : undefined;
  }

  async reconcileConnection(key: string): Promise<void> {
    if (!this.#options.isLeader()) return;
    const { namespace, name } = splitKey(key);
    const connection = this.connections.get(namespace, name);
    if (!connection) return;
    const desired = connectionConditions(connection, (secret) => this.secretData(namespace, secret));
    await this.#writeStatus('Connection', 'connections', connection, desired);
  }

  async reconcilePolicy(key: string): Promise<void> {
    if (!this.#options.isLeader()) return;
    const { namespace, name } = splitKey(key);
    const policy = this.policies.get(namespace, name);
    if (!policy) return;
    const accounts = await this.#approverAccounts(policy);
    const desired = policyConditions(
      policy,
      (connection) => this.connections.get(namespace, connection) !== undefined,
      {
        now: new Date(),
        auditMaxAgeMs: this.#options.auditMaxAgeMs ?? 30 * 86_400_000,
        serviceAccountExists: (ns, name) => accounts.get(`${ns}/${name}`),
      },
    );
    await this.#writeStatus('AccessPolicy', 'accesspolicies', policy, desired);
  }

  /** Whether each ServiceAccount named as an approver exists; absent when it cannot be told. */
  async #approverAccounts(policy: AccessPolicy): Promise<Map<string, boolean>> {
    const accounts = new Map<string, boolean>();
    for (const rule of policy.spec.rules ?? []) {
      for (const user of rule.approval?.approvers.users ?? []) {
        const [, namespace, name] = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(user) ?? [];
        if (!namespace || !name || accounts.has(`${namespace}/${name}`)) continue;
        try {
          await this.#options.clients.core.readNamespacedServiceAccount({ namespace, name });
          accounts.set(`${namespace}/${name}`, true);
        } catch (error) {
          if (statusCode(error) === 404) accounts.set(`${namespace}/${name}`, false);
        }
      }
    }
    return accounts;
  }

  async #writeStatus(
    kind: string,
    plural: string,
    object: (Connection | AccessPolicy) & KubernetesObject,
    desired: DesiredCondition[],
  ): Promise<void> {
    const { clients, metrics, logger } = this.#options;
    const metadata = object.metadata!;
    const previous = object.status?.conditions;
    const conditions = setConditions(previous, desired, metadata.generation, new Date());
    const unchanged =
      !conditionsChanged(previous, conditions) && object.status?.observedGeneration === metadata.generation;
    metrics.reconciles.inc({ kind, result: unchanged ? 'unchanged' : 'updated' });
    if (unchanged) return;
    try {
      await patchStatus(clients.custom, plural, metadata.namespace!, metadata.name!, {
        metadata: { resourceVersion: metadata.resourceVersion },
        status: { observedGeneration: metadata.generation, conditions },
      });
    } catch (error) {
      if (statusCode(error) === 404) return;
      throw error;
    }
    const ready = conditions.find((c) => c.type === 'Ready');
    const wasReady = previous?.find((c) => c.type === 'Ready');
    if (ready && (ready.status !== wasReady?.status || ready.reason !== wasReady?.reason)) {
      logger.info({ kind, key: keyOf(object), ready: ready.status, reason: ready.reason }, ready.message);
      await this.#event(
        object,
        kind,
        ready.status === 'True' ? 'Normal' : 'Warning',
        ready.reason,
        ready.message,
      );
    }
    // A policy whose rules stopped (or started) being effective says so once per change.
    const effective = conditions.find((c) => c.type === 'RulesEffective');
    const wasEffective = previous?.find((c) => c.type === 'RulesEffective');
    if (
      effective &&
      (effective.status !== (wasEffective?.status ?? 'True') ||
        (effective.status === 'False' && effective.message !== wasEffective?.message))
    ) {
      await this.#event(
        object,
        kind,
        effective.status === 'True' ? 'Normal' : 'Warning',
        effective.reason,
        effective.message,
      );
    }
  }

  async #event(
    object: KubernetesObject,
    kind: string,
    type: string,
    reason: string,
    message: string,
  ): Promise<void> {
    const metadata = object.metadata!;
    const now = new Date();
    const event: CoreV1Event = {
      metadata: { generateName: `${metadata.name}.`, namespace: metadata.namespace },
      involvedObject: {
        apiVersion: `${group}/${version}`,
        kind,
        name: metadata.name,
        namespace: metadata.namespace,
        uid: metadata.uid,
        resourceVersion: metadata.resourceVersion,
      },
      type,
      reason,
      message,
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
      source: { component: 'airlock-operator' },
      reportingComponent: 'airlock.dev/operator',
      reportingInstance: this.#options.identity,
    };
    await this.#options.clients.core
      .createNamespacedEvent({ namespace: metadata.namespace!, body: event })
      .catch((error) => this.#options.logger.warn({ err: String(error) }, 'could not record event'));
  }
}
