// The injected pod as a typed object: airlock-init first (capture), the sidecar as a native
// sidecar, hostAliases to virtual IPs, the sidecar's own token, CA and spool volumes, and a
// kubeconfig for the agent when a kubernetes Connection is granted (kubeconfig.ts). Pure:
// the webhook derives its JSON Patch by diffing the input and the output (patch.ts).
import type {
  V1Container,
  V1HostAlias,
  V1Pod,
  V1PodSecurityContext,
  V1ResourceRequirements,
  V1SecurityContext,
  V1Volume,
} from '@kubernetes/client-node';
import { z } from 'zod';
import { type CapturedConnection, type Grant, planCapture, virtualCidr } from './hosts.ts';
import { addKubeconfig, podKubeconfig } from './kubeconfig.ts';

export type { Grant } from './hosts.ts';

export const injectionLabel = 'airlock.dev/inject';
export const namespaceInjectionLabel = 'airlock.dev/injection';
export const injectedAnnotation = 'airlock.dev/injected';
export const initContainerName = 'airlock-init';
export const sidecarContainerName = 'airlock-sidecar';
/** The sidecar's uid: the only uid the init container lets out, so no other container may use it. */
export const sidecarUid = 1337;
export const metricsPort = 15020;
export const healthPort = 15021;
export const tokenAudience = 'airlock';

const volumeNames = {
  token: 'airlock-token',
  ca: 'airlock-ca',
  spool: 'airlock-spool',
  noKubeToken: 'airlock-no-kube-token',
} as const;
const mountPaths = {
  token: '/var/run/secrets/airlock.dev/serviceaccount',
  kubeToken: '/var/run/secrets/kubernetes.io/serviceaccount',
  ca: '/etc/airlock/ca',
  spool: '/var/lib/airlock/spool',
} as const;

const resourcesSchema = z.object({
  requests: z.record(z.string(), z.string()).optional(),
  limits: z.record(z.string(), z.string()).optional(),
});

/** How the operator injects, parsed once at the edge. */
export const injectionOptionsSchema = z.object({
  /** The airlock image, which serves both `airlock init` and `airlock sidecar`. */
  image: z.string().min(1),
  imagePullPolicy: z.enum(['Always', 'IfNotPresent', 'Never']).optional(),
  /** Recorded in the injected annotation. */
  version: z.string().min(1),
  /** The operator's control API, as the sidecar reaches it. */
  controlApiUrl: z.url(),
  /** ConfigMap in the pod's namespace holding the control API's CA under ca.crt. */
  caConfigMap: z.string().min(1).default('airlock-ca'),
  egress: z.enum(['strict', 'permissive']).default('strict'),
  clusterDomain: z.string().min(1).default('cluster.local'),
  /** Namespaces never injected, whatever their labels (the operator's own, kube-system). */
  excludedNamespaces: z.array(z.string()).default(['kube-system']),
  sidecarResources: resourcesSchema.default({
    requests: { cpu: '50m', memory: '64Mi' },
    limits: { cpu: '1', memory: '256Mi' },
  }),
  initResources: resourcesSchema.default({
    requests: { cpu: '10m', memory: '16Mi' },
    limits: { cpu: '100m', memory: '64Mi' },
  }),
  spoolSizeLimit: z.string().default('256Mi'),
  tokenExpirationSeconds: z.number().int().min(600).default(3600),
});
export type InjectionOptions = z.output<typeof injectionOptionsSchema>;
export type InjectionOptionsInput = z.input<typeof injectionOptionsSchema>;

export function injectionOptions(input: InjectionOptionsInput): InjectionOptions {
  return injectionOptionsSchema.parse(input);
}

/** Machine-readable outcomes: each becomes an Event reason and a metric label. */
export const injectionReasons = [
  'Injected',
  'NoGrants',
  'NotOptedIn',
  'OptedOut',
  'ExcludedNamespace',
  'HostNetwork',
  'AlreadyInjected',
  'UidConflict',
  'NetAdminRequested',
  'PortConflict',
  // Set by the webhook server, not by injectPod: the grants could not be computed.
  'GrantsUnavailable',
] as const;
export type InjectionReason = (typeof injectionReasons)[number];

export interface InjectionReport {
  /** error: the webhook could not decide (the pod is refused, and created on a retry). */
  result: 'injected' | 'skipped' | 'refused' | 'error';
  reason: InjectionReason;
  message: string;
  /** What was injected, as recorded in the annotation. */
  connections?: InjectedConnection[];
  /** Grants left out of the pod, with why. */
  warnings?: string[];
}

export interface InjectedConnection {
  name: string;
  vip: string;
  port: number;
}

