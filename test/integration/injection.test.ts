// Sidecar injection against a real kube-apiserver: the webhook server runs on loopback with
// certificates from the certificate manager, the API server calls it for every pod created in
// an opted-in namespace, and the tests read back what the API server stored. No kubelet runs,
// so pods never start; the stored spec is what matters.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { createServer } from 'node:https';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect } from 'node:tls';
import { CoreV1Api, KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { type Counter, type Histogram, Registry } from '../../metrics/registry.ts';
import {
  type CertificateManager,
  createCertificateManager,
  splitPem,
  subjectAltNames,
} from '../../operator/certificates.ts';
import { webhookConfiguration } from '../../operator/injection/configuration.ts';
import { kubernetesEventRecorder } from '../../operator/injection/events.ts';
import type { Grant } from '../../operator/injection/hosts.ts';
import { injectedAnnotation, injectedRecord, injectionOptions } from '../../operator/injection/inject.ts';
import { type InjectionServer, startInjectionServer } from '../../operator/injection/server.ts';
import { createCertificateAuthority, type KeyPairPem } from '../../operator/pki.ts';
import { type ControlPlane, startControlPlane } from '../support/controlplane.ts';
import { freePort } from '../support/process.ts';
import { requires } from '../support/tools.ts';

const operatorNamespace = 'airlock-system';
const secretName = 'airlock-webhook-tls';

const grants: Record<string, Grant[]> = {
  'agents/support-agent': [
    { name: 'orders-db', host: 'orders-db.data.svc.cluster.local', port: 5432, protocol: 'postgres' },
  ],
  'agents/integrations': [
    { name: 'warehouse', host: '10.20.30.40', port: 5432, protocol: 'postgres' },
    { name: 'crm-api', host: 'api.crm.example.com', port: 443, protocol: 'http' },
  ],
  'plain/etl': [
    { name: 'orders-db', host: 'orders-db.data.svc.cluster.local', port: 5432, protocol: 'postgres' },
  ],
};

/** A certificate source the server follows, fed by whichever manager is current. */
function relay() {
  let current: KeyPairPem | undefined;
  const listeners = new Set<(pair: KeyPairPem) => void>();
  let unsubscribe = () => {};
  return {
    current: () => current,
    onChange(listener: (pair: KeyPairPem) => void) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    follow(manager: CertificateManager) {
      unsubscribe();
      const set = (pair: KeyPairPem) => {
        current = pair;
        for (const l of listeners) l(pair);
      };
      unsubscribe = manager.onChange(set);
      const now = manager.current();
      if (now) set(now);
    },
  };
}

function servedCertificate(port: number): Promise<X509Certificate> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      resolve(socket.getPeerX509Certificate()!);
      socket.end();
    });
    socket.on('error', reject);
  });
}

function pod(name: string, namespace: string, extra: { metadata?: object; spec?: object } = {}): string {
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace, ...extra.metadata },
    spec: { containers: [{ name: 'agent', image: 'ghcr.io/example/agent:1.0.0' }], ...extra.spec },
  });
}

