// A real HTTP (or HTTPS) target for tests: records what reaches it and serves fixed routes,
// including large and slow bodies written with backpressure.

import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { type CommandResult, runCommand } from './process.ts';

export interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  bodyBytes: number;
}

export interface HttpUpstream {
  port: number;
  requests: SeenRequest[];
  close(): Promise<void>;
}

export const customer = {
  customer: { name: 'Alice', email: 'alice@example.com', card: '4111111111111111', tier: 'gold' },
  note: 'card on file 4111 1111 1111 1111',
  count: 3,
};

/** Bytes that are not UTF-8 (Latin-1 "café", a lone continuation byte, 0xff). */
export const notUtf8 = Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x20, 0x80, 0xff, 0x0a]);

async function writeAll(res: ServerResponse, chunk: string | Buffer): Promise<void> {
  if (!res.write(chunk)) await new Promise((resolve) => res.once('drain', resolve));
}

async function route(req: IncomingMessage, res: ServerResponse, bodyBytes: number): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://upstream');
  switch (url.pathname) {
    case '/data':
      // Chunked: the length is not known ahead.
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(customer));
      return;
    case '/data-sized': {
      const body = JSON.stringify(customer);
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
      return;
    }
    case '/text':
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('card 4111111111111111 and mail bob@example.org\n');
      return;
    case '/big': {
      // Megabytes of text lines, a card number in every 1000th line.
      const megabytes = Number(url.searchParams.get('mb') ?? '50');
      res.writeHead(200, { 'content-type': 'text/plain' });
      const line = `${'x'.repeat(99)}\n`;
      const block = line.repeat(1000 - 1) + `card 4111111111111111${'y'.repeat(78)}\n`;
      const blocks = Math.ceil((megabytes * 1024 * 1024) / block.length);
      for (let i = 0; i < blocks; i++) await writeAll(res, block);
      res.end();
      return;
    }
    case '/big-json': {
      // Megabytes of JSON records, streamed (the length is not known ahead): a name for a JSON
      // path, an email for the detector, and an email behind a \u0040 escape that only a JSON
      // reader sees. The same 500 records repeat; the record count is in the last one.
      const megabytes = Number(url.searchParams.get('mb') ?? '40');
      res.writeHead(200, { 'content-type': 'application/json' });
      await writeAll(res, '{"records": [\n');
      const records: string[] = [];
      for (let i = 0; i < 500; i++) {
        records.push(
          `{"id": ${i}, "name": "Alice Smith", "email": "user${i}@example.com", "alias": "user${i}\\u0040example.org", "note": "${'n'.repeat(100)}"}`,
        );
      }
      const block = Buffer.from(`${records.join(',\n')},\n`);
      let count = 0;
      for (let written = 0; written < megabytes * 1024 * 1024; written += block.length) {
        await writeAll(res, block);
        count += records.length;
      }
      await writeAll(res, `{"count": ${count}}]}`);
      res.end();
      return;
    }
    case '/deep-json': {
      // Nested past any reasonable depth, an email at the bottom.
      const body = `${'['.repeat(300)}"alice@example.com"${']'.repeat(300)}`;
      const sized = url.searchParams.has('sized');
      res.writeHead(200, {
        'content-type': 'application/json',
        ...(sized && { 'content-length': Buffer.byteLength(body) }),
      });
      res.end(body);
      return;
    }
    case '/slow': {
      // A card number split across chunks written 150 ms apart.
      res.writeHead(200, { 'content-type': 'text/plain' });
      for (const part of ['start ', '4111 1111', ' 1111 1111', ' end\n']) {
        await writeAll(res, part);
        await new Promise((resolve) => setTimeout(resolve, 150));
      }
      res.end();
      return;
    }
    case '/headers':
      // Values in response headers, some percent-encoded.
      res.writeHead(200, {
        'content-type': 'application/json',
        'set-cookie': ['session=abc; Path=/', 'owner=ada%40example.com; Path=/'],
        location: '/customers?email=ada%40example.com',
        link: '</cards/4111111111111111>; rel="card"',
        'x-customer': 'ada@example.com',
        'www-authenticate':
          'Bearer realm="api", error="invalid_token", token="eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"',
      });
      res.end('{}');
      return;
    case '/encoded':
      // Values the detectors only see decoded: percent-encoding, JavaScript escapes, character references.
      res.writeHead(200, { 'content-type': url.searchParams.get('type') ?? 'text/html' });
      res.end(
        'a ada%40example.com b bob\\u0040example.org c carol&#64;example.net d dave&#x40;example.io e 4111%201111%201111%201111\n',
      );
      return;
    case '/json-encoded':
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({ next: '/customers?email=ada%40example.com', pan: '4111%201111%201111%201111' }),
      );
      return;
    case '/utf16': {
      // JSON in UTF-16 little or big endian, with a byte order mark, a charset, or neither.
      const body = JSON.stringify(customer);
      const big = url.searchParams.get('order') === 'be';
      let bytes = Buffer.from(body, 'utf16le');
      if (big) bytes = bytes.swap16();
      const bom = url.searchParams.has('bom')
        ? Buffer.from(big ? [0xfe, 0xff] : [0xff, 0xfe])
        : Buffer.alloc(0);
      const charset = url.searchParams.get('charset');
      const type = url.searchParams.get('type') ?? 'application/json';
      res.writeHead(200, { 'content-type': `${type}${charset ? `; charset=${charset}` : ''}` });
      res.end(Buffer.concat([bom, bytes]));
      return;
    }
    case '/binary':
      res.writeHead(200, { 'content-type': url.searchParams.get('type') ?? 'application/octet-stream' });
      res.end(Buffer.concat([Buffer.from([0, 1, 2, 255]), Buffer.from(' alice@example.com ')]));
      return;
    case '/gzip':
      res.writeHead(200, { 'content-type': 'text/plain', 'content-encoding': 'gzip' });
      res.end(gzipSync('card 4111111111111111 and mail bob@example.org\n'));
      return;
    case '/not-utf8':
      // Latin-1 and stray bytes that are not UTF-8.
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(notUtf8);
      return;
    case '/slow-values': {
      // Values split across chunks with pauses longer than any timer would wait.
      res.writeHead(200, { 'content-type': 'text/plain' });
      for (const part of [
        'mail ada',
        '.lovelace@exam',
        'ple.com token: Bear',
        'er abcdef0123456',
        '789abcdef end\n',
      ]) {
        await writeAll(res, part);
        await new Promise((resolve) => setTimeout(resolve, 1200));
      }
      res.end();
      return;
    }
    case '/echo':
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ method: req.method, bytes: bodyBytes }));
      return;
    default:
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ method: req.method, path: url.pathname }));
  }
}

