// A full audit spool under the fail-closed policy, for the SSH, HTTP and TCP enforcers, with real
// parts: the sidecar's delivery sink with a tiny spool directory and its collector down, then the
// collector's handler over an embedded store coming back; a real OpenSSH server with the real
// ssh and sftp clients, curl against a node:http target, and a node:net target. New work is
// refused while the spool is full and served again once it drains, without a restart.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import {
  type AddressInfo,
  connect,
  createServer as createTcpServer,
  type Server as TcpServer,
} from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import pino from 'pino';
import type { BundleConnection } from '../../api/bundle.ts';
import type { RequestEvent, SessionEvent } from '../../api/events.ts';
import { type AuditLog, openAuditLog } from '../../audit/log.ts';
import { collector } from '../../operator/collector.ts';
import { CollectorDelivery, type SpoolFullPolicy } from '../../sidecar/audit/delivery.ts';
import type { Enforcer } from '../../sidecar/core/enforcer.ts';
import { serveHttp } from '../../sidecar/http/enforcer.ts';
import { policy } from '../../sidecar/policy/fixtures.ts';
import { generateHostKey, serveSsh } from '../../sidecar/ssh/enforcer.ts';
import { serveTcp } from '../../sidecar/tcp/enforcer.ts';
import { curl, type HttpUpstream, startHttpUpstream } from '../support/http-upstream.ts';
import { freePort, runCommand } from '../support/process.ts';
import { generateKeyPair, type KeyPair, type Sshd, sshToEnforcer, startSshd } from '../support/sshd.ts';
import { requires } from '../support/tools.ts';

const logger = pino({ level: 'silent' });
const identity = { namespace: 'agents', serviceAccount: 'agent', pod: 'agent-0' };
const approvals = { request: async () => ({ approved: false, outcome: 'denied' as const }) };
const unrecordable = /^Airlock: the audit trail cannot be recorded \(the collector is unreachable/;

/** A filler event, as an enforcer would emit it. */
function event(seq: number, sessionId: string): SessionEvent {
  return {
    version: 1,
    id: `${sessionId}-${seq}`,
    sessionId,
    seq,
    time: new Date().toISOString(),
    connection: { name: 'filler', namespace: 'agents', protocol: 'tcp' },
    identity,
    type: 'request',
    text: `filler ${seq} ${'x'.repeat(200)}`,
    outcome: 'allowed',
    durationMs: 1,
  };
}

/** A TCP target that echoes what it gets and counts the connections that reach it. */
async function startEchoServer(): Promise<{ server: TcpServer; connections: () => number }> {
  let connections = 0;
  const server = createTcpServer((socket) => {
    connections++;
    socket.on('error', () => socket.destroy());
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, connections: () => connections };
}

/** Connects, sends a line, and collects what comes back until the connection closes. */
function exchange(port: number, line: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' });
    let reply = '';
    socket.on('data', (chunk) => {
      reply += chunk;
      if (reply.endsWith('\n')) socket.end();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(reply));
    socket.write(line);
  });
}

/** An open TCP connection through the enforcer: sends a line, resolves with the echo. */
function held(port: number): Promise<{ echo(line: string): Promise<string>; close(): void }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: '127.0.0.1' });
    socket.once('error', reject);
    socket.once('connect', () =>
      resolve({
        echo: (line) =>
          new Promise((done) => {
            let reply = '';
            const onData = (chunk: Buffer) => {
              reply += chunk;
              if (reply.endsWith('\n')) {
                socket.off('data', onData);
                done(reply);
              }
            };
            socket.on('data', onData);
            socket.write(line);
          }),
        close: () => socket.destroy(),
      }),
    );
  });
}

