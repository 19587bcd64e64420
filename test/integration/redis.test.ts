// The Redis enforcer between real agents (redis-cli, ioredis, raw RESP) and a real
// redis-server: the held credential, decisions, transactions, approvals, masking in RESP2 and
// RESP3, pub/sub, blocking commands, large values and the recorded events.
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import type { BundlePolicy } from '../../api/bundle.ts';
import type { RequestEvent } from '../../api/events.ts';
import type { ApprovalRequest } from '../../sidecar/core/enforcer.ts';
import { policy } from '../../sidecar/policy/fixtures.ts';
import { encodeCommand } from '../../sidecar/redis/commands-reader.ts';
import {
  cli,
  type EnforcedRedis,
  enforceRedis,
  type RedisServer,
  rawExchange,
  startRedis,
} from '../support/redis.ts';
import { requires } from '../support/tools.ts';

const card = '4111 1111 1111 1111';

const agents: BundlePolicy = policy({
  name: 'cache-agents',
  masking: [
    { name: 'pii', detectors: ['email', 'credit-card'], strategy: 'redact', indirectUse: 'deny' },
    { name: 'tokens', keys: ['token:*'], strategy: 'redact', indirectUse: 'deny' },
    { name: 'ssn', keys: ['user:*#ssn'], strategy: 'partial', indirectUse: 'deny' },
  ],
  rules: [
    { name: 'no-dangerous', action: 'deny', redis: { classes: ['dangerous'] } },
    { name: 'no-scripts', action: 'deny', redis: { classes: ['scripting'] } },
    { name: 'no-config-writes', action: 'deny', redis: { commands: ['CONFIG SET'] } },
    {
      name: 'approve-deletes',
      action: 'require-approval',
      redis: { commands: ['DEL', 'UNLINK'], keys: ['orders:*'] },
      approval: { approvers: { groups: ['ops'] }, timeout: '1m', scope: 'statement' },
    },
  ],
});

const requests = (e: EnforcedRedis) => e.events.filter((x): x is RequestEvent => x.type === 'request');

