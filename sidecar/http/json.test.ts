import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { maskEncoded } from '../policy/encoded.ts';
import { policy } from '../policy/fixtures.ts';
import { maskJson } from '../policy/json-mask.ts';
import { compileJsonPaths, type JsonPathRule, parseJsonPath } from '../policy/json-paths.ts';
import { applyStrategy, compileMasking, defaultHashKey, type MaskingPlan } from '../policy/masking.ts';
import { asciiValue } from '../policy/value-fixtures.ts';
import { JsonLimitError, JsonStreamMasker, type JsonStreamOptions, JsonSyntaxError } from './json.ts';

describe('JSON masking', () => {
  it('parses the supported JSON path subset', () => {
    assert.deepEqual(parseJsonPath('$.a.b'), [
      { descendant: false, key: 'a' },
      { descendant: false, key: 'b' },
    ]);
    assert.deepEqual(parseJsonPath("$..card[*]['x y'][2]"), [
      { descendant: true, key: 'card' },
      { descendant: false, key: '*' },
      { descendant: false, key: 'x y' },
      { descendant: false, key: 2 },
    ]);
    assert.equal(parseJsonPath('a.b'), undefined);
    assert.equal(parseJsonPath('$[?(@.x)]'), undefined);
  });

  const policies = [
    policy({
      name: 'enforced',
      masking: [
        { name: 'cards', detectors: ['credit-card'], strategy: 'redact', indirectUse: 'deny' },
        {
          name: 'paths',
          jsonPaths: ['$.customer.email', '$..secret', '$.list[*].ssn'],
          strategy: 'redact',
          indirectUse: 'deny',
        },
      ],
    }),
    policy({
      name: 'dry-run',
      mode: 'audit',
      masking: [{ name: 'names', jsonPaths: ['$.customer.name'], strategy: 'redact', indirectUse: 'deny' }],
    }),
  ];
  const plan = compileMasking(policies);
  const paths = compileJsonPaths(policies);

  it('masks values at paths, under selected objects, and by detectors', () => {
    const document = {
      customer: { name: 'Alice', email: 'a@b.c', card: 4111111111111111 },
      deep: { x: { secret: { k: 'v', n: 1 } } },
      list: [{ ssn: '1' }, { ssn: '2', other: 'keep' }],
      note: 'pay with 4111 1111 1111 1111 today',
    };
    const { value, counts, wouldMask } = maskJson(document, plan, paths);
    assert.deepEqual(value, {
      customer: { name: 'Alice', email: '[REDACTED]', card: '[REDACTED:credit-card]' },
      deep: { x: { secret: { k: '[REDACTED]', n: '[REDACTED]' } } },
      list: [{ ssn: '[REDACTED]' }, { ssn: '[REDACTED]', other: 'keep' }],
      note: 'pay with [REDACTED:credit-card] today',
    });
    assert.equal(counts['paths/$.customer.email'], 1);
    assert.equal(counts['paths/$..secret'], 2);
    assert.equal(counts['paths/$.list[*].ssn'], 2);
    assert.deepEqual(wouldMask, { 'names/$.customer.name': 1 });
  });

  it('masks every leaf for a path it cannot read (fail closed)', () => {
    const odd = compileJsonPaths([
      policy({
        name: 'p',
        masking: [{ name: 'weird', jsonPaths: ['$[?(@.x)]'], strategy: 'redact', indirectUse: 'deny' }],
      }),
    ]);
    assert.deepEqual(maskJson({ a: 'x', b: [1] }, compileMasking([]), odd).value, {
      a: '[REDACTED]',
      b: ['[REDACTED]'],
    });
  });
});

/** The streaming masker over `body` cut at `cuts` (byte offsets); the output and counts. */
function streamed(
  body: string | Buffer,
  plan: MaskingPlan,
  paths: JsonPathRule[],
  cuts: number[] = [],
  options: JsonStreamOptions = {},
) {
  const bytes = typeof body === 'string' ? Buffer.from(body) : body;
  const masker = new JsonStreamMasker(plan, paths, options);
  const out: Buffer[] = [];
  let from = 0;
  for (const cut of [...cuts].sort((a, b) => a - b)) {
    const at = Math.min(Math.max(cut, from), bytes.length);
    out.push(masker.push(bytes.subarray(from, at)));
    from = at;
  }
  out.push(masker.push(bytes.subarray(from)));
  out.push(masker.end());
  const output = Buffer.concat(out);
  return {
    bytes: output,
    text: output.toString('utf8'),
    counts: masker.counts,
    wouldMask: masker.wouldMask,
    asText: masker.asText,
  };
}

