// Long-running processes for tests: free loopback ports, services with their logs in a file,
// and a cleanup that leaves no process behind, even when a test fails or the runner exits.
import { type ChildProcess, type SpawnOptions, spawn } from 'node:child_process';
import { createWriteStream, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export async function temporaryDirectory(prefix: string): Promise<{ path: string; remove(): Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), `airlock-${prefix}-`));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

const running = new Set<ChildProcess>();

function killGroup(child: ChildProcess, signal: NodeJS.Signals) {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    child.kill(signal);
  }
}

process.on('exit', () => {
  for (const child of running) killGroup(child, 'SIGKILL');
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    for (const child of running) killGroup(child, 'SIGKILL');
    process.exit(130);
  });
}

export interface Service {
  name: string;
  child: ChildProcess;
  logFile: string;
  /** Resolves when the process has exited. */
  exited: Promise<number | null>;
  stop(): Promise<void>;
}

/** Starts a process in its own process group with stdout and stderr appended to logFile. */
export function startService(
  name: string,
  command: string,
  args: string[],
  options: SpawnOptions & { logFile: string },
): Service {
  const log = createWriteStream(options.logFile, { flags: 'a' });
  const child = spawn(command, args, { ...options, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.pipe(log, { end: false });
  child.stderr?.pipe(log, { end: false });
  running.add(child);
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => {
      running.delete(child);
      resolve(code);
    });
    child.once('error', (error) => {
      log.write(`${name}: ${error.message}\n`);
      running.delete(child);
      resolve(null);
    });
  });
  return {
    name,
    child,
    logFile: options.logFile,
    exited,
    async stop() {
      killGroup(child, 'SIGTERM');
      const timer = setTimeout(() => killGroup(child, 'SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
      // Processes it forked outside its group (sshd's sessions) may still hold its output.
      child.stdout?.destroy();
      child.stderr?.destroy();
      log.end();
    },
  };
}

/** The last lines a service logged, for an error message. */
export function tail(file: string, lines = 30): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return `(no log at ${file})`;
  }
}

/** Polls check until it returns true, or fails with what the service logged. */
export async function waitFor(
  what: string,
  check: () => Promise<boolean>,
  options: { timeoutMs?: number; service?: Service } = {},
): Promise<void> {
  const deadline = Date.now() + (options.timeoutMs ?? 60_000);
  for (;;) {
    if (await check().catch(() => false)) return;
    if (
      options.service &&
      (options.service.child.exitCode !== null || options.service.child.signalCode !== null)
    ) {
      throw new Error(`${what}: ${options.service.name} exited early:\n${tail(options.service.logFile)}`);
    }
    if (Date.now() > deadline) {
      throw new Error(
        `${what}: not ready in time${options.service ? `:\n${tail(options.service.logFile)}` : ''}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
