import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { type Detector, detectors } from '../../api/names.ts';
import type { MaskingRule } from '../../api/v1alpha1.ts';
import { ibanValid, ipv6Valid, luhnValid, ssnValid } from './detectors.ts';
import { policy } from './fixtures.ts';
import { applyStrategy, compileMasking, compilePattern } from './masking.ts';

function planWith(rules: Partial<MaskingRule>[], mode: 'enforce' | 'audit' = 'enforce') {
  return compileMasking([
    policy({
      name: 'p',
      mode,
      masking: rules.map((r, i) => ({ name: `r${i}`, strategy: 'redact', indirectUse: 'deny', ...r })),
    }),
  ]);
}

const detectOnly = (detector: Detector) => planWith([{ name: 'd', detectors: [detector] } as MaskingRule]);
const masks = (detector: Detector, value: string) => detectOnly(detector).maskText(value).value !== value;

describe('detectors', () => {
  it('credit-card: Luhn-valid 13-19 digits with spaces or dashes; not a Luhn-invalid number', () => {
    assert.ok(masks('credit-card', 'card 4111 1111 1111 1111 on file'));
    assert.ok(masks('credit-card', '5500-0000-0000-0004'));
    assert.ok(masks('credit-card', '378282246310005'));
    assert.ok(!masks('credit-card', '4111111111111112'));
    assert.ok(!masks('credit-card', '4111 1111 1111 1112'));
    assert.ok(!masks('credit-card', 'order 1700000000000 at epoch ms'));
    assert.ok(!masks('credit-card', '41111111111111111111111'));
    assert.ok(luhnValid('79927398713'));
    assert.ok(!luhnValid('79927398710'));
  });

  it('email', () => {
    assert.equal(
      detectOnly('email').maskText('to alice.smith+x@mail.example.com.').value,
      'to [REDACTED:email].',
    );
    assert.ok(!masks('email', 'user@localhost'));
    assert.ok(!masks('email', 'look @ this.'));
    assert.ok(!masks('email', '@example.com'));
  });

  it('us-ssn: dashed, SSA-valid only', () => {
    assert.ok(masks('us-ssn', 'ssn 123-45-6789'));
    for (const bad of [
      '000-12-3456',
      '666-12-3456',
      '900-12-3456',
      '123-00-4567',
      '123-45-0000',
      '123456789',
    ]) {
      assert.ok(!masks('us-ssn', bad), bad);
    }
    assert.ok(!masks('us-ssn', '2024-01-15'));
    assert.ok(!ssnValid('666', '12', '3456'));
  });

  it('iban: MOD-97', () => {
    assert.ok(masks('iban', 'pay DE89 3704 0044 0532 0130 00 today'));
    assert.ok(masks('iban', 'GB82WEST12345698765432'));
    assert.ok(!masks('iban', 'GB82WEST12345698765433'));
    assert.ok(ibanValid('FR1420041010050500013M02606'));
    assert.ok(!ibanValid('FR1420041010050500013M02607'));
    assert.equal(
      detectOnly('iban').maskText('DE89 3704 0044 0532 0130 00 THANKS').value,
      '[REDACTED:iban] THANKS',
    );
  });

  it('phone: E.164 and NANP with separators, not any run of digits', () => {
    assert.ok(masks('phone', 'call +44 20 7946 0958'));
    assert.ok(masks('phone', '+14155552671'));
    assert.ok(masks('phone', '(415) 555-2671'));
    assert.ok(masks('phone', '415-555-2671'));
    assert.ok(masks('phone', '415.555.2671'));
    assert.ok(!masks('phone', '4155552671'));
    assert.ok(!masks('phone', 'id 123456789012'));
    assert.ok(!masks('phone', '2024-01-15 10:00'));
  });

  it('ipv4 and ipv6', () => {
    assert.ok(masks('ipv4', 'from 10.0.0.254:5432'));
    assert.ok(!masks('ipv4', '256.1.1.1'));
    assert.ok(!masks('ipv4', '1.2.3'));
    assert.ok(masks('ipv6', 'addr 2001:db8::8a2e:370:7334 end'));
    assert.ok(masks('ipv6', 'fe80:0:0:0:200:f8ff:fe21:67cf'));
    assert.ok(masks('ipv6', '::ffff:192.0.2.128'.replace('::', '64:ff9b::')));
    assert.ok(!masks('ipv6', 'at 12:30:45'));
    assert.ok(!masks('ipv6', 'mac 00:1a:2b:3c:4d:5e'));
    assert.ok(!masks('ipv6', 'std::string'));
    assert.ok(!ipv6Valid('1::2::3'));
  });

  it('jwt: header must decode to JSON with alg', () => {
    const header = Buffer.from('{"alg":"HS256","typ":"JWT"}').toString('base64url');
    const payload = Buffer.from('{"sub":"1"}').toString('base64url');
    assert.ok(masks('jwt', `token ${header}.${payload}.c2lnbmF0dXJl`));
    const noAlg = Buffer.from('{"typ":"JWT"}').toString('base64url');
    assert.ok(!masks('jwt', `${noAlg}.${payload}.c2ln`));
    assert.ok(!masks('jwt', 'eyJnotjson.abc.def'));
  });

  it('aws-access-key, private-key, bearer-token', () => {
    assert.ok(masks('aws-access-key', 'key=AKIAIOSFODNN7EXAMPLE;'));
    assert.ok(masks('aws-access-key', 'ASIAY34FZKBOKMUTVV7A'));
    assert.ok(!masks('aws-access-key', 'AKIAIOSFODNN7EXAMPL'));
    const pem = '-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----';
    assert.equal(detectOnly('private-key').maskText(`a ${pem} b`).value, 'a [REDACTED:private-key] b');
    assert.equal(
      detectOnly('private-key').maskText('-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk').value,
      '[REDACTED:private-key]',
    );
    assert.ok(!masks('private-key', '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----'));
    assert.equal(
      detectOnly('bearer-token').maskText('Authorization: Bearer abc123def456ghi').value,
      'Authorization: Bearer [REDACTED:bearer-token]',
    );
    assert.ok(!masks('bearer-token', 'the bearer of bad news, bearer bonds'));
    // The scheme in any case, as HTTP reads it.
    for (const scheme of ['BeArEr', 'bEARER', 'BEARer'])
      assert.equal(
        detectOnly('bearer-token').maskText(`Authorization: ${scheme} abc123def456ghi`).value,
        `Authorization: ${scheme} [REDACTED:bearer-token]`,
      );
  });
});

