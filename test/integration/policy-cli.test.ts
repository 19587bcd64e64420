// `airlock policy check|lint|test|replay` as the real CLI in its own process: decisions and exit
// statuses on the shipped examples, lint warnings and --strict, policy unit tests passing and
// failing, and a replay of sessions recorded through `airlock local` (a real PostgreSQL, real
// psql) under a changed policy. Bad input exits 2 with a clear message and changes nothing.
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import YAML from 'yaml';
import { type PostgresServer, psql, startPostgres } from '../support/postgres.ts';
import {
  freePort,
  runCommand,
  type Service,
  startService,
  temporaryDirectory,
  waitFor,
} from '../support/process.ts';
import { requires } from '../support/tools.ts';

const cli = new URL('../../bin/airlock.js', import.meta.url).pathname;
const examples = new URL('../../examples', import.meta.url).pathname;
const airlock = (...args: string[]) => runCommand(process.execPath, [cli, ...args], undefined, 60_000);

const support = 'system:serviceaccount:agents:support-agent';
const deployBot = 'system:serviceaccount:agents:deploy-bot';
/** `airlock policy check` of the policies in `dir`: may `as` do `request` (given with `flag`) on `connection`? */
const checkIn = (
  dir: string,
  as: string,
  connection: string,
  flag: string,
  request: string,
  ...more: string[]
) => airlock('policy', 'check', '-f', dir, '--as', as, '--connection', connection, flag, request, ...more);
const check = (as: string, connection: string, flag: string, request: string, ...more: string[]) =>
  checkIn(examples, as, connection, flag, request, ...more);
const checkOrders = (sql: string, ...more: string[]) => check(support, 'orders-db', '--sql', sql, ...more);

const object = (kind: string, name: string, body: object, metadata: object = {}) => ({
  apiVersion: kind === 'Secret' ? 'v1' : 'airlock.dev/v1alpha1',
  kind,
  metadata: { name, namespace: 'ops', ...metadata },
  ...body,
});
const manifests = (...objects: object[]) => objects.map((o) => YAML.stringify(o)).join('---\n');

