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
