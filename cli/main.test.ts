import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);
const cli = new URL('../bin/airlock.js', import.meta.url).pathname;

test('airlock --help lists the commands', async () => {
  const { stdout } = await run(process.execPath, [cli, '--help']);
  for (const command of [
    'operator',
    'sidecar',
    'init',
    'local',
    'sessions',
    'approvals',
    'approve',
    'deny',
    'audit',
    'version',
  ]) {
    assert.match(stdout, new RegExp(`^  ${command}\\s`, 'm'));
  }
});

test('airlock version prints the package version', async () => {
  const { version } = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8'));
  const { stdout } = await run(process.execPath, [cli, 'version']);
  assert.match(stdout, new RegExp(`^airlock ${version.replaceAll('.', '\\.')} \\(node 24\\.`));
});

test('an unknown command fails with exit code 2 and the help', async () => {
  await assert.rejects(
    run(process.execPath, [cli, 'frobnicate']),
    (error: { code: number; stderr: string }) => {
      assert.equal(error.code, 2);
      assert.match(error.stderr, /unknown command "frobnicate"/);
      return true;
    },
  );
});
