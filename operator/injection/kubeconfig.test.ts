import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { V1Pod } from '@kubernetes/client-node';
import type { Grant } from './hosts.ts';
import { injectionOptions, injectPod } from './inject.ts';
import { kubeconfigAnnotation, kubeconfigPath, kubeconfigVolume } from './kubeconfig.ts';

const options = injectionOptions({
  image: 'ghcr.io/airlock-dev/airlock:0.1.0',
  version: '0.1.0',
  controlApiUrl: 'https://airlock-operator.airlock-system.svc:8443',
});
const cluster: Grant = { name: 'cluster', host: 'kubernetes.default.svc', port: 443, protocol: 'kubernetes' };
const staging: Grant = { name: 'staging', host: '10.0.0.9', port: 6443, protocol: 'kubernetes' };
const db: Grant = { name: 'orders-db', host: 'db.shop.svc.cluster.local', port: 5432, protocol: 'postgres' };

const agent = (env?: { name: string; value: string }[]): V1Pod => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: 'agent', namespace: 'shop', labels: { 'airlock.dev/inject': 'true' } },
  spec: {
    containers: [
      { name: 'agent', image: 'agent:1', ...(env && { env }) },
      { name: 'helper', image: 'helper:1' },
    ],
  },
});

describe('the kubeconfig of an injected pod', () => {
  it('names the sidecar at each kubernetes Connection’s virtual address, with no credential', () => {
    const { pod } = injectPod(agent(), options, [db, cluster, staging], { namespace: 'shop' });
    const config = JSON.parse(pod.metadata!.annotations![kubeconfigAnnotation]!);
    const record = JSON.parse(pod.metadata!.annotations!['airlock.dev/injected']!);
    const vip = (name: string) => record.connections.find((c: { name: string }) => c.name === name);
    assert.deepEqual(config.clusters, [
      { name: 'airlock-cluster', cluster: { server: `http://${vip('cluster').vip}:443` } },
      { name: 'airlock-staging', cluster: { server: `http://${vip('staging').vip}:6443` } },
    ]);
    assert.deepEqual(config.users, [
      { name: 'airlock-cluster', user: {} },
      { name: 'airlock-staging', user: {} },
    ]);
    assert.equal(config['current-context'], 'airlock-cluster');
    assert.equal(config.contexts[0].context.namespace, 'shop');
    const volume = pod.spec!.volumes!.find((v) => v.name === kubeconfigVolume);
    assert.equal(
      volume?.downwardAPI?.items?.[0]?.fieldRef?.fieldPath,
      `metadata.annotations['${kubeconfigAnnotation}']`,
    );
    for (const container of pod.spec!.containers) {
      assert.deepEqual(container.env, [{ name: 'KUBECONFIG', value: kubeconfigPath }]);
      assert.ok(container.volumeMounts?.some((m) => m.name === kubeconfigVolume && m.readOnly));
    }
  });

  it('leaves a container’s own KUBECONFIG, and pods with no kubernetes Connection, alone', () => {
    const own = [{ name: 'KUBECONFIG', value: '/home/agent/.kube/config' }];
    const { pod } = injectPod(agent(own), options, [cluster], { namespace: 'shop' });
    assert.deepEqual(pod.spec!.containers[0]!.env, own);
    assert.deepEqual(pod.spec!.containers[1]!.env, [{ name: 'KUBECONFIG', value: kubeconfigPath }]);
    const plain = injectPod(agent(), options, [db], { namespace: 'shop' }).pod;
    assert.equal(plain.metadata!.annotations![kubeconfigAnnotation], undefined);
    assert.ok(!plain.spec!.volumes!.some((v) => v.name === kubeconfigVolume));
    assert.ok(plain.spec!.containers.every((c) => c.env === undefined && c.volumeMounts === undefined));
  });

  it('gives the same pod when a copied spec is injected again, and drops what a revoked grant left', () => {
    const once = injectPod(agent(), options, [cluster], { namespace: 'shop' }).pod;
    // A copy without the injected record is injected again.
    const copy = structuredClone(once);
    delete copy.metadata!.annotations!['airlock.dev/injected'];
    const twice = injectPod(copy, options, [cluster], { namespace: 'shop' }).pod;
    assert.deepEqual(twice.spec, once.spec);
    const revoked = injectPod(copy, options, [db], { namespace: 'shop' }).pod;
    assert.equal(revoked.metadata!.annotations![kubeconfigAnnotation], undefined);
    assert.ok(revoked.spec!.containers.every((c) => c.env === undefined && c.volumeMounts === undefined));
  });
});
