import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SseLimitError, SseReader, sseEvent } from './sse.ts';

describe('server-sent events', () => {
  it('reads events however the stream is cut, with every line ending', () => {
    const stream =
      'id: 1\nevent: message\ndata: {"a":1}\n\n: comment\r\ndata: x\r\ndata: y\r\n\r\nretry: 5\rdata: z\r\n\r\n';
    for (let cut = 0; cut <= stream.length; cut++) {
      const reader = new SseReader(1024);
      const events = [...reader.push(stream.slice(0, cut)), ...reader.push(stream.slice(cut))];
      assert.deepEqual(
        events,
        [{ id: '1', event: 'message', data: '{"a":1}' }, { data: 'x\ny' }, { retry: '5', data: 'z' }],
        `cut at ${cut}`,
      );
    }
  });

  it('refuses an event past its bound, whether it arrives as one line or many', () => {
    assert.throws(() => new SseReader(16).push(`data: ${'x'.repeat(32)}`), SseLimitError);
    const reader = new SseReader(16);
    assert.throws(() => {
      for (let i = 0; i < 10; i++) reader.push('data: abc\n');
    }, SseLimitError);
  });

  it('writes an event whose data cannot break out of it', () => {
    assert.equal(sseEvent('a\nb', { id: '7\n' }), 'id: 7\ndata: a\ndata: b\n\n');
  });
});
