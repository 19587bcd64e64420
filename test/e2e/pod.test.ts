// Injected agent pods on a real single-node cluster: the operator installed from the chart with
// the built image injects them; the kubelet runs `airlock-init` as an init container and the
// sidecar as a native sidecar; the agent image's unchanged psql reaches the database (a real
// PostgreSQL on the node, behind the Service orders-db.data.svc.cluster.local) only through the
// sidecar, and every bypass from inside the agent's container fails.
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { request } from 'node:https';
import { createServer } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { type Cluster, requiresCluster, startCluster } from '../support/cluster.ts';
import { serviceAccountIssuer } from '../support/controlplane.ts';
import { grantApprovers, grantOrdersDb, grantSessionReaders } from '../support/operator.ts';
import { type PostgresServer, startPostgres } from '../support/postgres.ts';
import { waitFor } from '../support/process.ts';
import { requires } from '../support/tools.ts';

const host = 'orders-db.data.svc.cluster.local';
const sidecar = 'airlock-sidecar';
const psqlArgs = (to: string, port: number, sql: string) => [
  'psql',
  '-X',
  '-At',
  '-h',
  to,
  '-p',
  String(port),
  '-U',
  'agent',
  '-d',
  'orders',
  '-c',
  sql,
];
const psqlEnv = { PGPASSWORD: 'not-the-password', PGCONNECT_TIMEOUT: '5' };

