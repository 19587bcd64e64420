// Starts a real PostgreSQL server for tests: initdb + postgres in a temp dir on a free loopback
// port, with the requested pg_hba authentication for an application user and, optionally, TLS
// with a throwaway CA. postgres refuses to run as root, so when we are root it runs as the
// `postgres` system user. Every server is stopped on stop() and on process exit.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  cpSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { type Socket as NetSocket, connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import type { BundleConnection, BundlePolicy } from '../../api/bundle.ts';
import type { EventSink, SessionEvent } from '../../api/events.ts';
import { createCertificateAuthority } from '../../operator/pki.ts';
import { type Frame, FrameReader } from '../../sidecar/postgres/frames.ts';
import { decodeFields, encodeStartup } from '../../sidecar/postgres/messages.ts';
import {
  type PostgresEnforcer,
  type PostgresServerOptions,
  servePostgres,
} from '../../sidecar/postgres/server.ts';
import { freePort } from './process.ts';

const bin = process.env.AIRLOCK_PG_BIN ?? '/usr/lib/postgresql/15/bin';
const adminUser = 'airlock_admin';

export type PostgresAuth = 'scram-sha-256' | 'md5' | 'password';

export interface PostgresOptions {
  /** Serve TLS and accept only TLS connections over TCP (hostssl). */
  tls?: boolean;
  /** pg_hba method for the application user over TCP; scram-sha-256 when omitted. */
  auth?: PostgresAuth;
  /** Also listen on these addresses and accept the application user from these CIDRs (pod networks). */
  network?: { listen: string[]; clients: string[] };
}

export interface PostgresServer {
  host: string;
  port: number;
  /** The application user and its password: the credential the enforcer holds. */
  user: string;
  password: string;
  database: string;
  /** PEM of the CA that signed the server certificate (CN localhost, SANs localhost and 127.0.0.1). */
  ca?: string;
  url: string;
  /** Directory of the server's Unix socket (trust authentication; setup and direct baselines). */
  socketDir: string;
  /** Runs SQL as the superuser over the Unix socket (setup and inspection). */
  admin(sql: string, database?: string): Promise<pg.QueryResult>;
  /** Runs SQL as the application user over the Unix socket. */
  asUser(sql: string): Promise<pg.QueryResult>;
  logs(): string;
  stop(): Promise<void>;
}

const running = new Set<{ child: ChildProcess; dir: string }>();
let exitHooked = false;

function hookExit(): void {
  if (exitHooked) return;
  exitHooked = true;
  const cleanup = () => {
    for (const entry of running) {
      entry.child.kill('SIGQUIT');
      rmSync(entry.dir, { recursive: true, force: true });
    }
    running.clear();
  };
  process.on('exit', cleanup);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      cleanup();
      process.exit(128 + (signal === 'SIGINT' ? 2 : 15));
    });
  }
}

function postgresIds(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
  return { uid, gid };
}

function chownTree(path: string, ids: { uid: number; gid: number } | undefined): void {
  if (ids) execFileSync('chown', ['-R', `${ids.uid}:${ids.gid}`, path]);
}

let template: string | undefined;

