// An injected agent pod on a real single-node cluster whose unchanged clients run
// `ssh deploy@bastion.data.svc.cluster.local …`, `curl http://billing-api.data.svc.cluster.local/…`
// and psql to a Connection named by an IP literal: the sidecar enforces against a real OpenSSH
// server, a real HTTP server and a real PostgreSQL on the node, reached by their Services' DNS
// names (or, for the IP literal, the node's address). Going around the sidecar fails.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type Cluster, requiresCluster, startCluster } from '../support/cluster.ts';
import { type PostgresServer, startPostgres } from '../support/postgres.ts';
import { waitFor } from '../support/process.ts';
import { type Sshd, startSshd } from '../support/sshd.ts';
import { requires } from '../support/tools.ts';

const heldToken = 'held-billing-token-7f3a';
const bastion = 'bastion.data.svc.cluster.local';
const billingApi = 'billing-api.data.svc.cluster.local';

/** The billing API: JSON with a customer's email, an admin route, and what reached it. */
async function startBillingApi(
  host: string,
): Promise<{ server: Server; port: number; seen: IncomingHttpHeaders[] }> {
  const seen: IncomingHttpHeaders[] = [];
  const server = createServer((req, res) => {
    seen.push(req.headers);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ path: req.url, customer: { id: 7, email: 'grace@example.com' } }));
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return { server, port: (server.address() as AddressInfo).port, seen };
}

