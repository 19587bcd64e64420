#!/usr/bin/env node
// The one CLI: `airlock`, also installed as the kubectl plugin `kubectl-airlock`.
import { main } from '../cli/main.ts';

process.exitCode = await main(process.argv.slice(2));
