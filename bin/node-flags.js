// The V8 flags an `airlock` command runs with. V8 reads them only at start-up: bin/airlock.js
// re-runs itself with them, and whatever starts a command's process directly (the benches, the
// test pod runner) passes the same, so what is measured and tested is what runs.
// - --liftoff-only for commands that may run WebAssembly: the SQL parser (local, sidecar, the
//   operator's policy checks) and PGlite, which only `airlock audit migrate` still opens. V8's
//   optimizing tier would take hundreds of megabytes to compile them (the sidecar: peak RSS
//   690 MB against 200 MB under pgbench).
// - --max-semi-space-size=4 for the data path (local, sidecar) and the operator's collector: a
//   small young generation. A proxy or an ingest allocates briefly per message; V8's default
//   lets the young generation grow to 48 MB and keeps the pages. bench/postgres.ts: the
//   enforcer's peak RSS 169 MB against 302 MB, with the same throughput; bench/memory.ts: the
//   operator 45-50 MB less under ingest.

/** @param {string | undefined} command @returns {string[]} */
export function nodeFlags(command) {
  const flags = [];
  if (['local', 'sidecar', 'operator', 'audit'].includes(command ?? '')) flags.push('--liftoff-only');
  if (['local', 'sidecar', 'operator'].includes(command ?? '')) flags.push('--max-semi-space-size=4');
  return flags;
}
