import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type OidcSettings, personFromClaims } from './oidc.ts';

const settings: OidcSettings = {
  issuer: new URL('https://login.example.com/'),
  clientId: 'airlock',
  clientSecret: 'secret',
  redirectUri: new URL('https://airlock.example.com/auth/callback'),
  usernameClaim: 'email',
  groupsClaim: 'groups',
  groups: ['dba', 'security'],
  scopes: 'openid email',
  prefix: 'oidc:',
};

describe('the person an ID token names', () => {
  it('prefixes the user and the configured groups, and drops other groups', () => {
    assert.deepEqual(
      personFromClaims({ sub: '1', email: 'alice@example.com', groups: ['dba', 'system:masters'] }, settings),
      { user: 'oidc:alice@example.com', groups: ['oidc:dba'] },
    );
    assert.deepEqual(personFromClaims({ email: 'bob@example.com', groups: 'security' }, settings), {
      user: 'oidc:bob@example.com',
      groups: ['oidc:security'],
    });
    assert.deepEqual(personFromClaims({ sub: 'x' }, { ...settings, usernameClaim: 'sub' }), {
      user: 'oidc:x',
      groups: [],
    });
  });

  it('refuses a token without the username claim, an unverified email or malformed groups', () => {
    assert.throws(() => personFromClaims({ sub: '1' }, settings), /no email claim/);
    assert.throws(
      () => personFromClaims({ email: 'a@example.com', email_verified: false }, settings),
      /not verified/,
    );
    assert.throws(
      () => personFromClaims({ email: 'a@example.com', groups: [1] }, settings),
      /list of strings/,
    );
  });
});
