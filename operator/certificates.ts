// The webhook's certificates: a CA and a serving certificate for the operator Service, kept in
// one Secret. The leader creates, renews and rotates them and writes the CA bundle into the
// webhook configurations and the sessions APIService; every replica reads the Secret and
// serves what it holds.
//
// Secret (type kubernetes.io/tls): tls.crt, tls.key (serving), ca.crt (the trusted bundle,
// signing CA first, older CAs after it until they expire), ca.key (the signing CA's key).
//
// Rotation, one step per pass: a serving certificate is renewed when less than renewBefore
// (a third of its lifetime by default) remains, when its names change, or when it was not
// signed by the current signing CA and that CA has been in the published bundle for
// caPropagationDelay. A CA is replaced the same way; the new one signs from then on and the
// old one stays in the bundle, so the serving certificate it signed stays trusted meanwhile.
// Writes carry the resourceVersion: of two replicas racing, the loser reloads and finds
// nothing left to do.
//
// With cert-manager (mode: 'cert-manager') the operator writes nothing: a Certificate, say
//   apiVersion: cert-manager.io/v1, kind: Certificate,
//   metadata: { name: airlock-webhook, namespace: airlock-system },
//   spec: { secretName: airlock-webhook-tls, issuerRef: { name: airlock-ca, kind: Issuer },
//           dnsNames: [airlock-operator.airlock-system.svc, airlock-operator.airlock-system.svc.cluster.local] }
// keeps the Secret, and the webhook configurations carry the annotation
//   cert-manager.io/inject-ca-from: airlock-system/airlock-webhook
// (webhookConfiguration({ certManagerCertificate })) so cert-manager's cainjector fills caBundle.
import { X509Certificate } from 'node:crypto';
import {
  AdmissionregistrationV1Api,
  ApiregistrationV1Api,
  CoreV1Api,
  type KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  type V1APIService,
  type V1MutatingWebhookConfiguration,
  type V1Secret,
  type V1ValidatingWebhookConfiguration,
} from '@kubernetes/client-node';
import { createCertificateAuthority, type KeyPairPem, loadCertificateAuthority } from './pki.ts';

const day = 24 * 60 * 60 * 1000;

export interface CertificateOptions {
  /** Namespace of the Secret: the operator's. */
  namespace: string;
  secretName: string;
  /** operator (default): the operator issues and rotates. cert-manager: it only reads. */
  mode?: 'operator' | 'cert-manager';
  /** The operator Service: its names go into the serving certificate. */
  serviceName?: string;
  clusterDomain?: string;
  /** More names and addresses for the serving certificate (127.0.0.1 in tests). */
  dnsNames?: string[];
  ipAddresses?: string[];
  /** Webhook configurations whose every entry gets the CA bundle, by name. */
  mutatingWebhookConfigurations?: string[];
  validatingWebhookConfigurations?: string[];
  /** Aggregated APIServices (the sessions API) that get the CA bundle, by name. */
  apiServices?: string[];
  /** Lifetimes and renewal margins, in milliseconds. Margins default to a third of the lifetime. */
  caValidity?: number;
  caRenewBefore?: number;
  servingValidity?: number;
  servingRenewBefore?: number;
  /** How long a new CA is published before it signs the serving certificate. */
  caPropagationDelay?: number;
  /** How often the Secret is read (and, on the leader, renewed and published). */
  interval?: number;
  /** Only the leader writes. Every replica when omitted. */
  isLeader?: () => boolean;
  log?: { info(o: object, m?: string): void; warn(o: object, m?: string): void };
  now?: () => number;
}

export interface CertificateManager {
  /** The serving certificate, once loaded. */
  current(): KeyPairPem | undefined;
  /** Called whenever the serving certificate changes; returns an unsubscribe function. */
  onChange(listener: (pair: KeyPairPem) => void): () => void;
  /** The PEM bundle clients should trust, once loaded. */
  caBundle(): string | undefined;
  /** One pass: read the Secret; on the leader, create or renew it and publish the bundle. */
  reconcile(): Promise<void>;
  /** Reconciles every interval; resolves once a serving certificate is loaded. */
  start(): Promise<void>;
  stop(): void;
}

export const caRotatedAtAnnotation = 'airlock.dev/ca-rotated-at';

