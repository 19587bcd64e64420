// Wire-protocol behaviour of the PostgreSQL enforcer with a raw client: startup negotiation,
// pipelines, row limits, injected errors, malformed and oversized frames.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import type { ProtocolErrorEvent } from '../../api/events.ts';
import { createCertificateAuthority } from '../../operator/pki.ts';
import {
  bind,
  describe as describeMessage,
  encodeStartup,
  execute,
  flush,
  parse,
  query,
  sync,
} from '../../sidecar/postgres/messages.ts';
import {
  type PostgresServer,
  policy,
  psql,
  RawClient,
  startEnforcer,
  startPostgres,
  type TestEnforcer,
} from '../support/postgres.ts';

let server: PostgresServer;
let enforcer: TestEnforcer;
let secure: TestEnforcer;
const ca = await createCertificateAuthority('Airlock Enforcer Test CA');
const leaf = await ca.issue({
  commonName: 'localhost',
  dnsNames: ['localhost'],
  ipAddresses: ['127.0.0.1'],
  usage: 'server',
});

const rules = policy('guard', {
  rules: [{ name: 'no-drop', action: 'deny', sql: { statements: ['DROP'] } }],
});

before(async () => {
  server = await startPostgres();
  await server.asUser('CREATE TABLE log (id int)');
  enforcer = await startEnforcer(server, [rules]);
  secure = await startEnforcer(server, [rules], { tls: { cert: leaf.certificate, key: leaf.privateKey } });
});

after(async () => {
  await enforcer?.close();
  await secure?.close();
  await server?.stop();
});

function untyped(...ints: number[]): Buffer {
  const b = Buffer.alloc(4 + ints.length * 4);
  b.writeInt32BE(b.length, 0);
  for (const [i, v] of ints.entries()) b.writeInt32BE(v, 4 + i * 4);
  return b;
}

function startupWithVersion(major: number, minor: number, params: [string, string][]): Buffer {
  const b = encodeStartup(params);
  b.writeInt32BE((major << 16) | minor, 4);
  return b;
}

function dataRowValues(body: Buffer): (string | null)[] {
  const values: (string | null)[] = [];
  let at = 2;
  for (let i = 0; i < body.readInt16BE(0); i++) {
    const length = body.readInt32BE(at);
    at += 4;
    values.push(length < 0 ? null : body.toString('utf8', at, at + length));
    if (length > 0) at += length;
  }
  return values;
}

const types = (frames: { type: string }[]) => frames.map((f) => f.type).join(' ');
const protocolErrors = (target: TestEnforcer) =>
  target.events.filter((e): e is ProtocolErrorEvent => e.type === 'protocol.error');

