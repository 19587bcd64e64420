import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { constants, deflateSync, inflateSync } from 'node:zlib';
import {
  controlFrame,
  dataFrame,
  dictionary,
  HeaderDeflater,
  HeaderInflater,
  SpdyError,
  SpdyFrameReader,
} from './spdy.ts';

/** SYN_STREAMs for error, stdin and stdout as kubectl's SPDY framer writes them. */
const kubectlSyns = Buffer.from(
  '80030001000000290000000100000000000078f9e3c6a7c26260606004a7b392a2d4c45c6851c29a0a0a6800000000ffff' +
    '800300010000001700000003000000000000c22e555c92929907000000ffff' +
    '800300010000001900000005000000000000c22ac5565c92925f5a02000000ffff',
  'hex',
);

function headerBlock(headers: [string, string][]): Buffer {
  const u32 = (n: number) => Buffer.from([n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff]);
  return Buffer.concat([
    u32(headers.length),
    ...headers.flatMap(([n, v]) => [u32(n.length), Buffer.from(n), u32(v.length), Buffer.from(v)]),
  ]);
}

describe('SPDY/3 frames and header blocks', () => {
  it("reads kubectl's SYN_STREAMs, split anywhere, and their header blocks from one zlib stream", () => {
    const reader = new SpdyFrameReader();
    const frames = [...kubectlSyns].flatMap((byte) => reader.push(Buffer.from([byte])));
    assert.equal(frames.length, 3);
    const inflater = new HeaderInflater();
    const types = frames.map((f) => {
      assert.ok(f.control && f.type === 1);
      return [f.data.readUInt32BE(0), inflater.read(f.data.subarray(10)).get('streamtype')];
    });
    assert.deepEqual(types, [
      [1, ['error']],
      [3, ['stdin']],
      [5, ['stdout']],
    ]);
  });

  it('writes header blocks any zlib reader reads as one stream, each ending at its frame', () => {
    const deflater = new HeaderDeflater();
    const first = deflater.write([]);
    const second = deflater.write([['streamtype', 'stdout']]);
    const whole = inflateSync(Buffer.concat([first, second]), { finishFlush: constants.Z_SYNC_FLUSH });
    assert.equal(whole.subarray(0, 4).readUInt32BE(), 0);
    assert.equal(whole.subarray(4).toString('latin1'), '\0\0\0\x01\0\0\0\x0astreamtype\0\0\0\x06stdout');
  });

  it('refuses frames of another version, oversized frames and header blocks out of form', () => {
    assert.throws(() => new SpdyFrameReader().push(Buffer.from('8002000100000004', 'hex')), SpdyError);
    assert.throws(() => new SpdyFrameReader().push(Buffer.from('8003000100ffffff', 'hex')), SpdyError);
    assert.throws(() => new SpdyFrameReader().push(Buffer.from('0000000000000000', 'hex')), SpdyError);
    assert.throws(() => new HeaderInflater().read(Buffer.from('0102030405', 'hex')), SpdyError);
    // Names not lower-case, or given twice, as the Go framer refuses them.
    for (const block of [
      headerBlock([['streamType', 'stdin']]),
      headerBlock([
        ['streamtype', 'stdin'],
        ['streamtype', 'stdout'],
      ]),
    ]) {
      const compressed = deflateSync(block, { dictionary, finishFlush: constants.Z_SYNC_FLUSH });
      assert.throws(() => new HeaderInflater().read(compressed), SpdyError);
    }
  });

  it('frames control and data frames with their lengths and flags', () => {
    assert.equal(controlFrame(6, 0, Buffer.from([0, 0, 0, 1])).toString('hex'), '800300060000000400000001');
    assert.equal(dataFrame(3, 1, Buffer.from('hi')).toString('hex'), '00000003010000026869');
  });
});
