import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import ssh2 from 'ssh2';
import { fingerprint, isKnownHostKey, keyType, parseKnownHosts } from './known-hosts.ts';

const blobOf = (publicLine: string) => Buffer.from(publicLine.split(' ')[1]!, 'base64');

describe('known hosts', () => {
  const a = ssh2.utils.generateKeyPairSync('ed25519').public;
  const b = ssh2.utils.generateKeyPairSync('ecdsa', { bits: 256 }).public;
  const c = ssh2.utils.generateKeyPairSync('ed25519').public;

  it('accepts listed keys whatever the host field says, and offers their algorithms', () => {
    const known = parseKnownHosts([`db.internal ${a}`, `# comment`, '', `[10.0.0.1]:2222,other ${b}`]);
    assert.ok(isKnownHostKey(known, blobOf(a)));
    assert.ok(isKnownHostKey(known, blobOf(b)));
    assert.ok(!isKnownHostKey(known, blobOf(c)));
    assert.deepEqual(known.algorithms, ['ssh-ed25519', 'ecdsa-sha2-nistp256']);
  });

  it('refuses revoked keys, ignores cert-authority and corrupt lines', () => {
    const [type, key] = a.split(' ');
    const known = parseKnownHosts([
      `host ${a}`,
      `@revoked * ${a}`,
      `@cert-authority * ${b}`,
      `host ssh-rsa ${key}`,
      `host ${type} not-base64!`,
    ]);
    assert.equal(known.keys.length, 0);
    assert.ok(!isKnownHostKey(known, blobOf(a)));
    assert.ok(!isKnownHostKey(known, blobOf(b)));
  });

  it('describes a key as OpenSSH does', () => {
    assert.equal(keyType(blobOf(a)), 'ssh-ed25519');
    assert.match(fingerprint(blobOf(a)), /^SHA256:[A-Za-z0-9+/]{43}$/);
  });
});
