// The way to the MCP server: its endpoint, the held credential put on every request (the
// agent's own Authorization is never passed on), and only the headers the transport defines.
// With OAuth client credentials, the bearer token is the current access token, and a request
// the server refuses with 401 is sent once more with a renewed one.
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import type { BundleConnection } from '../../api/bundle.ts';
import { AirlockError } from '../core/errors.ts';
import { http, https } from '../core/node-http.ts';
import type { Context, McpOptions, Upstream } from './context.ts';
import { ClientCredentials } from './oauth.ts';

/** The transport's headers an agent's request carries to the server. */
const passed = ['accept', 'content-type', 'mcp-session-id', 'mcp-protocol-version', 'last-event-id'];

export function upstreamOf(connection: BundleConnection, mcp: McpOptions): Upstream {
  const secure = mcp.scheme === 'https';
  const serverName = connection.tls.serverName ?? (isIP(connection.host) ? undefined : connection.host);
  const tls = {
    rejectUnauthorized: connection.tls.mode !== 'require',
    ...(connection.tls.ca !== undefined && { ca: connection.tls.ca }),
    ...(serverName !== undefined && { servername: serverName }),
  };
  const { token, header, value, clientId, clientSecret } = connection.credentials;
  const oauth = connection.mcp?.oauth;
  // Fail closed: an OAuth client without its settings, or settings without a client, is a
  // Connection that would otherwise reach the server with no credential.
  if ((oauth !== undefined) !== (clientId !== undefined && clientSecret !== undefined))
    throw new Error(
      `Connection ${connection.name}: an OAuth client needs both mcp.oauth and the Secret's clientId and clientSecret`,
    );
  const credential: Record<string, string> =
    token !== undefined
      ? { authorization: `Bearer ${token}` }
      : header !== undefined && value !== undefined
        ? { [header.toLowerCase()]: value }
        : {};
  return {
    secure,
    agent: secure ? new https.Agent({ keepAlive: true, ...tls }) : new http.Agent({ keepAlive: true }),
    tls,
    credential,
    ...(oauth &&
      clientId !== undefined &&
      clientSecret !== undefined && {
        oauth: new ClientCredentials(oauth, { clientId, clientSecret }, connection.tls.ca),
      }),
  };
}

/** Sends one request to the server's endpoint; resolves with its response as it starts. */
export async function send(
  context: Context,
  method: 'GET' | 'POST' | 'DELETE',
  from: IncomingHttpHeaders,
  body?: string,
  signal?: AbortSignal,
  /** Path and query to request; the endpoint's path when absent. */
  path?: string,
): Promise<IncomingMessage> {
  const { upstream } = context;
  const headers: Record<string, string> = {};
  for (const name of passed) {
    const value = from[name];
    if (typeof value === 'string') headers[name] = value;
  }
  if (body !== undefined) {
    headers['content-type'] = 'application/json';
    headers['content-length'] = String(Buffer.byteLength(body));
  }
  Object.assign(headers, upstream.credential);
  const token = await upstream.oauth?.token();
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  const response = await sendOnce(context, method, headers, body, signal, path);
  if (response.statusCode !== 401 || token === undefined || !upstream.oauth) return response;
  // The server no longer takes the token (revoked, or expired early): once more with a new one.
  response.resume();
  upstream.oauth.refused(token);
  headers.authorization = `Bearer ${await upstream.oauth.token()}`;
  return sendOnce(context, method, headers, body, signal, path);
}

function sendOnce(
  context: Context,
  method: string,
  headers: Record<string, string>,
  body: string | undefined,
  signal: AbortSignal | undefined,
  path: string | undefined,
): Promise<IncomingMessage> {
  const { connection, mcp, upstream } = context;
  const options = {
    host: connection.host,
    port: connection.port,
    method,
    path: path ?? mcp.path,
    headers,
    agent: upstream.agent,
    ...(context.options.lookup && { lookup: context.options.lookup }),
    ...(signal && { signal }),
  };
  return new Promise((resolve, reject) => {
    const req = upstream.secure
      ? https.request({ ...options, ...upstream.tls }, resolve)
      : http.request(options, resolve);
    req.on('error', (error) =>
      reject(
        new AirlockError(
          'upstream-unreachable',
          `airlock: the MCP server ${connection.host}:${connection.port} is unreachable: ${error.message}`,
        ),
      ),
    );
    req.end(body);
  });
}

/**
 * Reads a body up to `limit` bytes; undefined past it. The server's body is then cut off; the
 * agent's is read on and discarded (`drain`), so the refusal reaches it before its connection
 * closes.
 */
export function readBounded(
  stream: IncomingMessage,
  limit: number,
  drain = false,
): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    stream.on('data', (chunk: Buffer) => {
      const over = size > limit;
      size += chunk.length;
      if (over) return;
      if (size <= limit) chunks.push(chunk);
      else {
        chunks.length = 0;
        if (!drain) stream.destroy();
        resolve(undefined);
      }
    });
    stream.on('end', () => resolve(size > limit ? undefined : Buffer.concat(chunks).toString('utf8')));
    stream.on('error', reject);
    stream.on('close', () => {
      if (size > limit) resolve(undefined);
      else if (!stream.readableEnded) reject(new Error('the body ended before it was complete'));
    });
  });
}