/** Every way of cutting `body` in two, and in single bytes: the same output as whole. */
function everyCut(body: string, plan: MaskingPlan, paths: JsonPathRule[]) {
  const whole = streamed(body, plan, paths);
  const n = Buffer.byteLength(body);
  for (let cut = 0; cut <= n; cut++) {
    const split = streamed(body, plan, paths, [cut]);
    assert.equal(split.text, whole.text, `cut at byte ${cut}`);
    assert.deepEqual(split.counts, whole.counts, `counts, cut at byte ${cut}`);
    assert.deepEqual(split.wouldMask, whole.wouldMask, `wouldMask, cut at byte ${cut}`);
  }
  const bytes = streamed(
    body,
    plan,
    paths,
    Array.from({ length: n }, (_, i) => i),
  );
  assert.equal(bytes.text, whole.text, 'byte by byte');
  assert.deepEqual(bytes.counts, whole.counts, 'counts, byte by byte');
  return whole;
}

/** The streaming masker agrees with maskJson on a valid document, however it is cut. */
function assertParity(body: string, plan: MaskingPlan, paths: JsonPathRule[], cuts: number[] = []) {
  const expected = maskJson(JSON.parse(Buffer.from(body).toString('utf8')), plan, paths);
  const got = streamed(body, plan, paths, cuts);
  assert.equal(got.asText, false);
  assert.deepEqual(JSON.parse(got.text), expected.value);
  assert.deepEqual(got.counts, expected.counts);
  assert.deepEqual(got.wouldMask, expected.wouldMask);
  // Nothing masked: the very bytes that came in.
  if (Object.keys(expected.counts).length === 0) assert.ok(got.bytes.equals(Buffer.from(body)));
  return got;
}

