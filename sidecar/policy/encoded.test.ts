import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { maskEncoded } from './encoded.ts';
import { policy } from './fixtures.ts';
import { compileMasking } from './masking.ts';

const plan = compileMasking([
  policy({
    name: 'pii',
    masking: [{ name: 'pii', detectors: ['email'], strategy: 'redact', indirectUse: 'deny' }],
  }),
]);
const mask = maskEncoded((text) => plan.maskText(text));
const maskJson = maskEncoded((text) => plan.maskText(text), true);

describe('encoded values', () => {
  it('reads character references as HTML parsers do, and escapes as JavaScript does', () => {
    for (const written of [
      'ada&#64;example.com',
      'ada&#x40;example.com',
      'ada&#64example.com',
      'ada&#0000000064;example.com',
      'ada&#x0040;example&#x2e;com',
      'ada&commat;example&period;com',
      'ada\\u{40}example.com',
      'ada%40example.com',
    ]) {
      assert.equal(mask(`mail ${written} now`).value, 'mail [REDACTED:email] now', written);
      if (!written.includes('\\u'))
        assert.equal(maskJson(`mail ${written} now`).value, 'mail [REDACTED:email] now', written);
    }
    // What is not a reference stays as it was.
    assert.equal(mask('fish &amp; chips &commat').value, 'fish &amp; chips &commat');
  });
});
