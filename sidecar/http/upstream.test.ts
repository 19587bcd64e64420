import assert from 'node:assert/strict';
import { once } from 'node:events';
import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Upstream, type UpstreamResponse } from './upstream.ts';

/**
 * A target that answers each request head it reads with the next scripted bytes, as they are
 * (framing errors included), and counts the connections it was opened.
 */
interface ScriptedTarget {
  port: number;
  connections: number;
  /** Request heads (and bodies) as received, per connection. */
  received: string[];
  answer: (request: string, socket: Socket) => void;
  server: Server;
}

async function scriptedTarget(): Promise<ScriptedTarget> {
  const target: ScriptedTarget = {
    port: 0,
    connections: 0,
    received: [],
    answer: () => {},
    server: createServer((socket) => {
      const index = target.connections++;
      target.received[index] = '';
      // Bytes written while the client is idle reach it then, not with its next request's ACK.
      socket.setNoDelay(true);
      socket.on('data', (data) => {
        target.received[index] += data.toString('latin1');
        if (target.received[index]!.includes('\r\n\r\n')) target.answer(data.toString('latin1'), socket);
      });
      socket.on('error', () => {});
    }),
  };
  target.server.listen(0, '127.0.0.1');
  await once(target.server, 'listening');
  target.port = (target.server.address() as AddressInfo).port;
  return target;
}

async function exchange(
  upstream: Upstream,
  method = 'GET',
  headers: Record<string, string> = { host: 'target' },
): Promise<{ status: number; headers: UpstreamResponse['headers']; body: string }> {
  const request = upstream.request(method, '/resource', headers);
  const response = await new Promise<UpstreamResponse>((resolve, reject) => {
    request.on('response', resolve);
    request.on('error', reject);
    request.end();
  });
  const chunks: Buffer[] = [];
  for await (const chunk of response) chunks.push(chunk as Buffer);
  return { status: response.statusCode, headers: response.headers, body: Buffer.concat(chunks).toString() };
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 30));

describe('the upstream client', () => {
  let target: ScriptedTarget;
  let upstream: Upstream;

  before(async () => {
    target = await scriptedTarget();
  });
  after(() => {
    upstream?.destroy();
    target.server.close();
  });

  function fresh(): Upstream {
    upstream?.destroy();
    target.connections = 0;
    target.received = [];
    upstream = new Upstream({
      host: '127.0.0.1',
      port: target.port,
      secure: false,
      tls: { rejectUnauthorized: true },
    });
    return upstream;
  }

  it('keeps a connection for the next request once a response ended where its framing said', async () => {
    fresh();
    target.answer = (_request, socket) =>
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 5\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nhello');
    const first = await exchange(upstream);
    await settle();
    const second = await exchange(upstream);
    assert.equal(first.body, 'hello');
    assert.deepEqual(first.headers['set-cookie'], ['a=1', 'b=2']);
    assert.equal(second.body, 'hello');
    assert.equal(target.connections, 1);
  });

  it('reads a chunked body without its trailers, and one framed by the connection closing', async () => {
    fresh();
    target.answer = (_request, socket) =>
      socket.write(
        'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: secret\r\n\r\n',
      );
    const chunked = await exchange(upstream);
    assert.equal(chunked.body, 'abcde');
    assert.equal(chunked.headers['x-trailer'], undefined);
    target.answer = (_request, socket) => socket.end('HTTP/1.1 200 OK\r\n\r\nuntil the end');
    const closed = await exchange(upstream);
    assert.equal(closed.body, 'until the end');
    await settle();
    target.answer = (_request, socket) => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    assert.equal((await exchange(upstream)).body, 'ok');
    assert.equal(target.connections, 2, 'the closed connection is not reused');
  });

  it('never lets bytes after a response reach the next request: the connection closes', async () => {
    fresh();
    const smuggled = 'HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled';
    for (const extra of [smuggled, smuggled.slice(0, 20), 'H', '\r\n']) {
      target.answer = (_request, socket) =>
        socket.write(`HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst${extra}`);
      const request = upstream.request('GET', '/', { host: 'target' });
      let responses = 0;
      let body = '';
      request.on('response', (response: UpstreamResponse) => {
        responses++;
        response.on('data', (chunk: Buffer) => {
          body += chunk;
        });
      });
      request.end();
      await settle();
      assert.equal(responses, 1, 'one response per request');
      assert.equal(body, 'first');
      await settle();
      target.answer = (_request, socket) =>
        socket.write('HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond');
      assert.equal((await exchange(upstream)).body, 'second');
    }
    // The same over two writes, the second while the connection is idle.
    target.answer = (_request, socket) => {
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst');
      setTimeout(() => socket.write(smuggled), 10);
    };
    assert.equal((await exchange(upstream)).body, 'first');
    await settle();
    target.answer = (_request, socket) => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond');
    assert.equal((await exchange(upstream)).body, 'second');
  });

  it('skips informational responses, and reads no body after HEAD, 204 or 304', async () => {
    fresh();
    target.answer = (_request, socket) =>
      socket.write(
        'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\ndone',
      );
    const informed = await exchange(upstream);
    assert.equal(informed.status, 201);
    assert.equal(informed.body, 'done');
    target.answer = (_request, socket) => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n');
    const head = await exchange(upstream, 'HEAD');
    assert.equal(head.body, '');
    for (const status of ['204 No Content', '304 Not Modified']) {
      target.answer = (_request, socket) => socket.write(`HTTP/1.1 ${status}\r\n\r\n`);
      assert.equal((await exchange(upstream)).body, '');
    }
    await settle();
    target.answer = (_request, socket) => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    assert.equal((await exchange(upstream)).body, 'ok');
    assert.equal(target.connections, 1);
  });

  it('fails a response the parser cannot frame strictly, a switch of protocol, and a cut body', async () => {
    fresh();
    const refused = [
      'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!',
      'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
      'HTTP/1.1 200 OK\r\nX-Bad\nFolded: yes\r\nContent-Length: 0\r\n\r\n',
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n',
      'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort',
      'not http at all\r\n\r\n',
    ];
    for (const answer of refused) {
      target.answer = (_request, socket) => socket.end(answer);
      await assert.rejects(exchange(upstream), `refused: ${JSON.stringify(answer)}`);
    }
  });

  it('frames a request body by its length or in chunks, and refuses a header that would split the head', async () => {
    fresh();
    target.answer = (request, socket) => {
      if (request.includes('0\r\n\r\n') || request.endsWith('body'))
        socket.write('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n');
    };
    const send = (headers: Record<string, string>) =>
      new Promise<void>((resolve, reject) => {
        const request = upstream.request('POST', '/upload', headers);
        request.on('response', (response: UpstreamResponse) => {
          response.resume();
          response.on('end', resolve);
        });
        request.on('error', reject);
        request.write(Buffer.from('body'));
        request.end();
      });
    await send({ host: 'target', 'content-length': '4' });
    await settle();
    await send({ host: 'target', 'transfer-encoding': 'chunked' });
    assert.match(target.received[0]!, /content-length: 4\r\n[\s\S]*\r\n\r\nbody/);
    assert.match(target.received[0]!, /transfer-encoding: chunked\r\n[\s\S]*\r\n\r\n4\r\nbody\r\n0\r\n\r\n$/);
    assert.throws(() => upstream.request('GET', '/', { authorization: 'Bearer x\r\nX-Injected: 1' }));
    assert.throws(() => upstream.request('GET', '/', { 'bad name': 'x' }));
  });
});