describe('streaming JSON masking', () => {
  const policies = [
    policy({
      name: 'enforced',
      masking: [
        { name: 'pii', detectors: ['credit-card', 'email'], strategy: 'redact', indirectUse: 'deny' },
        {
          name: 'paths',
          jsonPaths: ['$.customer.email', '$..secret', '$.list[*].ssn'],
          strategy: 'redact',
          indirectUse: 'deny',
        },
        { name: 'hashed', jsonPaths: ['$..card', '$..secret'], strategy: 'hash', indirectUse: 'deny' },
        { name: 'starred', jsonPaths: ['$.*.name', '$[1]'], strategy: 'partial', indirectUse: 'deny' },
      ],
    }),
    policy({
      name: 'dry-run',
      mode: 'audit',
      masking: [
        { name: 'names', jsonPaths: ['$..name', '$.customer'], strategy: 'redact', indirectUse: 'deny' },
        { name: 'mail', detectors: ['email'], strategy: 'redact', indirectUse: 'deny' },
      ],
    }),
  ];
  const plan = compileMasking(policies);
  const paths = compileJsonPaths(policies);
  const cardsOnly = compileMasking([
    policy({
      name: 'p',
      masking: [
        { name: 'pii', detectors: ['credit-card', 'email'], strategy: 'redact', indirectUse: 'deny' },
      ],
    }),
  ]);

  it('masks as maskJson does, passing the rest on byte for byte', () => {
    const body = `{ "customer": {"name": "Alice Smith", "email": "a@b.c", "card": 4111111111111111},
  "deep": {"x": {"secret": {"k": "v", "n": 1.50, "t": true, "z": null, "e": [], "o": {}}}},
  "list": [{"ssn": "1"}, {"ssn": "2", "other": "keep"}],
  "note": "pay with 4111 1111 1111 1111 today",\t"count": -3e2 }\n`;
    const got = assertParity(body, plan, paths);
    assert.equal(
      got.text,
      `{ "customer": {"name": "***** *mith", "email": "[REDACTED]", "card": "${applyStrategy('hash', '4111111111111111', '', defaultHashKey)}"},
  "deep": {"x": {"secret": {"k": "[REDACTED]", "n": "[REDACTED]", "t": "[REDACTED]", "z": null, "e": [], "o": {}}}},
  "list": [{"ssn": "[REDACTED]"}, {"ssn": "[REDACTED]", "other": "keep"}],
  "note": "pay with [REDACTED:credit-card] today",\t"count": -3e2 }\n`,
    );
    assert.deepEqual(got.counts, {
      'paths/$.customer.email': 1,
      'hashed/$..card': 1,
      'paths/$..secret': 3,
      'hashed/$..secret': 3,
      'paths/$.list[*].ssn': 2,
      'pii/credit-card': 1,
      'starred/$.*.name': 1,
    });
    assert.deepEqual(got.wouldMask, {
      'names/$..name': 1,
      'names/$.customer': 3,
    });
    everyCut(body, plan, paths);
  });

  it('agrees with maskJson on the walk’s own cases', () => {
    const document = {
      customer: { name: 'Alice', email: 'a@b.c', card: 4111111111111111 },
      deep: { x: { secret: { k: 'v', n: 1 } } },
      list: [{ ssn: '1' }, { ssn: '2', other: 'keep' }],
      note: 'pay with 4111 1111 1111 1111 today',
    };
    for (const body of [JSON.stringify(document), JSON.stringify(document, null, 2)]) {
      assertParity(body, plan, paths);
      everyCut(body, plan, paths);
    }
    const odd = compileJsonPaths([
      policy({
        name: 'p',
        masking: [{ name: 'weird', jsonPaths: ['$[?(@.x)]'], strategy: 'redact', indirectUse: 'deny' }],
      }),
    ]);
    assert.equal(
      streamed('{"a": "x", "b": [1]}', compileMasking([]), odd).text,
      '{"a": "[REDACTED]", "b": ["[REDACTED]"]}',
    );
  });

  it('masks keys by the detectors, as maskJson does', () => {
    const body = '{"alice@example.com": {"4111111111111111": "x"}, "secret": 1, "bob\\u0040example.com": 2}';
    const got = assertParity(body, plan, paths);
    assert.equal(
      got.text,
      '{"[REDACTED:email]": {"[REDACTED:credit-card]": "x"}, "secret": "[REDACTED]", "[REDACTED:email]": 2}',
    );
  });

  it('masks values hidden behind escapes, however the escape is cut', () => {
    for (const [body, masked] of [
      ['{"e": "alice\\u0040example.com"}', '{"e": "[REDACTED:email]"}'],
      ['["\\u0034111 1111 1111 1111"]', '["[REDACTED:credit-card]"]'],
      ['{"e": "\\ud83d\\ude00 alice\\u0040example.com \\u00e9"}', '{"e": "😀 [REDACTED:email] é"}'],
      ['["mail: alice\\/x@example.com"]', '["mail: alice/[REDACTED:email]"]'],
    ] as const) {
      const got = everyCut(body, cardsOnly, []);
      assert.equal(got.text, masked, body);
      assert.deepEqual(JSON.parse(got.text), maskJson(JSON.parse(body), cardsOnly, []).value);
    }
  });

  it('masks numbers that are card numbers, as parsed and as sent', () => {
    const got = everyCut(
      '[4111111111111111, -4111111111111111, 4.111111111111111e15, 4111111111111111.0]',
      cardsOnly,
      [],
    );
    assert.deepEqual(JSON.parse(got.text), [
      '[REDACTED:credit-card]',
      '-[REDACTED:credit-card]',
      '[REDACTED:credit-card]',
      '[REDACTED:credit-card]',
    ]);
    assert.equal(got.counts['pii/credit-card'], 4);
    // 19 digits, past a double's precision: parsed, it is another number; the agent may read
    // either, and the digits as sent are a card number.
    const card = luhn19('411111111111111111');
    assert.notEqual(String(Number(card)), card);
    const sent = streamed(`{"n": ${card}}`, cardsOnly, []);
    assert.equal(sent.text, '{"n": "[REDACTED:credit-card]"}');
    // A number that is no card passes as it came, in any form.
    const plain = '[1, -0, 0.5, 1E2, 1e-7, 12345678901234567890, 3.0]';
    assert.equal(streamed(plain, cardsOnly, []).text, plain);
  });

  it('masks a huge string whole, across many chunks', () => {
    const filler = 'x'.repeat(3 * 1024 * 1024);
    const body = `{"blob": "${filler} alice@example.com ${filler}", "n": 1}`;
    const cuts = Array.from({ length: 100 }, (_, i) => i * 65536);
    const got = streamed(body, cardsOnly, [], cuts);
    assert.equal(got.text, `{"blob": "${filler} [REDACTED:email] ${filler}", "n": 1}`);
  });

  it('fails on a token longer than the bound, or nesting deeper than the bound', () => {
    const long = `["${'x'.repeat(2000)}"]`;
    assert.throws(() => streamed(long, cardsOnly, [], [], { maxToken: 1024 }), JsonLimitError);
    assert.throws(() => streamed(long, cardsOnly, [], [700, 1400], { maxToken: 1024 }), JsonLimitError);
    assert.throws(
      () => streamed(`[${'1'.repeat(2000)}]`, cardsOnly, [], [10], { maxToken: 1024 }),
      JsonLimitError,
    );
    assert.equal(streamed(long, cardsOnly, [], [700], { maxToken: 2002 }).text, long);

    const deep = (levels: number) => `${'['.repeat(levels)}"alice@example.com"${']'.repeat(levels)}`;
    assert.equal(
      streamed(deep(256), cardsOnly, []).text,
      deep(256).replace('alice@example.com', '[REDACTED:email]'),
    );
    assert.throws(() => streamed(deep(257), cardsOnly, []), JsonLimitError);
    // Far deeper: the bound is hit at 257 levels, without holding the rest.
    const masker = new JsonStreamMasker(cardsOnly, []);
    assert.throws(() => masker.push(Buffer.from('['.repeat(1_000_000))), JsonLimitError);
    // Deep objects count too.
    assert.throws(() => streamed('{"a":'.repeat(300), cardsOnly, [], [], {}), JsonLimitError);
  });

  it('masks the rest as text from the first byte that is not JSON', () => {
    for (const [body, masked] of [
      ['{"a": "x", "b": alice@example.com}', '{"a": "x", "b": [REDACTED:email]}'],
      ['{"a": 1,} alice@example.com', '{"a": 1,} [REDACTED:email]'],
      ['[1] {"e": "bob@example.com"}', '[1] {"e": "[REDACTED:email]"}'],
      ['{"a": "one\nbob@example.com"}', '{"a": "one\n[REDACTED:email]"}'],
      ['{"a": "bad \\x escape bob@example.com"}', '{"a": "bad \\x escape [REDACTED:email]"}'],
      ['{"a" "bob@example.com"}', '{"a" "[REDACTED:email]"}'],
      ['[01, "bob@example.com"]', '[01, "[REDACTED:email]"]'],
      ['[truth, "bob@example.com"]', '[truth, "[REDACTED:email]"]'],
      ['\ufeff{"e": "bob@example.com"}', '\ufeff{"e": "[REDACTED:email]"}'],
    ] as const) {
      for (const cut of [0, 3, 8, 12, 20, Buffer.byteLength(body)]) {
        const got = streamed(body, cardsOnly, [], [cut]);
        assert.equal(got.text, masked, `${body} cut at ${cut}`);
        assert.equal(got.asText, true);
        assert.equal(got.counts['pii/email'], 1);
      }
    }
  });

  it('refuses a body that is not JSON when enforced JSON-path rules would go unapplied', () => {
    const pathRules = compileJsonPaths([
      policy({
        name: 'enforced',
        masking: [{ name: 'names', jsonPaths: ['$..name'], strategy: 'redact', indirectUse: 'deny' }],
      }),
    ]);
    for (const body of [
      '{"name": "Alice",}',
      '{"name": Alice}',
      '[{"name": "Alice"}] trailing',
      '{"name": "Ali',
    ])
      for (const cut of [0, 5, Buffer.byteLength(body)])
        assert.throws(
          () => streamed(body, cardsOnly, pathRules, [cut]),
          JsonSyntaxError,
          `${body} cut at ${cut}`,
        );
    // Audit-mode path rules only count: the body is masked as text, as without them.
    const auditOnly = compileJsonPaths([
      policy({
        name: 'dry-run',
        mode: 'audit',
        masking: [{ name: 'names', jsonPaths: ['$..name'], strategy: 'redact', indirectUse: 'deny' }],
      }),
    ]);
    const got = streamed('{"name": "Alice", "e": bob@example.com}', cardsOnly, auditOnly);
    assert.equal(got.asText, true);
    assert.equal(got.text, '{"name": "Alice", "e": [REDACTED:email]}');
  });

  it('ends a truncated body without passing its cut token unmasked', () => {
    for (const [body, masked, asText] of [
      ['{"a": "alice@example.com', '{"a": "[REDACTED:email]', true],
      ['{"a": ["4111111111111111', '{"a": ["[REDACTED:credit-card]', true],
      ['[4111111111111111', '["[REDACTED:credit-card]"', false],
      ['{"a": {"b": "alice@example.com"}', '{"a": {"b": "[REDACTED:email]"}', false],
      ['{"a": tr', '{"a": tr', true],
      ['  ', '  ', false],
      ['', '', false],
    ] as const) {
      for (let cut = 0; cut <= body.length; cut++) {
        const got = streamed(body, cardsOnly, [], [cut]);
        assert.equal(got.text, masked, `${body} cut at ${cut}`);
        assert.equal(got.asText, asText, body);
      }
    }
  });

  it('agrees with maskJson on random documents cut anywhere', () => {
    fc.assert(
      fc.property(documentArb, fc.integer(), fc.array(fc.nat(), { maxLength: 8 }), (document, seed, cuts) => {
        const body = serialize(document, random(seed));
        const n = Buffer.byteLength(body);
        assertParity(
          body,
          plan,
          paths,
          cuts.map((c) => c % (n + 1)),
        );
        // Without rules nothing changes: the very bytes.
        const none = streamed(
          body,
          compileMasking([]),
          [],
          cuts.map((c) => c % (n + 1)),
        );
        assert.ok(none.bytes.equals(Buffer.from(body)));
      }),
      { numRuns: 400 },
    );
  });
});

