import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  acceptKey,
  FrameError,
  FrameReader,
  frame,
  maxMessageBytes,
  opcodes,
  validKey,
} from './websocket.ts';

/** A client's frame with a chosen first byte and key. */
function clientFrame(first: number, payload: Buffer, key = Buffer.from([9, 8, 7, 6])): Buffer {
  const body = Buffer.from(payload.map((b, i) => b ^ key[i & 3]!));
  const length =
    payload.length < 126
      ? Buffer.from([0x80 | payload.length])
      : Buffer.from([0x80 | 126, payload.length >> 8, payload.length & 0xff]);
  return Buffer.concat([Buffer.from([first]), length, key, body]);
}

describe('WebSocket frames', () => {
  it("answers a client's key as RFC 6455's example does", () => {
    assert.equal(acceptKey('dGhlIHNhbXBsZSBub25jZQ=='), 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
    assert.ok(validKey('dGhlIHNhbXBsZSBub25jZQ=='));
    for (const key of [undefined, '', 'short', 'dGhlIHNhbXBsZSBub25jZQ', 'dGhlIHNhbXBsZSBub25jZQ==x'])
      assert.ok(!validKey(key), String(key));
  });

  it('reads what it writes, masked or not, at every length boundary', () => {
    for (const length of [0, 1, 125, 126, 127, 65535, 65536, 70000]) {
      const payload = Buffer.alloc(length, 7);
      for (const mask of [true, false]) {
        const [message] = new FrameReader(mask).push(frame(opcodes.binary, payload, mask));
        assert.equal(message?.opcode, opcodes.binary);
        assert.ok(message?.payload.equals(payload), `${length} ${mask}`);
      }
    }
  });

  it('reassembles fragments around a ping, however the bytes are split', () => {
    const bytes = Buffer.concat([
      clientFrame(0x02, Buffer.from([0, 0x61, 0x62])),
      clientFrame(0x89, Buffer.from('ping')),
      clientFrame(0x00, Buffer.from('cd')),
      clientFrame(0x80, Buffer.from('ef')),
      clientFrame(0x82, Buffer.from([4, 0x7b, 0x7d])),
    ]);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: bytes.length }), { maxLength: 8 }), (cuts) => {
        const reader = new FrameReader(true);
        const at = [0, ...cuts.sort((a, b) => a - b), bytes.length];
        const messages = at.slice(1).flatMap((end, i) => reader.push(bytes.subarray(at[i]!, end)));
        assert.deepEqual(
          messages.map((m) => [m.opcode, m.payload.toString('latin1')]),
          [
            [opcodes.ping, 'ping'],
            [opcodes.binary, '\x00abcdef'],
            [opcodes.binary, '\x04{}'],
          ],
        );
      }),
    );
  });

  it('refuses what breaks the framing rules', () => {
    const refused: [string, Buffer, boolean][] = [
      ['unmasked client frame', Buffer.from([0x82, 0x01, 0x00]), true],
      ['masked server frame', clientFrame(0x82, Buffer.from([1])), false],
      ['reserved bit 1 (compression)', clientFrame(0xc2, Buffer.from([0])), true],
      ['reserved bit 2', clientFrame(0xa2, Buffer.from([0])), true],
      ['reserved bit 3', clientFrame(0x92, Buffer.from([0])), true],
      ['unknown opcode', clientFrame(0x83, Buffer.from([0])), true],
      ['fragmented ping', clientFrame(0x09, Buffer.from('p')), true],
      ['long ping', clientFrame(0x89, Buffer.alloc(126)), true],
      ['one-byte close', clientFrame(0x88, Buffer.from([3])), true],
      ['orphan continuation', clientFrame(0x80, Buffer.from('x')), true],
      [
        'message inside a fragmented one',
        Buffer.concat([clientFrame(0x02, Buffer.from([0])), clientFrame(0x82, Buffer.from([0]))]),
        true,
      ],
      [
        'oversized length',
        Buffer.concat([Buffer.from([0x82, 0xff]), Buffer.from([0, 0, 0, 0, 0x10, 0, 0, 1]), Buffer.alloc(4)]),
        true,
      ],
      ['length past 2^63', Buffer.from([0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0]), true],
    ];
    for (const [name, bytes, masked] of refused)
      assert.throws(() => new FrameReader(masked).push(bytes), FrameError, name);
  });

  it('refuses a fragmented message past the limit before it is whole', () => {
    const reader = new FrameReader(false);
    const piece = Buffer.alloc(1024 * 1024);
    reader.push(frame(opcodes.binary, piece, false).fill(0x02, 0, 1));
    assert.throws(() => {
      for (let i = 0; i <= maxMessageBytes / piece.length; i++)
        reader.push(Buffer.concat([Buffer.from([0x00]), frame(opcodes.binary, piece, false).subarray(1)]));
    }, /larger than the limit/);
  });
});
