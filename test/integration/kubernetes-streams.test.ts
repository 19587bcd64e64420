// kubectl exec and attach through the Kubernetes enforcer: the real kubectl as the agent, and as
// the API server a stand-in that speaks the v5 channel protocol over WebSocket with the `ws`
// library (a WebSocket implementation apart from the enforcer's), so every frame the enforcer
// writes is read by someone else's parser. Commands decided, holds approved, output masked and
// recorded, stdin recorded, refusals shown by kubectl, and handshakes and frames that break the
// rules ending the stream. The real API server and kubelet behind it: test/e2e/kubernetes.test.ts.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { createRequire } from 'node:module';
import { type AddressInfo, connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import type { BundlePolicy } from '../../api/bundle.ts';
import type { DataEvent, RequestEvent, SessionEvent } from '../../api/events.ts';
import { agentKubeconfig, listenerUrl } from '../../local/kubeconfig.ts';
import type { ApprovalRequest, Enforcer } from '../../sidecar/core/enforcer.ts';
import { serveKubernetes } from '../../sidecar/kubernetes/enforcer.ts';
import { policy } from '../../sidecar/policy/fixtures.ts';
import { requires, tool } from '../support/tools.ts';

interface WsSocket {
  protocol: string;
  send(data: Buffer): void;
  close(code?: number): void;
  on(event: 'message', listener: (data: Buffer, binary: boolean) => void): void;
  on(event: 'close', listener: () => void): void;
}
interface WsServer {
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, done: (ws: WsSocket) => void): void;
  close(): void;
}
const { WebSocketServer } = createRequire(import.meta.url)('ws') as {
  WebSocketServer: new (options: {
    noServer: true;
    handleProtocols: (protocols: Set<string>) => string | false;
  }) => WsServer;
};

const token = 'held-cluster-token';
const pod = {
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: 'shell', namespace: 'default' },
  spec: { containers: [{ name: 'main', image: 'registry.example/shell:1' }] },
  status: { phase: 'Running' },
};

/** Discovery as kubectl reads it, and the pod. */
const discovery: Record<string, unknown> = {
  '/api': { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [] },
  '/apis': { kind: 'APIGroupList', apiVersion: 'v1', groups: [] },
  '/api/v1': {
    kind: 'APIResourceList',
    groupVersion: 'v1',
    resources: [
      { name: 'pods', singularName: 'pod', namespaced: true, kind: 'Pod', verbs: ['get', 'list'] },
      {
        name: 'pods/exec',
        singularName: '',
        namespaced: true,
        kind: 'PodExecOptions',
        verbs: ['create', 'get'],
      },
      {
        name: 'pods/attach',
        singularName: '',
        namespaced: true,
        kind: 'PodAttachOptions',
        verbs: ['create', 'get'],
      },
      {
        name: 'pods/portforward',
        singularName: '',
        namespaced: true,
        kind: 'PodPortForwardOptions',
        verbs: ['create', 'get'],
      },
    ],
  },
  '/api/v1/namespaces/default/pods/shell': pod,
};

/** What the stand-in saw: each stream's command and the stdin it read. */
interface Seen {
  url: string;
  authorization: string | undefined;
  stdin: string;
}

