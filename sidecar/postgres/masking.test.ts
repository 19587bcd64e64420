import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { policy } from '../policy/fixtures.ts';
import { compileMasking } from '../policy/masking.ts';
import { asciiValue } from '../policy/value-fixtures.ts';
import {
  type ColumnPlan,
  type Layout,
  type MaskTally,
  maskCopyRow,
  maskFields,
  maskFunctionResult,
  maskNotice,
  maskNotification,
  maskParameterStatus,
  planColumns,
  RowMasker,
  rowDetailWithheld,
} from './masking.ts';
import {
  type ColumnDescription,
  decodeFields,
  decodeNotification,
  decodeParameterStatus,
  encodeCopyData,
  encodeDataRow,
  encodeFields,
  notificationResponse,
  ProtocolViolation,
  parameterStatus,
} from './messages.ts';
import type { ColumnMask, Masker, MaskResult } from './policy.ts';

const ssnRule: ColumnMask = {
  strategy: 'redact',
  policy: 'p',
  rule: 'pii',
  glob: 'public.people.ssn',
  key: 'pii/public.people.ssn',
  audit: false,
  wouldMask: [],
};

/** A masker whose detector finds the word "secret"; the column rule covers public.people.ssn. */
function wordMasker(overrides: Partial<Masker> = {}): Masker {
  return {
    scans: true,
    columns: true,
    columnsEnforced: true,
    minScanLength: 3,
    columnRule: (ref) => (ref.column === 'ssn' ? ssnRule : undefined),
    mayFind: () => true,
    mask(value, column): MaskResult {
      if (column) {
        if (column.audit) return { value, counts: {}, wouldMask: { [column.key]: 1 } };
        return { value: '[ssn]', counts: { [column.key]: 1 }, wouldMask: {} };
      }
      let found = 0;
      const masked = value.replaceAll('secret', () => {
        found++;
        return '[word]';
      });
      return { value: masked, counts: found > 0 ? { 'words/secret': found } : {}, wouldMask: {} };
    },
    ...overrides,
  };
}

function column(typeOid: number, format = 0, tableOid = 0, attnum = 0): ColumnDescription {
  return { name: 'c', tableOid, attnum, typeOid, format };
}

const text = (...values: (string | null)[]) =>
  encodeDataRow(values.map((v) => (v === null ? null : Buffer.from(v, 'utf8'))));

/** The fields of a DataRow, as UTF-8 text (null for NULL). */
function fieldsOf(row: Buffer): (string | null)[] {
  const values: (string | null)[] = [];
  let at = 7;
  for (let i = 0; i < row.readInt16BE(5); i++) {
    const length = row.readInt32BE(at);
    at += 4;
    values.push(length < 0 ? null : row.toString('utf8', at, at + length));
    if (length > 0) at += length;
  }
  assert.equal(row.readInt32BE(1), row.length - 1, 'the length word counts the rewritten row');
  return values;
}

function maskOne(masker: Masker, row: Buffer, layout: Layout | undefined, tally?: MaskTally): Buffer {
  return new RowMasker(masker).maskRow(row, 0, row.length, layout, tally) ?? row;
}

