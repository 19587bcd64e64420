// What the data-path metrics cost: the HTTP enforcer in this process, with the sidecar's V8
// flags, under wrk, with and without the metrics subscriber, interleaved round by round (the
// order alternating, so drift falls on both) for a masked response and a denied request. The
// enforcer records to a sink that only counts, so the enforcer costs as little as it can and
// the subscriber's share is the largest it can be; while subscribed the registry is scraped
// every second, more often than Prometheus would. Beside wrk's rate, this process's CPU time
// per request (the enforcer's alone: wrk and the target run in their own processes). A few
// percent is within the run-to-run noise of a shared machine, so the budget is checked on the
// subscriber's own CPU time: the events of a run are kept, published again through the
// subscriber and timed by this thread's CPU clock (which other processes do not move), against
// the enforcer's CPU time per request without it.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BundleConnection } from '../api/bundle.ts';
import type { SessionEvent } from '../api/events.ts';
import { nodeFlags } from '../bin/node-flags.js';
import { Registry } from '../metrics/registry.ts';
import { noApprovals } from '../sidecar/core/enforcer.ts';
import { eventChannel } from '../sidecar/core/recorder.ts';
import { serveHttp } from '../sidecar/http/enforcer.ts';
import { subscribeDataPathMetrics } from '../sidecar/metrics.ts';
import { policy } from '../sidecar/policy/fixtures.ts';
import { findTool } from '../test/support/tools.ts';
import { type Load, median, startTarget, wrk } from './http.ts';

const seconds = Number(process.env.BENCH_SECONDS ?? 5);
// More rounds than the other benches: the difference sought is a few percent.
const rounds = Number(process.env.BENCH_ROUNDS ?? 6);
const connections = Number(process.env.BENCH_CONNECTIONS ?? 8);
/** The issue's budget: metrics may cost at most this share of throughput. */
const budget = 0.02;

/** The Connection and policy of bench/http.ts: detectors on every response, two deny rules. */
function connection(port: number): BundleConnection {
  return {
    name: 'orders-api',
    namespace: 'bench',
    protocol: 'http',
    host: '127.0.0.1',
    port,
    tls: { mode: 'verify-full' },
    credentials: { token: 'bench-token' },
    http: { scheme: 'http' },
    policies: [
      policy({
        name: 'bench-agent',
        namespace: 'bench',
        masking: [
          {
            name: 'pii',
            detectors: ['credit-card', 'email', 'us-ssn', 'phone', 'iban'],
            strategy: 'partial',
            indirectUse: 'deny',
          },
        ],
        rules: [
          { name: 'no-admin', action: 'deny', http: { paths: ['/admin', '/admin/**'] } },
          { name: 'no-deletes', action: 'deny', http: { methods: ['DELETE'] } },
        ],
      }),
    ],
  };
}

interface Run {
  load: Load;
  /** This process's CPU time (user + system) per request served, in microseconds. */
  cpuUs: number;
}

/** Sets a run up and returns its undoing: no subscriber, or the subscriber and a scraper. */
type Variant = () => () => void;

const withoutMetrics: Variant = () => () => {};

const withMetrics: Variant = () => {
  const registry = new Registry();
  const unsubscribe = subscribeDataPathMetrics(registry);
  const scrape = setInterval(() => registry.metrics(), 1000);
  return () => {
    clearInterval(scrape);
    unsubscribe();
  };
};

/** The subscriber's CPU time per request, in microseconds, over the events a run recorded. */
function subscriberCost(events: SessionEvent[]): number {
  const requests = events.filter((e) => e.type === 'request').length;
  const unsubscribe = subscribeDataPathMetrics(new Registry());
  try {
    for (const event of events) eventChannel.publish(event); // warm up
    const started = process.threadCpuUsage();
    for (const event of events) eventChannel.publish(event);
    const used = process.threadCpuUsage(started);
    return (used.user + used.system) / requests;
  } finally {
    unsubscribe();
  }
}

const variants = [withoutMetrics, withMetrics];

interface Workload {
  name: string;
  path: string;
  status: number;
}

const workloads: Workload[] = [
  { name: 'small JSON, 3 values masked', path: '/small', status: 200 },
  { name: 'denied /admin/users (403)', path: '/admin/users', status: 403 },
];

interface Summary {
  rps: number;
  p99Ms: number;
  cpuUs: number;
}

interface Result {
  workload: Workload;
  without: Summary;
  with: Summary;
  /** The subscriber's own CPU time per request, in microseconds. */
  subscriberUs: number;
}

