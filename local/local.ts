// `airlock local`: the whole data path on one machine. Reads manifests, compiles the bundle
// for one identity with the operator's compiler, serves each listed Connection with its
// enforcer, and records sessions in the store. The commands that read sessions and decide
// approvals talk to it through its control socket.
import type { Server } from 'node:http';
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import type { Identity } from '../api/bundle.ts';
import { compileBundle } from '../api/compile-bundle.ts';
import { type AuditLog, openAuditLog } from '../audit/log.ts';
import { StoreSink } from '../audit/sink.ts';
import { terminationSignal } from '../cli/signals.ts';
import { consoleHandler } from '../console/server.ts';
import type { Enforcer } from '../sidecar/core/enforcer.ts';
import { http } from '../sidecar/core/node-http.ts';
import { serveConnection } from '../sidecar/serve.ts';
import { LocalApprovals } from './approvals.ts';
import { clientHint } from './client-hint.ts';
import { controlSocket, defaultStore, serveControl } from './control.ts';
import { writeAgentKubeconfig } from './kubeconfig.ts';
import { loadManifests, ManifestError } from './manifests.ts';

export const localUsage = `Usage: airlock local -f DIR [-f DIR...] --as system:serviceaccount:NS:NAME --listen CONNECTION=HOST:PORT [--listen ...] [--store DIR | --store postgres://...] [--console HOST:PORT]

Serves each listed Connection on HOST:PORT with its enforcer, under the policies that grant it
to the identity given with --as. Sessions are recorded in the store (embedded SQLite in DIR by
default: ${defaultStore()}). --console serves the web console on a loopback address, without
sign-in: whoever reaches it acts as the local approver.`;

const identitySchema = z
  .string()
  .regex(/^system:serviceaccount:[a-z0-9-]+:[a-z0-9.-]+$/, 'must be system:serviceaccount:NAMESPACE:NAME');
const listenSchema = z
  .string()
  .regex(/^[a-z0-9][a-z0-9.-]*=(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'must be CONNECTION=HOST:PORT');

export interface LocalOptions {
  manifests: string[];
  identity: Identity;
  listen: { connection: string; host: string; port: number }[];
  store: string;
  console?: { host: string; port: number };
}

const loopback = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|localhost|\[::1\])$/;

export function parseLocalArgs(args: string[]): LocalOptions {
  const { values } = parseArgs({
    args,
    options: {
      file: { type: 'string', short: 'f', multiple: true },
      as: { type: 'string' },
      listen: { type: 'string', multiple: true },
      store: { type: 'string' },
      console: { type: 'string' },
    },
    strict: true,
  });
  if (!values.file?.length) throw new ManifestError('at least one -f DIR is required');
  const as = identitySchema.safeParse(values.as);
  if (!as.success) throw new ManifestError(`--as ${as.error.issues[0]!.message}`);
  const [, , namespace, serviceAccount] = as.data.split(':') as [string, string, string, string];
  if (!values.listen?.length)
    throw new ManifestError('at least one --listen CONNECTION=HOST:PORT is required');
  const listen = values.listen.map((value) => {
    const parsed = listenSchema.safeParse(value);
    if (!parsed.success) throw new ManifestError(`--listen ${value}: ${parsed.error.issues[0]!.message}`);
    const [connection, address] = value.split('=') as [string, string];
    const colon = address.lastIndexOf(':');
    const port = Number(address.slice(colon + 1));
    if (port < 1 || port > 65535) throw new ManifestError(`--listen ${value}: port must be 1-65535`);
    return { connection, host: address.slice(0, colon).replace(/^\[|\]$/g, ''), port };
  });
  let consoleAddress: LocalOptions['console'];
  if (values.console !== undefined) {
    const colon = values.console.lastIndexOf(':');
    const host = values.console.slice(0, colon);
    const port = Number(values.console.slice(colon + 1));
    if (colon < 0 || !loopback.test(host) || !Number.isInteger(port) || port < 0 || port > 65535)
      throw new ManifestError(
        `--console ${values.console}: must be a loopback HOST:PORT (127.0.0.1, [::1], localhost)`,
      );
    consoleAddress = { host: host.replace(/^\[|\]$/g, ''), port };
  }
  return {
    manifests: values.file,
    identity: { namespace, serviceAccount },
    listen,
    store: values.store ?? defaultStore(),
    ...(consoleAddress && { console: consoleAddress }),
  };
}

export interface LocalServer {
  enforcers: Map<string, Enforcer>;
  approvals: LocalApprovals;
  store: AuditLog;
  flush(): Promise<void>;
  close(): Promise<void>;
}

