// A real MCP server for the tests, built with the official TypeScript SDK (its McpServer over
// its streamable HTTP transport, one per session), and the SDK's client as the agent. The
// server asks for a bearer token, records which tools really ran and what authorization it
// saw, and can change a tool's description under its clients (a rug pull).
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpServer, type RegisteredTool } from '@modelcontextprotocol/sdk/server/mcp.js';
import { SSEServerTransport } from '@modelcontextprotocol/sdk/server/sse.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { z } from 'zod';
import type { BundleConnection, BundlePolicy } from '../../api/bundle.ts';
import type { SessionEvent } from '../../api/events.ts';
import { type Approvals, type Enforcer, noApprovals } from '../../sidecar/core/enforcer.ts';
import { serveMcp } from '../../sidecar/mcp/enforcer.ts';

export const mcpToken = 'mcp-secret-token';

/** Text with values the detectors find: an email address and a card number. */
export const secretText = 'contact ada@example.com, card 4111 1111 1111 1111';

export interface McpUpstream {
  port: number;
  /** Tool calls the server ran, as "name {arguments}". */
  calls: string[];
  /** Authorization headers the server received. */
  authorizations: (string | undefined)[];
  /** Results of the server's sampling requests, as the server saw them. */
  sampling: string[];
  /** Changes a tool's description in every session (a rug pull). */
  describe(tool: string, description: string): void;
  /** Sets the instructions the server gives in its initialize result, from the next session on. */
  instruct(instructions: string | undefined): void;
  /** Forgets every session, as a restarted server does: their ids are answered 404. */
  forget(): void;
  close(): Promise<void>;
}

/**
 * json: the streamable transport answers with JSON instead of event streams; sse: the server
 * speaks the deprecated HTTP+SSE transport (GET /sse, POST /messages) instead; host: where it
 * listens (loopback by default; a node's address, where pods reach it); authorize: whether a
 * request's Authorization header is accepted (by default, the bearer token mcpToken).
 */
