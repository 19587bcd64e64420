// Runs an AuditStore in a worker thread: node:sqlite's calls are synchronous, and hashing and
// writing a batch on the enforcer's event loop would stall the data path. The main thread talks
// to it through openAuditLog() in log.ts.
import { parentPort, workerData } from 'node:worker_threads';
import { AuditStore } from './store.ts';

type Method =
  | 'append'
  | 'add'
  | 'prune'
  | 'sessions'
  | 'session'
  | 'verify'
  | 'eventsAfter'
  | 'head'
  | 'exportCursor'
  | 'advanceExportCursor'
  | 'close';

const { location, key } = workerData as { location: string; key?: string };
const store = await AuditStore.open(location, key ? { key: Buffer.from(key, 'base64') } : {});
parentPort!.postMessage({ ready: true });
parentPort!.on('message', async ({ id, method, args }: { id: number; method: Method; args: unknown[] }) => {
  try {
    const result = await (store[method] as (...a: unknown[]) => Promise<unknown>)(...args);
    parentPort!.postMessage({ id, result });
    if (method === 'close') parentPort!.close();
  } catch (error) {
    parentPort!.postMessage({ id, error: (error as Error).message });
  }
});
