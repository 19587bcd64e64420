// `airlock operator`: flags parsed once at the edge, then the pieces wired together: caches,
// reconcilers and leader election, the certificate manager, the control API, the injection
// webhook, and the CA published to every namespace.

import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { CoreV1Api } from '@kubernetes/client-node';
import pino from 'pino';
import { z } from 'zod';
import { grantFor } from '../api/bundle.ts';
import { parseRetention } from '../audit/settings.ts';
import { terminationSignal } from '../cli/signals.ts';
import { approvalWebhookName } from './approvals/configuration.ts';
import { webhookNotifier } from './approvals/notify.ts';
import { CaPublisher, caConfigMapName } from './ca-publisher.ts';
import { type CertificateManager, createCertificateManager } from './certificates.ts';
import { runCollector } from './collector.ts';
import { type RunningConsole, startConsole } from './console.ts';
import { Refusal } from './control-api.ts';
import type { Controllers } from './controllers.ts';
import { kubernetesEventRecorder } from './injection/events.ts';
import type { Grant } from './injection/hosts.ts';
import { injectionOptions } from './injection/inject.ts';
import { type InjectionServer, startInjectionServer } from './injection/server.ts';
import { clients, loadKubeConfig } from './kube.ts';
import { createMetrics } from './metrics.ts';
import { relyingParty } from './oidc.ts';
import { type Operator, startOperator } from './operator.ts';
import { apiServiceName, sessionsApi } from './sessions-api.ts';

export const operatorUsage = `Usage: airlock operator [--kubeconfig PATH] [--namespace NS] [--identity NAME]
  [--service NAME] [--image IMAGE] [--certificates operator|cert-manager]
  [--webhook-port 8443] [--control-api-port 9443] [--probe-port 8080]
  [--cluster-domain cluster.local] [--tls-ip IP]... [--tls-dns NAME]... [--control-api-url URL]
  [--store /var/lib/airlock/audit|postgres://…] [--audit-key FILE] [--audit-retention 30d]
  [--export-webhook URL]... [--export-format generic|slack] [--export-log]
  [--notify-webhook URL]... [--notify-format generic|slack] [--log-level info]
  [--oidc-issuer URL --oidc-client-id ID --oidc-client-secret-file FILE --console-url URL]
  [--console-port 8444] [--oidc-username-claim sub] [--oidc-groups-claim groups]
  [--oidc-scopes 'openid email profile'] [--oidc-prefix oidc:] [--oidc-group NAME]...

  --notify-webhook  POSTs a notification when an AccessRequest is created (with the command
                    that decides it) and when it is approved, denied or expired; repeatable.
                    generic: NDJSON, type accessrequest.created|approved|denied|expired;
                    slack: an incoming-webhook message per request.
  --oidc-issuer     serves the web console on --console-port (HTTPS, the operator's
                    certificate) to people who sign in with this OpenID provider; the console
                    acts as them by impersonating the username claim and the groups claim of
                    their ID token, each under --oidc-prefix. --console-url is the address
                    people open; its /auth/callback is the redirect URI registered with the
                    provider. Only the groups named by --oidc-group are passed on (the
                    operator's RBAC may impersonate exactly those).`;

const flagsSchema = z.object({
  kubeconfig: z.string().optional(),
  namespace: z.string().regex(/^[a-z0-9-]+$/),
  identity: z.string().min(1),
  service: z.string().regex(/^[a-z0-9-]+$/),
  image: z.string().min(1),
  certificates: z.enum(['operator', 'cert-manager']),
  'webhook-port': z.coerce.number().int().min(1).max(65535),
  'control-api-port': z.coerce.number().int().min(1).max(65535),
  'probe-port': z.coerce.number().int().min(1).max(65535),
  'cluster-domain': z.string(),
  'tls-ip': z.array(z.ipv4().or(z.ipv6())),
  'tls-dns': z.array(z.string()),
  'control-api-url': z.url().optional(),
  'log-level': z.enum(['debug', 'info', 'warn', 'error']),
  store: z.string().min(1),
  'audit-key': z.string().optional(),
  'audit-retention': z
    .string()
    .regex(/^\d+[dhms]$/, 'must be a number and a unit, like 30d')
    .optional(),
  'export-webhook': z.array(z.url()),
  'export-format': z.enum(['generic', 'slack']),
  'export-log': z.boolean(),
  'notify-webhook': z.array(z.url()),
  'notify-format': z.enum(['generic', 'slack']),
  'console-port': z.coerce.number().int().min(1).max(65535),
  'console-url': z.url({ protocol: /^https$/, error: 'must be an https:// URL' }).optional(),
  'oidc-issuer': z.url({ protocol: /^https$/, error: 'must be an https:// URL' }).optional(),
  'oidc-client-id': z.string().min(1).optional(),
  'oidc-client-secret-file': z.string().min(1).optional(),
  'oidc-username-claim': z.string().min(1),
  'oidc-groups-claim': z.string().min(1),
  'oidc-group': z.array(z.string().min(1)),
  'oidc-scopes': z.string().regex(/(^| )openid( |$)/, 'must include openid'),
  // Never empty: unprefixed names from the provider could be system: users or ServiceAccounts.
  'oidc-prefix': z.string().min(1),
});
export type OperatorFlags = z.infer<typeof flagsSchema>;

