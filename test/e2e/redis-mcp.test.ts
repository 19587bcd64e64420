// An injected agent pod on a real single-node cluster whose unchanged clients speak to a Redis
// Connection (Debian's redis-cli) and an MCP Connection (python3's urllib writing the
// streamable HTTP transport): a real redis-server and the official SDK's MCP server run on the
// node behind Services, the sidecar holds their credentials, decides, masks, holds a write for
// a person's approval, and records the sessions the approver then reads with kubectl airlock.
// Going around the sidecar fails.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type Cluster, requiresCluster, startCluster } from '../support/cluster.ts';
import { type McpUpstream, mcpToken, secretText, startMcpServer } from '../support/mcp.ts';
import { grantApprovers, grantSessionReaders } from '../support/operator.ts';
import { waitFor } from '../support/process.ts';
import { type RedisServer, startRedis } from '../support/redis.ts';
import { requires } from '../support/tools.ts';

const cache = 'sessions-cache.data.svc.cluster.local';
const tools = 'tools-mcp.data.svc.cluster.local';
const card = '4111 1111 1111 1111';

/**
 * The agent's MCP client: initializes a session, then posts each request in it (ids from 1)
 * and prints every answer as {status, messages} (from a JSON body or an event stream).
 */
const mcpClient = `
import json, sys, urllib.request, urllib.error
url, session = sys.argv[1], None
def post(message):
    global session
    headers = {'content-type': 'application/json', 'accept': 'application/json, text/event-stream',
               'mcp-protocol-version': '2025-06-18'}
    if session: headers['mcp-session-id'] = session
    request = urllib.request.Request(url, data=json.dumps(message).encode(), headers=headers, method='POST')
    try:
        res = urllib.request.urlopen(request, timeout=30)
    except urllib.error.HTTPError as e:
        return {'status': e.code, 'messages': [], 'text': e.read().decode()}
    session = session or res.headers.get('mcp-session-id')
    text, kind = res.read().decode(), res.headers.get('content-type', '')
    if kind.startswith('text/event-stream'):
        messages = [json.loads(line[6:]) for line in text.splitlines() if line.startswith('data: ')]
    elif kind.startswith('application/json'):
        messages = [json.loads(text)]
        messages = messages[0] if isinstance(messages[0], list) else messages
    else:
        messages = []
    return {'status': res.status, 'messages': messages}
answers = [post({'jsonrpc': '2.0', 'id': 0, 'method': 'initialize', 'params': {
    'protocolVersion': '2025-06-18', 'capabilities': {}, 'clientInfo': {'name': 'agent', 'version': '1'}}})]
post({'jsonrpc': '2.0', 'method': 'notifications/initialized'})
for i, message in enumerate(json.loads(sys.argv[2])):
    answers.append(post({'jsonrpc': '2.0', 'id': i + 1, **message}))
print(json.dumps(answers))
`;

interface McpAnswer {
  status: number;
  messages: { id?: number; result?: Record<string, unknown>; error?: { code: number; message: string } }[];
  text?: string;
}

