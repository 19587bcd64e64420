// Who a session acts for and which policies it is served under, from the token's outcome.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { BundleConnection, BundlePolicy, EndUser } from '../../api/bundle.ts';
import { AirlockError } from '../core/errors.ts';
import { actingFor, PolicyVariants } from './session.ts';
import { EndUserRefusal, type EndUserVerifier } from './verifier.ts';

const policy = (name: string, endUser?: BundlePolicy['endUser']): BundlePolicy => ({
  name,
  namespace: 'ops',
  mode: 'enforce',
  recording: { enabled: true, results: 'summary' },
  masking: [],
  rules: [],
  ...(endUser && { endUser }),
});

const connection = (required: boolean, policies: BundlePolicy[]): BundleConnection => ({
  name: 'orders-db',
  namespace: 'ops',
  protocol: 'postgres',
  host: 'db',
  port: 5432,
  tls: { mode: 'disable' },
  credentials: {},
  endUser: {
    issuer: 'https://idp.example.com',
    audiences: ['agents'],
    usernameClaim: 'sub',
    groupsClaim: 'groups',
    required,
  },
  policies,
});

/** A verifier that knows two tokens; any other is refused as a real one would be. */
const verifier = {
  verify: async (token: string): Promise<EndUser> => {
    if (token === 'ada') return { user: 'ada', groups: ['dba'] };
    if (token === 'bob') return { user: 'bob', groups: ['sales'] };
    throw new EndUserRefusal('the end-user token has a bad signature');
  },
} as unknown as EndUserVerifier;

const workload = { namespace: 'ops', serviceAccount: 'agent' };
const policies = [policy('everyone'), policy('dba', { users: [], groups: ['dba'] })];

describe('actingFor', () => {
  it('names the end user and picks the policies granted for them', async () => {
    const acting = await actingFor(connection(true, policies), workload, verifier, 'ada');
    assert.deepEqual(acting.identity, { ...workload, user: 'ada', groups: ['dba'] });
    assert.deepEqual(
      acting.policies.map((p) => p.name),
      ['everyone', 'dba'],
    );
    const bob = await actingFor(connection(true, policies), workload, verifier, 'bob');
    assert.deepEqual(
      bob.policies.map((p) => p.name),
      ['everyone'],
    );
  });

  it('refuses a session without a token where one is required', async () => {
    for (const token of [undefined, ''])
      await assert.rejects(actingFor(connection(true, policies), workload, verifier, token), (error) => {
        assert.ok(error instanceof EndUserRefusal);
        assert.equal(error.code, 'unauthenticated');
        assert.match(error.message, /requires an end-user token and none was given/);
        return true;
      });
  });

  it('serves a session without a token where none is required, never under a policy for end users', async () => {
    const acting = await actingFor(connection(false, policies), workload, verifier, undefined);
    assert.deepEqual(acting.identity, workload);
    assert.deepEqual(
      acting.policies.map((p) => p.name),
      ['everyone'],
    );
  });

  it('refuses a token that fails even where none is required', async () => {
    for (const forged of ['eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZGEifQ.', 'a.b.c'])
      await assert.rejects(
        actingFor(connection(false, policies), workload, verifier, forged),
        /bad signature/,
      );
  });

  it('takes what is not shaped as a JWT for no token where none is required, and refuses it where one is', async () => {
    for (const password of ['not-the-password', 'Basic YWRhOnB3', 'a.b', 'a.b.c.d', 'a b.c.d']) {
      const acting = await actingFor(connection(false, policies), workload, verifier, password);
      assert.deepEqual(acting.identity, workload, password);
      await assert.rejects(
        actingFor(connection(true, policies), workload, verifier, password),
        /bad signature/,
      );
    }
  });

  it('refuses a session that no policy applies to: the workload holds no grant of its own', async () => {
    const onlyDba = [policy('dba', { users: [], groups: ['dba'] })];
    await assert.rejects(actingFor(connection(true, onlyDba), workload, verifier, 'bob'), (error) => {
      assert.ok(error instanceof AirlockError);
      assert.equal(error.code, 'policy-denied');
      assert.match(error.message, /no AccessPolicy grants Connection orders-db to ops\/agent acting for bob/);
      return true;
    });
    await assert.rejects(
      actingFor(connection(false, onlyDba), workload, verifier, undefined),
      /to ops\/agent without an end user/,
    );
  });
});

describe('PolicyVariants', () => {
  it('builds once per distinct set of policies', () => {
    let built = 0;
    const variants = new PolicyVariants((set) => {
      built++;
      return set.map((p) => p.name).join();
    });
    assert.equal(variants.for(policies), 'everyone,dba');
    assert.equal(variants.for([...policies]), 'everyone,dba');
    assert.equal(variants.for(policies.slice(0, 1)), 'everyone');
    assert.equal(built, 2);
  });
});
