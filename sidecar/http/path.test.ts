import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { normalizeTarget } from './path.ts';

const path = (target: string) => {
  const result = normalizeTarget(target);
  return result.ok ? result.path : `!${result.reason}`;
};

describe('normalizeTarget', () => {
  it('decodes unreserved characters, removes dot segments, collapses slashes', () => {
    assert.equal(path('/admin/../admin/x'), '/admin/x');
    assert.equal(path('/%61dmin/x'), '/admin/x');
    assert.equal(path('//admin'), '/admin');
    assert.equal(path('/a//b///c'), '/a/b/c');
    assert.equal(path('/a/./b/.'), '/a/b/');
    assert.equal(path('/a/b/..'), '/a/');
    assert.equal(path('/../../etc'), '/etc');
    assert.equal(path('/'), '/');
    assert.equal(path('/users/'), '/users/');
    assert.equal(path('/%7euser'), '/~user');
    assert.equal(path('/a%20b'), '/a%20b');
    assert.equal(path('/caf%c3%a9'), '/caf%C3%A9');
  });

  it('keeps the query apart', () => {
    assert.deepEqual(normalizeTarget('/a/../b?x=/../admin&y=%2f'), {
      ok: true,
      path: '/b',
      query: '?x=/../admin&y=%2f',
    });
  });

  it('rejects what targets disagree on', () => {
    for (const target of [
      '/admin%2fx',
      '/admin%2Fx',
      '/admin%5cx',
      '/admin\\x',
      '/%2e%2e/admin',
      '/a/%2e/b',
      '/a/.%2e/b',
      '/a%00b',
      '/a\0b',
      '/a%zz',
      '/a%2',
      'admin',
      'http://evil/admin',
      '*',
    ]) {
      assert.ok(!normalizeTarget(target).ok, target);
    }
  });

  it('is idempotent and never leaves a dot segment or a double slash', () => {
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom('a', 'admin', '.', '..', '', '%61', '%7E', 'x y', '%41'), { maxLength: 12 }),
        (parts) => {
          const first = normalizeTarget(`/${parts.join('/')}`);
          if (!first.ok) return;
          const again = normalizeTarget(first.path);
          assert.ok(again.ok);
          assert.equal(again.path, first.path);
          assert.ok(!first.path.includes('//'));
          assert.ok(!first.path.split('/').some((s) => s === '.' || s === '..'));
        },
      ),
    );
  });
});