describe('strategies', () => {
  it('redact, partial and hash', () => {
    assert.equal(applyStrategy('redact', 'x', 'email', 'k'), '[REDACTED:email]');
    assert.equal(applyStrategy('redact', 'x', '', 'k'), '[REDACTED]');
    assert.equal(applyStrategy('partial', '4111-1111-1111-1111', '', 'k'), '****-****-****-1111');
    assert.equal(applyStrategy('partial', '123-45-6789', '', 'k'), '***-**-6789');
    assert.equal(applyStrategy('partial', 'ab@c.io', '', 'k'), '**@*.**');
    const h = applyStrategy('hash', 'alice@example.com', '', 'k1');
    assert.match(h, /^h:[0-9a-f]{12}$/);
    assert.equal(applyStrategy('hash', 'alice@example.com', '', 'k1'), h);
    assert.notEqual(applyStrategy('hash', 'alice@example.com', '', 'k2'), h);
    assert.notEqual(applyStrategy('hash', 'bob@example.com', '', 'k1'), h);
  });

  it('hash uses the bundle key given to compileMasking', () => {
    const rules = [
      { name: 'h', columns: ['*.email'], strategy: 'hash' as const, indirectUse: 'deny' as const },
    ];
    const a = compileMasking([policy({ name: 'p', masking: rules })], { hashKey: 'one' });
    const b = compileMasking([policy({ name: 'p', masking: rules })], { hashKey: 'two' });
    const col = { schema: 'public', table: 't', column: 'email' };
    assert.notEqual(
      a.maskText('x@y.io', a.columnRule(col)).value,
      b.maskText('x@y.io', b.columnRule(col)).value,
    );
  });
});

