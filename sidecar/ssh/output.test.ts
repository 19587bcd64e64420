import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { policy } from '../policy/fixtures.ts';
import { compileMasking } from '../policy/masking.ts';
import { StreamMasker } from './output.ts';

const plan = compileMasking([
  policy({
    name: 'p',
    masking: [{ name: 'pii', detectors: ['credit-card', 'email'], strategy: 'redact', indirectUse: 'deny' }],
  }),
]);
const mask = (text: string) => plan.maskText(text);

function through(chunks: Buffer[], carry?: number): { text: string; masker: StreamMasker } {
  const masker = new StreamMasker(mask, carry);
  let text = '';
  for (const chunk of chunks) text += masker.push(chunk);
  text += masker.flush(true);
  return { text, masker };
}

describe('StreamMasker', () => {
  const sample = Buffer.from(
    'héllo 4111111111111111 wörld\nmail alice@example.com ✓\nlast 4111 1111 1111 1111',
  );
  const whole = through([sample]).text;

  it('masks the whole stream like one value', () => {
    assert.equal(
      whole,
      'héllo [REDACTED:credit-card] wörld\nmail [REDACTED:email] ✓\nlast [REDACTED:credit-card]',
    );
  });

  it('gives the same result for every split point, multibyte characters included', () => {
    for (let i = 0; i <= sample.length; i++) {
      const { text, masker } = through([sample.subarray(0, i), sample.subarray(i)]);
      assert.equal(text, whole, `split at ${i}`);
      assert.equal(masker.total, 3);
    }
  });

  it('gives the same result for any chunking', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: sample.length }), { maxLength: 8 }), (cuts) => {
        const points = [...new Set(cuts)].sort((a, b) => a - b);
        const chunks: Buffer[] = [];
        let at = 0;
        for (const p of points) {
          chunks.push(sample.subarray(at, p));
          at = p;
        }
        chunks.push(sample.subarray(at));
        assert.equal(through(chunks).text, whole);
      }),
    );
  });

  it('holds back at most the carry bound of a line without newlines', () => {
    const masker = new StreamMasker(mask, 64);
    const out = masker.push(Buffer.from('x'.repeat(1000)));
    assert.ok(out.length >= 1000 - 256 && out.length < 1000);
    assert.ok(masker.pending);
  });
});
