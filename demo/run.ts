// `make demo`: the data path on one machine, with nothing but what `npm ci` installs. An
// embedded PostgreSQL (PGlite, served over the wire protocol) holds customers with PII;
// `airlock local` serves it under the example AccessPolicy; a scripted agent session (psql
// when it is installed, else the pg driver) shows a masked SELECT, a blocked DROP, and an
// UPDATE held until it is approved from the CLI. Then the recorded session is printed, and the
// demo ends on the web console's address, with its sessions and one more UPDATE waiting there
// for a decision (served until Ctrl-C when run from a terminal).
import { execFile, spawn } from 'node:child_process';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import pg from 'pg';
import { terminationSignal } from '../cli/signals.ts';
import { startLocal } from '../local/local.ts';

const run = promisify(execFile);
const repository = new URL('../', import.meta.url).pathname;
const cli = join(repository, 'bin/airlock.js');
const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
const say = (s = '') => console.log(s);

async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

async function hasPsql(): Promise<boolean> {
  return run('psql', ['--version']).then(
    () => true,
    () => false,
  );
}

const seed = `
CREATE TABLE customers (
  id serial PRIMARY KEY,
  name text NOT NULL,
  email text NOT NULL,
  phone text,
  card_number text,
  ssn text,
  date_of_birth date,
  notes text
);
INSERT INTO customers (name, email, phone, card_number, ssn, date_of_birth, notes) VALUES
  ('Ada Lovelace', 'ada@example.com', '+1 415 555 0101', '4111 1111 1111 1111', '123-45-6789', '1815-12-10', 'VIP since 2019'),
  ('Grace Hopper', 'grace.hopper@navy.example', '+1 202 555 0147', '5500-0000-0000-0004', '219-09-9999', '1906-12-09', 'prefers email'),
  ('Alan Turing', 'alan@example.org', '+44 20 7946 0958', '378282246310005', '078-05-1120', '1912-06-23', 'refund pending, IBAN GB82 WEST 1234 5698 7654 32');
CREATE TABLE orders (
  id serial PRIMARY KEY,
  customer_id int REFERENCES customers(id),
  total numeric(10,2) NOT NULL,
  status text NOT NULL
);
INSERT INTO orders (customer_id, total, status) VALUES (1, 120.50, 'shipped'), (2, 75.00, 'pending'), (3, 310.99, 'pending');
`;

interface Agent {
  query(sql: string): Promise<string>;
  close(): Promise<void>;
}

/** The agent: psql when installed (one process per statement, as an LLM tool would), else pg. */
async function agent(port: number): Promise<Agent> {
  if (await hasPsql()) {
    const env = {
      ...process.env,
      PGPASSWORD: 'the-agent-does-not-know-the-password',
      PGCONNECT_TIMEOUT: '10',
    };
    return {
      async query(sql) {
        const child = spawn(
          'psql',
          ['-h', '127.0.0.1', '-p', String(port), '-U', 'agent', '-d', 'orders', '-X', '-c', sql],
          {
            env,
          },
        );
        let out = '';
        child.stdout.on('data', (d) => {
          out += d;
        });
        child.stderr.on('data', (d) => {
          out += d;
        });
        await new Promise((resolve) => child.on('close', resolve));
        return out.trimEnd();
      },
      close: async () => {},
    };
  }
  const client = new pg.Client({
    host: '127.0.0.1',
    port,
    user: 'agent',
    database: 'orders',
    password: 'unknown',
  });
  await client.connect();
  return {
    async query(sql) {
      try {
        const result = await client.query(sql);
        if (!result.fields?.length)
          return result.command ? `${result.command} ${result.rowCount ?? ''}`.trim() : '';
        const header = result.fields.map((f) => f.name).join(' | ');
        return [header, ...result.rows.map((r) => Object.values(r).join(' | '))].join('\n');
      } catch (error) {
        const e = error as { message: string; code?: string };
        return `ERROR:  ${e.message}${e.code ? ` (SQLSTATE ${e.code})` : ''}`;
      }
    },
    close: () => client.end(),
  };
}

async function airlock(args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, [cli, ...args]);
  return stdout.trimEnd();
}

