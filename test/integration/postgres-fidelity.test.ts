// The enforcer answers as PostgreSQL would wherever policy does not decide: syntax errors,
// startup settings, malformed startup packets, and values masked by what their type holds.
// Each case is put to the real server and to the enforcer in front of it, and compared.
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import {
  bind,
  describe as describeMessage,
  encodeStartup,
  execute,
  parse,
  query,
  sync,
} from '../../sidecar/postgres/messages.ts';
import { privilegedSettings } from '../../sidecar/postgres/settings.ts';
import {
  type PostgresServer,
  policy,
  RawClient,
  type RawFrame,
  startEnforcer,
  startPostgres,
  type TestEnforcer,
} from '../support/postgres.ts';

let server: PostgresServer;
/** Grants everything: policy decides nothing. */
let open: TestEnforcer;
/** Masks with every card and email detector, and the ipv4 one. */
let masking: TestEnforcer;

before(async () => {
  server = await startPostgres();
  open = await startEnforcer(server, [policy('everything')]);
  masking = await startEnforcer(server, [
    policy('pii', {
      masking: [
        {
          name: 'pii',
          detectors: ['credit-card', 'email', 'ipv4'],
          strategy: 'redact',
          indirectUse: 'deny',
        },
      ],
    }),
  ]);
});

after(async () => {
  await open?.close();
  await masking?.close();
  await server?.stop();
});

/** A session straight to the server (as the Connection's user) or through an enforcer. */
async function session(target: 'server' | TestEnforcer, params: [string, string][] = []): Promise<RawClient> {
  if (target === 'server') {
    const client = await RawClient.connect(server.socketDir, server.port);
    client.send(encodeStartup([['user', server.user], ['database', server.database], ...params]));
    const frames = await client.until('Z');
    const error = frames.find((f) => f.type === 'E');
    if (error) throw new Error(`startup failed: ${error.fields?.get('M')}`);
    return client;
  }
  return RawClient.session(target.host, target.port, params);
}

/** The error fields a client reads (F, L and R name the server's source file: not reproduced). */
function errorFields(frames: RawFrame[]): [string, string][][] {
  return frames
    .filter((f) => f.type === 'E')
    .map((f) => [...(f.fields ?? [])].filter(([code]) => !'FLR'.includes(code)));
}

/** The first startup answer: its error fields, or the message types up to ReadyForQuery. */
async function startupAnswer(target: 'server' | TestEnforcer, params: [string, string][]) {
  const client =
    target === 'server'
      ? await RawClient.connect(server.socketDir, server.port)
      : await RawClient.connect(target.host, target.port);
  client.send(encodeStartup([['user', server.user], ['database', server.database], ...params]));
  const frames = await client.until('Z');
  return { client, frames, error: errorFields(frames)[0] };
}

