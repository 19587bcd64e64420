// Starts the enforcer for one granted Connection by its protocol: the one place the sidecar
// and `airlock local` choose an enforcer.
import type { Enforcer, EnforcerOptions } from './core/enforcer.ts';
import { serveHttp } from './http/enforcer.ts';
import { serveKubernetes } from './kubernetes/enforcer.ts';
import { serveMcp } from './mcp/enforcer.ts';
import { servePostgres } from './postgres/server.ts';
import { serveRedis } from './redis/enforcer.ts';
import { serveSsh } from './ssh/enforcer.ts';
import { serveTcp } from './tcp/enforcer.ts';

export async function serveConnection(options: EnforcerOptions): Promise<Enforcer> {
  const { connection, listen } = options;
  switch (connection.protocol) {
    case 'postgres': {
      const enforcer = await servePostgres({
        connection,
        identity: options.identity,
        events: options.events,
        approvals: options.approvals,
        ...(options.lookup && { lookup: options.lookup }),
        host: listen.host,
        port: listen.port,
      });
      return {
        address: {
          address: enforcer.host,
          port: enforcer.port,
          family: listen.host.includes(':') ? 'IPv6' : 'IPv4',
        },
        close: () => enforcer.close(),
        drain: (deadlineMs) => enforcer.drain(deadlineMs),
      };
    }
    case 'ssh':
      return serveSsh(options);
    case 'http':
      return serveHttp(options);
    case 'tcp':
      return serveTcp(options);
    case 'redis':
      return serveRedis(options);
    case 'kubernetes':
      return serveKubernetes(options);
    case 'mcp':
      return serveMcp(options);
  }
}
