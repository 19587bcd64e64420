// The real commands, as processes: `airlock operator` against a real API server creates its
// certificates, publishes its CA, patches the webhook and injects pods; `airlock sidecar`,
// started with that pod's token and the published CA, serves PostgreSQL under the policy; a
// SIGTERM drains the operator and releases its lease.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { nodeFlags } from '../../bin/node-flags.js';
import { type ControlPlane, startControlPlane } from '../support/controlplane.ts';
import { grantOrdersDb, startOperatorProcess } from '../support/operator.ts';
import { type PostgresServer, startPostgres } from '../support/postgres.ts';
import { freePort, type Service, startService, waitFor } from '../support/process.ts';
import { requires } from '../support/tools.ts';

const run = promisify(execFile);
const repository = new URL('../../', import.meta.url).pathname;
const cli = join(repository, 'bin/airlock.js');

describe(
  'airlock operator and airlock sidecar as processes',
  requires('etcd', 'kube-apiserver', 'kubectl', 'postgres', 'psql'),
  () => {
    let cluster: ControlPlane;
    let database: PostgresServer;
    let work: string;
    let operator: Service;
    const ports = { webhook: 0, controlApi: 0, probe: 0 };
    const kubectl = (args: string[], input?: string) =>
      cluster.kubectl(args, input === undefined ? {} : { input });
    const apply = (manifest: object) => kubectl(['apply', '-f', '-'], JSON.stringify(manifest));

    before(async () => {
      work = await mkdtemp(join(tmpdir(), 'airlock-processes-'));
      database = await startPostgres();
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
          rules: [{ name: 'no-drop', action: 'deny', sql: { statements: ['DROP'] } }],
        },
      });
      const started = await startOperatorProcess(cluster, work);
      operator = started.service;
      Object.assign(ports, started.ports);
    });
    after(async () => {
      await operator?.stop();
      await cluster?.stop();
      await database?.stop();
      await rm(work, { recursive: true, force: true });
    });

    test('the operator keeps its certificate in a Secret, patches the webhook and publishes its CA', async () => {
      const secret = JSON.parse(
        await kubectl(['get', 'secret', 'airlock-operator-tls', '-n', 'airlock-system', '-o', 'json']),
      );
      assert.ok(secret.data['tls.crt'] && secret.data['ca.crt']);
      const ca = Buffer.from(secret.data['ca.crt'], 'base64').toString();
      const webhook = JSON.parse(
        await kubectl(['get', 'mutatingwebhookconfiguration', 'airlock-injector', '-o', 'json']),
      );
      for (const entry of webhook.webhooks)
        assert.equal(Buffer.from(entry.clientConfig.caBundle, 'base64').toString(), ca);
      await waitFor('CA published', async () => {
        const map = JSON.parse(
          await kubectl(['get', 'configmap', 'airlock-ca', '-n', 'agents', '-o', 'json']),
        );
        return map.data['ca.crt'] === ca;
      });
    });

    test('a pod created in a labeled namespace is injected; its sidecar process serves the granted database', async () => {
      await apply({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'agent-0', namespace: 'agents' },
        spec: {
          serviceAccountName: 'agent',
          containers: [{ name: 'agent', image: 'agent:1', command: ['sleep', 'infinity'] }],
        },
      });
      const pod = JSON.parse(await kubectl(['get', 'pod', 'agent-0', '-n', 'agents', '-o', 'json']));
      const sidecar = pod.spec.initContainers.find((c: { name: string }) => c.name === 'airlock-sidecar');
      assert.equal(sidecar.restartPolicy, 'Always');
      assert.ok(pod.metadata.annotations['airlock.dev/injected']);
      const listen = sidecar.args[sidecar.args.indexOf('--listen') + 1] as string;
      assert.match(listen, /^orders-db=240\.240\.0\.1:\d+\/postgres$/);
      assert.deepEqual(
        pod.spec.hostAliases.find((a: { ip: string }) => a.ip === '240.240.0.1').hostnames.sort(),
        ['orders-db.data', 'orders-db.data.svc', 'orders-db.data.svc.cluster.local'],
      );

      // This machine has no cluster DNS: point the Connection at the database's address. The
      // sidecar gets the change through its bundle like any other.
      await kubectl([
        'patch',
        'conn',
        'orders-db',
        '-n',
        'agents',
        '--type=merge',
        '-p',
        '{"spec":{"host":"127.0.0.1"}}',
      ]);

      // Run the sidecar as the pod would, with the pod's own token and the published CA, on
      // loopback instead of the virtual IP (capture is the init container's job).
      const token = await cluster.podToken({
        namespace: 'agents',
        name: 'agent-0',
        uid: pod.metadata.uid,
        serviceAccount: 'agent',
      });
      const ca = JSON.parse(await kubectl(['get', 'configmap', 'airlock-ca', '-n', 'agents', '-o', 'json']))
        .data['ca.crt'];
      await writeFile(join(work, 'token'), token.trim());
      await writeFile(join(work, 'ca.crt'), ca);
      const [listenPort, healthPort, metricsPort] = [await freePort(), await freePort(), await freePort()];
      const sidecarProcess = startService(
        'airlock sidecar',
        process.execPath,
        [
          cli,
          'sidecar',
          `--control-api=https://127.0.0.1:${ports.controlApi}`,
          `--token-file=${join(work, 'token')}`,
          `--ca-file=${join(work, 'ca.crt')}`,
          `--listen=orders-db=127.0.0.1:${listenPort}/postgres`,
          `--health-port=${healthPort}`,
          `--metrics-port=${metricsPort}`,
        ],
        { logFile: join(work, 'sidecar.log') },
      );
      try {
        await waitFor(
          'sidecar ready',
          async () => (await fetch(`http://127.0.0.1:${healthPort}/readyz`)).ok,
          {
            service: sidecarProcess,
          },
        );
        const psql = (sql: string) =>
          run(
            'psql',
            [
              '-X',
              '-At',
              '-h',
              '127.0.0.1',
              '-p',
              String(listenPort),
              '-U',
              'agent',
              '-d',
              'anything',
              '-c',
              sql,
            ],
            {
              env: { ...process.env, PGPASSWORD: 'not-the-password' },
            },
          ).then(
            (r) => r.stdout.trim(),
            (e: { stderr: string }) => e.stderr.trim(),
          );
        const row = await psql('SELECT id, email FROM customers');
        assert.match(row, /^1\|/);
        assert.ok(!row.includes('ada@example.com'), row);
        assert.match(await psql('DROP TABLE customers'), /AccessPolicy "agent-orders" rule "no-drop"/);
        const log = await readFile(join(work, 'sidecar.log'), 'utf8');
        assert.ok(!log.includes(database.password), 'the sidecar never logs the credential');
        assert.ok(!log.includes('ada@example.com'), 'masked values never reach the events');
        assert.match(log, /"outcome":"blocked"/);
        const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
        assert.match(metrics, /airlock_sidecar_bundle_received 1/);
      } finally {
        await sidecarProcess.stop();
      }
    });

    test('SIGTERM drains the sidecar: the statement in flight completes, a new connection is refused, exit 0', async () => {
      // The token, the CA and the Connection's address are the previous test's.
      const [listenPort, healthPort, metricsPort] = [await freePort(), await freePort(), await freePort()];
      const logFile = join(work, 'sidecar-drain.log');
      const sidecarProcess = startService(
        'airlock sidecar',
        process.execPath,
        [
          cli,
          'sidecar',
          `--control-api=https://127.0.0.1:${ports.controlApi}`,
          `--token-file=${join(work, 'token')}`,
          `--ca-file=${join(work, 'ca.crt')}`,
          `--listen=orders-db=127.0.0.1:${listenPort}/postgres`,
          `--health-port=${healthPort}`,
          `--metrics-port=${metricsPort}`,
          '--drain-seconds=10',
        ],
        { logFile },
      );
      const psql = (sql: string) =>
        run(
          'psql',
          ['-X', '-At', '-h', '127.0.0.1', '-p', String(listenPort), '-U', 'agent', '-d', 'x', '-c', sql],
          { env: { ...process.env, PGPASSWORD: 'not-the-password', PGCONNECT_TIMEOUT: '5' } },
        ).then(
          (r) => ({ ok: true, out: r.stdout.trim() }),
          (e: { stderr: string }) => ({ ok: false, out: e.stderr.trim() }),
        );
      try {
        await waitFor(
          'sidecar ready',
          async () => (await fetch(`http://127.0.0.1:${healthPort}/readyz`)).ok,
          {
            service: sidecarProcess,
          },
        );
        // The launcher replaced itself with the command and its V8 flags (bin/node-flags.js).
        const argv = (await readFile(`/proc/${sidecarProcess.child.pid}/cmdline`, 'utf8')).split('\0');
        assert.deepEqual(argv.slice(1, argv.indexOf(cli)), nodeFlags('sidecar'));
        // An idle session, open across the drain: it is closed once the statement has finished.
        const idle = spawn(
          'psql',
          ['-X', '-At', '-h', '127.0.0.1', '-p', String(listenPort), '-U', 'agent', '-d', 'x'],
          { env: { ...process.env, PGPASSWORD: 'not-the-password' }, stdio: ['pipe', 'ignore', 'ignore'] },
        );
        const idleExited = new Promise((resolve) => idle.once('exit', resolve));
        await waitFor('the idle session open', async () =>
          (await readFile(logFile, 'utf8')).includes('"type":"session.start"'),
        );
        let slowEnded = false;
        const slow = psql("SELECT pg_sleep(4), 'slept'").finally(() => {
          slowEnded = true;
        });
        await waitFor(
          'the statement in flight upstream',
          async () =>
            (
              await database.admin(
                "SELECT 1 FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(4)%' AND state = 'active'",
              )
            ).rowCount === 1,
        );
        const signalled = Date.now();
        sidecarProcess.child.kill('SIGTERM');
        await waitFor('the drain started', async () =>
          (await readFile(logFile, 'utf8')).includes('"msg":"draining"'),
        );
        const { ok, out } = await psql('SELECT 1');
        assert.ok(!ok && /refused/i.test(out), `a connection during the drain must be refused: ${out}`);
        assert.equal(slowEnded, false, 'the refusal came while the statement ran');
        assert.deepEqual(await slow, { ok: true, out: '|slept' });
        assert.equal(await sidecarProcess.exited, 0);
        assert.ok(Date.now() - signalled < 10_000, 'exited within the grace period');
        const log = await readFile(logFile, 'utf8');
        assert.match(
          log,
          /"text":"SELECT pg_sleep\(4\), 'slept'".*"outcome":"allowed"|"outcome":"allowed".*pg_sleep/,
        );
        const ends = log.split('\n').filter((line) => line.includes('"type":"session.end"'));
        assert.equal(ends.length, 2, 'both sessions recorded their end before the exit');
        assert.ok(ends.some((line) => line.includes('"reason":"the sidecar is draining"')));
        const drained = log.indexOf('"msg":"drained"');
        assert.ok(drained > log.indexOf('"outcome":"allowed"'), 'the drain finished after the statement');
        idle.stdin?.end();
        await idleExited;
      } finally {
        await sidecarProcess.stop();
      }
    });

    test('SIGTERM stops the operator cleanly and releases its lease', async () => {
      operator.child.kill('SIGTERM');
      assert.equal(await operator.exited, 0);
      const lease = JSON.parse(
        await kubectl(['get', 'lease', 'airlock-operator', '-n', 'airlock-system', '-o', 'json']),
      );
      assert.equal(lease.spec.holderIdentity ?? '', '');
    });
  },
);
