// The exact rules `airlock init` installs, against golden files in test/fixtures/capture/.
// A stale golden fails; AIRLOCK_UPDATE_GOLDEN=1 rewrites them.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { resolvConfNameservers } from './command.ts';
import { CaptureError, type CaptureOptionsInput, captureRules } from './rules.ts';

const fixtures = new URL('../../test/fixtures/capture/', import.meta.url).pathname;
const update = process.env.AIRLOCK_UPDATE_GOLDEN === '1';

const base = {
  sidecarUid: 1337,
  virtualCidr: '240.240.0.0/16',
  virtual: ['orders-db=240.240.0.1:5432', 'billing=240.240.0.2:443'],
  redirect: [],
  excludeOutboundCidrs: [],
  excludeOutboundPorts: [],
  dns: ['10.96.0.10'],
} satisfies CaptureOptionsInput;

const cases: Record<string, CaptureOptionsInput> = {
  strict: { ...base, egress: 'strict' },
  permissive: { ...base, egress: 'permissive' },
  'strict-redirect-exclusions': {
    ...base,
    egress: 'strict',
    virtual: [...base.virtual, 'legacy=240.240.0.3:5432'],
    redirect: ['10.20.0.5:5432=240.240.0.3:5432'],
    excludeOutboundCidrs: ['10.96.0.0/12', 'fd00:10::/64'],
    excludeOutboundPorts: [8125, '9090'],
    dns: ['10.96.0.10', 'fd00:10::a'],
  },
};

for (const [name, options] of Object.entries(cases)) {
  test(`capture rules: ${name} matches its golden`, () => {
    const plan = captureRules(options);
    const actual = `${JSON.stringify({ routes: plan.routes, jumps: plan.jumps, summary: plan.summary }, null, 2)}\n# ipv4\n${plan.ipv4}# ipv6\n${plan.ipv6}`;
    const file = join(fixtures, `${name}.rules`);
    if (update) writeFileSync(file, actual);
    if (!existsSync(file)) assert.fail(`missing golden ${file}; run with AIRLOCK_UPDATE_GOLDEN=1`);
    assert.equal(
      actual,
      readFileSync(file, 'utf8'),
      `stale golden ${file}; run with AIRLOCK_UPDATE_GOLDEN=1`,
    );
  });
}

test('strict egress ends each family with a reject of TCP and of UDP, after the sidecar uid is let out', () => {
  const plan = captureRules({ ...base, egress: 'strict' });
  for (const text of [plan.ipv4, plan.ipv6]) {
    const filter = text.slice(text.indexOf('*filter'));
    const lines = filter.split('\n').filter((l) => l.startsWith('-A'));
    assert.equal(lines.at(-2), '-A AIRLOCK_OUTPUT -p tcp -j REJECT --reject-with tcp-reset');
    assert.match(
      lines.at(-1) ?? '',
      /^-A AIRLOCK_OUTPUT -p udp -j REJECT --reject-with icmp6?-port-unreachable$/,
    );
    assert.ok(lines.some((l) => l.includes('-m owner --uid-owner 1337 -j RETURN')));
  }
});

test('strict egress lets port 53 reach only the nameservers, and rejects other UDP', () => {
  const plan = captureRules({ ...base, egress: 'strict', dns: ['10.96.0.10', 'fd00:10::a'] });
  const v4 = plan.ipv4.split('\n').filter((l) => l.includes('--dport 53'));
  assert.deepEqual(v4, [
    '-A AIRLOCK_OUTPUT -d 10.96.0.10/32 -p udp --dport 53 -j RETURN',
    '-A AIRLOCK_OUTPUT -d 10.96.0.10/32 -p tcp --dport 53 -j RETURN',
  ]);
  assert.match(plan.ipv6, /-d fd00:10::a\/128 -p udp --dport 53 -j RETURN/);
  assert.ok(plan.ipv4.includes('-A AIRLOCK_OUTPUT -p udp -j REJECT --reject-with icmp-port-unreachable'));
  assert.ok(plan.ipv6.includes('-A AIRLOCK_OUTPUT -p udp -j REJECT --reject-with icmp6-port-unreachable'));
  const none = captureRules({ ...base, egress: 'strict', dns: [] });
  assert.ok(!none.ipv4.includes('--dport 53'), 'no nameserver, no port 53');
});

test('the default nameservers are those of resolv.conf, without scoped or malformed ones', () => {
  assert.deepEqual(
    resolvConfNameservers(
      'search agents.svc.cluster.local\nnameserver 10.96.0.10\nnameserver fe80::1%eth0\n nameserver fd00::a\noptions ndots:5\n',
    ),
    ['10.96.0.10', 'fd00::a'],
  );
  assert.deepEqual(resolvConfNameservers(''), []);
});

test('permissive egress rejects nothing but still redirects IP literals', () => {
  const plan = captureRules({ ...base, egress: 'permissive', redirect: ['10.0.0.1:22=240.240.0.9:22'] });
  assert.ok(!plan.ipv4.includes('REJECT') && !plan.ipv6.includes('REJECT'));
  assert.match(
    plan.ipv4,
    /-d 10\.0\.0\.1\/32 --dport 22 -m owner ! --uid-owner 1337 -j DNAT --to-destination 240\.240\.0\.9:22/,
  );
});

test('re-running yields the same chains: declared (flushed) and refilled, never appended', () => {
  const plan = captureRules({ ...base, egress: 'strict' });
  assert.deepEqual(captureRules({ ...base, egress: 'strict' }), plan);
  assert.match(plan.ipv4, /^\*nat\n:AIRLOCK_OUTPUT - \[0:0\]\n/);
  assert.match(plan.ipv6, /^\*filter\n:AIRLOCK_OUTPUT - \[0:0\]\n/);
});

test('IPv6-literal redirects are refused with a reason', () => {
  assert.throws(
    () => captureRules({ ...base, redirect: ['[fd00::5]:5432=240.240.0.3:5432'] }),
    (error) => error instanceof CaptureError && error.code === 'IPv6Redirect',
  );
});

test('malformed arguments are refused', () => {
  for (const bad of [
    { virtual: ['no-equals'] },
    { redirect: ['db.example:5432=240.240.0.1:5432'] },
    { excludeOutboundCidrs: ['10.0.0.0/40'] },
    { excludeOutboundPorts: [70000] },
    { virtualCidr: 'fd00::/64' },
    { dns: ['kube-dns'] },
  ]) {
    assert.throws(() => captureRules({ ...base, ...bad }), JSON.stringify(bad));
  }
});