describe('an injected agent pod on a real cluster: redis-cli and an MCP client', {
  ...requiresCluster(),
  ...requires('redis-server', 'redis-cli'),
}, () => {
  let cluster: Cluster;
  let redis: RedisServer;
  let mcp: McpUpstream;
  const kubectl = (args: string[], input?: string) =>
    cluster.kubectl(args, input === undefined ? {} : { input });
  const apply = (manifest: object) => kubectl(['apply', '-f', '-'], JSON.stringify(manifest));
  const airlock = (args: string[]) => cluster.plugin('approver', [...args, '-n', 'agents']);
  // The agent's own redis-cli, with a password of its own that the sidecar swallows.
  const redisCli = (args: string[], to = cache, port = 6379) =>
    cluster.exec('agent-0', [
      'redis-cli',
      '-h',
      to,
      '-p',
      String(port),
      '-a',
      'not-the-password',
      '--no-auth-warning',
      ...args,
    ]);
  const mcpCall = async (requests: object[], url = `http://${tools}/mcp`): Promise<McpAnswer[]> => {
    const run = await cluster.exec('agent-0', ['python3', '-c', mcpClient, url, JSON.stringify(requests)]);
    assert.equal(run.code, 0, run.stderr);
    return JSON.parse(run.stdout);
  };
  const sessionList = async () => {
    const list = await airlock(['sessions', 'list', '-o', 'json']);
    assert.equal(list.code, 0, list.err);
    return JSON.parse(list.out) as { id: string; connection: string; blocked: number }[];
  };
  const sessionTimelines = async () => {
    const sessions = await sessionList();
    const shown = await Promise.all(sessions.map((s) => airlock(['sessions', 'show', s.id])));
    return { sessions, all: shown.map((s) => s.out).join('\n') };
  };

  before(async () => {
    cluster = await startCluster();
    redis = await startRedis({ bind: cluster.nodeIp });
    mcp = await startMcpServer({ host: cluster.nodeIp });
    await cluster.serviceOnNode('data', 'sessions-cache', 6379, redis.port);
    await cluster.serviceOnNode('data', 'tools-mcp', 80, mcp.port);
    await cluster.installAirlock();

    await kubectl(['create', 'namespace', 'agents']);
    await kubectl(['label', 'namespace', 'agents', 'airlock.dev/injection=enabled']);
    await kubectl(['create', 'serviceaccount', 'agent', '-n', 'agents']);
    const secret = (name: string, stringData: Record<string, string>) =>
      apply({ apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: 'agents' }, stringData });
    // The sidecar logs in as the ACL user; the agent knows neither it nor its password.
    await secret('sessions-cache', { username: redis.user.name, password: redis.user.password });
    await secret('tools-mcp', { token: mcpToken });
    const connection = (name: string, spec: object) =>
      apply({
        apiVersion: 'airlock.dev/v1alpha1',
        kind: 'Connection',
        metadata: { name, namespace: 'agents' },
        spec: { tls: { mode: 'disable' }, credentials: { secretRef: { name } }, ...spec },
      });
    await connection('sessions-cache', { protocol: 'redis', host: cache, port: 6379 });
    await connection('tools-mcp', { protocol: 'mcp', host: tools, port: 80, mcp: { scheme: 'http' } });
    const policy = (name: string, connections: string[], spec: object) =>
      apply({
        apiVersion: 'airlock.dev/v1alpha1',
        kind: 'AccessPolicy',
        metadata: { name, namespace: 'agents' },
        spec: { subjects: [{ kind: 'ServiceAccount', name: 'agent' }], connections, ...spec },
      });
    await policy('agent-cache', ['sessions-cache'], {
      masking: [
        { name: 'pii', detectors: ['email', 'credit-card'], strategy: 'redact' },
        { name: 'tokens', keys: ['token:*'], strategy: 'redact' },
      ],
      rules: [
        { name: 'no-dangerous', action: 'deny', redis: { classes: ['dangerous'] } },
        {
          name: 'order-deletes',
          action: 'require-approval',
          redis: { commands: ['DEL', 'UNLINK'], keys: ['orders:*'] },
          approval: { approvers: { groups: ['dba-oncall'] }, timeout: '2m' },
        },
      ],
    });
    await policy('agent-tools', ['tools-mcp'], {
      masking: [{ name: 'pii', detectors: ['email', 'credit-card'], strategy: 'redact' }],
      rules: [{ name: 'no-deletes', action: 'deny', mcp: { tools: ['delete_*'] } }],
    });
    // Approvers need RBAC on AccessRequests (the admission webhooks decide who may decide),
    // and read the recorded sessions of "agents" with the chart's airlock-session-reader.
    await grantApprovers(cluster, { groups: ['dba-oncall'] });
    await grantSessionReaders(cluster, ['dba-oncall']);
    for (const name of ['sessions-cache', 'tools-mcp'])
      await waitFor(
        `Connection ${name} ready`,
        async () =>
          (await kubectl([
            'get',
            'conn',
            name,
            '-n',
            'agents',
            '-o',
            'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
          ])) === 'True',
      );
    await redis.admin.set('greeting', 'hello');
    await redis.admin.set('token:ada', 'tok-7f3a9c');
    await redis.admin.set('note:ada', 'write to ada@example.com');
    await redis.admin.set('orders:1', 'pending');
    await cluster.runAgent('agent-0');
  });
  after(async () => {
    await cluster?.stop();
    await mcp?.close();
    await redis?.stop();
  });

  test("redis-cli gets an allowed key with the held ACL user's credential, its own AUTH swallowed", async () => {
    const get = await redisCli(['GET', 'greeting']);
    assert.equal(get.code, 0, get.stderr);
    assert.equal(get.stdout.trim(), 'hello');
    const who = await redisCli(['ACL', 'WHOAMI']);
    assert.equal(who.stdout.trim(), redis.user.name);
    // An explicit AUTH with the agent's guess is answered by the sidecar, never forwarded.
    const auth = await redisCli(['AUTH', 'default', 'guess']);
    assert.equal(auth.stdout.trim(), 'OK');
    assert.equal(JSON.stringify(await redis.admin.call('ACL', 'LOG')).includes('guess'), false);
  });

  test('a value under a masked key glob and one with an email come back masked', async () => {
    const token = await redisCli(['GET', 'token:ada']);
    assert.equal(token.code, 0, token.stderr);
    assert.notEqual(token.stdout.trim(), '');
    assert.ok(!token.stdout.includes('tok-7f3a9c'), token.stdout);
    const note = await redisCli(['GET', 'note:ada']);
    assert.match(note.stdout, /^write to /);
    assert.ok(!note.stdout.includes('ada@example.com'), note.stdout);
    // The same values through another reply shape (an array) are masked too.
    const both = await redisCli(['MGET', 'token:ada', 'note:ada']);
    assert.ok(!/tok-7f3a9c|ada@example\.com/.test(both.stdout), both.stdout);
  });

  test('FLUSHALL and CONFIG SET, in any casing or inside a transaction, are refused and nothing changes', async () => {
    for (const args of [
      ['FLUSHALL'],
      ['flushall', 'ASYNC'],
      ['FlushDB'],
      ['CONFIG', 'SET', 'maxmemory', '1'],
      ['config', 'set', 'requirepass', ''],
    ]) {
      const refused = await redisCli(args);
      assert.match(
        refused.stdout,
        /^NOPERM airlock: command (FLUSHALL|FLUSHDB|CONFIG) denied by AccessPolicy "agent-cache" rule "no-dangerous"/,
        args.join(' '),
      );
    }
    // Queued in MULTI, the transaction is decided whole at EXEC: none of it runs.
    const transaction = await cluster.exec('agent-0', [
      'sh',
      '-c',
      `printf 'MULTI\nSET greeting changed\nCONFIG SET maxmemory 1\nEXEC\n' | redis-cli -h ${cache} -p 6379 -a not-the-password --no-auth-warning`,
    ]);
    assert.match(transaction.stdout, /EXECABORT/, transaction.stdout);
    assert.equal(await redis.admin.get('greeting'), 'hello');
    assert.equal(await redis.admin.config('GET', 'maxmemory').then((r) => (r as string[])[1]), '0');
  });

  test('a held DEL becomes an AccessRequest; alice approves it with kubectl airlock and it runs', async () => {
    const del = redisCli(['DEL', 'orders:1']);
    let name = '';
    await waitFor('the AccessRequest', async () => {
      const list = JSON.parse(await kubectl(['get', 'ar', '-n', 'agents', '-o', 'json']));
      name =
        list.items.find((r: { spec: { request: string } }) => r.spec.request.includes('orders:1'))?.metadata
          .name ?? '';
      return name !== '';
    });
    const held = JSON.parse(await kubectl(['get', 'ar', name, '-n', 'agents', '-o', 'json']));
    assert.deepEqual(held.spec.requester, { pod: 'agent-0', serviceAccount: 'agent' });
    assert.equal(held.spec.rule, 'order-deletes');
    assert.equal(await redis.admin.exists('orders:1'), 1, 'nothing ran while it was held');
    const approve = await airlock(['approve', name]);
    assert.equal(approve.code, 0, approve.out);
    const result = await del;
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.trim(), '1');
    assert.equal(await redis.admin.exists('orders:1'), 0);
  });

  test('bypass: redis-server at its node address and at its Service IP is refused', async () => {
    const clusterIp = JSON.parse(
      await kubectl(['get', 'service', 'sessions-cache', '-n', 'data', '-o', 'json']),
    ).spec.clusterIP as string;
    for (const [to, port] of [
      [cluster.nodeIp, redis.port],
      [clusterIp, 6379],
    ] as const) {
      const direct = await redisCli(['GET', 'token:ada'], to, port);
      assert.ok(!direct.stdout.includes('tok-7f3a9c'), `${to}:${port}`);
      assert.match(`${direct.stdout}${direct.stderr}`, /Connection refused/, `${to}:${port}`);
    }
  });

  test('the MCP client initializes, sees the denied tool withheld, and gets a masked result', async () => {
    const [init, list, read] = await mcpCall([
      { method: 'tools/list' },
      { method: 'tools/call', params: { name: 'read_file', arguments: { path: '/srv/notes' } } },
    ]);
    assert.equal(init?.status, 200, init?.text);
    assert.equal((init.messages[0]!.result!.serverInfo as { name: string }).name, 'test-server');
    const names = (list!.messages[0]!.result!.tools as { name: string }[]).map((t) => t.name);
    assert.ok(names.includes('read_file'), names.join());
    assert.ok(!names.includes('delete_file'), names.join());
    const text = JSON.stringify(read?.messages[0]?.result);
    assert.match(text, /\/srv\/notes: contact /);
    assert.ok(!text.includes('ada@example.com') && !text.includes(card), text);
    assert.ok(mcp.calls.includes('read_file {"path":"/srv/notes"}'));
    assert.ok(mcp.authorizations.every((a) => a === `Bearer ${mcpToken}`));
  });

  test('a denied tool call, in any casing, is refused with its JSON-RPC error and never runs', async () => {
    const before = mcp.calls.length;
    const [, denied, cased] = await mcpCall([
      { method: 'tools/call', params: { name: 'delete_file', arguments: { path: '/srv/notes' } } },
      { method: 'tools/call', params: { name: 'DELETE_File', arguments: { path: '/srv/notes' } } },
    ]);
    for (const answer of [denied, cased]) {
      const error = answer?.messages[0]?.error;
      assert.ok(error, JSON.stringify(answer));
      assert.ok(error.code < 0, JSON.stringify(error));
      assert.match(error.message, /AccessPolicy "agent-tools" rule "no-deletes"/);
    }
    assert.equal(mcp.calls.length, before);
  });

  test('bypass: the MCP server at its node address is refused', async () => {
    const direct = await cluster.exec('agent-0', [
      'curl',
      '-sS',
      '--max-time',
      '10',
      '-H',
      `authorization: Bearer ${mcpToken}`,
      `http://${cluster.nodeIp}:${mcp.port}/mcp`,
    ]);
    assert.equal(direct.code, 7, direct.stderr);
  });

  test("the sidecar's log holds no credential and no unmasked value", async () => {
    const log = await cluster.logs('agent-0', 'airlock-sidecar');
    assert.match(log, /"protocol":"redis"/);
    assert.match(log, /"protocol":"mcp"/);
    for (const secret of [redis.user.password, mcpToken, 'tok-7f3a9c', 'ada@example.com', card])
      assert.ok(!log.includes(secret), secret);
  });

  test('alice reads the recorded Redis and MCP sessions: the refusals, the approved DEL, no secrets', async () => {
    await waitFor(
      'the sessions reach the collector',
      async () => {
        const sessions = await sessionList();
        return ['sessions-cache', 'tools-mcp'].every((c) =>
          sessions.some((s) => s.connection === c && s.blocked > 0),
        );
      },
      { timeoutMs: 120_000 },
    );
    const { all } = await sessionTimelines();
    assert.match(all, /blocked\s+FLUSHALL/);
    assert.match(all, /approved\s+DEL orders:1\s+\[.*decided by alice/);
    assert.match(all, /blocked\s+.*delete_file/);
    for (const secret of ['tok-7f3a9c', 'ada@example.com', secretText])
      assert.ok(!all.includes(secret), `no unmasked value in the recorded sessions: ${secret}`);
  });
});
