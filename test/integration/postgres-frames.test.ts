// The framer and message codecs of the PostgreSQL enforcer, with property-based cases: the
// same bytes split anywhere parse the same, and no input crashes it or escapes its bound.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { RowWriter } from '../../sidecar/postgres/datarow.ts';
import { type Frame, FrameError, FrameReader } from '../../sidecar/postgres/frames.ts';
import {
  bind,
  decodeBind,
  decodeFields,
  decodeStartup,
  encodeDataRow,
  encodeFields,
  encodeStartup,
  rowsFromTag,
} from '../../sidecar/postgres/messages.ts';
import { filterOptions } from '../../sidecar/postgres/settings.ts';

const message = fc
  .record({ type: fc.integer({ min: 0x21, max: 0x7e }), body: fc.uint8Array({ maxLength: 200 }) })
  .map(({ type, body }) => {
    const b = Buffer.alloc(5 + body.length);
    b[0] = type;
    b.writeInt32BE(body.length + 4, 1);
    Buffer.from(body).copy(b, 5);
    return b;
  });

function readAll(reader: FrameReader, chunks: Buffer[]): Frame[] {
  const frames: Frame[] = [];
  for (const chunk of chunks) {
    reader.push(chunk);
    for (let f = reader.next(); f; f = reader.next())
      frames.push({ ...f, raw: Buffer.from(f.raw), body: Buffer.from(f.body) });
  }
  return frames;
}

function splitAt(bytes: Buffer, points: number[]): Buffer[] {
  const sorted = [...new Set(points.map((p) => p % (bytes.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let last = 0;
  for (const p of sorted) {
    chunks.push(bytes.subarray(last, p));
    last = p;
  }
  chunks.push(bytes.subarray(last));
  return chunks;
}

describe('FrameReader', () => {
  test('a sequence split at every single offset parses the same', () => {
    fc.assert(
      fc.property(fc.array(message, { minLength: 1, maxLength: 6 }), (messages) => {
        const bytes = Buffer.concat(messages);
        const whole = readAll(new FrameReader({ maxLength: 1 << 20 }), [bytes]);
        assert.equal(whole.length, messages.length);
        for (const [i, f] of whole.entries()) assert.deepEqual(f.raw, messages[i]);
        for (let offset = 0; offset <= bytes.length; offset++) {
          const split = readAll(new FrameReader({ maxLength: 1 << 20 }), [
            bytes.subarray(0, offset),
            bytes.subarray(offset),
          ]);
          assert.deepEqual(
            split.map((f) => f.raw),
            whole.map((f) => f.raw),
          );
        }
      }),
      { numRuns: 150 },
    );
  });

  test('random chunkings parse the same, startup phase included', () => {
    fc.assert(
      fc.property(
        fc.dictionary(
          fc.stringMatching(/^[a-z_]{1,12}$/),
          fc.string({ maxLength: 20 }).filter((s) => !s.includes('\0')),
        ),
        fc.array(message, { maxLength: 8 }),
        fc.array(fc.nat(), { maxLength: 30 }),
        (params, messages, points) => {
          const startup = encodeStartup(Object.entries(params));
          const bytes = Buffer.concat([startup, ...messages]);
          const reader = new FrameReader({ maxLength: 1 << 20, startup: true });
          const frames: Buffer[] = [];
          for (const chunk of splitAt(bytes, points)) {
            reader.push(chunk);
            for (let f = reader.next(); f; f = reader.next()) {
              frames.push(Buffer.from(f.raw));
              if (f.type === 0) {
                assert.deepEqual(Object.fromEntries(decodeStartup(f.body).parameters), { ...params });
                reader.startup = false;
              }
            }
          }
          assert.deepEqual(frames, [startup, ...messages]);
        },
      ),
    );
  });

  test('random bytes never crash it and never yield a frame beyond the bound', () => {
    const bound = 300;
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 2000 }),
        fc.array(fc.nat(), { maxLength: 20 }),
        fc.boolean(),
        (bytes, points, startup) => {
          const reader = new FrameReader({ maxLength: bound, startup });
          let consumed = 0;
          try {
            for (const chunk of splitAt(Buffer.from(bytes), points)) {
              reader.push(chunk);
              for (let f = reader.next(); f; f = reader.next()) {
                assert.ok(f.raw.length <= (startup ? 10_000 : bound + 1));
                consumed += f.raw.length;
                if (startup && f.body.length > 0) reader.startup = false;
              }
            }
          } catch (error) {
            assert.ok(error instanceof FrameError, String(error));
            assert.throws(() => reader.next(), FrameError, 'a failed reader stays failed');
            return;
          }
          assert.equal(consumed + reader.buffered, bytes.length);
        },
      ),
      { numRuns: 500 },
    );
  });

  test('the bound is exact and checked from the header alone', () => {
    const reader = new FrameReader({ maxLength: 100 });
    const ok = Buffer.alloc(101);
    ok[0] = 0x51;
    ok.writeInt32BE(100, 1);
    reader.push(ok);
    assert.equal(reader.next()?.raw.length, 101);
    const big = Buffer.from([0x51, 0, 0, 0, 101]);
    reader.push(big);
    assert.throws(() => reader.next(), { code: 'frame-too-large' });
    const short = new FrameReader({ maxLength: 100 });
    short.push(Buffer.from([0x51, 0, 0, 0, 3]));
    assert.throws(() => short.next(), { code: 'frame-invalid-length' });
  });

  test('a message within one chunk is returned without copying', () => {
    const bytes = Buffer.concat([Buffer.from([0x44, 0, 0, 0, 6, 0, 0]), Buffer.from([0x43, 0, 0, 0, 5, 0])]);
    const reader = new FrameReader({ maxLength: 100 });
    reader.push(bytes);
    const first = reader.next();
    assert.equal(first?.raw.buffer, bytes.buffer);
  });
});

