// The real `airlock operator` as a process against a test control plane: free ports, the
// webhook configurations registered with URLs on this machine, a temporary audit store, and
// a wait until it is ready (and, with approvals, until the API server trusts its webhooks).
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import pino from 'pino';
import type { AccessPolicySpecInput } from '../../api/v1alpha1.ts';
import { nodeFlags } from '../../bin/node-flags.js';
import { approvalWebhookConfigurations } from '../../operator/approvals/configuration.ts';
import { webhookConfiguration } from '../../operator/injection/configuration.ts';
import { clients, loadKubeConfig } from '../../operator/kube.ts';
import { type Operator, startOperator } from '../../operator/operator.ts';
import { createCertificateAuthority } from '../../operator/pki.ts';
import { apiServiceConfiguration, apiServiceName } from '../../operator/sessions-api.ts';
import type { ControlPlane } from './controlplane.ts';
import type { PostgresServer } from './postgres.ts';
import { freePort, type Service, startService, waitFor } from './process.ts';

const cli = new URL('../../bin/airlock.js', import.meta.url).pathname;

export interface OperatorProcess {
  service: Service;
  ports: { webhook: number; controlApi: number; probe: number };
  /** https://ADDRESS:PORT, as sidecars reach the control API. */
  controlApiUrl: string;
  logFile: string;
  stop(): Promise<void>;
}

export interface OperatorProcessOptions {
  /** Where sidecars reach the operator (a pod network's address); 127.0.0.1 by default. */
  address?: string;
  /** The audit store; a directory under `directory` by default. */
  store?: string;
  /** Also register the AccessRequest admission webhooks and wait until they are trusted. */
  approvals?: boolean;
  /**
   * Also register the sessions APIService and wait until the API server reaches it. Its Service
   * is an ExternalName for localhost, so the API server dials the operator on this machine.
   */
  sessionsApi?: boolean;
  /** The ports of an operator this one replaces (its sidecars reconnect); free ones by default. */
  ports?: OperatorProcess['ports'];
  extraArgs?: string[];
  /** Where bin/airlock.js is: a compiled app, as the image runs it (bench/memory.ts); this checkout by default. */
  app?: string;
}

export async function startOperatorProcess(
  cluster: ControlPlane,
  directory: string,
  options: OperatorProcessOptions = {},
): Promise<OperatorProcess> {
  const apply = (manifest: object) =>
    cluster.kubectl(['apply', '-f', '-'], { input: JSON.stringify(manifest) });
  const ports = options.ports ?? {
    webhook: await freePort(),
    controlApi: await freePort(),
    probe: await freePort(),
  };
  const address = options.address ?? '127.0.0.1';
  await apply(
    webhookConfiguration({
      operatorNamespace: 'airlock-system',
      url: `https://127.0.0.1:${ports.webhook}/inject`,
    }),
  );
  if (options.approvals) {
    const approvals = approvalWebhookConfigurations({
      operatorNamespace: 'airlock-system',
      url: `https://127.0.0.1:${ports.webhook}`,
    });
    await apply(approvals.mutating);
    await apply(approvals.validating);
  }
  if (options.sessionsApi) {
    await apply({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'airlock-operator', namespace: 'airlock-system' },
      spec: { type: 'ExternalName', externalName: 'localhost' },
    });
    await apply(
      apiServiceConfiguration({
        service: { name: 'airlock-operator', namespace: 'airlock-system', port: ports.controlApi },
      }),
    );
  }
  const controlApiUrl = `https://${address}:${ports.controlApi}`;
  const logFile = join(directory, 'operator.log');
  const service = startService(
    'airlock operator',
    process.execPath,
    [
      ...nodeFlags('operator'),
      options.app ? join(options.app, 'bin/airlock.js') : cli,
      'operator',
      `--kubeconfig=${cluster.kubeconfig.admin}`,
      '--namespace=airlock-system',
      '--identity=operator-0',
      `--store=${options.store ?? join(directory, 'audit')}`,
      '--tls-ip=127.0.0.1',
      ...(address === '127.0.0.1' ? [] : [`--tls-ip=${address}`]),
      `--webhook-port=${ports.webhook}`,
      `--control-api-port=${ports.controlApi}`,
      `--probe-port=${ports.probe}`,
      `--control-api-url=${controlApiUrl}`,
      '--image=airlock:test',
      ...(options.extraArgs ?? []),
    ],
    { logFile },
  );
  await waitFor(
    'operator ready',
    async () =>
      (await fetch(`http://127.0.0.1:${ports.probe}/readyz`)).ok &&
      (await readFile(logFile, 'utf8')).includes('operator ready'),
    { service, timeoutMs: 60_000 },
  );
  if (options.approvals) {
    await waitFor('approval webhooks trust the operator', async () => {
      const [mutating, validating] = await Promise.all(
        ['mutatingwebhookconfiguration', 'validatingwebhookconfiguration'].map(async (kind) =>
          JSON.parse(await cluster.kubectl(['get', kind, 'airlock-approvals', '-o', 'json'])),
        ),
      );
      return Boolean(
        mutating.webhooks[0].clientConfig.caBundle && validating.webhooks[0].clientConfig.caBundle,
      );
    });
  }
  if (options.sessionsApi) {
    await waitFor(
      'the API server reaches the sessions API',
      async () => {
        const status = JSON.parse(await cluster.kubectl(['get', 'apiservice', apiServiceName, '-o', 'json']));
        return status.status?.conditions?.some(
          (c: { type: string; status: string }) => c.type === 'Available' && c.status === 'True',
        );
      },
      { service, timeoutMs: 60_000 },
    );
  }
  return { service, ports, controlApiUrl, logFile, stop: () => service.stop() };
}

