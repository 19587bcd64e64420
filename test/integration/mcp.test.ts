// The MCP enforcer between the official SDK's client (the agent) and a server built with the
// official SDK: the held credential, tools/list filtered by the policies, tool calls decided
// by name and arguments, approvals with progress, masking of results, resources and
// notifications, server requests, and the recorded events.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { BundlePolicy } from '../../api/bundle.ts';
import type { RequestEvent } from '../../api/events.ts';
import type { ApprovalRequest } from '../../sidecar/core/enforcer.ts';
import { policy } from '../../sidecar/policy/fixtures.ts';
import {
  connectAgent,
  type EnforcedMcp,
  enforceMcp,
  type McpUpstream,
  mcpToken,
  rawSession,
  startMcpServer,
} from '../support/mcp.ts';

const agents: BundlePolicy = policy({
  name: 'tool-agents',
  masking: [
    { name: 'pii', detectors: ['email', 'credit-card'], strategy: 'redact', indirectUse: 'deny' },
    { name: 'emails', jsonPaths: ['$.email'], strategy: 'hash', indirectUse: 'deny' },
  ],
  rules: [
    {
      name: 'no-deletes',
      action: 'deny',
      message: 'agents do not delete files',
      mcp: { tools: ['delete_*'] },
    },
    {
      name: 'no-system-files',
      action: 'deny',
      mcp: { tools: ['read_file'], arguments: [{ path: '$.path', glob: '/etc/*' }] },
    },
    {
      name: 'no-prod-queries',
      action: 'deny',
      mcp: { tools: ['run_query'], arguments: [{ path: '$..target', regex: '(?i)prod' }] },
    },
    { name: 'no-passwd', action: 'deny', mcp: { resources: ['file:///etc/*'] } },
    {
      name: 'approve-echo',
      action: 'require-approval',
      mcp: { tools: ['echo'], arguments: [{ path: '$.text', glob: 'approve *' }] },
      approval: { approvers: { groups: ['ops'] }, timeout: '1m', scope: 'statement' },
    },
  ],
});

const requests = (e: EnforcedMcp) => e.events.filter((x): x is RequestEvent => x.type === 'request');
const text = (result: unknown) =>
  ((result as { content: { type: string; text?: string }[] }).content ?? [])
    .map((c) => c.text ?? '')
    .join('');

