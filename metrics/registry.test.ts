import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { registerProcessMetrics } from './process.ts';
import { Counter, Gauge, Histogram, Registry } from './registry.ts';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface Family {
  name: string;
  help?: string;
  type: string;
  samples: Sample[];
}

const metricName = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const number = String.raw`[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?Inf|NaN`;
const helpLine = new RegExp(String.raw`^# HELP (${metricName}) ((?:[^\\\n]|\\[\\n])*)$`);
const typeLine = new RegExp(`^# TYPE (${metricName}) (counter|gauge|histogram|summary|untyped)$`);
const sampleLine = new RegExp(
  String.raw`^(${metricName})(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^\\"\n]|\\[\\"n])*",?)*)\})? (${number})(?: -?\d+)?$`,
);
const labelPair = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^\\"\n]|\\[\\"n])*)"/g;

const unescaped = (text: string) => text.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
const parseNumber = (text: string) =>
  text.endsWith('Inf') ? (text.startsWith('-') ? -Infinity : Infinity) : Number(text);

/**
 * Reads the text format as Prometheus does (version 0.0.4), refusing what it would refuse: a
 * line of no known shape, an escape other than the format's, a TYPE after its samples or twice,
 * a family's samples split by another's, a series twice, and histograms whose buckets are not
 * cumulative, end anywhere but +Inf, or disagree with their count.
 */
function parseExposition(text: string): Map<string, Family> {
  assert.ok(text === '' || text.endsWith('\n'), 'the last line ends in a newline');
  const families = new Map<string, Family>();
  const seen = new Set<string>();
  let current: Family | undefined;
  const family = (name: string) => {
    let found = families.get(name);
    if (!found) {
      found = { name, type: 'untyped', samples: [] };
      families.set(name, found);
    } else assert.equal(found, current, `the samples of ${name} are together`);
    current = found;
    return found;
  };
  for (const line of text.split('\n').slice(0, -1)) {
    if (line === '') continue;
    const help = helpLine.exec(line);
    const type = typeLine.exec(line);
    if (help) {
      const f = family(help[1]!);
      assert.equal(f.help, undefined, `one HELP for ${f.name}`);
      f.help = unescaped(help[2]!);
    } else if (type) {
      const f = family(type[1]!);
      assert.equal(f.samples.length, 0, `TYPE before the samples of ${f.name}`);
      assert.equal(f.type, 'untyped', `one TYPE for ${f.name}`);
      f.type = type[2]!;
    } else if (line.startsWith('#')) {
      assert.fail(`a comment the format does not define: ${line}`);
    } else {
      const sample = sampleLine.exec(line);
      assert.ok(sample, `a well-formed sample: ${JSON.stringify(line)}`);
      const name = sample[1]!;
      const base =
        current && current.type === 'histogram' && /_(bucket|sum|count)$/.test(name)
          ? name.replace(/_(bucket|sum|count)$/, '')
          : name;
      const f = current?.name === base ? current : family(base);
      const labels: Record<string, string> = {};
      for (const [, label, value] of (sample[2] ?? '').matchAll(labelPair)) {
        assert.ok(!(label! in labels), `label ${label} once in ${line}`);
        labels[label!] = unescaped(value!);
      }
      const key = `${name}${JSON.stringify(Object.entries(labels).sort())}`;
      assert.ok(!seen.has(key), `one sample per series: ${line}`);
      seen.add(key);
      f.samples.push({ name, labels, value: parseNumber(sample[3]!) });
    }
  }
  for (const f of families.values()) if (f.type === 'histogram') checkHistogram(f);
  return families;
}

function checkHistogram(f: Family): void {
  const series = new Map<string, { buckets: [number, number][]; sum?: number; count?: number }>();
  for (const sample of f.samples) {
    const { le, ...rest } = sample.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    const entry = series.get(key) ?? { buckets: [] };
    series.set(key, entry);
    if (sample.name === `${f.name}_bucket`) {
      assert.ok(le !== undefined, `${sample.name} has le`);
      entry.buckets.push([parseNumber(le), sample.value]);
    } else if (sample.name === `${f.name}_sum`) entry.sum = sample.value;
    else if (sample.name === `${f.name}_count`) entry.count = sample.value;
    else assert.fail(`${sample.name} in histogram ${f.name}`);
  }
  for (const { buckets, sum, count } of series.values()) {
    assert.ok(
      buckets.length > 0 && sum !== undefined && count !== undefined,
      `${f.name}: buckets, sum, count`,
    );
    for (let i = 1; i < buckets.length; i++) {
      assert.ok(buckets[i]![0] > buckets[i - 1]![0], `${f.name}: bounds increase`);
      assert.ok(buckets[i]![1] >= buckets[i - 1]![1], `${f.name}: counts are cumulative`);
    }
    assert.deepEqual(buckets.at(-1), [Infinity, count], `${f.name}: the +Inf bucket holds the count`);
  }
}