describe('messages', () => {
  test('error fields round-trip', () => {
    fc.assert(
      fc.property(
        fc.dictionary(
          fc.constantFrom('S', 'V', 'C', 'M', 'D', 'H', 'P', 'W'),
          fc.string().filter((s) => !s.includes('\0')),
        ),
        (fields) => {
          const map = new Map(Object.entries(fields));
          const encoded = encodeFields('E', map);
          assert.deepEqual(decodeFields(encoded.subarray(5)), map);
        },
      ),
    );
  });

  test('Bind decodes portal, statement and result formats', () => {
    const b = bind('portal', 'stmt', ['a', null, 'ccc'], [1, 0]);
    assert.deepEqual(decodeBind(b.subarray(5)), {
      portal: 'portal',
      statement: 'stmt',
      resultFormats: [1, 0],
      parameterCount: 3,
    });
    assert.throws(() => decodeBind(b.subarray(5, 20)), { code: 'protocol-violation' });
  });

  test('rows from CommandComplete tags', () => {
    assert.equal(rowsFromTag('SELECT 3'), 3);
    assert.equal(rowsFromTag('INSERT 0 5'), 5);
    assert.equal(rowsFromTag('COPY 2'), 2);
    assert.equal(rowsFromTag('CREATE TABLE'), undefined);
  });

  test('startup options: settings kept, custom ones included; identity, superuser-only and other switches refused', () => {
    assert.deepEqual(filterOptions('-c statement_timeout=5s --geqo=off -capp.tenant=42 --my-ext.x=a'), {
      options: '-c statement_timeout=5s -c geqo=off -c app.tenant=42 -c my-ext.x=a',
    });
    assert.match(filterOptions('-c role=admin').refused ?? '', /set role: the session runs as/);
    assert.match(filterOptions('--session-authorization=admin').refused ?? '', /set session_authorization/);
    assert.match(filterOptions('-crole=admin').refused ?? '', /set role/);
    assert.match(filterOptions('-c log_statement=all').refused ?? '', /log_statement: only a superuser/);
    assert.match(
      filterOptions('-c Session_Replication_Role=replica').refused ?? '',
      /Session_Replication_Role/,
    );
    assert.match(filterOptions('-c geqo=on -X').refused ?? '', /not "-X"/);
    assert.match(filterOptions('-d 5').refused ?? '', /not "-d"/);
    assert.match(filterOptions('-c search_path=public,pg_catalog').refused ?? '', /before pg_catalog/);
    assert.match(filterOptions('-c search_path=evil,PG_CATALOG').refused ?? '', /before pg_catalog/);
    assert.equal(filterOptions('-c search_path=pg_catalog,public').refused, undefined);
    assert.equal(filterOptions('-c search_path=public').refused, undefined);
    assert.match(filterOptions('-c nameonly').refused ?? '', /not "-c"/);
    assert.deepEqual(filterOptions('-c search_path=a\\ b'), { options: '-c search_path=a\\ b' });
    assert.deepEqual(filterOptions('  '), { options: '' });
  });
});

describe('RowWriter', () => {
  test('rewritten rows decode to the original fields with the replacements', () => {
    const field = fc.option(fc.string({ maxLength: 40 }), { nil: null });
    fc.assert(
      fc.property(
        fc.array(fc.array(field, { maxLength: 8 }), { minLength: 1, maxLength: 20 }),
        fc.array(fc.tuple(fc.nat(), field), { maxLength: 6 }),
        (rows, replacements) => {
          const writer = new RowWriter();
          const views: Buffer[] = [];
          const expected: (string | null)[][] = [];
          for (const fields of rows) {
            const raw = encodeDataRow(fields.map((f) => (f === null ? null : Buffer.from(f))));
            // Pad around the row so offsets matter.
            const padded = Buffer.concat([Buffer.from('xyz'), raw, Buffer.from('w')]);
            const changes = new Map<number, string | null>();
            for (const [index, value] of replacements)
              if (fields.length > 0) changes.set(index % fields.length, value);
            const changedAt = [...changes.keys()].sort((a, b) => a - b);
            const changedTo = changedAt.map((i) => changes.get(i)!);
            views.push(writer.write(padded, 3, 3 + raw.length, changedAt, changedTo, changedAt.length));
            expected.push(fields.map((f, i) => (changes.has(i) ? changes.get(i)! : f)));
          }
          const reader = new FrameReader({ maxLength: 1 << 20 });
          reader.push(Buffer.concat(views));
          for (const want of expected) {
            const frame = reader.next();
            assert.equal(frame?.type, 0x44);
            const body = frame!.body;
            const got: (string | null)[] = [];
            let at = 2;
            for (let i = 0; i < body.readInt16BE(0); i++) {
              const length = body.readInt32BE(at);
              at += 4;
              got.push(length < 0 ? null : body.toString('utf8', at, at + length));
              if (length > 0) at += length;
            }
            assert.deepEqual(got, want);
          }
          assert.equal(reader.next(), undefined);
        },
      ),
    );
  });
});