describe('startup', () => {
  test('SSLRequest is answered N without a certificate, and the session goes on in plaintext', async () => {
    const raw = await RawClient.connect(enforcer.host, enforcer.port);
    raw.send(untyped(80877103));
    assert.equal((await raw.bytes(1)).toString(), 'N');
    raw.send(encodeStartup([['user', 'x']]));
    const frames = await raw.until('Z');
    assert.equal(types(frames.filter((f) => f.type !== 'S')), 'R K Z');
    raw.close();
  });

  test('GSSENCRequest is answered N', async () => {
    const raw = await RawClient.connect(enforcer.host, enforcer.port);
    raw.send(untyped(80877104));
    assert.equal((await raw.bytes(1)).toString(), 'N');
    raw.send(encodeStartup([['user', 'x']]));
    assert.equal((await raw.until('Z')).at(-1)?.type, 'Z');
    raw.close();
  });

  test('TLS to the client when the enforcer has a certificate: pg and psql verify-full', async () => {
    const c = new pg.Client({ ...secure.client, ssl: { ca: ca.certificate, servername: 'localhost' } });
    await c.connect();
    assert.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1);
    await c.end();
    const { writeFileSync, mkdtempSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(join(tmpdir(), 'airlock-psql-'));
    writeFileSync(join(dir, 'ca.crt'), ca.certificate);
    const result = await psql({ host: 'localhost', port: secure.port }, 'SELECT 42;', {
      args: ['-At'],
      env: { PGSSLMODE: 'verify-full', PGSSLROOTCERT: join(dir, 'ca.crt') },
    });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.trim(), '42');
  });

  test('plaintext bytes buffered after SSLRequest are refused', async () => {
    const raw = await RawClient.connect(secure.host, secure.port);
    raw.send(untyped(80877103), encodeStartup([['user', 'x']]));
    const frames = await raw.until('never');
    assert.equal(frames[0]?.type, 'E');
    assert.equal(frames[0]?.fields?.get('C'), '08P01');
    assert.ok(raw.closed);
    assert.ok(protocolErrors(secure).some((e) => e.code === 'plaintext-before-tls'));
  });

  test('protocol 3.2 is answered with NegotiateProtocolVersion 3.0', async () => {
    const raw = await RawClient.connect(enforcer.host, enforcer.port);
    raw.send(
      startupWithVersion(3, 2, [
        ['user', 'x'],
        ['_pq_.fancy', 'on'],
      ]),
    );
    const frames = await raw.until('Z');
    assert.equal(frames[0]?.type, 'v');
    const body = frames[0]!.body;
    assert.equal(body.readInt32BE(0), 3 << 16);
    assert.equal(body.readInt32BE(4), 1);
    assert.equal(body.toString('utf8', 8, body.length - 1), '_pq_.fancy');
    assert.equal(frames[1]?.type, 'R');
    raw.send(query('SELECT 1'));
    assert.equal(types(await raw.until('Z')), 'T D C Z');
    raw.close();
  });

  test('protocol major other than 3 is refused', async () => {
    const raw = await RawClient.connect(enforcer.host, enforcer.port);
    raw.send(startupWithVersion(4, 0, [['user', 'x']]));
    const frames = await raw.until('never');
    assert.equal(frames[0]?.fields?.get('C'), '0A000');
    assert.ok(raw.closed);
  });

  test('replication connections are refused with a clear FATAL', async () => {
    const raw = await RawClient.connect(enforcer.host, enforcer.port);
    raw.send(
      encodeStartup([
        ['user', 'x'],
        ['replication', 'database'],
      ]),
    );
    const frames = await raw.until('never');
    assert.equal(frames[0]?.fields?.get('S'), 'FATAL');
    assert.equal(frames[0]?.fields?.get('C'), '42501');
    assert.match(frames[0]?.fields?.get('M') ?? '', /replication/);
  });

  test('options: role changes are refused, settings forwarded', async () => {
    const refused = await RawClient.connect(enforcer.host, enforcer.port);
    refused.send(
      encodeStartup([
        ['user', 'x'],
        ['options', '-c role=airlock_admin'],
      ]),
    );
    const frames = await refused.until('never');
    assert.equal(frames[0]?.fields?.get('C'), '42501');
    const direct = await RawClient.connect(enforcer.host, enforcer.port);
    direct.send(
      encodeStartup([
        ['user', 'x'],
        ['session_authorization', 'airlock_admin'],
      ]),
    );
    assert.equal((await direct.until('never'))[0]?.fields?.get('C'), '42501');

    const raw = await RawClient.session(enforcer.host, enforcer.port, [
      ['options', '-c geqo_threshold=5 --work_mem=8MB -c statement_timeout=12345'],
      ['application_name', 'agent-x'],
    ]);
    raw.send(
      query(
        "SELECT current_setting('geqo_threshold'), current_setting('work_mem'), current_setting('statement_timeout'), current_setting('application_name'), current_user",
      ),
    );
    const row = (await raw.until('Z')).find((f) => f.type === 'D');
    assert.ok(row);
    assert.deepEqual(dataRowValues(row.body), ['5', '8MB', '12345ms', 'agent-x', server.user]);
    raw.close();
  });
});

