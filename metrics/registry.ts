// Prometheus metrics as the sidecar and the operator serve them on /metrics: counters, gauges and
// histograms with labels, written in the text exposition format, version 0.0.4. The data path
// counts into them: a series is found by one Map lookup per label value, with no string built,
// and its labels are rendered once, when it first appears.

const metricName = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const labelName = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const labelValueSpecials = /[\\"\n]/g;
const helpSpecials = /[\\\n]/g;

/** A value for each label name. */
export type Labels<L extends string> = Record<L, string | number>;

export interface MetricOptions<L extends string, M> {
  name: string;
  help: string;
  labelNames?: readonly L[];
  /** The registry that writes it; none for a metric nobody scrapes. */
  registry?: Registry | undefined;
  /** Called before each exposition, to read a value kept elsewhere into the metric. */
  collect?: (metric: M) => void;
}

/** A label value as text: a number by its decimal form, none as empty (which Prometheus reads as absent). */
const labelText = (value: string | number | undefined) =>
  typeof value === 'string' ? value : value === undefined ? '' : String(value);

const escapeLabelValue = (value: string) =>
  value.replace(labelValueSpecials, (c) => (c === '\n' ? '\\n' : `\\${c}`));

/** A sample value as the format spells it: Go's float syntax, with +Inf, -Inf and NaN. */
export function formatValue(value: number): string {
  if (value === Number.POSITIVE_INFINITY) return '+Inf';
  if (value === Number.NEGATIVE_INFINITY) return '-Inf';
  return Number.isNaN(value) ? 'NaN' : String(value);
}

interface Series<L extends string> {
  labels: Record<L, string>;
  /** The labels as the format writes them, `name="value",...` (empty without labels). */
  written: string;
}

/** A level of the series index: by one label's value, the next level or, at the last label, the series. */
type Index = Map<string, unknown>;

/** What every kind shares: name, help, label names, series by label values. */
abstract class Metric<L extends string, S extends Series<L>> {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly L[];
  abstract readonly type: 'counter' | 'gauge' | 'histogram';
  readonly #collect: (() => void) | undefined;
  /** Every series, in the order they appeared. */
  protected readonly all: S[] = [];
  readonly #index: Index = new Map();

  constructor(options: MetricOptions<L, never>) {
    if (!metricName.test(options.name))
      throw new Error(`invalid metric name ${JSON.stringify(options.name)}`);
    const labelNames = options.labelNames ?? [];
    for (const label of labelNames) {
      if (!labelName.test(label) || label.startsWith('__'))
        throw new Error(`invalid label name ${JSON.stringify(label)} for ${options.name}`);
    }
    if (new Set(labelNames).size !== labelNames.length)
      throw new Error(`repeated label name for ${options.name}`);
    this.name = options.name;
    this.help = options.help;
    this.labelNames = labelNames;
    const collect = options.collect as ((metric: this) => void) | undefined;
    this.#collect = collect && (() => collect(this));
  }

  /** The series of these label values, created empty on first use. */
  protected seriesOf(labels: Labels<L> | undefined): S {
    const names = this.labelNames;
    if (names.length === 0) return this.all[0] ?? this.#add(labels);
    let level = this.#index;
    const last = names.length - 1;
    for (let i = 0; i < last; i++) {
      const value = labelText(labels?.[names[i]!]);
      let next = level.get(value) as Index | undefined;
      if (!next) {
        next = new Map();
        level.set(value, next);
      }
      level = next;
    }
    const value = labelText(labels?.[names[last]!]);
    let series = level.get(value) as S | undefined;
    if (!series) {
      series = this.#add(labels);
      level.set(value, series);
    }
    return series;
  }

  #add(labels: Labels<L> | undefined): S {
    const values = {} as Record<L, string>;
    let written = '';
    for (const name of this.labelNames) {
      values[name] = labelText(labels?.[name]);
      written += `${written ? ',' : ''}${name}="${escapeLabelValue(values[name])}"`;
    }
    const series = this.create(values, written);
    this.all.push(series);
    return series;
  }

  protected abstract create(labels: Record<L, string>, written: string): S;

  /** The samples of one series, each a line without its newline. */
  protected abstract samples(series: S): string[];

  /** Runs the collect callback, which may set other metrics too: the registry runs all before writing any. */
  collect(): void {
    this.#collect?.();
  }

  /** HELP, TYPE and every sample, each line ending in a newline. */
  write(): string {
    let text = `# HELP ${this.name} ${this.help.replace(helpSpecials, (c) => (c === '\n' ? '\\n' : '\\\\'))}\n# TYPE ${this.name} ${this.type}\n`;
    for (const series of this.all) {
      for (const sample of this.samples(series)) text += `${sample}\n`;
    }
    return text;
  }
}

