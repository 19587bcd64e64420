import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { policy } from './fixtures.ts';
import { analyzeRedis } from './redis.ts';
import { decideRedis } from './redis-decide.ts';
import { keyMask, keyMaskRules } from './redis-masking.ts';
import { redisTableVersion } from './redis-table.ts';

const analyze = (line: string) => analyzeRedis(line.split(' '));
const keysOf = (line: string) => analyze(line).keys.map((k) => k.name);

describe('Redis command analysis', () => {
  it('reads the table of a real Redis 7.0', () => {
    assert.match(redisTableVersion, /^7\.0\./);
  });

  it('classifies by Redis’s own ACL categories, in any case', () => {
    assert.deepEqual(analyze('get k').classes, ['read']);
    assert.deepEqual(analyze('SeT k v').classes, ['write']);
    assert.deepEqual(analyze('FLUSHALL').classes, ['write', 'dangerous']);
    assert.deepEqual(analyze('KEYS *').classes, ['read', 'dangerous']);
    assert.deepEqual(analyze('config set maxmemory 1').classes, ['admin', 'dangerous']);
    assert.equal(analyze('config SET maxmemory 1').name, 'CONFIG SET');
    assert.ok(analyze('DEBUG SLEEP 0').classes.includes('dangerous'));
    assert.ok(analyze('MODULE LOAD /x.so').classes.includes('admin'));
    assert.deepEqual(analyze('PUBLISH ch m').classes, ['pubsub']);
    assert.ok(analyze('BLPOP q 0').blocking);
  });

  it('gives a command Redis does not know every class and unknown keys', () => {
    for (const line of ['FLUSHALL\u0000', 'FLUSH-ALL', 'CONFIG REWRITE2', 'JSON.SET k $ 1']) {
      const command = analyze(line);
      assert.equal(command.known, false, line);
      assert.deepEqual(command.classes, ['read', 'write', 'admin', 'dangerous', 'scripting', 'pubsub']);
      assert.equal(command.keysComplete, false);
    }
  });

  it('finds keys by the key specs: index, range, step, keyword and key count', () => {
    assert.deepEqual(keysOf('GET a'), ['a']);
    assert.deepEqual(keysOf('MSET a 1 b 2'), ['a', 'b']);
    assert.deepEqual(keysOf('MGET a b c'), ['a', 'b', 'c']);
    assert.deepEqual(keysOf('XREAD COUNT 2 STREAMS s1 s2 0 0'), ['s1', 's2']);
    assert.deepEqual(keysOf('ZUNIONSTORE dst 2 a b WEIGHTS 1 2'), ['dst', 'a', 'b']);
    assert.deepEqual(keysOf('EVAL return 2 k1 k2 arg'), ['k1', 'k2']);
    assert.deepEqual(keysOf('LMOVE src dst LEFT RIGHT'), ['src', 'dst']);
    assert.deepEqual(keysOf('SPUBLISH ch m'), []);
    assert.equal(analyze('SORT list BY nosort GET secret:*').keysComplete, false);
    assert.equal(analyze('FLUSHDB').keysComplete, false);
    assert.equal(analyze('GET a').keysComplete, true);
  });

  it('gives a script every class of what it may call; a read-only one no writes', () => {
    const script = analyze('EVAL x 0');
    assert.equal(script.runs, 'any');
    assert.ok(script.classes.includes('write') && script.classes.includes('scripting'));
    assert.equal(script.keysComplete, false);
    const readOnly = analyze('EVAL_RO x 0');
    assert.ok(!readOnly.classes.includes('write'));
  });
});

