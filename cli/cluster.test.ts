import assert from 'node:assert/strict';
import { test } from 'node:test';
import { usesCluster } from './cluster.ts';

test('approve/deny/approvals talk to the cluster as the kubectl plugin, with cluster flags, or with KUBECONFIG', () => {
  const none = () => false;
  const running = () => true;
  assert.equal(usesCluster({}, {}, '/usr/local/bin/kubectl-airlock', none), true);
  assert.equal(usesCluster({ namespace: 'agents' }, {}, 'bin/airlock.js', none), true);
  assert.equal(usesCluster({ kubeconfig: 'k' }, {}, 'bin/airlock.js', none), true);
  assert.equal(usesCluster({}, {}, 'bin/airlock.js', none), false);
  assert.equal(usesCluster({}, { KUBECONFIG: '/k' }, 'bin/airlock.js', none), true);
  assert.equal(usesCluster({ store: '/s' }, { KUBECONFIG: '/k' }, 'bin/airlock.js', none), false);
  assert.equal(usesCluster({}, { KUBECONFIG: '/k' }, 'bin/airlock.js', running), false);
});
