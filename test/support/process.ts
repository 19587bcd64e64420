// Processes for tests: free loopback ports, services with their logs in a file, a cleanup that
// leaves no process behind, even when a test fails or the runner exits, and one-shot commands.
import { type ChildProcess, type SpawnOptions, spawn } from 'node:child_process';
import { createWriteStream, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface CommandResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a command to its end (killed after timeoutMs) and resolves with its exit code and
 * output, whatever the code. The input, if any, is its stdin; a command that exits before
 * reading it (a refused client) is not an error.
 */
export function runCommand(
  command: string,
  args: string[],
  input?: string,
  timeoutMs = 30_000,
): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d) => {
      stdout += d;
    });
    child.stderr!.on('data', (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin!.on('error', () => undefined);
    child.stdin!.end(input);
  });
}

/** Ports this process handed out: none twice. */
const handedOut = new Set<number>();

/**
 * A port free now on `host`, for a server that binds it later. Chosen below the kernel's
 * ephemeral range (32768-60999 here), from which outgoing connections and listen(0) take their
 * ports, so that none of those takes it in between.
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  for (;;) {
    const port = 10_000 + Math.floor(Math.random() * 22_000);
    if (handedOut.has(port)) continue;
    const free = await new Promise<boolean>((resolve, reject) => {
      const server = createServer();
      server.once('error', (error: NodeJS.ErrnoException) =>
        error.code === 'EADDRINUSE' ? resolve(false) : reject(error),
      );
      server.listen(port, host, () => server.close(() => resolve(true)));
    });
    if (!free) continue;
    handedOut.add(port);
    return port;
  }
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