describe('planColumns', () => {
  const masker = wordMasker();
  const refs = (oid: number, attnum: number) =>
    oid === 700 && attnum === 2 ? [{ schema: 'public', table: 'people', column: 'ssn' }] : [];

  it('a column rule masks by the column the server names; other columns by what their type holds', () => {
    const layout = planColumns(
      masker,
      [
        column(25, 0, 700, 2),
        column(25),
        column(23, 1),
        column(2277, 1),
        column(17),
        column(20, 1),
        column(20, 0),
        column(3802, 1),
      ],
      refs,
    );
    assert.deepEqual(
      layout.map((p) => [p.action, p.held, p.rule?.key]),
      [
        ['mask', undefined, 'pii/public.people.ssn'],
        ['text', undefined, undefined],
        ['skip', undefined, undefined],
        ['lossy', undefined, undefined],
        ['text', 'bytea', undefined],
        ['text', 'int8', undefined],
        ['text', undefined, undefined],
        ['text', undefined, undefined],
      ],
    );
    assert.equal(layout[7]!.jsonb, true);
  });

  it('without scanners only ruled columns are read; a result column of no table is never looked up', () => {
    const looked: number[] = [];
    const layout = planColumns(
      wordMasker({ scans: false }),
      [column(25, 0, 700, 2), column(25)],
      (oid, n) => {
        looked.push(oid);
        return refs(oid, n);
      },
    );
    assert.deepEqual(
      layout.map((p) => p.action),
      ['mask', 'skip'],
    );
    assert.deepEqual(looked, [700]);
  });
});

