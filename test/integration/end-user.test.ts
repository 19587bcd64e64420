// Agents acting for a person: the person's ID token, from a real OpenID provider (the
// authorization code flow driven over HTTP), presented through `airlock local` as the real CLI
// by real clients: psql with PGPASSWORD, curl with an Authorization header, ssh with the token
// as its password or as the answer to Airlock's keyboard-interactive prompt. Policies pick the
// session's rules from the verified user and groups; every token that should not stand for a
// person is refused in the protocol's own terms, and events name the person.
import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync, type JsonWebKeyInput } from 'node:crypto';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { get as httpsGet } from 'node:https';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type JWK, SignJWT } from 'jose';
import YAML from 'yaml';
import type { SessionEvent } from '../../api/events.ts';
import type { SessionSummary } from '../../audit/store.ts';
import { encodeStartup, passwordMessage } from '../../sidecar/postgres/messages.ts';
import { type ControlPlane, startControlPlane } from '../support/controlplane.ts';
import { type HttpUpstream, startHttpUpstream } from '../support/http-upstream.ts';
import { type OidcProvider, startOidcProvider } from '../support/oidc-provider.ts';
import { grantApprovers, startOperatorProcess } from '../support/operator.ts';
import { type PostgresServer, psql, RawClient, startPostgres } from '../support/postgres.ts';
import {
  freePort,
  runCommand,
  type Service,
  startService,
  temporaryDirectory,
  waitFor,
} from '../support/process.ts';
import { startSidecarProcess } from '../support/sidecar.ts';
import { type Sshd, startSshd } from '../support/sshd.ts';
import { requires } from '../support/tools.ts';

const cli = new URL('../../bin/airlock.js', import.meta.url).pathname;
const airlock = (args: string[]) => runCommand(process.execPath, [cli, ...args]);
const redirectUri = 'https://agent.example.com/callback';

const people = [
  { email: 'ada@example.com', password: 'ada-pw', groups: ['dba'] },
  { email: 'bob@example.com', password: 'bob-pw', groups: ['support'] },
  { email: 'carol@example.com', password: 'carol-pw', groups: ['sales'] },
];

const manifests = (...objects: object[]) => objects.map((o) => YAML.stringify(o)).join('---\n');
const object = (kind: string, name: string, body: object) => ({
  apiVersion: kind === 'Secret' ? 'v1' : 'airlock.dev/v1alpha1',
  kind,
  metadata: { name, namespace: 'ops' },
  ...body,
});

const base64url = (value: object | string) =>
  Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
const claimsOf = (token: string) =>
  JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;

