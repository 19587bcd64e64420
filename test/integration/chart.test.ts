// The Helm chart against a real API server: it lints, installs its CRDs, RBAC, Deployment,
// Service and webhook configuration, and uninstalls the webhook with it.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
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

  test('without notification Secrets the operator gets no --notify flags', async () => {
    const rendered = await helm(['template', 'airlock', chart, '--namespace', 'airlock-system']);
    assert.match(rendered, /- --store=\/var\/lib\/airlock\/audit/);
    assert.doesNotMatch(rendered, /--notify-|AIRLOCK_NOTIFY_WEBHOOK/);
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
    await helm(['uninstall', 'airlock', '--namespace', 'airlock-system']);
    await assert.rejects(
      cluster.kubectl(['get', 'mutatingwebhookconfiguration', 'airlock-injector']),
      /NotFound/,
    );
  });
});
