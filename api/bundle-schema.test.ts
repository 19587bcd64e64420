// What a sidecar accepts as a bundle from the control API, and how it words a refusal.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bundleSchema } from './bundle-schema.ts';

const bundle = () => ({
  version: 1,
  revision: '0123456789abcdef',
  identity: { namespace: 'agents', serviceAccount: 'agent', pod: 'agent-0', groups: ['ops'] },
  connections: [
    {
      name: 'orders-db',
      protocol: 'postgres',
      host: 'db',
      port: 5432,
      policies: [{ name: 'p', mode: 'enforce' }],
    },
    { name: 'web', protocol: 'http', policies: [] },
  ],
});

/** The first issue, as the sidecar logs it, and where it is. */
function refusal(value: unknown): { message: string; path: string } | undefined {
  const parsed = bundleSchema.safeParse(JSON.parse(JSON.stringify(value ?? null)));
  if (parsed.success) return undefined;
  const [issue] = parsed.error.issues;
  return { message: issue!.message, path: issue!.path.join('.') };
}

describe('bundleSchema', () => {
  it('accepts a bundle, whatever else its connections and policies carry', () => {
    assert.equal(refusal(bundle()), undefined);
    const { pod: _pod, groups: _groups, ...identity } = bundle().identity;
    assert.equal(refusal({ ...bundle(), identity, extra: true }), undefined);
  });

  it('refuses what is not a bundle object', () => {
    for (const [value, type] of [
      [null, 'null'],
      ['bundle', 'string'],
      [[bundle()], 'array'],
      [1, 'number'],
    ] as const)
      assert.deepEqual(refusal(value), {
        message: `Invalid input: expected object, received ${type}`,
        path: '',
      });
  });

  it('refuses another version, even one spelled as a string', () => {
    for (const version of [2, '1', 0, null])
      assert.deepEqual(refusal({ ...bundle(), version }), {
        message: 'Invalid input: expected 1',
        path: 'version',
      });
  });

  it('names the first field, in order, that is missing or of the wrong type', () => {
    const { revision: _revision, ...withoutRevision } = bundle();
    assert.deepEqual(refusal({ ...withoutRevision, identity: 'x' }), {
      message: 'Invalid input: expected string, received undefined',
      path: 'revision',
    });
    assert.deepEqual(refusal({ ...bundle(), identity: { namespace: 'agents' } }), {
      message: 'Invalid input: expected string, received undefined',
      path: 'identity.serviceAccount',
    });
    assert.deepEqual(refusal({ ...bundle(), identity: { ...bundle().identity, user: null } }), {
      message: 'Invalid input: expected string, received null',
      path: 'identity.user',
    });
    assert.deepEqual(refusal({ ...bundle(), identity: { ...bundle().identity, groups: ['ops', 7] } }), {
      message: 'Invalid input: expected string, received number',
      path: 'identity.groups.1',
    });
  });

  it('refuses a connection without its name, protocol or policies as a list of objects', () => {
    const [orders, web] = bundle().connections;
    const { protocol: _protocol, ...withoutProtocol } = web!;
    assert.deepEqual(refusal({ ...bundle(), connections: [orders, withoutProtocol] }), {
      message: 'Invalid input: expected string, received undefined',
      path: 'connections.1.protocol',
    });
    assert.deepEqual(refusal({ ...bundle(), connections: { orders } }), {
      message: 'Invalid input: expected array, received object',
      path: 'connections',
    });
    assert.deepEqual(refusal({ ...bundle(), connections: [{ ...orders, policies: {} }] }), {
      message: 'Invalid input: expected array, received object',
      path: 'connections.0.policies',
    });
    assert.deepEqual(refusal({ ...bundle(), connections: [{ ...orders, policies: [['deny']] }] }), {
      message: 'Invalid input: expected object, received array',
      path: 'connections.0.policies.0',
    });
  });

  it('reads only its own keys, never what a prototype holds', () => {
    const value = JSON.parse('{"__proto__": {"version": 1}, "revision": "r"}');
    assert.deepEqual(refusal(value), { message: 'Invalid input: expected 1', path: 'version' });
  });
});
