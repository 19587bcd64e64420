// A Connection is Ready only when every Secret its sidecars need is there: the credential, the
// target's CA and the identity provider's CA (without either CA the bundle leaves it out).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Connection } from '../api/v1alpha1.ts';
import { connectionConditions } from './status.ts';

const connection = (spec: Partial<Connection['spec']>): Connection =>
  ({
    apiVersion: 'airlock.dev/v1alpha1',
    kind: 'Connection',
    metadata: { name: 'db', namespace: 'agents' },
    spec: {
      protocol: 'postgres',
      host: 'db.example',
      port: 5432,
      tls: { mode: 'verify-full' },
      credentials: { secretRef: { name: 'db' } },
      ...spec,
    },
  }) as Connection;
const secrets: Record<string, Record<string, string>> = {
  db: { username: 'agent', password: 'x' },
  'db-ca': { 'ca.crt': 'PEM' },
  'idp-ca': { 'bundle.pem': 'PEM' },
};
const ready = (c: Connection, have = secrets) =>
  connectionConditions(c, (name) => (have[name] ? { data: have[name] } : undefined)).find(
    (x) => x.type === 'Ready',
  )!;
const endUser = { issuer: 'https://login.example.com/', audiences: ['agents'] };

describe('connectionConditions', () => {
  it('is Ready with the credential and every CA it names', () => {
    assert.equal(ready(connection({})).status, 'True');
    const both = connection({
      tls: { mode: 'verify-full', caSecretRef: { name: 'db-ca' } },
      endUser: { ...endUser, caSecretRef: { name: 'idp-ca', key: 'bundle.pem' } },
    } as Partial<Connection['spec']>);
    assert.equal(ready(both).status, 'True');
  });

  it("is not Ready without the identity provider's CA, nor without the target's", () => {
    const idp = connection({ endUser: { ...endUser, caSecretRef: { name: 'idp-ca' } } } as Partial<
      Connection['spec']
    >);
    const missingKey = ready(idp);
    assert.equal(missingKey.status, 'False');
    assert.equal(missingKey.reason, 'CASecretNotFound');
    assert.match(missingKey.message, /Secret idp-ca with key "ca.crt" not found/);
    const target = connection({ tls: { mode: 'verify-full', caSecretRef: { name: 'gone', key: 'ca.crt' } } });
    assert.match(ready(target).message, /Secret gone with key "ca.crt" not found/);
    assert.equal(ready(connection({}), {}).reason, 'SecretNotFound');
  });
});