interface Material {
  bundle: string[];
  caKey?: string;
  serving?: KeyPairPem;
  caRotatedAt?: number;
}

export function splitPem(bundle: string): string[] {
  return (
    bundle
      .match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\s*/g)
      ?.map((c) => `${c.trim()}\n`) ?? []
  );
}

function parse(pem: string): X509Certificate | undefined {
  try {
    return new X509Certificate(pem);
  } catch {
    return undefined;
  }
}

function lifetime(cert: X509Certificate): number {
  return Date.parse(cert.validTo) - Date.parse(cert.validFrom);
}

function remaining(cert: X509Certificate, now: number): number {
  return Date.parse(cert.validTo) - now;
}

/** DNS names and IPs of a certificate, sorted. */
export function subjectAltNames(cert: X509Certificate): string[] {
  return (cert.subjectAltName ?? '')
    .split(', ')
    .filter(Boolean)
    .map((entry) => entry.replace(/^IP Address:/, 'IP:'))
    .sort();
}

function decode(secret: V1Secret | undefined): Material {
  const data = secret?.data ?? {};
  const text = (key: string) => (data[key] ? Buffer.from(data[key], 'base64').toString('utf8') : undefined);
  const rotatedAt = Date.parse(secret?.metadata?.annotations?.[caRotatedAtAnnotation] ?? '');
  const [certificate, privateKey] = [text('tls.crt'), text('tls.key')];
  return {
    bundle: splitPem(text('ca.crt') ?? ''),
    ...(text('ca.key') !== undefined && { caKey: text('ca.key') }),
    ...(certificate && privateKey && { serving: { certificate, privateKey } }),
    ...(Number.isFinite(rotatedAt) && { caRotatedAt: rotatedAt }),
  };
}

function statusCode(error: unknown): number | undefined {
  const e = error as { code?: unknown; statusCode?: unknown };
  return typeof e?.code === 'number' ? e.code : typeof e?.statusCode === 'number' ? e.statusCode : undefined;
}

