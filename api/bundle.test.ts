// Which AccessPolicies a workload holds, and under which end-user condition; which of them
// apply to a session from the end user it verified.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { admits, type BundleSources, type EndUser, grantFor, grants, policiesFor } from './bundle.ts';
import { compileBundle } from './compile-bundle.ts';
import {
  type AccessPolicy,
  accessPolicySpecSchema,
  type Connection,
  type ConnectionSpecInput,
} from './v1alpha1.ts';

const workload = { namespace: 'ops', serviceAccount: 'support-agent' };
const ada: EndUser = { user: 'oidc:ada', groups: ['dba', 'staff'] };
const bob: EndUser = { user: 'oidc:bob', groups: ['staff'] };

function policy(name: string, subjects: unknown[], namespace = 'ops'): AccessPolicy {
  return {
    apiVersion: 'airlock.dev/v1alpha1',
    kind: 'AccessPolicy',
    metadata: { name, namespace },
    spec: accessPolicySpecSchema.parse({ subjects, connections: ['orders-db'] }),
  } as AccessPolicy;
}

function connection(endUser?: ConnectionSpecInput['endUser']): Connection {
  return {
    apiVersion: 'airlock.dev/v1alpha1',
    kind: 'Connection',
    metadata: { name: 'orders-db', namespace: 'ops' },
    spec: {
      protocol: 'postgres',
      host: 'db',
      port: 5432,
      credentials: { secretRef: { name: 'orders-db' } },
      ...(endUser && { endUser }),
    },
  } as Connection;
}

const issuer = { issuer: 'https://idp.example.com', audiences: ['agents'] };

describe('grantFor', () => {
  it('grants a ServiceAccount subject always, whoever the workload acts for', () => {
    assert.equal(
      grantFor(policy('p', [{ kind: 'ServiceAccount', name: 'support-agent' }]), workload),
      'always',
    );
  });

  it('grants a ServiceAccount subject with actingFor only under its condition', () => {
    const p = policy('p', [
      {
        kind: 'ServiceAccount',
        name: 'support-agent',
        actingFor: { groups: ['dba'], users: ['oidc:carol'] },
      },
    ]);
    assert.deepEqual(grantFor(p, workload), { users: ['oidc:carol'], groups: ['dba'] });
  });

  it('grants nothing to another ServiceAccount or the same name in another namespace', () => {
    const p = policy('p', [
      { kind: 'ServiceAccount', name: 'support-agent', actingFor: { groups: ['dba'] } },
    ]);
    assert.equal(grantFor(p, { namespace: 'ops', serviceAccount: 'other' }), undefined);
    assert.equal(grantFor(p, { namespace: 'dev', serviceAccount: 'support-agent' }), undefined);
  });

  it("grants User and Group subjects to the workloads of the policy's namespace only", () => {
    const p = policy('p', [
      { kind: 'User', name: 'oidc:ada' },
      { kind: 'Group', name: 'dba' },
    ]);
    assert.deepEqual(grantFor(p, workload), { users: ['oidc:ada'], groups: ['dba'] });
    assert.equal(grantFor(p, { namespace: 'dev', serviceAccount: 'support-agent' }), undefined);
  });

  it('an unconditional subject outweighs conditional ones; conditions merge', () => {
    const both = policy('p', [
      { kind: 'Group', name: 'dba' },
      { kind: 'ServiceAccount', name: 'support-agent' },
    ]);
    assert.equal(grantFor(both, workload), 'always');
    const merged = policy('p', [
      { kind: 'Group', name: 'dba' },
      { kind: 'ServiceAccount', name: 'support-agent', actingFor: { groups: ['sre', 'dba'] } },
    ]);
    assert.deepEqual(grantFor(merged, workload), { users: [], groups: ['dba', 'sre'] });
  });
});