describe('injected agent pods on a real cluster: capture, enforcement, the kubelet, and bypass attempts', {
  ...requiresCluster(),
  ...requires('postgres'),
}, () => {
  let cluster: Cluster;
  let database: PostgresServer;
  let uid = '';
  const kubectl = (args: string[], input?: string) =>
    cluster.kubectl(args, input === undefined ? {} : { input });
  const psql = (to: string, port: number, sql: string, pod = 'agent-0') =>
    cluster.exec(pod, psqlArgs(to, port, sql), { env: psqlEnv });
  const python = (code: string) => cluster.exec('agent-0', ['python3', '-c', code]);
  const count = async (sql: string) => (await database.admin(sql, database.database)).rows[0].n as string;
  const airlock = (args: string[]) => cluster.plugin('approver', [...args, '-n', 'agents']);
  const sessionTimelines = async () => {
    const list = await airlock(['sessions', 'list', '-o', 'json']);
    assert.equal(list.code, 0, list.err);
    const sessions: { id: string; connection: string; blocked: number }[] = JSON.parse(list.out);
    const shown = await Promise.all(sessions.map((s) => airlock(['sessions', 'show', s.id])));
    return { sessions, all: shown.map((s) => s.out).join('\n') };
  };
  const service = async (namespace: string, name: string) =>
    JSON.parse(await kubectl(['get', 'service', name, '-n', namespace, '-o', 'json'])).spec
      .clusterIP as string;

  before(async () => {
    cluster = await startCluster();
    database = await startPostgres({
      network: { listen: [cluster.nodeIp, cluster.nodeIp6], clients: cluster.podCidrs },
    });
    await database.admin(
      "CREATE TABLE customers (id int, email text); INSERT INTO customers VALUES (1, 'ada@example.com'); CREATE TABLE drained (id int)",
      database.database,
    );
    await database.admin(`GRANT ALL ON customers, drained TO ${database.user}`, database.database);
    await cluster.serviceOnNode('data', 'orders-db', 5432, database.port);
    await cluster.installAirlock();

    await kubectl(['create', 'namespace', 'agents']);
    await kubectl(['label', 'namespace', 'agents', 'airlock.dev/injection=enabled']);
    await kubectl(['create', 'serviceaccount', 'agent', '-n', 'agents']);
    await grantOrdersDb(cluster, database, {
      host,
      port: 5432,
      policy: {
        masking: [{ name: 'pii', detectors: ['email'] }],
        rules: [
          { name: 'no-drop', action: 'deny', sql: { statements: ['DROP'] } },
          {
            name: 'deletes',
            action: 'require-approval',
            sql: { statements: ['DELETE'] },
            approval: { approvers: { groups: ['dba-oncall'] }, timeout: '2m' },
          },
        ],
      },
    });
    // Approvers need RBAC on AccessRequests; the admission webhooks decide who may decide.
    await grantApprovers(cluster, { groups: ['dba-oncall'] });
    // alice also reads the recorded sessions of "agents" (the chart's airlock-session-reader).
    await grantSessionReaders(cluster, ['dba-oncall']);
    await waitFor(
      'the Connection ready',
      async () =>
        (await kubectl([
          'get',
          'conn',
          'orders-db',
          '-n',
          'agents',
          '-o',
          'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
        ])) === 'True',
    );
    // The agent's first act, as it starts, is a query: it is served only if the sidecar was
    // ready, with its bundle, before the agent's container started.
    await cluster.runAgent('agent-0', {
      command: [
        'sh',
        '-c',
        `env PGPASSWORD=x PGCONNECT_TIMEOUT=5 ${psqlArgs(host, 5432, "'SELECT id, email FROM customers'").join(' ')} >/tmp/first 2>&1; echo "exit $?" >>/tmp/first; exec sleep infinity`,
      ],
    });
    uid = JSON.parse(await kubectl(['get', 'pod', 'agent-0', '-n', 'agents', '-o', 'json'])).metadata.uid;
  });
  after(async () => {
    await cluster?.stop();
    await database?.stop();
  });

  test('the kubelet ran airlock-init as an init container and the sidecar as a native sidecar', async () => {
    const pod = JSON.parse(await kubectl(['get', 'pod', 'agent-0', '-n', 'agents', '-o', 'json']));
    const init = pod.spec.initContainers.map((c: { name: string; restartPolicy?: string }) => [
      c.name,
      c.restartPolicy ?? '',
    ]);
    assert.deepEqual(init, [
      ['airlock-init', ''],
      [sidecar, 'Always'],
    ]);
    assert.deepEqual(
      pod.spec.containers.map((c: { name: string; command: string[] }) => c.name),
      ['agent'],
    );
    const log = await cluster.logs('agent-0', 'airlock-init');
    assert.match(log, /installed ip route replace local 240\.240\.0\.0\/16 dev lo/);
    assert.match(log, /egress strict/);
    assert.match(log, /ip6tables -t filter OUTPUT -> AIRLOCK_OUTPUT/);
  });

  test('the sidecar is ready before the agent starts: the agent’s first query, at its start, is served and masked', async () => {
    const first = await cluster.exec('agent-0', ['cat', '/tmp/first']);
    assert.match(first.stdout, /^1\|/);
    assert.match(first.stdout, /exit 0\n$/);
    assert.ok(!first.stdout.includes('ada@example.com'), first.stdout);
  });

  test("the agent's unchanged psql, by the Service's DNS name, sees masked data and gets DROP refused", async () => {
    const row = await psql(host, 5432, 'SELECT id, email FROM customers');
    assert.equal(row.code, 0, row.stderr);
    assert.match(row.stdout, /^1\|/);
    assert.ok(!row.stdout.includes('ada@example.com'), row.stdout);
    const drop = await psql(host, 5432, 'DROP TABLE customers');
    assert.notEqual(drop.code, 0);
    assert.match(drop.stderr, /AccessPolicy "agent-orders" rule "no-drop"/);
    assert.equal(await count('SELECT count(*) AS n FROM customers'), '1');
  });

  test('a held DELETE becomes an AccessRequest; alice approves it with kubectl airlock and it runs', async () => {
    await database.admin("INSERT INTO customers VALUES (2, 'grace@example.com')", database.database);
    const statement = psql(host, 5432, 'DELETE FROM customers WHERE id = 2');
    let name = '';
    await waitFor('the AccessRequest', async () => {
      const list = JSON.parse(await kubectl(['get', 'ar', '-n', 'agents', '-o', 'json']));
      name =
        list.items.find((r: { spec: { request: string } }) => r.spec.request.includes('DELETE'))?.metadata
          .name ?? '';
      return name !== '';
    });
    const held = JSON.parse(await kubectl(['get', 'ar', name, '-n', 'agents', '-o', 'json']));
    assert.deepEqual(held.spec.requester, { pod: 'agent-0', serviceAccount: 'agent' });
    assert.equal(held.spec.rule, 'deletes');
    const approve = await airlock(['approve', name]);
    assert.equal(approve.code, 0, approve.out);
    assert.match(approve.out, /approved/);
    const result = await statement;
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /DELETE 1/);
    const decided = JSON.parse(await kubectl(['get', 'ar', name, '-n', 'agents', '-o', 'json']));
    assert.equal(decided.status.phase, 'Approved');
    assert.equal(decided.status.decidedBy, 'alice');
    assert.equal(await count('SELECT count(*) AS n FROM customers'), '1');
  });

  test("the sidecar's log records the session and holds no credential and no unmasked value", async () => {
    const log = await cluster.logs('agent-0', sidecar);
    assert.match(log, /"msg":"session event"/);
    assert.match(log, /"outcome":"blocked"/);
    assert.ok(!log.includes(database.password));
    assert.ok(!log.includes('ada@example.com'));
  });

  test('alice reads the recorded sessions through the API server: the DROP blocked, the DELETE approved by her', async () => {
    await waitFor('the sessions reach the collector', async () =>
      (await sessionTimelines()).sessions.some((s) => s.blocked > 0),
    );
    const { sessions, all } = await sessionTimelines();
    assert.ok(sessions.every((s) => s.connection === 'orders-db'));
    assert.match(all, /blocked\s+DROP TABLE customers/);
    assert.match(all, /approved\s+DELETE FROM customers WHERE id = 2\s+\[.*decided by alice/);
    assert.ok(!all.includes('ada@example.com'), 'no unmasked value in the recorded sessions');
  });

  // The sidecar reaches the database from this same pod: what stops the agent is the
  // capture, not routing, the Service or pg_hba.
  test('bypass: the database at its node address and at its Service IP, from the agent, is refused', async () => {
    for (const [to, port] of [
      [cluster.nodeIp, database.port],
      [await service('data', 'orders-db'), 5432],
    ] as const) {
      const direct = await psql(to, port, 'SELECT email FROM customers');
      assert.notEqual(direct.code, 0, `${to}:${port}`);
      assert.match(direct.stderr, /Connection refused/, `${to}:${port}`);
    }
  });

  test('bypass: the database over IPv6 is refused', async () => {
    const v6 = await psql(cluster.nodeIp6, database.port, 'SELECT email FROM customers');
    assert.notEqual(v6.code, 0);
    assert.match(v6.stderr, /Connection refused/);
  });

  test("bypass: another Service (the operator's control API) and a name the agent is not granted are refused", async () => {
    for (const [to, port] of [
      [await service('airlock-system', 'airlock-operator'), 9443],
      ['kubernetes.default.svc.cluster.local', 443],
    ] as const) {
      const other = await python(`import socket; socket.create_connection(("${to}", ${port}), timeout=5)`);
      assert.notEqual(other.code, 0, `${to}:${port}`);
      assert.match(other.stderr, /ConnectionRefusedError/, `${to}:${port}`);
    }
  });

  test('bypass: a raw socket needs CAP_NET_RAW, which the agent lacks', async () => {
    const raw = await python(
      'import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)',
    );
    assert.notEqual(raw.code, 0);
    assert.match(raw.stderr, /PermissionError: \[Errno 1\] Operation not permitted/);
  });

  test('bypass: a name the cluster does not know fails; the granted one resolves to its virtual IP', async () => {
    const other = await psql('orders-db-replica.data.svc.cluster.local', 5432, 'SELECT 1');
    assert.notEqual(other.code, 0);
    assert.match(other.stderr, /could not translate host name/);
    const resolved = await cluster.exec('agent-0', ['getent', 'hosts', host]);
    assert.match(resolved.stdout, /^240\.240\.0\.\d+\s/);
  });

  test("bypass: the agent's own ServiceAccount token is refused by the control API", async () => {
    // A token as the kubelet mounts one for the agent: the API server's audience, not airlock.
    const own = await kubectl([
      'create',
      'token',
      'agent',
      '--namespace=agents',
      `--audience=${serviceAccountIssuer}`,
      '--bound-object-kind=Pod',
      '--bound-object-name=agent-0',
      `--bound-object-uid=${uid}`,
    ]);
    const ca = JSON.parse(await kubectl(['get', 'configmap', 'airlock-ca', '-n', 'agents', '-o', 'json']))
      .data['ca.crt'];
    const address = await service('airlock-system', 'airlock-operator');
    // From the node (inside the pod, strict egress already refuses the connection).
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(
        `https://${address}:9443/v1/bundle`,
        {
          ca,
          servername: 'airlock-operator.airlock-system.svc',
          headers: { authorization: `Bearer ${own.trim()}` },
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.end();
    });
    assert.equal(status, 401);
  });

  test("bypass: the agent's container has neither the sidecar's token nor a view of its processes", async () => {
    const read = await cluster.exec('agent-0', ['cat', '/var/run/secrets/airlock.dev/serviceaccount/token']);
    assert.notEqual(read.code, 0);
    assert.match(read.stderr, /No such file or directory/);
    const processes = await python(
      'import os\nfor p in os.listdir("/proc"):\n  if p.isdigit():\n    try: print(open(f"/proc/{p}/cmdline","rb").read().replace(b"\\0",b" ").decode())\n    except OSError: pass',
    );
    assert.equal(processes.code, 0, processes.stderr);
    assert.match(processes.stdout, /sleep infinity/);
    assert.doesNotMatch(processes.stdout, /airlock|sidecar/);
  });

  // A UDP and a TCP listener on port 53 of the node's address, which is not the pod's
  // nameserver (the cluster DNS Service is), and UDP to another port there. The sidecar's uid
  // reaches them (the path exists); the agent reaches none.
  test('bypass: UDP to another address, and port 53 of an address that is not the nameserver, are refused', async () => {
    const received: string[] = [];
    const udp = createSocket('udp4');
    udp.on('message', (message) => received.push(message.toString()));
    await new Promise<void>((resolve) => udp.bind(53, cluster.nodeIp, resolve));
    const tcp = createServer((socket) => {
      received.push('tcp');
      socket.destroy();
    });
    await new Promise<void>((resolve) => tcp.listen(53, cluster.nodeIp, resolve));
    const other = createSocket('udp4');
    other.on('message', (message) => received.push(`other:${message.toString()}`));
    await new Promise<void>((resolve) => other.bind(0, cluster.nodeIp, resolve));
    const otherPort = other.address().port;
    const agentSend = (text: string, port: number) =>
      python(
        `import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ntry:\n  s.sendto(b"${text}", ("${cluster.nodeIp}", ${port})); print("sent")\nexcept OSError as e: print("refused", e.errno)`,
      );
    const sidecarSend = (text: string, port: number) =>
      cluster.exec(
        'agent-0',
        [
          'node',
          '-e',
          `const s = require('node:dgram').createSocket('udp4'); s.send('${text}', ${port}, '${cluster.nodeIp}', (e) => { if (e) throw e; s.close(); })`,
        ],
        { container: sidecar },
      );
    try {
      assert.match((await agentSend('agent-dns', 53)).stdout, /refused|sent/);
      assert.match((await agentSend('agent-other', otherPort)).stdout, /refused|sent/);
      const tcp53 = await python(
        `import socket; socket.create_connection(("${cluster.nodeIp}", 53), timeout=5)`,
      );
      assert.notEqual(tcp53.code, 0);
      assert.match(tcp53.stderr, /ConnectionRefusedError/);
      // The control: the sidecar's uid gets through, and after its datagrams arrive, anything
      // the agent had got through would have arrived too.
      assert.equal((await sidecarSend('sidecar-dns', 53)).code, 0);
      assert.equal((await sidecarSend('sidecar-other', otherPort)).code, 0);
      await waitFor('the sidecar datagrams', async () => received.length >= 2, { timeoutMs: 5000 });
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.deepEqual(received.sort(), ['other:sidecar-other', 'sidecar-dns']);
    } finally {
      udp.close();
      other.close();
      await new Promise((resolve) => tcp.close(resolve));
    }
  });

  test("the kubelet restarts a killed sidecar and the agent's next connection is served", async () => {
    const restarts = async () => {
      const status = JSON.parse(
        await kubectl(['get', 'pod', 'agent-0', '-n', 'agents', '-o', 'json']),
      ).status;
      const found = status.initContainerStatuses.find((c: { name: string }) => c.name === sidecar);
      return { count: found.restartCount as number, ready: found.ready as boolean };
    };
    const before = (await restarts()).count;
    await cluster.killContainer('agents', 'agent-0', sidecar);
    await waitFor('the sidecar restarted and ready', async () => {
      const now = await restarts();
      return now.count > before && now.ready;
    });
    const row = await psql(host, 5432, 'SELECT id, email FROM customers');
    assert.equal(row.code, 0, row.stderr);
    assert.match(row.stdout, /^1\|/);
    assert.ok(!row.stdout.includes('ada@example.com'), row.stdout);
  });

  test('a pod whose ServiceAccount loses its grant is refused at once, and served again when it is back', async () => {
    const subjects = (name: string) =>
      kubectl([
        'patch',
        'accesspolicy',
        'agent-orders',
        '-n',
        'agents',
        '--type=merge',
        '-p',
        JSON.stringify({ spec: { subjects: [{ kind: 'ServiceAccount', name }] } }),
      ]);
    await subjects('someone-else');
    await waitFor('the agent refused', async () => (await psql(host, 5432, 'SELECT 1')).code !== 0, {
      timeoutMs: 30_000,
    });
    const refused = await psql(host, 5432, 'SELECT id, email FROM customers');
    assert.notEqual(refused.code, 0);
    assert.doesNotMatch(refused.stdout, /^1\|/);
    await subjects('agent');
    await waitFor('the agent served again', async () => (await psql(host, 5432, 'SELECT 1')).code === 0, {
      timeoutMs: 30_000,
    });
  });

  test('a deleted pod drains: its running statement completes and the session is recorded', async () => {
    // The agent finishes its statement on SIGTERM; the kubelet stops the native sidecar only
    // after the agent has exited, and the sidecar records the session as it stops.
    await cluster.runAgent('agent-drain', {
      restartPolicy: 'Never',
      command: [
        'sh',
        '-c',
        `trap '' TERM; env PGPASSWORD=x PGCONNECT_TIMEOUT=5 ${psqlArgs(host, 5432, "'SELECT pg_sleep(6)'").join(' ')} -c 'INSERT INTO drained VALUES (1)'`,
      ],
    });
    await waitFor(
      'the statement running',
      async () =>
        (await count("SELECT count(*) AS n FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(6)%'")) ===
        '1',
    );
    await kubectl(['delete', 'pod', 'agent-drain', '-n', 'agents', '--wait=false']);
    await kubectl(['wait', '--for=delete', 'pod/agent-drain', '-n', 'agents', '--timeout=60s']);
    assert.equal(await count('SELECT count(*) AS n FROM drained'), '1');
    await waitFor('the drained session recorded', async () =>
      /INSERT INTO drained VALUES \(1\)/.test((await sessionTimelines()).all),
    );
  });
});
