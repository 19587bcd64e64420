// The HTTP enforcer between curl and a real node:http / https target.
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { BundleConnection, BundlePolicy } from '../../api/bundle.ts';
import type { DataEvent, RequestEvent, SessionEvent } from '../../api/events.ts';
import { createCertificateAuthority } from '../../operator/pki.ts';
import type { ApprovalRequest, ApprovalResult, Approvals, Enforcer } from '../../sidecar/core/enforcer.ts';
import { serveHttp } from '../../sidecar/http/enforcer.ts';
import { policy } from '../../sidecar/policy/fixtures.ts';
import { curl, customer, type HttpUpstream, startHttpUpstream } from '../support/http-upstream.ts';
import { temporaryDirectory } from '../support/process.ts';
import { requires } from '../support/tools.ts';

/** Runs `work`, sampling how far this process's heap and buffers grow above where they were. */
async function peakGrowth<T>(work: () => Promise<T>): Promise<{ result: T; peak: number }> {
  const baseline = process.memoryUsage();
  let peak = 0;
  const sampler = setInterval(() => {
    const now = process.memoryUsage();
    peak = Math.max(peak, now.heapUsed + now.arrayBuffers - baseline.heapUsed - baseline.arrayBuffers);
  }, 20);
  try {
    return { result: await work(), peak };
  } finally {
    clearInterval(sampler);
  }
}

class ScriptedApprovals implements Approvals {
  readonly requests: ApprovalRequest[] = [];
  decide: (request: ApprovalRequest) => ApprovalResult | 'never' = () => 'never';
  request(request: ApprovalRequest, signal?: AbortSignal): Promise<ApprovalResult> {
    this.requests.push(request);
    const answer = this.decide(request);
    if (answer !== 'never') return new Promise((resolve) => setTimeout(() => resolve(answer), 50));
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve({ approved: false, outcome: 'expired' }), request.timeoutMs);
      signal?.addEventListener('abort', () => clearTimeout(timer));
    });
  }
}