// ---------------------------------------------------------------------------------------
// Random JSON documents, written with random whitespace, escapes and number forms.

type Node =
  | { t: 'literal'; v: 'true' | 'false' | 'null' }
  | { t: 'number'; v: string }
  | { t: 'string'; v: string }
  | { t: 'array'; items: Node[] }
  | { t: 'object'; entries: [string, Node][] };

const sensitive = [
  'alice@example.com',
  '4111 1111 1111 1111',
  '4111111111111111',
  'bob.smith@mail.example.org',
];
const stringArb = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.string({ unit: 'binary', maxLength: 8 }),
  fc.constantFrom(...sensitive, 'é', '😀', '"quoted"\\', 'line\nbreak'),
  fc
    .tuple(fc.string({ maxLength: 4 }), fc.constantFrom(...sensitive), fc.string({ maxLength: 4 }))
    .map(([a, b, c]) => `${a} ${b} ${c}`),
);
const numberArb = fc.oneof(
  fc.integer().map(String),
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((n) => JSON.stringify(n)),
  fc.constantFrom(
    '4111111111111111',
    '-4111111111111111',
    '4.111111111111111e15',
    '4111111111111111.0',
    '0',
    '-0',
    '-0.0',
    '1E2',
    '1e-7',
    '0.000001',
    '123.4500',
    '1E+400',
    '-1e-400',
    '12345678901234567890',
  ),
  fc
    .tuple(fc.integer(), fc.nat(99), fc.constantFrom('e', 'E'), fc.constantFrom('', '+', '-'), fc.nat(30))
    .map(([i, f, e, sign, x]) => `${i}.${f}${e}${sign}${x}`),
);
const keyArb = fc
  .oneof(
    fc.constantFrom('email', 'name', 'secret', 'card', 'list', 'ssn', 'customer', 'a', '0'),
    fc.string({ maxLength: 6 }),
  )
  // maskJson builds objects by assignment, where "__proto__" sets the prototype and is lost.
  .filter((k) => k !== '__proto__');
