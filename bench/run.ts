// `make bench`: runs each benchmark in its own process, one after another, so they do not
// compete for the machine. Each compares Airlock with the direct path and a peer side by side
// and prints its ratios. BENCH_ONLY=postgres,injection picks some.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';

const directory = new URL('./', import.meta.url).pathname;
const only = process.env.BENCH_ONLY?.split(',');
const benches = readdirSync(directory)
  .filter((f) => f.endsWith('.ts') && f !== 'run.ts')
  .map((f) => f.replace(/\.ts$/, ''))
  .filter((name) => !only || only.includes(name))
  .sort();
let failed = 0;
for (const name of benches) {
  console.log(`\n## ${name}\n`);
  const result = spawnSync(process.execPath, [`${directory}${name}.ts`], { stdio: 'inherit' });
  if (result.status !== 0) {
    failed++;
    console.log(`bench ${name} failed (exit ${result.status})`);
  }
}
process.exitCode = failed ? 1 : 0;
