// The approval workflow end to end, with real parts: the real `airlock operator` and
// `airlock sidecar` processes against a real API server and PostgreSQL, psql as the agent, and
// the approvers deciding with the real kubectl and the `kubectl airlock` plugin, each with their
// own credentials (alice in dba-oncall approves; bob is no approver; the agent's own
// ServiceAccount may not decide its request). A real HTTP receiver on loopback takes the
// operator's notifications (--notify-webhook), refusing its first attempts.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type ControlPlane, startControlPlane } from '../support/controlplane.ts';
import { grantApprovers, grantOrdersDb, startOperatorProcess } from '../support/operator.ts';
import { type PostgresServer, startPostgres } from '../support/postgres.ts';
import { type Service, waitFor } from '../support/process.ts';
import { agentPsql, startSidecarProcess } from '../support/sidecar.ts';
import { requires } from '../support/tools.ts';

interface AccessRequestJson {
  metadata: { name: string; annotations?: Record<string, string> };
  spec: {
    connection: string;
    policy: string;
    rule: string;
    request: string;
    requester: { pod: string; serviceAccount: string };
    reasons?: string[];
    decision?: { action: string; reason?: string };
  };
  status?: {
    phase?: string;
    decidedBy?: string;
    decidedAt?: string;
    expiresAt?: string;
    notified?: string[];
  };
}

interface NotificationJson {
  id: string;
  type: string;
  namespace: string;
  name: string;
  phase: string;
  requester: { namespace: string; serviceAccount: string; pod: string };
  connection: string;
  policy: string;
  rule: string;
  text: string;
  reasons: string[];
  approvers?: { groups?: string[]; users?: string[] };
  expiresAt?: string;
  decidedBy?: string;
  reason?: string;
  decide?: { approve: string; deny: string };
}

