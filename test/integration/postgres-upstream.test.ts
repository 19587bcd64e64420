// Upstream authentication with the held credential: SCRAM-SHA-256 (and -PLUS over TLS), md5,
// cleartext password; TLS disable / require / verify-full.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { createCertificateAuthority } from '../../operator/pki.ts';
import { scramClient, signatureHash } from '../../sidecar/postgres/scram.ts';
import { connectUpstream, type UpstreamTarget } from '../../sidecar/postgres/upstream.ts';
import { type PostgresServer, policy, psql, startEnforcer, startPostgres } from '../support/postgres.ts';

function targetOf(server: PostgresServer, tls: UpstreamTarget['tls'] = { mode: 'disable' }): UpstreamTarget {
  return {
    host: server.host,
    port: server.port,
    tls,
    username: server.user,
    password: server.password,
    database: server.database,
  };
}

describe('SCRAM client', () => {
  test('RFC 7677 test vector', () => {
    const client = scramClient('pencil', { nonce: 'rOprNGfwEbeRWgbNEkqO', user: 'user' });
    assert.equal(client.first().toString(), 'n,,n=user,r=rOprNGfwEbeRWgbNEkqO');
    const final = client.final(
      Buffer.from('r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096'),
    );
    assert.equal(
      final.toString(),
      'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=',
    );
    client.verify(Buffer.from('v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4='));
    assert.throws(() => client.verify(Buffer.from('v=AAAA')), { code: 'scram-failed' });
  });

  test('rejects a server nonce that does not extend ours', () => {
    const client = scramClient('pencil', { nonce: 'abc' });
    client.first();
    assert.throws(() => client.final(Buffer.from('r=xyz123,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096')), {
      code: 'scram-failed',
    });
  });

  test('channel binding hash follows the certificate signature algorithm', async () => {
    const ca = await createCertificateAuthority('Airlock Test CA');
    const der = new X509Certificate(ca.certificate).raw;
    assert.equal(signatureHash(der), 'sha256');
    assert.equal(signatureHash(Buffer.from([1, 2, 3])), 'sha256');
  });
});

for (const auth of ['scram-sha-256', 'md5', 'password'] as const) {
  describe(`upstream ${auth}`, () => {
    let server: PostgresServer;
    before(async () => {
      server = await startPostgres({ auth });
    });
    after(async () => server?.stop());

    test('authenticates with the held credential', async () => {
      const upstream = await connectUpstream(targetOf(server), []);
      assert.equal(upstream.authentication, auth === 'scram-sha-256' ? 'SCRAM-SHA-256' : auth);
      assert.ok(upstream.backendKey);
      assert.equal(upstream.status, 'I');
      upstream.socket.destroy();
    });

    test('psql through the enforcer, the client password ignored', async () => {
      const enforcer = await startEnforcer(server, [policy('p')]);
      try {
        const result = await psql(enforcer, 'SELECT current_user;', { args: ['-At'] });
        assert.equal(result.code, 0, result.stderr);
        assert.equal(result.stdout.trim(), server.user);
      } finally {
        await enforcer.close();
      }
    });

    test('a wrong held password fails closed with a FATAL the client shows', async () => {
      await assert.rejects(connectUpstream({ ...targetOf(server), password: 'nope' }, []), {
        code: 'upstream-auth',
      });
    });
  });
}

describe('upstream TLS', () => {
  let server: PostgresServer;
  before(async () => {
    server = await startPostgres({ tls: true });
  });
  after(async () => server?.stop());

  test('verify-full with the CA and server name uses SCRAM-SHA-256-PLUS', async () => {
    const upstream = await connectUpstream(
      targetOf(server, { mode: 'verify-full', ca: server.ca, serverName: 'localhost' }),
      [],
    );
    assert.equal(upstream.tls, true);
    assert.equal(upstream.authentication, 'SCRAM-SHA-256-PLUS');
    upstream.socket.destroy();
  });

  test('verify-full through the enforcer: the session is encrypted upstream', async () => {
    const enforcer = await startEnforcer(server, [policy('p')], {
      upstreamTls: { mode: 'verify-full', ca: server.ca, serverName: 'localhost' },
    });
    try {
      const c = new pg.Client(enforcer.client);
      await c.connect();
      const { rows } = await c.query('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
      assert.equal(rows[0].ssl, true);
      await c.end();
    } finally {
      await enforcer.close();
    }
  });

  test('verify-full refuses another CA and another name', async () => {
    const other = await createCertificateAuthority('Someone Else');
    await assert.rejects(
      connectUpstream(
        targetOf(server, { mode: 'verify-full', ca: other.certificate, serverName: 'localhost' }),
        [],
      ),
      { code: 'upstream-tls' },
    );
    await assert.rejects(
      connectUpstream(
        targetOf(server, { mode: 'verify-full', ca: server.ca, serverName: 'db.example.com' }),
        [],
      ),
      { code: 'upstream-tls' },
    );
  });

  test('require encrypts without checking the certificate', async () => {
    const upstream = await connectUpstream(targetOf(server, { mode: 'require' }), []);
    assert.equal(upstream.authentication, 'SCRAM-SHA-256-PLUS');
    upstream.socket.destroy();
  });

  test('a refusal by the server reaches the client as FATAL', async () => {
    // The server accepts only TLS: a plaintext upstream has no pg_hba entry.
    const enforcer = await startEnforcer(server, [policy('p')], { upstreamTls: { mode: 'disable' } });
    try {
      const c = new pg.Client(enforcer.client);
      await assert.rejects(c.connect(), (error: pg.DatabaseError) => {
        assert.equal(error.code, '28000');
        assert.match(error.message, /pg_hba|no encryption/);
        return true;
      });
    } finally {
      await enforcer.close();
    }
  });

  test('require against a server without TLS fails closed', async () => {
    const plain = await startPostgres();
    try {
      await assert.rejects(connectUpstream(targetOf(plain, { mode: 'require' }), []), {
        code: 'upstream-tls',
      });
      const enforcer = await startEnforcer(plain, [policy('p')], { upstreamTls: { mode: 'require' } });
      const c = new pg.Client(enforcer.client);
      await assert.rejects(c.connect(), (error: pg.DatabaseError) => {
        assert.equal(error.code, '08006');
        assert.match(error.message, /Airlock could not connect/);
        return true;
      });
      await enforcer.close();
    } finally {
      await plain.stop();
    }
  });
});
