import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { hostnamesFor, planCapture, virtualIp } from './hosts.ts';

describe('capture plan', () => {
  test('a Service name has every short form the search path allows', () => {
    assert.deepEqual(hostnamesFor('orders-db.data.svc.cluster.local', 'agents', 'cluster.local'), [
      'orders-db.data.svc.cluster.local',
      'orders-db.data.svc',
      'orders-db.data',
    ]);
    assert.deepEqual(hostnamesFor('orders-db.data.svc.cluster.local', 'data', 'cluster.local'), [
      'orders-db.data.svc.cluster.local',
      'orders-db.data.svc',
      'orders-db.data',
      'orders-db',
    ]);
    assert.deepEqual(hostnamesFor('db-0.orders.data.svc.example.org', 'data', 'example.org'), [
      'db-0.orders.data.svc.example.org',
      'db-0.orders.data.svc',
      'db-0.orders.data',
      'db-0.orders',
    ]);
  });

  test('external names are only themselves; IP literals have no alias', () => {
    assert.deepEqual(hostnamesFor('api.stripe.com', 'agents', 'cluster.local'), ['api.stripe.com']);
    assert.deepEqual(hostnamesFor('Billing.Example.COM', 'agents', 'cluster.local'), ['billing.example.com']);
    assert.deepEqual(hostnamesFor('10.0.0.7', 'agents', 'cluster.local'), []);
    assert.deepEqual(hostnamesFor('fd00::7', 'agents', 'cluster.local'), []);
    assert.deepEqual(hostnamesFor('svc.cluster.local', 'agents', 'cluster.local'), ['svc.cluster.local']);
  });

  test('virtual IPs are allocated per host in sorted Connection order', () => {
    const plan = planCapture(
      [
        { name: 'zeta', host: 'z.example.com', port: 443, protocol: 'http' },
        { name: 'alpha', host: 'db.data.svc.cluster.local', port: 5432, protocol: 'postgres' },
        { name: 'beta', host: 'db.data.svc.cluster.local', port: 22, protocol: 'ssh' },
        { name: 'gamma', host: 'db.data.svc.cluster.local', port: 5432, protocol: 'tcp' },
      ],
      'agents',
      'cluster.local',
    );
    assert.deepEqual(
      plan.connections.map((c) => [c.name, c.vip, c.port, c.hostnames.length]),
      [
        ['alpha', '240.240.0.1', 5432, 3],
        ['beta', '240.240.0.1', 22, 0],
        ['zeta', '240.240.0.2', 443, 1],
      ],
    );
    assert.deepEqual(plan.dropped, [
      { name: 'gamma', why: 'Connection alpha already captures db.data.svc.cluster.local:5432' },
    ]);
  });

  test('virtual IPs span the /16', () => {
    assert.equal(virtualIp(1), '240.240.0.1');
    assert.equal(virtualIp(256), '240.240.1.0');
    assert.equal(virtualIp(65534), '240.240.255.254');
    assert.throws(() => virtualIp(65535), RangeError);
  });
});
