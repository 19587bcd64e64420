// The Helm chart against a real API server: it lints, installs its CRDs, RBAC, Deployment,
// Service and webhook configuration, and uninstalls the webhook with it.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import YAML from 'yaml';
import { type ControlPlane, startControlPlane } from '../support/controlplane.ts';
import { requires, tool } from '../support/tools.ts';

const run = promisify(execFile);
const chart = new URL('../../charts/airlock', import.meta.url).pathname;

describe('Helm chart on a real API server', requires('etcd', 'kube-apiserver', 'kubectl', 'helm'), () => {
  let cluster: ControlPlane;
  const helm = (args: string[]) =>
    run(tool('helm'), [`--kubeconfig=${cluster.kubeconfig.admin}`, ...args], {
      env: {
        ...process.env,
        HELM_CACHE_HOME: join(cluster.directory, 'helm'),
        HELM_CONFIG_HOME: join(cluster.directory, 'helm'),
      },
    }).then((r) => r.stdout);

  before(async () => {
    cluster = await startControlPlane();
  });
  after(async () => cluster?.stop());

  test('without webhook Secrets the operator gets no --notify or --export flags', async () => {
    const rendered = await helm(['template', 'airlock', chart, '--namespace', 'airlock-system']);
    assert.match(rendered, /- --store=\/var\/lib\/airlock\/audit/);
    assert.doesNotMatch(rendered, /--notify-|AIRLOCK_NOTIFY_WEBHOOK|--export-|AIRLOCK_EXPORT_WEBHOOK/);
    assert.doesNotMatch(rendered, /inject-ca-from/, 'the operator writes caBundle itself');
  });

  test('in cert-manager mode every webhook configuration and the APIService ask cainjector for the CA', async () => {
    const rendered = await helm([
      'template',
      'airlock',
      chart,
      '--namespace',
      'airlock-system',
      '--set',
      'certificates.mode=cert-manager',
    ]);
    const objects = YAML.parseAllDocuments(rendered).map((d) => d.toJS());
    const served = objects.filter((o) =>
      ['MutatingWebhookConfiguration', 'ValidatingWebhookConfiguration', 'APIService'].includes(o?.kind),
    );
    assert.deepEqual(served.map((o) => `${o.kind}/${o.metadata.name}`).sort(), [
      'APIService/v1alpha1.audit.airlock.dev',
      'MutatingWebhookConfiguration/airlock-approvals',
      'MutatingWebhookConfiguration/airlock-injector',
      'ValidatingWebhookConfiguration/airlock-approvals',
    ]);
    for (const object of served)
      assert.equal(
        object.metadata.annotations?.['cert-manager.io/inject-ca-from'],
        'airlock-system/airlock-operator',
      );
    assert.match(rendered, /- --certificates=cert-manager/);
  });

  test('helm lint passes', async () => {
    assert.match(await helm(['lint', chart]), /1 chart\(s\) linted, 0 chart\(s\) failed/);
  });

  test('helm install creates the operator and its webhook; uninstall removes the webhook', async () => {
    await helm([
      'install',
      'airlock',
      chart,
      '--namespace',
      'airlock-system',
      '--create-namespace',
      '--wait=false',
      '--set',
      'notifications.webhookSecrets={airlock-slack}',
      '--set',
      'notifications.format=slack',
      '--set',
      'audit.export.webhookSecrets={airlock-siem,airlock-siem-2}',
      '--set',
      'audit.export.log=true',
    ]);
    const crds = await cluster.kubectl(['get', 'crd', '-o', 'name']);
    for (const name of ['connections', 'accesspolicies', 'accessrequests'])
      assert.match(crds, new RegExp(`${name}\\.airlock\\.dev`));
    const deployment = JSON.parse(
      await cluster.kubectl(['get', 'deployment', 'airlock-operator', '-n', 'airlock-system', '-o', 'json']),
    );
    const container = deployment.spec.template.spec.containers[0];
    assert.equal(container.image, 'ghcr.io/airlock-dev/airlock:0.1.0');
    assert.deepEqual(container.args.slice(0, 2), ['operator', '--namespace=$(POD_NAMESPACE)']);
    assert.equal(container.securityContext.readOnlyRootFilesystem, true);
    // A notification webhook URL is a credential: it comes from its Secret, never from values.
    assert.deepEqual(
      container.args.filter((a: string) => a.startsWith('--notify-')),
      ['--notify-webhook=$(AIRLOCK_NOTIFY_WEBHOOK_0)', '--notify-format=slack'],
    );
    assert.deepEqual(
      container.env.find((e: { name: string }) => e.name === 'AIRLOCK_NOTIFY_WEBHOOK_0'),
      {
        name: 'AIRLOCK_NOTIFY_WEBHOOK_0',
        valueFrom: { secretKeyRef: { name: 'airlock-slack', key: 'url' } },
      },
    );
    // So is an export webhook URL.
    assert.deepEqual(
      container.args.filter((a: string) => a.startsWith('--export-')),
      [
        '--export-webhook=$(AIRLOCK_EXPORT_WEBHOOK_0)',
        '--export-webhook=$(AIRLOCK_EXPORT_WEBHOOK_1)',
        '--export-format=generic',
        '--export-log',
      ],
    );
    assert.deepEqual(
      container.env.find((e: { name: string }) => e.name === 'AIRLOCK_EXPORT_WEBHOOK_1'),
      {
        name: 'AIRLOCK_EXPORT_WEBHOOK_1',
        valueFrom: { secretKeyRef: { name: 'airlock-siem-2', key: 'url' } },
      },
    );
    const webhook = JSON.parse(
      await cluster.kubectl(['get', 'mutatingwebhookconfiguration', 'airlock-injector', '-o', 'json']),
    );
    assert.equal(webhook.webhooks[0].clientConfig.service.namespace, 'airlock-system');
    assert.equal(webhook.webhooks[0].failurePolicy, 'Fail');
    assert.ok(
      webhook.webhooks[0].namespaceSelector.matchExpressions.some(
        (e: { key: string; values: string[] }) =>
          e.key === 'kubernetes.io/metadata.name' && e.values.includes('airlock-system'),
      ),
    );
    const can = await cluster.kubectl([
      'auth',
      'can-i',
      'create',
      'tokenreviews.authentication.k8s.io',
      '--as=system:serviceaccount:airlock-system:airlock-operator',
    ]);
    assert.equal(can.trim(), 'yes');
    // The sessions API: registered with the API server, routed to the operator's control API
    // port; the operator may authorize reads and read the front proxy's settings.
    const apiService = JSON.parse(
      await cluster.kubectl(['get', 'apiservice', 'v1alpha1.audit.airlock.dev', '-o', 'json']),
    );
    assert.deepEqual(apiService.spec.service, {
      name: 'airlock-operator',
      namespace: 'airlock-system',
      port: 9443,
    });
    const operator = '--as=system:serviceaccount:airlock-system:airlock-operator';
    for (const [verb, resource, ...rest] of [
      ['create', 'subjectaccessreviews.authorization.k8s.io'],
      ['patch', 'apiservices.apiregistration.k8s.io/v1alpha1.audit.airlock.dev'],
      ['get', 'configmap/extension-apiserver-authentication', '-n', 'kube-system'],
    ])
      assert.equal(
        (await cluster.kubectl(['auth', 'can-i', verb!, resource!, ...rest, operator])).trim(),
        'yes',
      );
    await helm(['uninstall', 'airlock', '--namespace', 'airlock-system']);
    await assert.rejects(
      cluster.kubectl(['get', 'mutatingwebhookconfiguration', 'airlock-injector']),
      /NotFound/,
    );
    await assert.rejects(cluster.kubectl(['get', 'apiservice', 'v1alpha1.audit.airlock.dev']), /NotFound/);
  });
});