describe('statements that do not parse', () => {
  const texts = [
    'SELEC 1',
    'SELECT 1 +',
    "SELECT 'unterminated",
    "SELECT 'é', 'ü' +",
    "SELECT '😀😀' FROM",
    'SELECT 1; SELEC 2',
    'SELECT $$abc',
    '/* not closed',
    'SELECT 1e',
    'select * from (select 1',
    'INSERT INTO t VALUES (1,',
  ];

  test('fail as the server fails them: 42601, its message and position, simple and extended protocol', async () => {
    const direct = await session('server');
    const through = await session(open);
    for (const text of texts) {
      direct.send(query(text));
      through.send(query(text));
      const expected = errorFields(await direct.until('Z'));
      const got = await through.until('Z');
      assert.deepEqual(errorFields(got), expected, text);
      assert.equal(expected[0]?.find(([c]) => c === 'C')?.[1], '42601');
      assert.equal(got.at(-1)?.body.toString(), 'I');

      direct.send(parse('', text), bind('', ''), execute(''), sync());
      through.send(parse('', text), bind('', ''), execute(''), sync());
      const expectedExtended = await direct.until('Z');
      const gotExtended = await through.until('Z');
      assert.deepEqual(errorFields(gotExtended), errorFields(expectedExtended), `Parse ${text}`);
      assert.deepEqual(
        gotExtended.map((f) => f.type),
        expectedExtended.map((f) => f.type),
      );
    }
    // The session goes on as the server's does.
    through.send(query('SELECT 2'));
    assert.deepEqual(
      (await through.until('Z')).map((f) => f.type),
      ['T', 'D', 'C', 'Z'],
    );
    direct.close();
    through.close();
  });

  test('inside a transaction the error aborts it, as the server does', async () => {
    const through = await session(open);
    through.send(query('BEGIN'));
    await through.until('Z');
    through.send(query('SELEC 1'));
    const frames = await through.until('Z');
    assert.equal(frames.at(-1)?.body.toString(), 'E');
    through.send(query('ROLLBACK'));
    assert.equal((await through.until('Z')).at(-1)?.body.toString(), 'I');
    through.close();
  });

  test('never reach the server, and are recorded as errors', async () => {
    const marker = `marker_${Date.now()}`;
    const through = await session(open);
    through.send(query(`SELEC '${marker}'`));
    await through.until('Z');
    through.send(parse('', `SELEC '${marker}_x'`), sync());
    await through.until('Z');
    through.close();
    assert.ok(!server.logs().includes(marker), 'the statement text reached the server');
    const events = open.events.filter(
      (e) => e.type === 'request' && 'text' in e && String(e.text).includes(marker),
    ) as { outcome: string; error?: { code: string; wire?: string } }[];
    assert.equal(events.length, 2);
    for (const e of events) {
      assert.equal(e.outcome, 'error');
      assert.equal(e.error?.code, 'target-error');
      assert.equal(e.error?.wire, '42601');
    }
  });

  test('what policy refuses stays 42501 naming Airlock', async () => {
    const guarded = await startEnforcer(server, [
      policy('guard', { rules: [{ name: 'no-drop', action: 'deny', sql: { statements: ['DROP'] } }] }),
    ]);
    try {
      const through = await session(guarded);
      through.send(query('DROP TABLE nothing'));
      const error = errorFields(await through.until('Z'))[0];
      assert.equal(new Map(error).get('C'), '42501');
      assert.match(new Map(error).get('M') ?? '', /airlock/i);
      through.send(query(`SELECT '${'x'.repeat((1 << 22) + 1)}'`));
      const long = new Map(errorFields(await through.until('Z', 30_000))[0]);
      assert.equal(long.get('C'), '42501');
      assert.match(long.get('M') ?? '', /longer than/);
      through.close();
    } finally {
      await guarded.close();
    }
  });
});

