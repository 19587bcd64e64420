// Recorded requests read back as the evaluator takes them: a Redis command as its event wrote
// it (sidecar/redis/command-text.ts) is split back into the same arguments, whatever they hold;
// what a record cannot be decided from again is skipped with the reason.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { RequestEvent } from '../api/events.ts';
import { compileMasking } from '../sidecar/policy/masking.ts';
import { commandText } from '../sidecar/redis/command-text.ts';
import { splitInline } from '../sidecar/redis/commands-reader.ts';
import { requestOf } from './replay.ts';

const event = (protocol: string, kind: string, text: string) =>
  ({ connection: { protocol }, kind, text }) as unknown as RequestEvent;
const plan = compileMasking([]);

describe('requestOf', () => {
  it('reads a Redis command back into the arguments it was recorded from', () => {
    const commands = [
      ['GET', 'session:42'],
      ['SET', 'greeting', 'hello world', 'EX', '60'],
      ['HSET', 'user:7', 'note', 'she said "hi" \\o/'],
      ['SET', 'k', "it's\ttabbed\nand\u0000nul"],
      ['SET', 'ключ', '価値 🚀'],
      ['SET', '', ''],
    ];
    for (const argv of commands) {
      const request = requestOf(event('redis', 'redis', commandText(argv, plan)));
      assert.ok('redis' in request, JSON.stringify(request));
      const back = splitInline(Buffer.from(request.redis))?.map((arg) => arg.toString());
      assert.deepEqual(back, [argv[0]!.toUpperCase(), ...argv.slice(1)]);
    }
  });

  it('skips what a record cannot be decided from again', () => {
    const cases: [RequestEvent, RegExp][] = [
      [event('redis', 'redis', 'connect'), /connects and AUTH/],
      [event('redis', 'redis', 'AUTH'), /connects and AUTH/],
      [event('redis', 'redis', 'MULTI; SET a 1; EXEC'), /transactions/],
      [event('redis', 'redis', commandText(['SET', 'k', 'v'.repeat(100)], plan)), /cut short/],
      [event('mcp', 'mcp', 'initialize'), /mcp mcp/],
      [event('mcp', 'mcp-tool', 'tools/call search {"q":"aaaa…'), /cut short/],
      [event('kubernetes', 'kubernetes', 'get pods in namespace web'), /recorded as read/],
    ];
    for (const [recorded, why] of cases) {
      const request = requestOf(recorded);
      assert.ok('skip' in request, JSON.stringify(request));
      assert.match(request.skip, why);
    }
    assert.deepEqual(requestOf(event('mcp', 'mcp-tool', 'tools/call search {"q":"x"}')), {
      mcp: 'tools/call search {"q":"x"}',
    });
  });
});
