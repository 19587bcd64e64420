// `airlock local` as the real CLI in its own process: one set of manifests serving SSH, HTTP and
// TCP Connections to a real sshd, a real HTTP target and a TCP echo server, driven by ssh, curl
// and a socket; the sessions read back with `airlock sessions list` through the control socket.
// Invalid manifests and ungranted Connections stop it at start with exit status 2.
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { type AddressInfo, connect, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import YAML from 'yaml';
import type { SessionSummary } from '../../audit/store.ts';
import { customer, type HttpUpstream, startHttpUpstream } from '../support/http-upstream.ts';
import { startLocal } from '../support/local.ts';
import {
  type CommandResult,
  freePort,
  runCommand,
  type Service,
  temporaryDirectory,
} from '../support/process.ts';
import { type Sshd, startSshd } from '../support/sshd.ts';
import { requires } from '../support/tools.ts';

const cli = new URL('../../bin/airlock.js', import.meta.url).pathname;
const identity = 'system:serviceaccount:ops:agent';

const airlock = (args: string[]) => runCommand(process.execPath, [cli, ...args]);

/** Kubernetes-style manifests, one YAML stream. */
const manifests = (...objects: object[]) => objects.map((o) => YAML.stringify(o)).join('---\n');
const object = (kind: string, name: string, body: object) => ({
  apiVersion: kind === 'Secret' ? 'v1' : 'airlock.dev/v1alpha1',
  kind,
  metadata: { name, namespace: 'ops' },
  ...body,
});

/** Sends payload, half-closes, and collects what comes back until the connection closes. */
function exchange(port: number, payload: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('close', () => resolve(Buffer.concat(chunks)));
    socket.end(payload);
  });
}