describe('sidecar injection on a real kube-apiserver', requires('etcd', 'kube-apiserver', 'kubectl'), () => {
  let cluster: ControlPlane;
  let kubeConfig: KubeConfig;
  let manager: CertificateManager;
  let server: InjectionServer;
  const certificates = relay();
  const registry = new Registry();
  let port: number;

  const kubectl = (args: string[], input?: string) =>
    cluster.kubectl(args, input === undefined ? {} : { input });
  const create = (manifest: string) => kubectl(['create', '-f', '-'], manifest);
  const stored = async (name: string, namespace: string): Promise<V1Pod> =>
    JSON.parse(await kubectl(['get', 'pod', name, '-n', namespace, '-o', 'json']));
  const counted = async (result: string, reason: string): Promise<number> => {
    const metric = (registry.get('airlock_injections_total') as Counter<string> | undefined)?.series() ?? [];
    return metric.find((v) => v.labels.result === result && v.labels.reason === reason)?.value ?? 0;
  };
  const event = async (namespace: string, podName: string, reason: string) => {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const events = JSON.parse(await kubectl(['get', 'events', '-n', namespace, '-o', 'json'])).items as {
        reason: string;
        message: string;
        type: string;
        involvedObject: { kind: string; name: string };
      }[];
      const found = events.find((e) => e.reason === reason && e.involvedObject.name === podName);
      if (found) return found;
      if (Date.now() > deadline) assert.fail(`no ${reason} Event for pod ${namespace}/${podName}`);
      await sleep(200);
    }
  };

  before(async () => {
    cluster = await startControlPlane();
    kubeConfig = new KubeConfig();
    kubeConfig.loadFromFile(cluster.kubeconfig.admin);
    port = await freePort();
    const setup = [
      {
        apiVersion: 'v1',
        kind: 'Namespace',
        metadata: { name: operatorNamespace, labels: { 'airlock.dev/injection': 'enabled' } },
      },
      {
        apiVersion: 'v1',
        kind: 'Namespace',
        metadata: { name: 'agents', labels: { 'airlock.dev/injection': 'enabled' } },
      },
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'plain' } },
      ...[
        ['agents', 'default'],
        ['agents', 'support-agent'],
        ['agents', 'integrations'],
        ['agents', 'new-agent'],
        ['plain', 'default'],
        ['plain', 'etl'],
        [operatorNamespace, 'default'],
      ].map(([namespace, name]) => ({
        apiVersion: 'v1',
        kind: 'ServiceAccount',
        metadata: { name, namespace },
      })),
      // Registered without a caBundle: the certificate manager writes it.
      webhookConfiguration({ operatorNamespace, url: `https://127.0.0.1:${port}/inject`, timeoutSeconds: 5 }),
    ];
    await create(JSON.stringify({ apiVersion: 'v1', kind: 'List', items: setup }));
    manager = createCertificateManager(kubeConfig, {
      namespace: operatorNamespace,
      secretName,
      serviceName: 'airlock-operator',
      ipAddresses: ['127.0.0.1'],
      mutatingWebhookConfigurations: ['airlock-injector'],
      interval: 1000,
    });
    await manager.start();
    certificates.follow(manager);
    server = await startInjectionServer({
      host: '127.0.0.1',
      port,
      injection: injectionOptions({
        image: 'ghcr.io/airlock-dev/airlock:0.1.0',
        version: '0.1.0',
        controlApiUrl: 'https://airlock-operator.airlock-system.svc:8443',
        excludedNamespaces: [operatorNamespace, 'kube-system'],
      }),
      certificates,
      grantsFor: (namespace, serviceAccount) => grants[`${namespace}/${serviceAccount}`] ?? [],
      recordEvent: kubernetesEventRecorder(kubeConfig.makeApiClient(CoreV1Api)),
      registry,
    });
  });
  after(async () => {
    manager?.stop();
    await server?.close();
    await cluster?.stop();
  });

  test('the manager keeps the certificates in a Secret and publishes the CA bundle', async () => {
    const secret = JSON.parse(
      await kubectl(['get', 'secret', secretName, '-n', operatorNamespace, '-o', 'json']),
    );
    assert.equal(secret.type, 'kubernetes.io/tls');
    const serving = new X509Certificate(Buffer.from(secret.data['tls.crt'], 'base64'));
    assert.deepEqual(subjectAltNames(serving), [
      'DNS:airlock-operator.airlock-system.svc',
      'DNS:airlock-operator.airlock-system.svc.cluster.local',
      'IP:127.0.0.1',
    ]);
    const config = JSON.parse(
      await kubectl(['get', 'mutatingwebhookconfiguration', 'airlock-injector', '-o', 'json']),
    );
    for (const webhook of config.webhooks) assert.equal(webhook.clientConfig.caBundle, secret.data['ca.crt']);
    assert.equal((await servedCertificate(port)).serialNumber, serving.serialNumber);
  });

  test('a pod in an opted-in namespace is stored with airlock-init, the native sidecar and its capture', async () => {
    const reinvoked = await counted('skipped', 'AlreadyInjected');
    await create(pod('support-agent', 'agents', { spec: { serviceAccountName: 'support-agent' } }));
    const p = await stored('support-agent', 'agents');
    // The ServiceAccount plugin, rerun after the injection, leaves Airlock's containers alone,
    // so the injector is called once per pod, not twice.
    assert.equal(await counted('skipped', 'AlreadyInjected'), reinvoked);
    const init = p.spec!.initContainers!;
    assert.deepEqual(
      init.map((c) => c.name),
      ['airlock-init', 'airlock-sidecar'],
    );
    const [capture, sidecar] = init as [(typeof init)[0], (typeof init)[0]];
    assert.equal(sidecar.restartPolicy, 'Always');
    assert.deepEqual(sidecar.command, ['airlock', 'sidecar']);
    assert.ok(sidecar.args!.join(' ').includes('--listen orders-db=240.240.0.1:5432/postgres'));
    assert.deepEqual(capture.securityContext?.capabilities, { add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] });
    assert.equal(capture.securityContext?.runAsUser, 0);
    assert.equal(capture.securityContext?.runAsNonRoot, false);
    assert.equal(capture.securityContext?.allowPrivilegeEscalation, false);
    assert.deepEqual(sidecar.securityContext, {
      runAsUser: 1337,
      runAsGroup: 1337,
      runAsNonRoot: true,
      privileged: false,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
    assert.deepEqual(p.spec!.hostAliases, [
      {
        ip: '240.240.0.1',
        hostnames: ['orders-db.data.svc.cluster.local', 'orders-db.data.svc', 'orders-db.data'],
      },
    ]);
    const token = p.spec!.volumes!.find((v) => v.name === 'airlock-token')!;
    assert.deepEqual(token.projected?.sources?.[0]?.serviceAccountToken, {
      audience: 'airlock',
      expirationSeconds: 3600,
      path: 'token',
    });
    const mountsToken = [...init, ...p.spec!.containers]
      .filter((c) => c.volumeMounts?.some((m) => m.name === 'airlock-token'))
      .map((c) => c.name);
    assert.deepEqual(mountsToken, ['airlock-sidecar']);
    const kubeApiMounts = init.filter((c) =>
      c.volumeMounts?.some((m) => m.name.startsWith('kube-api-access')),
    );
    assert.deepEqual(kubeApiMounts, [], 'no Kubernetes API token in airlock-init or the sidecar');
    assert.ok(p.spec!.containers[0]!.volumeMounts!.some((m) => m.name.startsWith('kube-api-access')));
    assert.deepEqual(p.spec!.volumes!.find((v) => v.name === 'airlock-ca')?.configMap?.name, 'airlock-ca');
    assert.deepEqual(injectedRecord(p), {
      version: '0.1.0',
      connections: [{ name: 'orders-db', vip: '240.240.0.1', port: 5432 }],
    });
    assert.equal(p.metadata!.annotations!['prometheus.io/port'], '15020');
    const e = await event('agents', 'support-agent', 'Injected');
    assert.equal(e.type, 'Normal');
  });

  test('an IP-literal Connection has no alias, an external host only itself', async () => {
    await create(pod('integrations', 'agents', { spec: { serviceAccountName: 'integrations' } }));
    const p = await stored('integrations', 'agents');
    assert.deepEqual(p.spec!.hostAliases, [{ ip: '240.240.0.1', hostnames: ['api.crm.example.com'] }]);
    const args = p.spec!.initContainers![0]!.args!.join(' ');
    assert.match(args, /--redirect 10\.20\.30\.40:5432=240\.240\.0\.2:5432/);
  });

  test('no grant: injected all the same, so the pod fails closed, with a Warning', async () => {
    await create(pod('new-agent', 'agents', { spec: { serviceAccountName: 'new-agent' } }));
    const p = await stored('new-agent', 'agents');
    assert.equal(p.spec!.initContainers![1]!.name, 'airlock-sidecar');
    assert.ok(!p.spec!.initContainers![1]!.args!.includes('--listen'));
    assert.equal(p.spec!.hostAliases, undefined);
    assert.equal((await event('agents', 'new-agent', 'NoGrants')).type, 'Warning');
  });

  test('a pod carrying an earlier injection is stored unchanged', async () => {
    const original = await stored('support-agent', 'agents');
    const copy = structuredClone(original);
    copy.metadata = {
      name: 'support-agent-copy',
      namespace: 'agents',
      annotations: original.metadata!.annotations!,
    };
    delete copy.status;
    delete copy.spec!.nodeName;
    const before = await counted('skipped', 'AlreadyInjected');
    await create(JSON.stringify(copy));
    const p = await stored('support-agent-copy', 'agents');
    assert.deepEqual(p.spec!.initContainers, original.spec!.initContainers);
    assert.deepEqual(p.spec!.hostAliases, original.spec!.hostAliases);
    assert.equal(
      p.metadata!.annotations![injectedAnnotation],
      original.metadata!.annotations![injectedAnnotation],
    );
    assert.equal(await counted('skipped', 'AlreadyInjected'), before + 1);
  });

  test('reinvoked after a later webhook changes the pod: nothing injected twice', async () => {
    const ca = await createCertificateAuthority('relabel-test');
    const pair = await ca.issue({ commonName: 'relabel', ipAddresses: ['127.0.0.1'], usage: 'server' });
    let calls = 0;
    const relabel = createServer({ cert: pair.certificate, key: pair.privateKey }, (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        calls++;
        const review = JSON.parse(Buffer.concat(chunks).toString());
        const labels = review.request.object.metadata.labels;
        const patch = labels?.relabeled
          ? []
          : [
              {
                op: 'add',
                path: labels ? '/metadata/labels/relabeled' : '/metadata/labels',
                value: labels ? 'yes' : { relabeled: 'yes' },
              },
            ];
        res.setHeader('content-type', 'application/json');
        res.end(
          JSON.stringify({
            apiVersion: 'admission.k8s.io/v1',
            kind: 'AdmissionReview',
            response: {
              uid: review.request.uid,
              allowed: true,
              ...(patch.length > 0 && {
                patchType: 'JSONPatch',
                patch: Buffer.from(JSON.stringify(patch)).toString('base64'),
              }),
            },
          }),
        );
      });
    });
    const relabelPort = await freePort();
    await new Promise<void>((resolve) => relabel.listen(relabelPort, '127.0.0.1', resolve));
    try {
      // Webhooks run in name order: airlock-injector, then zz-relabel, which changes the pod.
      await create(
        JSON.stringify({
          apiVersion: 'admissionregistration.k8s.io/v1',
          kind: 'MutatingWebhookConfiguration',
          metadata: { name: 'zz-relabel' },
          webhooks: [
            {
              name: 'relabel.test.airlock.dev',
              clientConfig: {
                url: `https://127.0.0.1:${relabelPort}/`,
                caBundle: Buffer.from(ca.certificate).toString('base64'),
              },
              rules: [{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'] }],
              namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'agents' } },
              sideEffects: 'None',
              admissionReviewVersions: ['v1'],
              reinvocationPolicy: 'Never',
            },
          ],
        }),
      );
      await sleep(2000); // the API server's webhook informer
      const before = await counted('skipped', 'AlreadyInjected');
      await create(pod('relabeled', 'agents', { spec: { serviceAccountName: 'support-agent' } }));
      const p = await stored('relabeled', 'agents');
      assert.equal(p.metadata!.labels!.relabeled, 'yes');
      assert.ok(calls >= 1);
      assert.deepEqual(
        p.spec!.initContainers!.map((c) => c.name),
        ['airlock-init', 'airlock-sidecar'],
      );
      assert.equal(
        await counted('skipped', 'AlreadyInjected'),
        before + 1,
        'the injector was reinvoked once',
      );
    } finally {
      await kubectl(['delete', 'mutatingwebhookconfiguration', 'zz-relabel']);
      relabel.close();
      relabel.closeAllConnections();
    }
  });

  test('uid 1337 and NET_ADMIN are refused with the reason, and an Event', async () => {
    await assert.rejects(
      create(pod('impostor', 'agents', { spec: { securityContext: { runAsUser: 1337 } } })),
      /denied the request: airlock: UidConflict: container "agent" runs as uid 1337/,
    );
    assert.equal((await event('agents', 'impostor', 'UidConflict')).type, 'Warning');
    await assert.rejects(
      create(
        pod('tinkerer', 'agents', {
          spec: {
            containers: [
              { name: 'agent', image: 'agent', securityContext: { capabilities: { add: ['NET_ADMIN'] } } },
            ],
          },
        }),
      ),
      /denied the request: airlock: NetAdminRequested: container "agent" requests NET_ADMIN/,
    );
    await event('agents', 'tinkerer', 'NetAdminRequested');
    await assert.rejects(stored('impostor', 'agents'), /NotFound|not found/);
  });

  test('opted-out and hostNetwork pods are stored unchanged, with an Event', async () => {
    await create(pod('debug-shell', 'agents', { metadata: { labels: { 'airlock.dev/inject': 'false' } } }));
    assert.equal((await stored('debug-shell', 'agents')).spec!.initContainers, undefined);
    await event('agents', 'debug-shell', 'OptedOut');
    await create(pod('node-agent', 'agents', { spec: { hostNetwork: true } }));
    const p = await stored('node-agent', 'agents');
    assert.equal(p.spec!.initContainers, undefined);
    assert.equal(p.metadata!.annotations?.[injectedAnnotation], undefined);
    await event('agents', 'node-agent', 'HostNetwork');
  });

  test('elsewhere, only a pod labeled airlock.dev/inject=true reaches the injector', async () => {
    const seen = (registry.get('airlock_injection_duration_seconds') as Histogram<string>).series().length;
    await create(
      pod('etl', 'plain', {
        metadata: { labels: { 'airlock.dev/inject': 'true' } },
        spec: { serviceAccountName: 'etl' },
      }),
    );
    assert.equal((await stored('etl', 'plain')).spec!.initContainers![1]!.name, 'airlock-sidecar');
    await create(pod('web', 'plain'));
    assert.equal((await stored('web', 'plain')).spec!.initContainers, undefined);
    await create(pod('operator-pod', operatorNamespace));
    assert.equal((await stored('operator-pod', operatorNamespace)).spec!.initContainers, undefined);
    assert.ok(seen > 0);
    const events = JSON.parse(await kubectl(['get', 'events', '-n', 'plain', '-o', 'json'])).items as {
      involvedObject: { name: string };
    }[];
    assert.ok(!events.some((e) => e.involvedObject.name === 'web'));
  });

  test('two replicas racing to create the Secret agree on one certificate', async () => {
    const options = {
      namespace: operatorNamespace,
      secretName: 'race-tls',
      serviceName: 'airlock-operator',
      ipAddresses: ['127.0.0.1'],
    };
    const [a, b] = [
      createCertificateManager(kubeConfig, options),
      createCertificateManager(kubeConfig, options),
    ];
    await Promise.all([a.reconcile(), b.reconcile()]);
    assert.ok(a.current() && b.current());
    assert.equal(a.current()!.certificate, b.current()!.certificate);
    assert.equal(a.caBundle(), b.caBundle());
    const secret = JSON.parse(
      await kubectl(['get', 'secret', 'race-tls', '-n', operatorNamespace, '-o', 'json']),
    );
    assert.equal(Buffer.from(secret.data['tls.crt'], 'base64').toString(), a.current()!.certificate);
    // A follower reads and never writes.
    const follower = createCertificateManager(kubeConfig, {
      ...options,
      dnsNames: ['changed.example'],
      isLeader: () => false,
    });
    await follower.reconcile();
    const after = JSON.parse(
      await kubectl(['get', 'secret', 'race-tls', '-n', operatorNamespace, '-o', 'json']),
    );
    assert.equal(after.metadata.resourceVersion, secret.metadata.resourceVersion);
    assert.equal(follower.current()!.certificate, a.current()!.certificate);
  });

  test('a replica that starts before it is elected serves once it leads, not a renewal interval later', async () => {
    let leading = false;
    const late = createCertificateManager(kubeConfig, {
      namespace: operatorNamespace,
      secretName: 'late-leader-tls',
      serviceName: 'airlock-operator',
      ipAddresses: ['127.0.0.1'],
      isLeader: () => leading,
    });
    try {
      const started = late.start();
      await sleep(1000);
      assert.equal(late.current(), undefined, 'a follower finds no Secret and serves nothing yet');
      leading = true;
      const elected = Date.now();
      await started;
      // The renewal interval is 30 s; an operator used to wait for it before it could serve.
      assert.ok(Date.now() - elected < 10_000, `served ${Date.now() - elected} ms after it was elected`);
    } finally {
      late.stop();
    }
  });

  test('cert-manager mode serves the Secret cert-manager keeps and writes nothing', async () => {
    const ca = await createCertificateAuthority('cert-manager-test');
    const pair = await ca.issue({ commonName: 'x', ipAddresses: ['127.0.0.1'], usage: 'server' });
    const b64 = (s: string) => Buffer.from(s).toString('base64');
    await create(
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Secret',
        type: 'kubernetes.io/tls',
        metadata: { name: 'cm-tls', namespace: operatorNamespace },
        data: {
          'tls.crt': b64(pair.certificate),
          'tls.key': b64(pair.privateKey),
          'ca.crt': b64(ca.certificate),
        },
      }),
    );
    const reader = createCertificateManager(kubeConfig, {
      namespace: operatorNamespace,
      secretName: 'cm-tls',
      mode: 'cert-manager',
      mutatingWebhookConfigurations: ['airlock-injector'],
    });
    const configBefore = await kubectl([
      'get',
      'mutatingwebhookconfiguration',
      'airlock-injector',
      '-o',
      'json',
    ]);
    await reader.reconcile();
    assert.equal(reader.current()!.certificate, pair.certificate);
    assert.equal(reader.caBundle()?.trim(), ca.certificate.trim());
    const configAfter = await kubectl([
      'get',
      'mutatingwebhookconfiguration',
      'airlock-injector',
      '-o',
      'json',
    ]);
    assert.equal(
      JSON.parse(configAfter).metadata.resourceVersion,
      JSON.parse(configBefore).metadata.resourceVersion,
    );
  });

  test('short-lived certificates and CA rotate while the API server keeps calling the webhook', async () => {
    manager.stop();
    await kubectl(['delete', 'secret', secretName, '-n', operatorNamespace]);
    const rotating = createCertificateManager(kubeConfig, {
      namespace: operatorNamespace,
      secretName,
      serviceName: 'airlock-operator',
      ipAddresses: ['127.0.0.1'],
      mutatingWebhookConfigurations: ['airlock-injector'],
      // The CA is replaced once, 25 s in, and not again before 50 s: the test reads the bundle
      // between the two, however slowly its pods are created.
      caValidity: 60_000,
      caRenewBefore: 35_000,
      servingValidity: 15_000,
      servingRenewBefore: 9_000,
      caPropagationDelay: 3_000,
      interval: 500,
    });
    try {
      const serials: string[] = [];
      rotating.onChange((pair) => serials.push(new X509Certificate(pair.certificate).serialNumber));
      await rotating.start();
      certificates.follow(rotating);
      const firstCa = splitPem(rotating.caBundle()!)[0]!;
      await sleep(3000); // the API server's webhook informer picks up the new bundle
      const deadline = Date.now() + 32_000;
      let created = 0;
      const admittedUnder = new Set<string>();
      while (Date.now() < deadline) {
        const name = `rotation-${created++}`;
        await create(pod(name, 'agents', { spec: { serviceAccountName: 'support-agent' } }));
        assert.equal((await stored(name, 'agents')).spec!.initContainers![1]!.name, 'airlock-sidecar');
        admittedUnder.add(serials.at(-1)!);
        await sleep(1500);
      }
      assert.ok(serials.length >= 3, `expected at least two rotations, saw ${serials.length} certificates`);
      const bundle = splitPem(rotating.caBundle()!);
      assert.equal(bundle.length, 2, 'the new CA and the old one during the overlap');
      assert.equal(bundle[1], firstCa);
      const served = await servedCertificate(port);
      assert.ok(
        served.checkIssued(new X509Certificate(bundle[0]!)),
        'the serving certificate comes from the new CA',
      );
      const config = JSON.parse(
        await kubectl(['get', 'mutatingwebhookconfiguration', 'airlock-injector', '-o', 'json']),
      );
      assert.equal(
        Buffer.from(config.webhooks[0].clientConfig.caBundle, 'base64').toString(),
        bundle.join(''),
      );
      assert.ok(
        admittedUnder.size >= 3,
        `pods were injected under ${admittedUnder.size} serving certificates; expected them across at least two rotations`,
      );
    } finally {
      rotating.stop();
    }
  });
});
