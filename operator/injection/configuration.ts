// The MutatingWebhookConfiguration that routes pod creations to the injector, used by the
// operator and by the Helm chart. Two entries, so the API server calls the injector only for
// pods that may be injected:
//   namespace.inject.airlock.dev  pods in namespaces labeled airlock.dev/injection=enabled
//                                 (all of them: the code honours a pod's "false" and records it)
//   pod.inject.airlock.dev        pods labeled airlock.dev/inject=true in other namespaces
// The operator's namespace and kube-system never reach the webhook. In other namespaces only
// the pod label opts in: the annotation is honoured only when a request arrives, because
// routing on annotations would send every pod in the cluster through a Fail-policy webhook.
import type { V1MutatingWebhook, V1MutatingWebhookConfiguration } from '@kubernetes/client-node';
import { injectionLabel, namespaceInjectionLabel } from './inject.ts';

export const injectionPath = '/inject';

export interface WebhookConfigurationOptions {
  /** Name of the configuration; airlock-injector when omitted. */
  name?: string;
  /** The operator's namespace, never injected. */
  operatorNamespace: string;
  /** More namespaces never injected, besides the operator's and kube-system. */
  excludedNamespaces?: string[];
  /** The operator Service in front of the webhook server (in-cluster). */
  service?: { name: string; namespace?: string; port?: number };
  /** A URL instead of a Service (out-of-cluster, tests). Its path is used as is. */
  url?: string;
  /** PEM bundle the API server trusts for the webhook; the certificate manager keeps it current. */
  caBundle?: string;
  /**
   * With cert-manager: the Certificate, as namespace/name, whose CA cert-manager's cainjector
   * writes into caBundle (annotation cert-manager.io/inject-ca-from).
   */
  certManagerCertificate?: string;
  timeoutSeconds?: number;
  labels?: Record<string, string>;
}

export const injectorWebhookNames = {
  namespace: 'namespace.inject.airlock.dev',
  pod: 'pod.inject.airlock.dev',
} as const;

export function webhookConfiguration(options: WebhookConfigurationOptions): V1MutatingWebhookConfiguration {
  if ((options.service === undefined) === (options.url === undefined)) {
    throw new Error('webhookConfiguration: give exactly one of service and url');
  }
  const excluded = [
    ...new Set([options.operatorNamespace, 'kube-system', ...(options.excludedNamespaces ?? [])]),
  ].sort();
  const notExcluded = { key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: excluded };
  const clientConfig = {
    ...(options.url !== undefined
      ? { url: options.url }
      : {
          service: {
            name: options.service!.name,
            namespace: options.service!.namespace ?? options.operatorNamespace,
            path: injectionPath,
            port: options.service!.port ?? 443,
          },
        }),
    ...(options.caBundle !== undefined && { caBundle: Buffer.from(options.caBundle).toString('base64') }),
  };
  const common = {
    clientConfig,
    rules: [
      {
        operations: ['CREATE'],
        apiGroups: [''],
        apiVersions: ['v1'],
        resources: ['pods'],
        scope: 'Namespaced',
      },
    ],
    matchPolicy: 'Equivalent',
    // Fail closed: a pod that should carry the sidecar is never created without it.
    failurePolicy: 'Fail',
    sideEffects: 'None',
    // Called again after later webhooks change the pod; the injected record makes that a no-op.
    reinvocationPolicy: 'IfNeeded',
    admissionReviewVersions: ['v1'],
    timeoutSeconds: options.timeoutSeconds ?? 10,
  } satisfies Partial<V1MutatingWebhook>;
  return {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'MutatingWebhookConfiguration',
    metadata: {
      name: options.name ?? 'airlock-injector',
      labels: {
        'app.kubernetes.io/part-of': 'airlock',
        'app.kubernetes.io/component': 'injector',
        ...options.labels,
      },
      ...(options.certManagerCertificate !== undefined && {
        annotations: { 'cert-manager.io/inject-ca-from': options.certManagerCertificate },
      }),
    },
    webhooks: [
      {
        name: injectorWebhookNames.namespace,
        ...common,
        namespaceSelector: {
          matchExpressions: [
            { key: namespaceInjectionLabel, operator: 'In', values: ['enabled'] },
            notExcluded,
          ],
        },
      },
      {
        name: injectorWebhookNames.pod,
        ...common,
        // Namespaces set to disabled stay out even for labeled pods.
        namespaceSelector: {
          matchExpressions: [
            { key: namespaceInjectionLabel, operator: 'NotIn', values: ['enabled', 'disabled'] },
            notExcluded,
          ],
        },
        objectSelector: { matchExpressions: [{ key: injectionLabel, operator: 'In', values: ['true'] }] },
      },
    ],
  };
}