export function createCertificateManager(
  kubeConfig: KubeConfig,
  options: CertificateOptions,
): CertificateManager {
  const core = kubeConfig.makeApiClient(CoreV1Api);
  const admission = kubeConfig.makeApiClient(AdmissionregistrationV1Api);
  const registration = kubeConfig.makeApiClient(ApiregistrationV1Api);
  const now = options.now ?? Date.now;
  const mode = options.mode ?? 'operator';
  const isLeader = options.isLeader ?? (() => true);
  const domain = options.clusterDomain ?? 'cluster.local';
  const desiredNames = [
    ...(options.serviceName
      ? [
          `${options.serviceName}.${options.namespace}.svc`,
          `${options.serviceName}.${options.namespace}.svc.${domain}`,
        ]
      : []),
    ...(options.dnsNames ?? []),
  ];
  const desiredIps = options.ipAddresses ?? [];
  const wantedSans = [...desiredNames.map((n) => `DNS:${n}`), ...desiredIps.map((ip) => `IP:${ip}`)].sort();
  const caValidity = options.caValidity ?? 5 * 365 * day;
  const servingValidity = options.servingValidity ?? 90 * day;
  const propagationDelay = options.caPropagationDelay ?? 60_000;
  const listeners = new Set<(pair: KeyPairPem) => void>();
  let serving: KeyPairPem | undefined;
  let bundle: string | undefined;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;

  function load(material: Material): void {
    if (material.bundle.length > 0) bundle = material.bundle.join('');
    const next = material.serving;
    if (
      !next ||
      (serving && next.certificate === serving.certificate && next.privateKey === serving.privateKey)
    )
      return;
    if (!parse(next.certificate)) return;
    serving = next;
    options.log?.info(
      { event: 'certificate-loaded', secret: options.secretName, notAfter: parse(next.certificate)!.validTo },
      'serving certificate loaded',
    );
    for (const listener of listeners) listener(next);
  }

  /** What the Secret should hold now, or undefined when it already does. */
  async function desired(current: Material): Promise<Material | undefined> {
    const t = now();
    let changed = false;
    let trusted = current.bundle.filter((pem) => {
      const cert = parse(pem);
      return cert !== undefined && remaining(cert, t) > 0;
    });
    if (trusted.length !== current.bundle.length) changed = true;
    let signer = current.bundle[0] !== undefined ? parse(current.bundle[0]) : undefined;
    let caKey = current.caKey;
    let rotatedAt = current.caRotatedAt ?? 0;
    const caRenewBefore = signer ? (options.caRenewBefore ?? lifetime(signer) / 3) : 0;
    if (!signer || !caKey || trusted[0] !== current.bundle[0] || remaining(signer, t) < caRenewBefore) {
      const ca = await createCertificateAuthority(
        `${options.secretName} CA ${new Date(t).toISOString()}`,
        caValidity,
      );
      trusted = [...splitPem(ca.certificate), ...trusted];
      signer = parse(ca.certificate)!;
      caKey = ca.privateKey;
      rotatedAt = t;
      changed = true;
      options.log?.info({ event: 'ca-rotated', secret: options.secretName }, 'new signing CA');
    }
    const servingCert = current.serving ? parse(current.serving.certificate) : undefined;
    const issuedBySigner = servingCert?.checkIssued(signer) === true && servingCert.verify(signer.publicKey);
    const trustedIssuer = trusted.some((pem) => {
      const ca = parse(pem)!;
      return servingCert?.checkIssued(ca) === true && servingCert.verify(ca.publicKey);
    });
    const servingRenewBefore = servingCert ? (options.servingRenewBefore ?? lifetime(servingCert) / 3) : 0;
    const renew =
      !servingCert ||
      !trustedIssuer ||
      remaining(servingCert, t) < servingRenewBefore ||
      subjectAltNames(servingCert).join(',') !== wantedSans.join(',') ||
      (!issuedBySigner && t - rotatedAt >= propagationDelay);
    let servingPair = current.serving;
    if (renew) {
      const ca = await loadCertificateAuthority({ certificate: trusted[0]!, privateKey: caKey });
      servingPair = await ca.issue({
        commonName: desiredNames[0] ?? desiredIps[0] ?? options.secretName,
        dnsNames: desiredNames,
        ipAddresses: desiredIps,
        usage: 'server',
        validFor: Math.min(servingValidity, remaining(signer, t)),
      });
      changed = true;
      options.log?.info(
        { event: 'certificate-renewed', secret: options.secretName },
        'serving certificate renewed',
      );
    }
    if (!changed) return undefined;
    return { bundle: trusted, caKey, ...(servingPair && { serving: servingPair }), caRotatedAt: rotatedAt };
  }

  function encode(material: Material, previous: V1Secret | undefined): V1Secret {
    const b64 = (s: string) => Buffer.from(s).toString('base64');
    return {
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'kubernetes.io/tls',
      metadata: {
        ...previous?.metadata,
        managedFields: undefined,
        name: options.secretName,
        namespace: options.namespace,
        labels: {
          ...previous?.metadata?.labels,
          'app.kubernetes.io/part-of': 'airlock',
          'app.kubernetes.io/managed-by': 'airlock-operator',
        },
        annotations: {
          ...previous?.metadata?.annotations,
          [caRotatedAtAnnotation]: new Date(material.caRotatedAt ?? now()).toISOString(),
        },
      },
      data: {
        'tls.crt': b64(material.serving!.certificate),
        'tls.key': b64(material.serving!.privateKey),
        'ca.crt': b64(material.bundle.join('')),
        'ca.key': b64(material.caKey!),
      },
    };
  }

  async function readSecret(): Promise<V1Secret | undefined> {
    try {
      return await core.readNamespacedSecret({ name: options.secretName, namespace: options.namespace });
    } catch (error) {
      if (statusCode(error) === 404) return undefined;
      throw error;
    }
  }

  /** Creates or renews the Secret; a lost race rereads and tries again. */
  async function renewSecret(): Promise<V1Secret | undefined> {
    for (let attempt = 0; ; attempt++) {
      const secret = await readSecret();
      const next = await desired(decode(secret));
      if (!next) return secret;
      try {
        if (!secret) {
          return await core.createNamespacedSecret({
            namespace: options.namespace,
            body: encode(next, undefined),
          });
        }
        return await core.replaceNamespacedSecret({
          name: options.secretName,
          namespace: options.namespace,
          body: encode(next, secret),
        });
      } catch (error) {
        const code = statusCode(error);
        if ((code === 409 || code === 422) && attempt < 5) {
          options.log?.info(
            { event: 'certificate-conflict', secret: options.secretName },
            'lost a race; rereading',
          );
          continue;
        }
        throw error;
      }
    }
  }

  /**
   * Writes the bundle into every entry of the named webhook configurations, and into the named
   * APIServices, with a JSON Patch
   * that first tests the resourceVersion it read, so a concurrent writer is never overwritten.
   */
  async function publish(caBundle: string): Promise<void> {
    const encoded = Buffer.from(caBundle).toString('base64');
    const jsonPatch = setHeaderOptions('Content-Type', PatchStrategy.JsonPatch);
    const guarded = (object: { metadata?: { resourceVersion?: string } }, stale: object[]) =>
      stale.length === 0
        ? []
        : [
            { op: 'test', path: '/metadata/resourceVersion', value: object.metadata?.resourceVersion },
            ...stale,
          ];
    const webhooks = (config: V1MutatingWebhookConfiguration | V1ValidatingWebhookConfiguration) =>
      guarded(
        config,
        (config.webhooks ?? []).flatMap((webhook, i) =>
          webhook.clientConfig.caBundle === encoded
            ? []
            : [{ op: 'add', path: `/webhooks/${i}/clientConfig/caBundle`, value: encoded }],
        ),
      );
    const apiService = (service: V1APIService) =>
      guarded(
        service,
        service.spec?.caBundle === encoded ? [] : [{ op: 'add', path: '/spec/caBundle', value: encoded }],
      );
    const kinds: {
      names: string[];
      operations(name: string): Promise<object[]>;
      patch(name: string, body: object[]): Promise<unknown>;
    }[] = [
      {
        names: options.mutatingWebhookConfigurations ?? [],
        operations: async (name) => webhooks(await admission.readMutatingWebhookConfiguration({ name })),
        patch: (name, body) => admission.patchMutatingWebhookConfiguration({ name, body }, jsonPatch),
      },
      {
        names: options.validatingWebhookConfigurations ?? [],
        operations: async (name) => webhooks(await admission.readValidatingWebhookConfiguration({ name })),
        patch: (name, body) => admission.patchValidatingWebhookConfiguration({ name, body }, jsonPatch),
      },
      {
        names: options.apiServices ?? [],
        operations: async (name) => apiService(await registration.readAPIService({ name })),
        patch: (name, body) => registration.patchAPIService({ name, body }, jsonPatch),
      },
    ];
    for (const kind of kinds) {
      for (const name of kind.names) {
        for (let attempt = 0; ; attempt++) {
          try {
            const body = await kind.operations(name);
            if (body.length === 0) break;
            await kind.patch(name, body);
            options.log?.info({ event: 'ca-bundle-published', configuration: name }, 'CA bundle published');
            break;
          } catch (error) {
            const code = statusCode(error);
            if (code === 404) {
              options.log?.warn({ event: 'webhook-configuration-missing', configuration: name }, 'not found');
              break;
            }
            if ((code === 409 || code === 422) && attempt < 5) continue;
            throw error;
          }
        }
      }
    }
  }

  async function reconcile(): Promise<void> {
    if (mode === 'cert-manager' || !isLeader()) {
      load(decode(await readSecret()));
      return;
    }
    const secret = await renewSecret();
    const material = decode(secret);
    if (material.bundle.length > 0) await publish(material.bundle.join(''));
    load(material);
  }

  return {
    current: () => serving,
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    caBundle: () => bundle,
    reconcile,
    start() {
      stopped = false;
      return new Promise<void>((resolve) => {
        const interval = options.interval ?? 30_000;
        let backoff = 500;
        const tick = async () => {
          if (stopped) return;
          let failed = false;
          try {
            await reconcile();
          } catch (error) {
            options.log?.warn(
              { event: 'certificate-reconcile-failed', err: error },
              'certificate reconcile failed',
            );
            failed = true;
          }
          if (serving) resolve();
          // After a failure, or while there is nothing to serve yet (a replica that is not yet
          // the leader finds no Secret; the leader, or this replica once elected, writes it
          // soon), look again soon, backing off; otherwise at the renewal interval.
          const soon = failed || !serving;
          const delay = soon ? Math.min(backoff, interval) : interval;
          backoff = soon ? Math.min(backoff * 2, 30_000) : 500;
          if (!stopped) {
            timer = setTimeout(tick, delay);
            timer.unref();
          }
        };
        void tick();
      });
    },
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
    },
  };
}