describe('airlock policy', () => {
  let work: { path: string; remove(): Promise<void> };
  before(async () => {
    work = await temporaryDirectory('policy-cli');
  });
  after(async () => {
    await work?.remove();
  });

  /** A directory holding the given files. */
  function directory(name: string, files: Record<string, string>): string {
    const dir = join(work.path, name);
    mkdirSync(dir, { recursive: true });
    for (const [file, text] of Object.entries(files)) {
      mkdirSync(join(dir, file, '..'), { recursive: true });
      writeFileSync(join(dir, file), text);
    }
    return dir;
  }

  it('is described by airlock --help and airlock policy --help', async () => {
    const help = await airlock('--help');
    assert.equal(help.code, 0);
    assert.match(help.stdout, /policy\s+Check, lint, test and replay AccessPolicies/);
    const policyHelp = await airlock('policy', '--help');
    assert.equal(policyHelp.code, 0);
    for (const action of ['check', 'lint', 'test', 'replay'])
      assert.match(policyHelp.stdout, new RegExp(`airlock policy ${action} `));
    assert.match(policyHelp.stdout, /0 allowed, 3 denied, 4 held for approval, 2 bad input/);
  });

  it('check: decides SQL with the policy, the rule and the statement as the analyzer reads it', async () => {
    const denied = await checkOrders('delete from ORDERS -- tidy up');
    assert.equal(denied.code, 3, denied.stderr);
    assert.match(
      denied.stdout,
      /^DENY {2}system:serviceaccount:agents:support-agent on Connection agents\/orders-db/,
    );
    assert.match(denied.stdout, /decided by {2}AccessPolicy support-agent-orders rule no-unbounded-writes/);
    assert.match(denied.stdout, /message {5}Add a WHERE clause that names the rows\./);
    assert.match(
      denied.stdout,
      /kinds DELETE; classes write; tables orders; functions -; unbounded write yes/,
    );

    const held = await checkOrders("UPDATE orders SET status = 'refunded' WHERE id = 7");
    assert.equal(held.code, 4, held.stderr);
    assert.match(held.stdout, /^REQUIRE APPROVAL/);
    assert.match(held.stdout, /rule writes-need-approval/);
    assert.match(held.stdout, /approval {4}by group dba-oncall, within 15m, scope statement/);

    const allowed = await checkOrders(
      'SELECT c.name, c.ssn FROM public.customers c WHERE c.id = 42',
      '-o',
      'json',
    );
    assert.equal(allowed.code, 0, allowed.stderr);
    const outcome = JSON.parse(allowed.stdout);
    assert.equal(outcome.decision.action, 'allow');
    assert.deepEqual(outcome.reading.statements[0].tables, ['public.customers']);
    const columns = outcome.masks.filter((m: { column?: string }) => m.column);
    assert.deepEqual(columns, [
      {
        policy: 'support-agent-orders',
        rule: 'identity-columns',
        strategy: 'redact',
        column: 'public.customers.ssn',
        glob: 'public.customers.ssn',
      },
    ]);
    assert.ok(outcome.masks.some((m: { detectors?: string[] }) => m.detectors?.includes('credit-card')));

    // What the analyzer cannot parse is refused, as the enforcer refuses it.
    const unparsable = await checkOrders('SELEC * FROM orders');
    assert.equal(unparsable.code, 3);
    assert.match(unparsable.stdout, /read as {5}unparsable: syntax error/);
  });

  it('check: decides Redis commands, Kubernetes requests and MCP calls as their enforcers do', async () => {
    const infra = 'system:serviceaccount:agents:infra-agent';

    const held = await check(support, 'sessions-cache', '--redis', 'del "session:42"');
    assert.equal(held.code, 4, held.stderr);
    assert.match(held.stdout, /rule session-deletes-need-approval/);
    assert.match(held.stdout, /command {5}DEL; classes write\n {2}keys {8}session:42/);
    // A copy of a masked key to one that is not masked would reveal it: the masking rule decides.
    const copy = await check(support, 'sessions-cache', '--redis', 'COPY token:7 scratch');
    assert.equal(copy.code, 3, copy.stdout);
    assert.match(copy.stdout, /rule masking:tokens/);
    const monitor = await check(support, 'sessions-cache', '--redis', 'Monitor');
    assert.equal(monitor.code, 3, monitor.stdout);
    assert.match(monitor.stdout, /MONITOR is refused/);
    const read = await check(support, 'sessions-cache', '--redis', 'HGET user:7 email', '-o', 'json');
    assert.equal(read.code, 0, read.stderr);
    const outcome = JSON.parse(read.stdout);
    assert.deepEqual(outcome.reading.keys, ['user:7']);
    assert.ok(outcome.masks.some((m: { keys?: string[] }) => m.keys?.includes('user:*#password_hash')));

    const deleteNamespace = await check(
      infra,
      'platform-cluster',
      '--kubernetes',
      'DELETE /api/v1/namespaces/web',
    );
    assert.equal(deleteNamespace.code, 3, deleteNamespace.stdout);
    assert.match(deleteNamespace.stdout, /rule no-namespace-deletes/);
    assert.match(deleteNamespace.stdout, /request {5}delete namespaces web/);
    const scale = await check(
      infra,
      'platform-cluster',
      '--kubernetes',
      'PATCH /apis/apps/v1/namespaces/web/deployments/api/scale',
    );
    assert.equal(scale.code, 4, scale.stdout);
    // The API server's own reading: an encoded slash or a dot segment is refused, not guessed.
    for (const path of ['/api/v1/namespaces/web/pods/a%2fb', '/api/v1/namespaces/web/./pods']) {
      const ambiguous = await check(infra, 'platform-cluster', '--kubernetes', `GET ${path}`);
      assert.equal(ambiguous.code, 3, ambiguous.stdout);
      assert.match(ambiguous.stdout, /request {5}rejected: /);
    }
    const exec = await check(
      infra,
      'platform-cluster',
      '--kubernetes',
      'POST /api/v1/namespaces/web/pods/api-0/exec?command=sh&command=-c&command=rm%20-rf%20/',
    );
    assert.equal(exec.code, 3, exec.stdout);
    assert.match(exec.stdout, /rule no-destructive-exec/);

    const nested = await check(
      support,
      'tools-mcp',
      '--mcp',
      'tools/call read_file {"options": {"path": "/etc/shadow"}}',
    );
    assert.equal(nested.code, 3, nested.stdout);
    assert.match(nested.stdout, /rule no-system-files/);
    const fullwidth = await check(support, 'tools-mcp', '--mcp', 'tools/call ｄｒｏｐ_table');
    assert.equal(fullwidth.code, 3, fullwidth.stdout);
    assert.match(fullwidth.stdout, /outside the plain set/);
    const search = await check(support, 'tools-mcp', '--mcp', 'tools/call search {"q": "orders"}');
    assert.equal(search.code, 0, search.stdout);

    // Bad input: a request for another protocol's Connection, unbalanced quotes, arguments
    // that are not an object, and two requests at once are usage errors that decide nothing.
    const wrong = await check(support, 'tools-mcp', '--redis', 'GET x');
    assert.equal(wrong.code, 2);
    assert.match(wrong.stderr, /Connection tools-mcp speaks mcp; --redis needs a redis Connection/);
    const unbalanced = await check(support, 'sessions-cache', '--redis', 'GET "session:42');
    assert.equal(unbalanced.code, 2);
    assert.match(unbalanced.stderr, /must be a command line/);
    const notObject = await check(support, 'tools-mcp', '--mcp', 'tools/call search [1]');
    assert.equal(notObject.code, 2);
    assert.match(notObject.stderr, /must be a JSON object/);
    const two = await check(support, 'tools-mcp', '--mcp', 'tools/call search', '--redis', 'GET x');
    assert.equal(two.code, 2);
    assert.match(two.stderr, /give exactly one of --sql, --command, --http, --redis, --kubernetes, --mcp/);
  });

  it('check: decides SSH command lines by their parsed argv and HTTP requests by their normalized path', async () => {
    const rm = await check(deployBot, 'bastion', '--command', "sudo /bin/rm -r -f '/var/lib/orders'");
    assert.equal(rm.code, 3, rm.stderr);
    assert.match(rm.stdout, /rule no-destruction/);
    assert.match(rm.stdout, /runs {8}\["rm","-r","-f","\/var\/lib\/orders"\]/);
    const restart = await check(deployBot, 'bastion', '--command', 'systemctl restart orders');
    assert.equal(restart.code, 4, restart.stdout);
    const logs = await check(deployBot, 'bastion', '--command', 'journalctl -u orders');
    assert.equal(logs.code, 0, logs.stdout);
    assert.match(
      logs.stdout,
      /masks {7}detectors aws-access-key, private-key, jwt: redact, by deploy-bot-bastion\/secrets/,
    );

    const admin = await check(support, 'billing-api', '--http', 'get /v1/../%61dmin//users');
    assert.equal(admin.code, 3, admin.stdout);
    assert.match(admin.stdout, /path {8}GET \/admin\/users/);
    const ambiguous = await check(support, 'billing-api', '--http', 'GET /admin%2Fusers');
    assert.equal(ambiguous.code, 3, ambiguous.stdout);
    assert.match(ambiguous.stdout, /path {8}rejected: encoded slash/);
    const refund = await check(support, 'billing-api', '--http', 'POST /v1/refunds', '-o', 'json');
    assert.equal(refund.code, 4);
    assert.equal(JSON.parse(refund.stdout).decision.rule, 'refunds-need-approval');

    // Every reading a server could act on is decided, as the enforcer decides them.
    const parameters = await check(support, 'billing-api', '--http', 'GET /admin;jsessionid=1/users');
    assert.equal(parameters.code, 3, parameters.stdout);
    assert.match(parameters.stdout, /also read {3}.*\/admin\/users/);
    // Paths are decided folded, as the enforcer does, unless the target is said to tell case apart.
    const caseSensitive = directory('case-sensitive', {
      'billing-api.yaml': (await readFile(join(examples, 'billing-api.yaml'), 'utf8')).replace(
        '    scheme: https',
        '    scheme: https\n    caseInsensitivePaths: false',
      ),
    });
    for (const [dir, code] of [
      [examples, 3],
      [caseSensitive, 0],
    ] as const) {
      const upper = await checkIn(dir, support, 'billing-api', '--http', 'GET /ADMIN/users');
      assert.equal(upper.code, code, upper.stdout);
    }

    // A Connection the identity is not granted is refused, as the sidecar refuses it.
    const ungranted = await check(deployBot, 'orders-db', '--sql', 'SELECT 1');
    assert.equal(ungranted.code, 3);
    assert.match(ungranted.stdout, /no AccessPolicy grants this Connection/);
  });

  it('check: a policy granted for the people an agent acts for applies only to them', async () => {
    const dir = directory('end-user', {
      'db.yaml': manifests(
        object('Secret', 'db', { stringData: { username: 'agent', password: 'x' } }),
        object('Connection', 'db', {
          spec: {
            protocol: 'postgres',
            host: 'db.example',
            port: 5432,
            tls: { mode: 'disable' },
            credentials: { secretRef: { name: 'db' } },
            endUser: { issuer: 'https://login.example.com/', audiences: ['agents'], usernamePrefix: 'oidc:' },
          },
        }),
        object('AccessPolicy', 'for-dbas', {
          spec: {
            subjects: [{ kind: 'ServiceAccount', name: 'bot', actingFor: { groups: ['oidc:dba'] } }],
            connections: ['db'],
            rules: [
              {
                name: 'writes-held',
                action: 'require-approval',
                sql: { classes: ['write'] },
                approval: { approvers: { groups: ['oidc:dba-oncall'] } },
              },
            ],
          },
        }),
      ),
    });
    const check = (...who: string[]) =>
      airlock(
        'policy',
        'check',
        '-f',
        dir,
        '--as',
        'system:serviceaccount:ops:bot',
        ...who,
        '--connection',
        'db',
        '--sql',
        'UPDATE t SET a = 1 WHERE id = 2',
      );
    const dba = await check('--user', 'oidc:ada@example.com', '--group', 'oidc:dba');
    assert.equal(dba.code, 4, dba.stdout + dba.stderr);
    assert.match(dba.stdout, /acting for oidc:ada@example\.com/);
    const other = await check('--user', 'oidc:bob@example.com', '--group', 'oidc:support');
    assert.equal(other.code, 3, other.stdout);
    assert.match(other.stdout, /no AccessPolicy grants this Connection/);
    const nobody = await check();
    assert.equal(nobody.code, 3, nobody.stdout);
    const groupsAlone = await check('--group', 'oidc:dba');
    assert.equal(groupsAlone.code, 2);
    assert.match(groupsAlone.stderr, /give --user too/);
  });

  it('check: bad input exits 2 with what is wrong', async () => {
    const cases: [string[], RegExp][] = [
      [
        ['--as', support, '--connection', 'orders-db'],
        /give exactly one of --sql, --command, --http, --redis, --kubernetes, --mcp/,
      ],
      [['--as', support, '--connection', 'orders-db', '--sql', 'SELECT 1', '--http', 'GET /'], /exactly one/],
      [['--as', support, '--sql', 'SELECT 1'], /--connection NAME is required/],
      [
        ['--as', 'support-agent', '--connection', 'orders-db', '--sql', 'SELECT 1'],
        /must be system:serviceaccount:NAMESPACE:NAME/,
      ],
      [
        ['--as', support, '--connection', 'ghost-db', '--sql', 'SELECT 1'],
        /no Connection agents\/ghost-db in the manifests/,
      ],
      [
        ['--as', support, '--connection', 'orders-db', '--command', 'ls'],
        /speaks postgres; --command needs a ssh Connection/,
      ],
      [['--as', support, '--connection', 'billing-api', '--http', '/admin'], /must be 'METHOD PATH'/],
      [
        ['--as', support, '--connection', 'orders-db', '--sql', 'SELECT 1', '--bogus'],
        /Unknown option '--bogus'/,
      ],
    ];
    for (const [args, message] of cases) {
      const result = await airlock('policy', 'check', '-f', examples, ...args);
      assert.equal(result.code, 2, `${args.join(' ')}: ${result.stdout}`);
      assert.match(result.stderr, message);
      assert.equal(result.stdout, '');
    }
    const missing = await checkIn(join(work.path, 'nowhere'), support, 'x', '--sql', 'SELECT 1');
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /nowhere: no such file or directory/);
    const invalid = directory('invalid', {
      'p.yaml': manifests(object('AccessPolicy', 'p', { spec: { subjects: [], connections: ['db'] } })),
    });
    const bad = await airlock('policy', 'lint', '-f', invalid);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /p\.yaml: AccessPolicy ops\/p: spec\.subjects/);
    const action = await airlock('policy', 'frobnicate');
    assert.equal(action.code, 2);
    assert.match(action.stderr, /unknown action "frobnicate"/);
  });

  it('lint: the examples are clean; rules that never match or decide are warned about, and --strict fails', async () => {
    const clean = await airlock('policy', 'lint', '-f', examples, '--strict');
    assert.equal(clean.code, 0, clean.stdout);
    assert.match(clean.stdout, /6 AccessPolicies checked, 0 warnings/);

    const dir = directory('lint', {
      'policy.yaml': manifests(
        object(
          'AccessPolicy',
          'risky',
          {
            spec: {
              subjects: [{ kind: 'ServiceAccount', name: 'agent' }],
              connections: ['db'],
              mode: 'audit',
              masking: [{ name: 'keys', patterns: [{ name: 'maybe-key', regex: '(sk_[a-z0-9]{8})?' }] }],
              rules: [
                // "Any of these" written as one rule: all criteria must match, so it denies nothing.
                {
                  name: 'dangerous',
                  action: 'deny',
                  sql: { statements: ['DROP', 'ALTER'], unboundedWrites: true },
                },
                { name: 'writes', action: 'deny', sql: { classes: ['write'] } },
                {
                  name: 'deletes',
                  action: 'require-approval',
                  sql: { classes: ['write'], tables: ['orders'] },
                  approval: { approvers: {} },
                },
              ],
            },
          },
          { creationTimestamp: '2020-01-01T00:00:00Z' },
        ),
      ),
    });
    const warned = await airlock('policy', 'lint', '-f', dir);
    assert.equal(warned.code, 0, 'without --strict, warnings do not fail');
    assert.match(
      warned.stdout,
      /AccessPolicy ops\/risky {2}RuleNeverMatches: rule dangerous can never match: .*DROP or ALTER statement is never an unbounded write/,
    );
    assert.match(warned.stdout, /RuleShadowed: rule deletes never decides: rule writes before it denies/);
    assert.match(warned.stdout, /NoApprovers: rule deletes names no approvers/);
    assert.match(warned.stdout, /PatternMatchesEmpty: masking keys pattern maybe-key/);
    assert.match(warned.stdout, /AuditModeTooLong: mode audit for \d+ days/);
    const strict = await airlock('policy', 'lint', '-f', dir, '--strict', '-o', 'json');
    assert.equal(strict.code, 1);
    const report = JSON.parse(strict.stdout);
    assert.deepEqual(
      report.warnings.map((w: { reason: string }) => w.reason),
      ['RuleNeverMatches', 'NoApprovers', 'RuleShadowed', 'PatternMatchesEmpty', 'AuditModeTooLong'],
    );
    const young = await airlock('policy', 'lint', '-f', dir, '--audit-max-age', '100000d', '-o', 'json');
    assert.ok(
      !JSON.parse(young.stdout).warnings.some((w: { reason: string }) => w.reason === 'AuditModeTooLong'),
    );
    const badAge = await airlock('policy', 'lint', '-f', dir, '--audit-max-age', 'a month');
    assert.equal(badAge.code, 2);
    assert.match(badAge.stderr, /--audit-max-age a month: must be a number and a unit/);
  });

  it('test: the examples pass; a failing case fails the run and says what differed', async () => {
    const passed = await airlock('policy', 'test', examples);
    assert.equal(passed.code, 0, passed.stdout);
    assert.match(
      passed.stdout,
      /examples\/tests\/orders-db-policy\.test\.yaml\n {2}ok {4}reading orders is allowed/,
    );
    assert.match(passed.stdout, /(\d+) cases, \1 passed, 0 failed/);

    const dir = directory('suite', {
      'policy.yaml':
        (await readFile(join(examples, 'orders-db-policy.yaml'), 'utf8')) +
        '---\n' +
        (await readFile(join(examples, 'orders-db.yaml'), 'utf8')),
      'tests/wrong.test.yaml': YAML.stringify({
        tests: [
          {
            name: 'drop is denied',
            given: { identity: support, connection: 'orders-db', sql: 'DROP TABLE orders' },
            expect: { decision: 'deny', rule: 'no-destructive-ddl' },
          },
          {
            name: 'a wrong expectation',
            given: { identity: support, connection: 'orders-db', sql: 'DELETE FROM orders WHERE id = 1' },
            expect: { decision: 'allow' },
          },
          {
            name: 'an unmasked column expected masked',
            given: { identity: support, connection: 'orders-db', sql: 'SELECT name FROM customers' },
            expect: { decision: 'allow', masked: ['customers.name'] },
          },
        ],
      }),
    });
    const failed = await airlock('policy', 'test', dir, '-o', 'json');
    assert.equal(failed.code, 1, failed.stderr);
    const report = JSON.parse(failed.stdout);
    assert.equal(report.passed, 1);
    assert.equal(report.failed, 2);
    assert.deepEqual(report.cases[1].failures, ['decision: expected allow, got require-approval']);
    assert.deepEqual(report.cases[2].failures, [
      'masked: expected customers.name masked, got no column masked',
    ]);
    const text = await airlock('policy', 'test', dir);
    assert.match(
      text.stdout,
      /FAIL {2}a wrong expectation\n {10}decision: expected allow, got require-approval/,
    );

    const malformed = directory('malformed', {
      'bad.test.yaml': YAML.stringify({
        tests: [
          { name: 'x', given: { identity: support, connection: 'orders-db' }, expect: { decision: 'maybe' } },
        ],
      }),
    });
    const bad = await airlock('policy', 'test', malformed);
    assert.equal(bad.code, 2);
    assert.match(
      bad.stderr,
      /bad\.test\.yaml: tests\.0\.given: give exactly one of sql, command, http, redis, kubernetes, mcp/,
    );
    const none = await airlock('policy', 'test', directory('empty', {}));
    assert.equal(none.code, 2);
    assert.match(none.stderr, /no \*\.test\.yaml file under/);
  });
});

