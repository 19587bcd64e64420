// Attempts to get a denied Redis command past the enforcer: casing, other spellings of a
// name, inline commands, pipelines, transactions, scripts, credentials, reply-suppression,
// oversized and malformed input. Each ends refused, with nothing of it run on the target. And
// attempts to read a masked hash field past its mask: scans, random fields, options that read
// like others, field names that are secrets, values the server sends across many reads.
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { Redis } from 'ioredis';
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

const guarded = policy({
  name: 'guarded',
  rules: [
    { name: 'no-flush', action: 'deny', redis: { commands: ['FLUSH*'] } },
    { name: 'no-admin', action: 'deny', redis: { classes: ['admin', 'dangerous'] } },
    { name: 'no-secret-writes', action: 'deny', redis: { classes: ['write'], keys: ['secret:*'] } },
  ],
});

describe('Redis enforcer under attack', requires('redis-server', 'redis-cli'), () => {
  let server: RedisServer;
  let enforced: EnforcedRedis;

  before(async () => {
    server = await startRedis();
    enforced = await enforceRedis(server, [guarded], { limits: { maxCommandBytes: 1024 * 1024 } });
  });
  after(async () => {
    await enforced?.enforcer.close();
    await server?.stop();
  });
  beforeEach(async () => {
    await server.admin.set('canary', 'alive');
    await server.admin.set('secret:1', 'original');
  });

  const intact = async () => {
    assert.equal(await server.admin.get('canary'), 'alive');
    assert.equal(await server.admin.get('secret:1'), 'original');
  };

  it('denies a command in any casing, multibulk or inline, quoted or not', async () => {
    for (const bytes of [
      encodeCommand(['fLuShAlL']),
      'flushall\r\n',
      '"FLUSH"ALL\r\n',
      '"\\x46LUSHALL"\r\n',
      "  'FlushDB'  \r\n",
    ]) {
      const { replies } = await rawExchange(enforced.port, bytes, 1);
      assert.match(replies[0]!, /^-(NOPERM airlock|ERR Protocol error)/, String(bytes));
    }
    await intact();
  });

  it('treats names Redis does not know as every class, so no spelling slips through', async () => {
    for (const name of ['FLUSHALL\u0000', 'FLUSHALL ', 'config|set', 'CONFIG\tSET']) {
      const { replies } = await rawExchange(enforced.port, encodeCommand([name, 'maxmemory', '1']), 1);
      assert.match(replies[0]!, /^-NOPERM airlock: command .* denied/, JSON.stringify(name));
    }
    assert.equal((await server.admin.config('GET', 'maxmemory'))[1], '0');
  });

  it('answers a pipelined denied command in its place, between allowed ones that run', async () => {
    const bytes = Buffer.concat([
      encodeCommand(['SET', 'a', '1']),
      encodeCommand(['FLUSHALL']),
      encodeCommand(['GET', 'a']),
      encodeCommand(['SET', 'secret:1', 'pwned']),
      encodeCommand(['INCR', 'a']),
    ]);
    const { replies } = await rawExchange(enforced.port, bytes, 5);
    assert.equal(replies[0], '+OK\r\n');
    assert.match(replies[1]!, /^-NOPERM airlock/);
    assert.equal(replies[2], '$1\r\n1\r\n');
    assert.match(replies[3]!, /^-NOPERM airlock: .*no-secret-writes/);
    assert.equal(replies[4], ':2\r\n');
    await intact();
  });

  it('runs nothing of a transaction with a denied command inside', async () => {
    const bytes = Buffer.concat([
      encodeCommand(['MULTI']),
      encodeCommand(['SET', 'canary', 'dead']),
      encodeCommand(['SET', 'secret:1', 'pwned']),
      encodeCommand(['EXEC']),
    ]);
    const { replies } = await rawExchange(enforced.port, bytes, 4);
    assert.deepEqual(replies.slice(0, 2), ['+OK\r\n', '+QUEUED\r\n']);
    assert.match(replies[2]!, /^-NOPERM airlock/);
    assert.match(replies[3]!, /^-EXECABORT/);
    await intact();
  });

  it('refuses connection state changes inside a transaction', async () => {
    const bytes = Buffer.concat([
      encodeCommand(['MULTI']),
      encodeCommand(['AUTH', 'default', server.password]),
      encodeCommand(['SET', 'canary', 'dead']),
      encodeCommand(['EXEC']),
    ]);
    const { replies } = await rawExchange(enforced.port, bytes, 4);
    assert.match(replies[1]!, /^-ERR airlock: AUTH inside MULTI is not supported/);
    assert.match(replies[3]!, /^-EXECABORT/);
    await intact();
  });

  it('denies a script that could call a denied command', async () => {
    const redis = new Redis({
      port: enforced.port,
      lazyConnect: true,
      enableReadyCheck: false,
      retryStrategy: () => null,
    });
    await redis.connect();
    await assert.rejects(redis.eval("return redis.call('FLUSHALL')", 0), /NOPERM airlock/);
    await assert.rejects(redis.eval("return redis.call('SET', KEYS[1], 'x')", 1, 'other'), /NOPERM airlock/);
    await assert.rejects(redis.call('FUNCTION', 'FLUSH'), /NOPERM airlock/);
    redis.disconnect();
    await intact();
  });

  it('swallows the agent’s AUTH and strips HELLO … AUTH: the held credential stays', async () => {
    const { replies } = await rawExchange(
      enforced.port,
      Buffer.concat([
        encodeCommand(['AUTH', server.user.name, server.user.password]),
        encodeCommand(['HELLO', '2', 'AUTH', server.user.name, server.user.password]),
        encodeCommand(['ACL', 'WHOAMI']),
      ]),
      3,
    );
    assert.equal(replies[0], '+OK\r\n');
    assert.match(replies[1]!, /^\*14\r\n/);
    assert.equal(replies[2], '$7\r\ndefault\r\n');
  });

  it('refuses to turn replies off, which would unmatch replies from commands', async () => {
    const { replies } = await rawExchange(
      enforced.port,
      Buffer.concat([encodeCommand(['CLIENT', 'REPLY', 'OFF']), encodeCommand(['PING'])]),
      2,
    );
    assert.match(replies[0]!, /^-ERR airlock: CLIENT REPLY OFF and SKIP are not supported/);
    assert.equal(replies[1], '+PONG\r\n');
  });

  it('ends the session on a command past the bound, before any of it is forwarded', async () => {
    const huge = Buffer.concat([encodeCommand(['SET', 'canary', 'x'.repeat(2 * 1024 * 1024)])]);
    const { replies, closed } = await rawExchange(enforced.port, huge, 1);
    assert.match(replies[0]!, /^-ERR Protocol error: command larger than 1048576 bytes/);
    assert.ok(closed || replies.length === 1);
    await intact();
  });

  it('answers what came before malformed RESP, then says why and forwards nothing after', async () => {
    const bytes = Buffer.concat([
      encodeCommand(['GET', 'canary']),
      Buffer.from('*2\r\n$3\r\nSET\r\n:1\r\n'),
      encodeCommand(['SET', 'canary', 'dead']),
    ]);
    const { replies, closed } = await rawExchange(enforced.port, bytes, 3);
    assert.equal(replies[0], '$5\r\nalive\r\n');
    assert.equal(replies[1], "-ERR Protocol error: expected '$', got ':'\r\n");
    assert.equal(replies.length, 2);
    assert.ok(closed);
    await intact();
    const event = enforced.events.findLast((e) => e.type === 'protocol.error');
    assert.equal(event?.type === 'protocol.error' && event.code, 'protocol-violation');
  });

  it('refuses MONITOR, which would show every client’s commands, and replication streams', async () => {
    const monitor = await cli(enforced.port, ['MONITOR']);
    assert.match(monitor.stdout, /NOPERM airlock: MONITOR is refused/);
    const { replies } = await rawExchange(
      enforced.port,
      Buffer.concat([encodeCommand(['PSYNC', '?', '-1']), encodeCommand(['SYNC']), encodeCommand(['PING'])]),
      3,
    );
    assert.match(replies[0]!, /^-ERR airlock: PSYNC \(replication\) is not supported/);
    assert.match(replies[1]!, /^-ERR airlock: SYNC \(replication\) is not supported/);
    assert.equal(replies[2], '+PONG\r\n');
  });
});