export interface InjectedRecord {
  version: string;
  connections: InjectedConnection[];
}

export interface InjectionContext {
  /** The pod's namespace; the request's namespace when the pod has none yet. */
  namespace?: string;
  /**
   * The namespace's labels, when known. Omitted, the webhook's namespaceSelector is trusted:
   * a request that arrived comes from an opted-in namespace or an opted-in pod.
   */
  namespaceLabels?: Record<string, string>;
}

/**
 * Decides whether and how to inject `pod`, and builds the injected pod. Skipped and refused
 * pods come back unchanged; an injected pod carries the record of what was injected.
 */
export function injectPod(
  pod: V1Pod,
  options: InjectionOptions,
  grants: readonly Grant[],
  context: InjectionContext = {},
): { pod: V1Pod; report: InjectionReport } {
  const namespace = context.namespace ?? pod.metadata?.namespace ?? 'default';
  const unchanged = (result: 'skipped' | 'refused', reason: InjectionReason, message: string) => ({
    pod,
    report: { result, reason, message },
  });
  if (options.excludedNamespaces.includes(namespace)) {
    return unchanged('skipped', 'ExcludedNamespace', `namespace ${namespace} is never injected`);
  }
  const choice = podChoice(pod);
  if (choice === 'false') {
    return unchanged('skipped', 'OptedOut', `the pod sets ${injectionLabel}: "false"`);
  }
  if (
    choice !== 'true' &&
    context.namespaceLabels !== undefined &&
    context.namespaceLabels[namespaceInjectionLabel] !== 'enabled'
  ) {
    return unchanged(
      'skipped',
      'NotOptedIn',
      `neither the pod (${injectionLabel}: "true") nor namespace ${namespace} (${namespaceInjectionLabel}=enabled) opts in`,
    );
  }
  if (pod.spec?.hostNetwork) {
    return unchanged(
      'skipped',
      'HostNetwork',
      'the pod uses the host network, which the sidecar cannot capture',
    );
  }
  const conflict = conflicts(pod);
  if (conflict) return unchanged('refused', conflict.reason, conflict.message);
  if (alreadyInjected(pod)) {
    return unchanged('skipped', 'AlreadyInjected', `the pod already carries ${injectedAnnotation}`);
  }

  const plan = planCapture(grants, namespace, options.clusterDomain);
  const record: InjectedRecord = {
    version: options.version,
    connections: plan.connections.map(({ name, vip, port }) => ({ name, vip, port })),
  };
  const result = structuredClone(pod);
  result.metadata ??= {};
  result.metadata.annotations ??= {};
  const annotations = result.metadata.annotations;
  annotations[injectedAnnotation] = JSON.stringify(record);
  if (annotations['prometheus.io/scrape'] === undefined && annotations['prometheus.io/port'] === undefined) {
    annotations['prometheus.io/scrape'] = 'true';
    annotations['prometheus.io/port'] = String(metricsPort);
    annotations['prometheus.io/path'] = '/metrics';
  }
  result.spec ??= { containers: [] };
  const spec = result.spec;
  const ours = new Set<string>([initContainerName, sidecarContainerName]);
  const ourVolumes = new Set<string>(Object.values(volumeNames));
  // Whatever an earlier injection left (a copied spec without the annotation) is rebuilt.
  const userInit = (spec.initContainers ?? []).filter((c) => !ours.has(c.name));
  spec.initContainers = [
    initContainer(plan.connections, options),
    sidecarContainer(plan.connections, options),
    ...userInit,
  ];
  spec.containers = spec.containers.filter((c) => !ours.has(c.name));
  spec.volumes = [...(spec.volumes ?? []).filter((v) => !ourVolumes.has(v.name)), ...volumes(options)];
  // Ours first: /etc/hosts answers with the first line that names a host.
  const userAliases = (spec.hostAliases ?? []).filter((alias) => !isVirtualIp(alias.ip));
  const aliases: V1HostAlias[] = plan.connections
    .filter((c) => c.hostnames.length > 0)
    .map((c) => ({ ip: c.vip, hostnames: c.hostnames }));
  if (aliases.length > 0 || userAliases.length > 0) spec.hostAliases = [...aliases, ...userAliases];
  else delete spec.hostAliases;
  addKubeconfig(result, podKubeconfig(plan.connections, namespace));

  const warnings = plan.dropped.map((d) => `Connection ${d.name} left out: ${d.why}`);
  const names = plan.connections.map((c) => c.name).join(', ');
  return {
    pod: result,
    report: {
      result: 'injected',
      ...(plan.connections.length === 0
        ? {
            reason: 'NoGrants' as const,
            message: `injected with no Connection: no AccessPolicy grants ServiceAccount ${namespace}/${serviceAccountOf(pod)}, so the pod reaches nothing until one does and the pod is re-created`,
          }
        : { reason: 'Injected' as const, message: `injected the sidecar for ${names}` }),
      connections: record.connections,
      ...(warnings.length > 0 && { warnings }),
    },
  };
}

