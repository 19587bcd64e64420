// `airlock sidecar`: follows this pod's bundle from the operator's control API and serves each
// listed Connection with its enforcer. No bundle, no access: a Connection without one is
// served by a refusal. A revoked grant closes its listener and its sessions; a changed
// Connection or policy restarts its enforcer. When the control API is unreachable the last
// bundle stays in force.
import { readFile } from 'node:fs/promises';
import type { LookupFunction } from 'node:net';
import type { Logger } from 'pino';
import type { Bundle, BundleConnection } from '../api/bundle.ts';
import { bundleSchema } from '../api/bundle-schema.ts';
import type { EventSink } from '../api/events.ts';
import { type Protocol, protocols } from '../api/names.ts';
import type { Approvals, Enforcer } from './core/enforcer.ts';
import { https } from './core/node-http.ts';
import { serveRefusal } from './refusal.ts';
import { serveConnection } from './serve.ts';

export interface Listen {
  connection: string;
  host: string;
  port: number;
  protocol?: Protocol;
}

/** Parses NAME=HOST:PORT[/PROTOCOL], as the injector writes it. */
export function parseListen(value: string): Listen {
  const match = /^([a-z0-9][a-z0-9.-]*)=(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})(?:\/([a-z]+))?$/.exec(
    value,
  );
  const port = Number(match?.[3]);
  if (!match || port < 1 || port > 65535)
    throw new Error(`--listen ${value}: must be CONNECTION=HOST:PORT[/PROTOCOL]`);
  const protocol = match[4] as Protocol | undefined;
  if (protocol && !protocols.includes(protocol))
    throw new Error(`--listen ${value}: unknown protocol ${protocol}`);
  return {
    connection: match[1]!,
    host: match[2]!.replace(/^\[|\]$/g, ''),
    port,
    ...(protocol && { protocol }),
  };
}

export interface SidecarOptions {
  controlApi: string;
  tokenFile: string;
  caFile: string;
  listen: Listen[];
  events: EventSink;
  approvals: Approvals;
  logger: Logger;
  /** How upstream names are resolved (the pod's hosts file sends them back to the sidecar: dns.ts). */
  lookup?: LookupFunction;
  /** Reconnect when no line arrives for this long (the operator sends a heartbeat every 15 s). */
  idleTimeoutMs?: number;
}

interface Served {
  kind: 'enforcer' | 'refusal';
  fingerprint: string;
  enforcer: Enforcer;
}

export class Sidecar {
  readonly #options: SidecarOptions;
  readonly #served = new Map<string, Served>();
  #bundle?: Bundle;
  #stopped = false;
  #failures = 0;
  #current?: { destroy(): void };
  #retry?: NodeJS.Timeout;
  #applying: Promise<void> = Promise.resolve();
  readonly #waiters: ((bundle: Bundle) => void)[] = [];

  constructor(options: SidecarOptions) {
    this.#options = options;
  }

  get bundle(): Bundle | undefined {
    return this.#bundle;
  }

  /** Serves refusals on every address, then follows the bundle. */
  async start(): Promise<void> {
    await this.#apply(undefined);
    this.#connect();
  }

