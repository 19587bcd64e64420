import assert from 'node:assert/strict';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { readFile } from 'node:fs/promises';
import { connect, createServer, type LookupFunction } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { candidateNames, parseResolvConf, upstreamLookup } from './dns.ts';

describe('resolv.conf', () => {
  test('reads search, domain and ndots as the C library does', () => {
    const pod = [
      'search agents.svc.cluster.local svc.cluster.local cluster.local',
      'nameserver 10.96.0.10',
      'options ndots:5 timeout:2',
    ].join('\n');
    assert.deepEqual(parseResolvConf(pod), {
      search: ['agents.svc.cluster.local', 'svc.cluster.local', 'cluster.local'],
      ndots: 5,
    });
    assert.deepEqual(parseResolvConf('domain example.org\n# search ignored.example\n'), {
      search: ['example.org'],
      ndots: 1,
    });
    assert.deepEqual(parseResolvConf('search a.example\nsearch b.example ; trailing\n'), {
      search: ['b.example'],
      ndots: 1,
    });
    assert.deepEqual(parseResolvConf(''), { search: [], ndots: 1 });
  });

  test('asks the search list first for names with fewer dots than ndots', () => {
    const settings = { search: ['agents.svc.cluster.local', 'cluster.local'], ndots: 5 };
    assert.deepEqual(candidateNames('orders-db.data', settings), [
      'orders-db.data.agents.svc.cluster.local',
      'orders-db.data.cluster.local',
      'orders-db.data',
    ]);
    assert.deepEqual(candidateNames('db.example.com', { search: ['x.local'], ndots: 1 }), [
      'db.example.com',
      'db.example.com.x.local',
    ]);
    assert.deepEqual(candidateNames('db.example.com.', settings), ['db.example.com']);
  });
});

function ipv6Bytes(address: string): Buffer {
  const [head = '', tail = ''] = address.split('::');
  const groups = (part: string) => (part ? part.split(':') : []);
  const missing = 8 - groups(head).length - groups(tail).length;
  const all = [...groups(head), ...Array<string>(missing).fill('0'), ...groups(tail)];
  return Buffer.from(all.map((group) => group.padStart(4, '0')).join(''), 'hex');
}

/** An authoritative DNS server on loopback answering A and AAAA from a table; NXDOMAIN otherwise. */
function dnsServer(records: Record<string, { a?: string[]; aaaa?: string[] }>) {
  const socket = createSocket('udp4');
  const asked: string[] = [];
  socket.on('message', (query, peer) => {
    const labels: string[] = [];
    let offset = 12;
    while (query[offset]! > 0) {
      labels.push(query.subarray(offset + 1, offset + 1 + query[offset]!).toString('ascii'));
      offset += query[offset]! + 1;
    }
    const question = query.subarray(12, offset + 5);
    const type = query.readUInt16BE(offset + 1);
    const name = labels.join('.').toLowerCase();
    asked.push(`${name}/${type === 1 ? 'A' : type === 28 ? 'AAAA' : type}`);
    const record = records[name];
    const addresses = record ? ((type === 1 ? record.a : type === 28 ? record.aaaa : []) ?? []) : [];
    const header = Buffer.alloc(12);
    query.copy(header, 0, 0, 2);
    header.writeUInt16BE(0x8400 | (record ? 0 : 3), 2);
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(addresses.length, 6);
    const answers = addresses.map((address) => {
      const data = type === 1 ? Buffer.from(address.split('.').map(Number)) : ipv6Bytes(address);
      const fixed = Buffer.alloc(12);
      fixed.writeUInt16BE(0xc00c, 0);
      fixed.writeUInt16BE(type, 2);
      fixed.writeUInt16BE(1, 4);
      fixed.writeUInt32BE(30, 6);
      fixed.writeUInt16BE(data.length, 10);
      return Buffer.concat([fixed, data]);
    });
    socket.send(Buffer.concat([header, question, ...answers]), peer.port, peer.address);
  });
  return {
    socket,
    asked,
    start: () =>
      new Promise<number>((resolve) => socket.bind(0, '127.0.0.1', () => resolve(socket.address().port))),
  };
}

const lookupOnce = (lookup: LookupFunction, name: string, options: { family?: number; all?: boolean } = {}) =>
  new Promise<unknown>((resolve, reject) =>
    lookup(name, options, (error, address, family) =>
      error ? reject(error) : resolve(options.all ? address : { address, family }),
    ),
  );

describe('upstream lookup over DNS', () => {
  let server: ReturnType<typeof dnsServer> & { socket: UdpSocket };
  let lookup: LookupFunction;

  before(async () => {
    const hostsName = (await readFile('/etc/hosts', 'utf8'))
      .split('\n')
      .map((line) => line.split(/\s+/)[1])
      .find((name) => name && name !== 'localhost');
    assert.ok(hostsName, 'the hosts file names a host besides localhost');
    server = dnsServer({
      [`${hostsName}.cluster.test`]: { a: ['127.0.0.1'] },
      'orders-db.data.svc.cluster.test': { a: ['127.0.0.1'], aaaa: ['fd00::5'] },
      'only6.cluster.test': { aaaa: ['fd00::6'] },
    });
    const port = await server.start();
    lookup = upstreamLookup({
      servers: [`127.0.0.1:${port}`],
      settings: { search: ['svc.cluster.test', 'cluster.test'], ndots: 5 },
      timeoutMs: 2_000,
    });
  });
  after(() => server.socket.close());

  test('a name the hosts file also holds is answered by DNS, never by the hosts file', async () => {
    const hostsName = (await readFile('/etc/hosts', 'utf8'))
      .split('\n')
      .map((line) => line.split(/\s+/)[1])
      .find((name) => name && name !== 'localhost')!;
    server.asked.length = 0;
    assert.deepEqual(await lookupOnce(lookup, hostsName, { family: 4 }), { address: '127.0.0.1', family: 4 });
    assert.deepEqual(server.asked, [`${hostsName}.svc.cluster.test/A`, `${hostsName}.cluster.test/A`]);
    await assert.rejects(lookupOnce(lookup, `${hostsName}-not-in-dns`), { code: 'ENOTFOUND' });
  });

  test('follows the search list, returns every family, and passes IP literals through', async () => {
    assert.deepEqual(await lookupOnce(lookup, 'orders-db.data', { all: true }), [
      { address: '127.0.0.1', family: 4 },
      { address: 'fd00::5', family: 6 },
    ]);
    assert.deepEqual(await lookupOnce(lookup, 'only6'), { address: 'fd00::6', family: 6 });
    assert.deepEqual(await lookupOnce(lookup, '10.1.2.3'), { address: '10.1.2.3', family: 4 });
    assert.deepEqual(await lookupOnce(lookup, 'localhost', { family: 4 }), {
      address: '127.0.0.1',
      family: 4,
    });
  });

  test('net.connect dials the address DNS gives', async () => {
    const target = createServer((socket) => socket.end('hello'));
    await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
    const { port } = target.address() as { port: number };
    try {
      const reply = await new Promise<string>((resolve, reject) => {
        const socket = connect({ host: 'orders-db.data', port, family: 4, lookup });
        let data = '';
        socket.on('data', (chunk) => {
          data += chunk;
        });
        socket.on('end', () => resolve(data));
        socket.on('error', reject);
      });
      assert.equal(reply, 'hello');
    } finally {
      target.close();
    }
  });
});