async function benchMetrics(log: (line: string) => void): Promise<Result[]> {
  const work = mkdtempSync(join(tmpdir(), 'airlock-bench-metrics-'));
  const target = await startTarget(work);
  let served = 0;
  /** Set for one run after the measured ones: its events, for timing the subscriber on them. */
  let kept: SessionEvent[] | undefined;
  const sink = {
    emit: (event: SessionEvent) => {
      if (event.type === 'request') served++;
      if (kept && kept.length < 100_000) kept.push(event);
    },
  };
  const enforcer = await serveHttp({
    connection: connection(target.port),
    identity: { namespace: 'bench', serviceAccount: 'agent' },
    listen: { host: '127.0.0.1', port: 0 },
    events: sink,
    approvals: noApprovals,
  });
  const url = (path: string) => `http://127.0.0.1:${enforcer.address.port}${path}`;
  const measure = async (variant: Variant, workload: Workload): Promise<Run> => {
    const undo = variant();
    try {
      const before = served;
      const cpu = process.cpuUsage();
      const load = await wrk(url(workload.path), workload.status);
      const used = process.cpuUsage(cpu);
      return { load, cpuUs: (used.user + used.system) / Math.max(1, served - before) };
    } finally {
      undo();
    }
  };
  /** One more run without metrics, whose events are kept. */
  const keepEvents = async (workload: Workload): Promise<SessionEvent[]> => {
    const events: SessionEvent[] = [];
    kept = events;
    try {
      await measure(withoutMetrics, workload);
      return events;
    } finally {
      kept = undefined;
    }
  };
  const results: Result[] = [];
  try {
    const small = await (await fetch(url('/small'))).text();
    if (small.includes('alice@example.com')) throw new Error(`the enforcer did not mask: ${small}`);
    for (const workload of workloads) {
      // Both variants warmed up (JIT, the subscriber's label maps) before anything counts.
      for (const variant of variants) await measure(variant, workload);
      const runs = new Map<Variant, Run[]>(variants.map((v) => [v, []]));
      for (let round = 0; round < rounds; round++) {
        const order = round % 2 === 0 ? variants : [...variants].reverse();
        for (const variant of order) runs.get(variant)!.push(await measure(variant, workload));
      }
      const summary = (variant: Variant): Summary => {
        const list = runs.get(variant)!;
        return {
          rps: median(list.map((r) => r.load.rps)),
          p99Ms: median(list.map((r) => r.load.p99Ms)),
          cpuUs: median(list.map((r) => r.cpuUs)),
        };
      };
      const result = {
        workload,
        without: summary(withoutMetrics),
        with: summary(withMetrics),
        subscriberUs: subscriberCost(await keepEvents(workload)),
      };
      results.push(result);
      log(
        `  ${workload.name}: ${result.without.rps.toFixed(0)} rps without metrics, ${result.with.rps.toFixed(0)} rps with`,
      );
    }
  } finally {
    await enforcer.close();
    await target.service.stop();
    rmSync(work, { recursive: true, force: true });
  }
  return results;
}

function report(results: Result[]): string {
  const lines = [
    '| workload | metrics | rate | p99 latency | CPU per request | rate / without | CPU / without |',
    '|---|---|---|---|---|---|---|',
  ];
  const row = (name: string, variant: string, s: Summary, without?: Summary) =>
    `| ${name} | ${variant} | ${s.rps.toFixed(0)} rps | ${s.p99Ms.toFixed(2)} ms | ${s.cpuUs.toFixed(1)} µs | ${
      without ? `${(s.rps / without.rps).toFixed(3)}×` : ''
    } | ${without ? `${(s.cpuUs / without.cpuUs).toFixed(3)}×` : ''} |`;
  for (const r of results) {
    lines.push(row(r.workload.name, 'without', r.without));
    lines.push(row(r.workload.name, 'with', r.with, r.without));
  }
  lines.push('');
  for (const r of results) {
    const share = r.subscriberUs / r.without.cpuUs;
    lines.push(
      `${r.workload.name}: the subscriber's CPU time is ${(r.subscriberUs * 1000).toFixed(0)} ns per request, ` +
        `${(share * 100).toFixed(2)}% of the enforcer's ${r.without.cpuUs.toFixed(1)} µs per request ` +
        `(budget ${budget * 100}%: ${share < budget ? 'within' : 'OVER'})`,
    );
  }
  return lines.join('\n');
}

if (import.meta.main) {
  const flags = nodeFlags('sidecar');
  if (!flags.every((flag) => process.execArgv.includes(flag))) {
    // V8 reads its flags only at start-up: measure the enforcer as the sidecar runs it.
    const result = spawnSync(process.execPath, [...flags, ...process.execArgv, import.meta.filename], {
      stdio: 'inherit',
    });
    process.exit(result.status ?? 1);
  }
  if (!findTool('wrk')) {
    console.log('metrics: not run: wrk is missing (apt-get install wrk)');
    process.exit(1);
  }
  console.log(
    `Metrics cost: the HTTP enforcer in-process, wrk -t1 -c${connections} keep-alive, ${seconds}s per run, median of ${rounds} interleaved rounds`,
  );
  console.log(report(await benchMetrics((line) => console.log(line))));
}
