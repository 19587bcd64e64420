// The HTTP enforcer against what a client outside the team's own corpus sends: `_method` as qs
// and PHP read it, a target that echoes the held credential back, and JSON served under another
// label where JSON-path rules apply. Each attack is shown to work against the target directly
// first. Real fetch and raw sockets, a real node:http target.
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { connect, createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { deflateSync, gunzipSync, gzipSync, inflateSync } from 'node:zlib';
import type { BundlePolicy } from '../../api/bundle.ts';
import type { DataEvent, RequestEvent, SessionEvent } from '../../api/events.ts';
import { type Enforcer, noApprovals } from '../../sidecar/core/enforcer.ts';
import { serveHttp } from '../../sidecar/http/enforcer.ts';
import { policy } from '../../sidecar/policy/fixtures.ts';

const heldToken = 'held-token-s3cret-0123456789';

/**
 * The method a target acts on: the request line's, or `_method` as express's method-override
 * (over qs, which reads `_method[]` as an array and takes its first element), PHP (a `.` in a
 * name is `_`, leading blanks dropped, a NUL ends it) and older Rack (pairs split at `;` too)
 * read it from the query or a form.
 */
function effectiveMethod(req: IncomingMessage, form: string): string {
  const pairs = (text: string) => [...new URLSearchParams(text.replaceAll(';', '&'))];
  // A body is a form without a type too, as Rack reads a POST.
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim();
  const body = type === '' || type === 'application/x-www-form-urlencoded' ? pairs(form) : [];
  const named = [...pairs(new URL(req.url ?? '/', 'http://x').search.slice(1)), ...body]
    .filter(([name]) => /^ *[_.]method(\[\d*\]|\0.*)?$/.test(name))
    .map(([, value]) => value);
  return (named[0] ?? req.method ?? 'GET').toUpperCase();
}

interface Target {
  server: Server;
  port: number;
  /** Methods the target acted on, as "METHOD path". */
  acted: string[];
}

async function startTarget(): Promise<Target> {
  const acted: string[] = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      acted.push(`${effectiveMethod(req, Buffer.concat(chunks).toString())} ${url.pathname}`);
      const type = url.searchParams.get('type');
      switch (url.pathname) {
        case '/echo': {
          // What a debug endpoint, TRACE or an error page hands back: the request as received.
          const echoed = `${req.method} ${req.url}\r\nauthorization: ${req.headers.authorization}\r\n`;
          res.setHeader('x-echo-authorization', String(req.headers.authorization));
          if (req.method === 'TRACE') {
            res.setHeader('content-type', 'message/http');
            res.end(echoed);
            return;
          }
          if (url.searchParams.has('gzip')) {
            res.setHeader('content-encoding', 'gzip');
            res.end(gzipSync(echoed));
            return;
          }
          if (url.searchParams.has('slow')) {
            // One byte at a time, with pauses: a value split across every chunk.
            res.setHeader('content-type', 'application/octet-stream');
            const bytes = Buffer.from(echoed);
            let i = 0;
            const next = () => {
              if (i === bytes.length) return res.end();
              res.write(bytes.subarray(i, i + 1));
              i++;
              setTimeout(next, 1);
            };
            next();
            return;
          }
          res.setHeader('content-type', type ?? 'application/json');
          res.end(JSON.stringify({ headers: req.headers }));
          return;
        }
        case '/export': {
          // A long download: the agent reads what it wants of it, then goes away.
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.write('row 1\n');
          const more = setInterval(() => res.write('row\n'), 10);
          res.on('close', () => clearInterval(more));
          return;
        }
        case '/cut':
          res.writeHead(200, { 'content-type': type ?? 'text/plain', 'content-length': '100' });
          res.write('partial');
          setTimeout(() => res.socket?.destroy(), 20);
          return;
        case '/html':
          res.setHeader('content-type', 'text/html');
          res.end('<p>ada&commat;example&period;com, bob&#64example.com, eve&#x000040;example.com</p>\n');
          return;
        case '/by-email':
          res.setHeader('content-type', 'application/json');
          res.end('{"customers":{"ada@example.com":{"plan":"pro"},"bob\\u0040example.com":{"plan":"free"}}}');
          return;
        case '/customer':
          if (type !== 'none') res.setHeader('content-type', type ?? 'application/json');
          {
            const document = '{"name":"ada","ssn":"123-45-6789"}';
            // JSONP and the guards APIs put before JSON, as an agent asks for them (?callback=).
            const wrapped: Record<string, string> = {
              callback: `cb(${document});`,
              comment: `/**/ cb(${document})`,
              guard: `)]}',\n${document}`,
              loop: `while(1);${document}`,
            };
            const wrap = url.searchParams.get('wrap');
            res.end(
              url.searchParams.has('lines')
                ? '{"name":"ada"}\n{"name":"bob","ssn":"123-45-6789"}\n'
                : wrap
                  ? wrapped[wrap]
                  : `${url.searchParams.has('bom') ? '\ufeff' : ''}${document}`,
            );
          }
          return;
        default:
          res.setHeader('content-type', 'text/plain');
          res.end('ok\n');
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  return { server, port: typeof address === 'object' && address ? address.port : 0, acted };
}

describe('HTTP enforcer under attack from outside the corpus', () => {
  let target: Target;
  let enforcer: Enforcer | undefined;
  const events: SessionEvent[] = [];

  before(async () => {
    target = await startTarget();
  });
  after(async () => {
    await enforcer?.close();
    await new Promise((resolve) => target?.server.close(resolve));
  });

  async function enforce(policies: BundlePolicy[]): Promise<string> {
    await enforcer?.close();
    events.length = 0;
    target.acted.length = 0;
    enforcer = await serveHttp({
      connection: {
        name: 'billing-api',
        namespace: 'default',
        protocol: 'http',
        host: '127.0.0.1',
        port: target.port,
        tls: { mode: 'verify-full' },
        credentials: { token: heldToken },
        http: { scheme: 'http' },
        policies,
      },
      identity: { namespace: 'default', serviceAccount: 'agent' },
      listen: { host: '127.0.0.1', port: 0 },
      events: { emit: (event) => events.push(event) },
      approvals: noApprovals,
    });
    return `http://127.0.0.1:${enforcer.address.port}`;
  }
  const direct = () => `http://127.0.0.1:${target.port}`;
  const recorded = () =>
    events
      .filter((e): e is DataEvent => e.type === 'data')
      .map((e) => e.data)
      .join('\n');

  const noDeletes = policy({
    name: 'read-only',
    rules: [{ name: 'no-deletes', action: 'deny', http: { methods: ['DELETE'], paths: ['/orders/**'] } }],
  });

  it('decides _method as qs reads an array, PHP a dotted name, and Rack a body of any form type', async () => {
    const base = await enforce([noDeletes]);
    const queries = [
      '_method[]=DELETE',
      '_method[0]=delete',
      '.method=DELETE',
      '_method%5B%5D=DELETE',
      '%2Emethod=DELETE',
      'a=1;_method=DELETE',
      '_method%00x=DELETE',
    ];
    const forms = ['_method[]=DELETE', 'a=1&.method=delete', '_method%5b0%5d=DELETE', '+.method=DELETE'];
    // Straight to the target, each one deletes.
    for (const query of queries) await fetch(`${direct()}/orders/1?${query}`, { method: 'POST' });
    for (const form of forms)
      await fetch(`${direct()}/orders/1`, {
        method: 'POST',
        body: form,
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
      });
    assert.deepEqual(new Set(target.acted), new Set(['DELETE /orders/1']));
    target.acted.length = 0;
    for (const query of queries) {
      const result = await fetch(`${base}/orders/1?${query}`, { method: 'POST' });
      assert.equal(result.status, 403, query);
      assert.equal(((await result.json()) as { rule: string }).rule, 'no-deletes', query);
    }
    for (const form of forms) {
      const result = await fetch(`${base}/orders/1`, {
        method: 'POST',
        body: form,
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
      });
      assert.equal(result.status, 403, form);
    }
    const multipart = new FormData();
    multipart.append('_method[]', 'DELETE');
    const parts = await fetch(`${base}/orders/1`, { method: 'POST', body: multipart });
    assert.equal(parts.status, 403, 'multipart _method[]');
    // Rack reads a POST without a type as a form, any multipart type as parts, and a type up to a comma.
    const untyped = await fetch(`${base}/orders/1`, {
      method: 'POST',
      body: new TextEncoder().encode('_method=DELETE'),
    });
    assert.equal(untyped.status, 403, 'no content type');
    const mixed = '--b\r\ncontent-disposition: form-data; name="_method"\r\n\r\nDELETE\r\n--b--\r\n';
    for (const type of ['multipart/mixed; boundary=b', 'Multipart/Related; boundary=b']) {
      const result = await fetch(`${base}/orders/1`, {
        method: 'POST',
        body: mixed,
        headers: { 'content-type': type },
      });
      assert.equal(result.status, 403, type);
    }
    // A Connection header naming Content-Type would take the type the decision read off the
    // request: the target would read the body as a form.
    const untypedByConnection = await raw(
      base,
      'POST /orders/1 HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nConnection: content-type, close\r\nContent-Length: 14\r\n\r\n_method=DELETE',
    );
    assert.match(untypedByConnection, /^HTTP\/1\.1 200/);
    assert.deepEqual(target.acted, ['POST /orders/1'], 'the target read the body as text, as decided');
    target.acted.length = 0;
    const listed = await fetch(`${base}/orders/1`, {
      method: 'POST',
      body: '_method=DELETE',
      headers: { 'content-type': 'application/x-www-form-urlencoded, text/plain' },
    });
    assert.equal(listed.status, 403, 'a comma-listed type');
    assert.deepEqual(target.acted, [], 'no DELETE reached the target');
    // A name that only looks alike is no override.
    const other = await fetch(`${base}/orders/1?_method_x=DELETE&method=DELETE`, { method: 'POST' });
    assert.equal(other.status, 200);
  });

  it('never forwards the headers proxies and frameworks read a path, a prefix or the client address from', async () => {
    const seen: Record<string, string | undefined> = {};
    const addresses = {
      forwarded: 'for=10.0.0.1;proto=https',
      'x-forwarded-for': '10.0.0.1',
      'x-forwarded-host': 'admin.internal',
      'x-real-ip': '10.0.0.1',
      'x-client-ip': '10.0.0.1',
      'true-client-ip': '10.0.0.1',
      'cf-connecting-ip': '10.0.0.1',
      'X-Cluster-Client-IP': '10.0.0.1',
    };
    const probe = createServer((req, res) => {
      for (const name of [
        'x-override-url',
        'x-original-uri',
        'x-forwarded-uri',
        'x-forwarded-prefix',
        'x-envoy-original-path',
        ...Object.keys(addresses).map((n) => n.toLowerCase()),
      ])
        seen[name] = req.headers[name] as string | undefined;
      res.end('ok');
    });
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    try {
      const port = (probe.address() as { port: number }).port;
      const probed = await serveHttp({
        connection: {
          name: 'probe',
          namespace: 'default',
          protocol: 'http',
          host: '127.0.0.1',
          port,
          tls: { mode: 'verify-full' },
          credentials: {},
          http: { scheme: 'http' },
          policies: [noDeletes],
        },
        identity: { namespace: 'default', serviceAccount: 'agent' },
        listen: { host: '127.0.0.1', port: 0 },
        events: { emit: () => undefined },
        approvals: noApprovals,
      });
      await fetch(`http://127.0.0.1:${probed.address.port}/ok`, {
        headers: {
          'x-override-url': '/admin',
          'x-original-uri': '/admin',
          'x-forwarded-uri': '/admin',
          'x-forwarded-prefix': '/admin',
          'x-envoy-original-path': '/admin',
          ...addresses,
        },
      }).then((r) => r.text());
      await probed.close();
      assert.deepEqual(Object.values(seen).filter(Boolean), []);
    } finally {
      await new Promise((resolve) => probe.close(resolve));
    }
  });

  it('keeps the held credential from the agent when the target echoes it, whatever the policies', async () => {
    const base = await enforce([noDeletes]);
    const leaked = await fetch(`${direct()}/echo`, { headers: { authorization: `Bearer ${heldToken}` } });
    assert.ok((await leaked.text()).includes(heldToken), 'the target echoes what it is sent');
    const hidden = '*'.repeat(heldToken.length);
    const attempts: [string, RequestInit][] = [
      ['/echo', {}],
      ['/echo?type=text/plain', { method: 'POST', body: 'x' }],
      ['/echo?type=application/octet-stream', {}],
      ['/echo?slow', {}],
      ['/echo?gzip', { headers: { 'accept-encoding': 'gzip' } }],
    ];
    for (const [path, init] of attempts) {
      const result = await fetch(`${base}${path}`, init);
      const body = await result.text();
      assert.equal(result.status, 200, path);
      assert.ok(!body.includes(heldToken), `${path}: ${body}`);
      assert.ok(body.includes(`Bearer ${hidden}`), `${path}: ${body}`);
      assert.equal(result.headers.get('x-echo-authorization'), `Bearer ${hidden}`, path);
    }
    // TRACE is answered by the target itself (Node's fetch refuses to send it): a raw socket.
    const trace = await raw(base, 'TRACE /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    assert.match(trace, /^HTTP\/1\.1 200/);
    assert.ok(!trace.includes(heldToken), trace);
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.ok(!recorded().includes(heldToken), 'nor is it in the recording');
  });

  it('refuses a CONNECT tunnel with an answer, and records it', async () => {
    const base = await enforce([noDeletes]);
    const answer = await raw(
      base,
      `CONNECT 127.0.0.1:${target.port} HTTP/1.1\r\nHost: 127.0.0.1:${target.port}\r\n\r\n`,
    );
    assert.match(answer, /^HTTP\/1\.1 403/);
    assert.match(answer, /a tunnel \(CONNECT\) is not allowed/);
    assert.deepEqual(target.acted, []);
    const refused = events.filter((e): e is RequestEvent => e.type === 'request' && e.outcome === 'blocked');
    assert.equal(refused[0]?.text, `CONNECT 127.0.0.1:${target.port}`);
  });

  it('records a request whose response the agent or the target cut short', async () => {
    const base = await enforce([noDeletes]);
    const url = new URL(base);
    await new Promise<void>((resolve) => {
      const socket = connect(Number(url.port), url.hostname, () =>
        socket.write('GET /export HTTP/1.1\r\nHost: x\r\n\r\n'),
      );
      socket.on('data', (chunk: Buffer) => {
        if (chunk.toString().includes('row 1')) socket.destroy();
      });
      socket.on('close', () => resolve());
    });
    for (const type of ['text/plain', 'application/octet-stream'])
      await fetch(`${base}/cut?type=${encodeURIComponent(type)}`)
        .then((r) => r.text())
        .catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const requests = events.filter((e): e is RequestEvent => e.type === 'request');
    assert.deepEqual(
      requests.map((r) => [r.text, r.outcome, r.status, r.error?.code]),
      [
        ['GET /export', 'error', 200, 'cancelled'],
        ['GET /cut', 'error', 200, 'target-error'],
        ['GET /cut', 'error', 200, 'target-error'],
      ],
    );
    // Each recorded before its session ends.
    for (const request of requests) {
      const ended = events.findIndex((e) => e.type === 'session.end' && e.sessionId === request.sessionId);
      assert.ok(events.indexOf(request) < ended, `${request.text} comes before the end of its session`);
    }
  });

  it('masks values written as HTML parsers read references: named, padded, without a semicolon', async () => {
    const base = await enforce([
      policy({
        name: 'pii',
        masking: [{ name: 'pii', detectors: ['email'], strategy: 'redact', indirectUse: 'deny' }],
      }),
    ]);
    const result = await fetch(`${base}/html`);
    assert.equal(await result.text(), '<p>[REDACTED:email], [REDACTED:email], [REDACTED:email]</p>\n');
  });

  it('masks values that are the keys of a JSON object', async () => {
    const base = await enforce([
      policy({
        name: 'pii',
        masking: [{ name: 'pii', detectors: ['email'], strategy: 'redact', indirectUse: 'deny' }],
      }),
    ]);
    const leaked = await (await fetch(`${direct()}/by-email`)).json();
    assert.ok(Object.keys((leaked as { customers: object }).customers).includes('ada@example.com'));
    const result = await fetch(`${base}/by-email`);
    assert.deepEqual(Object.keys(((await result.json()) as { customers: object }).customers), [
      '[REDACTED:email]',
    ]);
  });

  it('applies JSON-path rules to JSON under any label, and refuses what it cannot read', async () => {
    const ssn = policy({
      name: 'ssn',
      masking: [{ name: 'ssn', jsonPaths: ['$.ssn'], strategy: 'redact', indirectUse: 'deny' }],
    });
    const base = await enforce([ssn]);
    const plain = await fetch(`${direct()}/customer?type=text/plain`);
    assert.ok((await plain.text()).includes('123-45-6789'), 'the target serves JSON as text');
    for (const type of [
      'text/plain',
      'text/json',
      'none',
      'application/x-ndjson',
      'application/javascript',
    ]) {
      const result = await fetch(`${base}/customer?type=${encodeURIComponent(type)}`);
      assert.equal(result.status, 200, type);
      assert.deepEqual(JSON.parse(await result.text()), { name: 'ada', ssn: '[REDACTED]' }, type);
    }
    // A second document, a byte order mark or a wrapper cannot be read as one JSON document:
    // cut, not passed.
    for (const query of [
      'type=application/x-ndjson&lines',
      'type=text/plain&bom',
      'type=application/javascript&wrap=callback',
      'type=application/javascript&wrap=comment',
      'type=text/plain&wrap=guard',
      'type=text/plain&wrap=loop',
    ]) {
      const body = await fetch(`${base}/customer?${query}`).then(
        (r) => r.text(),
        (error: Error) => error.message,
      );
      assert.ok(!body.includes('6789'), `${query}: ${body}`);
    }
    for (const type of ['application/octet-stream', 'application/jsonlines']) {
      const result = await fetch(`${base}/customer?type=${encodeURIComponent(type)}`);
      assert.equal(result.status, 502, type);
      assert.match(((await result.json()) as { detail: string }).detail, /cannot be inspected/);
    }
    // Text that is not JSON is still served as text.
    const text = await fetch(`${base}/other`);
    assert.equal(await text.text(), 'ok\n');
    await new Promise((resolve) => setTimeout(resolve, 50));
    const requests = events.filter((e): e is RequestEvent => e.type === 'request');
    assert.ok(requests.some((r) => r.outcome === 'masked' && r.masked?.['ssn/$.ssn'] === 1));
  });
});

/** `request` written on a new connection; its answer read until the enforcer closes it, or until one arrives (`once`). */
async function raw(base: string, request: string, once = false): Promise<string> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname, () => socket.write(request));
    let answer = '';
    socket.on('data', (chunk: Buffer) => {
      answer += chunk.toString('latin1');
      if (once) socket.end();
    });
    socket.on('end', () => resolve(answer));
    socket.on('error', reject);
  });
}