describe('agents acting for a person', requires('psql', 'ssh', 'sshd', 'curl'), () => {
  let idp: OidcProvider;
  let otherIdp: OidcProvider;
  let postgres: PostgresServer;
  let upstream: HttpUpstream;
  let sshd: Sshd;
  let work: { path: string; remove(): Promise<void> };
  let local: Service;
  let store: string;
  const ports = { postgres: 0, otherApp: 0, noCa: 0, otherCa: 0, http: 0, ssh: 0 };
  const tokens: Record<string, string> = {};

  before(async () => {
    work = await temporaryDirectory('end-user');
    store = join(work.path, 'store');
    idp = await startOidcProvider({ redirectUri, people });
    otherIdp = await startOidcProvider({ redirectUri, people });
    postgres = await startPostgres();
    await postgres.admin(
      `CREATE TABLE orders (id int); GRANT ALL ON orders TO ${postgres.user}`,
      postgres.database,
    );
    upstream = await startHttpUpstream();
    sshd = await startSshd();
    for (const key of Object.keys(ports) as (keyof typeof ports)[]) ports[key] = await freePort();
    for (const person of people)
      tokens[person.email.split('@')[0]!] = await idp.idToken(person.email, person.password);
    tokens.otherIssuer = await otherIdp.idToken('ada@example.com', 'ada-pw');

    // The sidecar fetches the provider's keys itself, trusting the private CA the Connection names.
    const untrusted = {
      issuer: idp.issuer,
      audiences: [idp.clientId],
      usernameClaim: 'email',
      usernamePrefix: 'oidc:',
    };
    const endUser = { ...untrusted, caSecretRef: { name: 'idp-ca' } };
    /** A Connection to the test database whose agents act for people verified as endUser says. */
    const ordersDb = (name: string, settings: object) =>
      object('Connection', name, {
        spec: {
          protocol: 'postgres',
          host: postgres.host,
          port: postgres.port,
          tls: { mode: 'disable' },
          credentials: { secretRef: { name: 'orders-db' } },
          postgres: { database: postgres.database },
          endUser: settings,
        },
      });
    const dir = join(work.path, 'manifests');
    await mkdir(dir);
    writeFileSync(
      join(dir, 'airlock.yaml'),
      manifests(
        object('Secret', 'orders-db', {
          stringData: { username: postgres.user, password: postgres.password },
        }),
        object('Secret', 'billing-api', { stringData: { token: 'held-token-s3cret' } }),
        object('Secret', 'idp-ca', { stringData: { 'ca.crt': readFileSync(idp.caFile, 'utf8') } }),
        object('Secret', 'other-ca', { stringData: { pem: readFileSync(otherIdp.caFile, 'utf8') } }),
        object('Secret', 'web-1', {
          stringData: { username: sshd.user, privateKey: sshd.clientKey.privateKey },
        }),
        ordersDb('orders-db', endUser),
        // The same database for another application's tokens: ours are for the wrong audience.
        ordersDb('orders-db-other-app', { ...endUser, audiences: ['another-app'] }),
        // The same provider without its CA, and with another provider's CA.
        ordersDb('orders-db-no-ca', untrusted),
        ordersDb('orders-db-other-ca', { ...untrusted, caSecretRef: { name: 'other-ca', key: 'pem' } }),
        object('Connection', 'billing-api', {
          spec: {
            protocol: 'http',
            host: '127.0.0.1',
            port: upstream.port,
            credentials: { secretRef: { name: 'billing-api' } },
            http: { scheme: 'http' },
            endUser,
          },
        }),
        object('Connection', 'web-1', {
          spec: {
            protocol: 'ssh',
            host: sshd.host,
            port: sshd.port,
            credentials: { secretRef: { name: 'web-1' } },
            ssh: { knownHosts: sshd.knownHosts },
            endUser,
          },
        }),
        // The agent may do anything while it acts for a DBA.
        object('AccessPolicy', 'agent-for-dbas', {
          spec: {
            subjects: [{ kind: 'ServiceAccount', name: 'agent', actingFor: { groups: ['dba'] } }],
            connections: [
              'orders-db',
              'orders-db-other-app',
              'orders-db-no-ca',
              'orders-db-other-ca',
              'billing-api',
              'web-1',
            ],
          },
        }),
        // Whatever agent of the namespace acts for support may only read.
        object('AccessPolicy', 'support-reads', {
          spec: {
            subjects: [{ kind: 'Group', name: 'support' }],
            connections: ['orders-db', 'billing-api', 'web-1'],
            rules: [
              { name: 'no-writes', action: 'deny', sql: { classes: ['write', 'ddl'] } },
              { name: 'no-deletes', action: 'deny', http: { methods: ['DELETE'] } },
              { name: 'no-rm', action: 'deny', ssh: { commands: ['rm *'] } },
            ],
          },
        }),
      ),
    );
    const logFile = join(work.path, 'local.log');
    local = startService(
      'airlock local',
      process.execPath,
      [
        cli,
        'local',
        '-f',
        dir,
        '--as',
        'system:serviceaccount:ops:agent',
        '--listen',
        `orders-db=127.0.0.1:${ports.postgres}`,
        '--listen',
        `orders-db-other-app=127.0.0.1:${ports.otherApp}`,
        '--listen',
        `orders-db-no-ca=127.0.0.1:${ports.noCa}`,
        '--listen',
        `orders-db-other-ca=127.0.0.1:${ports.otherCa}`,
        '--listen',
        `billing-api=127.0.0.1:${ports.http}`,
        '--listen',
        `web-1=127.0.0.1:${ports.ssh}`,
        '--store',
        store,
      ],
      { logFile },
    );
    await waitFor('airlock local ready', async () => readFileSync(logFile, 'utf8').includes('ready'), {
      service: local,
      timeoutMs: 30_000,
    });
  });

  after(async () => {
    await local?.stop();
    await sshd?.stop();
    await upstream?.close();
    await postgres?.stop();
    await otherIdp?.stop();
    await idp?.stop();
    await work?.remove();
  });

  const asAgent = (token: string, script: string, port = ports.postgres) =>
    psql({ host: '127.0.0.1', port }, script, {
      env: { PGPASSWORD: token },
      args: ['-v', 'ON_ERROR_STOP=1'],
    });

  /** The sessions of Connections whose name starts with `prefix`, newest first, with their events. */
  async function sessions(prefix: string): Promise<{ summary: SessionSummary; events: SessionEvent[] }[]> {
    const list = await airlock(['sessions', 'list', '-o', 'json', '--limit', '1000', '--store', store]);
    assert.equal(list.code, 0, list.stderr);
    const found: { summary: SessionSummary; events: SessionEvent[] }[] = [];
    for (const summary of JSON.parse(list.stdout) as SessionSummary[]) {
      if (!summary.connection.startsWith(prefix)) continue;
      const shown = await airlock(['sessions', 'show', summary.id, '-o', 'json', '--store', store]);
      assert.equal(shown.code, 0, shown.stderr);
      found.push({ summary, events: (JSON.parse(shown.stdout) as { events: SessionEvent[] }).events });
    }
    return found;
  }

  describe('PostgreSQL: the token is the password', () => {
    it('serves a DBA with the held credential, under the DBA policy', async () => {
      const result = await asAgent(
        tokens.ada!,
        'SELECT current_user; INSERT INTO orders VALUES (1); SELECT count(*) FROM orders;',
        ports.postgres,
      );
      assert.equal(result.code, 0, result.stderr);
      // The server saw the held user: the agent's password never went upstream.
      assert.match(result.stdout, new RegExp(`^\\s*${postgres.user}\\s*$`, 'm'));
    });

    it('serves a support member under the read-only policy', async () => {
      const read = await asAgent(tokens.bob!, 'SELECT count(*) FROM orders;');
      assert.equal(read.code, 0, read.stderr);
      const write = await asAgent(tokens.bob!, 'DELETE FROM orders;');
      assert.notEqual(write.code, 0);
      assert.match(write.stderr, /AccessPolicy "support-reads" rule "no-writes"/);
    });

    it('refuses a person no policy grants, naming them', async () => {
      const result = await asAgent(tokens.carol!, 'SELECT 1;');
      assert.notEqual(result.code, 0);
      assert.match(
        result.stderr,
        /no AccessPolicy grants Connection orders-db to ops\/agent acting for oidc:carol@example\.com/,
      );
    });

    it('refuses what is not a token, and a token for another audience', async () => {
      const notJwt = await asAgent('wrong-password', 'SELECT 1;');
      assert.match(notJwt.stderr, /FATAL:\s+airlock: the end-user token is not a signed JWT/);
      const audience = await asAgent(tokens.ada!, 'SELECT 1;', ports.otherApp);
      assert.match(audience.stderr, /the end-user token is for the wrong audience/);
    });

    it('trusts the provider only through the CA endUser.caSecretRef names, naming the TLS failure', async () => {
      // Ada's token is good (it serves her on orders-db): the provider's keys cannot be read.
      const noCa = await asAgent(tokens.ada!, 'SELECT 1;', ports.noCa);
      assert.notEqual(noCa.code, 0);
      assert.match(
        noCa.stderr,
        /FATAL:\s+airlock: Airlock could not read the keys of https:\/\/127\.0\.0\.1:\d+: its TLS certificate is not trusted \(.+\): it does not chain to the system roots; name its CA in endUser\.caSecretRef/,
      );
      const otherCa = await asAgent(tokens.ada!, 'SELECT 1;', ports.otherCa);
      assert.notEqual(otherCa.code, 0);
      assert.match(
        otherCa.stderr,
        /its TLS certificate is not trusted \(.+\): it does not chain to the CA of endUser\.caSecretRef/,
      );
    });

    it('refuses an unsigned token and HS256 signed with the provider public key, in any spelling', async () => {
      const [header, payload] = tokens.ada!.split('.') as [string, string];
      for (const alg of ['none', 'None', 'NONE', 'nOnE']) {
        const unsigned = `${base64url({ alg, typ: 'JWT' })}.${payload}.`;
        const result = await asAgent(unsigned, 'SELECT 1;');
        assert.match(result.stderr, /algorithm ".*" is not allowed/i, alg);
      }
      // An agent that signs with the public key as an HMAC secret, were HS256 accepted.
      const jwks = await publishedKeys(idp);
      const publicPem = createPublicKey({ key: jwks.keys[0]! as JsonWebKeyInput['key'], format: 'jwk' })
        .export({ type: 'spki', format: 'pem' })
        .toString();
      const { kid } = JSON.parse(Buffer.from(header, 'base64url').toString()) as { kid: string };
      for (const alg of ['HS256', 'hs256', 'HS512']) {
        const forged = await new SignJWT(claimsOf(tokens.carol!))
          .setProtectedHeader({ alg: alg.toUpperCase(), kid })
          .sign(new TextEncoder().encode(publicPem));
        const spelled =
          alg === alg.toUpperCase()
            ? forged
            : `${base64url({ alg, kid })}.${forged.split('.').slice(1).join('.')}`;
        const result = await asAgent(spelled, 'SELECT 1;');
        assert.match(result.stderr, /algorithm ".*" is not allowed/, alg);
      }
    });

    it('refuses a token of another issuer, a tampered one, and one signed by a key the issuer does not publish', async () => {
      const other = await asAgent(tokens.otherIssuer!, 'SELECT 1;');
      assert.match(other.stderr, /the end-user token is from an unknown issuer/);
      // Carol's token claiming the dba group, her signature kept.
      const [header, , signature] = tokens.carol!.split('.') as [string, string, string];
      const claims = { ...claimsOf(tokens.carol!), groups: ['dba'] };
      const tampered = await asAgent(`${header}.${base64url(claims)}.${signature}`, 'SELECT 1;');
      assert.match(tampered.stderr, /the end-user token has a bad signature/);
      // The same claims signed by a key of the agent's own, under the provider's key id.
      const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
      const { kid } = JSON.parse(Buffer.from(header, 'base64url').toString()) as { kid: string };
      const own = await new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid }).sign(privateKey);
      const forged = await asAgent(own, 'SELECT 1;');
      assert.match(forged.stderr, /the end-user token has a bad signature/);
    });

    it('refuses an expired token', async () => {
      const shortLived = await idp.idToken('ada@example.com', 'ada-pw', { ttlSeconds: 1 });
      // Past its expiry and the verifier's clock tolerance (5 s).
      await new Promise((resolve) => setTimeout(resolve, 7_000));
      const result = await asAgent(shortLived, 'SELECT 1;');
      assert.match(result.stderr, /the end-user token has expired/);
    });

    it('reads the password message however it is split, and nothing else in its place', async () => {
      const startup = async () => {
        const client = await RawClient.connect('127.0.0.1', ports.postgres);
        client.send(
          encodeStartup(
            new Map([
              ['user', 'agent'],
              ['database', 'x'],
            ]),
          ),
        );
        const asked = await client.next();
        assert.equal(asked?.type, 'R');
        assert.equal(asked.body.readInt32BE(0), 3, 'AuthenticationCleartextPassword');
        return client;
      };
      // The token one byte at a time: the enforcer waits for the whole message.
      const split = await startup();
      const message = passwordMessage(tokens.ada!);
      for (const byte of message) {
        split.send(Buffer.from([byte]));
        await new Promise((resolve) => setImmediate(resolve));
      }
      const welcome = await split.until('Z');
      assert.deepEqual(welcome.find((f) => f.type === 'R')?.body.readInt32BE(0), 0);
      split.close();
      // A query where the password should be, and a password message with bytes after it.
      const violations = [
        Buffer.concat([Buffer.from('Q'), Buffer.from([0, 0, 0, 13]), Buffer.from('SELECT 1;\0')]),
        (() => {
          const body = Buffer.concat([Buffer.from(tokens.ada!), Buffer.from([0]), Buffer.from('extra')]);
          const head = Buffer.alloc(5);
          head.write('p');
          head.writeInt32BE(body.length + 4, 1);
          return Buffer.concat([head, body]);
        })(),
      ];
      for (const violation of violations) {
        const client = await startup();
        client.send(violation);
        const refused = await client.until('E');
        assert.equal(refused.at(-1)?.fields?.get('C'), '08P01');
        assert.equal(await client.next(), undefined, 'the connection is closed');
      }
    });

    it('records the person on every event and refusals with their reason, never the token', async () => {
      const all = await sessions('orders-db');
      const ada = all.filter((s) => s.summary.user === 'oidc:ada@example.com');
      assert.ok(ada.length >= 1);
      for (const { events } of ada)
        for (const event of events) {
          assert.equal(event.identity.user, 'oidc:ada@example.com');
          assert.deepEqual(event.identity.groups, ['dba']);
          assert.equal(event.identity.serviceAccount, 'agent');
        }
      const refusals = all
        .flatMap((s) => s.events)
        .filter((e) => e.type === 'request' && e.kind === 'authentication');
      assert.ok(refusals.length >= 8, `${refusals.length} refusals recorded`);
      for (const refusal of refusals) {
        assert.equal(refusal.type === 'request' && refusal.outcome, 'denied');
        assert.ok(
          refusal.type === 'request' && ['unauthenticated', 'policy-denied'].includes(refusal.error!.code),
        );
      }
      const recorded = JSON.stringify(all);
      for (const token of Object.values(tokens)) assert.ok(!recorded.includes(token.split('.')[2]!));
    });
  });

  describe('HTTP: the token in the Authorization header', () => {
    const curl = (args: string[]) => runCommand('curl', ['-sS', '-o', '-', '-w', '\\n%{http_code}', ...args]);
    const url = (path: string) => `http://127.0.0.1:${ports.http}${path}`;

    it('forwards a DBA request with the held credential instead of the token', async () => {
      const seen = upstream.requests.length;
      const result = await curl(['-H', `Authorization: Bearer ${tokens.ada}`, url('/data')]);
      assert.match(result.stdout, /\n200$/);
      const forwarded = upstream.requests.slice(seen);
      assert.equal(forwarded.length, 1);
      assert.equal(forwarded[0]!.headers.authorization, 'Bearer held-token-s3cret');
      assert.ok(!JSON.stringify(forwarded[0]!.headers).includes(tokens.ada!));
    });

    it('reads the scheme in any case, and decides under the person policies', async () => {
      const read = await curl(['-H', `Authorization: bearer ${tokens.bob}`, url('/data')]);
      assert.match(read.stdout, /\n200$/);
      const deleted = await curl(['-X', 'DELETE', '-H', `Authorization: Bearer ${tokens.bob}`, url('/data')]);
      assert.match(deleted.stdout, /"rule":"no-deletes"|no-deletes/);
      assert.match(deleted.stdout, /\n403$/);
    });

    it('refuses a missing, tampered or foreign token with 401 and a problem document', async () => {
      const seen = upstream.requests.length;
      const none = await curl([url('/data')]);
      assert.match(none.stdout, /\n401$/);
      assert.match(none.stdout, /"code":"unauthenticated"/);
      assert.match(none.stdout, /requires an end-user token/);
      const [header, , signature] = tokens.carol!.split('.') as [string, string, string];
      const tampered = `${header}.${base64url({ ...claimsOf(tokens.carol!), groups: ['dba'] })}.${signature}`;
      for (const [value, reason] of [
        [`Bearer ${tampered}`, /bad signature/],
        [`Bearer ${tokens.otherIssuer}`, /unknown issuer/],
        [`Basic ${base64url('ada:ada-pw')}`, /not a signed JWT/],
      ] as const) {
        const result = await curl(['-H', `Authorization: ${value}`, url('/data')]);
        assert.match(result.stdout, /\n401$/, value);
        assert.match(result.stdout, reason);
      }
      assert.equal(upstream.requests.length, seen, 'no refused request reached the target');
    });

    it('keeps a connection to one person: a second person on it is refused', async () => {
      const seen = upstream.requests.length;
      const result = await curl([
        '-H',
        `Authorization: Bearer ${tokens.ada}`,
        url('/data'),
        '--next',
        '-sS',
        '-w',
        '\\n%{http_code} %{num_connects}',
        '-H',
        `Authorization: Bearer ${tokens.bob}`,
        url('/data'),
      ]);
      // The second request reused the connection (no new connect) and was refused.
      assert.match(result.stdout, /\n401 0$/);
      assert.match(result.stdout, /this connection acts for oidc:ada@example\.com/);
      assert.equal(upstream.requests.length, seen + 1);
    });
  });

  describe('SSH: the token as the password, or the answer to Airlock’s prompt', () => {
    let askpass: string;
    let prompts: string;

    before(() => {
      // What ssh runs to ask for a password (SSH_ASKPASS_REQUIRE=force): it logs the prompt.
      askpass = join(work.path, 'askpass.sh');
      prompts = join(work.path, 'prompts.log');
      writeFileSync(
        askpass,
        `#!/bin/sh\nprintf '%s\\n' "$1" >> '${prompts}'\nprintf '%s\\n' "$AIRLOCK_TOKEN"\n`,
      );
      chmodSync(askpass, 0o755);
    });

    const ssh = (token: string, command: string, method: 'password' | 'keyboard-interactive') =>
      runCommand('env', [
        `AIRLOCK_TOKEN=${token}`,
        `SSH_ASKPASS=${askpass}`,
        'SSH_ASKPASS_REQUIRE=force',
        'DISPLAY=none',
        'ssh',
        '-F',
        '/dev/null',
        '-o',
        'StrictHostKeyChecking=no',
        '-o',
        'UserKnownHostsFile=/dev/null',
        '-o',
        'LogLevel=ERROR',
        '-o',
        `PreferredAuthentications=${method}`,
        '-o',
        'NumberOfPasswordPrompts=1',
        '-p',
        String(ports.ssh),
        'agent@127.0.0.1',
        command,
      ]);

    it('serves a DBA giving the token as the password', async () => {
      const result = await ssh(tokens.ada!, 'echo hello from $(whoami)', 'password');
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout, `hello from ${sshd.user}\n`);
    });

    it('asks for the token with a keyboard-interactive prompt that names Airlock', async () => {
      const result = await ssh(tokens.bob!, 'echo hi', 'keyboard-interactive');
      assert.equal(result.code, 0, result.stderr);
      assert.match(
        readFileSync(prompts, 'utf8'),
        /Airlock: the OIDC token of the person this agent acts for/,
      );
      const denied = await ssh(tokens.bob!, 'rm -f /tmp/nothing-here', 'keyboard-interactive');
      assert.equal(denied.code, 126);
      assert.match(denied.stderr, /no-rm/);
    });

    it('refuses a tampered token before it reaches the target', async () => {
      const [header, , signature] = tokens.carol!.split('.') as [string, string, string];
      const tampered = `${header}.${base64url({ ...claimsOf(tokens.carol!), groups: ['dba'] })}.${signature}`;
      for (const method of ['password', 'keyboard-interactive'] as const) {
        const result = await ssh(tampered, 'echo should not run', method);
        assert.equal(result.code, 255, method);
        assert.doesNotMatch(result.stdout, /should not run/);
        assert.match(result.stderr, /Permission denied/);
      }
    });

    it('records the person and the refusals', async () => {
      const web = await sessions('web-1');
      assert.deepEqual(web.map((s) => s.summary.user ?? '').sort(), [
        '',
        '',
        'oidc:ada@example.com',
        'oidc:bob@example.com',
        'oidc:bob@example.com',
      ]);
      const refused = web
        .flatMap((s) => s.events)
        .filter((e) => e.type === 'request' && e.kind === 'authentication');
      assert.equal(refused.length, 2);
      for (const event of refused)
        assert.match(event.type === 'request' ? event.reasons![0]! : '', /bad signature/);
    });
  });
});