describe('airlock local', requires('sshd', 'ssh', 'curl'), () => {
  let sshd: Sshd;
  let upstream: HttpUpstream;
  let echo: Server;
  let work: { path: string; remove(): Promise<void> };
  let store: string;
  let server: Service | undefined;
  const ports = { ssh: 0, http: 0, tcp: 0 };

  before(async () => {
    work = await temporaryDirectory('local');
    store = join(work.path, 'store');
    sshd = await startSshd();
    upstream = await startHttpUpstream();
    echo = createServer({ allowHalfOpen: true }, (socket) => socket.pipe(socket));
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
    ports.ssh = await freePort();
    ports.http = await freePort();
    ports.tcp = await freePort();
  });
  after(async () => {
    await server?.stop();
    await new Promise((resolve) => echo?.close(resolve));
    await upstream?.close();
    await sshd?.stop();
    await work?.remove();
  });

  function validManifests(): string {
    return manifests(
      object('Secret', 'web-1', {
        stringData: { username: sshd.user, privateKey: sshd.clientKey.privateKey },
      }),
      object('Secret', 'billing-api', { stringData: { token: 'held-token-s3cret' } }),
      object('Connection', 'web-1', {
        spec: {
          protocol: 'ssh',
          host: sshd.host,
          port: sshd.port,
          credentials: { secretRef: { name: 'web-1' } },
          ssh: { knownHosts: sshd.knownHosts },
        },
      }),
      object('Connection', 'billing-api', {
        spec: {
          protocol: 'http',
          host: '127.0.0.1',
          port: upstream.port,
          credentials: { secretRef: { name: 'billing-api' } },
          http: { scheme: 'http' },
        },
      }),
      object('Connection', 'cache', {
        spec: { protocol: 'tcp', host: '127.0.0.1', port: (echo.address() as AddressInfo).port },
      }),
      // Exists, but no AccessPolicy grants it.
      object('Connection', 'payroll-db', {
        spec: {
          protocol: 'postgres',
          host: '127.0.0.1',
          port: 5432,
          credentials: { secretRef: { name: 'billing-api' } },
        },
      }),
      object('AccessPolicy', 'agents', {
        spec: {
          subjects: [{ kind: 'ServiceAccount', name: 'agent' }],
          connections: ['web-1', 'billing-api', 'cache'],
          masking: [{ name: 'pii', detectors: ['credit-card', 'email'], strategy: 'redact' }],
          rules: [
            {
              name: 'no-admin',
              action: 'deny',
              message: 'admin endpoints are off limits',
              http: { paths: ['/admin', '/admin/**'] },
            },
            { name: 'no-rm-rf', action: 'deny', ssh: { commands: ['rm -rf *', 'rm -r *'] } },
          ],
        },
      }),
    );
  }

  it('serves SSH, HTTP and TCP from one set of manifests, and records each session', async () => {
    const dir = join(work.path, 'manifests');
    mkdirSync(dir);
    writeFileSync(join(dir, 'airlock.yaml'), validManifests());
    const logFile = join(work.path, 'airlock.log');
    server = (
      await startLocal({
        manifests: dir,
        logFile,
        as: identity,
        listen: {
          'web-1': `127.0.0.1:${ports.ssh}`,
          'billing-api': `127.0.0.1:${ports.http}`,
          cache: `127.0.0.1:${ports.tcp}`,
        },
        store,
      })
    ).service;

    // HTTP: one keep-alive connection, a masked JSON response, then a denied admin path.
    const base = `http://127.0.0.1:${ports.http}`;
    const http = await runCommand('curl', [
      '-s',
      '-S',
      '-w',
      '\n%{http_code}\n',
      `${base}/data`,
      `${base}/admin/users`,
    ]);
    assert.equal(http.code, 0, http.stderr);
    const [dataBody, dataStatus, adminBody, adminStatus] = http.stdout.trimEnd().split('\n');
    assert.equal(dataStatus, '200');
    const data = JSON.parse(dataBody!);
    assert.equal(data.customer.card, '[REDACTED:credit-card]');
    assert.equal(data.customer.email, '[REDACTED:email]');
    assert.equal(data.customer.tier, customer.customer.tier);
    assert.ok(!dataBody!.includes('4111'), dataBody);
    assert.equal(adminStatus, '403');
    const problem = JSON.parse(adminBody!);
    assert.equal(problem.rule, 'no-admin');
    assert.match(problem.detail, /denied by AccessPolicy "agents" rule "no-admin": admin endpoints/);
    assert.deepEqual(
      upstream.requests.map((r) => r.url),
      ['/data'],
      'the denied path never reaches the target',
    );
    assert.equal(upstream.requests[0]?.headers.authorization, 'Bearer held-token-s3cret');

    // SSH: the enforcer's host key is new on every start; the agent trusts it on first use.
    const ssh = [
      '-F',
      '/dev/null',
      '-o',
      'BatchMode=yes',
      '-o',
      'StrictHostKeyChecking=no',
      '-o',
      'UserKnownHostsFile=/dev/null',
      '-o',
      'LogLevel=ERROR',
      '-p',
      String(ports.ssh),
      'agent@127.0.0.1',
    ];
    const masked = await runCommand('ssh', [
      ...ssh,
      'echo card 4111111111111111; echo mail alice@example.com; whoami',
    ]);
    assert.equal(masked.code, 0, masked.stderr);
    assert.equal(masked.stdout, `card [REDACTED:credit-card]\nmail [REDACTED:email]\n${sshd.user}\n`);
    // Denied before anything runs (and GNU rm's --preserve-root would refuse it anyway).
    const denied = await runCommand('ssh', [...ssh, 'rm -rf /']);
    assert.equal(denied.code, 126);
    assert.match(denied.stderr, /airlock: command denied by AccessPolicy "agents" rule "no-rm-rf"/);

    // TCP: bytes pass unchanged both ways, half-close included.
    const payload = Buffer.from(Array.from({ length: 256 * 1024 }, (_, i) => (i * 7) % 256));
    const echoed = await exchange(ports.tcp, payload);
    assert.ok(echoed.equals(payload), `echoed ${echoed.length} of ${payload.length} bytes`);

    // The sessions, through the running process's control socket.
    const expected = [
      { connection: 'billing-api', protocol: 'http', requests: 2, blocked: 1, masked: 3 },
      { connection: 'cache', protocol: 'tcp', requests: 1, blocked: 0, masked: 0 },
      { connection: 'web-1', protocol: 'ssh', requests: 1, blocked: 0, masked: 2 },
      { connection: 'web-1', protocol: 'ssh', requests: 1, blocked: 1, masked: 0 },
    ];
    let sessions: SessionSummary[] = [];
    const shape = (list: SessionSummary[]) =>
      list
        .map(({ connection, protocol, requests, blocked, masked }) => ({
          connection,
          protocol,
          requests,
          blocked,
          masked,
        }))
        .sort((a, b) => `${a.connection}${a.blocked}`.localeCompare(`${b.connection}${b.blocked}`));
    // Events are recorded asynchronously: poll briefly until every session has its request.
    for (let i = 0; i < 50; i++) {
      const list = await airlock(['sessions', 'list', '-o', 'json', '--store', store]);
      assert.equal(list.code, 0, list.stderr);
      sessions = JSON.parse(list.stdout) as SessionSummary[];
      if (JSON.stringify(shape(sessions)) === JSON.stringify(expected)) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.deepEqual(shape(sessions), expected);
    const newest = await airlock(['sessions', 'list', '-o', 'json', '--limit', '1', '--store', store]);
    assert.equal(newest.code, 0, newest.stderr);
    assert.deepEqual(JSON.parse(newest.stdout), sessions.slice(0, 1));
    assert.match(newest.stderr, /showing the newest 1; older sessions exist/);
    const every = await airlock(['sessions', 'list', '--limit', String(sessions.length), '--store', store]);
    assert.equal(every.code, 0, every.stderr);
    assert.equal(every.stdout.trim().split('\n').length, sessions.length + 1, every.stdout);
    assert.doesNotMatch(every.stderr, /older sessions exist/);
    for (const limit of ['0', '-1', '1.5', 'many', '10001']) {
      const refused = await airlock(['sessions', 'list', `--limit=${limit}`, '--store', store]);
      assert.equal(refused.code, 2, `--limit ${limit}`);
      assert.match(refused.stderr, /Usage: airlock sessions list \[--limit N\]/);
    }
    assert.ok(sessions.every((s) => s.identity.includes('agent') && s.namespace === 'ops'));
    assert.ok(server.child.exitCode === null, 'the server is still running');
  });

  describe('refuses to start', () => {
    /** Runs `airlock local` on one manifest file; it should exit at once. */
    async function start(
      name: string,
      yaml: string,
      listen: string,
    ): Promise<CommandResult & { file: string }> {
      const file = join(work.path, `${name}.yaml`);
      writeFileSync(file, yaml);
      const store = join(work.path, `${name}-store`);
      return {
        ...(await airlock(['local', '-f', file, '--as', identity, '--listen', listen, '--store', store])),
        file,
      };
    }

    it('on an ssh Connection without knownHosts, naming the file, the object and the field', async () => {
      const result = await start(
        'no-known-hosts',
        manifests(
          object('Connection', 'web-1', {
            spec: {
              protocol: 'ssh',
              host: '127.0.0.1',
              port: 22,
              credentials: { secretRef: { name: 'web-1' } },
            },
          }),
        ),
        `web-1=127.0.0.1:${await freePort()}`,
      );
      assert.equal(result.code, 2, result.stderr);
      assert.ok(result.stderr.includes(`${result.file}: Connection ops/web-1: `), result.stderr);
      assert.match(result.stderr, /ssh\.knownHosts is required for protocol ssh/);
    });

    it('on a require-approval rule without approval', async () => {
      const result = await start(
        'no-approval',
        manifests(
          object('AccessPolicy', 'agents', {
            spec: {
              subjects: [{ kind: 'ServiceAccount', name: 'agent' }],
              connections: ['billing-api'],
              rules: [
                { name: 'no-admin', action: 'deny', http: { paths: ['/admin/**'] } },
                { name: 'hold-deploys', action: 'require-approval', http: { paths: ['/deploy/**'] } },
              ],
            },
          }),
        ),
        `billing-api=127.0.0.1:${await freePort()}`,
      );
      assert.equal(result.code, 2, result.stderr);
      assert.ok(
        result.stderr.includes(
          `${result.file}: AccessPolicy ops/agents: spec.rules[1]: approval is required when action is require-approval`,
        ),
        result.stderr,
      );
    });

    it('on a --listen for a Connection not granted to the identity', async () => {
      const result = await start('not-granted', validManifests(), `payroll-db=127.0.0.1:${await freePort()}`);
      assert.equal(result.code, 2, result.stderr);
      assert.match(
        result.stderr,
        /Connection payroll-db is not granted to system:serviceaccount:ops:agent by any AccessPolicy/,
      );
    });
  });
});