const leafArb: fc.Arbitrary<Node> = fc.oneof(
  fc.constantFrom('true', 'false', 'null').map((v) => ({ t: 'literal', v }) as Node),
  numberArb.map((v) => ({ t: 'number', v }) as Node),
  stringArb.map((v) => ({ t: 'string', v }) as Node),
);
const { node: documentArb } = fc.letrec<{ node: Node; array: Node; object: Node }>((tie) => ({
  node: fc.oneof({ depthSize: 'small', withCrossShrink: true }, leafArb, tie('array'), tie('object')),
  array: fc.array(tie('node'), { maxLength: 5 }).map((items) => ({ t: 'array', items }) as Node),
  object: fc
    .uniqueArray(fc.tuple(keyArb, tie('node')), { selector: (e) => e[0], maxLength: 5 })
    .map((entries) => ({ t: 'object', entries }) as Node),
}));

function random(seed: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 4294967296;
  };
}

function serialize(node: Node, rng: () => number): string {
  const ws = () => (rng() < 0.7 ? '' : [' ', '\n', '\t', '\r\n  ', '  '][Math.floor(rng() * 5)]!);
  const write = (n: Node): string => {
    switch (n.t) {
      case 'literal':
      case 'number':
        return n.v;
      case 'string':
        return quote(n.v, rng);
      case 'array':
        return `[${ws()}${n.items.map((item) => `${write(item)}${ws()}`).join(`,${ws()}`)}]`;
      case 'object':
        return `{${ws()}${n.entries.map(([k, v]) => `${quote(k, rng)}${ws()}:${ws()}${write(v)}${ws()}`).join(`,${ws()}`)}}`;
    }
  };
  return `${ws()}${write(node)}${ws()}`;
}