describe(
  'through the operator: a held request names the person',
  requires('etcd', 'kube-apiserver', 'kubectl', 'postgres', 'psql'),
  () => {
    let idp: OidcProvider;
    let database: PostgresServer;
    let cluster: ControlPlane;
    let operator: Service | undefined;
    let sidecar: Service | undefined;
    let work: { path: string; remove(): Promise<void> };
    let listenPort = 0;

    before(async () => {
      work = await temporaryDirectory('end-user-operator');
      idp = await startOidcProvider({ redirectUri, people });
      database = await startPostgres();
      await database.admin(
        `CREATE TABLE orders (id int, status text); INSERT INTO orders VALUES (1, 'paid'); GRANT ALL ON orders TO ${database.user}`,
        database.database,
      );
      cluster = await startControlPlane();
      await cluster.installCrds();
      const kubectl = (args: string[], input?: string) =>
        cluster.kubectl(args, input === undefined ? {} : { input });
      await kubectl(['create', 'namespace', 'airlock-system']);
      await kubectl(['create', 'namespace', 'agents']);
      await kubectl(['label', 'namespace', 'agents', 'airlock.dev/injection=enabled']);
      await kubectl(['create', 'serviceaccount', 'agent', '-n', 'agents']);
      await grantApprovers(cluster, { groups: ['dba-oncall'] });
      const item = (kind: string, name: string, body: object) => ({
        ...object(kind, name, body),
        metadata: { name, namespace: 'agents' },
      });
      await kubectl(
        ['apply', '-f', '-'],
        JSON.stringify({
          apiVersion: 'v1',
          kind: 'List',
          items: [
            item('Secret', 'orders-db', {
              stringData: { username: database.user, password: database.password },
            }),
            item('Secret', 'idp-ca', { stringData: { 'ca.crt': readFileSync(idp.caFile, 'utf8') } }),
            item('Connection', 'orders-db', {
              spec: {
                protocol: 'postgres',
                host: '127.0.0.1',
                port: database.port,
                tls: { mode: 'disable' },
                credentials: { secretRef: { name: 'orders-db' } },
                postgres: { database: database.database },
                endUser: {
                  issuer: idp.issuer,
                  audiences: [idp.clientId],
                  usernameClaim: 'email',
                  usernamePrefix: 'oidc:',
                  caSecretRef: { name: 'idp-ca' },
                },
              },
            }),
            item('AccessPolicy', 'agent-for-dbas', {
              spec: {
                subjects: [{ kind: 'ServiceAccount', name: 'agent', actingFor: { groups: ['dba'] } }],
                connections: ['orders-db'],
                rules: [
                  {
                    name: 'writes',
                    action: 'require-approval',
                    sql: { statements: ['UPDATE'] },
                    approval: { approvers: { groups: ['dba-oncall'] }, timeout: '2m' },
                  },
                ],
              },
            }),
          ],
        }),
      );
      const started = await startOperatorProcess(cluster, work.path, { approvals: true });
      operator = started.service;
      // The provider's CA reaches the sidecar in its bundle, from the Connection's caSecretRef.
      const agent = await startSidecarProcess(cluster, work.path, {
        controlApiUrl: started.controlApiUrl,
        connection: 'orders-db',
        protocol: 'postgres',
      });
      sidecar = agent.service;
      listenPort = agent.port;
    });

    after(async () => {
      await sidecar?.stop();
      await operator?.stop();
      await cluster?.stop();
      await database?.stop();
      await idp?.stop();
      await work?.remove();
    });

    it('records the person as the requester, who may not approve it; an approver does and it runs', async () => {
      const ada = await idp.idToken('ada@example.com', 'ada-pw');
      const statement = psql(
        { host: '127.0.0.1', port: listenPort },
        "UPDATE orders SET status = 'refunded' WHERE id = 1;",
        {
          env: { PGPASSWORD: ada },
          timeoutMs: 120_000,
        },
      );
      let request: { metadata: { name: string }; spec: { requester: Record<string, string> } } | undefined;
      await waitFor(
        'AccessRequest',
        async () => {
          request = JSON.parse(await cluster.kubectl(['get', 'accessrequests', '-n', 'agents', '-o', 'json']))
            .items[0];
          return request !== undefined;
        },
        { timeoutMs: 30_000 },
      );
      assert.deepEqual(request!.spec.requester, {
        pod: 'agent-0',
        serviceAccount: 'agent',
        user: 'oidc:ada@example.com',
      });
      const patch = (as: string[]) =>
        cluster.kubectl([
          'patch',
          'ar',
          request!.metadata.name,
          '-n',
          'agents',
          ...as,
          '--type=merge',
          '-p',
          '{"spec":{"decision":{"action":"approve"}}}',
        ]);
      await assert.rejects(
        patch(['--as=oidc:ada@example.com', '--as-group=dba-oncall']),
        /oidc:ada@example\.com requested .* nobody may approve their own request/,
      );
      await patch(['--as=oidc:grace@example.com', '--as-group=dba-oncall']);
      const result = await statement;
      assert.equal(result.code, 0, result.stderr);
      const { rows } = await database.admin('SELECT status FROM orders WHERE id = 1', database.database);
      assert.equal(rows[0].status, 'refunded');
    });

    it('refuses the token of someone the policy is not granted for, before anything reaches the database', async () => {
      const carol = await idp.idToken('carol@example.com', 'carol-pw');
      const result = await psql({ host: '127.0.0.1', port: listenPort }, 'SELECT 1;', {
        env: { PGPASSWORD: carol },
      });
      assert.notEqual(result.code, 0);
      assert.match(
        result.stderr,
        /no AccessPolicy grants Connection orders-db to agents\/agent acting for oidc:carol@example\.com/,
      );
    });
  },
);

/** The provider's published keys, found through its discovery document. */
async function publishedKeys(idp: OidcProvider): Promise<{ keys: JWK[] }> {
  const ca = readFileSync(idp.caFile, 'utf8');
  const get = (url: string) =>
    new Promise<unknown>((resolve, reject) =>
      httpsGet(url, { ca }, (res) => {
        let body = '';
        res.on('data', (chunk) => {
          body += chunk;
        });
        res.on('end', () => resolve(JSON.parse(body)));
      }).on('error', reject),
    );
  const discovery = (await get(`${idp.issuer}/.well-known/openid-configuration`)) as { jwks_uri: string };
  return (await get(discovery.jwks_uri)) as { keys: JWK[] };
}
