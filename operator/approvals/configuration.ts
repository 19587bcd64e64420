// The webhook configurations that route AccessRequest writes to the operator, used by the
// operator and by the Helm chart: a mutating one that records who decided (the decided-by
// annotation, from the API server's userInfo) and a validating one that admits a decision only
// from an approver. Both fail closed: no webhook, no decision.
import type {
  V1MutatingWebhookConfiguration,
  V1ValidatingWebhookConfiguration,
} from '@kubernetes/client-node';

export const approvalWebhookName = 'airlock-approvals';
export const mutatePath = '/approvals/mutate';
export const validatePath = '/approvals/validate';

export interface ApprovalWebhookOptions {
  name?: string;
  operatorNamespace: string;
  service?: { name: string; namespace?: string; port?: number };
  /** A base URL instead of a Service (tests); the paths are appended. */
  url?: string;
  caBundle?: string;
  certManagerCertificate?: string;
  timeoutSeconds?: number;
}

function common(options: ApprovalWebhookOptions, path: string) {
  if ((options.service === undefined) === (options.url === undefined)) {
    throw new Error('approvalWebhookConfigurations: give exactly one of service and url');
  }
  return {
    clientConfig: {
      ...(options.url !== undefined
        ? { url: `${options.url.replace(/\/$/, '')}${path}` }
        : {
            service: {
              name: options.service!.name,
              namespace: options.service!.namespace ?? options.operatorNamespace,
              path,
              port: options.service!.port ?? 443,
            },
          }),
      ...(options.caBundle !== undefined && { caBundle: Buffer.from(options.caBundle).toString('base64') }),
    },
    rules: [
      {
        operations: ['CREATE', 'UPDATE'],
        apiGroups: ['airlock.dev'],
        apiVersions: ['v1alpha1'],
        resources: ['accessrequests'],
        scope: 'Namespaced',
      },
    ],
    matchPolicy: 'Equivalent',
    failurePolicy: 'Fail',
    sideEffects: 'None',
    admissionReviewVersions: ['v1'],
    timeoutSeconds: options.timeoutSeconds ?? 10,
  };
}

function metadata(options: ApprovalWebhookOptions) {
  return {
    name: options.name ?? approvalWebhookName,
    labels: { 'app.kubernetes.io/part-of': 'airlock', 'app.kubernetes.io/component': 'approvals' },
    ...(options.certManagerCertificate !== undefined && {
      annotations: { 'cert-manager.io/inject-ca-from': options.certManagerCertificate },
    }),
  };
}

export function approvalWebhookConfigurations(options: ApprovalWebhookOptions): {
  mutating: V1MutatingWebhookConfiguration;
  validating: V1ValidatingWebhookConfiguration;
} {
  return {
    mutating: {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'MutatingWebhookConfiguration',
      metadata: metadata(options),
      webhooks: [
        {
          name: 'decided-by.approvals.airlock.dev',
          ...common(options, mutatePath),
          reinvocationPolicy: 'IfNeeded',
        },
      ],
    },
    validating: {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingWebhookConfiguration',
      metadata: metadata(options),
      webhooks: [{ name: 'decision.approvals.airlock.dev', ...common(options, validatePath) }],
    },
  };
}
