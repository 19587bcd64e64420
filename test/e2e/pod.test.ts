// An injected pod, run on this machine by the pod runner: the real operator against a real
// API server injects it; `airlock init` captures its traffic in its own network namespace; the
// sidecar (uid 1337, the pod's TokenRequest token) serves the granted database; the agent's
// unchanged psql, as uid 1000, reaches it only through the sidecar, and every bypass fails.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { readFile } from 'node:fs/promises';
import { request } from 'node:https';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import type { V1Pod } from '@kubernetes/client-node';
import { type ControlPlane, serviceAccountIssuer, startControlPlane } from '../support/controlplane.ts';
import { grantOrdersDb, startOperatorProcess } from '../support/operator.ts';
import {
  type ClusterNetwork,
  podCidrs,
  type RunningPod,
  runPod,
  startClusterNetwork,
} from '../support/pod-runner.ts';
import { type PostgresServer, startPostgres } from '../support/postgres.ts';
import { type Service, temporaryDirectory, waitFor } from '../support/process.ts';
import { requires } from '../support/tools.ts';

const repository = new URL('../../', import.meta.url).pathname;
const cli = join(repository, 'bin/airlock.js');
const run = promisify(execFile);

describe(
  'an injected pod on this machine: capture, enforcement and bypass attempts',
  requires(
    'ip',
    'iptables',
    'ip6tables',
    'setpriv',
    'python3',
    'psql',
    'postgres',
    'etcd',
    'kube-apiserver',
    'kubectl',
  ),
  () => {
    let network: ClusterNetwork;
    let cluster: ControlPlane;
    let database: PostgresServer;
    let work: { path: string; remove(): Promise<void> };
    let operator: Service;
    let pod: RunningPod;
    let stored: V1Pod;
    const ports = { webhook: 0, controlApi: 0, probe: 0 };
    const kubectl = (args: string[], input?: string) =>
      cluster.kubectl(args, input === undefined ? {} : { input });
    const apply = (manifest: object) => kubectl(['apply', '-f', '-'], JSON.stringify(manifest));
    const psql = (host: string, port: number, sql: string) =>
      pod.exec(
        'psql',
        ['-X', '-At', '-h', host, '-p', String(port), '-U', 'agent', '-d', 'orders', '-c', sql],
        {
          env: { PGPASSWORD: 'not-the-password', PGCONNECT_TIMEOUT: '5' },
        },
      );

    before(async () => {
      work = await temporaryDirectory('e2e-pod');
      network = await startClusterNetwork();
      database = await startPostgres({
        network: { listen: [network.address, network.address6], clients: podCidrs },
      });
      await database.admin(
        "CREATE TABLE customers (id int, email text); INSERT INTO customers VALUES (1, 'ada@example.com')",
        database.database,
      );
      await database.admin(`GRANT ALL ON customers TO ${database.user}`, database.database);
      cluster = await startControlPlane();
      await cluster.installCrds();
      await kubectl(['create', 'namespace', 'airlock-system']);
      await kubectl(['create', 'namespace', 'agents']);
      await kubectl(['label', 'namespace', 'agents', 'airlock.dev/injection=enabled']);
      await kubectl(['create', 'serviceaccount', 'agent', '-n', 'agents']);
      await grantOrdersDb(cluster, database, {
        host: 'orders-db.data.svc.cluster.local',
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
      await kubectl([
        'create',
        'clusterrole',
        'airlock-approver',
        '--verb=get,list,watch,patch',
        '--resource=accessrequests.airlock.dev',
      ]);
      await kubectl([
        'create',
        'rolebinding',
        'approvers',
        '-n',
        'agents',
        '--clusterrole=airlock-approver',
        '--group=dba-oncall',
      ]);
      // alice also reads the recorded sessions of "agents" (the sessions API, through RBAC).
      await apply({
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'ClusterRole',
        metadata: { name: 'airlock-session-reader' },
        rules: [{ apiGroups: ['audit.airlock.dev'], resources: ['sessions'], verbs: ['get', 'list'] }],
      });
      await kubectl([
        'create',
        'rolebinding',
        'session-readers',
        '-n',
        'agents',
        '--clusterrole=airlock-session-reader',
        '--group=dba-oncall',
      ]);
      const started = await startOperatorProcess(cluster, work.path, {
        address: network.address,
        approvals: true,
        sessionsApi: true,
      });
      operator = started.service;
      Object.assign(ports, started.ports);
      await waitFor(
        'CA published',
        async () => (await kubectl(['get', 'configmap', 'airlock-ca', '-n', 'agents'])) !== '',
      );

      await apply({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'agent-0', namespace: 'agents' },
        spec: {
          serviceAccountName: 'agent',
          securityContext: { runAsUser: 1000 },
          containers: [{ name: 'agent', image: 'agent:1', command: ['sleep', 'infinity'] }],
        },
      });
      stored = JSON.parse(await kubectl(['get', 'pod', 'agent-0', '-n', 'agents', '-o', 'json']));
      // No cluster DNS on this machine: the sidecar reaches the database at its address on the
      // cluster bridge. The change reaches the sidecar through its bundle; the pod keeps its
      // hostAliases, so the agent still uses the hostname.
      await kubectl([
        'patch',
        'conn',
        'orders-db',
        '-n',
        'agents',
        '--type=merge',
        '-p',
        JSON.stringify({ spec: { host: network.address } }),
      ]);
      const token = await cluster.podToken(
        { namespace: 'agents', name: 'agent-0', uid: stored.metadata?.uid ?? '', serviceAccount: 'agent' },
        'airlock',
      );
      const ca = JSON.parse(await kubectl(['get', 'configmap', 'airlock-ca', '-n', 'agents', '-o', 'json']))
        .data['ca.crt'];
      pod = await runPod(stored, { network, token, ca });
      await waitFor('sidecar ready', async () => (await fetch(`http://${pod.address}:15021/readyz`)).ok, {
        service: pod.sidecar,
        timeoutMs: 30_000,
      });
    });
    after(async () => {
      await pod?.stop();
      await operator?.stop();
      await cluster?.stop();
      await database?.stop();
      await network?.stop();
      await work?.remove();
    });

    test('airlock init prints what it installed', () => {
      assert.match(pod.initOutput, /installed ip route replace local 240\.240\.0\.0\/16 dev lo/);
      assert.match(pod.initOutput, /egress strict/);
      assert.match(pod.initOutput, /ip6tables -t filter OUTPUT -> AIRLOCK_OUTPUT/);
    });

    test("the agent's unchanged psql, by hostname, sees masked data and gets DROP refused", async () => {
      const row = await psql(
        'orders-db.data.svc.cluster.local',
        database.port,
        'SELECT id, email FROM customers',
      );
      assert.equal(row.code, 0, row.stderr);
      assert.match(row.stdout, /^1\|/);
      assert.ok(!row.stdout.includes('ada@example.com'), row.stdout);
      const drop = await psql('orders-db.data.svc.cluster.local', database.port, 'DROP TABLE customers');
      assert.notEqual(drop.code, 0);
      assert.match(drop.stderr, /AccessPolicy "agent-orders" rule "no-drop"/);
      assert.equal(
        (await database.admin('SELECT count(*) AS n FROM customers', database.database)).rows[0].n,
        '1',
      );
    });

    test('a held DELETE becomes an AccessRequest; alice approves it and it runs', async () => {
      await database.admin("INSERT INTO customers VALUES (2, 'grace@example.com')", database.database);
      const statement = psql(
        'orders-db.data.svc.cluster.local',
        database.port,
        'DELETE FROM customers WHERE id = 2',
      );
      let name = '';
      await waitFor('the AccessRequest', async () => {
        const list = JSON.parse(await kubectl(['get', 'ar', '-n', 'agents', '-o', 'json']));
        name =
          list.items.find((r: { spec: { request: string } }) => r.spec.request.includes('DELETE'))?.metadata
            .name ?? '';
        return name !== '';
      });
      const request = JSON.parse(await kubectl(['get', 'ar', name, '-n', 'agents', '-o', 'json']));
      assert.deepEqual(request.spec.requester, { pod: 'agent-0', serviceAccount: 'agent' });
      assert.equal(request.spec.rule, 'deletes');
      const approve = await run(process.execPath, [
        cli,
        'approve',
        name,
        '-n',
        'agents',
        `--kubeconfig=${cluster.kubeconfig.approver}`,
      ]);
      assert.match(approve.stdout, /approved/);
      const result = await statement;
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /DELETE 1/);
      const stored = JSON.parse(await kubectl(['get', 'ar', name, '-n', 'agents', '-o', 'json']));
      assert.equal(stored.status.phase, 'Approved');
      assert.equal(stored.status.decidedBy, 'alice');
      assert.equal(
        (await database.admin('SELECT count(*) AS n FROM customers', database.database)).rows[0].n,
        '1',
      );
    });

    test("the sidecar's events record the session; its log holds no credential and no unmasked value", async () => {
      const log = await readFile(pod.sidecar.logFile, 'utf8');
      assert.match(log, /"msg":"session event"/);
      assert.match(log, /"outcome":"blocked"/);
      assert.ok(!log.includes(database.password));
      assert.ok(!log.includes('ada@example.com'));
    });

    test('alice reads the recorded sessions through the API server: the DROP blocked, the DELETE approved by her', async () => {
      const airlock = (args: string[]) =>
        run(process.execPath, [cli, ...args, '-n', 'agents', `--kubeconfig=${cluster.kubeconfig.approver}`]);
      let list: { id: string; connection: string; blocked: number }[] = [];
      await waitFor('the sessions reach the collector', async () => {
        list = JSON.parse((await airlock(['sessions', 'list', '-o', 'json'])).stdout);
        return list.some((s) => s.blocked > 0);
      });
      assert.ok(list.every((s) => s.connection === 'orders-db'));
      const timelines = await Promise.all(
        list.map(async (s) => (await airlock(['sessions', 'show', s.id])).stdout),
      );
      const all = timelines.join('\n');
      assert.match(all, /blocked\s+DROP TABLE customers/);
      assert.match(all, /approved\s+DELETE FROM customers WHERE id = 2\s+\[.*decided by alice/);
      assert.ok(!all.includes('ada@example.com'), 'no unmasked value in the recorded sessions');
    });

    // The sidecar reaches this same address from this same namespace (the first test): what
    // stops the agent is the capture, not routing or pg_hba.
    test('bypass: the database address directly from the agent uid is rejected', async () => {
      const direct = await psql(network.address, database.port, 'SELECT email FROM customers');
      assert.notEqual(direct.code, 0);
      assert.match(direct.stderr, /Connection refused/);
    });

    test('bypass: another port on the cluster (the control API) is rejected', async () => {
      const other = await pod.exec('/usr/bin/python3', [
        '-c',
        `import socket; socket.create_connection(("${network.address}", ${ports.controlApi}), timeout=5)`,
      ]);
      assert.notEqual(other.code, 0);
      assert.match(other.stderr, /ConnectionRefusedError/);
    });

    test('bypass: the database over IPv6 is rejected', async () => {
      const v6 = await psql(network.address6, database.port, 'SELECT email FROM customers');
      assert.notEqual(v6.code, 0);
      assert.match(v6.stderr, /Connection refused/);
    });

    test('bypass: a raw socket needs CAP_NET_RAW, which the agent lacks', async () => {
      const raw = await pod.exec('/usr/bin/python3', [
        '-c',
        'import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)',
      ]);
      assert.notEqual(raw.code, 0);
      assert.match(raw.stderr, /PermissionError: \[Errno 1\] Operation not permitted/);
    });

    test('bypass: a name outside hostAliases does not resolve; the granted one resolves to its virtual IP', async () => {
      const other = await psql('orders-db-replica.data.svc.cluster.local', database.port, 'SELECT 1');
      assert.notEqual(other.code, 0);
      assert.match(other.stderr, /could not translate host name/);
      const resolved = await pod.exec('getent', ['hosts', 'orders-db.data.svc.cluster.local']);
      assert.match(resolved.stdout, /^240\.240\.0\.1\s/);
    });

    test("bypass: the agent's own ServiceAccount token is refused by the control API", async () => {
      // The token the kubelet would mount for the agent: the API server's audience, not airlock.
      const own = await cluster.podToken(
        { namespace: 'agents', name: 'agent-0', uid: stored.metadata?.uid ?? '', serviceAccount: 'agent' },
        serviceAccountIssuer,
      );
      const ca = JSON.parse(await kubectl(['get', 'configmap', 'airlock-ca', '-n', 'agents', '-o', 'json']))
        .data['ca.crt'];
      // From outside the pod (inside it, strict egress already refuses the connection).
      const status = await new Promise<number>((resolve, reject) => {
        const req = request(
          `https://${network.address}:${ports.controlApi}/v1/bundle`,
          { ca, headers: { authorization: `Bearer ${own.trim()}` } },
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

    test("bypass: the agent uid cannot read the sidecar's token", async () => {
      const read = await pod.exec('cat', [join(pod.sidecarDirectory, 'token')]);
      assert.notEqual(read.code, 0);
      assert.match(read.stderr, /Permission denied/);
    });

    // A UDP and a TCP listener on port 53 of the cluster address, which is not the pod's
    // nameserver (resolv.conf says 127.0.0.1), and UDP to another port there. The sidecar uid
    // reaches them (the path exists); the agent reaches none.
    test('bypass: UDP to another address, and port 53 of an address that is not the nameserver, are rejected', async () => {
      const received: string[] = [];
      const udp = createSocket('udp4');
      udp.on('message', (message) => received.push(message.toString()));
      await new Promise<void>((resolve) => udp.bind(53, network.address, resolve));
      const tcp = createServer((socket) => {
        received.push('tcp');
        socket.destroy();
      });
      await new Promise<void>((resolve) => tcp.listen(53, network.address, resolve));
      const other = createSocket('udp4');
      other.on('message', (message) => received.push(`other:${message.toString()}`));
      await new Promise<void>((resolve) => other.bind(0, network.address, resolve));
      const otherPort = other.address().port;
      const send = (uid: number, text: string, port: number) =>
        pod.exec(
          '/usr/bin/python3',
          [
            '-c',
            `import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ntry:\n  s.sendto(b"${text}", ("${network.address}", ${port})); print("sent")\nexcept OSError as e: print("refused", e.errno)`,
          ],
          { uid },
        );
      try {
        assert.match((await send(1000, 'agent-dns', 53)).stdout, /refused|sent/);
        assert.match((await send(1000, 'agent-other', otherPort)).stdout, /refused|sent/);
        const tcp53 = await pod.exec('/usr/bin/python3', [
          '-c',
          `import socket; socket.create_connection(("${network.address}", 53), timeout=5)`,
        ]);
        assert.notEqual(tcp53.code, 0);
        assert.match(tcp53.stderr, /ConnectionRefusedError/);
        // The control: the sidecar's uid gets through, and after its datagrams arrive, anything
        // the agent had got through would have arrived too.
        await send(1337, 'sidecar-dns', 53);
        await send(1337, 'sidecar-other', otherPort);
        await waitFor('the sidecar datagrams', async () => received.length >= 2, { timeoutMs: 5000 });
        await new Promise((resolve) => setTimeout(resolve, 200));
        assert.deepEqual(received.sort(), ['other:sidecar-other', 'sidecar-dns']);
      } finally {
        udp.close();
        other.close();
        await new Promise((resolve) => tcp.close(resolve));
      }
    });

    test("killing the sidecar makes the agent's connection fail, never bypass", async () => {
      await pod.sidecar.stop();
      const after = await psql(
        'orders-db.data.svc.cluster.local',
        database.port,
        'SELECT email FROM customers',
      );
      assert.notEqual(after.code, 0);
      assert.match(after.stderr, /Connection refused/);
      const direct = await psql(network.address, database.port, 'SELECT email FROM customers');
      assert.notEqual(direct.code, 0);
      assert.ok(!direct.stdout.includes('ada@example.com'));
    });
  },
);
