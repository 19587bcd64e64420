// Publishes the operator's CA bundle as a ConfigMap in every namespace, as kube-root-ca.crt is
// published, so injected sidecars can verify the control API. Level-triggered: a namespace key
// is reconciled when the namespace appears, when its ConfigMap changes, and when the CA does.
import type { CoreV1Api, KubeConfig, V1ConfigMap, V1Namespace } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { describeError, statusCode, Watched } from './kube.ts';
import { WorkQueue } from './queue.ts';

export const caConfigMapName = 'airlock-ca';

export interface CaPublisherOptions {
  config: KubeConfig;
  core: CoreV1Api;
  logger: Logger;
  caBundle: () => string | undefined;
  isLeader: () => boolean;
}

export class CaPublisher {
  readonly namespaces: Watched<V1Namespace>;
  readonly #queue: WorkQueue;
  readonly #options: CaPublisherOptions;

  constructor(options: CaPublisherOptions) {
    this.#options = options;
    this.#queue = new WorkQueue(
      (namespace) => this.reconcile(namespace),
      (namespace, error) =>
        options.logger.warn({ namespace, err: describeError(error) }, 'cannot publish the CA'),
    );
    this.namespaces = new Watched({
      name: 'namespaces',
      config: options.config,
      path: '/api/v1/namespaces',
      list: () => options.core.listNamespace(),
      onChange: (namespace, verb) => {
        if (verb !== 'delete') this.#queue.add(namespace.metadata!.name!);
      },
      onError: (error, restartInMs) =>
        options.logger.warn(
          { informer: 'namespaces', err: describeError(error), restartInMs },
          'watch stopped; restarting',
        ),
    });
  }

  async start(): Promise<void> {
    await this.namespaces.start();
  }

  /** Queues every namespace: on a new CA or on becoming leader. */
  resync(): void {
    for (const namespace of this.namespaces.list()) this.#queue.add(namespace.metadata!.name!);
  }

  async reconcile(namespace: string): Promise<void> {
    const bundle = this.#options.caBundle();
    if (!bundle || !this.#options.isLeader()) return;
    const { core } = this.#options;
    const desired: V1ConfigMap = {
      metadata: { name: caConfigMapName, namespace, labels: { 'app.kubernetes.io/part-of': 'airlock' } },
      data: { 'ca.crt': bundle },
    };
    let existing: V1ConfigMap | undefined;
    try {
      existing = await core.readNamespacedConfigMap({ name: caConfigMapName, namespace });
    } catch (error) {
      if (statusCode(error) !== 404) throw error;
    }
    if (!existing) {
      await core.createNamespacedConfigMap({ namespace, body: desired }).catch((error) => {
        // Terminating namespaces refuse new objects; a 409 means a peer was faster.
        if (![403, 409].includes(statusCode(error) ?? 0)) throw error;
      });
      return;
    }
    if (existing.data?.['ca.crt'] === bundle) return;
    await core.replaceNamespacedConfigMap({
      name: caConfigMapName,
      namespace,
      body: { ...existing, data: { ...existing.data, 'ca.crt': bundle } },
    });
  }

  async stop(): Promise<void> {
    this.#queue.stop();
    await this.namespaces.stop();
  }
}