export function parseOperatorFlags(args: string[], env: NodeJS.ProcessEnv): OperatorFlags {
  const { values } = parseArgs({
    args,
    options: {
      kubeconfig: { type: 'string' },
      namespace: { type: 'string', default: env.POD_NAMESPACE ?? 'airlock-system' },
      identity: { type: 'string', default: env.POD_NAME ?? hostname() },
      service: { type: 'string', default: 'airlock-operator' },
      image: { type: 'string', default: 'ghcr.io/airlock-dev/airlock:0.1.0' },
      certificates: { type: 'string', default: 'operator' },
      'webhook-port': { type: 'string', default: '8443' },
      'control-api-port': { type: 'string', default: '9443' },
      'probe-port': { type: 'string', default: '8080' },
      'cluster-domain': { type: 'string', default: 'cluster.local' },
      'tls-ip': { type: 'string', multiple: true, default: [] },
      'tls-dns': { type: 'string', multiple: true, default: [] },
      'control-api-url': { type: 'string' },
      'log-level': { type: 'string', default: 'info' },
      store: { type: 'string', default: '/var/lib/airlock/audit' },
      'audit-key': { type: 'string' },
      'audit-retention': { type: 'string' },
      'export-webhook': { type: 'string', multiple: true, default: [] },
      'export-format': { type: 'string', default: 'generic' },
      'export-log': { type: 'boolean', default: false },
      'notify-webhook': { type: 'string', multiple: true, default: [] },
      'notify-format': { type: 'string', default: 'generic' },
      'console-port': { type: 'string', default: '8444' },
      'console-url': { type: 'string' },
      'oidc-issuer': { type: 'string' },
      'oidc-client-id': { type: 'string' },
      'oidc-client-secret-file': { type: 'string' },
      'oidc-username-claim': { type: 'string', default: 'sub' },
      'oidc-groups-claim': { type: 'string', default: 'groups' },
      'oidc-group': { type: 'string', multiple: true, default: [] },
      'oidc-scopes': { type: 'string', default: 'openid email profile' },
      'oidc-prefix': { type: 'string', default: 'oidc:' },
    },
  });
  const parsed = flagsSchema.safeParse(values);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new Error(`--${issue.path.join('.')}: ${issue.message}`);
  }
  const flags = parsed.data;
  if (flags['oidc-issuer']) {
    for (const needed of ['oidc-client-id', 'oidc-client-secret-file', 'console-url'] as const)
      if (!flags[needed]) throw new Error(`--${needed}: required with --oidc-issuer`);
  }
  return flags;
}

/** The Connections an AccessPolicy grants a ServiceAccount, as the injector needs them. */
export function grantsFrom(controllers: Controllers, namespace: string, serviceAccount: string): Grant[] {
  const identity = { namespace, serviceAccount };
  const found = new Map<string, Grant>();
  for (const policy of controllers.policies.list()) {
    const grant = grantFor(policy, identity);
    if (!grant) continue;
    for (const name of policy.spec.connections) {
      const connection = controllers.connections.get(policy.metadata.namespace ?? namespace, name);
      // A grant for end users only counts where a session can verify one (as the bundle has it).
      if (!connection || (grant !== 'always' && !connection.spec.endUser)) continue;
      const { host, port, protocol } = connection.spec;
      found.set(name, { name, host, port, protocol });
    }
  }
  return [...found.values()].sort((a, b) => a.name.localeCompare(b.name));
}

export interface RunningOperator {
  operator: Operator;
  certificates: CertificateManager;
  injection: InjectionServer;
  publisher: CaPublisher;
  stop(): Promise<void>;
}

