// The operator as a platform team runs it in production, on a real single-node cluster: two
// replicas from the chart sharing a PostgreSQL audit store (a real PostgreSQL on the node,
// behind a Service). The Deployment rolls while an injected agent keeps querying: a replica of
// the new ReplicaSet takes the lease, the agent is served throughout, and every statement it
// ran is in the recorded sessions.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type Cluster, requiresCluster, startCluster } from '../support/cluster.ts';
import { grantOrdersDb, grantSessionReaders } from '../support/operator.ts';
import { type PostgresServer, startPostgres } from '../support/postgres.ts';
import { waitFor } from '../support/process.ts';
import { requires } from '../support/tools.ts';

const host = 'orders-db.data.svc.cluster.local';

describe('the operator Deployment on a real cluster: two replicas roll, leadership moves, no event is lost', {
  ...requiresCluster(),
  ...requires('postgres'),
}, () => {
  let cluster: Cluster;
  let database: PostgresServer;
  const kubectl = (args: string[], input?: string) =>
    cluster.kubectl(args, input === undefined ? {} : { input });
  const query = (sql: string) =>
    cluster.exec(
      'agent-0',
      ['psql', '-X', '-At', '-h', host, '-p', '5432', '-U', 'agent', '-d', 'orders', '-c', sql],
      { env: { PGPASSWORD: 'not-the-password', PGCONNECT_TIMEOUT: '5' } },
    );
  const leader = async () =>
    JSON.parse(await kubectl(['get', 'lease', 'airlock-operator', '-n', 'airlock-system', '-o', 'json'])).spec
      .holderIdentity as string;
  const operatorPods = async () =>
    JSON.parse(
      await kubectl([
        'get',
        'pods',
        '-n',
        'airlock-system',
        '-l',
        'app.kubernetes.io/component=operator',
        '-o',
        'json',
      ]),
    ).items.map((p: { metadata: { name: string } }) => p.metadata.name) as string[];

  before(async () => {
    cluster = await startCluster();
    database = await startPostgres({ network: { listen: [cluster.nodeIp], clients: cluster.podCidrs } });
    await database.admin(
      "CREATE TABLE customers (id int, email text); INSERT INTO customers VALUES (1, 'ada@example.com')",
      database.database,
    );
    await database.admin(`GRANT ALL ON customers TO ${database.user}`, database.database);
    await database.admin(`CREATE DATABASE audit OWNER ${database.user}`);
    await cluster.serviceOnNode('data', 'orders-db', 5432, database.port);
    await cluster.serviceOnNode('data', 'audit-db', 5432, database.port);
    await kubectl(['create', 'namespace', 'airlock-system']);
    await kubectl([
      'create',
      'secret',
      'generic',
      'airlock-audit-db',
      '-n',
      'airlock-system',
      `--from-literal=url=postgres://${database.user}:${database.password}@audit-db.data.svc.cluster.local:5432/audit`,
    ]);
    await cluster.installAirlock(['replicas=2', 'audit.postgres.urlSecret=airlock-audit-db']);
    await kubectl(['create', 'namespace', 'agents']);
    await kubectl(['label', 'namespace', 'agents', 'airlock.dev/injection=enabled']);
    await kubectl(['create', 'serviceaccount', 'agent', '-n', 'agents']);
    await grantOrdersDb(cluster, database, {
      host,
      port: 5432,
      policy: { masking: [{ name: 'pii', detectors: ['email'] }], rules: [] },
    });
    // The chart's ClusterRole airlock-session-reader, bound to alice's group.
    await grantSessionReaders(cluster, ['dba-oncall']);
    await cluster.runAgent('agent-0');
    await waitFor('the agent served', async () => (await query('SELECT 1')).code === 0, {
      timeoutMs: 60_000,
    });
  });
  after(async () => {
    await cluster?.stop();
    await database?.stop();
  });

  test('a replica of the new ReplicaSet takes the lease; the agent is served throughout; every statement is recorded', async () => {
    const before = await operatorPods();
    assert.equal(before.length, 2);
    assert.ok(before.includes(await leader()), 'one of the two replicas leads');

    const ran: string[] = [];
    const failures: string[] = [];
    let rolling = true;
    const agent = (async () => {
      for (let i = 0; rolling; i++) {
        const marker = `roll-${i}`;
        const result = await query(`SELECT '${marker}', email FROM customers`);
        if (result.code === 0) ran.push(marker);
        else failures.push(result.stderr);
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
    })();
    try {
      await kubectl(['rollout', 'restart', 'deployment/airlock-operator', '-n', 'airlock-system']);
      await kubectl([
        'rollout',
        'status',
        'deployment/airlock-operator',
        '-n',
        'airlock-system',
        '--timeout=300s',
      ]);
      await waitFor('a new replica leads', async () => {
        const now = await operatorPods();
        const holder = await leader();
        return now.length === 2 && now.includes(holder) && !before.includes(holder);
      });
    } finally {
      rolling = false;
      await agent;
    }
    assert.deepEqual(failures, [], 'the sidecar served the agent while the operator rolled');
    assert.ok(ran.length > 0);

    await waitFor(
      'every statement recorded',
      async () => {
        const list = await cluster.plugin('approver', [
          'sessions',
          'list',
          '-n',
          'agents',
          '--limit',
          '1000',
          '-o',
          'json',
        ]);
        if (list.code !== 0) return false;
        const sessions: { id: string }[] = JSON.parse(list.out);
        const shown = await Promise.all(
          sessions.map((s) => cluster.plugin('approver', ['sessions', 'show', s.id, '-n', 'agents'])),
        );
        const all = shown.map((s) => s.out).join('\n');
        return ran.every((marker) => all.includes(`'${marker}'`));
      },
      { timeoutMs: 120_000 },
    );
  });
});
