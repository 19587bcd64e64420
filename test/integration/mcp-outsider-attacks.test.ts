// The MCP enforcer against tool results that carry masked values where the masker did not read:
// as the keys of a map, in JSON lines, and percent-encoded or as HTML character references.
// A real server built with the official SDK; its echo tool returns the text it is given, as a
// tool returns whatever its data holds.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RequestEvent } from '../../api/events.ts';
import { policy } from '../../sidecar/policy/fixtures.ts';
import {
  type EnforcedMcp,
  enforceMcp,
  type McpUpstream,
  rawSession,
  startMcpServer,
} from '../support/mcp.ts';

const masking = policy({
  name: 'pii',
  masking: [
    { name: 'pii', detectors: ['email', 'credit-card'], strategy: 'redact', indirectUse: 'allow' },
    { name: 'ssn', jsonPaths: ['$.ssn'], strategy: 'redact', indirectUse: 'allow' },
  ],
});

describe('MCP enforcer under attack from outside the corpus', () => {
  let server: McpUpstream;
  let enforced: EnforcedMcp;

  before(async () => {
    server = await startMcpServer();
    enforced = await enforceMcp(server, [masking]);
  });
  after(async () => {
    await enforced?.enforcer.close();
    await server?.close();
  });

  /** The text of an echo tool call's result, through the enforcer. */
  async function echoed(text: string): Promise<string> {
    const raw = await rawSession(enforced.url);
    const answer = await raw.post(
      JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'tools/call',
        params: { name: 'echo', arguments: { text } },
      }),
    );
    const result = answer.messages[0]?.result as { content: { text: string }[] } | undefined;
    assert.ok(result, answer.text);
    return result.content[0]!.text;
  }

  it('masks values that are the keys of a map', async () => {
    const text = JSON.stringify({
      customers: { 'ada@example.com': { plan: 'pro' }, '4111111111111111': 'card' },
    });
    const masked = JSON.parse(await echoed(text));
    assert.deepEqual(masked, {
      customers: { '[REDACTED:email]': { plan: 'pro' }, '[REDACTED:credit-card]': 'card' },
    });
  });

  it('applies JSON paths to each line of JSON lines', async () => {
    const masked = await echoed('{"name":"ada","ssn":"123-45-6789"}\n{"name":"bob","ssn":"987-65-4321"}\n');
    assert.ok(!/6789|4321/.test(masked), masked);
    assert.deepEqual(
      masked
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line)),
      [
        { name: 'ada', ssn: '[REDACTED]' },
        { name: 'bob', ssn: '[REDACTED]' },
      ],
    );
    // A text that only starts like JSON is still masked as text.
    assert.equal(
      await echoed('[INFO] mail ada@example.com\n[INFO] done'),
      '[INFO] mail [REDACTED:email]\n[INFO] done',
    );
  });

  it('masks values percent-encoded, escaped or written as character references', async () => {
    for (const text of [
      'ada%40example.com',
      'ada&#64;example.com',
      'ada&#x40;example.com',
      'ada\\u0040example.com',
    ])
      assert.equal(await echoed(`mail ${text} now`), 'mail [REDACTED:email] now', text);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const calls = enforced.events.filter(
      (e): e is RequestEvent => e.type === 'request' && e.kind === 'mcp-tool',
    );
    assert.ok(calls.some((e) => (e.masked?.['pii/email'] ?? 0) >= 1));
  });
});
