// MCP data path: wrk posting JSON-RPC requests in one session of a server built with the
// official SDK (in its own process, answering with JSON), direct vs through the MCP enforcer,
// interleaved round by round: tools/call of a tool whose result the detectors mask, tools/list
// filtered by the policy, and a denied call answered by the enforcer alone. The enforcer runs in
// this process under a realistic policy and builds every request event; the sink only counts
// them, so the rows measure the data path, not a store.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { SessionEvent } from '../api/events.ts';
import { noApprovals } from '../sidecar/core/enforcer.ts';
import { serveMcp } from '../sidecar/mcp/enforcer.ts';
import { policy } from '../sidecar/policy/fixtures.ts';
import { mcpToken } from '../test/support/mcp.ts';
import { startService, waitFor } from '../test/support/process.ts';
import { findTool } from '../test/support/tools.ts';

const run = promisify(execFile);
const seconds = Number(process.env.BENCH_SECONDS ?? 5);
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const connections = Number(process.env.BENCH_CONNECTIONS ?? 8);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

if (!findTool('wrk')) {
  console.log('mcp bench not run: wrk is missing (apt-get install wrk)');
  process.exit(0);
}

const work = mkdtempSync(join(tmpdir(), 'airlock-bench-mcp-'));
// The server in its own process, so it does not share the enforcer's event loop.
const serverSource = `
import { startMcpServer } from ${JSON.stringify(new URL('../test/support/mcp.ts', import.meta.url).pathname)};
const server = await startMcpServer({ json: true });
console.log('port ' + server.port);
`;
writeFileSync(join(work, 'server.ts'), serverSource);
const server = startService('mcp-server', process.execPath, [join(work, 'server.ts')], {
  logFile: join(work, 'server.log'),
});
let serverPort = 0;
await waitFor(
  'mcp-server',
  async () => {
    const log = await import('node:fs/promises').then((fs) => fs.readFile(join(work, 'server.log'), 'utf8'));
    serverPort = Number(/port (\d+)/.exec(log)?.[1] ?? 0);
    return serverPort > 0;
  },
  { service: server },
);

let recorded = 0;
const agents = policy({
  name: 'bench-agents',
  masking: [{ name: 'pii', detectors: ['email', 'credit-card'], strategy: 'redact', indirectUse: 'deny' }],
  rules: [
    { name: 'no-deletes', action: 'deny', mcp: { tools: ['delete_*'] } },
    {
      name: 'no-system-files',
      action: 'deny',
      mcp: { tools: ['read_file'], arguments: [{ path: '$.path', glob: '/etc/*' }] },
    },
  ],
});
const enforcer = await serveMcp({
  connection: {
    name: 'tools',
    namespace: 'default',
    protocol: 'mcp',
    host: '127.0.0.1',
    port: serverPort,
    tls: { mode: 'disable' },
    credentials: { token: mcpToken },
    mcp: {
      scheme: 'http',
      transport: 'streamable-http',
      path: '/mcp',
      toolChanges: 'require-approval',
      maxMessageBytes: 4 * 1024 * 1024,
    },
    policies: [agents],
  },
  identity: { namespace: 'default', serviceAccount: 'bench' },
  listen: { host: '127.0.0.1', port: 0 },
  events: { emit: (event: SessionEvent) => void (event.type === 'request' && recorded++) },
  approvals: noApprovals,
});

/** An initialized session at an endpoint: its Mcp-Session-Id. */
async function session(url: string): Promise<string> {
  const headers = {
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    authorization: `Bearer ${mcpToken}`,
  };
  const res = await fetch(url, {
    method: 'POST',
    headers,
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 0,
      method: 'initialize',
      params: {
        protocolVersion: '2025-06-18',
        capabilities: {},
        clientInfo: { name: 'bench', version: '1' },
      },
    }),
  });
  await res.text();
  const id = res.headers.get('mcp-session-id');
  if (!id) throw new Error(`${url}: no session (HTTP ${res.status})`);
  await fetch(url, {
    method: 'POST',
    headers: { ...headers, 'mcp-session-id': id },
    body: '{"jsonrpc":"2.0","method":"notifications/initialized"}',
  }).then((r) => r.text());
  return id;
}

/** A wrk script posting one method with fresh ids (JSON-RPC ids must not repeat in flight). */
function script(name: string, sessionId: string, method: string, params: unknown): string {
  const file = join(work, `${name}.lua`);
  const template = JSON.stringify({ jsonrpc: '2.0', id: 0, method, params }).replace('"id":0', '"id":%d');
  writeFileSync(
    file,
    `local n = 0
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.headers["accept"] = "application/json, text/event-stream"
wrk.headers["mcp-protocol-version"] = "2025-06-18"
wrk.headers["mcp-session-id"] = "${sessionId}"
wrk.headers["authorization"] = "Bearer ${mcpToken}"
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, string.format([[${template}]], n))
end
`,
  );
  return file;
}

async function load(url: string, lua: string): Promise<number> {
  const { stdout } = await run(
    'wrk',
    ['-t1', `-c${connections}`, `-d${seconds}s`, '--timeout', '10s', '-s', lua, url],
    {
      maxBuffer: 1 << 20,
    },
  );
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1];
  if (!rps || /Non-2xx/.test(stdout)) throw new Error(`wrk: ${stdout}`);
  return Number(rps);
}

const direct = `http://127.0.0.1:${serverPort}/mcp`;
const through = `http://127.0.0.1:${enforcer.address.port}/mcp`;
const sessions = { direct: await session(direct), through: await session(through) };
const cases = [
  {
    name: 'tools/call (result masked)',
    method: 'tools/call',
    params: { name: 'read_file', arguments: { path: '/srv/a' } },
  },
  { name: 'tools/list (filtered)', method: 'tools/list', params: {} },
  {
    name: 'tools/call denied',
    method: 'tools/call',
    params: { name: 'delete_file', arguments: { path: '/srv/a' } },
  },
];
console.log(
  `MCP: wrk -c${connections}, ${seconds}s × ${rounds} rounds, direct and through the enforcer interleaved; medians.`,
);
console.log('| request | direct req/s | enforcer req/s | ratio |');
console.log('| --- | --- | --- | --- |');
try {
  for (const c of cases) {
    const a: number[] = [];
    const b: number[] = [];
    const luaDirect = script(`direct-${cases.indexOf(c)}`, sessions.direct, c.method, c.params);
    const luaThrough = script(`through-${cases.indexOf(c)}`, sessions.through, c.method, c.params);
    for (let round = 0; round < rounds; round++) {
      a.push(await load(direct, luaDirect));
      b.push(await load(through, luaThrough));
    }
    const [x, y] = [median(a), median(b)];
    // A denied call never reaches the server: the direct column is the server running it.
    console.log(`| ${c.name} | ${Math.round(x)} | ${Math.round(y)} | ${(y / x).toFixed(2)}× |`);
  }
  console.log(`(${recorded} events built)`);
} finally {
  await enforcer.close();
  await server.stop();
  rmSync(work, { recursive: true, force: true });
}
