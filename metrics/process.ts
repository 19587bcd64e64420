// The process's own metrics, under the names Prometheus' client libraries give them (the
// `process_` family) and Node's heap beside them, read from /proc/self and Node's process API at
// each scrape.

import { readdirSync, readFileSync } from 'node:fs';
import { Counter, Gauge, type Registry } from './registry.ts';

/** VmRSS, VmSize and VmData of /proc/self/status, in bytes; undefined where there is no /proc. */
function memoryStatus(): { rss: number; size: number; data: number } | undefined {
  let status: string;
  try {
    status = readFileSync('/proc/self/status', 'latin1');
  } catch {
    return undefined;
  }
  const kilobytes = (field: string) =>
    Number(new RegExp(`^${field}:\\s*(\\d+) kB$`, 'm').exec(status)?.[1] ?? 0);
  return {
    rss: kilobytes('VmRSS') * 1024,
    size: kilobytes('VmSize') * 1024,
    data: kilobytes('VmData') * 1024,
  };
}

/** The soft limit on open files, from /proc/self/limits. */
function maxOpenFiles(): number | undefined {
  try {
    const line = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'latin1'));
    return line ? Number(line[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Registers the process's metrics in `registry`, each read when the registry is written. */
export function registerProcessMetrics(registry: Registry): void {
  // Counters only go up: each scrape adds what was used since the last one, from zero at start.
  let counted = { user: 0, system: 0 };
  const cpuSystem = new Counter({
    name: 'process_cpu_system_seconds_total',
    help: 'Total system CPU time spent in seconds.',
    registry,
  });
  const cpu = new Counter({
    name: 'process_cpu_seconds_total',
    help: 'Total user and system CPU time spent in seconds.',
    registry,
  });
  new Counter({
    name: 'process_cpu_user_seconds_total',
    help: 'Total user CPU time spent in seconds.',
    registry,
    collect: (cpuUser) => {
      const usage = process.cpuUsage();
      const user = (usage.user - counted.user) / 1e6;
      const system = (usage.system - counted.system) / 1e6;
      counted = usage;
      cpuUser.inc(user);
      cpuSystem.inc(system);
      cpu.inc(user + system);
    },
  });

  const started = Math.round(Date.now() / 1000 - process.uptime());
  new Gauge({
    name: 'process_start_time_seconds',
    help: 'Start time of the process since unix epoch in seconds.',
    registry,
    collect: (gauge) => gauge.set(started),
  });

  if (memoryStatus()) {
    const virtual = new Gauge({
      name: 'process_virtual_memory_bytes',
      help: 'Virtual memory size in bytes.',
      registry,
    });
    const heap = new Gauge({ name: 'process_heap_bytes', help: 'Process heap size in bytes.', registry });
    new Gauge({
      name: 'process_resident_memory_bytes',
      help: 'Resident memory size in bytes.',
      registry,
      collect: (rss) => {
        const memory = memoryStatus();
        if (!memory) return;
        rss.set(memory.rss);
        virtual.set(memory.size);
        heap.set(memory.data);
      },
    });
  } else {
    new Gauge({
      name: 'process_resident_memory_bytes',
      help: 'Resident memory size in bytes.',
      registry,
      collect: (gauge) => gauge.set(process.memoryUsage.rss()),
    });
  }

  if (process.platform === 'linux') {
    new Gauge({
      name: 'process_open_fds',
      help: 'Number of open file descriptors.',
      registry,
      // Less the descriptor that reading the directory opened.
      collect: (gauge) => gauge.set(readdirSync('/proc/self/fd').length - 1),
    });
  }
  const maxFds = maxOpenFiles();
  if (maxFds !== undefined) {
    new Gauge({
      name: 'process_max_fds',
      help: 'Maximum number of open file descriptors.',
      registry,
      collect: (gauge) => gauge.set(maxFds),
    });
  }

  const heapUsed = new Gauge({
    name: 'nodejs_heap_size_used_bytes',
    help: 'Process heap size used from Node.js in bytes.',
    registry,
  });
  const external = new Gauge({
    name: 'nodejs_external_memory_bytes',
    help: 'Node.js external memory size in bytes.',
    registry,
  });
  new Gauge({
    name: 'nodejs_heap_size_total_bytes',
    help: 'Process heap size from Node.js in bytes.',
    registry,
    collect: (heapTotal) => {
      const memory = process.memoryUsage();
      heapTotal.set(memory.heapTotal);
      heapUsed.set(memory.heapUsed);
      external.set(memory.external);
    },
  });

  const [major, minor, patch] = process.versions.node.split('.');
  new Gauge({
    name: 'nodejs_version_info',
    help: 'Node.js version info.',
    labelNames: ['version', 'major', 'minor', 'patch'],
    registry,
  }).set({ version: process.version, major: major!, minor: minor!, patch: patch! }, 1);
}