describe('Redis per-element masking under attack', requires('redis-server', 'redis-cli'), () => {
  let server: RedisServer;
  let enforced: EnforcedRedis;
  const ssn = '123-45-6789';

  before(async () => {
    server = await startRedis();
    enforced = await enforceRedis(server, [
      policy({
        name: 'fields',
        masking: [
          { name: 'pii', detectors: ['email', 'credit-card'], strategy: 'redact', indirectUse: 'allow' },
          { name: 'ssn', keys: ['user:*#ssn'], strategy: 'redact', indirectUse: 'allow' },
          { name: 'tokens', keys: ['token:*'], strategy: 'redact', indirectUse: 'allow' },
        ],
      }),
    ]);
    // A hash table, not a listpack: HSCAN then takes many rounds, each with its cursor.
    await server.admin.config('SET', 'hash-max-listpack-entries', '16');
    const fields: Record<string, string> = { name: 'Ann', ssn };
    for (let i = 0; i < 300; i++) fields[`f${i}`] = `v${i}`;
    await server.admin.hset('user:1', fields);
    await server.admin.sadd('token:set', ...Array.from({ length: 300 }, (_, i) => `member-${i}`));
    await server.admin.hset('user:big', {
      ssn: `${'S'.repeat(300_000)}${ssn}`,
      bio: 'b'.repeat(300_000),
      '4111 1111 1111 1111': 'card as a field name',
    });
  });
  after(async () => {
    await enforced?.enforcer.close();
    await server?.stop();
  });

  const agent = (protocol: 2 | 3) =>
    new Redis({
      port: enforced.port,
      lazyConnect: true,
      enableReadyCheck: false,
      retryStrategy: () => null,
      protocol,
    });

  for (const protocol of [2, 3] as const) {
    it(`HSCAN to the end in RESP${protocol}: the cursor works, only the ssn is masked`, async () => {
      const redis = agent(protocol);
      await redis.connect();
      try {
        const seen = new Map<string, string>();
        let cursor = '0';
        let rounds = 0;
        do {
          const [next, pairs] = (await redis.call('HSCAN', 'user:1', cursor, 'COUNT', '20')) as [
            string,
            string[],
          ];
          for (let i = 0; i < pairs.length; i += 2) seen.set(pairs[i]!, pairs[i + 1]!);
          cursor = next;
          rounds++;
        } while (cursor !== '0' && rounds < 1000);
        assert.ok(rounds > 1, 'the scan took more than one round');
        assert.equal(seen.size, 302);
        assert.equal(seen.get('ssn'), '[REDACTED]');
        assert.equal(seen.get('name'), 'Ann');
        assert.equal(seen.get('f299'), 'v299');
        // MATCH with a pattern that reads like the NOVALUES option still returns values, masked.
        const [, matched] = (await redis.call('HSCAN', 'user:1', '0', 'MATCH', 'NOVALUES')) as [
          string,
          string[],
        ];
        assert.deepEqual(matched, []);
        const [, only] = (await redis.call('HSCAN', 'user:1', '0', 'MATCH', 's*', 'COUNT', '1000')) as [
          string,
          string[],
        ];
        assert.deepEqual(only, ['ssn', '[REDACTED]']);
      } finally {
        redis.disconnect();
      }
    });

    it(`HRANDFIELD WITHVALUES and HGETALL in RESP${protocol}: each value by its field`, async () => {
      const redis = agent(protocol);
      await redis.connect();
      try {
        const random = (await redis.call('HRANDFIELD', 'user:1', '-400', 'WITHVALUES')) as (
          | string
          | string[]
        )[];
        const pairs = random.flat();
        assert.equal(pairs.length, 800);
        for (let i = 0; i < pairs.length; i += 2) {
          const [field, value] = [pairs[i]!, pairs[i + 1]!];
          assert.equal(
            value,
            field === 'ssn' ? '[REDACTED]' : field === 'name' ? 'Ann' : `v${field.slice(1)}`,
          );
        }
        assert.ok(!JSON.stringify(await redis.call('HGETALL', 'user:1')).includes(ssn));
        // A scan of a masked set walks to its end: members masked, cursors intact.
        let cursor = '0';
        let members = 0;
        do {
          const [next, page] = (await redis.call('SSCAN', 'token:set', cursor)) as [string, string[]];
          assert.ok(page.every((m) => m === '[REDACTED]'));
          members += page.length;
          cursor = next;
        } while (cursor !== '0');
        assert.equal(members, 300);
      } finally {
        redis.disconnect();
      }
    });

    it(`a masked value the server sends across many reads, beside a field name that is a card number (RESP${protocol})`, async () => {
      const redis = agent(protocol);
      await redis.connect();
      try {
        const all = (await redis.call('HGETALL', 'user:big')) as string[] | Record<string, string>;
        const flat = Array.isArray(all) ? all : Object.entries(all).flat();
        const got = new Map<string, string>();
        for (let i = 0; i < flat.length; i += 2) got.set(flat[i]!, flat[i + 1]!);
        assert.equal(got.get('ssn'), '[REDACTED]');
        assert.equal(got.get('bio')?.length, 300_000);
        assert.ok(!got.has('4111 1111 1111 1111'));
        assert.equal(got.get('[REDACTED:credit-card]'), 'card as a field name');
        const [, scanned] = (await redis.call('HSCAN', 'user:big', '0')) as [string, string[]];
        assert.ok(!scanned.some((item) => item.includes(ssn) || item.includes('4111')));
      } finally {
        redis.disconnect();
      }
    });
  }
});
