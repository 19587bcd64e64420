#!/usr/bin/env node
// The one CLI: `airlock`, also installed as the kubectl plugin `kubectl-airlock`.
// Plain JavaScript that any Node can read, so it can hand over to the right runtime:
// - Airlock runs on Node 24; an older node re-runs it on the Node 24 that scripts/node.sh
//   provides (from the npm registry).
// - Commands that run WebAssembly run with --liftoff-only: the SQL parser (local, sidecar) and
//   the embedded audit store, PGlite (operator, audit). V8's optimizing tier would take
//   hundreds of megabytes to compile them (the sidecar: peak RSS 690 MB against 200 MB under
//   pgbench; the operator opening its embedded store: 1.1 GB against 610 MB). V8 reads the flag
//   only at start-up.
import { execFileSync, spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const self = fileURLToPath(import.meta.url);
const args = process.argv.slice(2);
const major = Number(process.versions.node.split('.')[0]);
const wantsLiftoff =
  ['local', 'sidecar', 'operator', 'audit'].includes(args[0] ?? '') &&
  !process.execArgv.includes('--liftoff-only');

if (major < 24 || wantsLiftoff) {
  const node =
    major < 24
      ? join(
          execFileSync('bash', [join(dirname(self), '../scripts/node.sh')], { encoding: 'utf8' }).trim(),
          'node',
        )
      : process.execPath;
  const flags = wantsLiftoff ? ['--liftoff-only'] : [];
  const child = spawn(node, [...flags, ...process.execArgv, self, ...args], { stdio: 'inherit' });
  // A terminal's Ctrl-C reaches the child with its process group; termination is forwarded.
  process.on('SIGINT', () => {});
  for (const signal of ['SIGTERM', 'SIGHUP']) process.on(signal, () => child.kill(signal));
  child.on('exit', (code, signal) => {
    if (signal) process.kill(process.pid, signal);
    process.exit(code ?? 1);
  });
} else {
  const { main } = await import('../cli/main.ts');
  process.exitCode = await main(args);
}