describe(
  'approvals: AccessRequests decided with kubectl airlock',
  requires('etcd', 'kube-apiserver', 'kubectl', 'postgres', 'psql'),
  () => {
    let cluster: ControlPlane;
    let database: PostgresServer;
    let work: string;
    let operator: Service;
    let sidecar: Service;
    let listenPort = 0;
    let receiver: Server;
    /** What the receiver accepted, in order; it answers 503 to its first two POSTs, and while down. */
    const notifications: NotificationJson[] = [];
    const refused: string[] = [];
    let receiverDown = false;
    const ports = { webhook: 0, controlApi: 0, probe: 0 };
    const kubectl = (args: string[], input?: string) =>
      cluster.kubectl(args, input === undefined ? {} : { input });
    const failure = (promise: Promise<unknown>) =>
      promise.then(
        () => assert.fail('expected a refusal'),
        (error: Error) => error.message,
      );

    const psql = (sql: string) => agentPsql(listenPort, sql);

    const requests = async (): Promise<AccessRequestJson[]> =>
      JSON.parse(await kubectl(['get', 'accessrequests', '-n', 'agents', '-o', 'json'])).items;
    const get = async (name: string): Promise<AccessRequestJson> =>
      JSON.parse(await kubectl(['get', 'ar', name, '-n', 'agents', '-o', 'json']));

    /** Waits for the receiver to have a notification of `type` for the request, and returns it. */
    const notified = async (name: string, type: string): Promise<NotificationJson> => {
      await waitFor(
        `${type} notification for ${name}`,
        async () => notifications.some((n) => n.name === name && n.type === type),
        { timeoutMs: 15_000 },
      );
      return notifications.find((n) => n.name === name && n.type === type)!;
    };
    const notificationsOf = (name: string) => notifications.filter((n) => n.name === name).map((n) => n.type);

    /** Starts the operator; again on the same ports, where the sidecar finds it. */
    const startOperator = async () => {
      const started = await startOperatorProcess(cluster, work, {
        approvals: true,
        ...(ports.controlApi && { ports: { ...ports } }),
        extraArgs: [
          `--notify-webhook=http://127.0.0.1:${(receiver.address() as AddressInfo).port}/airlock`,
          '--notify-format=generic',
        ],
      });
      operator = started.service;
      Object.assign(ports, started.ports);
    };

    /** Waits for a new Pending AccessRequest that holds a statement matching `text`. */
    const held = async (text: RegExp): Promise<AccessRequestJson> => {
      let found: AccessRequestJson | undefined;
      await waitFor(
        'a pending AccessRequest',
        async () => {
          found = (await requests()).find(
            (r) => r.status?.phase === 'Pending' && text.test(r.spec.request) && !r.spec.decision,
          );
          return found !== undefined;
        },
        { timeoutMs: 15_000 },
      );
      return found!;
    };

    before(async () => {
      work = await mkdtemp(join(tmpdir(), 'airlock-approvals-'));
      database = await startPostgres();
      await database.admin(
        "CREATE TABLE orders (id int, status text); INSERT INTO orders VALUES (1, 'paid'), (2, 'paid'), (3, 'paid')",
        database.database,
      );
      await database.admin(`GRANT ALL ON orders TO ${database.user}`, database.database);
      cluster = await startControlPlane();
      await cluster.installCrds();
      await kubectl(['create', 'namespace', 'airlock-system']);
      await kubectl(['create', 'namespace', 'agents']);
      await kubectl(['label', 'namespace', 'agents', 'airlock.dev/injection=enabled']);
      await kubectl(['create', 'serviceaccount', 'agent', '-n', 'agents']);
      // RBAC lets everyone here write AccessRequests, so that the webhook is what refuses.
      await grantApprovers(cluster, {
        groups: ['dba-oncall'],
        users: ['bob'],
        serviceAccounts: ['agents:agent'],
      });
      await grantOrdersDb(cluster, database, {
        host: '127.0.0.1',
        policy: {
          rules: [
            {
              name: 'writes',
              action: 'require-approval',
              sql: { statements: ['UPDATE'] },
              approval: { approvers: { groups: ['dba-oncall'] }, timeout: '2m' },
            },
            {
              name: 'deletes',
              action: 'require-approval',
              sql: { statements: ['DELETE'] },
              // Short, to watch one expire; long enough to be seen Pending on a slow machine.
              approval: { approvers: { groups: ['dba-oncall'] }, timeout: '6s' },
            },
          ],
        },
      });
      receiver = createServer((req, res) => {
        let body = '';
        req.setEncoding('utf8');
        req.on('data', (chunk) => {
          body += chunk;
        });
        req.on('end', () => {
          if (refused.length < 2 || receiverDown) {
            refused.push(body);
            res.writeHead(503).end();
            return;
          }
          if (req.headers['content-type'] !== 'application/x-ndjson') {
            res.writeHead(415).end();
            return;
          }
          for (const line of body.trimEnd().split('\n')) notifications.push(JSON.parse(line));
          res.writeHead(204).end();
        });
      });
      await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
      await startOperator();
      const agent = await startSidecarProcess(cluster, work, {
        controlApiUrl: `https://127.0.0.1:${ports.controlApi}`,
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
      receiver?.close();
      await rm(work, { recursive: true, force: true });
    });

    test('a held UPDATE becomes an AccessRequest; alice approves it with kubectl airlock and it runs', async (t) => {
      const statement = psql("UPDATE orders SET status = 'refunded' WHERE id = 1");
      const request = await held(/'refunded'/);
      assert.equal(request.spec.connection, 'orders-db');
      assert.equal(request.spec.policy, 'agent-orders');
      assert.equal(request.spec.rule, 'writes');
      assert.deepEqual(request.spec.requester, { pod: 'agent-0', serviceAccount: 'agent' });
      // The statement as the enforcer gives it: literals of a simple query are kept as typed.
      assert.equal(request.spec.request, "UPDATE orders SET status = 'refunded' WHERE id = 1");
      const ttl = Date.parse(request.status!.expiresAt!) - Date.now();
      assert.ok(ttl > 60_000 && ttl <= 120_000, `expires with the rule's timeout: ${ttl} ms`);
      const table = await kubectl(['get', 'ar', '-n', 'agents']);
      assert.match(table, /REQUESTER\s+CONNECTION\s+REQUEST\s+PHASE\s+AGE/);
      assert.match(table, /agent-0\s+orders-db\s+UPDATE orders/);

      // The receiver refused the first attempts; the notification arrived on a retry.
      const created = await notified(request.metadata.name, 'accessrequest.created');
      assert.equal(refused.length, 2);
      assert.match(refused[0]!, new RegExp(`"name":"${request.metadata.name}"`));
      assert.deepEqual(
        {
          namespace: created.namespace,
          name: created.name,
          phase: created.phase,
          requester: created.requester,
          connection: created.connection,
          policy: created.policy,
          rule: created.rule,
          text: created.text,
          reasons: created.reasons,
          approvers: created.approvers,
          expiresAt: created.expiresAt,
          decide: created.decide,
        },
        {
          namespace: 'agents',
          name: request.metadata.name,
          phase: 'Pending',
          requester: { namespace: 'agents', serviceAccount: 'agent', pod: 'agent-0' },
          connection: 'orders-db',
          policy: 'agent-orders',
          rule: 'writes',
          text: request.spec.request,
          reasons: request.spec.reasons ?? [],
          approvers: { groups: ['dba-oncall'] },
          expiresAt: request.status!.expiresAt,
          decide: {
            approve: `kubectl airlock approve ${request.metadata.name} -n agents`,
            deny: `kubectl airlock deny ${request.metadata.name} -n agents --reason TEXT`,
          },
        },
      );
      assert.ok(created.reasons.length > 0, 'the reasons it is held');

      const listed = await cluster.plugin('approver', ['approvals', 'list', '-n', 'agents']);
      assert.equal(listed.code, 0, listed.out);
      assert.match(
        listed.out,
        new RegExp(`${request.metadata.name}\\s+Pending\\s+agent/agent-0\\s+orders-db`),
      );

      // Alice types the command the notification gave her.
      const [kubectlWord, airlockWord, ...command] = created.decide!.approve.split(' ');
      assert.deepEqual([kubectlWord, airlockWord], ['kubectl', 'airlock']);
      const approved = await cluster.plugin('approver', [...command, '--reason', 'ticket 42']);
      assert.equal(approved.code, 0, approved.out);
      assert.match(approved.out, /approved/);
      const decided = Date.now();
      const result = await statement;
      // How fast is bench/approval.ts's to measure; here it is only reported.
      t.diagnostic(`statement released ${Date.now() - decided} ms after kubectl airlock approve returned`);
      assert.deepEqual(result, { ok: true, out: 'UPDATE 1' });
      const stored = await get(request.metadata.name);
      assert.equal(stored.status?.phase, 'Approved');
      assert.equal(stored.status?.decidedBy, 'alice');
      assert.ok(stored.status?.decidedAt);
      const row = await database.admin('SELECT status FROM orders WHERE id = 1', database.database);
      assert.equal(row.rows[0].status, 'refunded');
      const outcome = await notified(request.metadata.name, 'accessrequest.approved');
      assert.equal(outcome.phase, 'Approved');
      assert.equal(outcome.decidedBy, 'alice');
      assert.equal(outcome.reason, 'ticket 42');
      assert.equal(outcome.decide, undefined);
      assert.deepEqual(notificationsOf(request.metadata.name), [
        'accessrequest.created',
        'accessrequest.approved',
      ]);
    });

    test('bob, no approver, and the agent itself are refused; alice denies, and the statement fails', async () => {
      const statement = psql("UPDATE orders SET status = 'void' WHERE id = 2");
      const request = await held(/id = 2/);
      const name = request.metadata.name;

      const bob = await cluster.plugin('user', ['approve', name, '-n', 'agents']);
      assert.equal(bob.code, 1);
      assert.match(bob.out, /bob may not decide .*lists as approvers group dba-oncall/);

      const self = await failure(
        kubectl([
          'patch',
          'ar',
          name,
          '-n',
          'agents',
          '--as=system:serviceaccount:agents:agent',
          '--type=merge',
          '-p',
          '{"spec":{"decision":{"action":"approve"}}}',
        ]),
      );
      assert.match(
        self,
        /system:serviceaccount:agents:agent requested .* nobody may approve their own request/,
      );

      const denied = await cluster.plugin('approver', [
        'deny',
        name,
        '-n',
        'agents',
        '--reason',
        'not during the freeze',
      ]);
      assert.equal(denied.code, 0, denied.out);
      const result = await statement;
      assert.equal(result.ok, false);
      assert.match(result.out, /denied|not during the freeze/i);
      const decided = await get(name);
      assert.equal(decided.status?.phase, 'Denied');
      assert.equal(decided.status?.decidedBy, 'alice');
      const row = await database.admin('SELECT status FROM orders WHERE id = 2', database.database);
      assert.equal(row.rows[0].status, 'paid');
      const outcome = await notified(name, 'accessrequest.denied');
      assert.equal(outcome.decidedBy, 'alice');
      assert.equal(outcome.reason, 'not during the freeze');
      // bob's refused attempt and the agent's own changed nothing, so notified nothing.
      assert.deepEqual(notificationsOf(name), ['accessrequest.created', 'accessrequest.denied']);

      // A second decision, and any other edit, after the decision.
      const again = await cluster.plugin('approver', ['approve', name, '-n', 'agents']);
      assert.equal(again.code, 1);
      assert.match(again.out, /a decision cannot be changed/);
      const edit = await failure(
        kubectl([
          'patch',
          'ar',
          name,
          '-n',
          'agents',
          '--type=merge',
          '-p',
          '{"spec":{"request":"SELECT 1"}}',
        ]),
      );
      assert.match(edit, /immutable|cannot be changed/);
      const relabel = await failure(
        kubectl([
          'patch',
          'ar',
          name,
          '-n',
          'agents',
          '--type=merge',
          '-p',
          '{"metadata":{"annotations":{"airlock.dev/decided-by":"mallory"}}}',
        ]),
      );
      assert.match(relabel, /decided-by annotation is written by Airlock .* cannot be changed/);
    });

    test('decidedBy comes from the API server, whatever the patch body claims', async () => {
      const statement = psql("UPDATE orders SET status = 'shipped' WHERE id = 3");
      const request = await held(/'shipped'/);
      await cluster.kubectl(
        [
          'patch',
          'ar',
          request.metadata.name,
          '-n',
          'agents',
          '--type=merge',
          '-p',
          JSON.stringify({
            metadata: { annotations: { 'airlock.dev/decided-by': 'mallory' } },
            spec: { decision: { action: 'approve' } },
            status: { decidedBy: 'mallory', phase: 'Approved' },
          }),
        ],
        { as: 'approver' },
      );
      assert.deepEqual(await statement, { ok: true, out: 'UPDATE 1' });
      const decided = await get(request.metadata.name);
      assert.equal(decided.status?.decidedBy, 'alice');
      assert.equal(decided.metadata.annotations?.['airlock.dev/decided-by'], 'alice');
    });

    test('a request nobody decides expires at its timeout, and can no longer be decided', async () => {
      const started = Date.now();
      const statement = psql('DELETE FROM orders WHERE id = 3');
      const request = await held(/DELETE FROM orders/);
      const result = await statement;
      assert.equal(result.ok, false);
      assert.match(result.out, /expired/);
      assert.ok(Date.now() - started < 20_000, 'at its timeout, not held on');
      await waitFor(
        'phase Expired',
        async () => (await get(request.metadata.name)).status?.phase === 'Expired',
      );
      const late = await cluster.plugin('approver', ['approve', request.metadata.name, '-n', 'agents']);
      assert.equal(late.code, 1);
      assert.match(late.out, /expired/);
      const rows = await database.admin('SELECT count(*)::int AS n FROM orders', database.database);
      assert.equal(rows.rows[0].n, 3);
      const outcome = await notified(request.metadata.name, 'accessrequest.expired');
      assert.equal(outcome.phase, 'Expired');
      assert.equal(outcome.decidedBy, undefined);
      assert.equal(outcome.rule, 'deletes');
    });

    test('every AccessRequest was notified once when created and once when decided, without a credential', async () => {
      const all = await requests();
      assert.equal(all.length, 4);
      for (const request of all) {
        assert.deepEqual(
          notificationsOf(request.metadata.name),
          ['accessrequest.created', `accessrequest.${request.status?.phase?.toLowerCase()}`],
          request.metadata.name,
        );
        await waitFor('both recorded as acknowledged', async () => {
          const { status } = await get(request.metadata.name);
          return (
            status?.notified?.join() === `accessrequest.created,accessrequest.${status?.phase?.toLowerCase()}`
          );
        });
      }
      assert.equal(new Set(notifications.map((n) => n.id)).size, notifications.length, 'no id twice');
      const everything = JSON.stringify(notifications);
      assert.ok(!everything.includes(database.password), 'the held password is in no notification');
    });

    test('notifications owed when the operator crashes are sent by the next one, from the AccessRequest', async () => {
      receiverDown = true;
      const refusedBefore = refused.length;
      const statement = psql("UPDATE orders SET status = 'held' WHERE id = 2");
      const request = await held(/'held'/);
      const { name } = request.metadata;
      await waitFor('the leader tried to notify', async () =>
        refused.slice(refusedBefore).some((body) => body.includes(`"name":"${name}"`)),
      );
      // The operator dies with the notification unsent; the statement stays held.
      process.kill(-operator.child.pid!, 'SIGKILL');
      await operator.exited;
      assert.deepEqual(notificationsOf(name), [], 'nothing was acknowledged before the crash');
      assert.equal((await get(name)).status?.notified, undefined);

      receiverDown = false;
      await startOperator();
      const created = await notified(name, 'accessrequest.created');
      assert.equal(created.id.endsWith('/accessrequest.created'), true);
      await waitFor('recorded as acknowledged', async () =>
        ((await get(name)).status?.notified ?? []).includes('accessrequest.created'),
      );
      // The decision is notified too, once, and the status records both.
      const approved = await cluster.plugin('approver', ['approve', name, '-n', 'agents']);
      assert.equal(approved.code, 0, approved.out);
      const result = await statement;
      assert.equal(result.ok, true, `held across the crash, then released: ${result.out}`);
      await notified(name, 'accessrequest.approved');
      await waitFor('both recorded', async () => (await get(name)).status?.notified?.length === 2);
      assert.deepEqual(notificationsOf(name), ['accessrequest.created', 'accessrequest.approved']);
      assert.deepEqual((await get(name)).status?.notified, [
        'accessrequest.created',
        'accessrequest.approved',
      ]);
    });
  },
);