/** The stand-in API server: GET of the pod, and exec/attach streams that run a few commands. */
async function startApiServer(): Promise<{ server: Server; port: number; seen: Seen[] }> {
  const seen: Seen[] = [];
  const wss = new WebSocketServer({
    noServer: true,
    handleProtocols: (protocols) => (protocols.has('v5.channel.k8s.io') ? 'v5.channel.k8s.io' : false),
  });
  const server = createServer((req, res) => {
    if (req.headers.authorization !== `Bearer ${token}`) {
      res.writeHead(401).end();
      return;
    }
    const found = discovery[(req.url ?? '').split('?')[0]!];
    if (found) {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(found));
      return;
    }
    res.writeHead(404, { 'content-type': 'application/json' }).end(
      JSON.stringify({
        kind: 'Status',
        apiVersion: 'v1',
        status: 'Failure',
        message: 'not found',
        code: 404,
      }),
    );
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const entry: Seen = { url: req.url ?? '', authorization: req.headers.authorization, stdin: '' };
    seen.push(entry);
    if (req.headers.authorization !== `Bearer ${token}`) {
      socket.end('HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      const out = (channel: number, text: string) =>
        ws.send(Buffer.concat([Buffer.from([channel]), Buffer.from(text)]));
      const exit = (code: number) => {
        out(
          3,
          JSON.stringify(
            code === 0
              ? { metadata: {}, status: 'Success' }
              : {
                  metadata: {},
                  status: 'Failure',
                  message: `command terminated with non-zero exit code: ${code}`,
                  reason: 'NonZeroExitCode',
                  details: { causes: [{ reason: 'ExitCode', message: String(code) }] },
                },
          ),
        );
        ws.close(1000);
      };
      const command = url.searchParams.getAll('command');
      ws.on('message', (data) => {
        if (data[0] === 0) {
          entry.stdin += data.subarray(1).toString();
          // An interactive shell: each line echoed, `exit` ends it.
          for (const line of data.subarray(1).toString().split('\n').filter(Boolean)) {
            if (line === 'exit') exit(0);
            else out(1, `$ ${line}\nran ${line} for ops@example.com\n`);
          }
        }
      });
      if (command.join(' ') === 'cat /etc/hostname') {
        out(1, 'shell-host\n');
        // Split mid-value: the masker must hold the start until the rest comes.
        out(1, 'owner: ada.lovel');
        setTimeout(() => {
          out(1, 'ace@example.com\n');
          out(2, 'warning from bob@example.com\n');
          exit(0);
        }, 50);
      } else if (command.join(' ') === 'false') exit(3);
      else if (command.join(' ') === 'date -u') {
        out(1, 'Thu Dec  3 12:00:00 UTC 2026\n');
        exit(0);
      } else if (url.pathname.endsWith('/attach')) out(1, 'attached\n');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port, seen };
}

const masking = [
  { name: 'pii', detectors: ['email' as const], strategy: 'redact' as const, indirectUse: 'deny' as const },
];

/** Command rules, so interactive streams are refused. */
const governed = policy({
  name: 'pod-agents',
  masking,
  rules: [
    { name: 'no-file-deletion', action: 'deny', ssh: { classes: ['file-deletion'] } },
    {
      name: 'approve-date',
      action: 'require-approval',
      ssh: { commands: ['date*'] },
      approval: { approvers: { groups: ['ops'] }, timeout: '1m', scope: 'statement' },
    },
  ],
});

/** No command rules: interactive shells are allowed, recorded and masked. */
const shells = policy({ name: 'pod-shells', masking, rules: [] });

describe('Kubernetes enforcer: exec and attach streams', requires('kubectl'), () => {
  let api: Awaited<ReturnType<typeof startApiServer>>;
  const started: Enforcer[] = [];
  const held: ApprovalRequest[] = [];

  before(async () => {
    api = await startApiServer();
  });
  after(async () => {
    for (const enforcer of started) await enforcer.close();
    api?.server.closeAllConnections();
    await new Promise((resolve) => api?.server.close(resolve));
  });

  async function enforce(policies: BundlePolicy[]) {
    const events: SessionEvent[] = [];
    const enforcer = await serveKubernetes({
      connection: {
        name: 'cluster',
        namespace: 'default',
        protocol: 'kubernetes',
        host: '127.0.0.1',
        port: api.port,
        tls: { mode: 'disable' },
        credentials: { token },
        policies,
      },
      identity: { namespace: 'default', serviceAccount: 'agent' },
      listen: { host: '127.0.0.1', port: 0 },
      events: { emit: (event) => events.push(event) },
      approvals: {
        request: async (request) => {
          held.push(request);
          return { approved: true, outcome: 'approved', decidedBy: 'alice', request: 'ar-7' };
        },
      },
    });
    started.push(enforcer);
    const file = join(tmpdir(), `airlock-streams-${enforcer.address.port}.kubeconfig`);
    await writeFile(
      file,
      agentKubeconfig({ connection: 'cluster', server: listenerUrl(enforcer.address), namespace: 'default' }),
    );
    const kubectl = (args: string[], input?: string, env: Record<string, string> = {}) =>
      new Promise<{ code: number; out: string; err: string }>((resolve) => {
        const child = execFile(
          tool('kubectl'),
          args,
          { env: { ...process.env, KUBECONFIG: file, HOME: tmpdir(), ...env }, timeout: 60_000 },
          (error, out, err) =>
            resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, out, err }),
        );
        child.stdin?.end(input ?? '');
      });
    const requests = () => events.filter((e): e is RequestEvent => e.type === 'request');
    const data = () => events.filter((e): e is DataEvent => e.type === 'data');
    return { enforcer, events, kubectl, requests, data };
  }

  it('runs an allowed exec with the held token, masks its output split across frames, and records it', async () => {
    const { kubectl, requests, data } = await enforce([governed]);
    const before = api.seen.length;
    const result = await kubectl(['exec', 'shell', '--', 'cat', '/etc/hostname']);
    assert.equal(result.code, 0, result.err);
    assert.equal(result.out, 'shell-host\nowner: [REDACTED:email]\n');
    assert.equal(result.err, 'warning from [REDACTED:email]\n');
    const seen = api.seen.slice(before);
    assert.equal(seen.length, 1);
    assert.equal(seen[0]!.authorization, `Bearer ${token}`);
    const event = requests().find((e) => e.text.endsWith('-- cat /etc/hostname'));
    assert.equal(event?.outcome, 'masked');
    assert.equal(event?.exitStatus, 0);
    assert.equal(event?.kind, 'kubernetes-stream');
    assert.deepEqual(event?.masked, { 'pii/email': 2 });
    const output = data()
      .filter((e) => e.stream === 'output')
      .map((e) => e.data)
      .join('');
    assert.match(output, /shell-host/);
    assert.ok(!output.includes('example.com'), 'the recording holds no unmasked value');
  });

  it("passes the command's exit status on to kubectl", async () => {
    const { kubectl, requests } = await enforce([governed]);
    const result = await kubectl(['exec', 'shell', '--', 'false']);
    assert.equal(result.code, 3, result.err);
    assert.equal(requests().find((e) => e.text.endsWith('-- false'))?.exitStatus, 3);
  });

  it('refuses exec -- rm -rf / by the command rule, in every spelling, before the API server sees it', async () => {
    const { kubectl, requests } = await enforce([governed]);
    const before = api.seen.length;
    for (const argv of [
      ['rm', '-rf', '/'],
      ['/bin/rm', '-r', '-f', '/'],
      ['sh', '-c', 'rm -rf /'],
      ['env', 'rm', '-rf', '/'],
      ['busybox', 'rm', '-rf', '/'],
    ]) {
      const result = await kubectl(['exec', 'shell', '--', ...argv]);
      assert.notEqual(result.code, 0, argv.join(' '));
      assert.match(
        result.err,
        /airlock: request denied by AccessPolicy "pod-agents" rule "no-file-deletion"/,
      );
    }
    assert.equal(api.seen.length, before, 'no refused stream reached the API server');
    const streams = requests().filter((e) => e.kind === 'kubernetes-stream');
    assert.equal(streams.length, 5);
    assert.ok(streams.every((e) => e.outcome === 'blocked' && e.rule === 'no-file-deletion'));
  });

  it('holds an exec for approval, says so on the stream, and runs it once approved', async () => {
    const { kubectl, requests } = await enforce([governed]);
    const result = await kubectl(['exec', 'shell', '--', 'date', '-u']);
    assert.equal(result.code, 0, result.err);
    assert.match(result.err, /requires approval by AccessPolicy "pod-agents" rule "approve-date"/);
    assert.match(result.out, /UTC 2026/);
    const hold = held.find((h) => h.text.endsWith('-- date -u'));
    assert.equal(hold?.rule, 'approve-date');
    const event = requests().find((e) => e.text.endsWith('-- date -u'));
    assert.equal(event?.outcome, 'approved');
    assert.deepEqual(event?.approval, { request: 'ar-7', decidedBy: 'alice' });
  });

  it('refuses an interactive exec where the policy has command rules, as an SSH shell is', async () => {
    const { kubectl } = await enforce([governed]);
    const before = api.seen.length;
    for (const args of [
      ['exec', '-i', 'shell', '--', 'cat', '/etc/hostname'],
      ['exec', '-it', 'shell', '--', 'cat', '/etc/hostname'],
      ['attach', '-i', 'shell'],
    ]) {
      const result = await kubectl(args, 'rm -rf /\n');
      assert.notEqual(result.code, 0, args.join(' '));
      assert.match(
        result.err,
        /interactive exec or attach \(stdin\) cannot be checked against command rules/,
      );
    }
    // A shell reading its script from stdin is refused by the command analysis first.
    const shell = await kubectl(['exec', '-i', 'shell', '--', 'sh'], 'rm -rf /\n');
    assert.match(shell.err, /sh reads its script from stdin/);
    assert.equal(api.seen.length, before);
  });

  it('relays an interactive shell where no command rule applies, recording input and masked output', async () => {
    const { kubectl, requests, data } = await enforce([shells]);
    const result = await kubectl(['exec', '-i', 'shell', '--', 'sh'], 'id\nls\nexit\n');
    assert.equal(result.code, 0, result.err);
    assert.equal(result.out, '$ id\nran id for [REDACTED:email]\n$ ls\nran ls for [REDACTED:email]\n');
    assert.equal(api.seen.at(-1)!.stdin, 'id\nls\nexit\n');
    const input = data()
      .filter((e) => e.stream === 'input')
      .map((e) => e.data)
      .join('');
    assert.equal(input, 'id\nls\nexit\n');
    const event = requests().find((e) => e.text.endsWith('-- sh'));
    assert.equal(event?.outcome, 'masked');
    assert.equal(event?.exitStatus, 0);
  });

  it('relays kubectl attach without stdin', async () => {
    const { kubectl } = await enforce([shells]);
    const child = kubectl(['attach', 'shell']);
    const result = await Promise.race([
      child,
      new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 3000)),
    ]);
    // attach follows the container until it ends; the stand-in never ends it.
    assert.equal(result, undefined);
  });

  it('refuses port-forward unless a rule names the portforward subresource', async () => {
    const { kubectl } = await enforce([shells]);
    const result = await kubectl(['port-forward', 'shell', '8080:80', '--address=127.0.0.1']);
    assert.notEqual(result.code, 0);
    assert.match(
      result.err,
      /port-forward requests are refused unless a rule names the portforward subresource/,
    );
  });

  describe('over SPDY, as kubectl speaks it when told to (KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false)', () => {
    const spdy = { KUBECTL_REMOTE_COMMAND_WEBSOCKETS: 'false' };

    it('runs an allowed exec through the same masker and recorder, reaching the API server over WebSocket', async () => {
      const { kubectl, requests } = await enforce([governed]);
      const before = api.seen.length;
      const result = await kubectl(['exec', 'shell', '--', 'cat', '/etc/hostname'], undefined, spdy);
      assert.equal(result.code, 0, result.err);
      assert.equal(result.out, 'shell-host\nowner: [REDACTED:email]\n');
      assert.equal(result.err, 'warning from [REDACTED:email]\n');
      assert.equal(api.seen.length, before + 1);
      assert.equal(api.seen.at(-1)!.authorization, `Bearer ${token}`);
      const event = requests().find((e) => e.text.endsWith('-- cat /etc/hostname'));
      assert.equal(event?.outcome, 'masked');
      assert.equal(event?.exitStatus, 0);
      assert.deepEqual(event?.masked, { 'pii/email': 2 });
      const failing = await kubectl(['exec', 'shell', '--', 'false'], undefined, spdy);
      assert.equal(failing.code, 3, failing.err);
    });

    it('refuses exec -- rm -rf / by the command rule, shown on the error stream', async () => {
      const { kubectl, requests } = await enforce([governed]);
      const before = api.seen.length;
      for (const argv of [
        ['rm', '-rf', '/'],
        ['sh', '-c', 'rm -rf /'],
      ]) {
        const result = await kubectl(['exec', 'shell', '--', ...argv], undefined, spdy);
        assert.notEqual(result.code, 0, argv.join(' '));
        assert.match(
          result.err,
          /airlock: request denied by AccessPolicy "pod-agents" rule "no-file-deletion"/,
        );
      }
      assert.equal(api.seen.length, before, 'no refused stream reached the API server');
      const streams = requests().filter((e) => e.kind === 'kubernetes-stream');
      assert.ok(streams.length === 2 && streams.every((e) => e.outcome === 'blocked'));
    });

    it('holds an exec, says so on the stream, and runs it once approved', async () => {
      const { kubectl, requests } = await enforce([governed]);
      const result = await kubectl(['exec', 'shell', '--', 'date', '-u'], undefined, spdy);
      assert.equal(result.code, 0, result.err);
      assert.match(result.err, /requires approval by AccessPolicy "pod-agents" rule "approve-date"/);
      assert.match(result.out, /UTC 2026/);
      assert.equal(requests().find((e) => e.text.endsWith('-- date -u'))?.outcome, 'approved');
    });

    it('refuses an interactive exec under command rules, and relays and records one where none apply', async () => {
      const governedStreams = await enforce([governed]);
      const refused = await governedStreams.kubectl(
        ['exec', '-i', 'shell', '--', 'cat', '/etc/hostname'],
        'rm -rf /\n',
        spdy,
      );
      assert.notEqual(refused.code, 0);
      assert.match(
        refused.err,
        /interactive exec or attach \(stdin\) cannot be checked against command rules/,
      );
      const { kubectl, requests, data } = await enforce([shells]);
      const result = await kubectl(['exec', '-i', 'shell', '--', 'sh'], 'id\nls\nexit\n', spdy);
      assert.equal(result.code, 0, result.err);
      assert.equal(result.out, '$ id\nran id for [REDACTED:email]\n$ ls\nran ls for [REDACTED:email]\n');
      assert.equal(api.seen.at(-1)!.stdin, 'id\nls\nexit\n');
      const input = data()
        .filter((e) => e.stream === 'input')
        .map((e) => e.data)
        .join('');
      assert.equal(input, 'id\nls\nexit\n');
      assert.equal(requests().find((e) => e.text.endsWith('-- sh'))?.outcome, 'masked');
    });

    it('refuses a port-forward over bare SPDY', async () => {
      const { kubectl } = await enforce([shells]);
      const result = await kubectl(['port-forward', 'shell', '8080:80', '--address=127.0.0.1'], undefined, {
        KUBECTL_PORT_FORWARD_WEBSOCKETS: 'false',
      });
      assert.notEqual(result.code, 0);
      assert.match(
        result.err,
        /port-forward requests are refused unless a rule names the portforward subresource/,
      );
    });
  });

  describe('handshakes and frames that break the rules', () => {
    let address: { host: string; port: number };
    before(async () => {
      const { enforcer } = await enforce([shells]);
      address = { host: '127.0.0.1', port: enforcer.address.port };
    });
    const execPath =
      '/api/v1/namespaces/default/pods/shell/exec?command=cat&command=%2Fetc%2Fhostname&stdout=true';
    const handshake = (extra: string, path = execPath) =>
      `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n${extra}\r\n`;
    const ws =
      'Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n';

    /** Sends bytes, returns everything the enforcer wrote until it closed. */
    const exchange = (chunks: (string | Buffer)[], waitMs = 1500) =>
      new Promise<Buffer>((resolve) => {
        const socket: Socket = connect(address);
        const got: Buffer[] = [];
        socket.on('data', (d: Buffer) => got.push(d));
        socket.on('close', () => resolve(Buffer.concat(got)));
        socket.on('error', () => undefined);
        socket.on('connect', async () => {
          for (const chunk of chunks) {
            socket.write(chunk);
            await new Promise((r) => setTimeout(r, 30));
          }
        });
        setTimeout(() => socket.destroy(), waitMs).unref();
      });

    const spdyExec = 'Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n';
    /** SYN_STREAMs as kubectl's SPDY framer writes them (one zlib stream with the SPDY dictionary). */
    const synErrorStdout = Buffer.from(
      '80030001000000290000000100000000000078f9e3c6a7c26260606004a7b392a2d4c45c6851c29a0a0a6800000000ffff' +
        '800300010000001900000003000000000000c22ac5565c92925f5a02000000ffff',
      'hex',
    );
    const synErrorStdin = Buffer.from(
      '80030001000000290000000100000000000078f9e3c6a7c26260606004a7b392a2d4c45c6851c29a0a0a6800000000ffff' +
        '800300010000001700000003000000000000c22e555c92929907000000ffff',
      'hex',
    );
    /** The GOAWAY (protocol error) that ends a SPDY session the agent broke. */
    const goAway = Buffer.from('8003000700000008', 'hex');

    it('reads SPDY frames split at every byte, answering each stream and relaying the output', async () => {
      const before = api.seen.length;
      const chunks = [handshake(spdyExec), ...[...synErrorStdout].map((b) => Buffer.from([b]))];
      const answer = await exchange(chunks, 4000);
      assert.match(
        answer.toString('latin1'),
        /^HTTP\/1\.1 101[\s\S]*Upgrade: SPDY\/3\.1[\s\S]*X-Stream-Protocol-Version: v4/,
      );
      // A SYN_REPLY for each stream, then shell-host on stdout (stream 3).
      assert.ok(answer.includes(Buffer.from('8003000200', 'hex')));
      assert.ok(answer.includes(Buffer.from('shell-host\n')), answer.toString('latin1'));
      assert.equal(api.seen.length, before + 1);
    });

    it('ends a SPDY session on a frame it cannot read or a stream the request did not ask for', async () => {
      const data = (id: number, bytes: Buffer) =>
        Buffer.concat([Buffer.from([0, 0, 0, id, 0, 0, 0, bytes.length]), bytes]);
      const cases: [string, Buffer][] = [
        ['stdin the request did not ask for', synErrorStdin],
        ['SPDY/2', Buffer.from('80020001000000040000000100', 'hex')],
        [
          'a header block that does not inflate',
          Buffer.from('8003000100000010000000010000000000000102030405060708', 'hex'),
        ],
        ['data on a stream not open', Buffer.concat([synErrorStdout, data(7, Buffer.from('hi'))])],
        ['data on stdout from the agent', Buffer.concat([synErrorStdout, data(3, Buffer.from('hi'))])],
        [
          'data on the error stream after the agent ended it',
          Buffer.concat([synErrorStdout, Buffer.from('0000000101000000', 'hex'), data(1, Buffer.from('hi'))]),
        ],
        [
          'a server-side stream id',
          Buffer.from(synErrorStdout.toString('hex').replace('0000000100000000', '0000000200000000'), 'hex'),
        ],
        ['a frame larger than is read', Buffer.from('8003000100ffffff', 'hex')],
      ];
      for (const [name, bad] of cases) {
        const before = api.seen.length;
        const answer = await exchange([handshake(spdyExec), bad], 2500);
        assert.match(answer.toString('latin1'), /^HTTP\/1\.1 101/, name);
        assert.ok(answer.includes(goAway), `${name}: no GOAWAY`);
        assert.ok(
          api.seen.slice(before).every((s) => s.stdin === ''),
          `${name}: the input reached the target`,
        );
      }
    });

    it('refuses a SPDY exec without a channel protocol it reads, and an upgrade to anything else', async () => {
      for (const [extra, message] of [
        [
          'Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v3.channel.k8s.io\r\n',
          /a SPDY upgrade for v5\.channel\.k8s\.io or v4\.channel\.k8s\.io is needed/,
        ],
        ['Upgrade: SPDY/3.1\r\n', /a SPDY upgrade for .* is needed/],
        [
          'Upgrade: SPDY/3\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n',
          /relayed over WebSocket or SPDY\/3\.1 only/,
        ],
        ['Upgrade: h2c\r\n', /relayed over WebSocket or SPDY\/3\.1 only/],
      ] as const) {
        const answer = (await exchange([handshake(extra)])).toString();
        assert.doesNotMatch(answer, /^HTTP\/1\.1 101/, extra);
        assert.match(answer, message, extra);
      }
    });

    it('refuses a channel protocol it does not read (base64, v1 to v3) or no key', async () => {
      for (const protocol of [
        'base64.channel.k8s.io',
        'channel.k8s.io',
        'v3.channel.k8s.io',
        'V5.CHANNEL.K8S.IO',
      ]) {
        const answer = (
          await exchange([handshake(`${ws}Sec-WebSocket-Protocol: ${protocol}\r\n`)])
        ).toString();
        assert.match(answer, /^HTTP\/1\.1 400/, protocol);
      }
      const keyless = (
        await exchange([
          handshake(
            'Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n',
          ),
        ])
      ).toString();
      assert.match(keyless, /^HTTP\/1\.1 400/);
    });

    it('ends the stream on a frame it cannot read or a channel the agent does not write', async () => {
      const cases: [string, Buffer][] = [
        ['unmasked', Buffer.from([0x82, 0x03, 0x00, 0x68, 0x69])],
        ['text', masked(0x81, Buffer.from([0x00, 0x68, 0x69]))],
        ['stdout channel', masked(0x82, Buffer.from([0x01, 0x68, 0x69]))],
        ['stdin the request did not ask for', masked(0x82, Buffer.from([0x00, 0x68, 0x69]))],
        ['reserved bit', masked(0xc2, Buffer.from([0x00, 0x68]))],
        ['orphan continuation', masked(0x80, Buffer.from([0x00, 0x68]))],
      ];
      for (const [name, bad] of cases) {
        const before = api.seen.length;
        const answer = await exchange(
          [handshake(`${ws}Sec-WebSocket-Protocol: v5.channel.k8s.io\r\n`), bad],
          3000,
        );
        assert.match(answer.toString('latin1'), /^HTTP\/1\.1 101/, name);
        // The close the enforcer sends: 1002, protocol error.
        const close = Buffer.concat([
          Buffer.from([0x88, 0x1d, 0x03, 0xea]),
          Buffer.from('airlock: protocol violation'),
        ]);
        assert.ok(answer.includes(close), `${name}: no protocol-error close`);
        assert.ok(
          api.seen.slice(before).every((s) => s.stdin === ''),
          `${name}: the input reached the target`,
        );
      }
    });

    it('reassembles a fragmented stdin message split at every byte', async () => {
      const { enforcer } = await enforce([shells]);
      const target = { host: '127.0.0.1', port: enforcer.address.port };
      const path = '/api/v1/namespaces/default/pods/shell/exec?command=sh&stdin=true&stdout=true';
      const first = masked(0x02, Buffer.from([0x00, ...Buffer.from('ec')]));
      const ping = masked(0x89, Buffer.from('p'));
      const last = masked(0x80, Buffer.from('ho\nexit\n'));
      const bytes = Buffer.concat([first, ping, last]);
      const socket = connect(target);
      const got: Buffer[] = [];
      socket.on('data', (d: Buffer) => got.push(d));
      await new Promise((r) => socket.on('connect', r));
      socket.write(handshake(`${ws}Sec-WebSocket-Protocol: v5.channel.k8s.io\r\n`, path));
      for (const byte of bytes) {
        socket.write(Buffer.from([byte]));
        await new Promise((r) => setImmediate(r));
      }
      await new Promise((r) => socket.on('close', r));
      assert.equal(api.seen.at(-1)!.stdin, 'echo\nexit\n');
      const text = Buffer.concat(got).toString('latin1');
      assert.match(text, /ran echo for \[REDACTED:email\]/);
      assert.ok(Buffer.concat(got).includes(Buffer.from([0x8a, 0x01, 0x70])), 'the ping was answered');
    });
  });
});

/** A client frame, masked with a fixed key. */
function masked(first: number, payload: Buffer): Buffer {
  const key = Buffer.from([1, 2, 3, 4]);
  const body = Buffer.from(payload.map((b, i) => b ^ key[i & 3]!));
  return Buffer.concat([Buffer.from([first, 0x80 | payload.length]), key, body]);
}
