// Starts the enforcer for one granted Connection by its protocol: the one place the sidecar
// and `airlock local` choose an enforcer. Each protocol's enforcer is imported when a Connection
// of that protocol is first served: a sidecar for a PostgreSQL Connection never loads the SSH
// library, the shell parser, the JWT verifier or the MCP client, and one for HTTP never the SQL
// parser (bench/README.md: what each costs).
import type { Enforcer, EnforcerOptions } from './core/enforcer.ts';

export async function serveConnection(options: EnforcerOptions): Promise<Enforcer> {
  const { connection, listen } = options;
  switch (connection.protocol) {
    case 'postgres': {
      const { servePostgres } = await import('./postgres/server.ts');
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
      return (await import('./ssh/enforcer.ts')).serveSsh(options);
    case 'http':
      return (await import('./http/enforcer.ts')).serveHttp(options);
    case 'tcp':
      return (await import('./tcp/enforcer.ts')).serveTcp(options);
    case 'redis':
      return (await import('./redis/enforcer.ts')).serveRedis(options);
    case 'kubernetes':
      return (await import('./kubernetes/enforcer.ts')).serveKubernetes(options);
    case 'mcp':
      return (await import('./mcp/enforcer.ts')).serveMcp(options);
  }
}
