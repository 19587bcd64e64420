import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConsoleSessions, cookie, readCookie, sameToken, sessionCookie } from './console-sessions.ts';

const signedIn = (expiresAt: number) => ({
  person: { user: 'oidc:alice@example.com', groups: ['oidc:dba'] },
  expiresAt,
  idToken: 'id-token',
});

describe('console sessions', () => {
  it('sets cookies HttpOnly, Secure, SameSite=Lax, for the whole site, with a lifetime', () => {
    assert.equal(
      cookie(sessionCookie, 'abc', 3599.7),
      '__Host-airlock-session=abc; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age=3599',
    );
    assert.match(cookie(sessionCookie, '', -5), /Max-Age=0$/);
  });

  it('reads one cookie among others', () => {
    assert.equal(readCookie('a=1; __Host-airlock-session=xyz; b=2', sessionCookie), 'xyz');
    assert.equal(readCookie('a=1', sessionCookie), undefined);
    assert.equal(readCookie(undefined, sessionCookie), undefined);
  });

  it('ends a session when its ID token expires, and on sign-out', () => {
    let now = 1_000;
    const sessions = new ConsoleSessions<string>(() => now);
    const session = sessions.create(signedIn(2_000), (csrf) => `backend with ${csrf}`);
    assert.equal(sessions.get(session.id)?.context, `backend with ${session.csrfToken}`);
    assert.notEqual(session.id, session.csrfToken);
    now = 2_000;
    assert.equal(sessions.get(session.id), undefined);
    const other = sessions.create(signedIn(5_000), () => '');
    sessions.end(other.id);
    assert.equal(sessions.get(other.id), undefined);
    assert.equal(sessions.get(undefined), undefined);
  });

  it('hands a sign-in in progress back once, and not after ten minutes', () => {
    let now = 0;
    const sessions = new ConsoleSessions<string>(() => now);
    const pending = { verifier: 'v', state: 's', nonce: 'n' };
    const id = sessions.beginSignIn(pending);
    assert.deepEqual({ ...sessions.takeSignIn(id), until: undefined }, { ...pending, until: undefined });
    assert.equal(sessions.takeSignIn(id), undefined);
    const late = sessions.beginSignIn(pending);
    now = 10 * 60_000;
    assert.equal(sessions.takeSignIn(late), undefined);
  });

  it('compares CSRF tokens whole', () => {
    assert.ok(sameToken('token', 'token'));
    assert.ok(!sameToken('toke', 'token'));
    assert.ok(!sameToken(undefined, 'token'));
  });
});
