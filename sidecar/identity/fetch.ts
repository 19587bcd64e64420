// How the sidecar reaches the identity provider: HTTPS from its own process, whose traffic the
// pod's capture rules let out (they match every uid but the sidecar's). Names are resolved with
// the sidecar's resolver when it has one (the cluster's DNS, see sidecar/dns.ts): the pod's
// hosts file maps the granted Connections' names to the sidecar itself. Redirects are not
// followed, and an answer is bounded, as the provider's documents are small. The provider's
// certificate chains to the Connection's endUser CA when it names one (only to it: a private CA
// replaces the system roots, as a target's tls CA does), else to the system roots.
import type { LookupFunction } from 'node:net';
import { https } from '../core/node-http.ts';

/** Largest discovery document or key set read. */
export const maxDocumentBytes = 1024 * 1024;

/** A fetch for the provider's documents (GET, JSON), as jose's remote key set takes one. */
export function providerFetch(lookup?: LookupFunction, ca?: string) {
  return (url: string, init: { headers?: Headers; signal?: AbortSignal } = {}): Promise<Response> =>
    new Promise<Response>((resolve, reject) => {
      const req = https.request(
        url,
        {
          method: 'GET',
          headers: { accept: 'application/json', ...Object.fromEntries(init.headers ?? []) },
          ...(lookup && { lookup }),
          ...(ca !== undefined && { ca }),
          ...(init.signal && { signal: init.signal }),
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (chunk: Buffer) => {
            size += chunk.length;
            if (size > maxDocumentBytes) {
              req.destroy(new Error(`${url} answered more than ${maxDocumentBytes} bytes`));
              return;
            }
            chunks.push(chunk);
          });
          res.on('end', () =>
            resolve(
              new Response(Buffer.concat(chunks), {
                status: res.statusCode ?? 500,
                headers: { 'content-type': String(res.headers['content-type'] ?? 'application/json') },
              }),
            ),
          );
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end();
    });
}