export async function startLocal(options: LocalOptions, log: (line: string) => void): Promise<LocalServer> {
  const sources = await loadManifests(options.manifests);
  const { bundle, problems } = compileBundle(sources, options.identity);
  for (const listen of options.listen) {
    if (bundle.connections.some((c) => c.name === listen.connection)) continue;
    const problem = problems.find((p) => p.connection === listen.connection);
    throw new ManifestError(
      problem
        ? `Connection ${listen.connection}: ${problem.message}`
        : `Connection ${listen.connection} is not granted to system:serviceaccount:${options.identity.namespace}:${options.identity.serviceAccount} by any AccessPolicy`,
    );
  }
  const store = await openAuditLog(options.store);
  let lastShedLog = 0;
  const sink = new StoreSink(store, {
    onError: (error) => log(`airlock local: could not record events: ${(error as Error).message}`),
    onShed: (total) => {
      if (Date.now() - lastShedLog < 1000) return;
      lastShedLog = Date.now();
      log(`airlock local: the store cannot keep up; ${total} events shed so far (terminal data first)`);
    },
  });
  const approvals = new LocalApprovals('local');
  const control = await serveControl(controlSocket(options.store), {
    store,
    approvals,
    flush: () => sink.flush(),
  });
  const enforcers = new Map<string, Enforcer>();
  let web: Server | undefined;
  const close = async () => {
    web?.closeAllConnections();
    if (web) await new Promise((resolve) => web!.close(resolve));
    approvals.close();
    await Promise.all([...enforcers.values()].map((e) => e.close()));
    await new Promise((resolve) => control.close(resolve));
    await sink.flush();
    await store.close();
  };
  try {
    for (const listen of options.listen) {
      const connection = bundle.connections.find((c) => c.name === listen.connection)!;
      const enforcer = await serveConnection({
        connection,
        identity: options.identity,
        listen: { host: listen.host, port: listen.port },
        events: sink,
        approvals,
      });
      enforcers.set(listen.connection, enforcer);
      const hint =
        connection.protocol === 'kubernetes'
          ? `KUBECONFIG=${await writeAgentKubeconfig(dirname(controlSocket(options.store)), connection.name, enforcer.address)} kubectl get pods`
          : clientHint(connection.protocol, enforcer.address, connection.mcp?.path);
      log(
        `airlock local: ${connection.name} (${connection.protocol} ${connection.host}:${connection.port}) on ${enforcer.address.address}:${enforcer.address.port}, policies ${connection.policies.map((p) => `${p.name}${p.mode === 'audit' ? ' (audit)' : ''}`).join(', ')}${hint ? `; try: ${hint}` : ''}`,
      );
    }
    if (options.console) web = await serveConsole(options.console, store, approvals, () => sink.flush(), log);
  } catch (error) {
    await close();
    throw error;
  }
  return { enforcers, approvals, store, flush: () => sink.flush(), close };
}

/** The web console over this process's store and approvals, as the local approver. */
async function serveConsole(
  address: { host: string; port: number },
  store: AuditLog,
  approvals: LocalApprovals,
  flush: () => Promise<void>,
  log: (line: string) => void,
): Promise<Server> {
  const handle = consoleHandler({
    user: 'local',
    sessions: async (query) => {
      await flush();
      return store.sessions(query);
    },
    session: async (id) => {
      await flush();
      return store.session(id);
    },
    approvals: async () => approvals.list(),
    decide: async (id, approved, reason) => approvals.decide(id, approved, reason),
  });
  // A page of another site whose name is made to resolve to loopback (DNS rebinding) names its
  // own host: only loopback names are served.
  const server = http.createServer((req, res) => {
    const host = (req.headers.host ?? '').replace(/:\d+$/, '');
    if (loopback.test(host)) return handle(req, res);
    res.writeHead(421, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ message: `the console answers to loopback names only, not ${host}` }));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(address.port, address.host, () => resolve());
  });
  const { port } = server.address() as { port: number };
  const host = address.host.includes(':') ? `[${address.host}]` : address.host;
  log(`airlock local: console on http://${host}:${port}/`);
  return server;
}

export async function runLocal(args: string[]): Promise<number> {
  let options: LocalOptions;
  let server: LocalServer;
  try {
    options = parseLocalArgs(args);
    server = await startLocal(options, (line) => console.error(line));
  } catch (error) {
    console.error(`airlock local: ${(error as Error).message}`);
    if (error instanceof ManifestError || (error as Error).name === 'TypeError')
      console.error(`\n${localUsage}`);
    return 2;
  }
  console.error(`airlock local: recording to ${options.store}; ready`);
  await terminationSignal();
  console.error('airlock local: draining');
  await server.close();
  return 0;
}