describe('admits and grants', () => {
  it('admits a listed user or a member of a listed group, with names compared exactly', () => {
    const condition = { users: ['oidc:bob'], groups: ['dba'] };
    assert.equal(admits(condition, ada), true);
    assert.equal(admits(condition, bob), true);
    assert.equal(admits(condition, { user: 'oidc:Bob', groups: ['DBA', 'dba '] }), false);
    assert.equal(admits(condition, { user: 'bob', groups: [] }), false);
  });

  it('fails closed: a condition never admits a session without a verified end user', () => {
    assert.equal(admits({ users: [], groups: ['dba'] }, undefined), false);
    assert.equal(admits(undefined, undefined), true);
  });

  it('grants an identity that carries an admitted end user', () => {
    const p = policy('p', [
      { kind: 'ServiceAccount', name: 'support-agent', actingFor: { groups: ['dba'] } },
    ]);
    assert.equal(grants(p, workload), false);
    assert.equal(grants(p, { ...workload, user: ada.user, groups: ada.groups }), true);
    assert.equal(grants(p, { ...workload, user: bob.user, groups: bob.groups }), false);
    // Groups without a user are not a verified end user.
    assert.equal(grants(p, { ...workload, groups: ['dba'] }), false);
  });
});

describe('compileBundle with end users', () => {
  const sources = (endUser?: ConnectionSpecInput['endUser']): BundleSources => ({
    connections: [connection(endUser)],
    policies: [
      policy('everyone', [{ kind: 'ServiceAccount', name: 'support-agent' }]),
      policy('dba', [{ kind: 'ServiceAccount', name: 'support-agent', actingFor: { groups: ['dba'] } }]),
      policy('bob', [{ kind: 'User', name: 'oidc:bob' }]),
      policy('elsewhere', [{ kind: 'Group', name: 'dba' }], 'dev'),
    ],
    secrets: [{ namespace: 'ops', name: 'orders-db', data: { username: 'app', password: 'pw' } }],
  });

  it('carries each policy with the condition it is granted under', () => {
    const { bundle, problems } = compileBundle(sources(issuer), workload);
    assert.deepEqual(problems, []);
    const [orders] = bundle.connections;
    assert.deepEqual(
      orders!.policies.map((p) => [p.name, p.endUser]),
      [
        ['bob', { users: ['oidc:bob'], groups: [] }],
        ['dba', { users: [], groups: ['dba'] }],
        ['everyone', undefined],
      ],
    );
    assert.equal(orders!.endUser?.issuer, issuer.issuer);
  });

  it('picks the policies of a session from its end user', () => {
    const { policies } = compileBundle(sources(issuer), workload).bundle.connections[0]!;
    const names = (endUser?: EndUser) => policiesFor(policies, endUser).map((p) => p.name);
    assert.deepEqual(names(ada), ['dba', 'everyone']);
    assert.deepEqual(names(bob), ['bob', 'everyone']);
    assert.deepEqual(names(undefined), ['everyone']);
  });

  it('leaves out grants for end users on a Connection without endUser, and says so', () => {
    const { bundle, problems } = compileBundle(sources(), workload);
    assert.deepEqual(
      bundle.connections[0]!.policies.map((p) => p.name),
      ['everyone'],
    );
    assert.equal(problems.length, 2);
    assert.match(problems[0]!.message, /only for end users, and the Connection has no endUser/);
  });

  it("carries the provider's CA from endUser.caSecretRef, and leaves the Connection out without it", () => {
    const withCa = { ...issuer, caSecretRef: { name: 'idp-ca', key: 'ca.crt' } };
    const pem = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
    const present = sources(withCa);
    present.secrets.push({ namespace: 'ops', name: 'idp-ca', data: { 'ca.crt': pem } });
    const { bundle, problems } = compileBundle(present, workload);
    assert.deepEqual(problems, []);
    assert.equal(bundle.connections[0]!.endUser?.ca, pem);
    assert.ok(
      !('caSecretRef' in bundle.connections[0]!.endUser!),
      'the sidecar gets the PEM, not the reference',
    );
    // Fail closed: no person could be verified on it.
    const missing = compileBundle(sources(withCa), workload);
    assert.deepEqual(missing.bundle.connections, []);
    assert.match(missing.problems[0]!.message, /endUser CA Secret idp-ca not found or lacks ca\.crt/);
  });
});
