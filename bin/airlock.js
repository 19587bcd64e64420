#!/usr/bin/env node
// The one CLI: `airlock`, also installed as the kubectl plugin `kubectl-airlock`.
import { setFlagsFromString } from 'node:v8';

// The SQL parser is WebAssembly: its baseline code is fast enough, while the optimizing tier
// would briefly take hundreds of megabytes to compile it. Set before any module loads it.
setFlagsFromString('--liftoff-only');

const { main } = await import('../cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