describe('compileMasking', () => {
  it('columnRule: globs over [schema.]table.column; the strongest strategy across policies wins', () => {
    const plan = compileMasking([
      policy({
        name: 'a',
        masking: [{ name: 'soft', columns: ['*.ssn'], strategy: 'partial', indirectUse: 'deny' }],
      }),
      policy({
        name: 'b',
        masking: [
          { name: 'hard', columns: ['public.customers.ssn'], strategy: 'redact', indirectUse: 'deny' },
        ],
      }),
    ]);
    assert.equal(plan.hasColumns, true);
    assert.equal(plan.hasScanners, false);
    assert.equal(
      plan.columnRule({ schema: 'public', table: 'customers', column: 'ssn' })?.strategy,
      'redact',
    );
    assert.equal(plan.columnRule({ schema: 'hr', table: 'staff', column: 'ssn' })?.strategy, 'partial');
    assert.equal(plan.columnRule({ schema: 'public', table: 'customers', column: 'name' }), undefined);
    const mask = plan.columnRule({ schema: 'public', table: 'customers', column: 'ssn' })!;
    assert.deepEqual(plan.maskText('123-45-6789', mask), {
      value: '[REDACTED]',
      counts: { 'hard/public.customers.ssn': 1 },
      wouldMask: {},
    });
  });

  it('audit-mode masking leaves values alone and counts them in wouldMask', () => {
    const plan = planWith([{ name: 'pii', detectors: ['email'], columns: ['*.ssn'] }], 'audit');
    const found = plan.maskText('mail bob@example.com now');
    assert.equal(found.value, 'mail bob@example.com now');
    assert.deepEqual(found.counts, {});
    assert.deepEqual(found.wouldMask, { 'pii/email': 1 });
    const col = plan.columnRule({ schema: 'public', table: 't', column: 'ssn' })!;
    assert.equal(col.audit, true);
    assert.deepEqual(plan.maskText('123-45-6789', col), {
      value: '123-45-6789',
      counts: {},
      wouldMask: { 'pii/*.ssn': 1 },
    });
  });

  it('scans with detectors and RE2 patterns, counting under <rule>/<detector or pattern>', () => {
    const plan = planWith([
      { name: 'pii', detectors: ['email', 'us-ssn'] },
      { name: 'ids', patterns: [{ name: 'order', regex: 'ORD-[0-9]{6}' }], strategy: 'partial' },
    ]);
    const r = plan.maskText('a@b.io, c@d.io, 123-45-6789, ORD-123456');
    assert.equal(r.value, '[REDACTED:email], [REDACTED:email], [REDACTED:us-ssn], ***-**3456');
    assert.deepEqual(r.counts, { 'pii/email': 2, 'pii/us-ssn': 1, 'ids/order': 1 });
  });

  it('returns the very same string when nothing is found', () => {
    const plan = planWith([{ name: 'pii', detectors: [...detectors] }]);
    for (const value of ['', '42', 'hello world', '2024-01-15 10:00:00+00', 'a@b', '4111111111111112']) {
      const r = plan.maskText(value);
      assert.equal(r.value, value);
      assert.deepEqual(r.counts, {});
    }
  });

  it('prefilters: values without a digit are still scanned for what needs no digit', () => {
    const plan = planWith([{ name: 'pii', detectors: [...detectors] }]);
    const cases: [string, string][] = [
      ['mail alice@example.com now', 'mail [REDACTED:email] now'],
      ['host ab::cd:ef up', 'host [REDACTED:ipv6] up'],
      ['host ab:cd:ef:ab:cd:ef:ab:cd up', 'host [REDACTED:ipv6] up'],
      ['t eyJhbGciOiJhYWEifQ.abc.def x', 't [REDACTED:jwt] x'],
      ['key AKIAABCDEFGHIJKLMNOP end', 'key [REDACTED:aws-access-key] end'],
      ['Authorization: Bearer abcdefghijklmnopqrstuvwx', 'Authorization: Bearer [REDACTED:bearer-token]'],
      ['-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----', '[REDACTED:private-key]'],
    ];
    // Long values take the native pre-scan, short ones the JS pass: both must find them.
    const filler = ' and then some more words, long enough for the native pre-scan';
    for (const [value, masked] of cases) {
      assert.ok(!/[0-9]/.test(value), value);
      assert.equal(plan.maskText(value).value, masked);
      assert.equal(plan.maskText(value + filler).value, masked + filler);
      assert.equal(plan.maskText(filler + value).value, filler + masked);
    }
  });

  it('phone: NANP candidates found by a native search, at every separator', () => {
    const plan = detectOnly('phone');
    assert.equal(plan.maskText('call 555-234-5678 now').value, 'call [REDACTED:phone] now');
    assert.equal(plan.maskText('555-234-5678-234-5678').value, '[REDACTED:phone]-234-5678');
    assert.equal(
      plan.maskText('a (555) 234-5678, b 555.234.5678').value,
      'a [REDACTED:phone], b [REDACTED:phone]',
    );
    assert.equal(plan.maskText('2024-01-15 10:00:00+00').value, '2024-01-15 10:00:00+00');
  });

  it('compilePattern rejects invalid RE2 with a clear error', () => {
    const bad = compilePattern('(?<=x)y');
    assert.equal(bad.ok, false);
    assert.match(bad.ok ? '' : bad.error, /invalid RE2 pattern/);
    assert.equal(compilePattern('a(b').ok, false);
    assert.equal(compilePattern('(a)\\1').ok, false);
    assert.equal(compilePattern('[0-9]{3}-[0-9]{4}').ok, true);
    assert.throws(() => planWith([{ name: 'x', patterns: [{ name: 'bad', regex: 'a(b' }] }]), /invalid RE2/);
  });
});