  /** Resolves with the next bundle that satisfies the predicate, once it is applied. */
  nextBundle(predicate: (bundle: Bundle) => boolean = () => true): Promise<Bundle> {
    if (this.#bundle && predicate(this.#bundle)) return Promise.resolve(this.#bundle);
    return new Promise((resolve) => {
      const waiter = (bundle: Bundle) => {
        if (!predicate(bundle)) return;
        this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
        resolve(bundle);
      };
      this.#waiters.push(waiter);
    });
  }

  async #connect(): Promise<void> {
    if (this.#stopped) return;
    const { logger } = this.#options;
    let token: string;
    let ca: string;
    try {
      // Re-read on every connect: the kubelet rotates the projected token.
      [token, ca] = await Promise.all([
        readFile(this.#options.tokenFile, 'utf8').then((t) => t.trim()),
        readFile(this.#options.caFile, 'utf8'),
      ]);
    } catch (error) {
      logger.error({ err: (error as Error).message }, 'cannot read the token or the CA');
      this.#reconnectLater();
      return;
    }
    // Stopped while the files were read: a stream opened now would serve again after stop().
    if (this.#stopped) return;
    const url = new URL('/v1/bundle', this.#options.controlApi);
    const req = https.request(url, { ca, headers: { authorization: `Bearer ${token}` } }, (res) => {
      if (res.statusCode !== 200) {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk) => {
          body += chunk;
        });
        res.on('end', () => {
          logger.warn(
            { status: res.statusCode, body: body.slice(0, 500) },
            'the control API refused the bundle',
          );
          this.#reconnectLater();
        });
        return;
      }
      this.#failures = 0;
      let buffer = '';
      res.setEncoding('utf8');
      const idle = () => req.destroy(new Error('no heartbeat from the control API'));
      let timer = setTimeout(idle, this.#options.idleTimeoutMs ?? 45_000);
      res.on('data', (chunk: string) => {
        clearTimeout(timer);
        timer = setTimeout(idle, this.#options.idleTimeoutMs ?? 45_000);
        buffer += chunk;
        for (let newline = buffer.indexOf('\n'); newline >= 0; newline = buffer.indexOf('\n')) {
          const line = buffer.slice(0, newline);
          buffer = buffer.slice(newline + 1);
          this.#line(line);
        }
      });
      res.on('close', () => {
        clearTimeout(timer);
        if (!this.#stopped) logger.warn('the bundle stream ended; the last bundle stays in force');
        this.#reconnectLater();
      });
    });
    req.on('error', (error) => {
      logger.warn({ err: error.message }, 'cannot reach the control API');
      this.#reconnectLater();
    });
    req.end();
    this.#current = req;
  }

  #reconnectLater() {
    if (this.#stopped || this.#retry) return;
    const delay = Math.min(500 * 2 ** this.#failures++, 30_000);
    this.#retry = setTimeout(() => {
      this.#retry = undefined;
      void this.#connect();
    }, delay);
  }

  #line(line: string) {
    let message: { type?: string; bundle?: unknown };
    try {
      message = JSON.parse(line);
    } catch {
      this.#options.logger.error('the control API sent a line that is not JSON');
      return;
    }
    if (message.type !== 'bundle') return;
    const parsed = bundleSchema.safeParse(message.bundle);
    if (!parsed.success) {
      this.#options.logger.error(
        { issue: parsed.error.issues[0]?.message },
        'the control API sent an invalid bundle',
      );
      return;
    }
    const bundle = message.bundle as Bundle;
    this.#applying = this.#applying.then(() => (this.#stopped ? undefined : this.#apply(bundle)));
  }

  async #apply(bundle: Bundle | undefined): Promise<void> {
    const { logger } = this.#options;
    for (const listen of this.#options.listen) {
      const connection: BundleConnection | undefined = bundle?.connections.find(
        (c) => c.name === listen.connection,
      );
      const current = this.#served.get(listen.connection);
      const reason = bundle
        ? 'no AccessPolicy grants it to this pod'
        : 'the sidecar has no policy bundle yet';
      const fingerprint = connection ? JSON.stringify(connection) : `refusal: ${reason}`;
      if (current?.fingerprint === fingerprint) continue;
      await current?.enforcer.close();
      this.#served.delete(listen.connection);
      const address = { host: listen.host, port: listen.port };
      try {
        const enforcer = connection
          ? await serveConnection({
              connection,
              identity: bundle!.identity,
              listen: address,
              events: this.#options.events,
              approvals: this.#options.approvals,
              ...(this.#options.lookup && { lookup: this.#options.lookup }),
            })
          : await serveRefusal(listen.protocol, listen.connection, address, reason);
        this.#served.set(listen.connection, {
          kind: connection ? 'enforcer' : 'refusal',
          fingerprint,
          enforcer,
        });
        logger.info(
          {
            connection: listen.connection,
            address: `${listen.host}:${listen.port}`,
            serving: connection ? 'enforcer' : 'refusal',
          },
          connection
            ? current
              ? 'connection updated'
              : 'connection granted'
            : current
              ? 'connection revoked'
              : 'connection closed until granted',
        );
      } catch (error) {
        logger.error(
          { connection: listen.connection, err: (error as Error).message },
          'cannot serve the connection',
        );
      }
    }
    if (bundle) {
      this.#bundle = bundle;
      for (const waiter of [...this.#waiters]) waiter(bundle);
    }
  }

  serving(connection: string): 'enforcer' | 'refusal' | undefined {
    return this.#served.get(connection)?.kind;
  }

  /**
   * Graceful drain (SIGTERM): the bundle stays as it is, every listener stops accepting, work in
   * flight finishes until `deadlineMs` (epoch ms), the sessions close, and the events are flushed.
   */
  async drain(deadlineMs: number): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#retry);
    this.#current?.destroy();
    await this.#applying;
    await Promise.all(
      [...this.#served.values()].map((s) =>
        s.enforcer.drain ? s.enforcer.drain(deadlineMs) : s.enforcer.close(),
      ),
    );
    this.#served.clear();
    await this.#options.events.flush?.();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#retry);
    this.#current?.destroy();
    await this.#applying;
    await Promise.all([...this.#served.values()].map((s) => s.enforcer.close()));
    this.#served.clear();
  }
}
