import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { detectors } from '../../api/names.ts';
import { policy } from '../policy/fixtures.ts';
import { compileMasking } from '../policy/masking.ts';
import {
  encodeText,
  MaskingTransform,
  maxCarry,
  patternShape,
  StreamMasker,
  valueShape,
} from './stream-masker.ts';

const pii = [
  policy({
    name: 'p',
    masking: [{ name: 'pii', detectors: ['credit-card', 'email'], strategy: 'redact', indirectUse: 'deny' }],
  }),
];
const plan = compileMasking(pii);
const mask = (text: string) => plan.maskText(text);

function through(chunks: Buffer[], masker = new StreamMasker(mask)): { text: string; masker: StreamMasker } {
  let text = '';
  for (const chunk of chunks) text += masker.push(chunk);
  text += masker.flush();
  return { text, masker };
}

/** A sample of each detector's values, and a pattern's. */
const samples: Record<string, string> = {
  'credit-card': '4111 1111 1111 1111',
  email: 'ada.lovelace@example.com',
  'us-ssn': '123-45-6789',
  iban: 'GB82 WEST 1234 5698 7654 32',
  phone: '+1 415 555 2671',
  ipv4: '192.168.10.42',
  ipv6: '2001:db8:85a3::8a2e:370:7334',
  jwt: 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl',
  'aws-access-key': 'AKIAIOSFODNN7EXAMPLE',
  'private-key':
    '-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASC\nAT8wggE7AgEAAkEA\n-----END PRIVATE KEY-----',
  'bearer-token': 'Bearer abcdef0123456789abcdef',
};
const everything = [
  policy({
    name: 'all',
    masking: [
      { name: 'all', detectors: [...detectors], strategy: 'redact', indirectUse: 'deny' },
      {
        name: 'ids',
        patterns: [{ name: 'ticket', regex: 'TCK-[0-9]{6}' }],
        strategy: 'redact',
        indirectUse: 'deny',
      },
    ],
  }),
];
const all = compileMasking(everything);
const allShape = valueShape(everything);
const maskAll = (text: string) => all.maskText(text);
samples.ticket = 'TCK-123456';

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

  it('masks every detector’s value split at every offset, in any text, on lines of any length', () => {
    for (const [name, value] of Object.entries(samples)) {
      fc.assert(
        fc.property(
          fc.constantFrom('', 'x=', 'text: ', 'a '.repeat(3000), `${'y'.repeat(70_000)} `),
          fc.constantFrom('', ' ', '\n', ' more text', '!'),
          (before, after) => {
            const text = Buffer.from(`${before}${value}${after}`);
            const start = Buffer.byteLength(before);
            for (let cut = start; cut <= start + value.length; cut++) {
              const { text: out } = through(
                [text.subarray(0, cut), text.subarray(cut)],
                new StreamMasker(maskAll, allShape),
              );
              assert.ok(!out.includes(value), `${name} split at ${cut - start}: ${out.slice(-200)}`);
              assert.ok(out.includes('[REDACTED'), `${name} split at ${cut - start}`);
            }
          },
        ),
        { numRuns: 6 },
      );
    }
  });

  it('masks disguised values (other scripts’ digits, invisible characters) split at every offset', () => {
    // Fullwidth and Arabic-Indic digits, zero-width spaces and soft hyphens between them, a
    // non-breaking space and a figure dash for separators: detectors read through all of them.
    const digitForms = [
      (d: number) => String.fromCharCode(0xff10 + d),
      (d: number) => String.fromCharCode(0x0660 + d),
    ];
    const disguise = (value: string, form: (d: number) => string, invisible: string) =>
      [...value]
        .map((ch) =>
          ch >= '0' && ch <= '9'
            ? form(Number(ch)) + invisible
            : ch === ' '
              ? '\u00a0'
              : ch === '-'
                ? '\u2012'
                : ch,
        )
        .join('');
    for (const plain of [samples['credit-card']!, samples['us-ssn']!, samples.ipv4!]) {
      for (const form of digitForms)
        for (const invisible of ['', '\u200b', '\u00ad\u200b']) {
          const value = disguise(plain, form, invisible);
          const text = Buffer.from(`value: ${value} end`);
          const start = Buffer.byteLength('value: ');
          const whole = through([text], new StreamMasker(maskAll, allShape)).text;
          assert.ok(whole.includes('[REDACTED'), `${plain} disguised is masked whole: ${whole}`);
          for (let cut = start; cut <= text.length; cut++) {
            const { text: out } = through(
              [text.subarray(0, cut), text.subarray(cut)],
              new StreamMasker(maskAll, allShape),
            );
            assert.equal(out, whole, `${JSON.stringify(value)} split at byte ${cut - start}`);
          }
        }
    }
  });

  it('masks any mix of values and text like the whole, however it is chunked', () => {
    const parts = [
      ...Object.values(samples),
      ' ',
      '\n',
      'word',
      'x=',
      ': ',
      '12',
      'ab@',
      '-',
      'é✓',
      '\r\n$ ',
    ];
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom(...parts), { maxLength: 14 }),
        fc.array(fc.nat(), { maxLength: 10 }),
        (pieces, cuts) => {
          const text = Buffer.from(pieces.join(''));
          const whole = maskAll(pieces.join('')).value;
          const points = [...new Set(cuts.map((c) => c % (text.length + 1)))].sort((a, b) => a - b);
          const chunks: Buffer[] = [];
          let at = 0;
          for (const p of points) {
            chunks.push(text.subarray(at, p));
            at = p;
          }
          chunks.push(text.subarray(at));
          const { text: out } = through(chunks, new StreamMasker(maskAll, allShape));
          for (const value of Object.values(samples))
            if (!whole.includes(value)) assert.ok(!out.includes(value), `${value} in ${JSON.stringify(out)}`);
          assert.equal(out, whole);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('passes bytes that are not UTF-8 unchanged, at every split, and masks values beside them', () => {
    const bytes = Buffer.concat([
      Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x20, 0x80, 0xff, 0xc0, 0xae, 0xed, 0xa0, 0x80, 0xf0, 0x9f]),
      Buffer.from(' é ✓ 😀 '),
      Buffer.from([0xe2, 0x82]),
    ]);
    for (let i = 0; i <= bytes.length; i++) {
      const masker = new StreamMasker(mask);
      const out = Buffer.concat([
        encodeText(masker.push(bytes.subarray(0, i))),
        encodeText(masker.push(bytes.subarray(i))),
        encodeText(masker.flush()),
      ]);
      assert.deepEqual(out, bytes, `split at ${i}`);
    }
    const mixed = Buffer.concat([
      Buffer.from([0xff]),
      Buffer.from('ada@example.com'),
      Buffer.from([0xfe, 0x0a]),
    ]);
    const masker = new StreamMasker(mask);
    const out = Buffer.concat([encodeText(masker.push(mixed)), encodeText(masker.flush())]);
    assert.deepEqual(
      out,
      Buffer.concat([Buffer.from([0xff]), Buffer.from('[REDACTED:email]'), Buffer.from([0xfe, 0x0a])]),
    );
  });

  it('releases nothing of a value at a pause: pieces written with delays are masked whole', async () => {
    for (const value of Object.values(samples)) {
      const pieces = [`start ${value.slice(0, 3)}`, value.slice(3, 9), value.slice(9), ' end\n'];
      const transform = new MaskingTransform(new StreamMasker(maskAll, allShape));
      const source = Readable.from(
        (async function* () {
          for (const piece of pieces) {
            yield Buffer.from(piece);
            await new Promise((resolve) => setTimeout(resolve, 30));
          }
        })(),
      );
      let out = '';
      const seen: string[] = [];
      transform.on('data', (chunk: Buffer) => {
        seen.push(chunk.toString());
        out += chunk.toString();
      });
      await new Promise((resolve, reject) => source.pipe(transform).on('end', resolve).on('error', reject));
      assert.ok(!out.includes(value), value);
      assert.match(out, /^start (Bearer )?\[REDACTED:[a-z0-9-]+\] end\n$/);
      assert.ok(seen.length >= 2, 'what cannot be part of the value went out before the end');
    }
  });

  it('holds only a tail that could still become a value', () => {
    const masker = new StreamMasker(maskAll, allShape);
    for (const prompt of [
      'root@db1:~# ',
      'mysql> ',
      'Password: ',
      '$ ',
      '> ',
      'done.\n',
      'Password:',
      'Continue? [Y/n]',
    ]) {
      assert.equal(masker.push(Buffer.from(prompt)), prompt, prompt);
      assert.ok(!masker.pending, prompt);
    }
    assert.equal(masker.push(Buffer.from('card: 4111 1111')), 'card: ');
    assert.ok(masker.pending);
    assert.equal(masker.push(Buffer.from(' 1111 1111\n')), '[REDACTED:credit-card]\n');
    assert.equal(masker.push(Buffer.from('token: Bear')), 'token: ');
    assert.equal(masker.push(Buffer.from('er abcdef0123456789abcdef\n')), 'Bearer [REDACTED:bearer-token]\n');
    assert.equal(masker.push(Buffer.from('token: bEa')), 'token: ');
    assert.equal(
      masker.push(Buffer.from('ReR abcdef0123456789abcdef\n')),
      'bEaReR [REDACTED:bearer-token]\n',
    );
  });

  it('refuses to cut inside a value longer than it can hold', () => {
    const masker = new StreamMasker(maskAll, allShape);
    assert.throws(
      () => masker.push(Buffer.from(`Authorization: Bearer ${'a1'.repeat(maxCarry)}`)),
      /cannot be masked whole/,
    );
    // A long line of words is released as it comes: only its last word is held.
    const words = new StreamMasker(maskAll, allShape);
    const out = words.push(Buffer.from('word '.repeat(50_000)));
    assert.equal(out.length, 'word '.repeat(50_000).length);
  });

  it('reads a pattern’s shape from its expression', () => {
    const ticket = patternShape('TCK-[0-9]{6}');
    assert.equal(ticket('see TCK-12'), 4);
    assert.equal(ticket('see TCK-123456 '), 15);
    assert.equal(patternShape('(?i)secret')('my SeCr'), 3);
    assert.equal(patternShape('[^,]+')('a,b'), 0, 'a negated class may match anything, unbounded');
    assert.equal(patternShape('\\bk[a-z]{2}\\b')('x kab'), 2);
  });
});
