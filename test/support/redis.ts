// Starts a real Redis server for tests (Debian's redis-server) on a free loopback port with a
// temp dir, no persistence, a password for the default user and an ACL user, and an in-process
// Redis enforcer in front of it, the way the sidecar would run one.
import { writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { Redis } from 'ioredis';
import type { BundleConnection, BundlePolicy } from '../../api/bundle.ts';
import type { SessionEvent } from '../../api/events.ts';
import { createCertificateAuthority } from '../../operator/pki.ts';
import type { Approvals, Enforcer } from '../../sidecar/core/enforcer.ts';
import { type RedisEnforcerOptions, serveRedis } from '../../sidecar/redis/enforcer.ts';
import { ReplyScanner } from '../../sidecar/redis/replies.ts';
import { freePort, runCommand, type Service, startService, temporaryDirectory, waitFor } from './process.ts';

export const redisBin = process.env.AIRLOCK_REDIS_BIN ?? '/usr/bin/redis-server';
export const redisCli = process.env.AIRLOCK_REDIS_CLI ?? '/usr/bin/redis-cli';

export interface RedisServer {
  host: string;
  port: number;
  /** The default user's password (requirepass). */
  password: string;
  /** An ACL user with every command and key. */
  user: { name: string; password: string };
  /** PEM of the CA that signed the server certificate, when it serves TLS only. */
  ca?: string;
  /** A client as the default user, straight to the server: setup and inspection. */
  admin: Redis;
  stop(): Promise<void>;
}

/**
 * tls: serve TLS only (certificate for localhost and 127.0.0.1, from a throwaway CA); bind: an
 * address to listen on besides loopback (a node's, where pods reach it).
 */
export async function startRedis(options: { tls?: boolean; bind?: string } = {}): Promise<RedisServer> {
  const dir = await temporaryDirectory('redis');
  const port = await freePort();
  let ca: string | undefined;
  const listen = ['--port', String(port)];
  const cliTls: string[] = [];
  if (options.tls) {
    const authority = await createCertificateAuthority('Airlock Test Redis CA');
    const leaf = await authority.issue({
      commonName: 'localhost',
      dnsNames: ['localhost'],
      ipAddresses: ['127.0.0.1'],
      usage: 'server',
    });
    writeFileSync(`${dir.path}/server.crt`, leaf.certificate);
    writeFileSync(`${dir.path}/server.key`, leaf.privateKey, { mode: 0o600 });
    writeFileSync(`${dir.path}/ca.crt`, authority.certificate);
    ca = authority.certificate;
    listen.splice(0, 2, '--port', '0', '--tls-port', String(port));
    listen.push('--tls-cert-file', `${dir.path}/server.crt`, '--tls-key-file', `${dir.path}/server.key`);
    listen.push('--tls-auth-clients', 'no');
    cliTls.push('--tls', '--cacert', `${dir.path}/ca.crt`);
  }
  const password = `pw-${Math.random().toString(36).slice(2)}`;
  const user = { name: 'app', password: `app-${Math.random().toString(36).slice(2)}` };
  const service: Service = startService(
    'redis-server',
    redisBin,
    [
      ...listen,
      '--bind',
      '127.0.0.1',
      ...(options.bind ? [options.bind] : []),
      '--dir',
      dir.path,
      '--save',
      '',
      '--appendonly',
      'no',
      '--requirepass',
      password,
      '--enable-debug-command',
      'yes',
      '--user',
      user.name,
      'on',
      `>${user.password}`,
      '~*',
      '&*',
      '+@all',
    ],
    { logFile: `${dir.path}/redis.log` },
  );
  await waitFor(
    'redis-server',
    async () =>
      (
        await runCommand(redisCli, [
          ...cliTls,
          '-p',
          String(port),
          '-a',
          password,
          '--no-auth-warning',
          'PING',
        ])
      ).stdout.includes('PONG'),
    { service, timeoutMs: 20_000 },
  );
  const admin = new Redis({
    host: '127.0.0.1',
    port,
    password,
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    ...(ca !== undefined && { tls: { ca } }),
  });
  await admin.connect();
  return {
    host: '127.0.0.1',
    port,
    password,
    user,
    ...(ca !== undefined && { ca }),
    admin,
    async stop() {
      admin.disconnect();
      await service.stop();
      await dir.remove();
    },
  };
}

export interface EnforcedRedis {
  enforcer: Enforcer;
  port: number;
  events: SessionEvent[];
  connection: BundleConnection;
}

/** An in-process enforcer for `server` under `policies`, holding the default user's password unless told. */
export async function enforceRedis(
  server: RedisServer,
  policies: BundlePolicy[],
  options: {
    credentials?: Record<string, string>;
    tls?: BundleConnection['tls'];
    approvals?: Approvals;
    limits?: RedisEnforcerOptions['limits'];
    refusal?: () => string | undefined;
  } = {},
): Promise<EnforcedRedis> {
  const events: SessionEvent[] = [];
  const connection: BundleConnection = {
    name: 'cache',
    namespace: 'default',
    protocol: 'redis',
    host: server.host,
    port: server.port,
    tls: options.tls ?? { mode: 'disable' },
    credentials: options.credentials ?? { password: server.password },
    policies,
  };
  const enforcer = await serveRedis({
    connection,
    identity: { namespace: 'default', serviceAccount: 'agent' },
    listen: { host: '127.0.0.1', port: 0 },
    events: { emit: (event) => events.push(event), ...(options.refusal && { refusal: options.refusal }) },
    approvals: options.approvals ?? { request: async () => ({ approved: false, outcome: 'denied' }) },
    ...(options.limits && { limits: options.limits }),
  });
  return { enforcer, port: enforcer.address.port, events, connection };
}

/** redis-cli against a port, one command per argument list (its output with --no-raw quoting off). */
export function cli(port: number, args: string[], input?: string) {
  return runCommand(redisCli, ['-h', '127.0.0.1', '-p', String(port), ...args], input);
}

/**
 * Sends raw bytes to a port and reads `replies` replies (or until the connection closes):
 * each reply as RESP text, and whether the connection was closed.
 */
export function rawExchange(
  port: number,
  bytes: Buffer | string,
  replies: number,
  timeoutMs = 10_000,
): Promise<{ replies: string[]; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host: '127.0.0.1', port });
    const scanner = new ReplyScanner();
    const found: string[] = [];
    let pending: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`timed out with ${found.length} of ${replies} replies: ${found.join(' | ')}`));
    }, timeoutMs);
    const done = (closed: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ replies: found, closed });
    };
    socket.on('data', (chunk: Buffer) => {
      let at = 0;
      while (at < chunk.length) {
        const end = scanner.scan(chunk, at);
        pending.push(chunk.subarray(at, end < 0 ? chunk.length : end));
        if (end < 0) break;
        found.push(Buffer.concat(pending).toString('latin1'));
        pending = [];
        at = end;
      }
      if (found.length >= replies) done(false);
    });
    socket.on('error', () => undefined);
    socket.on('close', () => done(true));
    socket.write(bytes);
  });
}
