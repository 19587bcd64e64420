import assert from 'node:assert/strict';
import { it } from 'node:test';
import { registerProcessMetrics } from './process.ts';
import { type Counter, type Gauge, Registry } from './registry.ts';

it('the process metrics read the process: resident memory, CPU since start, start time, descriptors', () => {
  const registry = new Registry();
  registerProcessMetrics(registry);
  registry.metrics();
  const series = (name: string) => (registry.get(name) as Counter<string> | Gauge<string>).series();
  const value = (name: string) => series(name)[0]!.value;
  const rss = value('process_resident_memory_bytes');
  assert.ok(
    Math.abs(rss - process.memoryUsage.rss()) < 64 * 1024 * 1024,
    `RSS ${rss} as the process sees it`,
  );
  const cpu = value('process_cpu_seconds_total');
  const { user, system } = process.cpuUsage();
  assert.ok(cpu > 0 && cpu <= (user + system) / 1e6, 'CPU since the process started, not since registration');
  assert.equal(registry.get('process_cpu_seconds_total')!.type, 'counter');
  assert.ok(Math.abs(value('process_start_time_seconds') - (Date.now() / 1000 - process.uptime())) <= 1);
  assert.ok(value('process_open_fds') > 0 && value('process_open_fds') <= value('process_max_fds'));
  assert.ok(value('process_virtual_memory_bytes') >= rss);
  assert.ok(value('nodejs_heap_size_used_bytes') <= value('nodejs_heap_size_total_bytes'));
  assert.deepEqual(series('nodejs_version_info'), [
    {
      labels: {
        version: process.version,
        major: String(process.versions.node.split('.')[0]),
        minor: String(process.versions.node.split('.')[1]),
        patch: String(process.versions.node.split('.')[2]),
      },
      value: 1,
    },
  ]);
  registry.metrics();
  assert.ok(value('process_cpu_seconds_total') >= cpu, 'the CPU counter only goes up');
});