describe('RowMasker', () => {
  const masker = wordMasker();
  const textLayout = (n: number): Layout =>
    planColumns(
      masker,
      Array.from({ length: n }, () => column(25)),
      () => [],
    );

  it('masks each value and counts it; an unchanged row is not rewritten', () => {
    const tally: MaskTally = {};
    const row = text('a secret', null, 'plain', 'secret secret');
    const masked = maskOne(masker, row, textLayout(4), tally);
    assert.deepEqual(fieldsOf(masked), ['a [word]', null, 'plain', '[word] [word]']);
    assert.deepEqual(tally, { masked: { 'words/secret': 3 } });
    const plain = text('nothing', 'here');
    assert.equal(new RowMasker(masker).maskRow(plain, 0, plain.length, textLayout(2), tally), undefined);
  });

  it('a DataRow of random values masks as each value masked alone (ASCII or not, text or not)', () => {
    const value = fc.oneof(
      fc.constant(null),
      fc
        .array(
          fc.oneof(fc.constant('secret'), fc.string({ maxLength: 6 }), fc.constantFrom('é', '€', '😀')),
          {
            maxLength: 5,
          },
        )
        .map((parts) => parts.join('')),
    );
    const columns = fc.array(fc.record({ value, textual: fc.boolean() }), { maxLength: 8 });
    fc.assert(
      fc.property(columns, (cells) => {
        const row = text(...cells.map((c) => c.value));
        const layout = planColumns(
          masker,
          cells.map((c) => column(c.textual ? 25 : 23)),
          () => [],
        );
        const tally: MaskTally = {};
        const expectedCounts: Record<string, number> = {};
        const expected = cells.map((c) => {
          if (c.value === null) return null;
          const result = masker.mask(c.value);
          for (const [key, n] of Object.entries(result.counts))
            expectedCounts[key] = (expectedCounts[key] ?? 0) + n;
          if (result.value === c.value) return c.value;
          // Masked text in a column of another type would not decode: NULL.
          return c.textual ? result.value : null;
        });
        assert.deepEqual(fieldsOf(maskOne(masker, row, layout, tally)), expected);
        assert.deepEqual(tally.masked ?? {}, expectedCounts);
      }),
    );
  });

  it('a run of rows in one chunk masks as each row alone; unchanged spans stay views of the chunk', () => {
    const rows = fc.array(
      fc.array(fc.oneof(fc.constant(null), fc.constantFrom('secret', 'x', 'no', 'a secret b', 'ü secret')), {
        minLength: 2,
        maxLength: 2,
      }),
      { minLength: 1, maxLength: 12 },
    );
    fc.assert(
      fc.property(rows, fc.nat(16), fc.nat(16), (values, before, after) => {
        const encoded = values.map((v) => text(...v));
        const chunk = Buffer.concat([Buffer.alloc(before, 0x41), ...encoded, Buffer.alloc(after, 0x41)]);
        const end = chunk.length - after;
        const out: Buffer[] = [];
        const rowMasker = new RowMasker(masker);
        rowMasker.maskRun(chunk, before, end, textLayout(2), undefined, out);
        const expected = Buffer.concat(encoded.map((row) => maskOne(masker, row, textLayout(2))));
        assert.deepEqual(Buffer.concat(out), expected);
        for (const piece of out) {
          if (piece.buffer !== chunk.buffer) continue;
          assert.ok(
            piece.byteOffset >= chunk.byteOffset + before &&
              piece.byteOffset + piece.length <= chunk.byteOffset + end,
          );
        }
      }),
    );
  });

  it('a row whose fields do not fit its message is refused, wherever it is cut', () => {
    const row = fc.array(fc.oneof(fc.constant(null), fc.string()), { maxLength: 5 }).map((v) => text(...v));
    fc.assert(
      fc.property(
        row.chain((r) => fc.tuple(fc.constant(r), fc.nat(r.length - 1))),
        ([raw, cut]) => {
          assert.throws(
            () => new RowMasker(masker).maskRow(raw, 0, cut, undefined, undefined),
            (error: unknown) =>
              error instanceof ProtocolViolation &&
              /^DataRow (shorter than its (header|fields)|field beyond the message)$/.test(error.message),
          );
        },
      ),
    );
    const overrun = text('abcdef');
    overrun.writeInt32BE(100, 7);
    assert.throws(() => maskOne(masker, overrun, textLayout(1)), /DataRow field beyond the message/);
  });

  it('a column rule on a binary value of another type makes it NULL; an audit rule leaves it and counts', () => {
    const ruled: ColumnPlan = {
      action: 'mask',
      textual: false,
      binary: true,
      jsonb: false,
      json: false,
      rule: ssnRule,
    };
    const row = encodeDataRow([Buffer.from([0, 0, 0, 42])]);
    const tally: MaskTally = {};
    assert.deepEqual(fieldsOf(maskOne(masker, row, [ruled], tally)), [null]);
    assert.deepEqual(tally, { masked: { 'pii/public.people.ssn': 1 } });
    const audit: ColumnPlan = { ...ruled, rule: { ...ssnRule, audit: true } };
    const audited: MaskTally = {};
    assert.equal(maskOne(masker, row, [audit], audited), row);
    assert.deepEqual(audited, { wouldMask: { 'pii/public.people.ssn': 1 } });
  });

  it('binary jsonb keeps its version byte; a value without a layout becomes NULL when anything is found', () => {
    const layout = planColumns(masker, [column(3802, 1)], () => []);
    const jsonb = encodeDataRow([Buffer.concat([Buffer.from([1]), Buffer.from('{"a":"secret"}')])]);
    assert.deepEqual(fieldsOf(maskOne(masker, jsonb, layout)), ['\u0001{"a":"[word]"}']);
    assert.deepEqual(fieldsOf(maskOne(masker, text('a secret', 'plain'), undefined)), [null, 'plain']);
  });

  it('a bytea stays a bytea of its masked bytes, in the output format it came in', () => {
    const layout = planColumns(masker, [column(17), column(17)], () => []);
    const hex = `\\x${Buffer.from('my secret').toString('hex')}`;
    const masked = fieldsOf(maskOne(masker, text(hex, '\\001secret'), layout));
    assert.deepEqual(masked, [`\\x${Buffer.from('my [word]').toString('hex')}`, '\\001[word]']);
  });

  it('works with the policies’ own masker: a detector in free text, a column rule by name', () => {
    const plan = compileMasking([
      policy({
        name: 'p',
        masking: [
          { name: 'pii', columns: ['public.people.ssn'], strategy: 'redact', indirectUse: 'deny' },
          { name: 'free', detectors: ['email'], strategy: 'redact', indirectUse: 'deny' },
        ],
      }),
    ]);
    const real: Masker = {
      scans: plan.hasScanners,
      columns: plan.hasColumns,
      columnsEnforced: plan.hasColumns,
      minScanLength: 1,
      columnRule: (ref) => plan.columnRule(ref),
      mask: plan.maskText,
      mayFind: plan.mayFind,
    };
    const layout = planColumns(real, [column(25, 0, 9, 1), column(25)], () => [
      { schema: 'public', table: 'people', column: 'ssn' },
    ]);
    const tally: MaskTally = {};
    const [ssn, note] = fieldsOf(maskOne(real, text('123-45-6789', 'write to a@example.com'), layout, tally));
    assert.notEqual(ssn, '123-45-6789');
    assert.equal(note, 'write to [REDACTED:email]');
    assert.deepEqual(Object.keys(tally.masked ?? {}).sort(), ['free/email', 'pii/public.people.ssn']);
  });
});