describe('startup settings', () => {
  test('custom settings reach the server, as top-level parameters and in options', async () => {
    const through = await session(open, [
      ['app.tenant', '42'],
      ['options', '-c myext.setting=on\\ it --app.region=eu -c statement_timeout=5s'],
    ]);
    through.send(
      query(
        "SELECT current_setting('app.tenant'), current_setting('myext.setting'), current_setting('app.region'), current_setting('statement_timeout')",
      ),
    );
    const row = (await through.until('Z')).find((f) => f.type === 'D');
    assert.ok(row);
    const values: string[] = [];
    let at = 2;
    for (let i = 0; i < row.body.readInt16BE(0); i++) {
      const length = row.body.readInt32BE(at);
      values.push(row.body.toString('utf8', at + 4, at + 4 + length));
      at += 4 + length;
    }
    assert.deepEqual(values, ['42', 'on it', 'eu', '5s']);
    through.close();
  });

  test('row-level security reads the tenant set at startup', async () => {
    await server.asUser(`
      CREATE TABLE IF NOT EXISTS tenant_rows (tenant int, v text);
      TRUNCATE tenant_rows;
      INSERT INTO tenant_rows VALUES (1, 'one'), (42, 'forty-two');
      ALTER TABLE tenant_rows ENABLE ROW LEVEL SECURITY;
      ALTER TABLE tenant_rows FORCE ROW LEVEL SECURITY;
      DROP POLICY IF EXISTS by_tenant ON tenant_rows;
      CREATE POLICY by_tenant ON tenant_rows USING (tenant = current_setting('app.tenant')::int);
    `);
    const through = await session(open, [['options', '-c app.tenant=42']]);
    through.send(query('SELECT v FROM tenant_rows'));
    const rows = (await through.until('Z')).filter((f) => f.type === 'D');
    assert.deepEqual(
      rows.map((r) => r.body.toString('utf8', 6)),
      ['forty-two'],
    );
    through.close();
  });

  test('an unknown setting is answered by the server itself', async () => {
    for (const params of [[['nosuch_setting', '1']], [['options', '-c nosuch_setting=1']]] as [
      string,
      string,
    ][][]) {
      const direct = await startupAnswer('server', params);
      const through = await startupAnswer(open, params);
      assert.deepEqual(through.error, direct.error);
      assert.equal(new Map(direct.error).get('C'), '42704');
      direct.client.close();
      through.client.close();
    }
  });

  test('identity, superuser-only and parser-changing settings are refused, naming Airlock', async () => {
    const cases: [string, string][][] = [
      [['role', 'airlock_admin']],
      [['options', '-c session_authorization=airlock_admin']],
      [['session_replication_role', 'replica']],
      [['log_statement', 'none']],
      [['options', '--log-min-messages=panic']],
      [['options', '-c geqo=on -d 5']],
      [['standard_conforming_strings', 'off']],
      [['client_encoding', 'SJIS']],
      [['client_encoding', 'win932']],
      [['options', '-c client_encoding=big5']],
      [['search_path', 'public, pg_catalog']],
      [['options', '-c search_path=public,pg_catalog']],
    ];
    for (const params of cases) {
      const through = await startupAnswer(open, params);
      const fields = new Map(through.error);
      assert.equal(fields.get('S'), 'FATAL', JSON.stringify(params));
      assert.equal(fields.get('C'), '42501', JSON.stringify(params));
      assert.match(fields.get('M') ?? '', /^Airlock/, JSON.stringify(params));
      assert.ok(through.client.closed);
    }
  });

  test('a SET that makes the server read SQL otherwise than the enforcer ends the session', async () => {
    for (const set of ["SET standard_conforming_strings = 'off'", "SET client_encoding = 'SJIS'"]) {
      const through = await session(open);
      through.send(query(set));
      const frames = await through.until('never');
      const fatal = new Map(errorFields(frames).at(-1));
      assert.equal(fatal.get('S'), 'FATAL', set);
      assert.match(fatal.get('M') ?? '', /^Airlock/);
      assert.ok(through.closed);
    }
  });

  test("the list of superuser-only settings is the server's own", async () => {
    const result = await server.admin("SELECT lower(name) AS name FROM pg_settings WHERE context <> 'user'");
    assert.deepEqual([...privilegedSettings].sort(), result.rows.map((r: { name: string }) => r.name).sort());
  });
});

// ---------------------------------------------------------------------------------------
// Malformed startup packets

function int32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n | 0);
  return b;
}

function packet(code: number, body: Buffer | string = ''): Buffer {
  const rest = Buffer.from(body as string, 'latin1');
  return Buffer.concat([int32(8 + rest.length), int32(code), rest]);
}

const v3 = 3 << 16;

/** Everything the client receives, and whether the connection is still open after a while. */
async function answer(port: number, bytes: Buffer, options: { end?: boolean; waitMs?: number } = {}) {
  return new Promise<{ received: string; open: boolean }>((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    const got: Buffer[] = [];
    socket.on('data', (d) => got.push(d));
    socket.on('error', () => undefined);
    socket.on('connect', () => {
      socket.write(bytes);
      if (options.end) socket.end();
    });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ received: describeBytes(Buffer.concat(got)), open: true });
    }, options.waitMs ?? 1500);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ received: describeBytes(Buffer.concat(got)), open: false });
    });
  });
}

/** Messages as "type fields", F/L/R left out; anything unframed verbatim. */
function describeBytes(b: Buffer): string {
  const out: string[] = [];
  let at = 0;
  while (at < b.length) {
    const length = b.length - at >= 5 ? b.readInt32BE(at + 1) : -1;
    if (length < 4 || at + 1 + length > b.length) {
      out.push(JSON.stringify(b.subarray(at).toString('latin1')));
      break;
    }
    const type = String.fromCharCode(b[at]!);
    const body = b.subarray(at + 5, at + 1 + length).toString('latin1');
    out.push(
      type === 'E'
        ? `E ${body
            .split('\0')
            .filter((f) => /^[SVCM]/.test(f))
            .join('|')}`
        : type,
    );
    at += 1 + length;
  }
  return out.join(', ');
}

