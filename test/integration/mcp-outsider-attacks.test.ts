// The MCP enforcer against tool results that carry masked values where the masker did not read:
// as the keys of a map, in JSON lines, and percent-encoded or as HTML character references; and
// a server that echoes the credential the enforcer holds for it. A real server built with the
// official SDK (its echo tool returns the text it is given, as a tool returns whatever its data
// holds), and a plain one that echoes its request's Authorization header.
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
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

  it('refuses a path argument spelled as a server resolves it: climbing, from a home, Windows, any case', async () => {
    const guarded = await enforceMcp(server, [
      policy({
        name: 'files',
        rules: [
          {
            name: 'no-system-files',
            action: 'deny',
            mcp: { tools: ['read_file'], arguments: [{ path: '$.path', glob: '/etc/*' }] },
          },
        ],
      }),
    ]);
    try {
      const raw = await rawSession(guarded.url);
      let id = 1;
      for (const path of [
        '../../../../../../etc/shadow',
        '~/../etc/shadow',
        '~root/../../etc/shadow',
        '\\etc\\shadow',
        '/ETC/shadow',
      ]) {
        const answer = await raw.post(
          JSON.stringify({
            jsonrpc: '2.0',
            id: id++,
            method: 'tools/call',
            params: { name: 'read_file', arguments: { path } },
          }),
        );
        const error = answer.messages[0]?.error as { message: string } | undefined;
        assert.match(error?.message ?? '', /no-system-files/, path);
      }
      assert.ok(!server.calls.some((c) => c.startsWith('read_file')), 'the server read no file');
    } finally {
      await guarded.enforcer.close();
    }
  });

  it('refuses a post nested too deep to be written again, whatever its method', async () => {
    const raw = await rawSession(enforced.url);
    const deep = `${'{"a":'.repeat(100_000)}1${'}'.repeat(100_000)}`;
    for (const body of [
      `{"jsonrpc":"2.0","id":7,"method":"ping","params":{"x":${deep}}}`,
      `[{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1,"x":${deep}}}]`,
    ]) {
      const answer = await raw.post(body);
      const error = answer.messages[0]?.error as { code: number; message: string } | undefined;
      assert.equal(error?.code, -32600, answer.text.slice(0, 200));
      assert.match(error?.message ?? '', /nested deeper than 128 levels/);
    }
    const alive = await echoed('still here');
    assert.equal(alive, 'still here');
  });

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
    // Behind a byte order mark, a document is still one.
    assert.deepEqual(JSON.parse((await echoed('\ufeff{"ssn":"123-45-6789"}')).replace(/^\ufeff/, '')), {
      ssn: '[REDACTED]',
    });
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

/** A server that answers every call, and an unknown session, with the Authorization it received. */
async function startEchoingServer(): Promise<{ server: Server; port: number }> {
  const read = async (req: IncomingMessage) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as { id?: number; method: string };
  };
  const server = createServer(async (req, res) => {
    const message = await read(req);
    const seen = String(req.headers.authorization);
    if (req.headers['mcp-session-id'] === 'gone') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`no session for ${seen}`);
      return;
    }
    if (message.id === undefined) {
      res.writeHead(202).end();
      return;
    }
    const result =
      message.method === 'initialize'
        ? {
            protocolVersion: '2025-06-18',
            capabilities: { tools: {} },
            serverInfo: { name: 'echo', version: '1' },
          }
        : {
            content: [{ type: 'text', text: `you sent ${seen}` }],
            structuredContent: { headers: { authorization: seen } },
          };
    res
      .writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 's1' })
      .end(JSON.stringify({ jsonrpc: '2.0', id: message.id, result }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port };
}

describe('MCP enforcer in front of a server that echoes its credential', () => {
  const token = 'held-mcp-token-0123456789';
  let echoing: { server: Server; port: number };
  let enforced: EnforcedMcp;

  before(async () => {
    echoing = await startEchoingServer();
    enforced = await enforceMcp({ port: echoing.port } as McpUpstream, [policy({ name: 'open' })], {
      credentials: { token },
    });
  });
  after(async () => {
    await enforced?.enforcer.close();
    await new Promise((resolve) => echoing?.server.close(resolve));
  });

  it('never hands the agent the held credential, whatever the policies mask', async () => {
    const raw = await rawSession(enforced.url);
    const answer = await raw.post(
      JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'tools/call',
        params: { name: 'whoami', arguments: {} },
      }),
    );
    assert.ok(!answer.text.includes(token), answer.text);
    const hidden = '*'.repeat(token.length);
    assert.deepEqual(answer.messages[0]?.result, {
      content: [{ type: 'text', text: `you sent Bearer ${hidden}` }],
      structuredContent: { headers: { authorization: `Bearer ${hidden}` } },
    });
    // The server's own refusal passes with its status, its text read the same way.
    const gone = await fetch(enforced.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-session-id': 'gone',
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 2,
        method: 'tools/call',
        params: { name: 'whoami', arguments: {} },
      }),
    });
    const text = await gone.text();
    assert.ok(!text.includes(token), text);
  });
});
