import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  type ClientCommand,
  CommandReader,
  encodeCommand,
  RespError,
  splitInline,
} from './commands-reader.ts';

/** Every command the reader returns when fed `bytes` in the given pieces. */
function readAll(pieces: Buffer[], maxBytes = 1024 * 1024): ClientCommand[] {
  const reader = new CommandReader(maxBytes);
  const commands: ClientCommand[] = [];
  for (const piece of pieces) {
    reader.push(piece);
    for (let command = reader.next(); command; command = reader.next()) commands.push(command);
  }
  return commands;
}

const argvOf = (commands: ClientCommand[]) => commands.map((c) => c.argv.map((a) => a.toString('latin1')));

describe('CommandReader', () => {
  const stream = Buffer.concat([
    encodeCommand(['SET', 'key', 'value with\r\nCRLF and \u0000 NUL']),
    Buffer.from('PING\r\n'),
    encodeCommand(['GET', '']),
    Buffer.from('set "a b" \'c\\\'d\' "\\x41\\n"\n'),
    encodeCommand(['MSET', 'k1', 'x'.repeat(3000), 'k2', 'y']),
  ]);
  const expected = [
    ['SET', 'key', 'value with\r\nCRLF and \u0000 NUL'],
    ['PING'],
    ['GET', ''],
    ['set', 'a b', "c'd", 'A\n'],
    ['MSET', 'k1', 'x'.repeat(3000), 'k2', 'y'],
  ];

  it('reads the same commands whatever offset the stream is split at', () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      const commands = readAll([stream.subarray(0, cut), stream.subarray(cut)]);
      assert.deepEqual(argvOf(commands), expected, `split at ${cut}`);
    }
  });

  it('reads the same commands fed one byte at a time', () => {
    const bytes = [...stream].map((b) => Buffer.from([b]));
    assert.deepEqual(argvOf(readAll(bytes)), expected);
  });

  it('keeps the raw bytes of multibulk commands and none of inline ones', () => {
    const commands = readAll([stream]);
    assert.deepEqual(commands[0]!.raw, encodeCommand(expected[0]!));
    assert.equal(commands[1]!.raw, undefined);
    assert.equal(
      commands.reduce((n, c) => n + c.size, 0),
      stream.length,
    );
  });

  it('skips empty lines and empty multibulks, as Redis does', () => {
    assert.deepEqual(argvOf(readAll([Buffer.from('\r\n*0\r\nPING\r\n')])), [['PING']]);
  });

  for (const [what, bytes] of [
    ['a bulk string without $', '*1\r\n:3\r\n'],
    ['a negative bulk length', '*1\r\n$-1\r\n'],
    ['a leading zero', '*1\r\n$03\r\nGET\r\n'],
    ['a sign', '*+1\r\n$3\r\nGET\r\n'],
    ['a length that lies', '*1\r\n$2\r\nGET\r\n'],
    ['a bare LF in a header', '*1\n$3\r\nGET\r\n'],
    ['an unbalanced quote', 'GET "a\r\n'],
    ['a quote glued to a word', 'GET "a"b\r\n'],
    ['a NUL in an inline command', 'GET a\u0000 FLUSHALL\r\n'],
    ['a huge multibulk count', '*99999999\r\n'],
  ] as const) {
    it(`refuses ${what}`, () => {
      assert.throws(() => readAll([Buffer.from(bytes, 'latin1')]), RespError);
    });
  }

  it('refuses a command past the bound before it is buffered whole', () => {
    const reader = new CommandReader(1000);
    reader.push(Buffer.from('*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5000\r\n'));
    assert.throws(() => reader.next(), /larger than 1000 bytes/);
  });

  it('refuses an inline line past 64 KiB', () => {
    assert.throws(() => readAll([Buffer.from('x'.repeat(70 * 1024))]), /too big inline request/);
  });
});

describe('splitInline', () => {
  it('splits as sdssplitargs does', () => {
    const split = (line: string) =>
      splitInline(Buffer.from(line, 'latin1'))?.map((a) => a.toString('latin1'));
    assert.deepEqual(split('  get   key  '), ['get', 'key']);
    assert.deepEqual(split('set k "a\\tb\\x7a\\\\"'), ['set', 'k', 'a\tbz\\']);
    assert.deepEqual(split("set k 'it\\'s'"), ['set', 'k', "it's"]);
    assert.deepEqual(split('set k""'), ['set', 'k']);
    assert.deepEqual(split('a"b c"'), ['ab c']);
    assert.equal(split('set "k'), undefined);
  });
});