describe('decideRedis', () => {
  const rules = policy({
    name: 'cache-agents',
    rules: [
      { name: 'no-dangerous', action: 'deny', redis: { classes: ['dangerous'] } },
      { name: 'no-config', action: 'deny', redis: { commands: ['config'] } },
      { name: 'no-session-writes', action: 'deny', redis: { classes: ['write'], keys: ['session:*'] } },
      {
        name: 'approve-deletes',
        action: 'require-approval',
        redis: { commands: ['DEL', 'UNLINK'] },
        approval: { approvers: { groups: ['ops'] }, timeout: '5m', scope: 'statement' },
      },
    ],
  });
  const decide = (...lines: string[]) => decideRedis([rules], lines.map(analyze));

  it('denies by class, by command glob (containers too) and by class on keys', () => {
    assert.equal(decide('KEYS *').rule, 'no-dangerous');
    assert.ok(decide('CONFIG GET maxmemory').reasons.some((r) => r.includes('"no-config"')));
    assert.ok(decide('CONFIG').reasons.some((r) => r.includes('"no-config"')));
    assert.equal(decide('SET session:1 x').rule, 'no-session-writes');
    assert.equal(decide('SET other x').action, 'allow');
    assert.equal(decide('GET session:1').action, 'allow');
    assert.equal(decide('DEL a').action, 'require-approval');
  });

  it('matches a keys rule when the keys cannot all be named', () => {
    const p = policy({
      name: 'p',
      rules: [{ name: 'r', action: 'deny', redis: { classes: ['write'], keys: ['x:*'] } }],
    });
    assert.equal(decideRedis([p], [analyze('FLUSHDB')]).action, 'deny');
    assert.equal(decideRedis([p], [analyze('EVAL x 1 other')]).action, 'deny');
  });

  it('denies a script under a rule on a command it could call', () => {
    const p = policy({ name: 'p', rules: [{ name: 'r', action: 'deny', redis: { commands: ['SET'] } }] });
    assert.equal(decideRedis([p], [analyze('EVAL x 0')]).action, 'deny');
    assert.equal(decideRedis([p], [analyze('EVAL_RO x 0')]).action, 'allow');
  });

  it('decides a transaction whole: one denied command denies it', () => {
    const decision = decide('SET a 1', 'GET a', 'FLUSHALL');
    assert.equal(decision.action, 'deny');
    assert.match(decision.reasons[0]!, /command 3 of the transaction, FLUSHALL/);
    assert.equal(decide('SET a 1', 'DEL a').action, 'require-approval');
  });

  it('refuses what a policy does not grant, and lets audit mode through with what it would have done', () => {
    assert.equal(decideRedis([], [analyze('GET a')]).action, 'deny');
    const audit = decideRedis([{ ...rules, mode: 'audit' }], [analyze('FLUSHALL')]);
    assert.equal(audit.action, 'allow');
    assert.equal(audit.wouldHave[0]?.rule, 'no-dangerous');
  });

  it('applies indirectUse where a command could reveal a masked key around masking', () => {
    const masked = policy({
      name: 'm',
      masking: [{ name: 'secrets', keys: ['secret:*'], strategy: 'redact', indirectUse: 'deny' }],
    });
    const d = (line: string) => decideRedis([masked], [analyze(line)]);
    assert.equal(d('GET secret:1').action, 'allow');
    assert.equal(d('COPY secret:1 plain').action, 'deny');
    assert.equal(d('RENAME secret:1 plain').action, 'deny');
    assert.equal(d('RENAME secret:1 secret:2').action, 'allow');
    assert.equal(d('SUNIONSTORE plain secret:1').action, 'deny');
    assert.equal(d('EVAL x 0').action, 'deny');
    assert.equal(d('SORT l BY nosort GET secret:*').action, 'deny');
    assert.equal(d('MIGRATE h 1 secret:1 0 5').action, 'deny');
    assert.equal(d('SET secret:1 v').action, 'allow');
  });
});

describe('keyMask', () => {
  const rules = keyMaskRules([
    policy({
      name: 'p',
      masking: [
        { name: 'whole', keys: ['token:*'], strategy: 'redact', indirectUse: 'deny' },
        { name: 'fields', keys: ['user:*#ssn'], strategy: 'partial', indirectUse: 'deny' },
      ],
    }),
    policy({
      name: 'a',
      mode: 'audit',
      masking: [{ name: 'audit', keys: ['token:*'], strategy: 'hash', indirectUse: 'deny' }],
    }),
  ]);

  it('masks whole keys, only the named fields where the field is known, and all of a hash where not', () => {
    assert.equal(keyMask(rules, 'token:1')?.key, 'whole/token:*');
    assert.deepEqual(keyMask(rules, 'token:1')?.wouldMask, ['audit/token:*']);
    assert.equal(keyMask(rules, 'user:1', 'ssn')?.key, 'fields/user:*#ssn');
    assert.equal(keyMask(rules, 'user:1', 'name'), undefined);
    assert.equal(keyMask(rules, 'user:1')?.key, 'fields/user:*#ssn');
    assert.equal(keyMask(rules, 'other'), undefined);
  });
});