/** initdb once per process; each server starts from a copy. */
function templateDir(ids: { uid: number; gid: number } | undefined): string {
  if (template) return template;
  const dir = mkdtempSync(join(tmpdir(), 'airlock-pgtemplate-'));
  chownTree(dir, ids);
  execFileSync(
    join(bin, 'initdb'),
    ['-D', join(dir, 'data'), '-U', adminUser, '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync'],
    { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'], ...ids },
  );
  template = dir;
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export async function startPostgres(options: PostgresOptions = {}): Promise<PostgresServer> {
  const auth = options.auth ?? 'scram-sha-256';
  const ids = postgresIds();
  const dir = mkdtempSync(join(tmpdir(), 'airlock-pg-'));
  chmodSync(dir, 0o700);
  const data = join(dir, 'data');
  cpSync(join(templateDir(ids), 'data'), data, { recursive: true });
  chmodSync(data, 0o700);
  const socketDir = join(dir, 'sock');
  mkdirSync(socketDir);
  const port = await freePort();
  let ca: string | undefined;
  const conf = [
    `listen_addresses = '${['127.0.0.1', ...(options.network?.listen ?? [])].join(',')}'`,
    `port = ${port}`,
    `unix_socket_directories = '${socketDir}'`,
    `password_encryption = '${auth === 'md5' ? 'md5' : 'scram-sha-256'}'`,
    'fsync = off',
    'synchronous_commit = off',
    'full_page_writes = off',
    'max_connections = 60',
    'shared_buffers = 32MB',
  ];
  if (options.tls) {
    const authority = await createCertificateAuthority('Airlock Test PostgreSQL CA');
    const leaf = await authority.issue({
      commonName: 'localhost',
      dnsNames: ['localhost'],
      ipAddresses: ['127.0.0.1'],
      usage: 'server',
    });
    writeFileSync(join(data, 'server.crt'), leaf.certificate);
    writeFileSync(join(data, 'server.key'), leaf.privateKey, { mode: 0o600 });
    ca = authority.certificate;
    conf.push('ssl = on', "ssl_cert_file = 'server.crt'", "ssl_key_file = 'server.key'");
  }
  writeFileSync(
    join(data, 'postgresql.conf'),
    `${readFileSync(join(data, 'postgresql.conf'), 'utf8')}\n${conf.join('\n')}\n`,
  );
  const hostType = options.tls ? 'hostssl' : 'host';
  writeFileSync(
    join(data, 'pg_hba.conf'),
    [
      'local all all trust',
      `${hostType} all ${adminUser} 127.0.0.1/32 reject`,
      `${hostType} all all 127.0.0.1/32 ${auth}`,
      ...(options.network?.clients ?? []).map((cidr) => `${hostType} all ${adminUser} ${cidr} reject`),
      ...(options.network?.clients ?? []).map((cidr) => `${hostType} all all ${cidr} ${auth}`),
      '',
    ].join('\n'),
  );
  chownTree(dir, ids);
  const logFile = join(dir, 'postgres.log');
  const log = openSync(logFile, 'a');
  if (ids) chownSync(logFile, ids.uid, ids.gid);
  const child = spawn(join(bin, 'postgres'), ['-D', data], { cwd: dir, stdio: ['ignore', log, log], ...ids });
  const entry = { child, dir };
  running.add(entry);
  hookExit();
  let exited = false;
  const exit = new Promise<void>((resolve) =>
    child.once('exit', () => {
      exited = true;
      resolve();
    }),
  );

  const admin = async (sql: string, database = 'postgres'): Promise<pg.QueryResult> => {
    const client = new pg.Client({ host: socketDir, port, user: adminUser, database });
    await client.connect();
    try {
      return await client.query(sql);
    } finally {
      await client.end();
    }
  };
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      await admin('SELECT 1');
      break;
    } catch (error) {
      if (exited || Date.now() > deadline) {
        running.delete(entry);
        child.kill('SIGQUIT');
        const logs = readFileSync(logFile, 'utf8');
        rmSync(dir, { recursive: true, force: true });
        throw new Error(`postgres did not start: ${(error as Error).message}\n${logs}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  const user = 'app';
  const password = `app-${randomBytes(9).toString('base64url')}`;
  const database = 'appdb';
  await admin(`CREATE ROLE ${user} LOGIN PASSWORD '${password}'`);
  await admin(`CREATE DATABASE ${database} OWNER ${user}`);
  const asUser = async (sql: string): Promise<pg.QueryResult> => {
    const client = new pg.Client({ host: socketDir, port, user, database });
    await client.connect();
    try {
      return await client.query(sql);
    } finally {
      await client.end();
    }
  };
  return {
    host: '127.0.0.1',
    port,
    user,
    password,
    database,
    ...(ca !== undefined && { ca }),
    socketDir,
    url: `postgresql://${user}:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`,
    admin,
    asUser,
    logs: () => readFileSync(logFile, 'utf8'),
    async stop() {
      if (!running.has(entry)) return;
      running.delete(entry);
      if (!exited) {
        child.kill('SIGINT');
        const timer = setTimeout(() => child.kill('SIGQUIT'), 5000);
        await exit;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------------------------------
// The enforcer in front of a test server

export function policy(name: string, spec: Partial<Omit<BundlePolicy, 'name'>> = {}): BundlePolicy {
  return {
    name,
    namespace: 'default',
    mode: 'enforce',
    recording: { enabled: true, results: 'summary' },
    masking: [],
    rules: [],
    ...spec,
  };
}

export function connectionFor(
  server: PostgresServer,
  policies: BundlePolicy[],
  tls: BundleConnection['tls'] = { mode: 'disable' },
): BundleConnection {
  return {
    name: 'orders-db',
    namespace: 'default',
    protocol: 'postgres',
    host: server.host,
    port: server.port,
    tls,
    credentials: { username: server.user, password: server.password },
    postgres: { database: server.database },
    policies,
  };
}

export interface TestEnforcer extends PostgresEnforcer {
  events: SessionEvent[];
  /** Connection settings for a client: any user, a wrong password. */
  client: { host: string; port: number; user: string; password: string; database: string };
}

export async function startEnforcer(
  server: PostgresServer,
  policies: BundlePolicy[],
  options: Partial<Omit<PostgresServerOptions, 'connection' | 'events' | 'identity'>> & {
    tls?: PostgresServerOptions['tls'];
    upstreamTls?: BundleConnection['tls'];
  } = {},
): Promise<TestEnforcer> {
  const events: SessionEvent[] = [];
  const sink: EventSink = { emit: (event) => void events.push(event) };
  const { upstreamTls, ...rest } = options;
  const enforcer = await servePostgres({
    connection: connectionFor(server, policies, upstreamTls),
    identity: { namespace: 'default', serviceAccount: 'agent' },
    events: sink,
    ...rest,
  });
  return Object.assign(enforcer, {
    events,
    client: {
      host: enforcer.host,
      port: enforcer.port,
      user: 'agent',
      password: 'not-the-password',
      database: 'whatever',
    },
  });
}

// ---------------------------------------------------------------------------------------
// A raw protocol client, for what drivers do not do (pipelines, row limits, bad frames)

export interface RawFrame {
  type: string;
  body: Buffer;
  /** ErrorResponse/NoticeResponse fields. */
  fields?: Map<string, string>;
}

export class RawClient {
  readonly socket: NetSocket;
  private readonly reader = new FrameReader({ maxLength: 1 << 30 });
  private waiters: (() => void)[] = [];
  closed = false;
  constructor(socket: NetSocket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.reader.push(chunk);
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined);
  }
  /** host may be a Unix socket directory (starts with /). */
  static async connect(host: string, port: number): Promise<RawClient> {
    const socket = host.startsWith('/')
      ? netConnect({ path: `${host}/.s.PGSQL.${port}` })
      : netConnect({ host, port });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    return new RawClient(socket);
  }
  /** Connects and completes startup (ignores the password: the enforcer never asks). */
  static async session(host: string, port: number, params: [string, string][] = []): Promise<RawClient> {
    const client = await RawClient.connect(host, port);
    const startup = new Map<string, string>([['user', 'agent'], ['database', 'x'], ...params]);
    client.send(encodeStartup(startup));
    const frames = await client.until('Z');
    const error = frames.find((f) => f.type === 'E');
    if (error) throw new Error(`startup failed: ${error.fields?.get('M')}`);
    return client;
  }
  send(...buffers: Buffer[]): void {
    this.socket.write(Buffer.concat(buffers));
  }
  /** Raw bytes of the next n bytes (for one-byte SSL answers). */
  async bytes(n: number): Promise<Buffer> {
    const frames: Buffer[] = [];
    while (this.reader.buffered < n) {
      if (this.closed) throw new Error('connection closed');
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
    const all = this.reader.drain();
    frames.push(all.subarray(0, n));
    if (all.length > n) this.reader.push(all.subarray(n));
    return frames[0]!;
  }
  async next(timeoutMs = 10_000): Promise<RawFrame | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const frame: Frame | undefined = this.reader.next();
      if (frame) {
        const type = String.fromCharCode(frame.type);
        return {
          type,
          body: Buffer.from(frame.body),
          ...((type === 'E' || type === 'N') && { fields: decodeFields(frame.body) }),
        };
      }
      if (this.closed) return undefined;
      if (Date.now() > deadline) throw new Error('timed out waiting for a message');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }
  /** Messages up to and including the first of the given type (or until the connection closes). */
  async until(type: string, timeoutMs = 10_000): Promise<RawFrame[]> {
    const frames: RawFrame[] = [];
    for (;;) {
      const frame = await this.next(timeoutMs);
      if (!frame) return frames;
      frames.push(frame);
      if (frame.type === type) return frames;
    }
  }
  close(): void {
    this.socket.destroy();
  }
  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}

// ---------------------------------------------------------------------------------------
// psql, the real client

export interface PsqlResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs psql against host:port with a script on stdin. PGPASSWORD is deliberately wrong. */
export function psql(
  target: { host: string; port: number },
  script: string,
  options: { args?: string[]; env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<PsqlResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      'psql',
      [
        '-X',
        '-q',
        '-h',
        target.host,
        '-p',
        String(target.port),
        '-U',
        'agent',
        '-d',
        'anything',
        ...(options.args ?? []),
      ],
      {
        env: {
          PATH: process.env.PATH ?? '/usr/bin:/bin',
          PGPASSWORD: 'wrong-password',
          PGSSLMODE: 'disable',
          PGCONNECT_TIMEOUT: '10',
          ...options.env,
        },
        stdio: ['pipe', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(script);
  });
}
