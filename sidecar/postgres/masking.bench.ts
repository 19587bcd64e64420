// Micro-benchmark of the PostgreSQL enforcer's masking of result rows (not a test): the rows of
// bench/postgres.ts's 1M-row result (id, email, note, n, created) under its policy, in 64 KB
// chunks as socket reads bring them, through RowMasker.maskRun. Prints the CPU per row of each
// pass; the share of the enforcer's CPU per row that is masking, without sockets or recording.
//   node sidecar/postgres/masking.bench.ts              (1M rows, 5 passes)
//   ROWS=200000 PASSES=3 node --cpu-prof sidecar/postgres/masking.bench.ts
import type { MaskingRule } from '../../api/v1alpha1.ts';
import { policy } from '../policy/fixtures.ts';
import { type MaskTally, planColumns, RowMasker } from './masking.ts';
import { encodeDataRow } from './messages.ts';
import { loadPolicyEngine } from './policy.ts';

const rules: MaskingRule[] = [
  {
    name: 'pii',
    detectors: ['credit-card', 'email', 'us-ssn', 'phone', 'iban'],
    strategy: 'partial',
    indirectUse: 'deny',
  },
  {
    name: 'identity',
    columns: ['*.ssn', 'public.pgbench_accounts.filler'],
    strategy: 'redact',
    indirectUse: 'deny',
  },
];
const masker = (await loadPolicyEngine([policy({ name: 'bench', masking: rules })])).masker!;
// int4, text, text, int4, timestamptz, all in text format.
const layout = planColumns(
  masker,
  [23, 25, 25, 23, 1184].map((typeOid, i) => ({ name: 'c', tableOid: 0, attnum: i + 1, typeOid, format: 0 })),
  () => [],
);

const rows = Number(process.env.ROWS ?? 1_000_000);
const passes = Number(process.env.PASSES ?? 5);
const created = Buffer.from('2026-12-04 14:40:53.123456+00');
const chunks: Buffer[] = [];
let pending: Buffer[] = [];
let size = 0;
for (let g = 1; g <= rows; g++) {
  const row = encodeDataRow([
    Buffer.from(String(g)),
    Buffer.from(`user${g}@example.com`),
    Buffer.from(`order ${g} shipped`),
    Buffer.from(String(g * 2)),
    created,
  ]);
  if (size + row.length > 65_536) {
    chunks.push(Buffer.concat(pending));
    pending = [];
    size = 0;
  }
  pending.push(row);
  size += row.length;
}
if (pending.length > 0) chunks.push(Buffer.concat(pending));

const rowMasker = new RowMasker(masker);
function pass(tally: MaskTally): number {
  let bytes = 0;
  for (const chunk of chunks) {
    rowMasker.batch();
    const out: Buffer[] = [];
    rowMasker.maskRun(chunk, 0, chunk.length, layout, tally, out);
    for (const view of out) bytes += view.length;
  }
  return bytes;
}

pass({}); // warm-up: the JIT settles
console.log(`${rows} rows in ${chunks.length} chunks, µs of CPU per row:`);
for (let i = 0; i < passes; i++) {
  const tally: MaskTally = {};
  const before = process.cpuUsage();
  const bytes = pass(tally);
  const used = process.cpuUsage(before);
  const masked = tally.masked?.['pii/email'] ?? 0;
  // Every row's e-mail is masked: anything else means the bench measured something else.
  if (masked !== rows) throw new Error(`masked ${masked} e-mails in ${rows} rows`);
  console.log(`  ${((used.user + used.system) / rows).toFixed(3)} (${(bytes / 1e6).toFixed(0)} MB out)`);
}
