// The operator's web console with OIDC sign-in, end to end with real parts: a real OpenID
// provider (oidc-provider, its login and consent forms), the real `airlock operator` and
// `airlock sidecar` against a real API server and PostgreSQL, psql as the agent, and headless
// Chromium as the person. Alice signs in through the provider's forms, sees only what RBAC lets
// her group read, approves a held UPDATE from the page and sees it run with the decision
// recorded under her name; she is refused approving a request made for her, a decision without
// the session's CSRF token is refused, and signing out ends the session.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openPage, type Page } from '../support/browser.ts';
import { type ControlPlane, startControlPlane } from '../support/controlplane.ts';
import { type OidcProvider, spkiHash, startOidcProvider } from '../support/oidc-provider.ts';
import { grantApprovers, grantOrdersDb, startOperatorProcess } from '../support/operator.ts';
import { type PostgresServer, startPostgres } from '../support/postgres.ts';
import { freePort, type Service } from '../support/process.ts';
import { agentPsql, startSidecarProcess } from '../support/sidecar.ts';
import { requires } from '../support/tools.ts';

const alice = { email: 'alice@example.com', password: 'correct horse battery staple', groups: ['dba'] };

interface AccessRequestJson {
  metadata: { name: string; namespace: string };
  spec: { request: string; decision?: { action: string; reason?: string } };
  status?: { phase?: string; decidedBy?: string };
}