describe(
  'a full audit spool fails closed for SSH, HTTP and TCP',
  requires('sshd', 'ssh', 'sftp', 'curl'),
  () => {
    let work: string;
    let store: AuditLog;
    let collectorPort: number;
    let server: Server | undefined;
    let sshd: Sshd;
    let agentKey: KeyPair;
    let http: HttpUpstream;
    let echo: Awaited<ReturnType<typeof startEchoServer>>;
    const enforcerHostKey = generateHostKey();
    const open: { enforcers: Enforcer[]; deliveries: CollectorDelivery[]; masters: ChildProcess[] } = {
      enforcers: [],
      deliveries: [],
      masters: [],
    };

    const startCollector = async () => {
      const handler = collector({
        authenticate: async (authorization) => {
          if (authorization !== 'Bearer pod-token') throw new Error('bad token');
          return identity;
        },
        store,
        logger,
      });
      server = createServer((req, res) => void handler(req, res));
      await new Promise<void>((resolve) => server!.listen(collectorPort, '127.0.0.1', resolve));
    };
    const stopCollector = async () => {
      const running = server;
      server = undefined;
      if (!running) return;
      running.closeAllConnections();
      await new Promise((resolve) => running.close(resolve));
    };

    before(async () => {
      work = await mkdtemp(join(tmpdir(), 'airlock-audit-full-'));
      await writeFile(join(work, 'token'), 'pod-token\n');
      store = await openAuditLog(join(work, 'store'));
      collectorPort = await freePort();
      sshd = await startSshd();
      agentKey = generateKeyPair(sshd.dir, 'agent');
      http = await startHttpUpstream();
      echo = await startEchoServer();
    });
    afterEach(async () => {
      for (const master of open.masters.splice(0)) if (master.exitCode === null) master.kill();
      for (const enforcer of open.enforcers.splice(0)) await enforcer.close();
      for (const delivery of open.deliveries.splice(0)) await delivery.stop();
      await stopCollector();
    });
    after(async () => {
      await http?.close();
      await new Promise((resolve) => echo?.server.close(resolve));
      await sshd?.stop();
      await store?.close();
      await rm(work, { recursive: true, force: true });
    });

    /** The sidecar's sink with its collector down and a spool that a few sessions fill. */
    async function delivery(
      name: string,
      onFull: SpoolFullPolicy = 'fail-closed',
    ): Promise<{ delivery: CollectorDelivery; emitted: SessionEvent[] }> {
      const spoolDir = join(work, name);
      await mkdir(spoolDir);
      const emitted: SessionEvent[] = [];
      const sink = new CollectorDelivery({
        url: `http://127.0.0.1:${collectorPort}/v1/events`,
        tokenFile: join(work, 'token'),
        spoolDir,
        maxSpoolBytes: 4096,
        maxQueued: 1000,
        flushMs: 5,
        onFull,
        logger,
        mirror: { emit: (e) => emitted.push(e) },
      });
      open.deliveries.push(sink);
      return { delivery: sink, emitted };
    }

    /** Emits events until the spool is full (the collector is down, so they all wait). */
    async function fill(sink: CollectorDelivery, sessionId: string): Promise<void> {
      for (let seq = 0; seq < 500 && !sink.health().full; seq++) {
        sink.emit(event(seq, sessionId));
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
      assert.ok(sink.health().full, 'the spool filled');
    }

    /** The collector comes back and takes everything spooled and queued. */
    async function recover(sink: CollectorDelivery): Promise<void> {
      await startCollector();
      await sink.drained();
      assert.equal(sink.health().full, false);
      assert.equal(sink.refusal(), undefined);
    }

    function sshConnection(): BundleConnection {
      return {
        name: 'web-1',
        namespace: 'agents',
        protocol: 'ssh',
        host: sshd.host,
        port: sshd.port,
        tls: { mode: 'disable' },
        credentials: { username: sshd.user, privateKey: sshd.clientKey.privateKey },
        ssh: { knownHosts: sshd.knownHosts },
        policies: [policy({ name: 'ops' })],
      };
    }

    /** Starts the SSH enforcer and returns the ssh client's arguments for it. */
    async function enforceSsh(sink: CollectorDelivery): Promise<string[]> {
      const enforcer = await serveSsh({
        connection: sshConnection(),
        identity,
        listen: { host: '127.0.0.1', port: 0 },
        events: sink,
        approvals,
        hostKey: enforcerHostKey.private,
      });
      open.enforcers.push(enforcer);
      return sshToEnforcer({
        dir: sshd.dir,
        port: enforcer.address.port,
        hostKey: enforcerHostKey.public,
        agentKeyPath: agentKey.path,
      });
    }

    async function enforceHttp(sink: CollectorDelivery): Promise<Enforcer> {
      const enforcer = await serveHttp({
        connection: {
          name: 'billing-api',
          namespace: 'agents',
          protocol: 'http',
          host: '127.0.0.1',
          port: http.port,
          tls: { mode: 'verify-full' },
          credentials: { token: 'held-token' },
          http: { scheme: 'http' },
          policies: [policy({ name: 'api' })],
        },
        identity,
        listen: { host: '127.0.0.1', port: 0 },
        events: sink,
        approvals,
      });
      open.enforcers.push(enforcer);
      return enforcer;
    }

    async function enforceTcp(sink: CollectorDelivery): Promise<Enforcer> {
      const enforcer = await serveTcp({
        connection: {
          name: 'cache',
          namespace: 'agents',
          protocol: 'tcp',
          host: '127.0.0.1',
          port: (echo.server.address() as AddressInfo).port,
          tls: { mode: 'disable' },
          credentials: {},
          policies: [policy({ name: 'cache-agents' })],
        },
        identity,
        listen: { host: '127.0.0.1', port: 0 },
        events: sink,
        approvals,
      });
      open.enforcers.push(enforcer);
      return enforcer;
    }

    /**
     * One SSH connection to the enforcer that later commands share (an OpenSSH control master),
     * so that they are channels of one session rather than sessions of their own.
     */
    async function master(ssh: string[], name: string): Promise<string[]> {
      const socket = join(sshd.dir, name);
      const child = spawn('ssh', [...ssh, '-M', '-S', socket, '-N', target], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      open.masters.push(child);
      let stderr = '';
      child.stderr?.on('data', (d) => {
        stderr += d;
      });
      for (let i = 0; i < 200; i++) {
        if ((await runCommand('ssh', [...ssh, '-S', socket, '-O', 'check', target])).code === 0)
          return [...ssh, '-S', socket];
        assert.equal(child.exitCode, null, `the control master is running: ${stderr}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      throw new Error('the control master did not come up');
    }

    const target = 'agent@127.0.0.1';
    const sessionStarts = (events: SessionEvent[], name: string) =>
      events.filter((e) => e.type === 'session.start' && e.connection.name === name);

    it('SSH: every exec, shell and subsystem request is refused with 126 until the spool drains', async () => {
      const { delivery: sink, emitted } = await delivery('ssh');
      const ssh = await enforceSsh(sink);
      const before = await master(ssh, 'before.sock');
      let result = await runCommand('ssh', [...before, target, 'echo served']);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout, 'served\n');

      await fill(sink, 'ssh-filler');
      const refusedFrom = emitted.length;
      const canary = join(sshd.dir, 'canary');
      // A command on the connection opened before: refused, and nothing ran on the target.
      result = await runCommand('ssh', [...before, target, `touch ${canary}`]);
      assert.equal(result.code, 126);
      assert.match(result.stderr, unrecordable);
      assert.equal(existsSync(canary), false);
      // A new connection, and a second command on it.
      const during = await master(ssh, 'during.sock');
      for (let i = 0; i < 2; i++) {
        result = await runCommand('ssh', [...during, target, `touch ${canary}`]);
        assert.equal(result.code, 126);
        assert.match(result.stderr, unrecordable);
      }
      result = await runCommand('ssh', [...ssh, target, `touch ${canary}`]);
      assert.equal(result.code, 126);
      assert.match(result.stderr, unrecordable);
      assert.equal(existsSync(canary), false);
      // A shell and a subsystem are refused the same way.
      result = await runCommand('ssh', [...ssh, '-T', target], `touch ${canary}\n`);
      assert.equal(result.code, 126);
      assert.match(result.stderr, unrecordable);
      const sftp = ssh.map((a) => (a === '-p' ? '-P' : a));
      result = await runCommand('sftp', [...sftp, '-b', '-', target], 'ls\n');
      assert.notEqual(result.code, 0);
      assert.match(result.stderr, unrecordable);
      assert.equal(existsSync(canary), false);
      // Connections made while refused started no session; the one already open recorded its refusal.
      const meanwhile = emitted.slice(refusedFrom);
      assert.deepEqual(sessionStarts(meanwhile, 'web-1'), []);
      const refusals = meanwhile.filter(
        (e): e is RequestEvent => e.type === 'request' && e.connection.name === 'web-1',
      );
      assert.equal(refusals.length, 1);
      assert.equal(refusals[0]?.outcome, 'error');
      assert.equal(refusals[0]?.error?.code, 'audit-unavailable');

      await recover(sink);
      const stored = await store.session(refusals[0]!.sessionId);
      assert.ok(
        stored?.events.some((e) => e.type === 'request' && e.error?.code === 'audit-unavailable'),
        'the refusal reached the collector once it was back',
      );
      result = await runCommand('ssh', [...before, target, 'echo again']);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout, 'again\n');
      // The connection made while refused starts its session now.
      result = await runCommand('ssh', [...during, target, 'echo started']);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout, 'started\n');
      result = await runCommand('ssh', [...ssh, target, 'echo fresh']);
      assert.equal(result.stdout, 'fresh\n');
      assert.equal(sessionStarts(emitted, 'web-1').length, 3);
      for (const socket of [before, during])
        assert.equal((await runCommand('ssh', [...socket, '-O', 'exit', target])).code, 0);
    });

    it('HTTP: requests get a 503 problem and never reach the target until the spool drains', async () => {
      const { delivery: sink, emitted } = await delivery('http');
      const enforcer = await enforceHttp(sink);
      const url = `http://127.0.0.1:${enforcer.address.port}`;
      http.requests.length = 0;
      // The enforcer's own sessions fill the spool: requests are served until it is full.
      let response = await curl([`${url}/data`]);
      for (let i = 0; i < 100 && response.status === 200; i++) response = await curl([`${url}/data`]);
      assert.equal(response.status, 503, 'a request was refused once the spool filled');
      assert.ok(sink.health().full);
      const reached = http.requests.length;
      assert.ok(reached >= 1, 'requests were served before the spool filled');

      const refusedFrom = emitted.length;
      for (const args of [[`${url}/data`], ['-X', 'POST', '--data', '{"amount":1}', `${url}/echo`]]) {
        response = await curl(args);
        assert.equal(response.status, 503);
        assert.match(response.headers, /^content-type: application\/problem\+json/im);
        const problem = JSON.parse(response.body);
        assert.equal(problem.status, 503);
        assert.equal(problem.airlock, true);
        assert.equal(problem.type, 'https://airlock.dev/problems/audit-unavailable');
        assert.match(problem.title, /Airlock/);
        assert.match(problem.detail, unrecordable);
      }
      assert.equal(http.requests.length, reached, 'nothing reached the target while refused');
      assert.deepEqual(sessionStarts(emitted.slice(refusedFrom), 'billing-api'), []);

      await recover(sink);
      response = await curl([`${url}/data`]);
      assert.equal(response.status, 200);
      assert.equal(http.requests.length, reached + 1);
    });

    it('TCP: a new connection is closed before the target is dialled until the spool drains', async () => {
      const { delivery: sink, emitted } = await delivery('tcp');
      const enforcer = await enforceTcp(sink);
      const port = enforcer.address.port;
      const connectionsBefore = echo.connections();
      assert.equal(await exchange(port, 'first\n'), 'first\n');
      const established = await held(port);
      assert.equal(await established.echo('one\n'), 'one\n');
      assert.equal(echo.connections(), connectionsBefore + 2);

      await fill(sink, 'tcp-filler');
      const refusedFrom = emitted.length;
      assert.equal(await exchange(port, 'refused\n'), '');
      assert.equal(await exchange(port, 'refused again\n'), '');
      assert.equal(echo.connections(), connectionsBefore + 2, 'the target saw no new connection');
      assert.deepEqual(
        emitted.slice(refusedFrom).filter((e) => e.connection.name === 'cache'),
        [],
        'nothing was recorded for the refused connections',
      );
      // A session already relaying carries on: its bytes cannot be refused one by one.
      assert.equal(await established.echo('two\n'), 'two\n');

      await recover(sink);
      assert.equal(await exchange(port, 'after\n'), 'after\n');
      assert.equal(echo.connections(), connectionsBefore + 3);
      established.close();
    });

    it('under the drop policy a full spool keeps SSH, HTTP and TCP serving', async () => {
      const { delivery: sink } = await delivery('drop', 'drop');
      await fill(sink, 'drop-filler');
      assert.equal(sink.refusal(), undefined);

      const ssh = await enforceSsh(sink);
      const result = await runCommand('ssh', [...ssh, target, 'echo served']);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout, 'served\n');

      const httpEnforcer = await enforceHttp(sink);
      const response = await curl([`http://127.0.0.1:${httpEnforcer.address.port}/data`]);
      assert.equal(response.status, 200);

      const tcpEnforcer = await enforceTcp(sink);
      assert.equal(await exchange(tcpEnforcer.address.port, 'kept\n'), 'kept\n');
      assert.ok(sink.health().full, 'the spool is still full: events were shed, not recorded');
    });
  },
);
