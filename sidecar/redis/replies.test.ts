import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RespError } from './commands-reader.ts';
import { decodeReply, encodeReply, ReplyScanner } from './replies.ts';

/** Every RESP2 and RESP3 reply type, nested, with an attribute and a push. */
const replies = [
  '+OK\r\n',
  '-ERR wrong\r\n',
  ':-42\r\n',
  '$5\r\nhe\r\nl\r\n',
  '$-1\r\n',
  '$0\r\n\r\n',
  '*-1\r\n',
  '*0\r\n',
  '*3\r\n$1\r\na\r\n*2\r\n:1\r\n$-1\r\n+x\r\n',
  '_\r\n',
  ',3.14\r\n',
  '#t\r\n',
  '!9\r\nSYNTAX no\r\n',
  '=15\r\ntxt:Some string\r\n',
  '(3492890328409238509324850943850943825024385\r\n',
  '%2\r\n+a\r\n:1\r\n$1\r\nb\r\n*1\r\n%0\r\n',
  '~2\r\n+a\r\n+b\r\n',
  '|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.19\r\n*2\r\n:1\r\n:2\r\n',
  '>3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n',
  '*2\r\n|1\r\n+ttl\r\n:3\r\n+v\r\n+after\r\n',
];
const stream = Buffer.from(replies.join(''), 'latin1');

/** The end offsets of the replies the scanner finds in the pieces, as offsets into their concatenation. */
function ends(pieces: Buffer[]): number[] {
  const scanner = new ReplyScanner();
  const found: number[] = [];
  let base = 0;
  for (const piece of pieces) {
    let at = 0;
    while (at < piece.length) {
      const end = scanner.scan(piece, at);
      if (end < 0) break;
      found.push(base + end);
      at = end;
    }
    base += piece.length;
  }
  return found;
}

describe('ReplyScanner', () => {
  const expected: number[] = [];
  for (const r of replies) expected.push((expected.at(-1) ?? 0) + r.length);

  it('finds every reply end whatever offset the stream is split at', () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      assert.deepEqual(ends([stream.subarray(0, cut), stream.subarray(cut)]), expected, `split at ${cut}`);
    }
  });

  it('finds every reply end fed one byte at a time', () => {
    assert.deepEqual(ends([...stream].map((b) => Buffer.from([b]))), expected);
  });

  it('passes a large bulk string through in pieces without holding it', () => {
    const scanner = new ReplyScanner();
    const size = 10 * 1024 * 1024;
    assert.equal(scanner.scan(Buffer.from(`$${size}\r\n`), 0), -1);
    const piece = Buffer.alloc(64 * 1024, 'x');
    for (let sent = 0; sent < size; sent += piece.length) assert.equal(scanner.scan(piece, 0), -1);
    assert.equal(scanner.scan(Buffer.from('\r\n+OK\r\n'), 0), 2);
  });

  for (const [what, bytes] of [
    ['an unknown type', '?1\r\n'],
    ['a bare LF', '+OK\n'],
    ['a streamed string', '$?\r\n;4\r\nHell\r\n;0\r\n'],
    ['a negative map', '%-1\r\n'],
  ] as const) {
    it(`refuses ${what}`, () => {
      assert.throws(() => new ReplyScanner().scan(Buffer.from(bytes), 0), RespError);
    });
  }
});

describe('decodeReply and encodeReply', () => {
  it('write back every reply byte for byte', () => {
    for (const text of replies) {
      const bytes = Buffer.from(text, 'latin1');
      const { reply, end } = decodeReply(bytes);
      assert.equal(end, bytes.length, text);
      assert.deepEqual(Buffer.concat(encodeReply(reply)), bytes, text);
    }
  });

  it('refuses a bulk string whose length lies', () => {
    assert.throws(() => decodeReply(Buffer.from('$2\r\nabc\r\n')), RespError);
  });
});
