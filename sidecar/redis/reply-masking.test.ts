import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { policy } from '../policy/fixtures.ts';
import { compileMasking } from '../policy/masking.ts';
import { analyzeRedis } from '../policy/redis.ts';
import { keyMaskRules } from '../policy/redis-masking.ts';
import { decodeReply, encodeReply } from './replies.ts';
import { type MaskCounts, maskReply, replyMasks } from './reply-masking.ts';

const policies = [
  policy({
    name: 'p',
    masking: [
      { name: 'pii', detectors: ['email', 'credit-card'], strategy: 'redact', indirectUse: 'deny' },
      { name: 'tokens', keys: ['token:*'], strategy: 'redact', indirectUse: 'deny' },
    ],
  }),
];
const plan = compileMasking(policies);
const rules = keyMaskRules(policies);

function mask(resp: string, line?: string): { resp: string; counts: MaskCounts } {
  const counts: MaskCounts = { masked: {}, wouldMask: {} };
  const argv = line?.split(' ') ?? [];
  const masks = line ? replyMasks(rules, analyzeRedis(argv), argv) : undefined;
  const masked = maskReply(decodeReply(Buffer.from(resp, 'latin1')).reply, plan, masks, counts);
  return { resp: Buffer.concat(encodeReply(masked)).toString('latin1'), counts };
}

describe('maskReply', () => {
  it('masks detected values in every RESP2 and RESP3 type', () => {
    const mail = 'a@b.example';
    const cases: [string, string][] = [
      [`+${mail}\r\n`, '+[REDACTED:email]\r\n'],
      [`-ERR bad ${mail}\r\n`, '-ERR bad [REDACTED:email]\r\n'],
      [`$${mail.length}\r\n${mail}\r\n`, '$16\r\n[REDACTED:email]\r\n'],
      [`=${mail.length + 4}\r\ntxt:${mail}\r\n`, '=20\r\ntxt:[REDACTED:email]\r\n'],
      [':4111111111111111\r\n', '$22\r\n[REDACTED:credit-card]\r\n'],
      ['(4111111111111111\r\n', '$22\r\n[REDACTED:credit-card]\r\n'],
      [`%1\r\n+k\r\n*1\r\n+${mail}\r\n`, '%1\r\n+k\r\n*1\r\n+[REDACTED:email]\r\n'],
      [`~1\r\n+${mail}\r\n`, '~1\r\n+[REDACTED:email]\r\n'],
      [`>2\r\n+message\r\n+${mail}\r\n`, '>2\r\n+message\r\n+[REDACTED:email]\r\n'],
      [`|1\r\n+meta\r\n+${mail}\r\n+v\r\n`, '|1\r\n+meta\r\n+[REDACTED:email]\r\n+v\r\n'],
    ];
    for (const [resp, expected] of cases) assert.equal(mask(resp).resp, expected, resp);
  });

  it('returns the same reply when nothing is masked', () => {
    const reply = decodeReply(Buffer.from('*2\r\n$3\r\nabc\r\n:12\r\n')).reply;
    assert.equal(maskReply(reply, plan), reply);
  });

  it('masks a masked key’s values, per key in MGET, and counts them', () => {
    assert.equal(mask('$3\r\nabc\r\n', 'GET token:1').resp, '$10\r\n[REDACTED]\r\n');
    const mget = mask('*2\r\n$3\r\nabc\r\n$3\r\ndef\r\n', 'MGET plain token:1');
    assert.equal(mget.resp, '*2\r\n$3\r\nabc\r\n$10\r\n[REDACTED]\r\n');
    assert.deepEqual(mget.counts.masked, { 'tokens/token:*': 1 });
    assert.equal(mask('+OK\r\n', 'SET token:1 x').resp, '+OK\r\n');
  });
});