export function serviceAccountOf(pod: V1Pod): string {
  return pod.spec?.serviceAccountName || pod.spec?.serviceAccount || 'default';
}

/** The pod's own choice: the label wins over the annotation. */
function podChoice(pod: V1Pod): string | undefined {
  return pod.metadata?.labels?.[injectionLabel] ?? pod.metadata?.annotations?.[injectionLabel];
}

/** The record of an earlier injection, when the annotation parses. */
export function injectedRecord(pod: V1Pod): InjectedRecord | undefined {
  const value = pod.metadata?.annotations?.[injectedAnnotation];
  if (value === undefined) return undefined;
  try {
    const parsed = JSON.parse(value) as InjectedRecord;
    return typeof parsed?.version === 'string' && Array.isArray(parsed.connections) ? parsed : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Injected means the record and both containers: the annotation alone, which anyone can
 * write, does not skip injection.
 */
function alreadyInjected(pod: V1Pod): boolean {
  const init = pod.spec?.initContainers ?? [];
  return (
    injectedRecord(pod) !== undefined &&
    init[0]?.name === initContainerName &&
    init.some((c) => c.name === sidecarContainerName && c.restartPolicy === 'Always')
  );
}

function isVirtualIp(ip: string | undefined): boolean {
  return ip?.startsWith('240.240.') ?? false;
}

function userContainers(pod: V1Pod): V1Container[] {
  const ours = (c: { name: string }) => c.name === initContainerName || c.name === sidecarContainerName;
  return [
    ...(pod.spec?.initContainers ?? []),
    ...(pod.spec?.containers ?? []),
    ...((pod.spec?.ephemeralContainers ?? []) as V1Container[]),
  ].filter((c) => !ours(c));
}

/** Why the pod cannot be injected safely: a container that could bypass or undo the capture. */
function conflicts(pod: V1Pod): { reason: InjectionReason; message: string } | undefined {
  const podContext: V1PodSecurityContext | undefined = pod.spec?.securityContext;
  const containers = userContainers(pod);
  const uidHolders = containers
    .filter((c) => (c.securityContext?.runAsUser ?? podContext?.runAsUser) === sidecarUid)
    .map((c) => c.name);
  if (uidHolders.length > 0) {
    return {
      reason: 'UidConflict',
      message: `container ${quoted(uidHolders)} runs as uid ${sidecarUid}, which Airlock reserves for its sidecar: traffic from that uid bypasses enforcement. Run it as another uid.`,
    };
  }
  const netAdmin = containers
    .filter((c) => {
      const added = (c.securityContext?.capabilities?.add ?? []).map((cap) =>
        cap.toUpperCase().replace(/^CAP_/, ''),
      );
      return c.securityContext?.privileged === true || added.includes('NET_ADMIN') || added.includes('ALL');
    })
    .map((c) => c.name);
  if (netAdmin.length > 0) {
    return {
      reason: 'NetAdminRequested',
      message: `container ${quoted(netAdmin)} requests NET_ADMIN (or privileged, or all capabilities), which could undo the traffic capture. Remove it.`,
    };
  }
  const reserved = new Set([metricsPort, healthPort]);
  const ports = containers
    .filter((c) => (c.ports ?? []).some((p) => reserved.has(p.containerPort)))
    .map((c) => c.name);
  if (ports.length > 0) {
    return {
      reason: 'PortConflict',
      message: `container ${quoted(ports)} declares port ${metricsPort} or ${healthPort}, which the sidecar serves. Use another port.`,
    };
  }
  return undefined;
}

function quoted(names: string[]): string {
  return names.map((n) => `"${n}"`).join(', ');
}

function initContainer(connections: CapturedConnection[], options: InjectionOptions): V1Container {
  const args = [
    '--egress',
    options.egress,
    '--sidecar-uid',
    String(sidecarUid),
    '--virtual-cidr',
    virtualCidr,
  ];
  for (const c of connections) args.push('--virtual', `${c.name}=${c.vip}:${c.port}`);
  for (const c of connections.filter((c) => c.hostnames.length === 0)) {
    args.push('--redirect', `${hostPort(c.host, c.port)}=${c.vip}:${c.port}`);
  }
  const securityContext: V1SecurityContext = {
    // Root with only the two network capabilities: iptables and routes, nothing else.
    runAsUser: 0,
    runAsGroup: 0,
    runAsNonRoot: false,
    privileged: false,
    allowPrivilegeEscalation: false,
    // iptables takes its lock under /run.
    readOnlyRootFilesystem: false,
    capabilities: { add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] },
    seccompProfile: { type: 'RuntimeDefault' },
  };
  return {
    name: initContainerName,
    image: options.image,
    ...(options.imagePullPolicy && { imagePullPolicy: options.imagePullPolicy }),
    command: ['airlock', 'init'],
    args,
    resources: options.initResources as V1ResourceRequirements,
    volumeMounts: [noKubeToken],
    securityContext,
    terminationMessagePolicy: 'FallbackToLogsOnError',
  };
}

/**
 * An empty directory where Kubernetes would mount the ServiceAccount's API token. Airlock's
 * containers need no Kubernetes API access, and with this mount the ServiceAccount admission
 * plugin, which runs again after the injection, leaves them alone; otherwise its change would
 * also call the injector a second time (reinvocationPolicy IfNeeded) for every pod.
 */
const noKubeToken = { name: volumeNames.noKubeToken, mountPath: mountPaths.kubeToken, readOnly: true };

function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

function sidecarContainer(connections: CapturedConnection[], options: InjectionOptions): V1Container {
  const args = [
    '--control-api',
    options.controlApiUrl,
    '--token-file',
    `${mountPaths.token}/token`,
    '--ca-file',
    `${mountPaths.ca}/ca.crt`,
    '--spool-dir',
    mountPaths.spool,
    '--health-port',
    String(healthPort),
    '--metrics-port',
    String(metricsPort),
  ];
  for (const c of connections) args.push('--listen', `${c.name}=${c.vip}:${c.port}/${c.protocol}`);
  const field = (fieldPath: string) => ({ valueFrom: { fieldRef: { fieldPath } } });
  return {
    name: sidecarContainerName,
    image: options.image,
    ...(options.imagePullPolicy && { imagePullPolicy: options.imagePullPolicy }),
    command: ['airlock', 'sidecar'],
    args,
    // A native sidecar: starts before the agent, runs beside it, stops after it.
    restartPolicy: 'Always',
    env: [
      { name: 'POD_NAME', ...field('metadata.name') },
      { name: 'POD_NAMESPACE', ...field('metadata.namespace') },
      { name: 'POD_UID', ...field('metadata.uid') },
      { name: 'SERVICE_ACCOUNT', ...field('spec.serviceAccountName') },
    ],
    ports: [
      { name: 'airlock-metrics', containerPort: metricsPort, protocol: 'TCP' },
      { name: 'airlock-health', containerPort: healthPort, protocol: 'TCP' },
    ],
    resources: options.sidecarResources as V1ResourceRequirements,
    // The agent starts only once the sidecar holds its bundle; until then nothing gets out.
    startupProbe: {
      httpGet: { path: '/readyz', port: healthPort },
      periodSeconds: 1,
      timeoutSeconds: 1,
      failureThreshold: 300,
    },
    readinessProbe: {
      httpGet: { path: '/readyz', port: healthPort },
      periodSeconds: 5,
      timeoutSeconds: 1,
      failureThreshold: 3,
    },
    livenessProbe: {
      httpGet: { path: '/healthz', port: healthPort },
      periodSeconds: 10,
      timeoutSeconds: 2,
      failureThreshold: 3,
    },
    volumeMounts: [
      { name: volumeNames.token, mountPath: mountPaths.token, readOnly: true },
      { name: volumeNames.ca, mountPath: mountPaths.ca, readOnly: true },
      { name: volumeNames.spool, mountPath: mountPaths.spool },
      noKubeToken,
    ],
    securityContext: {
      runAsUser: sidecarUid,
      runAsGroup: sidecarUid,
      runAsNonRoot: true,
      privileged: false,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    },
    terminationMessagePolicy: 'FallbackToLogsOnError',
  };
}

function volumes(options: InjectionOptions): V1Volume[] {
  return [
    {
      name: volumeNames.token,
      projected: {
        sources: [
          {
            serviceAccountToken: {
              audience: tokenAudience,
              expirationSeconds: options.tokenExpirationSeconds,
              path: 'token',
            },
          },
        ],
      },
    },
    {
      name: volumeNames.ca,
      configMap: { name: options.caConfigMap, items: [{ key: 'ca.crt', path: 'ca.crt' }] },
    },
    { name: volumeNames.spool, emptyDir: { sizeLimit: options.spoolSizeLimit } },
    { name: volumeNames.noKubeToken, emptyDir: { medium: 'Memory', sizeLimit: '1Ki' } },
  ];
}
