// The V8 flags an `airlock` command runs with. V8 reads them only at start-up: bin/airlock.js
// re-runs itself with them, and whatever starts a command's process directly (the benches, the
// test pod runner) passes the same, so what is measured and tested is what runs.
// - --liftoff-only for commands that may run WebAssembly: the SQL parser (local, sidecar, the
//   operator's policy checks) and PGlite, which only `airlock audit migrate` still opens. V8's
//   optimizing tier would take hundreds of megabytes to compile them (the sidecar: peak RSS
//   690 MB against 200 MB under pgbench).
// - A small young generation: a proxy or an ingest allocates briefly per message; V8's default
//   lets the young generation grow to 48 MB and keeps the pages. --max-semi-space-size=4 for the
//   operator's collector (bench/memory.ts: 45-50 MB less under ingest); 2 for the data path
//   (local, sidecar). bench/postgres.ts's enforcer: 4 against the default, peak RSS 169 MB
//   against 302 MB with the same throughput; 2 against 4 (compiled, five runs, pgbench -S with
//   8 clients), idle 106 against 110 MB, median peak 158 against 165 MB, the same 104 us of CPU
//   per transaction; 1 cost 5-25 % more CPU per transaction and per masked row.
// - A slower-growing old generation for the data path (--heap-growing-percent=50: each limit
//   1.5 times the live heap, where V8 lets it grow up to fourfold): a sidecar queues every
//   statement's event for the collector, and those strings outlive the young generation, so its
//   old generation grew to 40-65 MB of mostly garbage before a full collection. The sidecar
//   under pgbench -S with 4 clients, three interleaved rounds on a quiet machine: RSS after the
//   load 118-119 against 122-151 MB, CPU per transaction 60.9-64.8 against 62.6-66.4 us, the
//   same CPU for a 300,000-row masked result (25 was no better).

/** @param {string | undefined} command @returns {string[]} */
export function nodeFlags(command) {
  const flags = [];
  if (['local', 'sidecar', 'operator', 'audit'].includes(command ?? '')) flags.push('--liftoff-only');
  if (['local', 'sidecar'].includes(command ?? ''))
    flags.push('--max-semi-space-size=2', '--heap-growing-percent=50');
  if (command === 'operator') flags.push('--max-semi-space-size=4');
  return flags;
}
