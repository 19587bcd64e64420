import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { before, describe, test } from 'node:test';
import { createCertificateAuthority, type KeyPairPem } from './pki.ts';
import {
  callerFromHeaders,
  continueToken,
  type FrontProxy,
  isFrontProxyCertificate,
  parseContinue,
  parseFrontProxy,
  type Session,
  sessionObject,
  sessionSummary,
  sessionTable,
  target,
} from './sessions-api.ts';

const der = (pem: string) => new X509Certificate(pem).raw;

describe('the front proxy', () => {
  let proxyCa: KeyPairPem;
  let client: KeyPairPem;
  let otherName: KeyPairPem;
  let serverOnly: KeyPairPem;
  let expired: KeyPairPem;
  let foreign: KeyPairPem;
  let proxy: FrontProxy;

  before(async () => {
    const ca = await createCertificateAuthority('front-proxy-ca');
    proxyCa = ca;
    client = await ca.issue({ commonName: 'front-proxy-client', usage: 'client' });
    otherName = await ca.issue({ commonName: 'somebody', usage: 'client' });
    serverOnly = await ca.issue({ commonName: 'front-proxy-client', usage: 'server' });
    expired = await ca.issue({ commonName: 'front-proxy-client', usage: 'client', validFor: 1 });
    const users = await createCertificateAuthority('cluster-ca');
    foreign = await users.issue({ commonName: 'front-proxy-client', usage: 'client' });
    proxy = parseFrontProxy({
      'requestheader-client-ca-file': `${(await createCertificateAuthority('old')).certificate}${ca.certificate}`,
      'requestheader-allowed-names': '["front-proxy-client"]',
      'requestheader-username-headers': '["X-Remote-User"]',
      'requestheader-uid-headers': '["X-Remote-Uid"]',
      'requestheader-group-headers': '["X-Remote-Group"]',
      'requestheader-extra-headers-prefix': '["X-Remote-Extra-"]',
    });
  });

  test('reads the published settings, every CA of the bundle, with defaults for absent lists', async () => {
    assert.equal(proxy.authorities.length, 2);
    assert.deepEqual(proxy.allowedNames, ['front-proxy-client']);
    const minimal = parseFrontProxy({ 'requestheader-client-ca-file': proxyCa.certificate });
    assert.deepEqual(minimal.usernameHeaders, ['X-Remote-User']);
    assert.deepEqual(minimal.allowedNames, []);
    assert.throws(() => parseFrontProxy({}), /publishes no requestheader-client-ca-file/);
    assert.throws(
      () =>
        parseFrontProxy({
          'requestheader-client-ca-file': proxyCa.certificate,
          'requestheader-allowed-names': '"x"',
        }),
      /JSON list of strings/,
    );
  });

  test('accepts only its client certificate: signed by its CA, an allowed name, client usage, valid now', () => {
    assert.equal(isFrontProxyCertificate(der(client.certificate), proxy), true);
    assert.equal(isFrontProxyCertificate(der(foreign.certificate), proxy), false, 'another CA');
    assert.equal(isFrontProxyCertificate(der(otherName.certificate), proxy), false, 'a name not allowed');
    assert.equal(isFrontProxyCertificate(der(serverOnly.certificate), proxy), false, 'server usage only');
    assert.equal(
      isFrontProxyCertificate(der(expired.certificate), proxy, new Date(Date.now() + 2 * 86_400_000)),
      false,
      'expired',
    );
    assert.equal(isFrontProxyCertificate(Buffer.from('not a certificate'), proxy), false);
    const anyName = { ...proxy, allowedNames: [] };
    assert.equal(isFrontProxyCertificate(der(otherName.certificate), anyName), true, 'no names listed: any');
  });

  test('takes the caller from the headers: the first user, every group line, extras by decoded key', () => {
    const caller = callerFromHeaders(
      {
        'x-remote-user': ['alice', 'mallory'],
        'x-remote-uid': ['1234'],
        'x-remote-group': ['dba-oncall', 'team, with comma'],
        'x-remote-extra-scopes': ['a', 'b'],
        'x-remote-extra-acme.com%2Fproject': ['p1'],
        'x-other': ['ignored'],
      },
      proxy,
    );
    assert.deepEqual(caller, {
      username: 'alice',
      uid: '1234',
      groups: ['dba-oncall', 'team, with comma'],
      extra: { scopes: ['a', 'b'], 'acme.com/project': ['p1'] },
    });
    assert.equal(callerFromHeaders({ 'x-remote-group': ['system:masters'] }, proxy), undefined);
    assert.equal(callerFromHeaders({ 'x-remote-user': [''] }, proxy), undefined);
  });
});

