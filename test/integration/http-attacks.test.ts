// The HTTP enforcer against what an agent would try: method overrides, paths as servers read
// them, and values hidden from the masker by encodings, headers, pauses and content types.
// Real curl, a real node:http target.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import type { BundleConnection, BundlePolicy } from '../../api/bundle.ts';
import type { DataEvent, RequestEvent, SessionEvent } from '../../api/events.ts';
import { type Enforcer, noApprovals } from '../../sidecar/core/enforcer.ts';
import { serveHttp } from '../../sidecar/http/enforcer.ts';
import { policy } from '../../sidecar/policy/fixtures.ts';
import { curl, type HttpUpstream, notUtf8, startHttpUpstream } from '../support/http-upstream.ts';
import { requires } from '../support/tools.ts';

const run = promisify(execFile);

describe('HTTP enforcer under attack', requires('curl'), () => {
  let upstream: HttpUpstream;
  let enforcer: Enforcer | undefined;
  const events: SessionEvent[] = [];

  before(async () => {
    upstream = await startHttpUpstream();
  });
  after(async () => {
    await enforcer?.close();
    await upstream?.close();
  });

  async function enforce(policies: BundlePolicy[], http: BundleConnection['http'] = { scheme: 'http' }) {
    await enforcer?.close();
    events.length = 0;
    upstream.requests.length = 0;
    enforcer = await serveHttp({
      connection: {
        name: 'billing-api',
        namespace: 'default',
        protocol: 'http',
        host: '127.0.0.1',
        port: upstream.port,
        tls: { mode: 'verify-full' },
        credentials: { token: 'held-token-s3cret' },
        http,
        policies,
      },
      identity: { namespace: 'default', serviceAccount: 'agent' },
      listen: { host: '127.0.0.1', port: 0 },
      events: { emit: (event) => events.push(event) },
      approvals: noApprovals,
      maxOverrideBody: 4096,
    });
    return `http://127.0.0.1:${enforcer.address.port}`;
  }
  const requests = () => events.filter((e): e is RequestEvent => e.type === 'request');

  const writes = policy({
    name: 'read-only',
    rules: [
      { name: 'no-deletes', action: 'deny', http: { methods: ['DELETE'], paths: ['/orders/**'] } },
      { name: 'no-admin', action: 'deny', http: { paths: ['/admin/**'] } },
    ],
  });

  it('decides a request as every method it overrides to', async () => {
    const base = await enforce([writes]);
    const attempts: string[][] = [
      ['-X', 'POST', '-H', 'X-HTTP-Method-Override: DELETE'],
      ['-X', 'POST', '-H', 'x-http-method: delete'],
      ['-X', 'POST', '-H', 'X-Method-Override: PATCH, Delete'],
      ['-X', 'POST', '-H', 'X-HTTP-Method-Override: GET', '-H', 'X-HTTP-Method-Override: DELETE'],
      ['-X', 'GET', '-H', 'X-HTTP-METHOD-OVERRIDE:  DELETE '],
      ['-X', 'POST', '--data', '_method=DELETE'],
      ['-X', 'POST', '--data', 'a=1&%5Fmethod=delete'],
      ['-X', 'POST', '-H', 'content-type: application/json', '--data', '{"_method":"DELETE"}'],
      ['-X', 'POST', '-F', 'file=@/etc/hostname', '-F', '_method=DELETE'],
      // Past the bound the body cannot be read whole: decided as every method.
      ['-X', 'POST', '--data', `a=${'x'.repeat(8000)}&_method=DELETE`],
      ['-X', 'POST', '-H', 'content-type: application/json', '--data', '{"_method":'],
    ];
    for (const args of attempts) {
      const result = await curl([...args, `${base}/orders/1`]);
      assert.equal(result.status, 403, args.join(' '));
      assert.equal(JSON.parse(result.body).rule, 'no-deletes', args.join(' '));
    }
    for (const url of [`${base}/orders/1?_method=DELETE`, `${base}/orders/1?x=1&_METHOD=delete`]) {
      const result = await curl(['-X', 'POST', url]);
      assert.equal(result.status, 403, url);
    }
    assert.equal(upstream.requests.length, 0, 'no overridden DELETE reached the target');
    assert.equal(requests()[0]?.text, 'POST (as DELETE) /orders/1', 'recorded as what it was decided as');
    assert.ok(requests().some((r) => r.text === 'POST (as any method) /orders/1'));
    // Where no rule tells methods apart, the body is not read for an override: it streams on.
    const form = await curl(['-X', 'POST', '--data', `_method=DELETE&a=${'y'.repeat(8000)}`, `${base}/echo`]);
    assert.equal(form.status, 200);
    assert.equal(JSON.parse(form.body).bytes, 8000 + '_method=DELETE&a='.length);
    // A body read for its override reaches the target whole.
    const put = await curl(['-X', 'POST', '--data', 'a=1&_method=PUT', `${base}/orders/echo`]);
    assert.equal(put.status, 200);
    assert.equal(upstream.requests.at(-1)?.bodyBytes, 'a=1&_method=PUT'.length);
    assert.equal(upstream.requests.length, 2);
  });

  it('denies a path under every reading a server could make', async () => {
    const base = await enforce([writes]);
    for (const path of [
      '/admin/users',
      '/x/..;/admin/users',
      '/admin;jsessionid=1/users',
      '/admin;/users',
      '/admin./users',
      '/admin%20/users',
      '/admin%3b/users',
      '/%61dmin/users',
      '/admin',
      '/admin;x',
      '/admin/',
      '//admin//users',
    ]) {
      const result = await curl(['--path-as-is', `${base}${path}`]);
      assert.equal(result.status, 403, path);
    }
    for (const path of [
      '/%252e%252e/admin/users',
      '/%c0%ae%c0%ae/admin',
      '/admin%2fusers',
      '/admin\\users',
      '/a%00/admin',
    ]) {
      const result = await curl(['--path-as-is', `${base}${path}`]);
      assert.equal(result.status, 400, path);
    }
    // Absolute form and raw non-ASCII, written on the socket as an agent could.
    for (const line of ['GET http://127.0.0.1/admin/users HTTP/1.1', 'GET /adm\u00efn/users HTTP/1.1']) {
      const answer = await raw(base, `${line}\r\nHost: x\r\nConnection: close\r\n\r\n`);
      assert.match(answer, /^HTTP\/1\.1 400/, line);
    }
    assert.equal(upstream.requests.length, 0, 'nothing reached the target');
    // Paths are matched in any case unless the Connection says its target tells case apart.
    for (const path of ['/ADMIN/users', '/Admin;x/Users', '/ORDERS/1']) {
      const result = await curl(['-X', path === '/ORDERS/1' ? 'DELETE' : 'GET', `${base}${path}`]);
      assert.equal(result.status, 403, `case-insensitive ${path}`);
    }
    // Path override headers never reach the target: it routes the path that was decided.
    const rewritten = await curl([
      '-H',
      'X-Original-URL: /admin/users',
      '-H',
      'X-Rewrite-URL: /admin',
      `${base}/orders/2`,
    ]);
    assert.equal(rewritten.status, 200);
    assert.equal(upstream.requests.at(-1)?.headers['x-original-url'], undefined);
    assert.equal(upstream.requests.at(-1)?.headers['x-rewrite-url'], undefined);
    const ok = await curl([`${base}/Orders/1`]);
    assert.equal(ok.status, 200);
    assert.equal(upstream.requests.at(-1)?.url, '/Orders/1', 'forwarded as sent, case kept');
    assert.ok(requests().some((r) => r.outcome === 'blocked'));
    const caseSensitive = await enforce([writes], { scheme: 'http', caseInsensitivePaths: false });
    const upper = await curl([`${caseSensitive}/ADMIN/users`]);
    assert.equal(upper.status, 200, 'a case-sensitive target has no /ADMIN');
  });

  const pii = policy({
    name: 'pii',
    masking: [
      {
        name: 'pii',
        detectors: ['credit-card', 'email', 'jwt', 'bearer-token'],
        strategy: 'redact',
        indirectUse: 'deny',
      },
    ],
  });

  it('masks response headers, escaped values and values split by pauses', async () => {
    const base = await enforce([pii]);
    const headers = await curl([`${base}/headers`]);
    assert.equal(headers.status, 200);
    for (const value of ['ada%40example.com', 'ada@example.com', '4111111111111111', 'eyJhbGciOiJIUzI1NiJ9'])
      assert.ok(!headers.headers.includes(value), `${value} in ${headers.headers}`);
    assert.match(headers.headers, /set-cookie: session=abc; Path=\//i);
    assert.match(headers.headers, /set-cookie: owner=\[REDACTED:email\]; Path=\//i);
    assert.match(headers.headers, /location: \/customers\?email=\[REDACTED:email\]/i);
    assert.match(headers.headers, /link: <\/cards\/\[REDACTED:credit-card\]>; rel="card"/i);
    assert.match(headers.headers, /x-customer: \[REDACTED:email\]/i);
    assert.match(
      headers.headers,
      /www-authenticate: Bearer realm="api", error="invalid_token", token="\[REDACTED:jwt\]"/i,
    );
    for (const type of ['text/html', 'text/plain; charset=utf-8', 'application/javascript', 'text/csv']) {
      const encoded = await curl([`${base}/encoded?type=${encodeURIComponent(type)}`]);
      assert.equal(encoded.status, 200, type);
      assert.equal(
        encoded.body,
        'a [REDACTED:email] b [REDACTED:email] c [REDACTED:email] d [REDACTED:email] e [REDACTED:credit-card]\n',
        type,
      );
    }
    const json = await curl([`${base}/json-encoded`]);
    assert.deepEqual(JSON.parse(json.body), {
      next: '/customers?email=[REDACTED:email]',
      pan: '[REDACTED:credit-card]',
    });
    const slow = await curl([`${base}/slow-values`]);
    assert.equal(slow.body, 'mail [REDACTED:email] token: Bearer [REDACTED:bearer-token] end\n');
    await new Promise((resolve) => setTimeout(resolve, 100));
    const masked = requests().filter((r) => r.outcome === 'masked');
    assert.ok(masked.length >= 4);
    assert.ok((masked[0]?.masked?.['pii/email'] ?? 0) >= 3, 'header values are counted');
    const recorded = events
      .filter((e): e is DataEvent => e.type === 'data')
      .map((e) => e.data)
      .join('\n');
    for (const value of ['ada%40example.com', 'ada@example.com', '4111111111111111', 'eyJhbGciOiJIUzI1NiJ9'])
      assert.ok(!recorded.includes(value), `${value} is not in the recording`);
    assert.match(recorded, /x-customer: \[REDACTED:email\]/);
  });

  it('reads UTF-16 and compressed bodies, and refuses what it cannot inspect', async () => {
    const base = await enforce([pii]);
    for (const query of [
      'bom',
      'bom&order=be',
      'charset=utf-16le',
      'charset=UTF-16BE&order=be',
      '',
      'order=be',
    ]) {
      const result = await curl(['--output', '-', `${base}/utf16?${query}`]);
      assert.equal(result.status, 200, query);
      const body = JSON.parse(result.body);
      assert.equal(body.customer.email, '[REDACTED:email]', query);
      assert.equal(body.customer.card, '[REDACTED:credit-card]', query);
      assert.match(result.headers, /content-type: application\/json/i);
      assert.ok(!/utf-16/i.test(result.headers), 'the body is sent as UTF-8');
    }
    const plain = await curl([`${base}/utf16?type=text/plain`]);
    assert.equal(JSON.parse(plain.body).customer.email, '[REDACTED:email]', 'UTF-16 text without a mark');
    const utf32 = await curl([`${base}/utf16?charset=utf-32`]);
    assert.equal(utf32.status, 502);
    assert.match(JSON.parse(utf32.body).detail, /utf-32 charset cannot be read/);
    const gzip = await curl(['-H', 'accept-encoding: gzip', `${base}/gzip`]);
    assert.equal(gzip.body, 'card [REDACTED:credit-card] and mail [REDACTED:email]\n');
    for (const type of [
      'application/octet-stream',
      'image/png',
      'application/x-unknown',
      'multipart/mixed',
    ]) {
      const binary = await curl([`${base}/binary?type=${encodeURIComponent(type)}`]);
      assert.equal(binary.status, 502, type);
      assert.match(JSON.parse(binary.body).detail, /cannot be inspected, and masking applies/);
    }
  });

  it('passes bytes that are not UTF-8 unchanged where nothing is masked, with masking on or off', async () => {
    const base = await enforce([writes]);
    const bytes = async (url: string) =>
      (await run('curl', ['-s', '--output', '-', url], { encoding: 'buffer' })).stdout;
    assert.deepEqual(await bytes(`${base}/not-utf8`), notUtf8);
    assert.equal((await bytes(`${base}/binary`)).subarray(0, 4).toString('hex'), '000102ff');
    // Under masking too, where the body holds nothing to mask.
    const masked = await enforce([pii]);
    assert.deepEqual(await bytes(`${masked}/not-utf8`), notUtf8);
  });
});

async function raw(base: string, request: string): Promise<string> {
  const { connect } = await import('node:net');
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname, () => socket.end(Buffer.from(request, 'latin1')));
    let answer = '';
    socket.on('data', (chunk) => {
      answer += chunk.toString('latin1');
    });
    socket.on('end', () => resolve(answer));
    socket.on('error', reject);
  });
}