describe(
  'the operator console: OIDC sign-in, impersonation, approvals',
  requires('etcd', 'kube-apiserver', 'kubectl', 'postgres', 'psql', 'chromium'),
  () => {
    let cluster: ControlPlane;
    let database: PostgresServer;
    let idp: OidcProvider;
    let work: string;
    let operator: Service;
    let sidecar: Service;
    let page: Page;
    let consoleUrl: string;
    let listenPort = 0;
    const kubectl = (args: string[], input?: string) =>
      cluster.kubectl(args, input === undefined ? {} : { input });
    const apply = (manifest: object) => kubectl(['apply', '-f', '-'], JSON.stringify(manifest));
    const psql = (sql: string) => agentPsql(listenPort, sql);
    const accessRequest = async (namespace: string, name: string): Promise<AccessRequestJson> =>
      JSON.parse(await kubectl(['get', 'accessrequest', name, '-n', namespace, '-o', 'json']));
    /** The approvals page's rows: request id, requester, connection, text. */
    const approvalRows = () =>
      page.evaluate<string[][]>(
        `[...document.querySelectorAll('#approvals tr[data-id]')].map((r) => [r.dataset.id, ...[...r.cells].slice(1, 4).map((c) => c.textContent.trim())])`,
      );
    /** Clicks a row's button (approve or deny) and returns the row's message, or '' once it is gone. */
    const decide = async (id: string, decision: 'approve' | 'deny') => {
      const row = `document.querySelector(${JSON.stringify(`#approvals tr[data-id="${id}"]`)})`;
      await page.waitFor(row);
      await page.evaluate(`${row}.querySelector('[data-decide=${decision}]').click()`);
      return page.waitFor<string>(
        `(() => { const r = ${row}; return r ? r.querySelector('.message').textContent : 'gone'; })()`,
      );
    };

    before(async () => {
      work = await mkdtemp(join(tmpdir(), 'airlock-console-oidc-'));
      database = await startPostgres();
      await database.admin(
        "CREATE TABLE orders (id int, status text); INSERT INTO orders VALUES (1, 'paid'), (2, 'paid')",
        database.database,
      );
      await database.admin(`GRANT ALL ON orders TO ${database.user}`, database.database);
      const consolePort = await freePort();
      consoleUrl = `https://127.0.0.1:${consolePort}/`;
      idp = await startOidcProvider({ redirectUri: `${consoleUrl}auth/callback`, people: [alice] });
      await writeFile(join(work, 'client-secret'), idp.clientSecret);

      cluster = await startControlPlane();
      await cluster.installCrds();
      for (const namespace of ['airlock-system', 'agents', 'payments'])
        await kubectl(['create', 'namespace', namespace]);
      await kubectl(['label', 'namespace', 'agents', 'airlock.dev/injection=enabled']);
      await kubectl(['create', 'serviceaccount', 'agent', '-n', 'agents']);
      // Alice's group from the provider, under the console's prefix, reads and decides in
      // agents only; nothing lets it see payments.
      await grantApprovers(cluster, { groups: ['oidc:dba'] }, { readSessions: true });
      await grantOrdersDb(cluster, database, {
        host: '127.0.0.1',
        policy: {
          rules: [
            {
              name: 'writes',
              action: 'require-approval',
              sql: { statements: ['UPDATE'] },
              approval: { approvers: { groups: ['oidc:dba'] }, timeout: '2m' },
            },
          ],
        },
      });
      await apply({
        apiVersion: 'airlock.dev/v1alpha1',
        kind: 'AccessPolicy',
        metadata: { name: 'payments', namespace: 'payments' },
        spec: {
          subjects: [{ kind: 'ServiceAccount', name: 'agent' }],
          connections: ['ledger'],
          rules: [
            {
              name: 'writes',
              action: 'require-approval',
              sql: { statements: ['UPDATE'] },
              approval: { approvers: { groups: ['oidc:dba'] }, timeout: '2m' },
            },
          ],
        },
      });

      // The operator trusts the provider's private CA, as the chart's console.oidc.caConfigMap has it.
      process.env.NODE_EXTRA_CA_CERTS = idp.caFile;
      try {
        const started = await startOperatorProcess(cluster, work, {
          approvals: true,
          sessionsApi: true,
          extraArgs: [
            `--oidc-issuer=${idp.issuer}`,
            `--oidc-client-id=${idp.clientId}`,
            `--oidc-client-secret-file=${join(work, 'client-secret')}`,
            '--oidc-username-claim=email',
            '--oidc-scopes=openid email groups',
            '--oidc-group=dba',
            `--console-url=${consoleUrl}`,
            `--console-port=${consolePort}`,
          ],
        });
        operator = started.service;
        const agent = await startSidecarProcess(cluster, work, {
          controlApiUrl: started.controlApiUrl,
          connection: 'orders-db',
          protocol: 'postgres',
        });
        sidecar = agent.service;
        listenPort = agent.port;
      } finally {
        delete process.env.NODE_EXTRA_CA_CERTS;
      }
      // Chromium accepts exactly the provider's and the console's certificates.
      const serving = JSON.parse(
        await kubectl(['get', 'secret', 'airlock-operator-tls', '-n', 'airlock-system', '-o', 'json']),
      );
      const consoleCertificate = Buffer.from(serving.data['tls.crt'], 'base64').toString('utf8');
      page = await openPage({ trust: [idp.spki, spkiHash(consoleCertificate)] });
    });

    after(async () => {
      await page?.close();
      await sidecar?.stop();
      await operator?.stop();
      await cluster?.stop();
      await idp?.stop();
      await database?.stop();
      await rm(work, { recursive: true, force: true });
    });

    test('alice signs in through the provider and the console names her as the API server will', async () => {
      // Sent to the provider's own login form, then its consent form.
      await page.evaluate(`location.assign(${JSON.stringify(consoleUrl)})`);
      await page
        .waitFor(`location.origin === ${JSON.stringify(idp.issuer)} && document.getElementById('email')`)
        .catch(async (error: Error) => {
          throw new Error(
            `${error.message}: at ${await page.evaluate('location.href + " " + document.body?.innerText')}`,
          );
        });
      await page.evaluate(`(() => {
        document.getElementById('email').value = ${JSON.stringify(alice.email)};
        document.getElementById('password').value = ${JSON.stringify(alice.password)};
        document.getElementById('sign-in').click();
      })()`);
      await page.waitFor(`document.getElementById('allow')`);
      await page.evaluate(`document.getElementById('allow').click()`);
      const user = await page.waitFor<string>(
        `location.origin === ${JSON.stringify(consoleUrl.slice(0, -1))} && document.getElementById('user')?.textContent`,
      );
      assert.equal(user, 'oidc:alice@example.com');
      // The session cookie is HttpOnly: no script in the page reads it.
      assert.equal(await page.evaluate<string>('document.cookie'), '');
    });

    test('she sees only the namespaces RBAC lets her group read', async () => {
      await kubectl(
        ['create', '-f', '-'],
        JSON.stringify({
          apiVersion: 'airlock.dev/v1alpha1',
          kind: 'AccessRequest',
          metadata: { name: 'ledger-update', namespace: 'payments' },
          spec: {
            connection: 'ledger',
            policy: 'payments',
            rule: 'writes',
            requester: { pod: 'agent-0', serviceAccount: 'agent' },
            request: 'UPDATE ledger SET amount = 0',
          },
        }),
      );
      await page.goto(`${consoleUrl}#/approvals`);
      await page.waitFor(`document.getElementById('approvals')`);
      await new Promise((resolve) => setTimeout(resolve, 2500));
      assert.deepEqual(await approvalRows(), []);
      await page.goto(`${consoleUrl}#/sessions?namespace=payments`);
      const refusal = await page.waitFor<string>(`document.querySelector('#main .message')?.textContent`);
      assert.match(
        refusal,
        /User "oidc:alice@example\.com" cannot list resource "sessions".* in the namespace "payments"/,
      );
    });

    test('she approves a held UPDATE from the page; it runs, and the decision records her name', async () => {
      await page.goto(`${consoleUrl}#/approvals`);
      const statement = psql("UPDATE orders SET status = 'refunded' WHERE id = 1");
      // New requests appear without a reload.
      const rows = await page.waitFor<string[][]>(
        `(() => { const rows = [...document.querySelectorAll('#approvals tr[data-id]')].map((r) => [r.dataset.id, ...[...r.cells].slice(1, 4).map((c) => c.textContent.trim())]); return rows.length > 0 && rows; })()`,
        60_000,
      );
      assert.equal(rows.length, 1);
      const [id, requester, connection, text] = rows[0]!;
      assert.match(id!, /^agents\//);
      assert.equal(requester, 'agent (pod agent-0)');
      assert.equal(connection, 'orders-db');
      assert.equal(text, "UPDATE orders SET status = 'refunded' WHERE id = 1");
      await page.evaluate(
        `document.querySelector('#approvals tr[data-id] [data-reason]').value = 'refund ticket 4411'`,
      );
      assert.equal(await decide(id!, 'approve'), 'gone');
      const result = await statement;
      assert.ok(result.ok, result.out);
      assert.equal(result.out, 'UPDATE 1');
      const decided = await accessRequest('agents', id!.slice('agents/'.length));
      assert.equal(decided.status?.phase, 'Approved');
      assert.equal(decided.status?.decidedBy, 'oidc:alice@example.com');
      assert.deepEqual(decided.spec.decision, { action: 'approve', reason: 'refund ticket 4411' });

      // The session's timeline, read through the sessions API as alice, names her as approver.
      await page.goto(`${consoleUrl}#/sessions?namespace=agents`);
      const link = await page.waitFor<string>(
        `document.querySelector('#sessions a')?.getAttribute('href')`,
        30_000,
      );
      await page.goto(`${consoleUrl}${link}`);
      const approval = await page.waitFor<string>(
        `[...document.querySelectorAll('#timeline tr')].map((r) => r.textContent).find((t) => t.includes("'refunded'") && t.includes(' by '))`,
        30_000,
      );
      assert.match(approval, /by oidc:alice@example\.com/);
    });

    test('she is refused approving a request made for her', async () => {
      await kubectl(
        ['create', '-f', '-'],
        JSON.stringify({
          apiVersion: 'airlock.dev/v1alpha1',
          kind: 'AccessRequest',
          metadata: { name: 'alices-own', namespace: 'agents' },
          spec: {
            connection: 'orders-db',
            policy: 'agent-orders',
            rule: 'writes',
            requester: { pod: 'agent-0', serviceAccount: 'agent', user: 'oidc:alice@example.com' },
            request: "UPDATE orders SET status = 'void'",
          },
        }),
      );
      await page.goto(`${consoleUrl}#/approvals`);
      const message = await decide('agents/alices-own', 'approve');
      assert.match(message, /oidc:alice@example\.com requested alices-own and cannot decide it/);
      assert.equal((await accessRequest('agents', 'alices-own')).spec.decision, undefined);
    });

    test('a decision without the session CSRF token is refused', async () => {
      const status = await page.evaluate<number>(`fetch('/api/approvals/agents%2Falices-own/deny', {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-airlock-console': '1' },
        body: '{}',
      }).then((r) => r.status)`);
      assert.equal(status, 403);
      assert.equal((await accessRequest('agents', 'alices-own')).spec.decision, undefined);
    });

    test('signing out ends the session', async () => {
      await page.goto(consoleUrl);
      await page.waitFor(`!document.getElementById('sign-out').hidden`);
      await page.evaluate(`document.getElementById('sign-out').click()`);
      await page.waitFor(`location.origin === ${JSON.stringify(idp.issuer)}`);
      await page.goto(`${consoleUrl}api/whoami`);
      const body = await page.evaluate<string>('document.body.textContent');
      assert.match(body, /sign in to the console first/);
    });
  },
);