async function main(): Promise<number> {
  const work = await mkdtemp(join(tmpdir(), 'airlock-demo-'));
  const checks: [string, boolean][] = [];
  const db = await PGlite.create();
  await db.exec(seed);
  const databasePort = await freePort();
  const database = new PGLiteSocketServer({ db, host: '127.0.0.1', port: databasePort, maxConnections: 8 });
  await database.start();
  const manifests = join(work, 'manifests');
  const { mkdir } = await import('node:fs/promises');
  await mkdir(manifests);
  await copyFile(
    join(repository, 'examples/orders-db-policy.yaml'),
    join(manifests, 'orders-db-policy.yaml'),
  );
  await writeFile(
    join(manifests, 'orders-db.yaml'),
    `# The demo's orders database: PGlite on loopback, instead of orders-db.data.svc.cluster.local.
apiVersion: v1
kind: Secret
metadata: {name: orders-db-credentials, namespace: agents}
stringData: {username: postgres, password: held-by-airlock}
---
apiVersion: airlock.dev/v1alpha1
kind: Connection
metadata: {name: orders-db, namespace: agents}
spec:
  protocol: postgres
  host: 127.0.0.1
  port: ${databasePort}
  tls: {mode: disable}
  credentials: {secretRef: {name: orders-db-credentials}}
  postgres: {database: postgres}
`,
  );
  const store = join(work, 'store');
  const listenPort = await freePort();
  const consolePort = await freePort();
  const consoleUrl = `http://127.0.0.1:${consolePort}/`;
  const local = await startLocal(
    {
      manifests: [manifests],
      identity: { namespace: 'agents', serviceAccount: 'support-agent' },
      listen: [{ connection: 'orders-db', host: '127.0.0.1', port: listenPort }],
      store,
      console: { host: '127.0.0.1', port: consolePort },
    },
    (line) => say(line),
  );
  const session = await agent(listenPort);
  try {
    say();
    say(
      bold(
        `$ airlock local -f examples/orders-db-policy.yaml --as system:serviceaccount:agents:support-agent --listen orders-db=127.0.0.1:${listenPort}`,
      ),
    );
    say('The agent connects with its own tools and no password; Airlock holds the credential.');

    say();
    say(bold('1. The agent reads customers: PII is masked as it streams.'));
    const select = 'SELECT name, email, phone, card_number, ssn, notes FROM customers ORDER BY id';
    say(`agent> ${select}`);
    const selected = await session.query(select);
    say(selected);
    checks.push(['emails masked', !selected.includes('ada@example.com')]);
    checks.push([
      'cards masked',
      !selected.includes('4111 1111 1111 1111') && !selected.includes('378282246310005'),
    ]);
    checks.push(['ssn column redacted', !selected.includes('123-45-6789')]);
    checks.push(['names pass', selected.includes('Ada Lovelace')]);

    say();
    say(bold('2. A destructive statement is refused by policy.'));
    say('agent> DROP TABLE customers');
    const dropped = await session.query('DROP TABLE customers');
    say(dropped);
    checks.push(['DROP refused', /no-destructive-ddl/.test(dropped) && /airlock/i.test(dropped)]);

    say();
    say(bold('3. A change to data waits for a person, who approves it from the CLI.'));
    const update = "UPDATE orders SET status = 'refunded' WHERE id = 3";
    say(`agent> ${update}`);
    const held = session.query(update);
    let pending = '';
    for (let i = 0; i < 100 && !pending.includes('ar-'); i++) {
      await new Promise((r) => setTimeout(r, 100));
      pending = await airlock(['approvals', 'list', '--store', store]);
    }
    say(bold('$ airlock approvals list'));
    say(pending);
    const id = /(ar-[0-9a-f]+)/.exec(pending)?.[1];
    checks.push(['UPDATE held for approval', id !== undefined]);
    if (id) {
      say(bold(`$ airlock approve ${id}`));
      say(await airlock(['approve', id, '--store', store]));
    }
    const updated = await held;
    say(updated);
    checks.push(['UPDATE released after approval', /UPDATE 1/.test(updated)]);
    const status = await db.query<{ status: string }>('SELECT status FROM orders WHERE id = 3');
    checks.push(['the approved UPDATE ran', status.rows[0]?.status === 'refunded']);
    const stillThere = await db.query("SELECT 1 FROM pg_tables WHERE tablename = 'customers'");
    checks.push(['the refused DROP did not run', stillThere.rows.length === 1]);

    say();
    say(bold('4. Every statement was recorded.'));
    await local.flush();
    const sessions = JSON.parse(await airlock(['sessions', 'list', '-o', 'json', '--store', store])) as {
      id: string;
      requests: number;
    }[];
    say(bold('$ airlock sessions list'));
    say(await airlock(['sessions', 'list', '--store', store]));
    const withDrop = sessions.find((s) => s.requests > 0);
    for (const s of sessions.slice().reverse()) {
      say();
      say(bold(`$ airlock sessions show ${s.id}`));
      say(await airlock(['sessions', 'show', s.id, '--store', store]));
    }
    checks.push(['sessions recorded', withDrop !== undefined]);

    say();
    say(bold('5. The web console shows the sessions, and one more UPDATE waiting for a decision.'));
    const second = await agent(listenPort);
    const waiting = second.query("UPDATE orders SET status = 'refunded' WHERE id = 2");
    let inConsole: { id: string }[] = [];
    for (let i = 0; i < 100 && inConsole.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      inConsole = (await (await fetch(`${consoleUrl}api/approvals`)).json()) as { id: string }[];
    }
    const listed = (await (await fetch(`${consoleUrl}api/sessions`)).json()) as { sessions: unknown[] };
    checks.push(['the console lists the sessions', listed.sessions.length >= sessions.length]);
    checks.push(['the console shows the waiting UPDATE', inConsole.length === 1]);

    say();
    for (const [name, ok] of checks) say(`${ok ? 'ok  ' : 'FAIL'} ${name}`);
    const failed = checks.filter(([, ok]) => !ok).length;
    say(failed === 0 ? 'demo: every step behaved as it should' : `demo: ${failed} step(s) did not behave`);
    const interactive = process.stdin.isTTY && process.stdout.isTTY;
    say(`Console: ${bold(consoleUrl)}${interactive ? ' (Ctrl-C to stop)' : ''}`);
    if (interactive) await terminationSignal();
    for (const pending of local.approvals.list()) local.approvals.decide(pending.id, false, 'the demo ended');
    await waiting;
    await second.close();
    return failed === 0 ? 0 : 1;
  } finally {
    await session.close();
    await local.close();
    await database.stop();
    await db.close();
    await rm(work, { recursive: true, force: true });
  }
}

process.exitCode = await main();