describe('extended protocol', () => {
  test('pipelined groups: a denied group fails alone, the others run', async () => {
    const raw = await RawClient.session(enforcer.host, enforcer.port);
    raw.send(
      parse('', 'INSERT INTO log VALUES (1)'),
      bind('', ''),
      execute(''),
      sync(),
      parse('', 'DROP TABLE log'),
      bind('', ''),
      execute(''),
      sync(),
      parse('', 'SELECT count(*) FROM log'),
      bind('', ''),
      describeMessage('P', ''),
      execute(''),
      sync(),
    );
    const first = await raw.until('Z');
    const second = await raw.until('Z');
    const third = await raw.until('Z');
    assert.equal(types(first), '1 2 C Z');
    assert.equal(types(second), 'E Z');
    assert.equal(second[0]?.fields?.get('C'), '42501');
    assert.match(second[0]?.fields?.get('M') ?? '', /no-drop/);
    assert.equal(types(third), '1 2 T D C Z');
    raw.close();
  });

  test('a denial inside one pipeline rolls back its implicit transaction and skips to Sync', async () => {
    const raw = await RawClient.session(enforcer.host, enforcer.port);
    raw.send(
      parse('', 'INSERT INTO log VALUES (99)'),
      bind('', ''),
      execute(''),
      parse('', 'DROP TABLE log'),
      bind('', ''),
      execute(''),
      parse('', 'INSERT INTO log VALUES (100)'),
      bind('', ''),
      execute(''),
      sync(),
    );
    const frames = await raw.until('Z');
    assert.equal(types(frames), '1 2 C E Z');
    assert.equal(frames.at(-1)?.body.toString(), 'I');
    raw.close();
    const { rows } = await server.asUser('SELECT count(*)::int AS n FROM log WHERE id IN (99, 100)');
    assert.equal(rows[0].n, 0);
  });

  test('a denial in an explicit transaction leaves it failed (E)', async () => {
    const raw = await RawClient.session(enforcer.host, enforcer.port);
    raw.send(query('BEGIN'));
    assert.equal((await raw.until('Z')).at(-1)?.body.toString(), 'T');
    raw.send(parse('', 'DROP TABLE log'), bind('', ''), execute(''), sync());
    const frames = await raw.until('Z');
    assert.equal(types(frames), 'E Z');
    assert.equal(frames.at(-1)?.body.toString(), 'E');
    raw.send(query('ROLLBACK'));
    assert.equal((await raw.until('Z')).at(-1)?.body.toString(), 'I');
    raw.close();
  });

  test('Execute with a row limit returns PortalSuspended, then the rest', async () => {
    const raw = await RawClient.session(enforcer.host, enforcer.port);
    raw.send(
      parse('s', 'SELECT g FROM generate_series(1, 10) g'),
      bind('p', 's'),
      execute('p', 4),
      execute('p', 4),
      execute('p', 4),
      sync(),
    );
    const frames = await raw.until('Z');
    assert.equal(types(frames), '1 2 D D D D s D D D D s D D C Z');
    raw.close();
  });

  test('Flush delivers results before Sync', async () => {
    const raw = await RawClient.session(enforcer.host, enforcer.port);
    raw.send(parse('', 'SELECT 7'), bind('', ''), execute(''), flush());
    assert.equal(types(await raw.until('C')), '1 2 D C');
    raw.send(sync());
    assert.equal(types(await raw.until('Z')), 'Z');
    raw.close();
  });

  test('an empty query and a server error are relayed like the server sends them', async () => {
    const raw = await RawClient.session(enforcer.host, enforcer.port);
    raw.send(query(''));
    assert.equal(types(await raw.until('Z')), 'I Z');
    raw.send(parse('', 'SELECT nope'), bind('', ''), execute(''), sync());
    const frames = await raw.until('Z');
    assert.equal(types(frames), 'E Z');
    assert.equal(frames[0]?.fields?.get('C'), '42703');
    raw.close();
  });

  test('FunctionCall is denied under an enforcing policy', async () => {
    const raw = await RawClient.session(enforcer.host, enforcer.port);
    // F: function OID 1299 (now()), no arguments, text result.
    const body = Buffer.alloc(4 + 2 + 2 + 2);
    body.writeInt32BE(1299, 0);
    const header = Buffer.alloc(5);
    header.write('F');
    header.writeInt32BE(body.length + 4, 1);
    raw.send(header, body);
    const frames = await raw.until('Z');
    assert.equal(types(frames), 'E Z');
    assert.equal(frames[0]?.fields?.get('C'), '42501');
    raw.close();
  });

  test('notifications arrive at any time', async () => {
    const listener = new pg.Client(enforcer.client);
    await listener.connect();
    const got = new Promise<string | undefined>((resolve) =>
      listener.on('notification', (n) => resolve(n.payload)),
    );
    await listener.query('LISTEN airlock_test');
    await server.asUser("NOTIFY airlock_test, 'hello'");
    assert.equal(await got, 'hello');
    await listener.end();
  });
});