describe('the text exposition', () => {
  it('writes HELP and TYPE, then each series with its labels in their declared order', () => {
    const registry = new Registry();
    const reconciles = new Counter({
      name: 'airlock_reconciles_total',
      help: 'Reconciles by kind and result.',
      labelNames: ['kind', 'result'],
      registry,
    });
    reconciles.inc({ result: 'updated', kind: 'Connection' });
    reconciles.inc({ kind: 'Connection', result: 'updated' }, 2);
    reconciles.inc({ kind: 'AccessPolicy', result: 'error' });
    const leader = new Gauge({ name: 'airlock_leader', help: '1 while leader.', registry });
    leader.set(1);
    new Gauge({ name: 'airlock_queued', help: 'Queued.', labelNames: ['stream'], registry });
    assert.equal(
      registry.metrics(),
      [
        '# HELP airlock_reconciles_total Reconciles by kind and result.',
        '# TYPE airlock_reconciles_total counter',
        'airlock_reconciles_total{kind="Connection",result="updated"} 3',
        'airlock_reconciles_total{kind="AccessPolicy",result="error"} 1',
        '# HELP airlock_leader 1 while leader.',
        '# TYPE airlock_leader gauge',
        'airlock_leader 1',
        '# HELP airlock_queued Queued.',
        '# TYPE airlock_queued gauge',
        '',
      ].join('\n'),
      'a metric without labels starts at zero; a labelled one has no series until it is used',
    );
    assert.equal(registry.contentType, 'text/plain; version=0.0.4; charset=utf-8');
  });

  it('escapes backslash, double quote and newline in label values, backslash and newline in help', () => {
    const registry = new Registry();
    const counter = new Counter({
      name: 'escapes_total',
      help: 'A help with \\ a backslash,\na newline and "quotes".',
      labelNames: ['value'],
      registry,
    });
    counter.inc({ value: 'C:\\dir "quoted"\nnext line' });
    counter.inc({ value: '},{x="y"' });
    assert.deepEqual(registry.metrics().split('\n'), [
      '# HELP escapes_total A help with \\\\ a backslash,\\na newline and "quotes".',
      '# TYPE escapes_total counter',
      'escapes_total{value="C:\\\\dir \\"quoted\\"\\nnext line"} 1',
      'escapes_total{value="},{x=\\"y\\""} 1',
      '',
    ]);
  });

  it('writes histogram buckets cumulative with le first, then +Inf, _sum and _count', () => {
    const registry = new Registry();
    const duration = new Histogram({
      name: 'request_duration_seconds',
      help: 'Durations.',
      labelNames: ['protocol'],
      buckets: [0.0005, 0.01, 1, 2.5],
      registry,
    });
    for (const seconds of [0.0005, 0.004, 0.3, 0.3, 7]) duration.observe({ protocol: 'tcp' }, seconds);
    new Histogram({ name: 'plain_seconds', help: 'Unlabelled.', buckets: [1], registry });
    assert.deepEqual(registry.metrics().split('\n'), [
      '# HELP request_duration_seconds Durations.',
      '# TYPE request_duration_seconds histogram',
      'request_duration_seconds_bucket{le="0.0005",protocol="tcp"} 1',
      'request_duration_seconds_bucket{le="0.01",protocol="tcp"} 2',
      'request_duration_seconds_bucket{le="1",protocol="tcp"} 4',
      'request_duration_seconds_bucket{le="2.5",protocol="tcp"} 4',
      'request_duration_seconds_bucket{le="+Inf",protocol="tcp"} 5',
      'request_duration_seconds_sum{protocol="tcp"} 7.6045',
      'request_duration_seconds_count{protocol="tcp"} 5',
      '# HELP plain_seconds Unlabelled.',
      '# TYPE plain_seconds histogram',
      'plain_seconds_bucket{le="1"} 0',
      'plain_seconds_bucket{le="+Inf"} 0',
      'plain_seconds_sum 0',
      'plain_seconds_count 0',
      '',
    ]);
    assert.deepEqual(duration.series(), [
      { labels: { protocol: 'tcp' }, buckets: [1, 2, 4, 4, 5], sum: 7.6045, count: 5 },
    ]);
  });

  it('runs every collect callback before writing, so one callback may set several metrics', () => {
    const registry = new Registry();
    const second = new Gauge({ name: 'second', help: 'Set by the first.', registry });
    let scrapes = 0;
    new Gauge({
      name: 'first',
      help: 'Sets both.',
      registry,
      collect: (first) => {
        scrapes++;
        first.set(scrapes);
        second.set(scrapes * 10);
      },
    });
    assert.match(registry.metrics(), /^second 10$/m);
    assert.match(registry.metrics(), /^first 2$/m);
  });

  it('refuses what Prometheus could not read or would confuse', () => {
    const registry = new Registry();
    new Counter({ name: 'once_total', help: 'Once.', registry });
    assert.throws(() => new Counter({ name: 'once_total', help: 'Twice.', registry }), /already registered/);
    assert.throws(() => new Counter({ name: 'bad-name', help: '' }), /invalid metric name/);
    assert.throws(() => new Counter({ name: 'x', help: '', labelNames: ['a-b'] }), /invalid label name/);
    assert.throws(() => new Counter({ name: 'x', help: '', labelNames: ['__name'] }), /invalid label name/);
    assert.throws(() => new Counter({ name: 'x', help: '', labelNames: ['a', 'a'] }), /repeated/);
    assert.throws(
      () => new Histogram({ name: 'h', help: '', labelNames: ['le'] as string[], buckets: [1] }),
      /le is the bucket label/,
    );
    assert.throws(() => new Histogram({ name: 'h', help: '', buckets: [1, 1] }), /increasing/);
    const counter = new Counter({ name: 'up_total', help: '' });
    assert.throws(() => counter.inc(-1), /only goes up/);
    assert.throws(() => counter.inc(Number.NaN), /only goes up/);
    registry.remove('once_total');
    assert.deepEqual(registry.names(), []);
  });
});