describe('the upstream client, against a target that misbehaves', () => {
  let target: ScriptedTarget;
  let upstream: Upstream;

  before(async () => {
    target = await scriptedTarget();
    upstream = new Upstream({
      host: '127.0.0.1',
      port: target.port,
      secure: false,
      tls: { rejectUnauthorized: true },
    });
  });
  after(() => {
    upstream.destroy();
    target.server.close();
  });

  it("never gives one response's trailers to the next as headers, however many headers it has", async () => {
    const many = Array.from({ length: 40 }, (_, i) => `X-H${i}: ${i}\r\n`).join('');
    target.answer = (_request, socket) =>
      socket.write(
        'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n' +
          `${Array.from({ length: 40 }, (_, i) => `X-Trailer${i}: secret\r\n`).join('')}\r\n`,
      );
    assert.equal((await exchange(upstream)).body, 'ok');
    await settle();
    target.answer = (_request, socket) =>
      socket.write(`HTTP/1.1 200 OK\r\n${many}Constructor: c\r\nContent-Length: 2\r\n\r\nok`);
    const next = await exchange(upstream);
    assert.equal(next.headers['x-h39'], '39');
    assert.equal(next.headers.constructor, 'c');
    assert.ok(!Object.keys(next.headers).some((name) => name.startsWith('x-trailer')));
  });

  it('a body cut while nobody listens for errors (drained after a refusal) does not end the process', async () => {
    target.answer = (_request, socket) => socket.end('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort');
    const request = upstream.request('GET', '/', { host: 'target' });
    const response = await new Promise<UpstreamResponse>((resolve) => {
      request.on('response', resolve);
      request.end();
    });
    response.resume();
    // (events.once would listen for 'error' itself.)
    await new Promise((resolve) => response.on('close', resolve));
    assert.equal(response.readableEnded, false);
  });
});