describe('HTTP enforcer', requires('curl'), () => {
  let upstream: HttpUpstream;
  let enforcer: Enforcer | undefined;
  const events: SessionEvent[] = [];
  const approvals = new ScriptedApprovals();

  before(async () => {
    upstream = await startHttpUpstream();
  });
  after(async () => {
    await enforcer?.close();
    await upstream?.close();
  });

  function connection(policies: BundlePolicy[], overrides: Partial<BundleConnection> = {}): BundleConnection {
    return {
      name: 'billing-api',
      namespace: 'default',
      protocol: 'http',
      host: '127.0.0.1',
      port: upstream.port,
      tls: { mode: 'verify-full' },
      credentials: { token: 'held-token-s3cret' },
      http: { scheme: 'http' },
      policies,
      ...overrides,
    };
  }

  async function enforce(
    policies: BundlePolicy[],
    overrides: Partial<BundleConnection> = {},
  ): Promise<string> {
    await enforcer?.close();
    events.length = 0;
    approvals.requests.length = 0;
    upstream.requests.length = 0;
    enforcer = await serveHttp({
      connection: connection(policies, overrides),
      identity: { namespace: 'default', serviceAccount: 'agent' },
      listen: { host: '127.0.0.1', port: 0 },
      events: { emit: (event) => events.push(event) },
      approvals,
    });
    return `http://127.0.0.1:${enforcer.address.port}`;
  }

  const requests = () => events.filter((e): e is RequestEvent => e.type === 'request');
  async function settled(count = 1): Promise<void> {
    for (let i = 0; i < 100 && requests().length < count; i++) await new Promise((r) => setTimeout(r, 20));
  }

  const pii = policy({
    name: 'api-agents',
    masking: [
      { name: 'pii', detectors: ['credit-card', 'email'], strategy: 'redact', indirectUse: 'deny' },
      { name: 'names', jsonPaths: ['$.customer.name'], strategy: 'partial', indirectUse: 'deny' },
    ],
    rules: [
      {
        name: 'no-admin',
        action: 'deny',
        message: 'admin endpoints are off limits',
        http: { paths: ['/admin', '/admin/**'] },
      },
      { name: 'no-deletes', action: 'deny', http: { methods: ['DELETE'] } },
      {
        name: 'approve-deploys',
        action: 'require-approval',
        http: { methods: ['POST'], paths: ['/deploy/**'] },
        approval: { approvers: { users: ['carol'] }, timeout: '1s', scope: 'statement' },
      },
    ],
  });

  it('injects the held credential and strips the agent’s', async () => {
    const base = await enforce([pii]);
    const result = await curl([
      `${base}/whoami`,
      '-H',
      'Authorization: Bearer agent-own-token',
      '-H',
      'Cookie: session=agent',
      '-H',
      'Proxy-Authorization: Basic eA==',
    ]);
    assert.equal(result.status, 200);
    const seen = upstream.requests[0]!;
    assert.equal(seen.headers.authorization, 'Bearer held-token-s3cret');
    assert.equal(seen.headers.cookie, undefined);
    assert.equal(seen.headers['proxy-authorization'], undefined);
    assert.equal(seen.headers.host, `127.0.0.1:${upstream.port}`);
    await settled();
    const recorded = JSON.stringify(events);
    assert.ok(!recorded.includes('held-token-s3cret'), 'the held credential is never recorded');
    assert.ok(!recorded.includes('agent-own-token'), "the agent's credential is never recorded");

    // A custom header credential replaces the agent's copy of that header.
    const custom = await enforce([pii], { credentials: { header: 'X-Api-Key', value: 'held-key' } });
    await curl([`${custom}/whoami`, '-H', 'X-Api-Key: agent-key']);
    assert.equal(upstream.requests[0]?.headers['x-api-key'], 'held-key');
    assert.equal(upstream.requests[0]?.headers.authorization, undefined);
  });

  it('masks a JSON response of declared length whole, answering with the masked length', async () => {
    const base = await enforce([pii]);
    const result = await curl([`${base}/data-sized`]);
    assert.equal(result.status, 200);
    const body = JSON.parse(result.body);
    assert.equal(body.customer.email, '[REDACTED:email]');
    assert.equal(body.customer.card, '[REDACTED:credit-card]');
    assert.ok(!result.body.includes('4111'));
    assert.match(result.headers, new RegExp(`content-length: ${Buffer.byteLength(result.body)}\r\n`, 'i'));
    assert.doesNotMatch(result.headers, /transfer-encoding/i);
    await settled();
    assert.equal(requests()[0]?.outcome, 'masked');
  });

  it('masks JSON responses by detectors and JSON paths', async () => {
    const base = await enforce([pii]);
    const result = await curl([`${base}/data`, '-H', 'Accept-Encoding: gzip']);
    assert.equal(result.status, 200);
    assert.match(result.headers, /transfer-encoding: chunked/i);
    const body = JSON.parse(result.body);
    assert.equal(body.customer.email, '[REDACTED:email]');
    assert.equal(body.customer.card, '[REDACTED:credit-card]');
    assert.equal(body.customer.name, '*****');
    assert.equal(body.customer.tier, 'gold');
    assert.equal(body.count, customer.count);
    assert.ok(!result.body.includes('4111'));
    await settled();
    const [request] = requests();
    assert.equal(request?.text, 'GET /data');
    assert.equal(request?.outcome, 'masked');
    assert.ok(Object.values(request?.masked ?? {}).reduce((a, b) => a + b, 0) >= 4);
    const output = events.filter((e): e is DataEvent => e.type === 'data' && e.stream === 'output');
    assert.ok(output.length === 1 && !output[0]!.data.includes('4111111111111111'));
  });

  it('in audit mode, passes values unmasked and records what the policy would have masked', async () => {
    const audit = policy({
      name: 'api-dry-run',
      mode: 'audit',
      masking: [
        { name: 'pii', detectors: ['credit-card', 'email'], strategy: 'redact', indirectUse: 'deny' },
      ],
    });
    const base = await enforce([audit]);
    const result = await curl([`${base}/data`]);
    assert.equal(JSON.parse(result.body).customer.card, customer.customer.card);
    await settled();
    const [request] = requests();
    assert.equal(request?.outcome, 'allowed');
    assert.equal(request?.masked, undefined);
    const would = request?.wouldHave ?? [];
    assert.ok(would.length > 0);
    // Each entry names the policy whose masking rule it is, as PostgreSQL's events do.
    for (const entry of would) {
      assert.equal(entry.action, 'mask');
      assert.equal(entry.policy, 'api-dry-run');
      assert.match(entry.rule ?? '', /^masking:pii\//);
    }
  });

  it('denies by method and path on the normalized path, with a problem document', async () => {
    const base = await enforce([pii]);
    for (const path of [
      '/admin',
      '/admin/x',
      '/admin/../admin/x',
      '/%61dmin/x',
      '//admin/x',
      '/x/../admin/users',
    ]) {
      const result = await curl(['--path-as-is', `${base}${path}`]);
      assert.equal(result.status, 403, path);
      assert.match(result.headers, /content-type: application\/problem\+json/i);
      const problem = JSON.parse(result.body);
      assert.equal(problem.policy, 'api-agents');
      assert.equal(problem.rule, 'no-admin');
      assert.match(
        problem.detail,
        /airlock: request denied by AccessPolicy "api-agents" rule "no-admin": admin endpoints are off limits/,
      );
    }
    const del = await curl(['-X', 'DELETE', `${base}/orders/1`]);
    assert.equal(del.status, 403);
    assert.equal(JSON.parse(del.body).rule, 'no-deletes');
    for (const path of ['/admin%2fx', '/admin%2Fx', '/%2e%2e/admin', '/a%5cadmin', '/a%00']) {
      const result = await curl(['--path-as-is', `${base}${path}`]);
      assert.equal(result.status, 400, path);
    }
    assert.equal(upstream.requests.length, 0, 'nothing denied reaches the target');
    const ok = await curl(['--path-as-is', `${base}/orders/./1`]);
    assert.equal(ok.status, 200);
    assert.equal(upstream.requests[0]?.url, '/orders/1', 'the target gets the normalized path');
  });

  it('holds a request for approval: approved, denied, expired', async () => {
    const base = await enforce([pii]);
    approvals.decide = () => ({
      approved: true,
      outcome: 'approved',
      decidedBy: 'carol',
      request: 'deploy-7f3a',
    });
    let result = await curl(['-X', 'POST', '--data', 'v=1', `${base}/deploy/web`]);
    assert.equal(result.status, 200);
    assert.equal(upstream.requests.length, 1);
    assert.equal(approvals.requests[0]?.text, 'POST /deploy/web');
    assert.deepEqual(approvals.requests[0]?.approvers, { groups: [], users: ['carol'] });

    approvals.decide = () => ({ approved: false, outcome: 'denied', decidedBy: 'carol' });
    result = await curl(['-X', 'POST', '--data', 'v=2', `${base}/deploy/web`]);
    assert.equal(result.status, 403);
    assert.match(JSON.parse(result.body).detail, /denied by approver carol/);

    approvals.decide = () => 'never';
    result = await curl(['-X', 'POST', '--data', 'v=3', `${base}/deploy/web`]);
    assert.equal(result.status, 403);
    assert.equal(JSON.parse(result.body).title, 'Not approved in time');
    assert.equal(upstream.requests.length, 1, 'only the approved request reached the target');
    await settled(3);
    assert.deepEqual(
      requests().map((r) => r.outcome),
      ['approved', 'denied', 'expired'],
    );
    // The event names the AccessRequest that approved it, and each refusal has its code.
    assert.deepEqual(requests()[0]?.approval, { request: 'deploy-7f3a', decidedBy: 'carol' });
    assert.deepEqual(
      requests().map((r) => r.error?.code),
      [undefined, 'approval-denied', 'approval-expired'],
    );
    assert.deepEqual(
      requests().map((r) => r.error?.wire),
      [undefined, '403', '403'],
    );
  });

  it('keeps the agent connection alive across requests', async () => {
    const base = await enforce([pii]);
    const result = await curl(['-v', `${base}/a`, `${base}/b`, `${base}/text`]);
    assert.equal(result.code, 0);
    assert.match(result.stderr, /Re-using existing connection|Reusing existing/i);
    await settled(3);
    assert.equal(events.filter((e) => e.type === 'session.start').length, 1);
    assert.match(result.body, /card \[REDACTED:credit-card\] and mail \[REDACTED:email\]/);
  });

  it('masks a value split across slow chunks', async () => {
    const base = await enforce([pii]);
    const result = await curl([`${base}/slow`]);
    assert.equal(result.status, 200);
    assert.equal(result.body, 'start [REDACTED:credit-card] end\n');
  });

  it('streams a 50 MB body with bounded memory, masking as it goes', async () => {
    const base = await enforce([pii]);
    const dir = await temporaryDirectory('http-big');
    try {
      const file = join(dir.path, 'big.txt');
      const { result, peak } = await peakGrowth(() => curl(['-o', file, `${base}/big?mb=50`]));
      assert.equal(result.status, 200);
      const size = statSync(file).size;
      assert.ok(size > 50 * 1024 * 1024, `received ${size} bytes`);
      const text = readFileSync(file, 'latin1');
      assert.equal(text.indexOf('4111111111111111'), -1);
      const masked = text.split('[REDACTED:credit-card]').length - 1;
      assert.ok(masked > 500, `${masked} values masked`);
      assert.ok(peak < 64 * 1024 * 1024, `peak memory growth ${Math.round(peak / 1048576)} MiB`);
      await settled();
      const output = events.find((e): e is DataEvent => e.type === 'data' && e.stream === 'output');
      assert.ok(output && output.data.length < 100 * 1024, 'the recorded body is summarized');
      assert.match(output.data, /more bytes/);
    } finally {
      await dir.remove();
    }
  });

  it('masks a JSON body past 8 MiB by JSON path and detector as it streams, with bounded memory', async () => {
    const records = policy({
      name: 'records',
      masking: [
        { name: 'pii', detectors: ['email'], strategy: 'redact', indirectUse: 'deny' },
        { name: 'names', jsonPaths: ['$.records[*].name'], strategy: 'redact', indirectUse: 'deny' },
      ],
    });
    const base = await enforce([records]);
    const dir = await temporaryDirectory('http-big-json');
    try {
      const file = join(dir.path, 'big.json');
      const { result, peak } = await peakGrowth(() => curl(['-o', file, `${base}/big-json?mb=40`]));
      assert.equal(result.status, 200);
      assert.match(result.headers, /transfer-encoding: chunked/i);
      const size = statSync(file).size;
      // Masked values are shorter than the 40 MiB that came in, but far past 8 MiB.
      assert.ok(size > 32 * 1024 * 1024, `received ${size} bytes`);
      // Less than the body: it was not held.
      assert.ok(peak < 32 * 1024 * 1024, `peak memory growth ${Math.round(peak / 1048576)} MiB`);
      const text = readFileSync(file, 'utf8');
      assert.ok(!text.includes('Alice Smith'));
      assert.ok(!text.includes('example.com') && !text.includes('example.org'));
      const body = JSON.parse(text) as { records: Record<string, unknown>[] };
      assert.equal(body.records.length - 1, body.records.pop()!.count);
      assert.ok(body.records.length > 100_000, `${body.records.length} records`);
      for (const record of body.records) {
        assert.equal(record.name, '[REDACTED]');
        assert.equal(record.email, '[REDACTED:email]');
        assert.equal(record.alias, '[REDACTED:email]');
      }
      await settled();
      const [request] = requests();
      assert.equal(request?.outcome, 'masked');
      assert.deepEqual(request?.masked, {
        'names/$.records[*].name': body.records.length,
        'pii/email': 2 * body.records.length,
      });
    } finally {
      await dir.remove();
    }
  });

  it('fails closed on JSON nested past the bound: a 502, or a cut response once headers went', async () => {
    const base = await enforce([pii]);
    const sized = await curl([`${base}/deep-json?sized`]);
    assert.equal(sized.status, 502);
    assert.equal(JSON.parse(sized.body).title, 'Airlock cannot mask this response');
    assert.ok(!sized.body.includes('alice@example.com'));
    await settled();
    assert.equal(requests()[0]?.outcome, 'error');
    assert.equal(requests()[0]?.error?.code, 'masking-failed');

    const streamed = await curl([`${base}/deep-json`]);
    assert.notEqual(streamed.code, 0, 'the transfer is cut short');
    assert.ok(!streamed.body.includes('alice@example.com'));
    await settled(2);
    assert.equal(requests()[1]?.outcome, 'error');
  });

  it('streams a large request body to the target', async () => {
    const base = await enforce([pii]);
    const dir = await temporaryDirectory('http-upload');
    try {
      const file = join(dir.path, 'upload.bin');
      const { writeFileSync } = await import('node:fs');
      writeFileSync(file, Buffer.alloc(8 * 1024 * 1024, 7));
      const result = await curl([
        '-X',
        'PUT',
        '--data-binary',
        `@${file}`,
        '-H',
        'Content-Type: application/octet-stream',
        `${base}/echo`,
      ]);
      assert.equal(result.status, 200);
      assert.equal(JSON.parse(result.body).bytes, 8 * 1024 * 1024);
    } finally {
      await dir.remove();
    }
  });

  it('refuses WebSocket upgrades', async () => {
    const base = await enforce([policy({ name: 'api-agents' })]);
    const result = await curl([
      '--http1.1',
      '-H',
      'Connection: Upgrade',
      '-H',
      'Upgrade: websocket',
      '-H',
      'Sec-WebSocket-Version: 13',
      '-H',
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
      `${base}/socket`,
    ]);
    assert.equal(result.status, 403);
    assert.match(result.body, /upgrade/);
    assert.equal(upstream.requests.length, 0);
  });

  describe('https target', () => {
    let secure: HttpUpstream;
    let ca: string;
    before(async () => {
      const authority = await createCertificateAuthority('Airlock Test CA');
      const leaf = await authority.issue({
        commonName: 'billing.internal',
        dnsNames: ['billing.internal', 'localhost'],
        ipAddresses: ['127.0.0.1'],
        usage: 'server',
      });
      ca = authority.certificate;
      secure = await startHttpUpstream({ cert: leaf.certificate, key: leaf.privateKey });
    });
    after(async () => {
      await secure?.close();
    });

    it('verifies the target against the Connection CA and server name', async () => {
      let base = await enforce([pii], {
        port: secure.port,
        http: { scheme: 'https' },
        tls: { mode: 'verify-full', ca, serverName: 'billing.internal' },
      });
      let result = await curl([`${base}/data`]);
      assert.equal(result.status, 200);
      assert.equal(JSON.parse(result.body).customer.card, '[REDACTED:credit-card]');
      assert.equal(secure.requests.at(-1)?.headers.authorization, 'Bearer held-token-s3cret');

      // Without the CA the certificate does not verify: 502, nothing sent.
      const before = secure.requests.length;
      base = await enforce([pii], {
        port: secure.port,
        http: { scheme: 'https' },
        tls: { mode: 'verify-full' },
      });
      result = await curl([`${base}/data`]);
      assert.equal(result.status, 502);
      assert.equal(secure.requests.length, before);

      // A wrong server name fails too.
      base = await enforce([pii], {
        port: secure.port,
        http: { scheme: 'https' },
        tls: { mode: 'verify-full', ca, serverName: 'other.internal' },
      });
      result = await curl([`${base}/data`]);
      assert.equal(result.status, 502);
    });
  });
});

describe('HTTP enforcer: JSON values masked as bytes', requires('curl'), () => {
  // ASCII strings and plain numbers are masked on their bytes, below 48 bytes without a string,
  // keys known clean by their bytes: a target's bodies written to try each edge of that path.
  const card = '4111111111111111';
  const ssn = '078-05-1120';
  const email = 'ada@example.com';
  let target: Server;
  let enforcer: Enforcer | undefined;
  /** Each response: the body's pieces, written one after another. */
  let pieces: string[] = [];

  before(async () => {
    target = createServer((_request, response) => {
      response.writeHead(200, { 'content-type': 'application/json' });
      const queue = [...pieces];
      const next = () => {
        const piece = queue.shift();
        if (piece === undefined) response.end();
        else response.write(piece, () => setTimeout(next, 2));
      };
      next();
    });
    await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
    enforcer = await serveHttp({
      connection: {
        name: 'records-api',
        namespace: 'default',
        protocol: 'http',
        host: '127.0.0.1',
        port: (target.address() as AddressInfo).port,
        tls: { mode: 'verify-full' },
        credentials: { token: 'held-token' },
        http: { scheme: 'http' },
        policies: [
          policy({
            name: 'pii',
            masking: [
              {
                name: 'pii',
                detectors: ['credit-card', 'email', 'us-ssn'],
                strategy: 'redact',
                indirectUse: 'deny',
              },
            ],
          }),
        ],
      },
      identity: { namespace: 'default', serviceAccount: 'agent' },
      listen: { host: '127.0.0.1', port: 0 },
      events: { emit: () => {} },
      approvals: { request: async () => ({ approved: false, outcome: 'denied' }) },
    });
  });
  after(async () => {
    await enforcer?.close();
    await new Promise((resolve) => target?.close(resolve));
  });

  /** The body through the enforcer, sent in `cuts` pieces; its parse, which must hold no secret. */
  async function through(body: string, cuts = 1): Promise<unknown> {
    const size = Math.ceil(body.length / cuts);
    pieces = [];
    for (let at = 0; at < body.length; at += size) pieces.push(body.slice(at, at + size));
    const result = await curl([`http://127.0.0.1:${enforcer!.address.port}/records`]);
    assert.equal(result.status, 200, result.body);
    const parsed: unknown = JSON.parse(result.body);
    const read = JSON.stringify(parsed);
    for (const secret of [card, ssn, email, String(Number(card))])
      assert.ok(!read.includes(secret), `${secret} in ${read}`);
    return parsed;
  }

  it('findings at either end of strings and keys of 47 to 49 bytes, next to DEL and escapes', async () => {
    const values: string[] = [];
    for (const secret of [card, ssn, email, '5500 0000 0000 0004'])
      for (const length of [47, 48, 49])
        for (const fill of ['\u007f', ' ', '\u0001', 'x'])
          values.push(
            secret + fill.repeat(length - secret.length),
            fill.repeat(length - secret.length) + secret,
          );
    const record = Object.fromEntries(values.map((v, i) => [v, i]));
    for (const cuts of [1, 7, 61]) {
      const parsed = (await through(JSON.stringify({ values, record }), cuts)) as {
        values: string[];
        record: Record<string, number>;
      };
      assert.equal(parsed.values.length, values.length);
      for (const value of parsed.values) assert.match(value, /\[REDACTED:/);
    }
  });

  it('escapes next to plain runs: \\u0040, \\/, \\u0001 before digits, surrogate pairs', async () => {
    const body =
      '{"a": "ada\\u0040example.com", "b": "ada@example\\u002ecom", "c": "\\u00014111111111111111",' +
      ' "d": "\\/ada@example.com\\/", "e": "\\ud83d\\ude00ada@example.com\\ud83d\\ude00", "f": "078\\u002d05-1120",' +
      ' "g": "4111\\u00201111 1111 1111", "ada\\u0040example.com": 1, "h": "\\"078-05-1120\\""}';
    for (const cuts of [1, 5, 40]) {
      const parsed = (await through(body, cuts)) as Record<string, string>;
      assert.equal(parsed.a, '[REDACTED:email]');
      assert.equal(parsed.c, '\u0001[REDACTED:credit-card]');
      assert.equal(parsed.h, '"[REDACTED:us-ssn]"');
    }
  });

  it('numbers in every form a reader parses to a card number', async () => {
    const body = `[${card}, -${card}, 4.111111111111111e15, 4111111111111111.0, 41111111111111110e-1, 0.4111111111111111e16, {"n": ${card}}]`;
    for (const cuts of [1, 3, 20]) {
      const parsed = (await through(body, cuts)) as unknown[];
      assert.equal(parsed.length, 7);
    }
  });

  it('a key cached clean is read again when other bytes of its length hold a finding', async () => {
    // Keys of one length: the first records' keys are clean and kept, the later ones hold findings.
    const keys = ['contact-address', email, 'secondary-label', 'x@example.com.x', 'ada@example.org'];
    assert.ok(keys.every((k) => k.length === 15));
    const records = Array.from({ length: 40 }, (_, i) => ({
      [keys[i % keys.length]!]: i,
      [`${ssn}-x`]: i,
      [`${'k'.repeat(30)}${i % 3}`]: card,
    }));
    const parsed = (await through(JSON.stringify(records), 13)) as Record<string, unknown>[];
    assert.equal(parsed.length, 40);
    assert.ok(parsed.some((r) => 'contact-address' in r));
    assert.ok(parsed.some((r) => '[REDACTED:email]' in r));
  });
});