describe('RowMasker on ASCII rows', () => {
  const plan = compileMasking([
    policy({
      name: 'p',
      masking: [
        {
          name: 'pii',
          detectors: ['email', 'credit-card', 'phone'],
          strategy: 'partial',
          indirectUse: 'deny',
        },
        { name: 'ids', detectors: ['us-ssn', 'iban', 'jwt'], strategy: 'redact', indirectUse: 'deny' },
      ],
    }),
    policy({
      name: 'q',
      mode: 'audit',
      masking: [{ name: 'seen', detectors: ['email', 'ipv4'], strategy: 'redact', indirectUse: 'deny' }],
    }),
  ]);
  const bytes: Masker = {
    scans: plan.hasScanners,
    columns: plan.hasColumns,
    columnsEnforced: plan.hasColumns,
    minScanLength: 1,
    columnRule: (ref) => plan.columnRule(ref),
    mask: plan.maskText,
    mayFind: plan.mayFind,
    maskAscii: plan.maskAscii,
  };
  const strings: Masker = { ...bytes, maskAscii: undefined };

  it('masks as bytes to what the string path gives: text, other types, binary jsonb, non-ASCII rows', () => {
    // Text, int4 as text, binary jsonb (a version byte first), a column without a description.
    const kinds = [column(25), column(23), column(3802, 1), undefined];
    const cell = fc.record({
      kind: fc.nat(kinds.length - 1),
      value: fc.oneof(
        fc.constant(null),
        asciiValue,
        asciiValue.map((v) => `${v} é`),
      ),
    });
    const rows = fc.array(fc.array(cell, { minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 6 });
    fc.assert(
      fc.property(rows, (cells) => {
        // One layout for the result: the first row's columns.
        const shape = cells[0]!.map((c) => c.kind);
        const layoutOf = (masker: Masker) =>
          planColumns(
            masker,
            shape.map((k) => kinds[k] ?? column(2277, 1)),
            () => [],
          );
        const encoded = cells.map((row) =>
          encodeDataRow(
            shape.map((k, i) => {
              const v = row[i]?.value ?? null;
              if (v === null) return null;
              return kinds[k]?.typeOid === 3802 ? Buffer.from(`\u0001${v}`, 'utf8') : Buffer.from(v, 'utf8');
            }),
          ),
        );
        const chunk = Buffer.concat(encoded);
        const run = (masker: Masker) => {
          const out: Buffer[] = [];
          const tally: MaskTally = {};
          const rowMasker = new RowMasker(masker);
          rowMasker.batch();
          rowMasker.maskRun(chunk, 0, chunk.length, layoutOf(masker), tally, out);
          return { bytes: Buffer.concat(out), tally };
        };
        const got = run(bytes);
        const expected = run(strings);
        assert.deepEqual(got.bytes, expected.bytes);
        assert.deepEqual(got.tally, expected.tally);
      }),
      { numRuns: 1000 },
    );
  });
});

describe('other server messages', () => {
  const masker = wordMasker();

  it('COPY text rows are scanned per field, CSV rows per line; an unchanged row is the same message', () => {
    const tally: MaskTally = {};
    const row = encodeCopyData(Buffer.from('1\ta secret\tx\n'));
    assert.equal(maskCopyRow(masker, row, false, tally).toString('utf8', 5), '1\ta [word]\tx\n');
    assert.deepEqual(tally, { masked: { 'words/secret': 1 } });
    const csv = encodeCopyData(Buffer.from('1,"secret,secret"\n'));
    assert.equal(maskCopyRow(masker, csv, true, undefined).toString('utf8', 5), '1,"[word],[word]"\n');
    const plain = encodeCopyData(Buffer.from('1\tplain\n'));
    assert.equal(maskCopyRow(masker, plain, false, undefined), plain);
    assert.equal(maskCopyRow(wordMasker({ scans: false }), row, false, undefined), row);
  });

  it('a FunctionCallResponse with anything found becomes a NULL result', () => {
    const value = Buffer.from('secret');
    const response = Buffer.concat([
      Buffer.from([0x56, 0, 0, 0, 8 + value.length, 0, 0, 0, value.length]),
      value,
    ]);
    assert.deepEqual([...maskFunctionResult(masker, response)], [0x56, 0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff]);
    const plain = Buffer.from([0x56, 0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff]);
    assert.equal(maskFunctionResult(masker, plain), plain);
  });

  it("an integrity violation's detail is withheld under enforced column rules, scanned otherwise", () => {
    const violation = () =>
      new Map([
        ['S', 'ERROR'],
        ['C', '23502'],
        ['M', 'null value in column "name" violates not-null constraint'],
        ['D', 'Failing row contains (1, null, ssn-1, secret).'],
      ]);
    assert.equal(maskFields(masker, violation()).get('D'), rowDetailWithheld);
    assert.equal(
      maskFields(wordMasker({ columnsEnforced: false }), violation()).get('D'),
      'Failing row contains (1, null, ssn-1, [word]).',
    );
    const other = violation().set('C', '22P02');
    assert.equal(maskFields(masker, other).get('D'), 'Failing row contains (1, null, ssn-1, [word]).');
  });

  it('notifications and reported settings: channel, payload and value are masked', () => {
    const note = notificationResponse(42, 'secret-channel', 'payload secret');
    assert.deepEqual(decodeNotification(maskNotification(masker, note).subarray(5)), {
      pid: 42,
      channel: '[word]-channel',
      payload: 'payload [word]',
    });
    const plain = notificationResponse(42, 'news', 'hello');
    assert.equal(maskNotification(masker, plain), plain);
    assert.equal(maskNotification(undefined, note), note);
    const status = parameterStatus('application_name', 'secret');
    assert.deepEqual(decodeParameterStatus(maskParameterStatus(masker, status).subarray(5)), [
      'application_name',
      '[word]',
    ]);
    assert.equal(maskParameterStatus(undefined, status), status);
  });

  it('notices and errors: the text fields are masked, codes and positions are not', () => {
    const fields = new Map([
      ['S', 'NOTICE'],
      ['C', '00000'],
      ['M', 'value secret'],
      ['D', 'secret'],
      ['H', 'secret'],
      ['W', 'secret'],
      ['q', 'secret'],
      ['P', '7'],
    ]);
    const notice = maskNotice(masker, encodeFields('N', new Map(fields)));
    assert.deepEqual(
      [...decodeFields(notice.subarray(5))],
      [
        ['S', 'NOTICE'],
        ['C', '00000'],
        ['M', 'value [word]'],
        ['D', '[word]'],
        ['H', '[word]'],
        ['W', '[word]'],
        ['q', '[word]'],
        ['P', '7'],
      ],
    );
    assert.equal(maskFields(undefined, fields).get('M'), 'value secret');
    const raised = new Map([
      ['S', 'NOTICE'],
      ['C', '00000'],
      ['M', 'noted'],
      ['c', 'secret'],
      ['t', 'secret'],
      ['n', 'secret'],
      ['d', 'secret'],
      ['s', 'secret'],
    ]);
    assert.deepEqual(
      [...maskFields(masker, raised).values()],
      ['NOTICE', '00000', 'noted', '[word]', '[word]', '[word]', '[word]', '[word]'],
    );
    const raw = encodeFields('N', fields);
    assert.equal(maskNotice(undefined, raw), raw);
  });
});

describe('values a client reads decoded', () => {
  const plan = compileMasking([
    policy({
      name: 'p',
      masking: [
        {
          name: 'pii',
          detectors: ['email', 'credit-card', 'us-ssn'],
          strategy: 'redact',
          indirectUse: 'deny',
        },
      ],
    }),
  ]);
  const real: Masker = {
    scans: true,
    columns: false,
    columnsEnforced: false,
    minScanLength: 6,
    columnRule: () => undefined,
    mask: plan.maskText,
    mayFind: plan.mayFind,
    maskAscii: plan.maskAscii,
  };
  const secrets = ['4111111111111111', '078-05-1120', 'ada@example.com', 'ada\\u0040example.com'];

  it('json and jsonb: a finding after an escape that ends in a digit, or written with escapes, is masked', () => {
    // The server writes control characters as \u0001…\u001f: their last digit runs into a card
    // or SSN that follows, read as it is.
    const document =
      '{"c": "\\u00014111111111111111", "s": "\\u0009078-05-1120", "e": "ada\\u0040example.com", ' +
      '"\\u0019078-05-1120": [1, "x\\u0002"], "plain": "ada@example.com"}';
    for (const [typeOid, format] of [
      [3802, 0],
      [3802, 1],
      [114, 0],
      [114, 1],
    ] as const) {
      const layout = planColumns(real, [column(typeOid, format)], () => []);
      const value = format === 1 && typeOid === 3802 ? `\u0001${document}` : document;
      const tally: MaskTally = {};
      const [masked] = fieldsOf(maskOne(real, text(value), layout, tally));
      const json = masked!.slice(value.length - document.length);
      for (const secret of secrets) assert.ok(!json.includes(secret), `${typeOid}/${format}: ${json}`);
      assert.deepEqual(JSON.parse(json), {
        c: '\u0001[REDACTED:credit-card]',
        s: '\t[REDACTED:us-ssn]',
        e: '[REDACTED:email]',
        '\u0019[REDACTED:us-ssn]': [1, 'x\u0002'],
        plain: '[REDACTED:email]',
      });
      assert.deepEqual(tally.masked, { 'pii/credit-card': 1, 'pii/us-ssn': 2, 'pii/email': 2 });
    }
    // Without a finding the value is the same bytes.
    const layout = planColumns(real, [column(3802)], () => []);
    const clean = text('{"a": "\\u0001x", "b": "\\"quoted\\""}');
    assert.equal(maskOne(real, clean, layout), clean);
  });

  /** A binary one-dimensional array of text. */
  function textArray(elements: string[]): Buffer {
    const header = Buffer.alloc(20);
    header.writeInt32BE(1, 0);
    header.writeInt32BE(25, 8);
    header.writeInt32BE(elements.length, 12);
    header.writeInt32BE(1, 16);
    return Buffer.concat([
      header,
      ...elements.map((e) => {
        const length = Buffer.alloc(4);
        length.writeInt32BE(Buffer.byteLength(e));
        return Buffer.concat([length, Buffer.from(e)]);
      }),
    ]);
  }

  it('binary arrays and records: an element’s length, read with it, does not hide what it starts with', () => {
    // An element of 48 to 57 bytes has a length whose last byte is an ASCII digit ('0' to '9').
    const layout = planColumns(real, [column(1009, 1), column(2249, 1)], () => []);
    for (const secret of ['4111111111111111', '078-05-1120'])
      for (let length = 48; length <= 57; length++) {
        const element = secret + ' '.repeat(length - secret.length);
        const array = textArray(['x', element]);
        const field = Buffer.alloc(8);
        field.writeInt32BE(25, 0);
        field.writeInt32BE(length, 4);
        const record = Buffer.concat([Buffer.from([0, 0, 0, 1]), field, Buffer.from(element)]);
        const tally: MaskTally = {};
        const row = encodeDataRow([array, record]);
        assert.deepEqual(
          fieldsOf(maskOne(real, row, layout, tally)),
          [null, null],
          `${secret} in ${length} bytes`,
        );
        assert.equal(
          Object.values(tally.masked ?? {}).reduce((a, b) => a + b, 0),
          2,
        );
        // An array of arrays: the inner one's elements are read too.
        const nested = encodeDataRow([textArray([textArray([element]).toString('latin1')]), record]);
        assert.equal(fieldsOf(maskOne(real, nested, layout))[0], null);
      }
    const clean = encodeDataRow([textArray(['x'.repeat(48), 'y']), Buffer.from([0, 0, 0, 0])]);
    assert.equal(maskOne(real, clean, layout), clean);
  });

  it('arrays of json: an element’s escapes do not hide a finding, in text or binary format', () => {
    const element = '{"c": "\\u00014111111111111111"}';
    const layout = planColumns(real, [column(3807), column(199), column(3807, 1)], () => []);
    // Text format quotes each element, a backslash doubled: {"{\"c\": \"\\u0001…\"}"}.
    const quoted = `{"${element.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"}`;
    const binary = textArray([`\u0001${element}`]);
    const row = encodeDataRow([Buffer.from(quoted), Buffer.from(quoted), binary]);
    const tally: MaskTally = {};
    assert.deepEqual(fieldsOf(maskOne(real, row, layout, tally)), [null, null, null]);
    assert.deepEqual(tally.masked, { 'pii/credit-card': 3 });
    const clean = encodeDataRow([
      Buffer.from('{"{\\"c\\": \\"\\\\u0001x\\"}"}'),
      null,
      textArray(['\u0001{}']),
    ]);
    assert.equal(maskOne(real, clean, layout), clean);
  });

  it('COPY text: a json field’s escapes (written \\\\u0001 by COPY) do not hide a finding', () => {
    const line = '1\t{"c": "\\\\u00014111111111111111", "t": "a\\tb", "q": "\\\\"x\\\\""}\tplain\n';
    const tally: MaskTally = {};
    const masked = maskCopyRow(real, encodeCopyData(Buffer.from(line)), false, tally).toString('utf8', 5);
    assert.equal(
      masked,
      '1\t{"c": "\\\\u0001[REDACTED:credit-card]", "t": "a\\tb", "q": "\\\\"x\\\\""}\tplain\n',
    );
    assert.deepEqual(tally.masked, { 'pii/credit-card': 1 });
    const clean = encodeCopyData(Buffer.from('1\t{"c": "\\\\u0001x"}\n'));
    assert.equal(maskCopyRow(real, clean, false, undefined), clean);
  });

  it('COPY CSV: a json field’s escapes do not hide a finding either', () => {
    const line = '1,"{""c"": ""\\u00014111111111111111"", ""e"": ""ada\\u0040example.com""}",plain\n';
    const tally: MaskTally = {};
    const masked = maskCopyRow(real, encodeCopyData(Buffer.from(line)), true, tally).toString('utf8', 5);
    for (const secret of secrets) assert.ok(!masked.includes(secret), masked);
    assert.match(masked, /^1,"\{""c"": ""\\u0001\[REDACTED:credit-card\].*,plain\n$/s);
    assert.deepEqual(tally.masked, { 'pii/credit-card': 1, 'pii/email': 1 });
    const clean = encodeCopyData(Buffer.from('1,"{""c"": ""\\u0001x""}"\n'));
    assert.equal(maskCopyRow(real, clean, true, undefined), clean);
  });
});