test('paths name the discovery document, a namespace list, the cluster list or one session', () => {
  const base = '/apis/audit.airlock.dev/v1alpha1';
  assert.deepEqual(target(base), { kind: 'discovery' });
  assert.deepEqual(target(`${base}/sessions`), { kind: 'list' });
  assert.deepEqual(target(`${base}/namespaces/agents/sessions`), { kind: 'list', namespace: 'agents' });
  assert.deepEqual(target(`${base}/namespaces/agents/sessions/s%2F1`), {
    kind: 'get',
    namespace: 'agents',
    name: 's/1',
  });
  for (const path of [
    `${base}/namespaces/agents`,
    `${base}/namespaces//sessions`,
    `${base}/namespaces/agents/sessions/x/status`,
    `${base}/namespaces/agents/pods`,
    `${base}/sessionsx`,
    '/apis/audit.airlock.dev/v1',
  ])
    assert.equal(target(path), undefined, path);
});

test('a session object and its summary convert both ways; a table has one row per session', () => {
  const summary = {
    id: 's1',
    connection: 'orders-db',
    namespace: 'data',
    protocol: 'postgres',
    identity: 'system:serviceaccount:agents:agent',
    started: '2026-11-22T10:00:00.000Z',
    requests: 3,
    blocked: 1,
    masked: 2,
  };
  const session: Session = sessionObject('agents', summary);
  assert.deepEqual(session.metadata, { name: 's1', namespace: 'agents', creationTimestamp: summary.started });
  assert.equal(session.events, undefined);
  assert.deepEqual(sessionSummary(session), summary);
  const table = sessionTable([session], { continue: 'next' }, Date.parse(summary.started) + 5 * 60_000);
  assert.deepEqual(table.metadata, { continue: 'next' });
  assert.deepEqual(
    table.columnDefinitions.map((c) => c.name),
    [
      'Name',
      'Connection',
      'Protocol',
      'Identity',
      'Requests',
      'Blocked',
      'Masked',
      'Ended',
      'Age',
      'End User',
    ],
  );
  assert.deepEqual(table.rows[0]!.cells, [
    's1',
    'orders-db',
    'postgres',
    summary.identity,
    3,
    1,
    2,
    '',
    '5m',
    '',
  ]);
  const acting = sessionTable([sessionObject('agents', { ...summary, user: 'oidc:ada@example.com' })]);
  assert.equal(acting.rows[0]!.cells.at(-1), 'oidc:ada@example.com');
});

test('a continue token names a chain position; anything else is not one', () => {
  for (const position of [1, 42, 2 ** 40]) assert.equal(parseContinue(continueToken(position)), position);
  const forged = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  for (const token of [
    'garbage',
    '',
    forged({ v: 2, before: 5 }),
    forged({ v: 1, before: 0 }),
    forged({ v: 1, before: -3 }),
    forged({ v: 1, before: 1.5 }),
    forged({ v: 1, before: '5' }),
    forged({ v: 1, before: 2 ** 60 }),
    forged([1]),
    forged(null),
  ])
    assert.equal(parseContinue(token), null, token);
});
