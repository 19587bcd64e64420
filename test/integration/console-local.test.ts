// The web console of `airlock local --console`, driven in headless Chromium: the sessions list
// with a filter, a session's timeline with its masked counts, an SSH shell replayed in the page,
// and an HTTP request held for approval that appears without a reload, is approved from the
// page and then reaches the target. Cross-site decisions, foreign Host names and bad input get
// a clear error; a non-loopback --console address is refused at start.
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import YAML from 'yaml';
import { openPage, type Page } from '../support/browser.ts';
import { type HttpUpstream, startHttpUpstream } from '../support/http-upstream.ts';
import { startLocal } from '../support/local.ts';
import { type OidcProvider, startOidcProvider } from '../support/oidc-provider.ts';
import { freePort, runCommand, type Service, temporaryDirectory } from '../support/process.ts';
import { type Sshd, startSshd } from '../support/sshd.ts';
import { requires } from '../support/tools.ts';

const cli = new URL('../../bin/airlock.js', import.meta.url).pathname;
const screenshot = new URL('../../docs/console.png', import.meta.url).pathname;

const object = (kind: string, name: string, body: object) => ({
  apiVersion: kind === 'Secret' ? 'v1' : 'airlock.dev/v1alpha1',
  kind,
  metadata: { name, namespace: 'ops' },
  ...body,
});

