// The byte path (MaskingPlan.maskAscii) against the string path (maskText): for every ASCII value
// the same bytes out and the same counts, so the two can never drift.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { MaskingRule } from '../../api/v1alpha1.ts';
import { detectorScanners, type Span } from './detectors.ts';
import { policy } from './fixtures.ts';
import { ByteOutput, compileMasking, type MaskingPlan, type Tally } from './masking.ts';
import { asciiValue as value } from './value-fixtures.ts';

const allDetectors = Object.keys(detectorScanners) as (keyof typeof detectorScanners)[];

function planOf(rules: Partial<MaskingRule>[][], prefilter = true): MaskingPlan {
  return compileMasking(
    rules.map((masking, p) =>
      policy({
        name: `p${p}`,
        mode: p === 0 ? 'enforce' : 'audit',
        masking: masking.map((r, i) => ({ name: `r${i}`, strategy: 'redact', indirectUse: 'deny', ...r })),
      }),
    ),
    { prefilter },
  );
}

const plans: [string, MaskingPlan][] = [
  ['all detectors, partial', planOf([[{ detectors: allDetectors, strategy: 'partial' }]])],
  ['all detectors, redact', planOf([[{ detectors: allDetectors, strategy: 'redact' }]])],
  ['all detectors, hash', planOf([[{ detectors: allDetectors, strategy: 'hash' }]])],
  [
    'the benches: card, email, SSN, phone, IBAN',
    planOf([[{ detectors: ['credit-card', 'email', 'us-ssn', 'phone', 'iban'], strategy: 'partial' }]]),
  ],
  [
    'strategies by detector, an audit-mode policy and a pattern',
    planOf([
      [
        { detectors: ['email', 'phone'], strategy: 'partial' },
        { detectors: ['credit-card', 'jwt'], strategy: 'hash' },
        { detectors: ['us-ssn', 'iban'], strategy: 'redact' },
        { patterns: [{ name: 'order-id', regex: 'ORD-[0-9]{4}' }], strategy: 'partial' },
      ],
      [{ detectors: ['email', 'ipv4', 'ipv6', 'aws-access-key', 'bearer-token'], strategy: 'redact' }],
    ]),
  ],
  ['audit only', planOf([[], [{ detectors: allDetectors, strategy: 'redact' }]])],
  ['no prefilter', planOf([[{ detectors: allDetectors, strategy: 'partial' }]], false)],
];

/** Bytes around the value that would change a finding were they read (a digit, '@', a dash). */
const surround = fc.constantFrom('', '1', '@a.com', '123-', '-45-6789', '+1', 'x');

function compare(plan: MaskingPlan, text: string, before: string, after: string): void {
  const expected = plan.maskText(text);
  const bytes = Buffer.from(before + text + after, 'latin1');
  const tally: Tally = {};
  const out = new ByteOutput();
  out.length = 1; // appended after what is there
  const changed = plan.maskAscii(bytes, before.length, before.length + text.length, tally, out);
  const got = changed ? out.bytes.toString('latin1', 1, out.length) : text;
  assert.equal(got, expected.value, JSON.stringify(text));
  if (!changed) assert.equal(out.length, 1);
  const nonZero = (counts: Record<string, number>) => (Object.keys(counts).length > 0 ? counts : undefined);
  assert.deepEqual(tally.masked, nonZero(expected.counts), JSON.stringify(text));
  assert.deepEqual(tally.wouldMask, nonZero(expected.wouldMask), JSON.stringify(text));
}

describe('masking ASCII bytes', () => {
  for (const [name, plan] of plans) {
    it(`is maskText, byte for byte: ${name}`, () => {
      fc.assert(
        fc.property(value, surround, surround, (text, before, after) => compare(plan, text, before, after)),
        { numRuns: 2000 },
      );
    });
  }

  it('is maskText on the values of the benches and on known findings', () => {
    for (const [, plan] of plans) {
      for (const text of [
        'user1@example.com',
        'order 1 shipped',
        '2026-12-03 19:20:00.123456+00',
        'SKU-007919',
        'to alice.smith+x@mail.example.com.',
        'card 4111 1111 1111 1111 and ssn 123-45-6789, call +44 20 7946 0958',
        'a@b.c @x.io a.@y.com x@-y.com x@y-.com x@y.c0m',
        'Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln',
      ])
        compare(plan, text, '', '');
    }
  });

  it('is maskText on either side of the switch to the string path (48 bytes)', () => {
    // The value padded to 40-56 bytes, before or after it: a finding at either end of a value
    // read as bytes below the switch and as a string from it.
    const padded = fc
      .tuple(
        value,
        fc.integer({ min: 40, max: 56 }),
        fc.constantFrom(' ', 'x', '0', '\u0000', '-'),
        fc.boolean(),
      )
      .map(([text, length, fill, front]) => {
        const pad = fill.repeat(Math.max(0, length - text.length));
        return front ? pad + text : text + pad;
      });
    for (const [, plan] of plans)
      fc.assert(
        fc.property(padded, surround, (text, around) => compare(plan, text, around, around)),
        { numRuns: 1000 },
      );
  });

  it('masks what a reader would take for a finding, whatever the bytes around it', () => {
    const [, plan] = plans[1]!;
    const secrets = [
      'ada@example.com',
      'A.Lovelace+work@Mail.Example.CO.UK',
      'first.last-x@sub-domain.example.org',
      '4111 1111 1111 1111',
      '4111-1111-1111-1111',
      '4111.1111.1111.1111',
      '378282246310005',
      '078-05-1120',
      '078 05 1120',
      '+44 20 7946 0958',
      '(555) 234-5678',
      '555.234.5678',
      'GB82WEST12345698765432',
      'AKIAIOSFODNN7EXAMPLE',
    ];
    // Bytes a reader skips or breaks a line at, and none that a finding could run into.
    const around = [
      '',
      '\u0000',
      '\u0001',
      '\u001b',
      '\u007f',
      '\r\n',
      '\t',
      '"',
      "'",
      '<',
      '(',
      ',',
      ';',
      '/',
    ];
    for (const secret of secrets) {
      for (const before of around) {
        for (const after of around) {
          // Each length from the shortest value to past the switch, the finding at both ends.
          for (const pad of [0, 1, 47 - secret.length, 48 - secret.length, 49 - secret.length]) {
            if (pad < 0) continue;
            for (const text of [
              before + secret + after + ' '.repeat(pad),
              ' '.repeat(pad) + before + secret + after,
            ]) {
              compare(plan, text, '', '');
              const masked = plan.maskText(text).value;
              assert.ok(!masked.includes(secret), `${JSON.stringify(text)} -> ${JSON.stringify(masked)}`);
            }
          }
        }
      }
    }
  });

  it('finds with the detectors’ byte searches what their string searches find', () => {
    for (const scanner of Object.values(detectorScanners)) {
      if (!scanner.findBytes && !scanner.mayMatchBytes) continue;
      fc.assert(
        fc.property(value, surround, (text, before) => {
          const expected: Span[] = [];
          scanner.find(text, expected);
          const bytes = Buffer.from(before + text + before, 'latin1');
          if (scanner.findBytes) {
            const got: Span[] = [];
            scanner.findBytes(bytes, before.length, before.length + text.length, got);
            assert.deepEqual(got, expected, JSON.stringify(text));
          }
          if (scanner.mayMatchBytes && expected.length > 0)
            assert.ok(scanner.mayMatchBytes(bytes, before.length, before.length + text.length), text);
        }),
        { numRuns: 3000 },
      );
    }
  });
});