describe('airlock policy replay', requires('postgres', 'psql'), () => {
  let database: PostgresServer;
  let work: { path: string; remove(): Promise<void> };
  let server: Service | undefined;
  let store: string;
  const identity = 'system:serviceaccount:ops:agent';

  before(async () => {
    work = await temporaryDirectory('policy-replay');
    store = join(work.path, 'store');
    database = await startPostgres();
    await database.asUser(`
      CREATE TABLE orders (id int PRIMARY KEY, status text);
      CREATE TABLE customers (id int PRIMARY KEY, name text, email text);
      CREATE TABLE scratch (id int);
      INSERT INTO orders VALUES (1, 'open'), (2, 'open'), (3, 'open');
      INSERT INTO customers VALUES (1, 'Ada', 'ada@example.com'), (2, 'Bob', 'bob@example.com');
    `);
  });
  after(async () => {
    await server?.stop();
    await database?.stop();
    await work?.remove();
  });

  const connection = () =>
    manifests(
      object('Secret', 'orders-db', { stringData: { username: database.user, password: database.password } }),
      object('Connection', 'orders-db', {
        spec: {
          protocol: 'postgres',
          host: database.host,
          port: database.port,
          tls: { mode: 'disable' },
          credentials: { secretRef: { name: 'orders-db' } },
          postgres: { database: database.database },
        },
      }),
    );
  const policy = (spec: object) =>
    manifests(
      object('AccessPolicy', 'agent-orders', {
        spec: { subjects: [{ kind: 'ServiceAccount', name: 'agent' }], connections: ['orders-db'], ...spec },
      }),
    );

  it('re-decides recorded statements under a changed policy and prints what would change', async () => {
    // Today's policy: only DROP is refused.
    const today = directory(work.path, 'today', {
      'connection.yaml': connection(),
      'policy.yaml': policy({ rules: [{ name: 'no-drop', action: 'deny', sql: { statements: ['DROP'] } }] }),
    });
    const port = await freePort();
    const logFile = join(work.path, 'local.log');
    server = startService(
      'airlock local',
      process.execPath,
      [
        cli,
        'local',
        '-f',
        today,
        '--as',
        identity,
        '--listen',
        `orders-db=127.0.0.1:${port}`,
        '--store',
        store,
      ],
      { logFile },
    );
    await waitFor('airlock local ready', async () => (await readFile(logFile, 'utf8')).includes('ready'), {
      service: server,
      timeoutMs: 60_000,
    });
    const session = await psql(
      { host: '127.0.0.1', port },
      [
        'SELECT id, status FROM orders WHERE id = 1;',
        'SELECT name, email FROM customers;',
        "UPDATE orders SET status = 'shipped' WHERE id = 2;",
        'DELETE FROM scratch;',
        'DROP TABLE scratch;',
      ].join('\n'),
    );
    assert.match(session.stderr, /denied by AccessPolicy "agent-orders" rule "no-drop"/);
    assert.match(session.stdout, /ada@example\.com/, `nothing is masked today: ${session.stderr}`);

    // The embedded store serves one process: replay waits for airlock local to stop.
    const busy = await airlock('policy', 'replay', '-f', today, '--store', store);
    assert.equal(busy.code, 2);
    assert.match(busy.stderr, /airlock local is running on it; stop it first/);
    await server.stop();
    server = undefined;

    // Tomorrow's policy: unbounded writes refused, updates held, email masked, DROP no longer refused.
    const tomorrow = directory(work.path, 'tomorrow', {
      'connection.yaml': connection(),
      'policy.yaml': policy({
        masking: [{ name: 'contact', columns: ['customers.email'] }],
        rules: [
          { name: 'no-unbounded-writes', action: 'deny', sql: { unboundedWrites: true } },
          {
            name: 'updates-need-approval',
            action: 'require-approval',
            sql: { statements: ['UPDATE'] },
            approval: { approvers: { groups: ['dba'] } },
          },
        ],
      }),
    });
    const replayed = await airlock(
      'policy',
      'replay',
      '-f',
      tomorrow,
      '--store',
      store,
      '--since',
      '1d',
      '-o',
      'json',
    );
    assert.equal(replayed.code, 0, replayed.stderr);
    const report = JSON.parse(replayed.stdout);
    assert.equal(report.requests, 5);
    assert.equal(report.unchanged, 1, 'the read of one order changes nothing');
    assert.deepEqual(
      report.changes.map((c: { change: string; rule?: string; count: number; examples: string[] }) => [
        c.change,
        c.rule,
        c.count,
        c.examples,
      ]),
      [
        ['newly-denied', 'no-unbounded-writes', 1, ['DELETE FROM scratch']],
        ['newly-held', 'updates-need-approval', 1, ["UPDATE orders SET status = 'shipped' WHERE id = 2"]],
        ['newly-masked', 'contact', 1, ['customers.email: SELECT name, email FROM customers']],
        ['no-longer-denied', 'no-drop', 1, ['DROP TABLE scratch;']],
      ],
    );
    const text = await airlock('policy', 'replay', '-f', tomorrow, '--store', store);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /5 recorded requests; 5 decided again: 4 would change, 1 unchanged/);
    assert.match(
      text.stdout,
      /newly-denied {2}1 {2}agent-orders\/no-unbounded-writes\n {4}DELETE FROM scratch\n/,
    );

    // Under the same policy as recorded, nothing changes; other Connections and periods are left out.
    const same = await airlock('policy', 'replay', '-f', today, '--store', store, '-o', 'json');
    const sameReport = JSON.parse(same.stdout);
    assert.deepEqual(sameReport.changes, []);
    assert.equal(sameReport.unchanged, 5);
    const other = JSON.parse(
      (
        await airlock(
          'policy',
          'replay',
          '-f',
          tomorrow,
          '--store',
          store,
          '--connection',
          'billing',
          '-o',
          'json',
        )
      ).stdout,
    );
    assert.equal(other.requests, 0);
    const bad = await airlock('policy', 'replay', '-f', tomorrow, '--store', store, '--since', 'yesterday');
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--since yesterday: must be a number and a unit/);
    for (const source of [[], ['--store', store, '--cluster']]) {
      const ambiguous = await airlock('policy', 'replay', '-f', tomorrow, ...source);
      assert.equal(ambiguous.code, 2);
      assert.match(ambiguous.stderr, /give one of --store DIR\|postgres:\/\/\.\.\. or --cluster/);
    }
    const nowhere = await airlock('policy', 'replay', '-f', tomorrow, '--store', join(work.path, 'no-store'));
    assert.equal(nowhere.code, 2);
    assert.match(nowhere.stderr, /no such store/);
  });

  /** A directory holding the given files. */
  function directory(root: string, name: string, files: Record<string, string>): string {
    const dir = join(root, name);
    mkdirSync(dir, { recursive: true });
    for (const [file, text] of Object.entries(files)) writeFileSync(join(dir, file), text);
    return dir;
  }
});