describe('MCP enforcer', () => {
  let server: McpUpstream;
  let enforced: EnforcedMcp;
  const held: ApprovalRequest[] = [];
  let verdict = true;

  before(async () => {
    server = await startMcpServer();
    enforced = await enforceMcp(server, [agents], {
      progressEveryMs: 100,
      approvals: {
        request: async (request) => {
          held.push(request);
          await new Promise((resolve) => setTimeout(resolve, 300));
          return verdict
            ? { approved: true, outcome: 'approved', decidedBy: 'alice' }
            : { approved: false, outcome: 'denied', decidedBy: 'bob', reason: 'not now' };
        },
      },
    });
  });
  after(async () => {
    await enforced?.enforcer.close();
    await server?.close();
  });

  it('puts the held credential on every request to the server, never the agent’s own', async () => {
    const agent = await connectAgent(enforced.url, { headers: { authorization: 'Bearer the-agents-own' } });
    try {
      const result = await agent.client.callTool({ name: 'run_query', arguments: { query: 'select 1' } });
      assert.equal(text(result), 'ok');
    } finally {
      await agent.close();
    }
    assert.ok(server.authorizations.length > 0);
    assert.ok(server.authorizations.every((a) => a === `Bearer ${mcpToken}`));
  });

  it('leaves out of tools/list the tools the policy denies whatever their arguments', async () => {
    const agent = await connectAgent(enforced.url);
    try {
      const { tools } = await agent.client.listTools();
      const names = tools.map((t) => t.name).sort();
      assert.equal(names.includes('delete_file'), false);
      // Denied only for some arguments, or held: still offered.
      assert.ok(names.includes('read_file'));
      assert.ok(names.includes('echo'));
    } finally {
      await agent.close();
    }
  });

  it('denies a tool call by its name, before the server runs it, with a JSON-RPC error naming the rule', async () => {
    const agent = await connectAgent(enforced.url);
    try {
      await assert.rejects(
        agent.client.callTool({ name: 'delete_file', arguments: { path: '/tmp/x' } }),
        (error: Error) => {
          assert.match(error.message, /AccessPolicy "tool-agents" rule "no-deletes"/);
          assert.match(error.message, /agents do not delete files/);
          return true;
        },
      );
    } finally {
      await agent.close();
    }
    assert.equal(
      server.calls.some((c) => c.startsWith('delete_file')),
      false,
    );
    const event = requests(enforced).find((e) => e.text.startsWith('tools/call delete_file'));
    assert.equal(event?.outcome, 'blocked');
    assert.equal(event?.rule, 'no-deletes');
    assert.equal(event?.error?.code, 'policy-denied');
    assert.equal(event?.kind, 'mcp-tool');
  });

  it('decides by arguments: the same tool runs on one path and is refused on another', async () => {
    const agent = await connectAgent(enforced.url);
    try {
      const ok = await agent.client.callTool({ name: 'read_file', arguments: { path: '/srv/readme' } });
      assert.match(text(ok), /^\/srv\/readme: /);
      await assert.rejects(
        agent.client.callTool({ name: 'read_file', arguments: { path: '/etc/shadow' } }),
        /no-system-files/,
      );
      // Nested arguments are matched wherever the path finds them.
      await assert.rejects(
        agent.client.callTool({
          name: 'run_query',
          arguments: { query: 'x', options: { deep: { target: 'PROD-eu' } } },
        }),
        /no-prod-queries/,
      );
    } finally {
      await agent.close();
    }
    assert.equal(
      server.calls.some((c) => c.includes('/etc/shadow')),
      false,
    );
    assert.equal(
      server.calls.some((c) => c.includes('PROD-eu')),
      false,
    );
  });

  it('masks tool results by detectors, and JSON paths in structured content and JSON text', async () => {
    const agent = await connectAgent(enforced.url);
    try {
      const read = await agent.client.callTool({ name: 'read_file', arguments: { path: '/srv/a' } });
      assert.equal(text(read).includes('ada@example.com'), false);
      assert.equal(text(read).includes('4111'), false);
      assert.match(text(read), /\[REDACTED:email\]/);
      const customer = await agent.client.callTool({ name: 'customer', arguments: { id: 1 } });
      const structured = customer.structuredContent as { name: string; email: string; note: string };
      assert.equal(structured.name, 'Ada');
      assert.match(structured.email, /^h:[0-9a-f]{12}$/);
      assert.equal(structured.note.includes('4111'), false);
      assert.equal(text(customer).includes('ada@example.com'), false);
    } finally {
      await agent.close();
    }
    const event = requests(enforced).find((e) => e.text.startsWith('tools/call customer'));
    assert.equal(event?.outcome, 'masked');
    assert.ok((event?.masked?.['emails/$.email'] ?? 0) >= 1);
    assert.ok((event?.bytes ?? 0) > 0);
  });

  it('masks resources and refuses reads the policy denies', async () => {
    const agent = await connectAgent(enforced.url);
    try {
      const notes = await agent.client.readResource({ uri: 'file:///notes.txt' });
      const body = (notes.contents[0] as { text: string }).text;
      assert.equal(body.includes('ada@example.com'), false);
      await assert.rejects(agent.client.readResource({ uri: 'file:///etc/passwd' }), /no-passwd/);
      // A resource every read of which is denied is not listed either.
      const { resources } = await agent.client.listResources();
      assert.deepEqual(
        resources.map((r) => r.uri),
        ['file:///notes.txt'],
      );
    } finally {
      await agent.close();
    }
    const event = requests(enforced).find((e) => e.text === 'resources/read file:///etc/passwd');
    assert.equal(event?.outcome, 'blocked');
  });

  it('holds a call for approval, keeps the agent waiting with progress, then runs it', async () => {
    const agent = await connectAgent(enforced.url);
    const progress: string[] = [];
    held.length = 0;
    verdict = true;
    try {
      const result = await agent.client.callTool(
        { name: 'echo', arguments: { text: 'approve me' } },
        undefined,
        {
          onprogress: (p) => progress.push(p.message ?? ''),
          resetTimeoutOnProgress: true,
        },
      );
      assert.equal(text(result), 'approve me');
    } finally {
      await agent.close();
    }
    assert.equal(held.length, 1);
    assert.match(held[0]!.text, /^tools\/call echo \{"text":"approve me"\}/);
    assert.ok(progress.length >= 1);
    assert.match(progress[0]!, /requires approval/);
    const event = requests(enforced).find((e) => e.text.startsWith('tools/call echo {"text":"approve me"}'));
    assert.equal(event?.outcome, 'approved');
    assert.equal(event?.approval?.decidedBy, 'alice');
  });

  it('answers a held call refused by the approver with an error, and the server never runs it', async () => {
    const agent = await connectAgent(enforced.url);
    verdict = false;
    try {
      await assert.rejects(
        agent.client.callTool({ name: 'echo', arguments: { text: 'approve this not' } }),
        /denied by approver bob/,
      );
    } finally {
      verdict = true;
      await agent.close();
    }
    assert.equal(
      server.calls.some((c) => c.includes('approve this not')),
      false,
    );
    const event = requests(enforced).find((e) => e.text.includes('approve this not'));
    assert.equal(event?.outcome, 'denied');
  });

  it('ends a hold when the agent withdraws the call (notifications/cancelled)', async () => {
    const waiting = await enforceMcp(server, [agents], {
      approvals: {
        request: (_request, signal) =>
          new Promise((resolve) =>
            signal?.addEventListener('abort', () => resolve({ approved: false, outcome: 'denied' }), {
              once: true,
            }),
          ),
      },
    });
    const agent = await connectAgent(waiting.url);
    try {
      await assert.rejects(
        agent.client.callTool({ name: 'echo', arguments: { text: 'approve withdrawn' } }, undefined, {
          signal: AbortSignal.timeout(300),
        }),
      );
      // The withdrawal is a notification of its own; give it time to land.
      for (let i = 0; i < 50 && !requests(waiting).some((e) => e.text.includes('approve withdrawn')); i++)
        await new Promise((resolve) => setTimeout(resolve, 20));
    } finally {
      await agent.close();
      await waiting.enforcer.close();
    }
    assert.equal(
      server.calls.some((c) => c.includes('approve withdrawn')),
      false,
    );
    const event = requests(waiting).find((e) => e.text.includes('approve withdrawn'));
    assert.equal(event?.error?.code, 'cancelled');
  });

  it('records every call with its arguments masked, its decision, duration and result size', async () => {
    const agent = await connectAgent(enforced.url);
    try {
      await agent.client.callTool({ name: 'echo', arguments: { text: 'mail ada@example.com' } });
    } finally {
      await agent.close();
    }
    const event = requests(enforced).find((e) => e.text.startsWith('tools/call echo {"text":"mail'));
    assert.ok(event);
    assert.equal(event.text.includes('ada@example.com'), false);
    assert.equal(event.kind, 'mcp-tool');
    assert.equal(typeof event.durationMs, 'number');
    assert.ok((event.bytes ?? 0) > 0);
  });

  it('masks the notifications a server sends while a call runs', async () => {
    const agent = await connectAgent(enforced.url);
    const logged: string[] = [];
    try {
      const { LoggingMessageNotificationSchema } = await import('@modelcontextprotocol/sdk/types.js');
      agent.client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
        logged.push(String(n.params.data));
      });
      await agent.client.callTool({ name: 'log_secret', arguments: {} });
    } finally {
      await agent.close();
    }
    assert.equal(logged.length, 1);
    assert.equal(logged[0]!.includes('ada@example.com'), false);
  });

  it('refuses a server’s sampling request unless the Connection allows it', async () => {
    const agent = await connectAgent(enforced.url, { sampling: true });
    try {
      const result = await agent.client.callTool({ name: 'ask_model', arguments: {} });
      assert.equal(text(result), 'the model was not available');
    } finally {
      await agent.close();
    }
    assert.match(server.sampling.at(-1) ?? '', /^refused: .*serverRequests/);
    const event = requests(enforced).find((e) => e.kind === 'mcp-server-request');
    assert.equal(event?.text, 'sampling/createMessage');
    assert.equal(event?.outcome, 'blocked');
  });
});