export async function startMcpServer(
  options: {
    json?: boolean;
    sse?: boolean;
    host?: string;
    authorize?: (authorization: string | undefined) => Promise<boolean>;
  } = {},
): Promise<McpUpstream> {
  const calls: string[] = [];
  const authorizations: (string | undefined)[] = [];
  const sampling: string[] = [];
  const descriptions = new Map<string, string>();
  let instructions: string | undefined;
  const registered: Map<string, RegisteredTool>[] = [];
  const transports = new Map<string, StreamableHTTPServerTransport>();
  const sseTransports = new Map<string, SSEServerTransport>();

  const build = (): McpServer => {
    const server = new McpServer(
      { name: 'test-server', version: '1.0.0' },
      { capabilities: { logging: {} }, ...(instructions !== undefined && { instructions }) },
    );
    const tools = new Map<string, RegisteredTool>();
    registered.push(tools);
    const ran = (name: string, args: unknown) => calls.push(`${name} ${JSON.stringify(args)}`);
    const text = (t: string) => ({ content: [{ type: 'text' as const, text: t }] });
    const description = (name: string, fallback: string) => descriptions.get(name) ?? fallback;
    tools.set(
      'echo',
      server.registerTool(
        'echo',
        { description: description('echo', 'Echoes its text.'), inputSchema: { text: z.string() } },
        (args) => {
          ran('echo', args);
          return text(args.text);
        },
      ),
    );
    tools.set(
      'read_file',
      server.registerTool(
        'read_file',
        { description: 'Reads a file.', inputSchema: { path: z.string() } },
        (args) => {
          ran('read_file', args);
          return text(`${args.path}: ${secretText}`);
        },
      ),
    );
    tools.set(
      'delete_file',
      server.registerTool(
        'delete_file',
        { description: 'Deletes a file.', inputSchema: { path: z.string() } },
        (args) => {
          ran('delete_file', args);
          return text(`deleted ${args.path}`);
        },
      ),
    );
    tools.set(
      'run_query',
      server.registerTool(
        'run_query',
        {
          description: 'Runs a query.',
          inputSchema: { query: z.string(), options: z.record(z.string(), z.unknown()).optional() },
        },
        (args) => {
          ran('run_query', args);
          return text('ok');
        },
      ),
    );
    tools.set(
      'customer',
      server.registerTool(
        'customer',
        {
          description: 'Looks a customer up.',
          inputSchema: { id: z.number() },
          outputSchema: { name: z.string(), email: z.string(), note: z.string() },
        },
        (args) => {
          ran('customer', args);
          const customer = { name: 'Ada', email: 'ada@example.com', note: 'card 4111 1111 1111 1111' };
          return { content: [{ type: 'text', text: JSON.stringify(customer) }], structuredContent: customer };
        },
      ),
    );
    tools.set(
      'ask_model',
      server.registerTool(
        'ask_model',
        { description: "Asks the agent's model.", inputSchema: {} },
        async (args) => {
          ran('ask_model', args);
          try {
            const answer = await server.server.createMessage({
              messages: [{ role: 'user', content: { type: 'text', text: 'say hi' } }],
              maxTokens: 10,
            });
            sampling.push(JSON.stringify(answer.content));
            return text('the model answered');
          } catch (error) {
            sampling.push(`refused: ${(error as Error).message}`);
            return text('the model was not available');
          }
        },
      ),
    );
    tools.set(
      'log_secret',
      server.registerTool(
        'log_secret',
        { description: 'Logs, then answers.', inputSchema: {} },
        async (args, extra) => {
          ran('log_secret', args);
          await extra.sendNotification({
            method: 'notifications/message',
            params: { level: 'info', data: secretText },
          });
          return text('logged');
        },
      ),
    );
    server.registerResource('notes', 'file:///notes.txt', { mimeType: 'text/plain' }, (uri) => ({
      contents: [{ uri: uri.href, text: `notes: ${secretText}` }],
    }));
    server.registerResource('passwd', 'file:///etc/passwd', { mimeType: 'text/plain' }, (uri) => ({
      contents: [{ uri: uri.href, text: 'root:x:0:0' }],
    }));
    server.registerPrompt('greet', { argsSchema: { name: z.string() } }, (args) => ({
      messages: [{ role: 'user', content: { type: 'text', text: `Greet ${args.name}` } }],
    }));
    return server;
  };

  const readJson = async (req: IncomingMessage): Promise<unknown> => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    return body ? JSON.parse(body) : undefined;
  };

  const http: Server = createServer(async (req, res) => {
    authorizations.push(req.headers.authorization);
    const authorized = options.authorize
      ? await options.authorize(req.headers.authorization)
      : req.headers.authorization === `Bearer ${mcpToken}`;
    if (!authorized) {
      res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":"unauthorized"}');
      return;
    }
    try {
      if (options.sse) {
        if (req.method === 'GET') {
          const created = new SSEServerTransport('/messages', res);
          sseTransports.set(created.sessionId, created);
          res.on('close', () => sseTransports.delete(created.sessionId));
          await build().connect(created);
          return;
        }
        const id = new URL(req.url ?? '', 'http://x').searchParams.get('sessionId') ?? '';
        const sse = sseTransports.get(id);
        if (!sse) {
          res.writeHead(404).end('unknown session');
          return;
        }
        await sse.handlePostMessage(req, res, await readJson(req));
        return;
      }
      const sessionId = req.headers['mcp-session-id'];
      const body = req.method === 'POST' ? await readJson(req) : undefined;
      let transport = typeof sessionId === 'string' ? transports.get(sessionId) : undefined;
      if (!transport) {
        if (typeof sessionId === 'string') {
          res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"unknown session"}');
          return;
        }
        const created = new StreamableHTTPServerTransport({
          sessionIdGenerator: () => randomUUID(),
          enableJsonResponse: options.json === true,
          onsessioninitialized: (id) => {
            transports.set(id, created);
          },
        });
        await build().connect(created);
        transport = created;
      }
      await transport.handleRequest(req, res, body);
    } catch (error) {
      if (!res.headersSent) res.writeHead(500).end(String(error));
    }
  });
  await new Promise<void>((resolve) => http.listen(0, options.host ?? '127.0.0.1', resolve));
  return {
    port: (http.address() as AddressInfo).port,
    calls,
    authorizations,
    sampling,
    forget() {
      transports.clear();
    },
    instruct(text) {
      instructions = text;
    },
    describe(tool, text) {
      descriptions.set(tool, text);
      for (const tools of registered) tools.get(tool)?.update({ description: text });
    },
    async close() {
      for (const transport of [...transports.values(), ...sseTransports.values()])
        await transport.close().catch(() => undefined);
      http.closeAllConnections();
      await new Promise((resolve) => http.close(resolve));
    },
  };
}