/**
 * The injected agent pod `agent-0` (ServiceAccount `agent` in namespace `agents`), created so
 * that its bound token is valid; returns that token, as a sidecar reads it.
 */
export async function createAgentPod(cluster: Pick<ControlPlane, 'kubectl' | 'podToken'>): Promise<string> {
  await cluster.kubectl(['apply', '-f', '-'], {
    input: JSON.stringify({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name: 'agent-0',
        namespace: 'agents',
        annotations: { 'airlock.dev/injected': '{"version":1}' },
      },
      spec: { serviceAccountName: 'agent', containers: [{ name: 'agent', image: 'agent:1' }] },
    }),
  });
  const pod = JSON.parse(await cluster.kubectl(['get', 'pod', 'agent-0', '-n', 'agents', '-o', 'json']));
  const token = await cluster.podToken({
    namespace: 'agents',
    name: 'agent-0',
    uid: pod.metadata.uid,
    serviceAccount: 'agent',
  });
  return token.trim();
}

/**
 * The operator in this process, and the injected agent pod `agent-0` (createAgentPod) whose
 * sidecar reaches it: the token and the operator's CA written into `directory` as a pod would
 * mount them. Returns the options a Sidecar takes to reach the operator as that pod.
 */
export async function startOperatorForAgentPod(
  cluster: Pick<ControlPlane, 'kubectl' | 'podToken' | 'kubeconfig'>,
  directory: string,
): Promise<{ operator: Operator; sidecar: { controlApi: string; tokenFile: string; caFile: string } }> {
  const token = await createAgentPod(cluster);
  const authority = await createCertificateAuthority('airlock-operator');
  const serving = await authority.issue({
    commonName: 'airlock-operator',
    ipAddresses: ['127.0.0.1'],
    usage: 'server',
  });
  const tokenFile = join(directory, 'token');
  const caFile = join(directory, 'ca.crt');
  await writeFile(tokenFile, token);
  await writeFile(caFile, authority.certificate);
  const operator = await startOperator({
    clients: clients(loadKubeConfig(cluster.kubeconfig.admin)),
    logger: pino({ level: 'warn' }),
    namespace: 'airlock-system',
    identity: 'operator-0',
    listen: { host: '127.0.0.1', port: await freePort() },
    probeListen: { host: '127.0.0.1', port: await freePort() },
    tls: serving,
  });
  return {
    operator,
    sidecar: { controlApi: `https://127.0.0.1:${operator.address.port}`, tokenFile, caFile },
  };
}