describe('HTTP enforcer against an agent and a target that would split its requests or read around masking', () => {
  /** An enforcer in front of the target on `port`, holding `credentials`, deciding by `policies`. */
  const enforceOn = (
    port: number,
    policies: BundlePolicy[],
    credentials: Record<string, string> = { token: heldToken },
  ) =>
    serveHttp({
      connection: {
        name: 'billing-api',
        namespace: 'default',
        protocol: 'http',
        host: '127.0.0.1',
        port,
        tls: { mode: 'verify-full' },
        credentials,
        http: { scheme: 'http' },
        policies,
      },
      identity: { namespace: 'default', serviceAccount: 'agent' },
      listen: { host: '127.0.0.1', port: 0 },
      events: { emit: () => {} },
      approvals: noApprovals,
    });
  /** The target's answer per request path: exact bytes, on a raw socket. */
  const answers = new Map<string, (socket: Socket) => void>();
  const sockets = new Set<Socket>();
  let server: NetServer;
  let port = 0;
  let enforcer: Enforcer | undefined;

  before(async () => {
    server = createNetServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => {});
      let head = '';
      socket.on('data', (data: Buffer) => {
        head += data.toString('latin1');
        if (!head.includes('\r\n\r\n')) return;
        const path = head.split(' ')[1]!;
        head = '';
        answers.get(path)?.(socket);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as { port: number }).port;
    enforcer = await enforceOn(port, [
      policy({
        name: 'pii',
        masking: [{ name: 'pii', detectors: ['email'], strategy: 'redact', indirectUse: 'deny' }],
      }),
    ]);
  });
  after(async () => {
    await enforcer?.close();
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });

  const base = () => `http://127.0.0.1:${enforcer!.address.port}`;
  const email = 'ada@example.com';

  it('refuses a body under a transfer coding it does not decode, never passing it on still coded', async () => {
    const zipped = gzipSync(`contact: ${email}\n`);
    const chunk = (body: Buffer) =>
      Buffer.concat([Buffer.from(`${body.length.toString(16)}\r\n`), body, Buffer.from('\r\n0\r\n\r\n')]);
    const codings: Record<string, (socket: Socket) => void> = {
      'gzip, chunked': (socket) =>
        socket.write(
          Buffer.concat([
            Buffer.from(
              'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: gzip, chunked\r\n\r\n',
            ),
            chunk(zipped),
          ]),
        ),
      'GZip,chunked': (socket) =>
        socket.write(
          Buffer.concat([
            Buffer.from(
              'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: GZip,chunked\r\n\r\n',
            ),
            chunk(zipped),
          ]),
        ),
      'two headers': (socket) =>
        socket.write(
          Buffer.concat([
            Buffer.from(
              'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n',
            ),
            chunk(zipped),
          ]),
        ),
      'deflate, chunked': (socket) =>
        socket.write(
          Buffer.concat([
            Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: deflate, chunked\r\n\r\n'),
            chunk(deflateSync(`contact: ${email}\n`)),
          ]),
        ),
      'gzip until close': (socket) =>
        socket.end(
          Buffer.concat([
            Buffer.from('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: gzip\r\n\r\n'),
            zipped,
          ]),
        ),
      'chunked, gzip until close': (socket) =>
        socket.end(
          Buffer.concat([
            Buffer.from(
              'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked, gzip\r\n\r\n',
            ),
            zipped,
          ]),
        ),
    };
    for (const [name, answer] of Object.entries(codings)) {
      answers.set(`/${encodeURIComponent(name)}`, answer);
      const result = await fetch(`${base()}/${encodeURIComponent(name)}`);
      const body = Buffer.from(await result.arrayBuffer());
      let decoded = body.toString('latin1');
      try {
        decoded = (name.startsWith('deflate') ? inflateSync(body) : gunzipSync(body)).toString();
      } catch {}
      assert.ok(!decoded.includes(email), `${name}: ${decoded}`);
      assert.equal(result.status, 502, name);
    }
    // Chunked alone is read and masked as before.
    answers.set('/chunked', (socket) =>
      socket.write(
        `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n${chunk(Buffer.from(email))}`,
      ),
    );
    assert.equal(await (await fetch(`${base()}/chunked`)).text(), '[REDACTED:email]');
  });

  it('reads a response by its final headers, whatever a 1xx before them said', async () => {
    answers.set('/early-text', (socket) =>
      socket.write(
        `HTTP/1.1 103 Early Hints\r\nContent-Type: text/plain\r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ${email.length}\r\n\r\n${email}`,
      ),
    );
    answers.set('/early-binary', (socket) =>
      socket.write(
        `HTTP/1.1 100 Continue\r\nContent-Type: application/octet-stream\r\nContent-Encoding: gzip\r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${email.length}\r\n\r\n${email}`,
      ),
    );
    const binary = await fetch(`${base()}/early-text`);
    assert.equal(binary.status, 502);
    assert.ok(!(await binary.text()).includes(email));
    const text = await fetch(`${base()}/early-binary`);
    assert.equal(await text.text(), '[REDACTED:email]');
    assert.equal(text.headers.get('content-encoding'), null);
  });

  it("never gives one request's agent the bytes a target sent after another's response", async () => {
    const smuggled = `HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ${email.length}\r\n\r\n${email}`;
    const head = 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n';
    answers.set('/second', (socket) => socket.write(`${head}Content-Length: 6\r\n\r\nsecond`));
    // A body after HEAD, a body longer than its length, a second response after a 1xx and a
    // final one, trailers naming a length: in the same write, and while the connection is idle.
    const attacks: Record<string, [string, string]> = {
      'head with a body': ['HEAD', `${head}Content-Length: ${smuggled.length}\r\n\r\n${smuggled}`],
      'longer than its length': ['GET', `${head}Content-Length: 2\r\n\r\nok${smuggled}`],
      'after 1xx and final': [
        'GET',
        `HTTP/1.1 103 Early Hints\r\n\r\n${head}Content-Length: 2\r\n\r\nok${smuggled}`,
      ],
      'trailer length': [
        'GET',
        `${head}Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nContent-Length: 99\r\n\r\n${smuggled}`,
      ],
    };
    for (const [name, [method, answer]] of Object.entries(attacks))
      for (const later of [false, true]) {
        const path = `/${encodeURIComponent(name)}${later ? '-later' : ''}`;
        answers.set(path, (socket) => {
          const split = answer.indexOf(smuggled);
          if (!later) socket.write(answer);
          else {
            socket.write(answer.slice(0, split));
            setTimeout(() => socket.write(smuggled), 20);
          }
        });
        await fetch(`${base()}${path}`, { method }).then(
          (r) => r.text(),
          () => '',
        );
        if (later) await new Promise((resolve) => setTimeout(resolve, 50));
        const next = await fetch(`${base()}/second`);
        assert.equal(await next.text(), 'second', `${name}${later ? ', later' : ''}`);
      }
  });

  it('never splits the request it sends with a held credential carrying a line break or NUL', async () => {
    const received: string[] = [];
    answers.set('/held', (socket) => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'));
    const recording = (socket: Socket) =>
      socket.on('data', (data: Buffer) => received.push(data.toString('latin1')));
    server.on('connection', recording);
    try {
      for (const value of [
        'key\r\nX-Injected: 1',
        'key\nX-Injected: 1',
        'key\rX-Injected: 1',
        'key\0',
        'key\u010d\u010aX-Injected: 1',
      ])
        for (const credentials of [{ header: 'X-Api-Key', value }, { token: value }] as Record<
          string,
          string
        >[]) {
          const held = await enforceOn(port, [], credentials);
          try {
            const result = await fetch(`http://127.0.0.1:${held.address.port}/held`);
            const body = await result.text();
            assert.notEqual(result.status, 200, JSON.stringify(value));
            assert.ok(!body.includes('key'), `the credential is not shown: ${body}`);
          } finally {
            await held.close();
          }
        }
    } finally {
      server.off('connection', recording);
    }
    assert.ok(!received.join('').toLowerCase().includes('x-injected'), received.join(''));
  });

  it('never lets a body the agent framed reach the target unframed, as a request of its own', async () => {
    // A real HTTP/1.1 target, reading pipelined requests as they come.
    const seen: string[] = [];
    const framed = createServer((req, res) => {
      seen.push(`${req.method} ${req.url}`);
      req.resume();
      req.on('end', () => res.end('ok'));
    });
    await new Promise<void>((resolve) => framed.listen(0, '127.0.0.1', resolve));
    const guarded = await enforceOn((framed.address() as { port: number }).port, [
      policy({
        name: 'read-only',
        rules: [{ name: 'no-deletes', action: 'deny', http: { methods: ['DELETE'], paths: ['/orders/**'] } }],
      }),
    ]);
    try {
      const smuggled = 'DELETE /orders/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n';
      for (const method of ['POST', 'PUT', 'GET', 'DELETE'])
        for (const connection of [
          'content-length',
          'Content-Length',
          'keep-alive, content-length',
          ' CONTENT-LENGTH ',
        ])
          await raw(
            `http://127.0.0.1:${guarded.address.port}`,
            `${method} /reports HTTP/1.1\r\nHost: x\r\nConnection: ${connection}\r\nContent-Length: ${smuggled.length}\r\n\r\n${smuggled}`,
            true,
          );
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.ok(!seen.some((request) => request.startsWith('DELETE /orders')), seen.join('\n'));
      assert.ok(seen.length > 0);
    } finally {
      await guarded.close();
      await new Promise((resolve) => framed.close(resolve));
    }
  });

  it('closes the connection of a request whose body the agent cut after the response came', async () => {
    // A target answering before it read the body (as one refusing it does), then waiting for it.
    answers.set('/early', (socket) => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'));
    const before = sockets.size;
    // (The request reaches the target with its first body bytes.)
    for (const sent of ['p', 'partial body']) {
      const url = new URL(base());
      await new Promise<void>((resolve) => {
        const agent = connect(Number(url.port), url.hostname, () =>
          agent.write(`POST /early HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n${sent}`),
        );
        agent.on('data', (chunk: Buffer) => {
          if (chunk.toString().includes('ok')) agent.destroy();
        });
        agent.on('close', () => resolve());
      });
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.ok(
      sockets.size <= before,
      `${sockets.size - before} connections wait for a body that never comes`,
    );
  });

  it('answers Expect: 100-continue itself: a denied body never reaches the target, an allowed one arrives whole', async () => {
    const seen: string[] = [];
    const framed = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => {
        body += chunk;
      });
      req.on('end', () => {
        seen.push(`${req.method} ${req.url} expect=${req.headers.expect ?? ''} ${body}`);
        res.end('ok');
      });
    });
    await new Promise<void>((resolve) => framed.listen(0, '127.0.0.1', resolve));
    const guarded = await enforceOn((framed.address() as { port: number }).port, [
      policy({
        name: 'read-only',
        rules: [{ name: 'no-deletes', action: 'deny', http: { methods: ['DELETE'], paths: ['/orders/**'] } }],
      }),
    ]);
    /** The head with Expect, then the body once 100 Continue came (or at once): the final status. */
    const send = (expect: string, body: string, wait: boolean) =>
      new Promise<string>((resolve, reject) => {
        const agent = connect(guarded.address.port, '127.0.0.1', () => {
          agent.write(
            `POST /orders/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\n${expect}\r\nContent-Length: ${body.length}\r\n\r\n`,
          );
          if (!wait) agent.write(body);
        });
        let answer = '';
        agent.on('data', (chunk: Buffer) => {
          const continued = !answer.includes(' 100 ');
          answer += chunk.toString('latin1');
          if (wait && continued && answer.includes(' 100 ')) agent.write(body);
        });
        agent.on('end', () => resolve(/HTTP\/1\.1 ([2-5]\d\d)/.exec(answer)?.[1] ?? answer));
        agent.on('error', reject);
      });
    try {
      for (const expect of ['Expect: 100-continue', 'EXPECT: 100-Continue'])
        for (const wait of [true, false]) {
          assert.equal(await send(expect, '_method=DELETE', wait), '403', `${expect}, waiting: ${wait}`);
          assert.equal(await send(expect, 'name=ada', wait), '200', `${expect}, waiting: ${wait}`);
        }
      assert.deepEqual(seen, Array(4).fill('POST /orders/1 expect= name=ada'));
    } finally {
      await guarded.close();
      await new Promise((resolve) => framed.close(resolve));
    }
  });

  it('closes the connection to a target that never answers once the agent stops waiting', async () => {
    answers.set('/silent', () => {});
    answers.set('/trickle', (socket) => socket.write('HTTP/1.1 200 OK\r\nX-Slow: '));
    const before = sockets.size;
    const url = new URL(base());
    for (const path of ['/silent', '/trickle'])
      await new Promise<void>((resolve) => {
        const agent = connect(Number(url.port), url.hostname, () =>
          agent.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`),
        );
        setTimeout(() => agent.destroy(), 50);
        agent.on('close', () => resolve());
      });
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.ok(sockets.size <= before, `${sockets.size - before} connections still wait for an answer`);
  });

  it('closes the connection of a body it refused, rather than reading an endless one', async () => {
    answers.set('/stream', (socket) => {
      socket.write(
        'HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n',
      );
      const more = setInterval(() => socket.write('400\r\n' + 'x'.repeat(1024) + '\r\n'), 1);
      socket.on('close', () => clearInterval(more));
    });
    const before = sockets.size;
    for (let i = 0; i < 3; i++) {
      const result = await fetch(`${base()}/stream`);
      assert.equal(result.status, 502);
      await result.text();
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.ok(sockets.size <= before, `${sockets.size - before} streams still read`);
  });
});