describe('malformed and oversized frames', () => {
  test('a frame with an invalid length closes the session and is recorded', async () => {
    const raw = await RawClient.session(enforcer.host, enforcer.port);
    raw.send(Buffer.from([0x51, 0, 0, 0, 2]));
    const frames = await raw.until('never');
    assert.equal(frames[0]?.fields?.get('C'), '08P01');
    assert.ok(raw.closed);
    assert.ok(protocolErrors(enforcer).some((e) => e.code === 'frame-invalid-length'));
  });

  test('an unknown message type closes the session', async () => {
    const raw = await RawClient.session(enforcer.host, enforcer.port);
    raw.send(Buffer.from([0x7a, 0, 0, 0, 4]));
    const frames = await raw.until('never');
    assert.equal(frames[0]?.fields?.get('C'), '08P01');
    assert.ok(raw.closed);
  });

  test('a truncated Bind closes the session', async () => {
    const raw = await RawClient.session(enforcer.host, enforcer.port);
    const b = bind('', '', ['value']);
    b.writeInt16BE(5, 9); // claims 5 parameters
    raw.send(parse('', 'SELECT $1'), b, sync());
    const frames = await raw.until('never');
    assert.equal(frames.at(-1)?.fields?.get('C'), '08P01');
    assert.ok(raw.closed);
  });

  test('an oversized message is refused before it is read', async () => {
    const raw = await RawClient.session(enforcer.host, enforcer.port);
    const header = Buffer.alloc(5);
    header.write('Q');
    header.writeInt32BE(100 * 1024 * 1024, 1);
    raw.send(header, Buffer.from('SELECT '));
    const frames = await raw.until('never', 5000);
    assert.equal(frames[0]?.fields?.get('C'), '54000');
    assert.match(frames[0]?.fields?.get('M') ?? '', /exceeds the limit/);
    assert.ok(raw.closed);
    assert.ok(protocolErrors(enforcer).some((e) => e.code === 'frame-too-large'));
  });

  test('an oversized startup packet is refused', async () => {
    const raw = await RawClient.connect(enforcer.host, enforcer.port);
    const b = Buffer.alloc(8);
    b.writeInt32BE(50_000, 0);
    b.writeInt32BE(196608, 4);
    raw.send(b);
    await raw.until('never', 5000);
    assert.ok(raw.closed);
  });

  test('frames split at every byte still work', async () => {
    const raw = await RawClient.session(enforcer.host, enforcer.port);
    const bytes = Buffer.concat([
      parse('', 'SELECT 1 AS x'),
      bind('', ''),
      describeMessage('P', ''),
      execute(''),
      sync(),
    ]);
    for (const byte of bytes) {
      raw.socket.write(Buffer.from([byte]));
      await new Promise((r) => setImmediate(r));
    }
    assert.equal(types(await raw.until('Z')), '1 2 T D C Z');
    raw.close();
  });
});