/** The official SDK's client, connected to an MCP endpoint (the enforcer's), as an agent. */
export async function connectAgent(
  url: string,
  options: { sampling?: boolean; headers?: Record<string, string>; sse?: boolean } = {},
): Promise<{ client: Client; close: () => Promise<void> }> {
  const client = new Client(
    { name: 'test-agent', version: '1.0.0' },
    { capabilities: options.sampling ? { sampling: {} } : {} },
  );
  if (options.sampling) {
    const { CreateMessageRequestSchema } = await import('@modelcontextprotocol/sdk/types.js');
    client.setRequestHandler(CreateMessageRequestSchema, async () => ({
      role: 'assistant',
      content: { type: 'text', text: 'hi from the model' },
      model: 'test-model',
    }));
  }
  if (options.sse) {
    const transport = new SSEClientTransport(new URL(url));
    await client.connect(transport);
    return { client, close: () => client.close() };
  }
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    ...(options.headers && { requestInit: { headers: options.headers } }),
  });
  await client.connect(transport);
  return {
    client,
    close: async () => {
      await transport.terminateSession().catch(() => undefined);
      await client.close();
    },
  };
}

export interface EnforcedMcp {
  enforcer: Enforcer;
  /** The enforcer's endpoint, where the agent connects. */
  url: string;
  events: SessionEvent[];
  connection: BundleConnection;
}

/** The MCP enforcer in this process, in front of a test server. */
export async function enforceMcp(
  upstream: McpUpstream,
  policies: BundlePolicy[],
  options: {
    mcp?: Partial<NonNullable<BundleConnection['mcp']>>;
    approvals?: Approvals;
    refusal?: () => string | undefined;
    progressEveryMs?: number;
    idleSessionMs?: number;
    credentials?: Record<string, string>;
    tls?: BundleConnection['tls'];
  } = {},
): Promise<EnforcedMcp> {
  const events: SessionEvent[] = [];
  const connection: BundleConnection = {
    name: 'tools',
    namespace: 'default',
    protocol: 'mcp',
    host: '127.0.0.1',
    port: upstream.port,
    tls: options.tls ?? { mode: 'disable' },
    credentials: options.credentials ?? { token: mcpToken },
    mcp: {
      scheme: 'http',
      transport: 'streamable-http',
      path: '/mcp',
      toolChanges: 'require-approval',
      maxMessageBytes: 4 * 1024 * 1024,
      ...options.mcp,
    },
    policies,
  };
  const enforcer = await serveMcp({
    connection,
    identity: { namespace: 'default', serviceAccount: 'agent' },
    listen: { host: '127.0.0.1', port: 0 },
    events: { emit: (event) => events.push(event), ...(options.refusal && { refusal: options.refusal }) },
    approvals: options.approvals ?? noApprovals,
    ...(options.progressEveryMs !== undefined && { progressEveryMs: options.progressEveryMs }),
    ...(options.idleSessionMs !== undefined && { idleSessionMs: options.idleSessionMs }),
  });
  return { enforcer, url: `http://127.0.0.1:${enforcer.address.port}/mcp`, events, connection };
}

export interface RawAnswer {
  status: number;
  /** The JSON-RPC messages of the answer, from a JSON body or an event stream. */
  messages: Record<string, unknown>[];
  text: string;
}

/** An agent that writes the transport by hand: an initialized session and raw posts in it. */
export async function rawSession(url: string): Promise<{ post: (body: string) => Promise<RawAnswer> }> {
  let session: string | undefined;
  const post = async (body: string): Promise<RawAnswer> => {
    const res = await fetch(url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-protocol-version': '2025-06-18',
        ...(session && { 'mcp-session-id': session }),
      },
      body,
    });
    session ??= res.headers.get('mcp-session-id') ?? undefined;
    const text = await res.text();
    const type = res.headers.get('content-type') ?? '';
    const messages = type.startsWith('text/event-stream')
      ? text
          .split('\n')
          .filter((line) => line.startsWith('data: '))
          .map((line) => JSON.parse(line.slice(6)) as Record<string, unknown>)
      : type.startsWith('application/json')
        ? ([JSON.parse(text)].flat() as Record<string, unknown>[])
        : [];
    return { status: res.status, messages, text };
  };
  const init = await post(
    JSON.stringify({
      jsonrpc: '2.0',
      id: 0,
      method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
    }),
  );
  if (init.status !== 200) throw new Error(`initialize answered ${init.status}: ${init.text}`);
  await post(JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }));
  return { post };
}