describe('MCP sessions', () => {
  it('end when the agent ends them, when the server forgets them, and after idling', async () => {
    const server = await startMcpServer();
    const enforced = await enforceMcp(server, [agents], { idleSessionMs: 300 });
    const ends = () => enforced.events.flatMap((e) => (e.type === 'session.end' ? [e.reason] : []));
    try {
      const agent = await connectAgent(enforced.url);
      await agent.client.listTools();
      await agent.close();
      assert.deepEqual(ends(), ['ended by the agent']);

      const raw = await rawSession(enforced.url);
      server.forget();
      const after = await raw.post('{"jsonrpc":"2.0","id":1,"method":"tools/list"}');
      assert.equal(after.status, 404);
      assert.deepEqual(ends(), ['ended by the agent', 'ended by the server']);

      // An agent that goes away without ending its session (its event stream closes, no DELETE).
      const idle = await connectAgent(enforced.url);
      await idle.client.listTools();
      await idle.client.close();
      for (let i = 0; i < 40 && ends().length < 3; i++)
        await new Promise((resolve) => setTimeout(resolve, 50));
      assert.deepEqual(ends(), ['ended by the agent', 'ended by the server', 'idle']);
    } finally {
      await enforced.enforcer.close();
      await server.close();
    }
  });
});

