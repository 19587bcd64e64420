// Run after `npm ci` (package.json's postinstall): ssh2's native cipher addon, rebuilt with
// Nan's ObjectWrap in place of node's. On Node 24 node::ObjectWrap registers an environment
// cleanup hook per object and removes it in its destructor, which cannot find the environment
// when V8 collects the object outside any context (a garbage collection run as a task): the
// process aborts (`Assertion failed: (env) != nullptr` in RemoveEnvironmentCleanupHook), and
// with it every session the sidecar serves, when a finished session's cipher is collected.
// Nan's ObjectWrap only drops its handle. Without the addon ssh2 would run its ciphers packet
// by packet in JavaScript, at half the throughput or less; so a build that fails, fails here.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
const ssh2 = join(root, 'node_modules/ssh2');
const source = join(ssh2, 'lib/protocol/crypto/src/binding.cc');
if (!existsSync(source)) process.exit(0);

const text = readFileSync(source, 'utf8');
const patched = text
  .replace(/\bpublic ObjectWrap\b/g, 'public Nan::ObjectWrap')
  .replace(/(?<!Nan::)\bObjectWrap::Unwrap\b/g, 'Nan::ObjectWrap::Unwrap');
if (/(?<!Nan::)\bObjectWrap\b/.test(patched)) {
  console.error(`${source}: a use of node::ObjectWrap this script does not know; see its comment`);
  process.exit(1);
}
if (patched !== text) writeFileSync(source, patched);
// ssh2's own install script, which fails only when asked to.
const build = spawnSync(process.execPath, ['install.js'], {
  cwd: ssh2,
  stdio: 'inherit',
  env: { ...process.env, CI_CHECK_FAIL: 'ssh2' },
});
process.exit(build.status ?? 1);