describe('malformed startup packets', () => {
  const cases: [string, Buffer, { end?: boolean }?][] = [
    ['length 0', int32(0)],
    ['length 4', Buffer.concat([int32(4), int32(v3)])],
    ['length 7', Buffer.concat([int32(7), int32(v3)])],
    ['negative length', int32(-1)],
    ['length beyond the limit', Buffer.concat([int32(10_005), int32(v3)])],
    ['huge length', Buffer.concat([int32(0x7fffffff), int32(v3)])],
    [
      'truncated, then the client ends',
      Buffer.concat([int32(100), int32(v3), Buffer.from('user\0')]),
      { end: true },
    ],
    ['no terminator', packet(v3, 'user\0app\0database\0appdb\0')],
    ['only the version', packet(v3)],
    ['a name without a value', packet(v3, 'user\0app\0database\0\0')],
    ['bytes after the terminator', packet(v3, 'user\0app\0\0x\0')],
    [
      'a longest packet without a terminator',
      Buffer.concat([int32(10_004), int32(v3), Buffer.alloc(9996, 0x61)]),
    ],
    ['no user', packet(v3, 'database\0appdb\0\0')],
    ['an empty user', packet(v3, 'user\0\0\0')],
    ['protocol 1.0', packet(1 << 16, 'user\0app\0\0')],
    ['protocol 2.0', packet(2 << 16, 'user\0app\0\0')],
    ['protocol 4.0', packet(4 << 16, 'user\0app\0\0')],
    ['protocol 4.0 with a bad layout', packet(4 << 16, 'user')],
    ['CancelRequest too short', packet(80877102, int32(1).toString('latin1'))],
    ['CancelRequest too long', packet(80877102, Buffer.alloc(12).toString('latin1'))],
    ['SSLRequest with extra bytes', packet(80877103, int32(1).toString('latin1'))],
  ];

  test('are answered as the server answers them', async () => {
    for (const [name, bytes, options] of cases) {
      const direct = await answer(server.port, bytes, options);
      const through = await answer(open.port, bytes, options);
      assert.deepEqual(through, direct, name);
    }
  });

  test('a valid startup packet split at every offset opens a session', async () => {
    const bytes = encodeStartup([
      ['user', 'agent'],
      ['database', 'x'],
      ['app.tenant', '7'],
    ]);
    for (let cut = 1; cut < bytes.length; cut++) {
      const client = await RawClient.connect(open.host, open.port);
      client.send(bytes.subarray(0, cut));
      await new Promise((r) => setImmediate(r));
      client.send(bytes.subarray(cut));
      const frames = await client.until('Z');
      assert.equal(frames.at(-1)?.type, 'Z', `cut at ${cut}`);
      client.close();
    }
  });

  test('random startup bytes: the enforcer says no more than the server, and stays up', async () => {
    const startupArb = fc.oneof(
      fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b)),
      fc
        .tuple(
          fc.integer({ min: -8, max: 80 }),
          fc.constantFrom(v3, 80877102, 80877103, 80877104, 1 << 16, (3 << 16) | 1, 7 << 16),
          fc.array(fc.constantFrom('user', 'app', 'database', '\0', 'options', '-c', 'x=1', ' '), {
            maxLength: 8,
          }),
        )
        .map(([delta, code, parts]) => {
          const body = Buffer.from(parts.join(''), 'latin1');
          return Buffer.concat([int32(8 + body.length + delta), int32(code), body]);
        }),
    );
    await fc.assert(
      fc.asyncProperty(startupArb, async (bytes) => {
        const direct = await answer(server.port, bytes, { waitMs: 400 });
        const through = await answer(open.port, bytes, { waitMs: 400 });
        // Where the server closes without a word, so does the enforcer.
        if (!direct.open && direct.received === '') assert.deepEqual(through, direct);
        // Where the server sends an error, the enforcer sends one too (its own words may differ).
        if (direct.received.startsWith('E')) assert.ok(through.received.startsWith('E'), through.received);
      }),
      { numRuns: 40 },
    );
    const client = await RawClient.session(open.host, open.port);
    client.send(query('SELECT 1'));
    assert.equal((await client.until('Z')).at(-1)?.type, 'Z');
    client.close();
  });
});

// ---------------------------------------------------------------------------------------
// Masking by what a type holds

