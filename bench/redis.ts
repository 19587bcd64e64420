// Redis data path: redis-benchmark GET and SET against a real redis-server, direct vs through
// the Redis enforcer, one request at a time per connection and pipelined 16 deep, interleaved
// round by round. The enforcer runs in this process under a realistic policy (detectors
// masking every reply, class and key rules deciding every command) and builds every request
// event; the sink only counts them, so the rows measure the data path, not a store.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { policy } from '../sidecar/policy/fixtures.ts';
import { enforceRedis, startRedis } from '../test/support/redis.ts';
import { findTool } from '../test/support/tools.ts';

const run = promisify(execFile);
const requests = Number(process.env.BENCH_REDIS_REQUESTS ?? 200_000);
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const clients = Number(process.env.BENCH_CONNECTIONS ?? 8);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const benchmark = findTool('redis-benchmark');
if (!benchmark || !findTool('redis-server')) {
  console.log(
    'redis bench not run: missing redis-server or redis-benchmark (apt-get install redis-server redis-tools)',
  );
  process.exit(0);
}

/** Requests per second by test (SET, GET) of one redis-benchmark run. */
async function load(port: number, password: string, pipeline: number): Promise<Record<string, number>> {
  const args = [
    '-h',
    '127.0.0.1',
    '-p',
    String(port),
    '-a',
    password,
    '-t',
    'set,get',
    '-n',
    String(requests),
  ];
  args.push('-c', String(clients), '-P', String(pipeline), '-r', '10000', '-d', '64', '--csv', '-q');
  const { stdout } = await run(benchmark!, args, { env: { ...process.env, REDISCLI_AUTH: password } });
  const rates: Record<string, number> = {};
  for (const line of stdout.trim().split('\n').slice(1)) {
    const [test, rps] = line.split(',').map((cell) => cell.replace(/"/g, ''));
    rates[test!] = Number(rps);
  }
  return rates;
}

const server = await startRedis();
const guarded = policy({
  name: 'bench',
  masking: [{ name: 'pii', detectors: ['email', 'credit-card'], strategy: 'redact', indirectUse: 'deny' }],
  rules: [
    { name: 'no-dangerous', action: 'deny', redis: { classes: ['dangerous'] } },
    { name: 'no-secret-writes', action: 'deny', redis: { classes: ['write'], keys: ['secret:*'] } },
  ],
});
const enforced = await enforceRedis(server, [guarded]);
let recorded = 0;
enforced.events.push = () => ++recorded;

console.log(
  `redis-benchmark, ${requests} requests, ${clients} connections, 64-byte values, median of ${rounds} rounds`,
);
console.log('| test | pipeline | direct req/s | enforcer req/s | ratio |');
console.log('| --- | --- | --- | --- | --- |');
for (const pipeline of [1, 16]) {
  const direct: Record<string, number[]> = { SET: [], GET: [] };
  const through: Record<string, number[]> = { SET: [], GET: [] };
  for (let round = 0; round < rounds; round++) {
    const d = await load(server.port, server.password, pipeline);
    const e = await load(enforced.port, 'ignored-by-the-enforcer', pipeline);
    for (const test of ['SET', 'GET']) {
      direct[test]!.push(d[test] ?? 0);
      through[test]!.push(e[test] ?? 0);
    }
  }
  for (const test of ['SET', 'GET']) {
    const a = median(direct[test]!);
    const b = median(through[test]!);
    console.log(`| ${test} | ${pipeline} | ${Math.round(a)} | ${Math.round(b)} | ${(b / a).toFixed(2)}× |`);
  }
}
console.log(`(${recorded} events built)`);
await enforced.enforcer.close();
await server.stop();