const shortEscapes: Record<string, string> = {
  '"': '\\"',
  '\\': '\\\\',
  '\n': '\\n',
  '\r': '\\r',
  '\t': '\\t',
  '\b': '\\b',
  '\f': '\\f',
};

/** A JSON string literal, some characters escaped as \uXXXX (both halves of a pair) or \/. */
function quote(value: string, rng: () => number): string {
  const unit = (c: number) => {
    const hex = c.toString(16).padStart(4, '0');
    return `\\u${rng() < 0.5 ? hex : hex.toUpperCase()}`;
  };
  let out = '"';
  for (const ch of value) {
    const c = ch.codePointAt(0)!;
    if (shortEscapes[ch] !== undefined && (c >= 0x20 || rng() < 0.5)) out += shortEscapes[ch];
    else if (c < 0x20 || (c >= 0xd800 && c <= 0xdfff)) out += unit(c);
    else if (rng() < 0.15) out += c > 0xffff ? unit(ch.charCodeAt(0)) + unit(ch.charCodeAt(1)) : unit(c);
    else if (ch === '/' && rng() < 0.5) out += '\\/';
    else out += ch;
  }
  return `${out}"`;
}

/** `prefix` and the one digit that makes it Luhn-valid. */
function luhn19(prefix: string): string {
  for (let d = 0; d <= 9; d++) {
    const candidate = `${prefix}${d}`;
    let sum = 0;
    for (let i = 0; i < candidate.length; i++) {
      let digit = Number(candidate[candidate.length - 1 - i]);
      if (i % 2 === 1) {
        digit *= 2;
        if (digit > 9) digit -= 9;
      }
      sum += digit;
    }
    if (sum % 10 === 0) return candidate;
  }
  throw new Error('unreachable');
}

