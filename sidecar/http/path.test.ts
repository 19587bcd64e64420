import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { matchPathGlob } from '../policy/glob.ts';
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
      readings: ['/b', '/b/'],
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
      '/%252e%252e/admin',
      '/a/%252e/admin',
      '/admin%252fx',
      '/%c0%ae%c0%ae/admin',
      '/%c0%afadmin',
      '/%e0%80%ae',
      '/%ff',
      '/a%0d%0aX: y',
      '/caf\u00e9',
      '/a b',
      '/a\tb',
      '/admin#x',
      '/x?y#z',
      'admin',
      'http://evil/admin',
      '*',
    ]) {
      assert.ok(!normalizeTarget(target).ok, target);
    }
  });

  it('reads the path as servers do: parameters, trailing dots and slashes, escapes, case', () => {
    const readings = (target: string, caseInsensitive = false) => {
      const result = normalizeTarget(target, { caseInsensitive });
      assert.ok(result.ok, target);
      return result.readings;
    };
    assert.ok(readings('/x/..;/admin/users').includes('/admin/users'), 'Tomcat: ..; is a dot segment');
    assert.ok(readings('/admin;jsessionid=1/users').includes('/admin/users'));
    assert.ok(readings('/admin;x/').includes('/admin/'));
    assert.ok(readings('/admin;x/').includes('/admin'), 'a trailing slash is ignored by most routers');
    assert.ok(readings('/admin').includes('/admin/'), 'and /admin/** covers /admin');
    assert.ok(readings('/admin./users').includes('/admin/users'), 'IIS trims trailing dots');
    assert.ok(readings('/admin%20/users').includes('/admin/users'), 'and trailing spaces');
    assert.ok(readings('/admin%3bx/users').includes('/admin/users'), 'an encoded ; decoded, then stripped');
    assert.ok(readings('/caf%C3%A9/x').includes('/café/x'), 'escapes decoded as UTF-8');
    assert.ok(readings('/%2561dmin').includes('/%61dmin'), 'a double-encoded letter is read once');
    assert.deepEqual(readings('/orders/1'), ['/orders/1', '/orders/1/']);
    for (const target of ['/v1/refunds.json', '/v1/refunds.xml/', '/v1/refunds;x=1.json'])
      assert.ok(readings(target).includes('/v1/refunds'), `a format suffix is dropped by Rails: ${target}`);
    assert.ok(!readings('/v1/.json').includes('/v1/'), 'a dot file is not a suffix');
    assert.ok(readings('/ADMIN/Users', true).includes('/admin/users'));
    assert.ok(
      readings('/ADMIN/Users', true).every((r) => r === r.toLowerCase()),
      'folded readings only',
    );
    assert.ok(!readings('/ADMIN/Users').includes('/admin/users'), 'case kept unless the target ignores it');
  });

  it('never gives a reading with a dot segment or a double slash', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.constantFrom('a', 'admin', '.', '..', '', '..;', 'x;y', '%2e', '%3b', 'a.', '%61', '%20', 'A'),
          { maxLength: 10 },
        ),
        (parts) => {
          const result = normalizeTarget(`/${parts.join('/')}`, { caseInsensitive: true });
          if (!result.ok) return;
          for (const reading of result.readings) {
            assert.ok(!reading.includes('//'), reading);
            assert.ok(!reading.split('/').some((s) => s === '.' || s === '..'), reading);
          }
        },
      ),
    );
  });

  it('has a reading under /admin whenever a server would route the forwarded path there', () => {
    // Servers modelled apart from the readings: each reads the forwarded path its own way.
    const resolve = (segments: string[]) => {
      const out: string[] = [];
      for (const s of segments) {
        if (s === '..') out.pop();
        else if (s !== '.' && s !== '') out.push(s);
      }
      return `/${out.join('/')}`;
    };
    const decode = (s: string) => {
      try {
        return decodeURIComponent(s);
      } catch {
        return s;
      }
    };
    const servers: Record<string, (path: string) => string> = {
      tomcat: (p) => resolve(p.split('/').map((s) => decode(s.split(';')[0]!))),
      iis: (p) =>
        resolve(
          p.split('/').map((s) => decode(s).replace(/[. ]+$/, (m) => (/^\.+$/.test(decode(s)) ? m : ''))),
        ),
      router: (p) => resolve(decode(p).split('/')),
    };
    const underAdmin = (p: string) => p === '/admin' || p.startsWith('/admin/');
    fc.assert(
      fc.property(
        fc.array(
          fc.constantFrom(
            'admin',
            'admin;x',
            'admin.',
            'admin%20',
            'adm%69n',
            '..;',
            '..',
            '.',
            'x',
            'x;y',
            '',
            '%3b',
            'users',
            'admin..',
          ),
          { minLength: 1, maxLength: 6 },
        ),
        (parts) => {
          const result = normalizeTarget(`/${parts.join('/')}`);
          if (!result.ok) return;
          const denied = result.readings.some((r) => underAdmin(r) || matchPathGlob('/admin/**', r));
          for (const [name, read] of Object.entries(servers)) {
            if (underAdmin(read(result.path)))
              assert.ok(
                denied,
                `${name} routes ${result.path} to ${read(result.path)}; readings ${result.readings.join(' ')}`,
              );
          }
        },
      ),
      { numRuns: 3000 },
    );
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