describe('masking properties', () => {
  const all = planWith([{ name: 'pii', detectors: [...detectors] }]);
  const hashed = planWith([{ name: 'pii', detectors: [...detectors], strategy: 'hash' }]);
  const detectorPlans = detectors.map((d) => [d, detectOnly(d)] as const);

  const cardArb = fc
    .array(fc.integer({ min: 0, max: 9 }), { minLength: 14, maxLength: 14 })
    .chain((body) => fc.constantFrom('4', '5', '3', '6').map((first) => [Number(first), ...body]))
    .map((digits) => {
      // Append the Luhn check digit.
      for (let check = 0; check <= 9; check++) {
        const s = [...digits, check].join('');
        if (luhnValid(s)) return s;
      }
      throw new Error('unreachable');
    });
  const emailArb = fc
    .tuple(
      fc.stringMatching(/^[a-z][a-z0-9._]{0,10}[a-z0-9]$/),
      fc.stringMatching(/^[a-z]{1,10}\.(com|org|io)$/),
    )
    .map(([local, domain]) => `${local}@${domain}`);
  const ssnArb = fc
    .tuple(
      fc.integer({ min: 1, max: 899 }),
      fc.integer({ min: 1, max: 99 }),
      fc.integer({ min: 1, max: 9999 }),
    )
    .filter(([a]) => a !== 666)
    .map(
      ([a, g, s]) =>
        `${String(a).padStart(3, '0')}-${String(g).padStart(2, '0')}-${String(s).padStart(4, '0')}`,
    );
  const filler = fc.constantFrom(' ', ', ', ' and ', '\n', ': ', ' (', ') ');
  const textArb = fc
    .array(fc.oneof(cardArb, emailArb, ssnArb, fc.stringMatching(/^[a-z ]{0,12}$/), filler), {
      maxLength: 12,
    })
    .map((parts) => parts.join(' '));

  it('never leaves a detected value in the output (redact and hash)', () => {
    fc.assert(
      fc.property(textArb, (text) => {
        for (const plan of [all, hashed]) {
          const out = plan.maskText(text).value;
          for (const [name, detector] of detectorPlans) {
            assert.equal(
              detector.maskText(out).value,
              out,
              `${name} still finds something in ${JSON.stringify(out)}`,
            );
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it('every generated card, email and SSN is masked and counted', () => {
    fc.assert(
      fc.property(fc.oneof(cardArb, emailArb, ssnArb), fc.stringMatching(/^[a-z ]{0,8}$/), (secret, pad) => {
        const r = all.maskText(`${pad} ${secret} ${pad}`);
        assert.ok(!r.value.includes(secret), r.value);
        assert.equal(Object.values(r.counts).reduce((a, b) => a + b, 0) >= 1, true);
      }),
      { numRuns: 300 },
    );
  });

  it('never throws on arbitrary unicode, and is idempotent with redact', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 200 }), (text) => {
        const once = all.maskText(text).value;
        assert.equal(all.maskText(once).value, once);
      }),
      { numRuns: 500 },
    );
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 300 }), (text) => {
        all.maskText(text);
        hashed.maskText(text);
      }),
      { numRuns: 500 },
    );
  });

  it('prefilters never change a result: the same as running every scanner on every value', () => {
    const rules = [
      { name: 'pii', detectors: [...detectors], strategy: 'redact' },
      { name: 'ids', patterns: [{ name: 'order', regex: 'ORD-[0-9]{6}' }], strategy: 'hash' },
    ] as MaskingRule[];
    const gated = compileMasking([policy({ name: 'p', masking: rules })]);
    const every = compileMasking([policy({ name: 'p', masking: rules })], { prefilter: false });
    const token = fc.oneof(
      cardArb,
      emailArb,
      ssnArb,
      fc.constantFrom(
        ...'0123456789abcdefABCDEFXYZ@.-+:() _/='.split(''),
        'eyJhbGciOiJhYWEifQ',
        'eyJhbGciOiJIUzI1NiJ9',
        'AKIA',
        'ASIA',
        'Bearer ',
        'BEARER ',
        'bearer ',
        'BeArEr ',
        '-----BEGIN PRIVATE KEY-----',
        '-----END PRIVATE KEY-----',
        '::',
        '+1 ',
        '+44 20 7946 0958',
        '(555) ',
        '234-5678',
        '192.168.1.1',
        'fe80::1',
        'ab:cd:ef:ab:cd:ef:ab:cd',
        'GB82 WEST 1234 5698 7654 32',
        'DE89370400440532013000',
        'ORD-123456',
        'example.com',
        ' the quick brown fox jumps over the lazy dog ',
      ),
    );
    fc.assert(
      fc.property(fc.array(token, { maxLength: 24 }), (parts) => {
        const text = parts.join('');
        assert.deepEqual(gated.maskText(text), every.maskText(text), JSON.stringify(text));
      }),
      { numRuns: 2_000 },
    );
  });

  it('keeps text between findings intact', () => {
    fc.assert(
      fc.property(
        fc.stringMatching(/^[a-z ]{0,20}$/),
        emailArb,
        fc.stringMatching(/^[a-z ]{0,20}$/),
        (a, e, b) => {
          assert.equal(all.maskText(`${a} ${e} ${b}`).value, `${a} [REDACTED:email] ${b}`);
        },
      ),
    );
  });
});