interface ValueSeries<L extends string> extends Series<L> {
  value: number;
}

const braced = (labels: string) => (labels ? `{${labels}}` : '');

/** A metric whose series are one value each: counters and gauges. */
abstract class ValueMetric<L extends string> extends Metric<L, ValueSeries<L>> {
  /** Each series' labels and value, in the order they appeared. */
  series(): { labels: Record<L, string>; value: number }[] {
    return this.all.map(({ labels, value }) => ({ labels, value }));
  }

  protected create(labels: Record<L, string>, written: string): ValueSeries<L> {
    return { labels, written, value: 0 };
  }

  protected samples(series: ValueSeries<L>): string[] {
    return [`${this.name}${braced(series.written)} ${formatValue(series.value)}`];
  }
}

/** A value that only goes up (it restarts at zero with the process). */
export class Counter<L extends string = never> extends ValueMetric<L> {
  readonly type = 'counter';

  constructor(options: MetricOptions<L, Counter<L>>) {
    super(options as MetricOptions<L, never>);
    // Without labels the one series exists from the start, as zero.
    if (this.labelNames.length === 0) this.seriesOf(undefined);
    options.registry?.register(this);
  }

  /** Adds `n` (1 by default) to the series without labels. */
  inc(n?: number): void;
  /** Adds `n` (1 by default) to the series of `labels`. */
  inc(labels: Labels<L>, n?: number): void;
  inc(labelsOrN?: Labels<L> | number, n = 1): void {
    const labels = typeof labelsOrN === 'object' ? labelsOrN : undefined;
    const added = typeof labelsOrN === 'number' ? labelsOrN : n;
    if (!(added >= 0)) throw new Error(`${this.name}: a counter only goes up (${added})`);
    this.seriesOf(labels).value += added;
  }

  /** The series of `labels`, to count into without finding it again; it appears at its first count. */
  labels(labels: Labels<L>): { inc(n?: number): void } {
    let series: ValueSeries<L> | undefined;
    return {
      inc: (n = 1) => {
        if (!(n >= 0)) throw new Error(`${this.name}: a counter only goes up (${n})`);
        series ??= this.seriesOf(labels);
        series.value += n;
      },
    };
  }
}

/** A value that is set, up or down. */
export class Gauge<L extends string = never> extends ValueMetric<L> {
  readonly type = 'gauge';

  constructor(options: MetricOptions<L, Gauge<L>>) {
    super(options as MetricOptions<L, never>);
    if (this.labelNames.length === 0) this.seriesOf(undefined);
    options.registry?.register(this);
  }

  /** Sets the series without labels. */
  set(value: number): void;
  /** Sets the series of `labels`. */
  set(labels: Labels<L>, value: number): void;
  set(labelsOrValue: Labels<L> | number, value?: number): void {
    if (typeof labelsOrValue === 'number') this.seriesOf(undefined).value = labelsOrValue;
    else this.seriesOf(labelsOrValue).value = value!;
  }

  /** The series of `labels`, to set without finding it again; it appears when first set. */
  labels(labels: Labels<L>): { set(value: number): void } {
    let series: ValueSeries<L> | undefined;
    return {
      set: (value) => {
        series ??= this.seriesOf(labels);
        series.value = value;
      },
    };
  }
}

interface HistogramSeries<L extends string> extends Series<L> {
  /** Observations per bucket, not cumulative; the last is above every bound (+Inf). */
  counts: number[];
  sum: number;
  count: number;
}

