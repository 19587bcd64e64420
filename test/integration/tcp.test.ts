// The generic TCP enforcer between a node:net client and a real TCP target.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { type AddressInfo, connect, createServer, type Server } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { BundleConnection, BundlePolicy } from '../../api/bundle.ts';
import type { RequestEvent, SessionEnd, SessionEvent } from '../../api/events.ts';
import type { Enforcer } from '../../sidecar/core/enforcer.ts';
import { policy } from '../../sidecar/policy/fixtures.ts';
import { serveTcp } from '../../sidecar/tcp/enforcer.ts';
import { freePort } from '../support/process.ts';

/** A target that answers, after the client half-closes, with the byte count and SHA-256 of what it got. */
async function startDigestServer(): Promise<Server> {
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    const hash = createHash('sha256');
    let bytes = 0;
    socket.on('data', (chunk) => {
      bytes += chunk.length;
      hash.update(chunk);
    });
    socket.on('end', () => socket.end(`${bytes} ${hash.digest('hex')}\n`));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

/** Sends payload, half-closes, and collects the reply until the connection closes (or is reset). */
function exchange(port: number, payload: Buffer): Promise<{ reply: string; reset: boolean }> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    let reply = '';
    socket.on('data', (chunk) => {
      reply += chunk;
    });
    let reset = false;
    socket.on('error', () => {
      reset = true;
    });
    socket.on('close', () => resolve({ reply, reset }));
    socket.end(payload);
  });
}

describe('TCP enforcer', () => {
  let target: Server;
  let enforcer: Enforcer | undefined;
  const events: SessionEvent[] = [];

  before(async () => {
    target = await startDigestServer();
  });
  after(async () => {
    await enforcer?.close();
    await new Promise((resolve) => target.close(resolve));
  });

  async function enforce(
    policies: BundlePolicy[],
    port = (target.address() as AddressInfo).port,
  ): Promise<number> {
    await enforcer?.close();
    events.length = 0;
    const connection: BundleConnection = {
      name: 'cache',
      namespace: 'default',
      protocol: 'tcp',
      host: '127.0.0.1',
      port,
      tls: { mode: 'disable' },
      credentials: {},
      policies,
    };
    enforcer = await serveTcp({
      connection,
      identity: { namespace: 'default', serviceAccount: 'agent' },
      listen: { host: '127.0.0.1', port: 0 },
      events: { emit: (event) => events.push(event) },
      approvals: { request: async () => ({ approved: false, outcome: 'denied' }) },
    });
    return enforcer.address.port;
  }

  async function ended(): Promise<SessionEnd> {
    for (let i = 0; i < 100; i++) {
      const end = events.find((e): e is SessionEnd => e.type === 'session.end');
      if (end) return end;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error('no session.end event');
  }

  it('passes bytes unchanged both ways, half-close included, and records the session', async () => {
    const port = await enforce([policy({ name: 'cache-agents' })]);
    const payload = randomBytes(4 * 1024 * 1024);
    const { reply } = await exchange(port, payload);
    assert.equal(reply, `${payload.length} ${createHash('sha256').update(payload).digest('hex')}\n`);
    const end = await ended();
    assert.equal(end.bytesIn, payload.length);
    assert.equal(end.bytesOut, Buffer.byteLength(reply));
    assert.equal(end.reason, 'closed');
    const start = events.find((e) => e.type === 'session.start');
    const request = events.find((e): e is RequestEvent => e.type === 'request');
    assert.equal(request?.outcome, 'allowed');
    assert.equal(request?.policy, 'cache-agents');
    assert.equal(request?.text, `connect 127.0.0.1:${(target.address() as AddressInfo).port}`);
    assert.ok(start && end.seq > start.seq);
    assert.ok(Date.parse(end.time) >= Date.parse(start.time));
    assert.equal(new Set(events.map((e) => e.sessionId)).size, 1);
  });

  it('refuses a connection no policy grants', async () => {
    const port = await enforce([]);
    const { reply } = await exchange(port, Buffer.from('hello'));
    assert.equal(reply, '');
    await ended();
    assert.equal(events.find((e): e is RequestEvent => e.type === 'request')?.outcome, 'blocked');
  });

  it('closes the agent connection and records an error when the target is down', async () => {
    const port = await enforce([policy({ name: 'cache-agents' })], await freePort());
    const { reply } = await exchange(port, Buffer.from('hello'));
    assert.equal(reply, '');
    const end = await ended();
    assert.match(end.reason, /ECONNREFUSED/);
    const request = events.find((e): e is RequestEvent => e.type === 'request');
    assert.equal(request?.outcome, 'error');
    assert.equal(request?.error?.code, 'upstream-unreachable');
    assert.equal(request?.error?.wire, 'ECONNREFUSED');
  });
});
