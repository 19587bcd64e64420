#!/usr/bin/env node
// The one CLI: `airlock`, also installed as the kubectl plugin `kubectl-airlock`.
// Plain JavaScript that any Node can read, so it can hand over to the right runtime:
// - Airlock runs on Node 24; an older node re-runs it on the Node 24 that scripts/node.sh
//   provides (from the npm registry).
// - A command that needs V8 flags (bin/node-flags.js) re-runs itself with them.
import { execFileSync, spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nodeFlags } from './node-flags.js';

const self = fileURLToPath(import.meta.url);
const args = process.argv.slice(2);
const major = Number(process.versions.node.split('.')[0]);
const missing = nodeFlags(args[0]).filter((flag) => !process.execArgv.includes(flag));

if (major < 24 || missing.length > 0) {
  const node =
    major < 24
      ? join(
          execFileSync('bash', [join(dirname(self), '../scripts/node.sh')], { encoding: 'utf8' }).trim(),
          'node',
        )
      : process.execPath;
  const argv = [...missing, ...process.execArgv, self, ...args];
  // Where Node can, the command replaces this process: one process (a sidecar keeps no 48 MB
  // launcher beside it), and the signals a kubelet or a terminal sends reach the command itself.
  if (process.execve) process.execve(node, [node, ...argv], process.env);
  const child = spawn(node, argv, { stdio: 'inherit' });
  // A terminal's Ctrl-C reaches the child with its process group; termination is forwarded.
  process.on('SIGINT', () => {});
  for (const signal of /** @type {const} */ (['SIGTERM', 'SIGHUP']))
    process.on(signal, () => child.kill(signal));
  child.on('exit', (code, signal) => {
    if (signal) process.kill(process.pid, signal);
    process.exit(code ?? 1);
  });
} else {
  const { main } = await import('../cli/main.ts');
  process.exitCode = await main(args);
}