describe('robustness', () => {
  test('random bytes after startup never take the enforcer down', async () => {
    const fc = (await import('fast-check')).default;
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ minLength: 1, maxLength: 300 }),
        fc.boolean(),
        async (bytes, afterStartup) => {
          const raw = afterStartup
            ? await RawClient.session(enforcer.host, enforcer.port)
            : await RawClient.connect(enforcer.host, enforcer.port);
          raw.send(Buffer.from(bytes));
          // Either the session answers or closes; give it a moment, then drop it.
          await Promise.race([
            raw.until('never', 2000).catch(() => []),
            new Promise((r) => setTimeout(r, 100)),
          ]);
          raw.close();
        },
      ),
      { numRuns: 60 },
    );
    const raw = await RawClient.session(enforcer.host, enforcer.port);
    raw.send(query('SELECT 1'));
    assert.equal(types(await raw.until('Z')), 'T D C Z');
    raw.close();
  });

  test('a client that stops reading holds the stream back, then gets every row', async () => {
    const raw = await RawClient.session(enforcer.host, enforcer.port);
    raw.socket.pause();
    raw.send(query('SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 200000) g'));
    await new Promise((r) => setTimeout(r, 1000));
    raw.socket.resume();
    let rows = 0;
    for (;;) {
      const frame = await raw.next(30_000);
      if (!frame || frame.type === 'Z') break;
      if (frame.type === 'D') rows++;
    }
    assert.equal(rows, 200_000);
    raw.close();
  });
});

describe('large messages and lost servers', () => {
  test('a 2 MB query split across many chunks works', async () => {
    const raw = await RawClient.session(enforcer.host, enforcer.port);
    const literal = 'x'.repeat(2 * 1024 * 1024);
    raw.send(query(`SELECT length('${literal}')`));
    const frames = await raw.until('Z');
    assert.equal(types(frames), 'T D C Z');
    assert.deepEqual(dataRowValues(frames[1]!.body), [String(literal.length)]);
    raw.close();
  });

  test('a server that ends the session: the client gets its FATAL and the session ends', async () => {
    const c = new pg.Client(enforcer.client);
    const errors: Error[] = [];
    c.on('error', (e) => errors.push(e));
    await c.connect();
    const { rows } = await c.query('SELECT pg_backend_pid() AS pid');
    const ended = new Promise<void>((resolve) => c.on('end', () => resolve()));
    await server.admin(`SELECT pg_terminate_backend(${rows[0].pid})`);
    await ended;
    assert.ok(
      errors.some((e) => /terminat/.test(e.message)),
      errors.map((e) => e.message).join('; '),
    );
    await new Promise((r) => setTimeout(r, 100));
    const end = enforcer.events.filter((e) => e.type === 'session.end').at(-1);
    assert.ok(end && end.type === 'session.end' && /server closed/.test(end.reason));
  });
});

describe('COPY in the extended protocol', () => {
  test('COPY FROM STDIN and TO STDOUT through Parse/Bind/Execute', async () => {
    await server.asUser('CREATE TABLE IF NOT EXISTS copy_ext (id int, note text)');
    const raw = await RawClient.session(enforcer.host, enforcer.port);
    raw.send(parse('', 'COPY copy_ext FROM STDIN'), bind('', ''), execute(''), flush());
    assert.equal(types(await raw.until('G')), '1 2 G');
    const data = (line: string) => {
      const body = Buffer.from(line);
      const header = Buffer.alloc(5);
      header.write('d');
      header.writeInt32BE(body.length + 4, 1);
      return Buffer.concat([header, body]);
    };
    raw.send(data('1\tone\n'), data('2\ttwo\n'), Buffer.from([0x63, 0, 0, 0, 4]), sync());
    const done = await raw.until('Z');
    assert.equal(types(done), 'C Z');
    assert.match(done[0]!.body.toString(), /COPY 2/);
    raw.send(
      parse('', 'COPY (SELECT id, note FROM copy_ext ORDER BY id) TO STDOUT'),
      bind('', ''),
      execute(''),
      sync(),
    );
    const out = await raw.until('Z');
    assert.equal(types(out), '1 2 H d d c C Z');
    assert.equal(out[3]!.body.toString(), '1\tone\n');
    raw.close();
  });
});