describe('JSON masking of ASCII strings as bytes', () => {
  const detectors = [
    'credit-card',
    'email',
    'us-ssn',
    'phone',
    'iban',
    'ipv4',
    'jwt',
    'bearer-token',
  ] as const;
  const plans: [string, MaskingPlan][] = [
    [
      'partial (the bench)',
      compileMasking([
        policy({
          name: 'p',
          masking: [
            {
              name: 'pii',
              detectors: ['credit-card', 'email', 'us-ssn', 'phone', 'iban'],
              strategy: 'partial',
              indirectUse: 'deny',
            },
          ],
        }),
      ]),
    ],
    [
      'redact and hash, audit beside',
      compileMasking([
        policy({
          name: 'p',
          masking: [
            { name: 'a', detectors: ['email', 'phone'], strategy: 'hash', indirectUse: 'deny' },
            { name: 'b', detectors: [...detectors], strategy: 'redact', indirectUse: 'deny' },
          ],
        }),
        policy({
          name: 'q',
          mode: 'audit',
          // Audit only for AWS keys and IPv6 addresses: found, counted, left as they are.
          masking: [
            {
              name: 'c',
              detectors: ['email', 'us-ssn', 'aws-access-key', 'ipv6'],
              strategy: 'redact',
              indirectUse: 'deny',
            },
          ],
        }),
      ]),
    ],
  ];
  const leaf = fc.oneof(
    asciiValue,
    asciiValue,
    fc.integer(),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.constantFrom(true, null, 4111111111111111, 5552345678, 1e21, 1.5e-7),
  );
  const document = fc.array(
    fc.dictionary(asciiValue, fc.oneof(leaf, fc.array(leaf, { maxLength: 3 })), { maxKeys: 5 }),
    { maxLength: 6 },
  );
  // Records of an array share their keys (read once, then known by their bytes).
  const records = fc
    .tuple(
      fc.array(
        fc.oneof(
          asciiValue,
          fc.constantFrom('ada@example.com', '123-45-6789', 'status', 'AKIAIOSFODNN7EXAMPLE', 'fe80::1:2'),
        ),
        {
          minLength: 1,
          maxLength: 4,
        },
      ),
      fc.array(fc.array(leaf, { minLength: 1, maxLength: 4 }), { maxLength: 5 }),
    )
    .map(([keys, rows]) =>
      rows.map((values) => Object.fromEntries(keys.map((k, i) => [k, values[i % values.length]]))),
    );
  const body = fc
    .tuple(fc.oneof(document, records), fc.constantFrom(undefined, 1))
    .map(([d, indent]) => JSON.stringify(d, null, indent));

  it('reads numbers as bytes only where their text is what maskJson reads (every other form as before)', () => {
    const compiled = plans[0]![1];
    const strings: MaskingPlan = { ...compiled, plainLabels: false };
    const number = fc.oneof(
      fc.stringMatching(/^-?(0|[1-9][0-9]{0,17})(\.[0-9]{1,9})?([eE][+-]?[0-9]{1,3})?$/),
      fc.stringMatching(/^-?0\.0{0,8}[1-9]{1,3}0?$/),
      fc.constantFrom(
        '-0',
        '0',
        '01',
        '-',
        '1.',
        '.5',
        '1-2',
        '--1',
        '4111111111111111',
        '5552345678.5',
        '1e400',
      ),
      fc.constantFrom(
        '4111111111111111.0',
        '4.111111111111111e15',
        '41111111111111110e-1',
        '5552345678.0',
        '0.00000041111',
      ),
    );
    fc.assert(
      fc.property(fc.array(number, { minLength: 1, maxLength: 6 }), (numbers) => {
        const text = `[${numbers.join(',')}]`;
        const bytes = streamed(text, compiled, []);
        const expected = streamed(text, strings, []);
        assert.equal(bytes.text, expected.text);
        assert.equal(bytes.asText, expected.asText);
        assert.deepEqual(bytes.counts, expected.counts);
      }),
      { numRuns: 2000 },
    );
  });

  for (const [name, compiled] of plans) {
    // As the enforcer builds it: percent-encodings and character references read decoded too.
    const encoded = maskEncoded((text) => compiled.maskText(text), true);
    const enforcerPlan: MaskingPlan = {
      ...compiled,
      maskText: (text, column) => (column ? compiled.maskText(text, column) : encoded(text)),
    };
    it(`masks as the string path does, byte for byte: ${name}`, () => {
      for (const plan of [compiled, enforcerPlan]) {
        const strings: MaskingPlan = { ...plan, plainLabels: false };
        fc.assert(
          fc.property(body, fc.nat(), (text, cut) => {
            const cuts = [cut % (Buffer.byteLength(text) + 1)];
            const bytes = streamed(text, plan, [], cuts);
            const expected = streamed(text, strings, []);
            assert.equal(bytes.text, expected.text);
            assert.deepEqual(bytes.counts, expected.counts);
            assert.deepEqual(bytes.wouldMask, expected.wouldMask);
          }),
          { numRuns: 500 },
        );
      }
    });
  }
});
