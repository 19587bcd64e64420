// The HTTP enforcer against what an agent would try: method overrides, paths as servers read
// them, and values hidden from the masker by encodings, headers, pauses and content types.
// Real curl, a real node:http target.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { BundleConnection, BundlePolicy } from '../../api/bundle.ts';
import type { RequestEvent, SessionEvent } from '../../sidecar/audit/event.ts';
import type { ApprovalRequest, ApprovalResult, Approvals, Enforcer } from '../../sidecar/enforcer.ts';
import { serveHttp } from '../../sidecar/http/enforcer.ts';
import { policy } from '../../sidecar/policy/fixtures.ts';
import { curl, type HttpUpstream, startHttpUpstream } from '../support/http-upstream.ts';
import { requires } from '../support/tools.ts';

const noApprovals: Approvals = {
  request: (_request: ApprovalRequest): Promise<ApprovalResult> =>
    Promise.resolve({ approved: false, outcome: 'denied', decidedBy: 'nobody' }),
};

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
    const upper = await curl([`${base}/ADMIN/users`]);
    assert.equal(upper.status, 200, 'a case-sensitive target has no /ADMIN');
    const folded = await enforce([writes], { scheme: 'http', caseInsensitivePaths: true });
    for (const path of ['/ADMIN/users', '/Admin;x/Users', '/ORDERS/1']) {
      const result = await curl(['-X', path === '/ORDERS/1' ? 'DELETE' : 'GET', `${folded}${path}`]);
      assert.equal(result.status, 403, `case-insensitive ${path}`);
    }
    const ok = await curl([`${folded}/Orders/1`]);
    assert.equal(ok.status, 200);
    assert.equal(upstream.requests.at(-1)?.url, '/Orders/1', 'forwarded as sent, case kept');
    assert.ok(requests().some((r) => r.outcome === 'blocked'));
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
