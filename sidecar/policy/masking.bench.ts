// Micro-benchmark of the per-value masking cost and of SQL analysis (not a test).
//   node sidecar/policy/masking.bench.ts        (all)
//   node sidecar/policy/masking.bench.ts sql    (SQL analysis only)
import { detectors } from '../../api/names.ts';
import { policy } from './fixtures.ts';
import { ByteOutput, compileMasking, type MaskingPlan, type Tally } from './masking.ts';
import { analyzeSql, loadSqlParser } from './sql.ts';

const typical: Record<string, string[]> = {
  'small ints': ['1', '42', '1337', '99999', '7'],
  names: ['Alice Smith', 'Bob', 'Carol-Ann O’Neil', 'Dave', 'Eve Online'],
  timestamps: ['2024-01-15 10:00:00+00', '2023-12-31 23:59:59.999+01', '2024-02-29'],
  uuids: ['7c9e6679-7425-40de-944b-e07fc1f90ae7', '16fd2706-8baf-433b-82eb-8c7fada847da'],
  numerics: ['1234.56', '0.001', '-17.5', '1700000000000'],
  'sentences (200 chars)': [
    'The quick brown fox jumps over the lazy dog while the agent reads rows from the orders table and writes a summary of what it found, with no personal data at all in this text, which is long enough.',
  ],
  'values with PII': ['alice@example.com', '4111 1111 1111 1111', '123-45-6789', '+44 20 7946 0958'],
};

function bench(plan: MaskingPlan, values: string[], iterations: number): number {
  let sink = 0;
  // Warm up so the JIT has settled.
  for (let i = 0; i < 20_000; i++) sink += plan.maskText(values[i % values.length]!).value.length;
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) sink += plan.maskText(values[i % values.length]!).value.length;
  const ns = Number(process.hrtime.bigint() - start) / iterations;
  if (sink === -1) console.log(sink);
  return ns;
}

/** The same values as bytes, as rows and JSON bodies reach the plan (text beyond ASCII as a string). */
function benchBytes(plan: MaskingPlan, values: string[], iterations: number): number {
  const encoded = values.map((v) => Buffer.from(v, 'utf8'));
  const ascii = values.map((v) => Buffer.byteLength(v) === v.length);
  const out = new ByteOutput();
  const tally: Tally = {};
  const one = (i: number) => {
    const k = i % values.length;
    if (!ascii[k]) return plan.maskText(values[k]!).value.length;
    out.length = 0;
    const bytes = encoded[k]!;
    return plan.maskAscii(bytes, 0, bytes.length, tally, out) ? out.length : bytes.length;
  };
  let sink = 0;
  for (let i = 0; i < 20_000; i++) sink += one(i);
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) sink += one(i);
  const ns = Number(process.hrtime.bigint() - start) / iterations;
  if (sink === -1) console.log(sink);
  return ns;
}

/**
 * The least a proxy that masks text must do per value anyway: decode the field from the
 * DataRow bytes and encode it back. Masking cost is best read against this.
 */
function baseline(values: string[], iterations: number): number {
  const encoded = values.map((v) => Buffer.from(v, 'utf8'));
  let sink = 0;
  for (let i = 0; i < 20_000; i++) sink += Buffer.byteLength(encoded[i % encoded.length]!.toString('utf8'));
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) {
    sink += Buffer.byteLength(encoded[i % encoded.length]!.toString('utf8'));
  }
  const ns = Number(process.hrtime.bigint() - start) / iterations;
  if (sink === -1) console.log(sink);
  return ns;
}

const plans: [string, MaskingPlan][] = [
  [
    'email+card+ssn',
    compileMasking([
      policy({
        name: 'p',
        masking: [
          {
            name: 'pii',
            detectors: ['email', 'credit-card', 'us-ssn'],
            strategy: 'redact',
            indirectUse: 'deny',
          },
        ],
      }),
    ]),
  ],
  [
    'all 11 detectors',
    compileMasking([
      policy({
        name: 'p',
        masking: [{ name: 'pii', detectors: [...detectors], strategy: 'redact', indirectUse: 'deny' }],
      }),
    ]),
  ],
  [
    'all + 1 RE2 pattern',
    compileMasking([
      policy({
        name: 'p',
        masking: [
          { name: 'pii', detectors: [...detectors], strategy: 'redact', indirectUse: 'deny' },
          {
            name: 'ids',
            patterns: [{ name: 'order', regex: 'ORD-[0-9]{6}' }],
            strategy: 'hash',
            indirectUse: 'deny',
          },
        ],
      }),
    ]),
  ],
];

// Each plan runs in its own process, so call sites stay monomorphic as with one plan per
// connection in the sidecar.
const iterations = 1_000_000;
const which = process.argv[2];
if (which === undefined) {
  const { execFileSync } = await import('node:child_process');
  console.log(`ns per value (${iterations} values each), as a string / as bytes`);
  const columns = [
    ['values', ...Object.keys(typical)],
    ['decode+encode', ...Object.values(typical).map((v) => baseline(v, iterations).toFixed(1))],
  ];
  for (let i = 0; i < plans.length; i++) {
    const out = execFileSync(process.execPath, [import.meta.filename, String(i)], { encoding: 'utf8' });
    columns.push([plans[i]![0], ...out.trim().split('\n')]);
  }
  for (let row = 0; row < columns[0]!.length; row++) {
    console.log(columns.map((col, i) => (i === 0 ? col[row]!.padEnd(24) : col[row]!.padStart(20))).join(' '));
  }
} else if (which !== 'sql') {
  const plan = plans[Number(which)]![1];
  for (const values of Object.values(typical))
    console.log(
      `${bench(plan, values, iterations).toFixed(1)} / ${benchBytes(plan, values, iterations).toFixed(1)}`,
    );
  process.exit(0);
}

await loadSqlParser();
// Per statement: a fresh parse, an exact-text cache hit, and the literal fast path (the
// same statement with a new number every time, as pgbench -S sends it).
const statements: [string, (i: number) => string][] = [
  [
    'SELECT abalance FROM pgbench_accounts WHERE aid = 48213;',
    (i) => `SELECT abalance FROM pgbench_accounts WHERE aid = ${i};`,
  ],
  [
    "SELECT o.id, sum(l.amount) FROM orders o JOIN lines l ON l.oid = o.id WHERE o.created > now() - interval '1 day' GROUP BY o.id ORDER BY 2 DESC LIMIT 50",
    (i) =>
      `SELECT o.id, o.total FROM orders o JOIN lines l ON l.oid = o.id WHERE o.created > '2024-01-01' AND o.id > ${i} ORDER BY 2 DESC LIMIT 50`,
  ],
  ['DELETE FROM orders WHERE id = 42', (i) => `DELETE FROM orders WHERE id = ${i}`],
];
function time(n: number, run: (i: number) => void): number {
  for (let i = 0; i < 2_000; i++) run(i);
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) run(i + 2_000);
  return Number(process.hrtime.bigint() - start) / n / 1000;
}
console.log('analyzeSql µs       parse  exact hit  new literal');
for (const [sql, vary] of statements) {
  const parse = time(20_000, () => analyzeSql(sql, { cache: false }));
  const hit = time(200_000, () => analyzeSql(sql));
  const fast = time(200_000, (i) => analyzeSql(vary(i)));
  console.log(
    `${''.padEnd(14)}${parse.toFixed(2).padStart(10)}${hit.toFixed(2).padStart(11)}${fast.toFixed(2).padStart(13)}  ${sql.slice(0, 60)}`,
  );
}