describe('the upstream client, against requests and targets that would exhaust or split it', () => {
  let target: ScriptedTarget;
  let upstream: Upstream;

  before(async () => {
    target = await scriptedTarget();
    upstream = new Upstream({
      host: '127.0.0.1',
      port: target.port,
      secure: false,
      tls: { rejectUnauthorized: true },
    });
  });
  after(() => {
    upstream.destroy();
    target.server.close();
  });

  it('refuses a method or path that would split the request line, and sends nothing', async () => {
    for (const method of ['GET /x HTTP/1.1\r\nX:', 'GE T', 'GET\r', 'GET\n', 'G\0', '', 'GĊ'])
      assert.throws(() => upstream.request(method, '/', { host: 'target' }), JSON.stringify(method));
    for (const path of [
      '/a HTTP/1.1\r\nX-Injected: 1\r\n\r\n',
      '/a b',
      '/a\tb',
      '/a\rb',
      '/a\nb',
      '/a\0b',
      '/Ċ',
      '/ĠX',
    ])
      assert.throws(() => upstream.request('GET', path, { host: 'target' }), JSON.stringify(path));
    await settle();
    assert.equal(target.connections, 0);
  });

  it('never writes a body beyond its framing: a byte past its length, or one its head did not declare', async () => {
    const received = () => target.received.join('');
    target.answer = () => {};
    const attempts: [string, Record<string, string>, string][] = [
      ['POST', { host: 'target', 'content-length': '4' }, 'bodyGET /smuggled HTTP/1.1\r\n\r\n'],
      ['POST', { host: 'target' }, 'GET /smuggled HTTP/1.1\r\n\r\n'],
      ['GET', { host: 'target' }, 'GET /smuggled HTTP/1.1\r\n\r\n'],
      ['DELETE', { host: 'target', 'content-length': '0' }, 'GET /smuggled HTTP/1.1\r\n\r\n'],
    ];
    for (const [method, headers, body] of attempts) {
      const request = upstream.request(method, '/', headers);
      const failed = new Promise<Error>((resolve) => request.on('error', resolve));
      request.write(Buffer.from(body.slice(0, 4)));
      request.write(Buffer.from(body.slice(4)));
      request.end();
      assert.match(
        (await failed).message,
        /longer than|Content-Length/,
        `${method} ${JSON.stringify(headers)}`,
      );
    }
    // A body shorter than its length leaves the target waiting for the rest: never kept.
    const short = upstream.request('POST', '/', { host: 'target', 'content-length': '10' });
    const cut = new Promise<Error>((resolve) => short.on('error', resolve));
    short.write(Buffer.from('body'));
    short.end();
    assert.match((await cut).message, /shorter/);
    await settle();
    assert.ok(!received().includes('/smuggled'), received());
    for (const length of ['4, 4', '-1', ' 4', '0x4', '4.0', '', '1e3', '99999999999999999999'])
      assert.throws(
        () => upstream.request('POST', '/', { 'content-length': length }),
        JSON.stringify(length),
      );
    assert.throws(() => upstream.request('POST', '/', { 'content-length': ['4', '4'] }));
    assert.throws(() =>
      upstream.request('POST', '/', { 'content-length': '4', 'transfer-encoding': 'chunked' }),
    );
    assert.throws(() => upstream.request('POST', '/', { 'transfer-encoding': 'gzip, chunked' }));
  });

  it('fails a response whose head, chunk sizes, extensions or trailers never end or cannot be read', async () => {
    /** Writes `start`, then `more` every millisecond until the connection closes. */
    const endless = (start: string, more: string) => (_request: string, socket: Socket) => {
      socket.write(start);
      const writing = setInterval(() => {
        if (socket.destroyed) clearInterval(writing);
        else socket.write(more);
      }, 1);
      socket.on('close', () => clearInterval(writing));
    };
    const attacks: Record<string, ScriptedTarget['answer']> = {
      'a head of 1 MB': (_request, socket) =>
        socket.write(`HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(1 << 20)}\r\nContent-Length: 0\r\n\r\n`),
      '10,000 headers': (_request, socket) =>
        socket.write(`HTTP/1.1 200 OK\r\n${'a: b\r\n'.repeat(10_000)}Content-Length: 0\r\n\r\n`),
      'an endless head': endless('HTTP/1.1 200 OK\r\n', 'X-More: more\r\n'.repeat(100)),
      'a chunk size not hex': (_request, socket) =>
        socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2x\r\nok\r\n0\r\n\r\n'),
      'a chunk size past 64 bits': (_request, socket) =>
        socket.write(
          'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\nok\r\n0\r\n\r\n',
        ),
      'a negative chunk size': (_request, socket) =>
        socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-2\r\nok\r\n0\r\n\r\n'),
      'an endless chunk extension': endless(
        'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;x=',
        'y'.repeat(4096),
      ),
      'endless trailers': endless(
        'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n',
        `X-Trailer: ${'t'.repeat(1000)}\r\n`,
      ),
      'one endless trailer': endless(
        'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-Trailer: ',
        't'.repeat(4096),
      ),
    };
    for (const [name, answer] of Object.entries(attacks)) {
      target.answer = answer;
      await assert.rejects(exchange(upstream), name);
    }
  });

  it('keeps at most 256 idle connections after a burst of concurrent requests', async () => {
    target.answer = (_request, socket) => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    const opened = target.connections;
    const burst = await Promise.all(Array.from({ length: 300 }, () => exchange(upstream)));
    assert.ok(burst.every((answer) => answer.body === 'ok'));
    await settle();
    const open = await new Promise<number>((resolve, reject) =>
      target.server.getConnections((error, count) => (error ? reject(error) : resolve(count))),
    );
    assert.ok(open <= 256, `${open} connections left open`);
    assert.equal((await exchange(upstream)).body, 'ok', 'a kept one is still used');
    assert.equal(target.connections - opened, 300);
  });
});