/** Runs one statement with results in the given format; the first row's fields as Buffers. */
async function firstRow(
  target: 'server' | TestEnforcer,
  sql: string,
  format: 0 | 1,
): Promise<(Buffer | null)[]> {
  const client = await session(target);
  client.send(parse('', sql), bind('', '', [], [format]), describeMessage('P', ''), execute(''), sync());
  const frames = await client.until('Z');
  client.close();
  const row = frames.find((f) => f.type === 'D');
  assert.ok(row, `${sql}: ${JSON.stringify(errorFields(frames))}`);
  const values: (Buffer | null)[] = [];
  let at = 2;
  for (let i = 0; i < row.body.readInt16BE(0); i++) {
    const length = row.body.readInt32BE(at);
    at += 4;
    values.push(length < 0 ? null : row.body.subarray(at, at + length));
    if (length > 0) at += length;
  }
  return values;
}

describe('masking reads each type by what it holds', () => {
  // 0x41 0x11 … 0xab is "4111111111111111ab" in hex (a Luhn-valid run ended by a letter):
  // binary data, not a card number.
  const binary = `'\\x4111111111111111ab00ff'::bytea`;
  const withCard = `convert_to('paid with 4111 1111 1111 1111, thanks', 'UTF8')`;

  test('bytea: hex digits of binary data are never a card; text inside it is masked, the rest kept', async () => {
    for (const format of [0, 1] as const) {
      for (const output of ['hex', 'escape']) {
        const sql = `SELECT set_config('bytea_output', '${output}', false) IS NOT NULL, ${binary}, ${withCard}, convert_to('a@b.co', 'UTF8') || '\\xff00'::bytea`;
        const direct = await firstRow('server', sql, format);
        const through = await firstRow(masking, sql, format);
        assert.deepEqual(through[1], direct[1], `binary bytea, format ${format}, ${output}`);
        const expectedCard = await firstRow(
          'server',
          `SELECT set_config('bytea_output', '${output}', false) IS NOT NULL, convert_to('paid with [REDACTED:credit-card], thanks', 'UTF8'), convert_to('[REDACTED:email]', 'UTF8') || '\\xff00'::bytea`,
          format,
        );
        assert.deepEqual(through[2], expectedCard[1], `card in bytea, format ${format}, ${output}`);
        assert.deepEqual(
          through[3],
          expectedCard[2],
          `email before non-UTF-8 bytes, format ${format}, ${output}`,
        );
      }
    }
  });

  test('int8, numeric and inet are scanned as their text in either format', async () => {
    const sql = `SELECT 4111111111111111::int8, 4111111111111111::numeric, '10.1.2.3'::inet, '10.1.2.0/24'::cidr, 4111111111111112::int8, 12.5::numeric, now()::date IS NOT NULL, gen_random_uuid() IS NOT NULL`;
    for (const format of [0, 1] as const) {
      const through = await firstRow(masking, sql, format);
      assert.deepEqual(through.slice(0, 4), [null, null, null, null], `format ${format}`);
      const direct = await firstRow('server', sql, format);
      assert.deepEqual(through.slice(4), direct.slice(4), `format ${format}`);
    }
  });

  test('binary numeric is read exactly as the server writes it in text', async () => {
    const values = [
      '0',
      '-0.001',
      '12.5',
      '10000',
      '99999999.99990000',
      '4111111111111111',
      '-4111111111111111.000',
      '1e-20',
      '123456789012345678901234567890.123456789',
      'NaN',
      'Infinity',
      '-Infinity',
    ];
    const list = values.map((v) => `'${v}'::numeric`).join(', ');
    const text = await firstRow('server', `SELECT ${list}`, 0);
    // Through the enforcer, with a pattern that matches every value, each becomes NULL only
    // if its text was read; the email detector leaves them alone, so compare by a pattern.
    const pattern = await startEnforcer(server, [
      policy('all-digits', {
        masking: [
          {
            name: 'numbers',
            patterns: [
              { name: 'exact', regex: `^(?:${text.map((t) => escapeRe(t!.toString())).join('|')})$` },
            ],
            strategy: 'redact',
            indirectUse: 'deny',
          },
        ],
      }),
    ]);
    try {
      const through = await firstRow(pattern, `SELECT ${list}`, 1);
      assert.deepEqual(
        through,
        values.map(() => null),
      );
    } finally {
      await pattern.close();
    }
  });
});

function escapeRe(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\-]/g, '\\$&');
}