describe('disguised values', () => {
  const all = planWith([{ name: 'pii', detectors: [...detectors] }]);
  const partial = planWith([{ name: 'pii', detectors: ['credit-card', 'us-ssn'], strategy: 'partial' }]);
  // The zero of each script's decimal digits: ASCII, Arabic-Indic, extended Arabic-Indic,
  // Devanagari, Bengali, Thai, fullwidth, mathematical bold, double-struck and monospace.
  const zeros = [0x30, 0x660, 0x6f0, 0x966, 0x9e6, 0xe50, 0xff10, 0x1d7ce, 0x1d7d8, 0x1d7f6];
  // Separators a detector reads as a space, dash or dot, and invisible ones it reads through.
  const visible = [
    ' ',
    '-',
    '.',
    '\u00a0',
    '\u2009',
    '\u3000',
    '\u2013',
    '\u2014',
    '\u2212',
    '\uff0d',
    '\uff0e',
  ];
  const invisible = ['\u200b', '\u200c', '\u200d', '\u2060', '\ufeff', '\u00ad', '\u0301'];
  const digitArb = (d: string) =>
    fc.constantFrom(...zeros).map((zero) => String.fromCodePoint(zero + Number(d)));
  /** Digits of random scripts with 0-2 visible and any invisible separators between them. */
  const disguise = (digits: string, separators = [...visible, ...invisible]) =>
    fc
      .tuple(
        ...[...digits].map((d, i) =>
          fc
            .tuple(
              digitArb(d),
              i === digits.length - 1
                ? fc.constant([] as string[])
                : fc.array(fc.constantFrom(...separators), { maxLength: 3 }),
            )
            .filter(([, seps]) => seps.filter((s) => visible.includes(s)).length <= 2)
            .map(([digit, seps]) => digit + seps.join('')),
        ),
      )
      .map((parts) => parts.join(''));
  const cardArb = fc
    .array(fc.integer({ min: 0, max: 9 }), { minLength: 11, maxLength: 17 })
    .chain((body) => fc.constantFrom(2, 3, 4, 5, 6).map((first) => [first, ...body]))
    .map((digits) => {
      for (let check = 0; check <= 9; check++) {
        const s = [...digits, check].join('');
        if (luhnValid(s)) return s;
      }
      throw new Error('unreachable');
    });

  it('cards in any script of digits, with any separators, are found and masked whole', () => {
    fc.assert(
      fc.property(
        cardArb.chain(disguise),
        fc.constantFrom('', 'card ', 'x: ', 'paid with '),
        (card, before) => {
          const result = all.maskText(`${before}${card} thanks`);
          assert.equal(result.value, `${before}[REDACTED:credit-card] thanks`, JSON.stringify(card));
          assert.equal(result.counts['pii/credit-card'], 1);
        },
      ),
      { numRuns: 1_000 },
    );
  });

  it('a Luhn-invalid number stays unmasked in any script, through invisible characters', () => {
    fc.assert(
      fc.property(
        cardArb
          .map((c) => c.slice(0, -1) + String((Number(c.at(-1)) + 1) % 10))
          .chain((c) => disguise(c, invisible)),
        (card) => {
          assert.equal(detectOnly('credit-card').maskText(`n ${card} n`).value, `n ${card} n`);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('SSNs with digits of other scripts and other separators', () => {
    const ssnArb = fc
      .tuple(
        fc.integer({ min: 1, max: 899 }).filter((a) => a !== 666),
        fc.integer({ min: 1, max: 99 }),
        fc.integer({ min: 1, max: 9999 }),
        fc.constantFrom('-', ' ', '.', '\u2013', '\u00a0', '\uff0d'),
      )
      .chain(([a, g, s, sep]) =>
        fc
          .tuple(
            disguiseGroup(String(a).padStart(3, '0')),
            disguiseGroup(String(g).padStart(2, '0')),
            disguiseGroup(String(s).padStart(4, '0')),
          )
          .map((groups) => groups.join(sep)),
      );
    function disguiseGroup(digits: string) {
      return fc.tuple(...[...digits].map(digitArb)).map((d) => d.join(''));
    }
    fc.assert(
      fc.property(ssnArb, (ssn) => {
        assert.equal(
          detectOnly('us-ssn').maskText(`ssn ${ssn}.`).value,
          'ssn [REDACTED:us-ssn].',
          JSON.stringify(ssn),
        );
      }),
      { numRuns: 500 },
    );
  });

  it('emails with fullwidth @ and dots, and invisible characters', () => {
    for (const email of [
      'alice＠example．com',
      'ａｌｉｃｅ＠ｅｘａｍｐｌｅ．ｃｏｍ',
      'alice\u200b@example.com',
      'alice@exam\u00adple.com',
      'alice﹫example。com',
    ]) {
      assert.equal(detectOnly('email').maskText(`to ${email} now`).value, 'to [REDACTED:email] now', email);
    }
  });

  it('partial keeps only the last four digits of a disguised card, whatever its script', () => {
    fc.assert(
      fc.property(cardArb.chain(disguise), (card) => {
        const masked = partial.maskText(card).value;
        const shown = [...masked].filter((ch) => /\p{Nd}/u.test(ch));
        assert.ok(shown.length <= 4, `${JSON.stringify(card)} → ${JSON.stringify(masked)}`);
      }),
      { numRuns: 500 },
    );
  });

  it('text without disguises and text in other scripts is left as it is', () => {
    for (const text of [
      'Zoë Saldaña, Straße 5, 東京都 1-2-3',
      'Ünïcödé – not a number — ½ price',
      '٢٠٢٤ annual report',
      'α = 3.14159, β = 2.71828',
    ]) {
      assert.equal(all.maskText(text).value, text);
    }
  });
});
