// The client command that reaches a Connection served by `airlock local`, printed beside its
// address so the first session needs no lookup. The agent's own credentials are never needed:
// the enforcer holds the target's.
import type { Protocol } from '../api/names.ts';

export function clientHint(
  protocol: Protocol,
  address: { address: string; port: number },
  /** The MCP endpoint's path, for an mcp Connection. */
  mcpPath = '/mcp',
): string | undefined {
  const host = address.address.includes(':') ? `[${address.address}]` : address.address;
  switch (protocol) {
    case 'postgres':
      return `psql -h ${address.address} -p ${address.port}`;
    case 'redis':
      return `redis-cli -h ${address.address} -p ${address.port}`;
    case 'ssh':
      return `ssh -p ${address.port} ${host}`;
    case 'http':
      return `curl http://${host}:${address.port}/`;
    case 'mcp':
      return `an MCP client (streamable HTTP) at http://${host}:${address.port}${mcpPath}`;
    default:
      return undefined;
  }
}