describe('an injected agent pod on a real cluster: ssh, http and an IP-literal Connection', {
  ...requiresCluster(),
  ...requires('sshd', 'postgres'),
}, () => {
  let cluster: Cluster;
  let sshd: Sshd;
  let billing: Awaited<ReturnType<typeof startBillingApi>>;
  let database: PostgresServer;
  let victim: string;
  const kubectl = (args: string[], input?: string) =>
    cluster.kubectl(args, input === undefined ? {} : { input });
  const apply = (manifest: object) => kubectl(['apply', '-f', '-'], JSON.stringify(manifest));
  // The agent's own ssh: no key, and it cannot know the sidecar's host key in advance.
  const ssh = (destination: string, command: string, port = 22) =>
    cluster.exec('agent-0', [
      'ssh',
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
      '-o',
      'ConnectTimeout=5',
      '-p',
      String(port),
      destination,
      command,
    ]);
  const curl = (url: string) =>
    cluster.exec('agent-0', ['curl', '-sS', '--max-time', '10', '-w', '\\n%{http_code}', url]);
  const psql = (host: string, port: number, sql: string) =>
    cluster.exec(
      'agent-0',
      ['psql', '-X', '-At', '-h', host, '-p', String(port), '-U', 'agent', '-d', 'orders', '-c', sql],
      { env: { PGPASSWORD: 'not-the-password', PGCONNECT_TIMEOUT: '5' } },
    );

  before(async () => {
    cluster = await startCluster();
    sshd = await startSshd({ extraConfig: [`ListenAddress ${cluster.nodeIp}`] });
    writeFileSync(join(sshd.dir, 'customers.txt'), 'customer 7 grace@example.com\n', { mode: 0o644 });
    victim = join(sshd.dir, 'victim');
    mkdirSync(victim);
    billing = await startBillingApi(cluster.nodeIp);
    database = await startPostgres({ network: { listen: [cluster.nodeIp], clients: cluster.podCidrs } });
    await database.admin(
      "CREATE TABLE customers (id int, email text); INSERT INTO customers VALUES (1, 'ada@example.com')",
      database.database,
    );
    await database.admin(`GRANT ALL ON customers TO ${database.user}`, database.database);
    await cluster.serviceOnNode('data', 'bastion', 22, sshd.port);
    await cluster.serviceOnNode('data', 'billing-api', 80, billing.port);
    await cluster.installAirlock();

    await kubectl(['create', 'namespace', 'agents']);
    await kubectl(['label', 'namespace', 'agents', 'airlock.dev/injection=enabled']);
    await kubectl(['create', 'serviceaccount', 'agent', '-n', 'agents']);
    const secret = (name: string, stringData: Record<string, string>) =>
      apply({ apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: 'agents' }, stringData });
    await secret('bastion', { username: sshd.user, privateKey: sshd.clientKey.privateKey });
    await secret('billing-api', { token: heldToken });
    await secret('orders-ip', { username: database.user, password: database.password });
    const connection = (name: string, spec: object) =>
      apply({
        apiVersion: 'airlock.dev/v1alpha1',
        kind: 'Connection',
        metadata: { name, namespace: 'agents' },
        spec: { tls: { mode: 'disable' }, credentials: { secretRef: { name } }, ...spec },
      });
    await connection('bastion', {
      protocol: 'ssh',
      host: bastion,
      port: 22,
      ssh: { knownHosts: sshd.knownHosts.map((line) => line.replace(/^\[127\.0\.0\.1\]:\d+/, bastion)) },
    });
    await connection('billing-api', {
      protocol: 'http',
      host: billingApi,
      port: 80,
      http: { scheme: 'http' },
    });
    await connection('orders-ip', {
      protocol: 'postgres',
      host: cluster.nodeIp,
      port: database.port,
      postgres: { database: database.database },
    });
    const policy = (name: string, connections: string[], rules: object[]) =>
      apply({
        apiVersion: 'airlock.dev/v1alpha1',
        kind: 'AccessPolicy',
        metadata: { name, namespace: 'agents' },
        spec: {
          subjects: [{ kind: 'ServiceAccount', name: 'agent' }],
          connections,
          masking: [{ name: 'pii', detectors: ['email'] }],
          rules,
        },
      });
    await policy(
      'agent-bastion',
      ['bastion'],
      [{ name: 'no-rm', action: 'deny', ssh: { commands: ['rm *'] } }],
    );
    await policy(
      'agent-billing',
      ['billing-api'],
      [{ name: 'no-admin', action: 'deny', http: { paths: ['/admin', '/admin/**'] } }],
    );
    await policy(
      'agent-orders',
      ['orders-ip'],
      [{ name: 'no-drop', action: 'deny', sql: { statements: ['DROP'] } }],
    );
    for (const name of ['bastion', 'billing-api', 'orders-ip'])
      await waitFor(
        `Connection ${name} ready`,
        async () =>
          (await kubectl([
            'get',
            'conn',
            name,
            '-n',
            'agents',
            '-o',
            'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
          ])) === 'True',
      );
    await cluster.runAgent('agent-0');
  });
  after(async () => {
    await cluster?.stop();
    await database?.stop();
    await new Promise((resolve) => billing?.server.close(resolve));
    await sshd?.stop();
  });

  test(`the agent's unchanged ssh deploy@${bastion} runs an allowed command with masked output`, async () => {
    const result = await ssh(`deploy@${bastion}`, `cat ${join(sshd.dir, 'customers.txt')}`);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^customer 7 /);
    assert.ok(!result.stdout.includes('grace@example.com'), result.stdout);
  });

  // Not `rm -rf /` itself: sshd runs as root on this machine, so the test aims at a directory
  // of its own and checks that it survived.
  test('rm -rf over ssh is refused and nothing is removed', async () => {
    const result = await ssh(`deploy@${bastion}`, `rm -rf ${victim}`);
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /AccessPolicy "agent-bastion" rule "no-rm"|no-rm/);
    assert.ok(existsSync(victim));
  });

  test("the agent's unchanged curl gets masked JSON, a 403 on /admin, and the upstream sees the held token", async () => {
    const before = billing.seen.length;
    const data = await curl(`http://${billingApi}/v1/customers/7`);
    assert.equal(data.code, 0, data.stderr);
    assert.match(data.stdout, /\n200$/);
    const body = JSON.parse(data.stdout.replace(/\n200$/, ''));
    assert.equal(body.customer.id, 7);
    assert.notEqual(body.customer.email, 'grace@example.com');
    assert.equal(billing.seen.at(-1)?.authorization, `Bearer ${heldToken}`);
    const admin = await curl(`http://${billingApi}/admin/users`);
    assert.match(admin.stdout, /\n403$/);
    assert.equal(billing.seen.length, before + 1, 'the refused request never reached the upstream');
  });

  test('an IP-literal Connection: psql to the database IP is redirected to the sidecar, masked and denied', async () => {
    const row = await psql(cluster.nodeIp, database.port, 'SELECT id, email FROM customers');
    assert.equal(row.code, 0, row.stderr);
    assert.match(row.stdout, /^1\|/);
    assert.ok(!row.stdout.includes('ada@example.com'), row.stdout);
    const drop = await psql(cluster.nodeIp, database.port, 'DROP TABLE customers');
    assert.notEqual(drop.code, 0);
    assert.match(drop.stderr, /AccessPolicy "agent-orders" rule "no-drop"/);
  });

  test('bypass: ssh straight to the sshd address is refused', async () => {
    const result = await ssh(`${sshd.user}@${cluster.nodeIp}`, 'id', sshd.port);
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /Connection refused/);
  });

  test('bypass: curl straight to the upstream address is refused', async () => {
    const before = billing.seen.length;
    const result = await curl(`http://${cluster.nodeIp}:${billing.port}/admin/users`);
    assert.equal(result.code, 7, result.stderr);
    assert.match(result.stderr, /Couldn't connect|Connection refused|Failed to connect/);
    assert.equal(billing.seen.length, before);
  });

  test('bypass: another port on the IP-literal address (the sshd port) is refused', async () => {
    const other = await cluster.exec('agent-0', [
      'python3',
      '-c',
      `import socket; socket.create_connection(("${cluster.nodeIp}", ${sshd.port}), timeout=5)`,
    ]);
    assert.notEqual(other.code, 0);
    assert.match(other.stderr, /ConnectionRefusedError/);
  });

  test("the sidecar's log records the ssh and http sessions without the unmasked values", async () => {
    const log = await cluster.logs('agent-0', 'airlock-sidecar');
    assert.match(log, /"protocol":"ssh"/);
    assert.match(log, /"protocol":"http"/);
    assert.ok(!log.includes(heldToken));
    assert.ok(!log.includes('grace@example.com'));
    assert.ok(!log.includes(database.password));
  });
});