describe('read as Prometheus reads it', () => {
  it('every line of a registry with every kind, odd label values and the process metrics is well formed', () => {
    const registry = new Registry();
    registerProcessMetrics(registry);
    const counter = new Counter({
      name: 'c_total',
      help: 'Counts.\nTwo lines.',
      labelNames: ['a', 'b'],
      registry,
    });
    for (const value of ['', 'plain', 'back\\slash', 'quo"te', 'new\nline', '\\"\n', 'ünïcödé ☃', '{}=,']) {
      counter.inc({ a: value, b: 'x' }, 1.5);
    }
    const gauge = new Gauge({ name: 'g', help: 'Goes both ways.', labelNames: ['a'], registry });
    gauge.set({ a: 'minus' }, -3.25);
    gauge.set({ a: 'inf' }, Infinity);
    gauge.set({ a: 'tiny' }, 1e-9);
    const histogram = new Histogram({
      name: 'h_seconds',
      help: 'Observed.',
      labelNames: ['a'],
      buckets: [1e-7, 0.5, 60],
      registry,
    });
    for (const seconds of [0, 1e-8, 0.5, 61, 3]) histogram.observe({ a: 'x"y' }, seconds);
    const families = parseExposition(registry.metrics());
    assert.equal(families.get('c_total')!.help, 'Counts.\nTwo lines.');
    assert.deepEqual(
      families.get('c_total')!.samples.map((s) => s.labels.a),
      ['', 'plain', 'back\\slash', 'quo"te', 'new\nline', '\\"\n', 'ünïcödé ☃', '{}=,'],
    );
    assert.deepEqual(
      families.get('g')!.samples.map((s) => s.value),
      [-3.25, Infinity, 1e-9],
    );
    assert.equal(families.get('h_seconds')!.samples.length, 6);
    for (const name of [
      'process_cpu_seconds_total',
      'process_cpu_user_seconds_total',
      'process_cpu_system_seconds_total',
      'process_resident_memory_bytes',
      'process_virtual_memory_bytes',
      'process_heap_bytes',
      'process_start_time_seconds',
      'process_open_fds',
      'process_max_fds',
      'nodejs_heap_size_total_bytes',
      'nodejs_heap_size_used_bytes',
      'nodejs_external_memory_bytes',
      'nodejs_version_info',
    ]) {
      assert.ok(families.has(name), `${name} is written`);
    }
  });

  it('any label values and help read back as they were written', () => {
    fc.assert(
      fc.property(
        fc.array(fc.string({ unit: 'binary' }), { minLength: 1, maxLength: 8 }),
        fc.string({ unit: 'binary' }),
        (values, help) => {
          const registry = new Registry();
          const counter = new Counter({ name: 'v_total', help, labelNames: ['v'], registry });
          for (const value of values) counter.inc({ v: value });
          const family = parseExposition(registry.metrics()).get('v_total')!;
          assert.equal(family.help, help);
          assert.deepEqual(
            family.samples.map((s) => s.labels.v),
            [...new Set(values)],
          );
        },
      ),
    );
  });
});
