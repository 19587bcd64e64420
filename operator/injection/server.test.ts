import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { Agent, request } from 'node:https';
import { after, before, describe, test } from 'node:test';
import { connect } from 'node:tls';
import type { V1Pod } from '@kubernetes/client-node';
import { Registry } from '../../metrics/registry.ts';
import { createCertificateAuthority, type KeyPairPem } from '../pki.ts';
import { webhookConfiguration } from './configuration.ts';
import type { InjectionEvent } from './events.ts';
import { injectedAnnotation, injectionOptions } from './inject.ts';
import { applyPatch, type Operation } from './patch.ts';
import { type InjectionServer, type ServingCertificateSource, startInjectionServer } from './server.ts';

function source(initial: KeyPairPem) {
  let current = initial;
  const listeners = new Set<(pair: KeyPairPem) => void>();
  return {
    current: () => current,
    onChange(listener: (pair: KeyPairPem) => void) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    set(pair: KeyPairPem) {
      current = pair;
      for (const l of listeners) l(pair);
    },
  } satisfies ServingCertificateSource & { set(pair: KeyPairPem): void };
}

function post(url: string, ca: string, body: unknown): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${url}/inject`,
      { method: 'POST', ca, headers: { 'content-type': 'application/json' } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

function peerSerial(port: number, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, ca, servername: 'localhost' }, () => {
      resolve(socket.getPeerX509Certificate()!.serialNumber);
      socket.end();
    });
    socket.on('error', reject);
  });
}

const review = (uid: string, pod: V1Pod, extra: object = {}) => ({
  apiVersion: 'admission.k8s.io/v1',
  kind: 'AdmissionReview',
  request: {
    uid,
    kind: { group: '', version: 'v1', kind: 'Pod' },
    operation: 'CREATE',
    namespace: 'agents',
    object: pod,
    ...extra,
  },
});

describe('injection webhook server', () => {
  let ca: Awaited<ReturnType<typeof createCertificateAuthority>>;
  let certificates: ReturnType<typeof source>;
  let server: InjectionServer;
  const registry = new Registry();
  const events: InjectionEvent[] = [];
  const asked: string[] = [];

  before(async () => {
    ca = await createCertificateAuthority('test');
    certificates = source(
      await ca.issue({
        commonName: 'injector',
        dnsNames: ['localhost'],
        ipAddresses: ['127.0.0.1'],
        usage: 'server',
      }),
    );
    server = await startInjectionServer({
      host: '127.0.0.1',
      port: 0,
      injection: injectionOptions({
        image: 'airlock:test',
        version: '0.1.0',
        controlApiUrl: 'https://control:8443',
      }),
      certificates,
      grantsFor: (namespace, serviceAccount) => {
        asked.push(`${namespace}/${serviceAccount}`);
        if (serviceAccount === 'broken') throw new Error('caches not synced');
        return [
          { name: 'orders-db', host: 'orders-db.data.svc.cluster.local', port: 5432, protocol: 'postgres' },
        ];
      },
      recordEvent: (event) => events.push(event),
      registry,
    });
  });
  after(async () => server?.close());

  test('injects: a JSON Patch that applies to the pod it received', async () => {
    const pod: V1Pod = {
      metadata: { generateName: 'agent-', namespace: 'agents' },
      spec: { serviceAccountName: 'support-agent', containers: [{ name: 'agent', image: 'agent' }] },
    };
    const { status, body } = await post(server.url, ca.certificate, review('u1', pod));
    assert.equal(status, 200);
    const reply = JSON.parse(body);
    assert.equal(reply.apiVersion, 'admission.k8s.io/v1');
    assert.equal(reply.response.uid, 'u1');
    assert.equal(reply.response.allowed, true);
    assert.equal(reply.response.patchType, 'JSONPatch');
    const patch = JSON.parse(Buffer.from(reply.response.patch, 'base64').toString()) as Operation[];
    const injected = applyPatch(pod, patch) as V1Pod;
    assert.deepEqual(
      injected.spec?.initContainers?.map((c) => c.name),
      ['airlock-init', 'airlock-sidecar'],
    );
    assert.ok(injected.metadata?.annotations?.[injectedAnnotation]);
    assert.deepEqual(asked, ['agents/support-agent']);
    assert.deepEqual(events.at(-1), {
      namespace: 'agents',
      pod: { generateName: 'agent-' },
      report: events.at(-1)!.report,
    });
    assert.equal(events.at(-1)!.report.reason, 'Injected');
  });

  test('refuses with the reason in the message; skips without asking for grants', async () => {
    const refused = JSON.parse(
      (
        await post(
          server.url,
          ca.certificate,
          review('u2', {
            metadata: { name: 'x' },
            spec: { securityContext: { runAsUser: 1337 }, containers: [{ name: 'agent' }] },
          }),
        )
      ).body,
    );
    assert.equal(refused.response.allowed, false);
    assert.equal(refused.response.status.code, 403);
    assert.match(
      refused.response.status.message,
      /^airlock: UidConflict: container "agent" runs as uid 1337/,
    );
    asked.length = 0;
    const skipped = JSON.parse(
      (
        await post(
          server.url,
          ca.certificate,
          review('u3', { metadata: { name: 'y' }, spec: { hostNetwork: true, containers: [] } }),
        )
      ).body,
    );
    assert.deepEqual(skipped.response, {
      uid: 'u3',
      allowed: true,
      auditAnnotations: { 'airlock.dev/injection': 'skipped/HostNetwork' },
    });
    assert.deepEqual(asked, []);
    assert.equal(events.at(-1)!.report.reason, 'HostNetwork');
  });

  test('fails closed when the grants cannot be computed', async () => {
    const reply = JSON.parse(
      (
        await post(
          server.url,
          ca.certificate,
          review('u4', { metadata: { name: 'z' }, spec: { serviceAccountName: 'broken', containers: [] } }),
        )
      ).body,
    );
    assert.equal(reply.response.allowed, false);
    assert.match(reply.response.status.message, /GrantsUnavailable: .*caches not synced/);
  });

  test('dry runs are decided but leave no Event; other kinds pass untouched', async () => {
    const before = events.length;
    const reply = JSON.parse(
      (
        await post(
          server.url,
          ca.certificate,
          review('u5', { metadata: { name: 'd' }, spec: { containers: [] } }, { dryRun: true }),
        )
      ).body,
    );
    assert.equal(reply.response.patchType, 'JSONPatch');
    assert.equal(events.length, before);
    const other = JSON.parse(
      (
        await post(
          server.url,
          ca.certificate,
          review('u6', { metadata: { name: 'd' } }, { operation: 'UPDATE' }),
        )
      ).body,
    );
    assert.deepEqual(other.response, { uid: 'u6', allowed: true });
    assert.equal((await post(server.url, ca.certificate, { kind: 'Nope' })).status, 400);
  });

  test('counts decisions by result and reason, and times them', async () => {
    const text = registry.metrics();
    assert.match(text, /airlock_injections_total\{result="injected",reason="Injected"\} 2/);
    assert.match(text, /airlock_injections_total\{result="refused",reason="UidConflict"\} 1/);
    assert.match(text, /airlock_injections_total\{result="error",reason="GrantsUnavailable"\} 1/);
    assert.match(text, /airlock_injection_duration_seconds_count\{result="skipped"\} 1/);
  });

  test('an idle keep-alive connection outlives the API server’s idle timeout (no broken pipe)', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1, ca: ca.certificate });
    const get = () =>
      new Promise<import('node:net').Socket>((resolve, reject) => {
        const req = request(`${server.url}/healthz`, { agent }, (res) => {
          res.resume();
          res.on('end', () => resolve(req.socket as import('node:net').Socket));
        });
        req.on('error', reject);
        req.end();
      });
    const first = await get();
    let closed = false;
    first.once('close', () => {
      closed = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 6000)); // Node's default keepAliveTimeout is 5 s
    assert.equal(closed, false);
    assert.equal(await get(), first);
    agent.destroy();
  });

  test('a new serving certificate is served without a restart', async () => {
    const first = await peerSerial(server.port, ca.certificate);
    assert.equal(first, new X509Certificate(certificates.current().certificate).serialNumber);
    const next = await ca.issue({
      commonName: 'injector',
      dnsNames: ['localhost'],
      ipAddresses: ['127.0.0.1'],
      usage: 'server',
    });
    certificates.set(next);
    const second = await peerSerial(server.port, ca.certificate);
    assert.equal(second, new X509Certificate(next.certificate).serialNumber);
    assert.notEqual(first, second);
  });
});

describe('webhookConfiguration', () => {
  test('two entries: labeled namespaces, and labeled pods elsewhere, never the excluded namespaces', () => {
    const config = webhookConfiguration({
      operatorNamespace: 'airlock-system',
      service: { name: 'airlock-operator' },
      caBundle: 'PEM',
    });
    assert.equal(config.metadata?.name, 'airlock-injector');
    const [namespaced, labeled] = config.webhooks!;
    for (const webhook of config.webhooks!) {
      assert.equal(webhook.failurePolicy, 'Fail');
      assert.equal(webhook.sideEffects, 'None');
      assert.equal(webhook.reinvocationPolicy, 'IfNeeded');
      assert.deepEqual(webhook.admissionReviewVersions, ['v1']);
      assert.equal(webhook.timeoutSeconds, 10);
      assert.deepEqual(webhook.clientConfig.service, {
        name: 'airlock-operator',
        namespace: 'airlock-system',
        path: '/inject',
        port: 443,
      });
      assert.equal(webhook.clientConfig.caBundle, Buffer.from('PEM').toString('base64'));
      assert.deepEqual(webhook.namespaceSelector?.matchExpressions?.[1], {
        key: 'kubernetes.io/metadata.name',
        operator: 'NotIn',
        values: ['airlock-system', 'kube-system'],
      });
    }
    assert.deepEqual(namespaced!.namespaceSelector?.matchExpressions?.[0], {
      key: 'airlock.dev/injection',
      operator: 'In',
      values: ['enabled'],
    });
    assert.equal(namespaced!.objectSelector, undefined);
    assert.deepEqual(labeled!.objectSelector, {
      matchExpressions: [{ key: 'airlock.dev/inject', operator: 'In', values: ['true'] }],
    });
  });

  test('cert-manager mode annotates instead of embedding a bundle; url mode for tests', () => {
    const config = webhookConfiguration({
      operatorNamespace: 'airlock-system',
      url: 'https://127.0.0.1:9443/inject',
      certManagerCertificate: 'airlock-system/airlock-webhook',
    });
    assert.equal(
      config.metadata?.annotations?.['cert-manager.io/inject-ca-from'],
      'airlock-system/airlock-webhook',
    );
    assert.deepEqual(config.webhooks![0]!.clientConfig, { url: 'https://127.0.0.1:9443/inject' });
    assert.throws(() => webhookConfiguration({ operatorNamespace: 'x' }), /exactly one of service and url/);
  });
});