export async function runOperatorWith(flags: OperatorFlags, logger: pino.Logger): Promise<RunningOperator> {
  const config = loadKubeConfig(flags.kubeconfig);
  const kube = clients(config);
  const metrics = createMetrics();
  // The collector is routed before the operator (and its control API) exists: until then a
  // batch is answered 503 and the sidecar resends it.
  let authenticator: Operator['controlApi'] | undefined;
  let leading: (() => boolean) | undefined;
  const collector = runCollector(
    {
      store: flags.store,
      ...(flags['audit-key'] && { keyFile: flags['audit-key'] }),
      ...(flags['audit-retention'] && { retentionMs: parseRetention(flags['audit-retention']) }),
      webhooks: flags['export-webhook'],
      webhookFormat: flags['export-format'],
      jsonLogs: flags['export-log'],
    },
    {
      authenticate: async (authorization) => {
        if (!authenticator) throw new Refusal('TokenRejected', 'the operator is starting', 503);
        return authenticator.authenticate(authorization);
      },
      isLeader: () => leading?.() ?? false,
      logger,
      registry: metrics.registry,
    },
  );
  const notifier = webhookNotifier(flags['notify-webhook'], flags['notify-format'], {
    logger,
    registry: metrics.registry,
  });
  let certificates: CertificateManager | undefined;
  let publisher: CaPublisher | undefined;
  const operator = await startOperator({
    clients: kube,
    logger,
    metrics,
    namespace: flags.namespace,
    identity: flags.identity,
    listen: { host: '0.0.0.0', port: flags['control-api-port'] },
    probeListen: { host: '0.0.0.0', port: flags['probe-port'] },
    // Without receivers nothing is owed, and nothing is recorded in the requests' status.
    ...(flags['notify-webhook'].length > 0 && { notify: notifier.notify }),
    routes: {
      '/v1/events': collector.handler,
      ...sessionsApi({
        core: kube.core,
        authorization: kube.authorization,
        store: collector.log,
        logger,
      }),
    },
    tls: async (isLeader) => {
      publisher = new CaPublisher({
        config,
        core: kube.core,
        logger,
        caBundle: () => certificates?.caBundle(),
        isLeader,
      });
      certificates = createCertificateManager(config, {
        namespace: flags.namespace,
        secretName: `${flags.service}-tls`,
        mode: flags.certificates,
        serviceName: flags.service,
        clusterDomain: flags['cluster-domain'],
        dnsNames: flags['tls-dns'],
        ipAddresses: flags['tls-ip'],
        mutatingWebhookConfigurations: ['airlock-injector', approvalWebhookName],
        validatingWebhookConfigurations: [approvalWebhookName],
        apiServices: [apiServiceName],
        isLeader,
        log: logger,
      });
      await publisher.start();
      await certificates.start();
      certificates.onChange(() => publisher?.resync());
      publisher.resync();
      return certificates;
    },
  });
  authenticator = operator.controlApi;
  leading = () => operator.elector.isLeader;
  const certs = certificates!;
  const caPublisher = publisher!;
  const controlApiUrl =
    flags['control-api-url'] ??
    `https://${flags.service}.${flags.namespace}.svc.${flags['cluster-domain']}:${flags['control-api-port']}`;
  const injection = await startInjectionServer({
    port: flags['webhook-port'],
    injection: injectionOptions({
      image: flags.image,
      version: flags.image.split(':').at(-1) ?? 'dev',
      controlApiUrl,
      caConfigMap: caConfigMapName,
      clusterDomain: flags['cluster-domain'],
      excludedNamespaces: [flags.namespace, 'kube-system'],
    }),
    certificates: certs,
    grantsFor: (namespace, serviceAccount) => grantsFrom(operator.controllers, namespace, serviceAccount),
    recordEvent: kubernetesEventRecorder(config.makeApiClient(CoreV1Api)),
    registry: metrics.registry,
    log: logger,
    routes: operator.approvals.admissionRoutes,
  });
  const webConsole = flags['oidc-issuer'] ? await serveConsole(flags, kube, certs, logger) : undefined;
  logger.info({ webhook: injection.url, controlApi: controlApiUrl }, 'operator ready');
  return {
    operator,
    certificates: certs,
    injection,
    publisher: caPublisher,
    async stop() {
      await webConsole?.close();
      await injection.close();
      certs.stop();
      await caPublisher.stop();
      await operator.stop();
      await collector.close();
      notifier.stop();
    },
  };
}

/** The web console for people, signed in with the OpenID provider the flags name. */
function serveConsole(
  flags: OperatorFlags,
  kube: ReturnType<typeof clients>,
  certificates: CertificateManager,
  logger: pino.Logger,
): Promise<RunningConsole> {
  const settings = {
    issuer: new URL(flags['oidc-issuer']!),
    clientId: flags['oidc-client-id']!,
    clientSecret: readFileSync(flags['oidc-client-secret-file']!, 'utf8').trim(),
    redirectUri: new URL('/auth/callback', flags['console-url']),
    usernameClaim: flags['oidc-username-claim'],
    groupsClaim: flags['oidc-groups-claim'],
    scopes: flags['oidc-scopes'],
    groups: flags['oidc-group'],
    prefix: flags['oidc-prefix'],
  };
  return startConsole({
    listen: { host: '0.0.0.0', port: flags['console-port'] },
    certificates,
    relyingParty: relyingParty(settings),
    settings,
    config: kube.config,
    namespaces: async () => (await kube.core.listNamespace()).items.map((n) => n.metadata!.name!),
    logger,
  });
}

export async function runOperator(args: string[]): Promise<number> {
  let flags: OperatorFlags;
  try {
    flags = parseOperatorFlags(args, process.env);
  } catch (error) {
    console.error(`airlock operator: ${(error as Error).message}\n\n${operatorUsage}`);
    return 2;
  }
  const logger = pino({
    level: flags['log-level'],
    base: { component: 'airlock-operator', identity: flags.identity },
  });
  const running = await runOperatorWith(flags, logger);
  await terminationSignal();
  logger.info('shutting down; releasing the lease');
  await running.stop();
  return 0;
}