/**
 * The PostgreSQL scenario most suites share: the held credential in Secret `orders-db`, a
 * Connection `orders-db` to the test database, and AccessPolicy `agent-orders` granting it to
 * ServiceAccount `agent`, all in namespace `agents`, with the masking and rules given.
 */
export async function grantOrdersDb(
  cluster: Pick<ControlPlane, 'kubectl'>,
  database: PostgresServer,
  options: { host: string; port?: number; policy: Pick<AccessPolicySpecInput, 'masking' | 'rules'> },
): Promise<void> {
  const manifests = [
    {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'orders-db', namespace: 'agents' },
      stringData: { username: database.user, password: database.password },
    },
    {
      apiVersion: 'airlock.dev/v1alpha1',
      kind: 'Connection',
      metadata: { name: 'orders-db', namespace: 'agents' },
      spec: {
        protocol: 'postgres',
        host: options.host,
        port: options.port ?? database.port,
        tls: { mode: 'disable' },
        credentials: { secretRef: { name: 'orders-db' } },
        postgres: { database: database.database },
      },
    },
    {
      apiVersion: 'airlock.dev/v1alpha1',
      kind: 'AccessPolicy',
      metadata: { name: 'agent-orders', namespace: 'agents' },
      spec: {
        subjects: [{ kind: 'ServiceAccount', name: 'agent' }],
        connections: ['orders-db'],
        ...options.policy,
      },
    },
  ];
  await cluster.kubectl(['apply', '-f', '-'], {
    input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: manifests }),
  });
}

/** The chart's ClusterRole airlock-session-reader bound to groups in `namespace` (RoleBinding session-readers). */
export async function grantSessionReaders(
  cluster: Pick<ControlPlane, 'kubectl'>,
  groups: string[],
  namespace = 'agents',
): Promise<void> {
  await cluster.kubectl([
    'create',
    'rolebinding',
    'session-readers',
    '-n',
    namespace,
    '--clusterrole=airlock-session-reader',
    ...groups.map((group) => `--group=${group}`),
  ]);
}

/** Who a RoleBinding names, as `kubectl create rolebinding` takes them. */
export interface Approvers {
  groups?: string[];
  users?: string[];
  /** NAMESPACE:NAME */
  serviceAccounts?: string[];
}

/**
 * The approvers' RBAC: ClusterRole `airlock-approver` (AccessRequests: read, watch and decide;
 * with readSessions also the recorded sessions) bound in `namespace` by RoleBinding `approvers`.
 * RBAC only lets them write AccessRequests: the approval webhooks decide who may decide.
 */
export async function grantApprovers(
  cluster: Pick<ControlPlane, 'kubectl'>,
  approvers: Approvers,
  options: { namespace?: string; readSessions?: boolean } = {},
): Promise<void> {
  const namespace = options.namespace ?? 'agents';
  const role = {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRole',
    metadata: { name: 'airlock-approver' },
    rules: [
      {
        apiGroups: ['airlock.dev'],
        resources: ['accessrequests'],
        verbs: ['get', 'list', 'watch', 'patch', 'update'],
      },
      ...(options.readSessions
        ? [{ apiGroups: ['audit.airlock.dev'], resources: ['sessions'], verbs: ['get', 'list'] }]
        : []),
    ],
  };
  await cluster.kubectl(['apply', '-f', '-'], { input: JSON.stringify(role) });
  await cluster.kubectl([
    'create',
    'rolebinding',
    'approvers',
    '-n',
    namespace,
    '--clusterrole=airlock-approver',
    ...(approvers.groups ?? []).map((group) => `--group=${group}`),
    ...(approvers.users ?? []).map((user) => `--user=${user}`),
    ...(approvers.serviceAccounts ?? []).map((account) => `--serviceaccount=${account}`),
  ]);
}