describe('Redis enforcer', requires('redis-server', 'redis-cli'), () => {
  let server: RedisServer;
  let enforced: EnforcedRedis;
  const held: ApprovalRequest[] = [];
  let verdict = true;

  before(async () => {
    server = await startRedis();
    enforced = await enforceRedis(server, [agents], {
      credentials: { username: server.user.name, password: server.user.password },
      approvals: {
        request: async (request) => {
          held.push(request);
          return verdict
            ? { approved: true, outcome: 'approved', decidedBy: 'alice' }
            : { approved: false, outcome: 'denied', decidedBy: 'bob', reason: 'not now' };
        },
      },
    });
  });
  after(async () => {
    await enforced?.enforcer.close();
    await server?.stop();
  });

  const agent = (options: { protocol?: 2 | 3 } = {}) =>
    new Redis({
      port: enforced.port,
      password: 'the-agents-own',
      lazyConnect: true,
      enableReadyCheck: false,
      retryStrategy: () => null,
      ...options,
    });

  it('answers redis-cli with the held credential, whatever password the agent gives', async () => {
    const set = await cli(enforced.port, ['-a', 'wrong', '--no-auth-warning', 'SET', 'greeting', 'hello']);
    assert.equal(set.stdout.trim(), 'OK');
    const get = await cli(enforced.port, ['GET', 'greeting']);
    assert.equal(get.stdout.trim(), 'hello');
    // The target saw the ACL user of the Connection, never the agent's password.
    const who = await cli(enforced.port, ['ACL', 'WHOAMI']);
    assert.equal(who.stdout.trim(), server.user.name);
    const log = await server.admin.call('ACL', 'LOG');
    assert.equal(JSON.stringify(log).includes('wrong'), false);
  });

  it('denies by class and command with NOPERM, naming the policy and rule, and runs nothing', async () => {
    await server.admin.set('keep', '1');
    const flush = await cli(enforced.port, ['FLUSHALL']);
    assert.match(
      flush.stdout,
      /^NOPERM airlock: command FLUSHALL denied by AccessPolicy "cache-agents" rule "no-dangerous"/,
    );
    assert.equal(await server.admin.get('keep'), '1');
    const config = await cli(enforced.port, ['config', 'set', 'maxmemory', '1']);
    assert.match(config.stdout, /NOPERM .*rule "no-/);
    const monitor = await cli(enforced.port, ['MONITOR']);
    assert.match(monitor.stdout, /NOPERM airlock: MONITOR is refused/);
  });

  it('keeps a pipeline in order around a denied command, which never reaches the target', async () => {
    const redis = agent();
    await redis.connect();
    const results = await redis.pipeline().set('p:1', 'a').flushdb().get('p:1').keys('*').incr('p:n').exec();
    redis.disconnect();
    assert.deepEqual(results![0], [null, 'OK']);
    assert.match(String(results![1]![0]), /NOPERM airlock/);
    assert.deepEqual(results![2], [null, 'a']);
    assert.match(String(results![3]![0]), /NOPERM airlock/);
    assert.deepEqual(results![4], [null, 1]);
    assert.equal(await server.admin.get('keep'), '1');
  });

  it('decides MULTI … EXEC whole: a denied command inside discards it all', async () => {
    const redis = agent();
    await redis.connect();
    await assert.rejects(
      redis.multi().set('tx:1', 'x').keys('*').set('tx:2', 'y').exec(),
      /EXECABORT.*airlock/,
    );
    assert.equal(await server.admin.exists('tx:1', 'tx:2'), 0);
    const ok = await redis.multi().set('tx:1', 'x').get('tx:1').exec();
    // Each command of the transaction is a request event of its own.
    const recorded = requests(enforced).slice(-2);
    assert.deepEqual(
      recorded.map((e) => [e.text, e.outcome]),
      [
        ['SET tx:1 x', 'allowed'],
        ['GET tx:1', 'allowed'],
      ],
    );
    assert.deepEqual(ok, [
      [null, 'OK'],
      [null, 'x'],
    ]);
    redis.disconnect();
  });

  it('holds a command for approval, in its place in the pipeline', async () => {
    await server.admin.set('orders:1', 'o');
    held.length = 0;
    verdict = false;
    const redis = agent();
    await redis.connect();
    const results = await redis.pipeline().get('orders:1').del('orders:1').get('orders:1').exec();
    assert.deepEqual(results![0], [null, 'o']);
    assert.match(String(results![1]![0]), /NOPERM airlock: command DEL denied by approver bob/);
    assert.deepEqual(results![2], [null, 'o']);
    assert.equal(held[0]?.rule, 'approve-deletes');
    assert.equal(held[0]?.text, 'DEL orders:1');
    verdict = true;
    assert.equal(await redis.del('orders:1'), 1);
    const event = requests(enforced).findLast((e) => e.text === 'DEL orders:1');
    assert.equal(event?.outcome, 'approved');
    assert.equal(event?.approval?.decidedBy, 'alice');
    redis.disconnect();
  });

  it('holds a whole transaction once, and runs it only when approved', async () => {
    await server.admin.set('orders:2', 'o');
    held.length = 0;
    verdict = false;
    const redis = agent();
    await redis.connect();
    await assert.rejects(redis.multi().set('t:3', 'x').del('orders:2').exec(), /NOPERM airlock/);
    assert.equal(await server.admin.exists('t:3', 'orders:2'), 1);
    assert.equal(held.length, 1);
    assert.match(held[0]!.text, /^MULTI; SET t:3 x; DEL orders:2; EXEC$/);
    verdict = true;
    assert.deepEqual(await redis.multi().set('t:3', 'x').del('orders:2').exec(), [
      [null, 'OK'],
      [null, 1],
    ]);
    redis.disconnect();
  });

  for (const protocol of [2, 3] as const) {
    it(`masks replies by detectors and by key in RESP${protocol}`, async () => {
      await server.admin.set('note', `pay with ${card} or mail a@b.example`);
      await server.admin.set('token:1', 'abc123');
      await server.admin.hset('user:1', { name: 'Ann', ssn: '123-45-6789', mail: 'ann@x.example' });
      await server.admin.set('n', '4111111111111111');
      const redis = agent({ protocol });
      await redis.connect();
      assert.equal(await redis.get('note'), 'pay with [REDACTED:credit-card] or mail [REDACTED:email]');
      assert.equal(await redis.get('token:1'), '[REDACTED]');
      // A status reply is not the key's value.
      assert.equal(await redis.set('token:2', 'x'), 'OK');
      assert.deepEqual(await redis.mget('note', 'token:1', 'missing'), [
        'pay with [REDACTED:credit-card] or mail [REDACTED:email]',
        '[REDACTED]',
        null,
      ]);
      assert.equal(await redis.hget('user:1', 'name'), 'Ann');
      assert.equal(await redis.hget('user:1', 'ssn'), '***-**-6789');
      assert.deepEqual(await redis.hmget('user:1', 'ssn', 'name'), ['***-**-6789', 'Ann']);
      assert.deepEqual(await redis.hgetall('user:1'), {
        name: 'Ann',
        ssn: '***-**-6789',
        mail: '[REDACTED:email]',
      });
      // A card number held as an integer cannot stay an integer once masked.
      assert.equal(await redis.incrby('n', 0), '[REDACTED:credit-card]');
      assert.deepEqual(await redis.multi().get('token:1').get('note').exec(), [
        [null, '[REDACTED]'],
        [null, 'pay with [REDACTED:credit-card] or mail [REDACTED:email]'],
      ]);
      // The value of a masked key cannot be copied out from under the mask.
      await assert.rejects(redis.copy('token:1', 'plain'), /NOPERM airlock: .*masking:tokens/);
      redis.disconnect();
      // What is written to a masked key is masked data too: the trail shows the key alone.
      assert.ok(requests(enforced).some((e) => e.text === 'SET token:2 ?'));
      const event = requests(enforced).findLast((e) => e.text === 'GET token:1');
      assert.equal(event?.outcome, 'masked');
      assert.deepEqual(event?.masked, { 'tokens/token:*': 1 });
    });
  }

  it('masks pub/sub messages in RESP2 and RESP3', async () => {
    for (const protocol of [2, 3] as const) {
      const subscriber = agent({ protocol });
      await subscriber.connect();
      const got = new Promise<string>((resolve) =>
        subscriber.on('message', (_channel, message) => resolve(message)),
      );
      await subscriber.subscribe('news');
      await server.admin.publish('news', `card ${card}`);
      assert.equal(await got, 'card [REDACTED:credit-card]', `RESP${protocol}`);
      await subscriber.unsubscribe('news');
      // Out of pub/sub mode, replies are matched to commands again.
      assert.equal(await subscriber.get('greeting'), 'hello');
      subscriber.disconnect();
    }
  });

  it('masks RESP3 pushes out of band: client-side caching invalidations', async () => {
    const key = 'owner:a@b.example';
    await server.admin.set(key, 'x');
    const socket = connect({ host: '127.0.0.1', port: enforced.port });
    let received = '';
    socket.on('data', (chunk) => {
      received += chunk.toString('latin1');
    });
    socket.write(
      Buffer.concat([
        encodeCommand(['HELLO', '3']),
        encodeCommand(['CLIENT', 'TRACKING', 'ON']),
        encodeCommand(['GET', key]),
      ]),
    );
    const until = async (text: string) => {
      const deadline = Date.now() + 5000;
      while (!received.includes(text) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.ok(received.includes(text), `${JSON.stringify(text)} in ${JSON.stringify(received)}`);
    };
    await until('$1\r\nx\r\n');
    await server.admin.set(key, 'y');
    await until('>2\r\n$10\r\ninvalidate\r\n*1\r\n');
    assert.ok(received.includes('owner:[REDACTED:email]'));
    assert.equal(received.includes('a@b.example'), false);
    socket.destroy();
  });

  it('relays a blocking command’s reply when it comes', async () => {
    const redis = agent();
    await redis.connect();
    const popped = redis.blpop('queue', 5);
    await new Promise((resolve) => setTimeout(resolve, 200));
    await server.admin.rpush('queue', 'job');
    assert.deepEqual(await popped, ['queue', 'job']);
    redis.disconnect();
  });

  it('streams large values through, and keeps RESET authenticated with the held credential', async () => {
    const big = 'v'.repeat(24 * 1024 * 1024);
    const redis = agent();
    await redis.connect();
    assert.equal(await redis.set('big', big), 'OK');
    assert.equal((await redis.get('big'))?.length, big.length);
    assert.equal(await redis.call('RESET'), 'RESET');
    assert.equal(await redis.call('ACL', 'WHOAMI'), server.user.name);
    redis.disconnect();
  });

  it('records every command as a request event', () => {
    const events = requests(enforced);
    assert.ok(events.every((e) => e.kind === 'redis'));
    assert.ok(events.some((e) => e.text === 'SET greeting hello' && e.outcome === 'allowed'));
    assert.ok(
      events.some((e) => e.text === 'FLUSHALL' && e.outcome === 'blocked' && e.error?.wire === 'NOPERM'),
    );
    assert.ok(events.some((e) => e.text === 'AUTH' && e.outcome === 'allowed'));
    // A password never reaches the trail.
    assert.equal(JSON.stringify(enforced.events).includes('the-agents-own'), false);
    assert.equal(JSON.stringify(enforced.events).includes(server.user.password), false);
  });
});

describe('Redis enforcer limits and failures', requires('redis-server', 'redis-cli'), () => {
  let server: RedisServer;
  before(async () => {
    server = await startRedis();
  });
  after(async () => server?.stop());

  it('refuses a masked reply past the bound and goes on with the next command', async () => {
    const enforced = await enforceRedis(server, [agents], { limits: { maxMaskedReplyBytes: 1024 * 1024 } });
    await server.admin.set('huge', 'x'.repeat(2 * 1024 * 1024));
    const { replies } = await rawExchange(
      enforced.port,
      Buffer.concat([encodeCommand(['GET', 'huge']), encodeCommand(['PING'])]),
      2,
    );
    assert.match(replies[0]!, /^-ERR airlock: the reply is larger than 1048576 bytes/);
    assert.equal(replies[1], '+PONG\r\n');
    await enforced.enforcer.close();
  });

  it('streams a large reply with nothing to mask', async () => {
    const enforced = await enforceRedis(server, [policy({ name: 'plain' })], {
      limits: { maxMaskedReplyBytes: 1024 },
    });
    await server.admin.set('huge', 'x'.repeat(2 * 1024 * 1024));
    const { replies } = await rawExchange(enforced.port, encodeCommand(['GET', 'huge']), 1);
    const size = 2 * 1024 * 1024;
    assert.equal(replies[0], `$${size}\r\n${'x'.repeat(size)}\r\n`);
    await enforced.enforcer.close();
  });

  it('refuses a connection no policy grants, and one the audit trail cannot record', async () => {
    const ungranted = await enforceRedis(server, []);
    const { replies } = await rawExchange(ungranted.port, encodeCommand(['PING']), 1);
    assert.match(replies[0]!, /^-NOPERM airlock: no AccessPolicy grants this Connection/);
    await ungranted.enforcer.close();
    let full: string | undefined;
    const spooling = await enforceRedis(server, [agents], { refusal: () => full });
    const redis = new Redis({
      port: spooling.port,
      lazyConnect: true,
      enableReadyCheck: false,
      retryStrategy: () => null,
    });
    await redis.connect();
    assert.equal(await redis.ping(), 'PONG');
    full = 'airlock: the audit spool is full';
    await assert.rejects(
      redis.set('x', '1'),
      /^ReplyError: ERR airlock: the audit spool is full|ERR airlock: the audit spool is full/,
    );
    redis.disconnect();
    await spooling.enforcer.close();
  });

  it('withdraws a held command when the agent goes away', async () => {
    const enforced = await enforceRedis(server, [agents], {
      approvals: {
        request: (_request, signal) =>
          new Promise((resolve) =>
            signal?.addEventListener('abort', () => resolve({ approved: false, outcome: 'denied' })),
          ),
      },
    });
    const socket = connect({ host: '127.0.0.1', port: enforced.port });
    socket.on('error', () => undefined);
    socket.write(encodeCommand(['DEL', 'orders:9']));
    await new Promise((resolve) => setTimeout(resolve, 300));
    socket.destroy();
    const deadline = Date.now() + 5000;
    let event: RequestEvent | undefined;
    while (!event && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      event = requests(enforced).find((e) => e.text === 'DEL orders:9');
    }
    assert.equal(event?.error?.code, 'cancelled');
    await enforced.enforcer.close();
  });

  it('drains: new connections are refused, work in flight ends by the deadline', async () => {
    const enforced = await enforceRedis(server, [agents]);
    const redis = new Redis({
      port: enforced.port,
      lazyConnect: true,
      enableReadyCheck: false,
      retryStrategy: () => null,
    });
    await redis.connect();
    const popped = redis.blpop('never', 0).catch((error: Error) => error);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const started = Date.now();
    await enforced.enforcer.drain!(Date.now() + 500);
    assert.ok(Date.now() - started >= 400);
    assert.ok((await popped) instanceof Error);
    assert.deepEqual(await rawExchange(enforced.port, encodeCommand(['PING']), 1, 2000), {
      replies: [],
      closed: true,
    });
    redis.disconnect();
  });

  it('says so when the held credential is wrong, and reaches nothing', async () => {
    const enforced = await enforceRedis(server, [agents], { credentials: { password: 'not-it' } });
    const { replies, closed } = await rawExchange(enforced.port, encodeCommand(['PING']), 1);
    assert.match(
      replies[0]!,
      /^-ERR airlock: the target is unreachable: AUTH refused by the target: WRONGPASS/,
    );
    assert.equal(replies[0]!.includes('not-it'), false);
    assert.ok(closed || replies.length === 1);
    await enforced.enforcer.close();
  });
});

describe('Redis enforcer to a TLS target', requires('redis-server', 'redis-cli'), () => {
  let server: RedisServer;
  before(async () => {
    server = await startRedis({ tls: true });
  });
  after(async () => server?.stop());

  const ping = async (tls: EnforcedRedis['connection']['tls']) => {
    const enforced = await enforceRedis(server, [agents], { tls });
    try {
      return (await rawExchange(enforced.port, encodeCommand(['PING']), 1)).replies[0];
    } finally {
      await enforced.enforcer.close();
    }
  };

  it('verifies the certificate and name under verify-full, and encrypts without under require', async () => {
    assert.equal(await ping({ mode: 'verify-full', ca: server.ca!, serverName: 'localhost' }), '+PONG\r\n');
    assert.equal(await ping({ mode: 'require' }), '+PONG\r\n');
    assert.match(
      (await ping({ mode: 'verify-full' }))!,
      /^-ERR airlock: the target is unreachable: .*certificate/,
    );
    assert.match(
      (await ping({ mode: 'verify-full', ca: server.ca!, serverName: 'cache.example' }))!,
      /^-ERR airlock: the target is unreachable: .*(altnames|cache\.example)/,
    );
  });
});
