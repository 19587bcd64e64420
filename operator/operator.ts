// `airlock operator`: the caches and reconcilers, leader election, and the HTTPS listener
// that serves the control API (and the injection webhook) with the operator's certificate.

import type { Server } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { BundleSources } from '../api/bundle.ts';
import type { AccessRequestNotification } from './approvals/notify.ts';
import { ApprovalService } from './approvals/service.ts';
import { ControlApi } from './control-api.ts';
import { Controllers, decodeSecret } from './controllers.ts';
import type { ServingCertificateSource } from './injection/server.ts';
import { type Clients, describeError } from './kube.ts';
import { LeaderElector } from './leader.ts';
import { createMetrics, type Metrics } from './metrics.ts';
import type { KeyPairPem } from './pki.ts';
import { type Handler, listen, probeServer, secureServer } from './server.ts';

export interface OperatorOptions {
  clients: Clients;
  logger: Logger;
  /** The operator's own namespace: the Lease and its Secrets live there. */
  namespace: string;
  /** This replica's name (the pod name), for the Lease and Events. */
  identity: string;
  listen: { host: string; port: number };
  probeListen: { host: string; port: number };
  /**
   * The serving certificate: fixed, or a source that changes (the certificate manager), made
   * once leader election runs, since only the leader may create it.
   */
  tls: KeyPairPem | ((isLeader: () => boolean) => Promise<ServingCertificateSource>);
  /** Extra HTTPS routes, such as the injection webhook. */
  routes?: Record<string, Handler>;
  leaseName?: string;
  leaseDurationMs?: number;
  retryPeriodMs?: number;
  metrics?: Metrics;
  /** Notifications of AccessRequests, sent by the leader; resolves true once acknowledged. */
  notify?: (notification: AccessRequestNotification) => Promise<boolean>;
}

export interface Operator {
  address: AddressInfo;
  probeAddress: AddressInfo;
  controllers: Controllers;
  controlApi: ControlApi;
  /** AccessRequests: the sidecars' approval API, the reconciler and the admission handlers. */
  approvals: ApprovalService;
  elector: LeaderElector;
  metrics: Metrics;
  https: HttpsServer;
  stop(): Promise<void>;
}

export async function startOperator(options: OperatorOptions): Promise<Operator> {
  const { clients, logger } = options;
  const metrics = options.metrics ?? createMetrics();
  let controlApi: ControlApi | undefined;
  const elector = new LeaderElector({
    coordination: clients.coordination,
    namespace: options.namespace,
    name: options.leaseName ?? 'airlock-operator',
    identity: options.identity,
    ...(options.leaseDurationMs !== undefined && { leaseDurationMs: options.leaseDurationMs }),
    ...(options.retryPeriodMs !== undefined && { retryPeriodMs: options.retryPeriodMs }),
    onStartedLeading: () => {
      logger.info({ identity: options.identity }, 'became leader');
      metrics.leader.set(1);
      controllers.resync();
      approvals.resync();
    },
    onStoppedLeading: () => {
      logger.info({ identity: options.identity }, 'stopped leading');
      metrics.leader.set(0);
    },
    onError: (error) => logger.warn({ err: describeError(error) }, 'lease update failed'),
  });
  const controllers = new Controllers({
    clients,
    logger,
    metrics,
    identity: options.identity,
    isLeader: () => elector.isLeader,
    onSourcesChanged: () => controlApi?.sourcesChanged(),
  });
  const sources = (): BundleSources => ({
    connections: [...controllers.connections.list()],
    policies: [...controllers.policies.list()],
    secrets: controllers.secrets.list().map(decodeSecret),
  });
  controlApi = new ControlApi({
    authentication: clients.authentication,
    core: clients.core,
    logger,
    metrics,
    sources,
  });
  const api = controlApi;
  const approvals = new ApprovalService({
    clients,
    logger,
    controlApi: api,
    policies: controllers.policies,
    isLeader: () => elector.isLeader,
    ...(options.notify && { notify: options.notify }),
  });
  await controllers.start();
  await approvals.start();
  elector.start();

  const onError = (error: unknown) =>
    logger.error({ err: String((error as Error)?.stack ?? error) }, 'request failed');
  const source: ServingCertificateSource =
    typeof options.tls === 'function'
      ? await options.tls(() => elector.isLeader)
      : { current: () => options.tls as KeyPairPem, onChange: () => () => {} };
  const https = secureServer(
    source.current()!,
    { '/v1/bundle': (req, res) => api.serveBundle(req, res), ...approvals.routes, ...options.routes },
    onError,
  );
  const probes: Server = probeServer(
    {
      registry: metrics.registry,
      live: () => true,
      ready: () => {
        const detail = Object.fromEntries(
          [...controllers.watches, approvals.requests].map((w) => [w.name, w.healthy]),
        );
        return { ready: Object.values(detail).every(Boolean), detail };
      },
    },
    onError,
  );
  const unsubscribe = source.onChange((pair) =>
    https.setSecureContext({ cert: pair.certificate, key: pair.privateKey, minVersion: 'TLSv1.2' }),
  );
  const address = await listen(https, options.listen.host, options.listen.port);
  const probeAddress = await listen(probes, options.probeListen.host, options.probeListen.port);
  logger.info({ address, probeAddress }, 'operator listening');
  return {
    address,
    probeAddress,
    controllers,
    controlApi: api,
    approvals,
    elector,
    metrics,
    https,
    async stop() {
      unsubscribe();
      api.close();
      await approvals.stop();
      await elector.stop();
      await controllers.stop();
      https.closeAllConnections();
      probes.closeAllConnections();
      await Promise.all([new Promise((r) => https.close(r)), new Promise((r) => probes.close(r))]);
    },
  };
}