describe('MCP enforcer with server requests allowed, JSON answers', () => {
  let server: McpUpstream;
  let enforced: EnforcedMcp;
  before(async () => {
    server = await startMcpServer({ json: true });
    enforced = await enforceMcp(server, [agents], { mcp: { serverRequests: ['sampling'] } });
  });
  after(async () => {
    await enforced?.enforcer.close();
    await server?.close();
  });

  it('passes a sampling request to the agent when the Connection allows it', async () => {
    const server2 = await startMcpServer();
    const enforced2 = await enforceMcp(server2, [agents], { mcp: { serverRequests: ['sampling'] } });
    const agent = await connectAgent(enforced2.url, { sampling: true });
    try {
      const result = await agent.client.callTool({ name: 'ask_model', arguments: {} });
      assert.equal(text(result), 'the model answered');
      assert.match(server2.sampling.at(-1) ?? '', /hi from the model/);
    } finally {
      await agent.close();
      await enforced2.enforcer.close();
      await server2.close();
    }
  });

  it('decides and masks the same when the server answers with JSON instead of a stream', async () => {
    const agent = await connectAgent(enforced.url);
    try {
      const read = await agent.client.callTool({ name: 'read_file', arguments: { path: '/srv/a' } });
      assert.equal(text(read).includes('ada@example.com'), false);
      await assert.rejects(
        agent.client.callTool({ name: 'delete_file', arguments: { path: '/srv/a' } }),
        /no-deletes/,
      );
    } finally {
      await agent.close();
    }
    assert.equal(
      server.calls.some((c) => c.startsWith('delete_file')),
      false,
    );
  });
});

describe('MCP enforcer over the deprecated HTTP+SSE transport', () => {
  let server: McpUpstream;
  let enforced: EnforcedMcp;
  const held: ApprovalRequest[] = [];
  before(async () => {
    server = await startMcpServer({ sse: true });
    enforced = await enforceMcp(server, [agents], {
      mcp: { transport: 'sse', path: '/sse' },
      progressEveryMs: 100,
      approvals: {
        request: async (request) => {
          held.push(request);
          await new Promise((resolve) => setTimeout(resolve, 300));
          return { approved: true, outcome: 'approved', decidedBy: 'alice' };
        },
      },
    });
  });
  after(async () => {
    await enforced?.enforcer.close();
    await server?.close();
  });
  const url = () => enforced.url.replace(/\/mcp$/, '/sse');

  it('filters, decides, masks and holds as over the streamable transport', async () => {
    const agent = await connectAgent(url(), { sse: true, sampling: true });
    const progress: string[] = [];
    try {
      const { tools } = await agent.client.listTools();
      assert.equal(
        tools.some((t) => t.name === 'delete_file'),
        false,
      );
      const read = await agent.client.callTool({ name: 'read_file', arguments: { path: '/srv/a' } });
      assert.equal(text(read).includes('ada@example.com'), false);
      await assert.rejects(
        agent.client.callTool({ name: 'delete_file', arguments: { path: '/srv/a' } }),
        /no-deletes/,
      );
      const echoed = await agent.client.callTool(
        { name: 'echo', arguments: { text: 'approve over sse' } },
        undefined,
        {
          onprogress: (p) => progress.push(p.message ?? ''),
        },
      );
      assert.equal(text(echoed), 'approve over sse');
      const asked = await agent.client.callTool({ name: 'ask_model', arguments: {} });
      assert.equal(text(asked), 'the model was not available');
    } finally {
      await agent.close();
    }
    assert.equal(held.length, 1);
    assert.ok(progress.length >= 1);
    assert.equal(
      server.calls.some((c) => c.startsWith('delete_file')),
      false,
    );
    assert.match(server.sampling.at(-1) ?? '', /^refused: /);
    const event = requests(enforced).find((e) => e.text.startsWith('tools/call read_file'));
    assert.equal(event?.outcome, 'masked');
  });

  it('serves only the stream and the endpoint the server named', async () => {
    const res = await fetch(url().replace(/\/sse$/, '/messages?sessionId=guessed'), {
      method: 'POST',
      body: '{}',
    });
    assert.equal(res.status, 404);
  });
});
