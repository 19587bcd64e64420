// `airlock local` as a process, the way a developer runs it: manifests written to a directory,
// the CLI started with them, and its log read until it says it is ready.
import { readFile } from 'node:fs/promises';
import { type Service, startService, waitFor } from './process.ts';

const cli = new URL('../../bin/airlock.js', import.meta.url).pathname;

export interface LocalOptions {
  /** A directory holding the manifests (`-f`). */
  manifests: string;
  /** Where its log goes. */
  logFile: string;
  /** The identity it acts as (`--as`). */
  as?: string;
  /** Connection name → host:port. */
  listen: Record<string, string>;
  store: string;
  /** More arguments (`--console HOST:PORT`, …). */
  args?: string[];
}

/** Starts `airlock local` and resolves once it is ready, with its log so far. */
export async function startLocal(options: LocalOptions): Promise<{ service: Service; log: string }> {
  const service = startService(
    'airlock local',
    process.execPath,
    [
      cli,
      'local',
      '-f',
      options.manifests,
      '--as',
      options.as ?? 'system:serviceaccount:ops:agent',
      ...Object.entries(options.listen).flatMap(([name, at]) => ['--listen', `${name}=${at}`]),
      '--store',
      options.store,
      ...(options.args ?? []),
    ],
    { logFile: options.logFile },
  );
  await waitFor(
    'airlock local ready',
    async () => (await readFile(options.logFile, 'utf8')).includes('ready'),
    {
      service,
      timeoutMs: 30_000,
    },
  );
  return { service, log: await readFile(options.logFile, 'utf8') };
}