export async function startHttpUpstream(tls?: { cert: string; key: string }): Promise<HttpUpstream> {
  const requests: SeenRequest[] = [];
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    let bytes = 0;
    req.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
    });
    req.on('end', () => {
      requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, bodyBytes: bytes });
      route(req, res, bytes).catch(() => res.destroy());
    });
  };
  const server = tls
    ? createHttpsServer({ cert: tls.cert, key: tls.key }, handler)
    : createHttpServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

export interface Curl extends CommandResult {
  status: number;
  body: string;
  headers: string;
}

/** The real curl (-s -S) as an agent runs it: the status from -w, the response headers from a file. */
export async function curl(args: string[], timeoutMs = 60_000): Promise<Curl> {
  // Headers go to a file: curl 7.88 crashes writing them to /dev/stderr when that is a pipe.
  const headerFile = join(tmpdir(), `airlock-curl-${randomUUID()}`);
  const result = await runCommand(
    'curl',
    ['-s', '-S', '-D', headerFile, '-w', '\n%{http_code}', ...args],
    undefined,
    timeoutMs,
  );
  const cut = result.stdout.lastIndexOf('\n');
  const headers = existsSync(headerFile) ? readFileSync(headerFile, 'utf8') : '';
  rmSync(headerFile, { force: true });
  return {
    ...result,
    status: Number(result.stdout.slice(cut + 1)),
    body: result.stdout.slice(0, cut),
    headers,
  };
}