/** Observations counted into buckets by upper bound, with their sum and count. */
export class Histogram<L extends string = never> extends Metric<L, HistogramSeries<L>> {
  readonly type = 'histogram';
  readonly buckets: readonly number[];
  readonly #bounds: string[];

  constructor(options: MetricOptions<L, Histogram<L>> & { buckets: readonly number[] }) {
    super(options as MetricOptions<L, never>);
    if ((this.labelNames as readonly string[]).includes('le'))
      throw new Error(`${options.name}: le is the bucket label of a histogram`);
    const buckets = options.buckets;
    if (buckets.some((bound, i) => !Number.isFinite(bound) || (i > 0 && bound <= buckets[i - 1]!)))
      throw new Error(`${options.name}: buckets must be finite and increasing`);
    this.buckets = [...buckets];
    this.#bounds = [...buckets.map(formatValue), '+Inf'];
    if (this.labelNames.length === 0) this.seriesOf(undefined);
    options.registry?.register(this);
  }

  /** Observes a value in the series without labels. */
  observe(value: number): void;
  /** Observes a value in the series of `labels`. */
  observe(labels: Labels<L>, value: number): void;
  observe(labelsOrValue: Labels<L> | number, value?: number): void {
    const observed = typeof labelsOrValue === 'number' ? labelsOrValue : value!;
    const series = this.seriesOf(typeof labelsOrValue === 'number' ? undefined : labelsOrValue);
    const buckets = this.buckets;
    let i = 0;
    while (i < buckets.length && !(observed <= buckets[i]!)) i++;
    series.counts[i]!++;
    series.sum += observed;
    series.count++;
  }

  /** Each series' labels, cumulative bucket counts (the last +Inf), sum and count. */
  series(): { labels: Record<L, string>; buckets: number[]; sum: number; count: number }[] {
    return this.all.map(({ labels, counts, sum, count }) => {
      let cumulative = 0;
      return { labels, buckets: counts.map((n) => (cumulative += n)), sum, count };
    });
  }

  protected create(labels: Record<L, string>, written: string): HistogramSeries<L> {
    return { labels, written, counts: new Array<number>(this.buckets.length + 1).fill(0), sum: 0, count: 0 };
  }

  protected samples(series: HistogramSeries<L>): string[] {
    const labels = series.written;
    const lines: string[] = [];
    // `le` first, as Prometheus' own clients write it.
    const rest = labels ? `,${labels}` : '';
    let cumulative = 0;
    for (let i = 0; i < this.#bounds.length; i++) {
      cumulative += series.counts[i]!;
      lines.push(`${this.name}_bucket{le="${this.#bounds[i]}"${rest}} ${cumulative}`);
    }
    lines.push(`${this.name}_sum${braced(labels)} ${formatValue(series.sum)}`);
    lines.push(`${this.name}_count${braced(labels)} ${series.count}`);
    return lines;
  }
}

/** What a registry needs of a metric: a reader casts what `get` finds to the kind it registered. */
export interface RegisteredMetric {
  readonly name: string;
  readonly type: 'counter' | 'gauge' | 'histogram';
  collect(): void;
  write(): string;
}

/** The metrics one /metrics endpoint writes, by name. */
export class Registry {
  readonly contentType = 'text/plain; version=0.0.4; charset=utf-8';
  readonly #metrics = new Map<string, RegisteredMetric>();

  /** Adds a metric; a second one by the same name is a mistake, refused. */
  register(metric: RegisteredMetric): void {
    if (this.#metrics.has(metric.name))
      throw new Error(`a metric named ${metric.name} is already registered`);
    this.#metrics.set(metric.name, metric);
  }

  get(name: string): RegisteredMetric | undefined {
    return this.#metrics.get(name);
  }

  remove(name: string): void {
    this.#metrics.delete(name);
  }

  /** The names registered, in the order they were. */
  names(): string[] {
    return [...this.#metrics.keys()];
  }

  /** Every metric in the text format, after every collect callback ran. */
  metrics(): string {
    for (const metric of this.#metrics.values()) metric.collect();
    let text = '';
    for (const metric of this.#metrics.values()) text += metric.write();
    return text;
  }
}