describe('maskReply per element: hash fields, scan cursors, members', () => {
  const fieldPolicies = [
    policy({
      name: 'p',
      masking: [
        { name: 'pii', detectors: ['email', 'credit-card'], strategy: 'redact', indirectUse: 'deny' },
        { name: 'tokens', keys: ['token:*'], strategy: 'redact', indirectUse: 'deny' },
        { name: 'ssn', keys: ['user:*#ssn', 'user:*#secret_*'], strategy: 'redact', indirectUse: 'deny' },
      ],
    }),
  ];
  const fieldPlan = compileMasking(fieldPolicies);
  const fieldRules = keyMaskRules(fieldPolicies);
  const bulk = (s: string) => `$${Buffer.byteLength(s)}\r\n${s}\r\n`;
  const array = (items: string[], type = '*') => `${type}${items.length}\r\n${items.join('')}`;
  const map = (items: string[]) => `%${items.length / 2}\r\n${items.join('')}`;
  const masked = (resp: string, line: string) => {
    const argv = line.split(' ');
    const masks = replyMasks(fieldRules, analyzeRedis(argv), argv);
    const reply = maskReply(decodeReply(Buffer.from(resp)).reply, fieldPlan, masks);
    return Buffer.concat(encodeReply(reply)).toString();
  };
  const R = bulk('[REDACTED]');

  it('masks HGETALL values by their field, in a RESP2 array and a RESP3 map', () => {
    const pairs = [bulk('name'), bulk('Ada'), bulk('ssn'), bulk('123-45-6789')];
    const expected = [bulk('name'), bulk('Ada'), bulk('ssn'), R];
    assert.equal(masked(array(pairs), 'HGETALL user:1'), array(expected));
    assert.equal(masked(map(pairs), 'HGETALL user:1'), map(expected));
  });

  it('masks HSCAN values by their field and leaves the cursor and the names', () => {
    const reply = array([
      bulk('17'),
      array([bulk('ssn'), bulk('123'), bulk('secret_a'), bulk('x'), bulk('age'), bulk('36')]),
    ]);
    assert.equal(
      masked(reply, 'HSCAN user:1 0 COUNT 10'),
      array([bulk('17'), array([bulk('ssn'), R, bulk('secret_a'), R, bulk('age'), bulk('36')])]),
    );
    // A whole-key mask covers every value, never the cursor nor the field names.
    assert.equal(
      masked(reply, 'hscan token:1 0'),
      array([bulk('17'), array([bulk('ssn'), R, bulk('secret_a'), R, bulk('age'), R])]),
    );
  });

  it('reads HSCAN options as the server does: a MATCH pattern "novalues" is no NOVALUES', () => {
    const reply = array([bulk('0'), array([bulk('ssn'), bulk('123')])]);
    assert.equal(masked(reply, 'HSCAN user:1 0 MATCH novalues'), array([bulk('0'), array([bulk('ssn'), R])]));
    assert.equal(masked(reply, 'HSCAN user:1 0 COUNT NOVALUES'), array([bulk('0'), array([bulk('ssn'), R])]));
    // Field names only: nothing is a value.
    const names = array([bulk('0'), array([bulk('ssn'), bulk('name')])]);
    assert.equal(masked(names, 'HSCAN user:1 0 NOVALUES'), names);
  });

  it('masks SSCAN members and ZSCAN members and scores of a masked key, not the cursor', () => {
    assert.equal(
      masked(array([bulk('5'), array([bulk('a'), bulk('b')])]), 'SSCAN token:set 0'),
      array([bulk('5'), array([R, R])]),
    );
    assert.equal(
      masked(array([bulk('0'), array([bulk('m'), bulk('1.5')])]), 'ZSCAN token:z 0 MATCH *'),
      array([bulk('0'), array([R, R])]),
    );
    const plain = array([bulk('5'), array([bulk('a'), bulk('b')])]);
    assert.equal(masked(plain, 'SSCAN other 0'), plain);
  });

  it('masks HRANDFIELD … WITHVALUES by field, flat in RESP2 and in pairs in RESP3; names alone are not values', () => {
    const flat = [bulk('ssn'), bulk('123'), bulk('name'), bulk('Ada')];
    assert.equal(
      masked(array(flat), 'HRANDFIELD user:1 2 withvalues'),
      array([bulk('ssn'), R, bulk('name'), bulk('Ada')]),
    );
    assert.equal(
      masked(array([array(flat.slice(0, 2)), array(flat.slice(2))]), 'HRANDFIELD user:1 2 WITHVALUES'),
      array([array([bulk('ssn'), R]), array([bulk('name'), bulk('Ada')])]),
    );
    const names = array([bulk('ssn'), bulk('name')]);
    assert.equal(masked(names, 'HRANDFIELD user:1 2'), names);
    assert.equal(masked(bulk('ssn'), 'HRANDFIELD user:1'), bulk('ssn'));
  });

  it('still reads field names and cursors with the detectors: a field name that is itself a secret', () => {
    const reply = array([
      bulk('0'),
      array([bulk('4111 1111 1111 1111'), bulk('x'), bulk('ada@example.com'), bulk('y')]),
    ]);
    assert.equal(
      masked(reply, 'HSCAN user:1 0'),
      array([
        bulk('0'),
        array([bulk('[REDACTED:credit-card]'), bulk('x'), bulk('[REDACTED:email]'), bulk('y')]),
      ]),
    );
  });

  it('property: every value is masked exactly when its field matches, names and cursors never change', () => {
    const fields = ['ssn', 'secret_x', 'secret_', 'SSN', 'name', 'ssn2', 'xssn', 'secret', '#ssn', ''];
    let seed = 7;
    const random = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const word = () =>
      Array.from({ length: 1 + random(12) }, () => String.fromCharCode(97 + random(26))).join('');
    const matches = (field: string) => field === 'ssn' || field.startsWith('secret_');
    for (let round = 0; round < 300; round++) {
      const pairs = Array.from(
        { length: random(8) },
        () => [fields[random(fields.length)]!, word()] as const,
      );
      const flat = pairs.flatMap(([f, v]) => [bulk(f), bulk(v)]);
      const expected = pairs.flatMap(([f, v]) => [bulk(f), matches(f) ? R : bulk(v)]);
      const cursor = String(random(1_000_000));
      const shapes: [string, string, string][] = [
        [array(flat), 'HGETALL user:7', array(expected)],
        [map(flat), 'HGETALL user:7', map(expected)],
        [array([bulk(cursor), array(flat)]), 'HSCAN user:7 0', array([bulk(cursor), array(expected)])],
        [array(flat), 'HRANDFIELD user:7 -8 WITHVALUES', array(expected)],
        [
          array(pairs.map(([f, v]) => array([bulk(f), bulk(v)]))),
          'HRANDFIELD user:7 -8 WITHVALUES',
          array(pairs.map(([f, v]) => array([bulk(f), matches(f) ? R : bulk(v)]))),
        ],
      ];
      for (const [reply, line, want] of shapes) assert.equal(masked(reply, line), want, `${line}: ${reply}`);
    }
  });
});
