// ssh2's native cipher addon as package.json's postinstall builds it (build-ssh2-addon.js): it
// loads, so the enforcer's ciphers run natively, and it never removes an environment cleanup
// hook, which aborts the process when V8 collects a cipher outside any context.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { test } from 'node:test';

const require = createRequire(import.meta.url);
const addon = 'ssh2/lib/protocol/crypto/build/Release/sshcrypto.node';

test('ssh2 runs its ciphers with the native addon', () => {
  assert.equal(require('ssh2/lib/protocol/crypto.js').bindingAvailable, true);
  assert.equal(typeof require(addon).AESGCMDecipher, 'function');
});

test("the addon's ciphers are Nan's ObjectWrap, which registers no environment cleanup hook", () => {
  const binary = readFileSync(require.resolve(addon));
  assert.equal(binary.includes('EnvironmentCleanupHook'), false);
  // The symbols of the ciphers' own code are there: the check reads the built file.
  assert.equal(binary.includes('EVP_CIPHER_CTX_free'), true);
});