describe('airlock local --console', requires('sshd', 'ssh', 'curl', 'chromium'), () => {
  let sshd: Sshd;
  let upstream: HttpUpstream;
  let idp: OidcProvider;
  let work: { path: string; remove(): Promise<void> };
  let server: Service | undefined;
  let page: Page | undefined;
  let consoleUrl: string;
  const ports = { ssh: 0, http: 0 };
  const ssh = () => [
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

  before(async () => {
    work = await temporaryDirectory('console');
    sshd = await startSshd();
    upstream = await startHttpUpstream();
    // A person the agent may act for on billing-api (a token is optional there).
    idp = await startOidcProvider({
      redirectUri: 'https://agent.example.com/callback',
      people: [{ email: 'ada@example.com', password: 'ada-pw', groups: ['dba'] }],
    });
    ports.ssh = await freePort();
    ports.http = await freePort();
    const dir = join(work.path, 'manifests');
    mkdirSync(dir);
    writeFileSync(
      join(dir, 'airlock.yaml'),
      [
        object('Secret', 'web-1', {
          stringData: { username: sshd.user, privateKey: sshd.clientKey.privateKey },
        }),
        object('Secret', 'billing-api', { stringData: { token: 'held-token-s3cret' } }),
        object('Secret', 'idp-ca', { stringData: { 'ca.crt': readFileSync(idp.caFile, 'utf8') } }),
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
            endUser: {
              issuer: idp.issuer,
              audiences: [idp.clientId],
              usernameClaim: 'email',
              usernamePrefix: 'oidc:',
              required: false,
              caSecretRef: { name: 'idp-ca' },
            },
          },
        }),
        object('AccessPolicy', 'agents', {
          spec: {
            subjects: [{ kind: 'ServiceAccount', name: 'agent' }],
            connections: ['web-1', 'billing-api'],
            masking: [{ name: 'pii', detectors: ['credit-card', 'email'], strategy: 'redact' }],
            rules: [
              {
                name: 'hold-deploys',
                action: 'require-approval',
                http: { paths: ['/deploy/**'] },
                approval: { approvers: { users: ['local'] }, timeout: '2m' },
              },
            ],
          },
        }),
      ]
        .map((o) => YAML.stringify(o))
        .join('---\n'),
    );
    const consolePort = await freePort();
    consoleUrl = `http://127.0.0.1:${consolePort}/`;
    const logFile = join(work.path, 'airlock.log');
    const started = await startLocal({
      manifests: dir,
      logFile,
      listen: { 'web-1': `127.0.0.1:${ports.ssh}`, 'billing-api': `127.0.0.1:${ports.http}` },
      store: join(work.path, 'store'),
      args: ['--console', `127.0.0.1:${consolePort}`],
    });
    server = started.service;
    assert.match(started.log, new RegExp(`console on ${consoleUrl}`));
    page = await openPage();
  });
  after(async () => {
    await page?.close();
    await server?.stop();
    await upstream?.close();
    await idp?.stop();
    await sshd?.stop();
    await work?.remove();
  });

  it('lists sessions, shows a timeline without masked values, and replays a shell', async () => {
    const masked = await runCommand('curl', ['-s', '-S', `http://127.0.0.1:${ports.http}/data`]);
    assert.equal(masked.code, 0, masked.stderr);
    const shell = await runCommand('ssh', [...ssh(), '-tt'], 'echo replay-$((6*7))\nexit\n');
    assert.equal(shell.code, 0, shell.stderr);

    await page!.goto(`${consoleUrl}#/sessions`);
    const rows = await page!.waitFor<string[][]>(
      `(() => { const rows = [...document.querySelectorAll('#sessions tr')].slice(1).map((r) => [...r.cells].map((c) => c.textContent.trim())); return rows.length === 2 && rows; })()`,
    );
    assert.deepEqual(rows.map((r) => [r[2], r[3], r[4]]).sort(), [
      ['billing-api', 'http', 'system:serviceaccount:ops:agent'],
      ['web-1', 'ssh', 'system:serviceaccount:ops:agent'],
    ]);
    assert.equal(await page!.evaluate('document.getElementById("user").textContent'), 'local');

    // A filter narrows the list to one connection.
    await page!.evaluate(`(() => {
      document.querySelector('input[name=connection]').value = 'billing-api';
      document.querySelector('form.filters button').click();
    })()`);
    await page!.waitFor(
      `location.hash.includes('connection=billing-api') && document.querySelectorAll('#sessions tr').length === 2`,
    );

    // The HTTP session's timeline: the masked counts, never a masked value.
    await page!.evaluate(`document.querySelector('#sessions tr:nth-child(2) a').click()`);
    const timeline = await page!.waitFor<string>(
      `document.querySelector('#timeline tr:nth-child(2)')?.textContent`,
    );
    assert.match(timeline, /GET \/data/);
    assert.match(timeline, /pii\/email: 1, pii\/credit-card: 2/);
    const pageText = await page!.evaluate<string>('document.documentElement.outerHTML');
    assert.ok(!pageText.includes('4111'), 'no masked value reaches the page');

    // The SSH shell replays in the page; seeking to the end shows its whole output.
    await page!.goto(`${consoleUrl}#/sessions?connection=web-1`);
    await page!.waitFor(`document.querySelectorAll('#sessions tr').length === 2`);
    await page!.evaluate(`document.querySelector('#sessions tr:nth-child(2) a').click()`);
    await page!.waitFor(`document.querySelector('[data-seek]')`);
    assert.equal(await page!.evaluate(`document.querySelector('[data-screen]').textContent`), '');
    await page!.evaluate(`(() => {
      const seek = document.querySelector('[data-seek]');
      seek.value = seek.max;
      seek.dispatchEvent(new Event('input'));
    })()`);
    assert.match(
      await page!.evaluate<string>(`document.querySelector('[data-screen]').textContent`),
      /replay-42/,
    );
    // Play from the start at 4x runs to the end by itself.
    await page!.evaluate(`(() => {
      const seek = document.querySelector('[data-seek]');
      seek.value = 0;
      seek.dispatchEvent(new Event('input'));
      document.querySelector('[data-speed]').value = '4';
      document.querySelector('[data-play]').click();
    })()`);
    await page!.waitFor(
      `document.querySelector('[data-play]').textContent === 'Play' && document.querySelector('[data-screen]').textContent.includes('replay-42')`,
    );
  });

  it('shows a held request and the person it acts for without a reload, and approving it lets it run', async () => {
    await page!.goto(`${consoleUrl}#/approvals`);
    await page!.waitFor(`document.getElementById('approvals')`);
    const token = await idp.idToken('ada@example.com', 'ada-pw');
    const held = runCommand('curl', [
      '-s',
      '-S',
      '-w',
      '\n%{http_code}',
      '-H',
      `Authorization: Bearer ${token}`,
      `http://127.0.0.1:${ports.http}/deploy/now`,
    ]);
    const text = await page!.waitFor<string>(`document.querySelector('#approvals tr[data-id]')?.textContent`);
    assert.match(text, /GET \/deploy\/now/);
    assert.match(text, /agents\/hold-deploys/);
    assert.match(text, /for oidc:ada@example\.com/);
    // airlock approvals names the person too.
    const listed = await runCommand(process.execPath, [
      cli,
      'approvals',
      'list',
      '--store',
      join(work.path, 'store'),
    ]);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /^ID\s+CONNECTION\s+POLICY\/RULE\s+EXPIRES\s+END USER\s+REQUEST$/m);
    assert.match(
      listed.stdout,
      /billing-api\s+agents\/hold-deploys\s+\S+\s+oidc:ada@example\.com\s+GET \/deploy\/now/,
    );
    assert.ok(!upstream.requests.some((r) => r.url === '/deploy/now'), 'held until approved');
    await page!.screenshot(screenshot);
    await page!.evaluate(`(() => {
      const row = document.querySelector('#approvals tr[data-id]');
      row.querySelector('[data-reason]').value = 'release window';
      row.querySelector('[data-decide=approve]').click();
    })()`);
    const result = await held;
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /\n200$/);
    assert.ok(upstream.requests.some((r) => r.url === '/deploy/now'));
    await page!.waitFor(`!document.querySelector('#approvals tr[data-id]')`);

    // The timeline records the approval and who gave it.
    await page!.goto(`${consoleUrl}#/sessions?connection=billing-api`);
    await page!.waitFor(`document.querySelectorAll('#sessions tr').length === 3`);
    await page!.evaluate(`document.querySelector('#sessions tr:nth-child(2) a').click()`);
    const row = await page!.waitFor<string>(
      `document.querySelector('#timeline tr:nth-child(2)')?.textContent`,
    );
    assert.match(row, /GET \/deploy\/now/);
    assert.match(row, /approved/);
    assert.match(row, /by local/);
  });

  it('refuses a cross-site decision, bad input and a non-loopback address', async () => {
    const forged = await fetch(`${consoleUrl}api/approvals/ar-00000000/approve`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: '{}',
    });
    assert.equal(forged.status, 403);
    const decide = (body: string) =>
      fetch(`${consoleUrl}api/approvals/ar-00000000/approve`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-airlock-console': '1' },
        body,
      });
    const refused = async (response: Promise<Response>, status: number, message: RegExp) => {
      const answer = await response;
      assert.equal(answer.status, status);
      assert.match(((await answer.json()) as { message: string }).message, message);
    };
    await refused(decide('{"reason":'), 400, /JSON/);
    await refused(decide('null'), 400, /the body must be a JSON object/);
    await refused(decide('{"reason":7}'), 400, /reason must be a string/);
    await refused(decide('{}'), 404, /no pending request ar-00000000/);
    await refused(fetch(`${consoleUrl}api/sessions?limit=0`), 400, /limit must be an integer from 1 to 500/);
    await refused(
      fetch(`${consoleUrl}api/sessions?before=x`),
      400,
      /before must be the next of a previous page/,
    );
    await refused(fetch(`${consoleUrl}api/sessions/no-such-session`), 404, /no session no-such-session/);
    const rebound = await runCommand('curl', [
      '-s',
      '-H',
      'Host: attacker.example',
      `${consoleUrl}api/sessions`,
    ]);
    assert.equal(rebound.code, 0, rebound.stderr);
    assert.match(rebound.stdout, /the console answers to loopback names only, not attacker\.example/);
    assert.ok(!rebound.stdout.includes('billing-api'), rebound.stdout);
    const wide = await runCommand(process.execPath, [
      cli,
      'local',
      '-f',
      work.path,
      '--as',
      'system:serviceaccount:ops:agent',
      '--listen',
      'web-1=127.0.0.1:1',
      '--console',
      '0.0.0.0:8080',
    ]);
    assert.equal(wide.code, 2);
    assert.match(wide.stderr, /--console 0\.0\.0\.0:8080: must be a loopback HOST:PORT/);
  });
});
