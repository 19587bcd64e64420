// The operator's two listeners: HTTPS for the API server and the sidecars (the injection
// webhook and the control API), and plain HTTP for probes and Prometheus.
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Registry } from '../metrics/registry.ts';

export type Handler = (request: IncomingMessage, response: ServerResponse) => void | Promise<void>;

/** Handlers by exact path; a key ending in "/" also serves every path below it. */
export interface Routes {
  [path: string]: Handler;
}

function route(routes: Routes, onError: (error: unknown) => void): Handler {
  const prefixes = Object.keys(routes)
    .filter((path) => path.endsWith('/'))
    .sort((a, b) => b.length - a.length);
  return async (request, response) => {
    const path = (request.url ?? '/').split('?')[0]!;
    const prefix = prefixes.find((p) => path.startsWith(p));
    const handler = routes[path] ?? (prefix === undefined ? undefined : routes[prefix]);
    try {
      if (!handler) {
        response.writeHead(404, { 'content-type': 'application/json' });
        response.end('{"reason":"NotFound"}');
        return;
      }
      await handler(request, response);
    } catch (error) {
      onError(error);
      if (!response.headersSent) response.writeHead(500, { 'content-type': 'application/json' });
      response.end('{"reason":"InternalError"}');
    }
  };
}

export async function listen<T extends Server | HttpsServer>(
  server: T,
  host: string,
  port: number,
): Promise<AddressInfo> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server.address() as AddressInfo;
}

export function secureServer(
  tls: { certificate: string; privateKey: string },
  routes: Routes,
  onError: (e: unknown) => void,
) {
  const server = createHttpsServer(
    // A client certificate is asked for, never required: the API server's front proxy presents
    // one (the sessions API checks it); sidecars authenticate with their token instead.
    {
      cert: tls.certificate,
      key: tls.privateKey,
      minVersion: 'TLSv1.2',
      requestCert: true,
      rejectUnauthorized: false,
    },
    route(routes, onError),
  );
  server.keepAliveTimeout = 65_000;
  return server;
}

export function probeServer(
  options: {
    registry: Registry;
    live: () => boolean;
    ready: () => { ready: boolean; detail: Record<string, boolean> };
  },
  onError: (e: unknown) => void,
): Server {
  return createHttpServer(
    route(
      {
        '/healthz': (_req, res) => {
          const live = options.live();
          res.writeHead(live ? 200 : 503, { 'content-type': 'text/plain' });
          res.end(live ? 'ok\n' : 'not live\n');
        },
        '/readyz': (_req, res) => {
          const { ready, detail } = options.ready();
          res.writeHead(ready ? 200 : 503, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ ready, ...detail }));
        },
        '/metrics': (_req, res) => {
          res.writeHead(200, { 'content-type': options.registry.contentType });
          res.end(options.registry.metrics());
        },
      },
      onError,
    ),
  );
}
