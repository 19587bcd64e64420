// Calls to the API server as a signed-in person: the operator's own credentials with the
// Impersonate-User and Impersonate-Group headers, so RBAC authorises the person (not the
// operator), the aggregated sessions API's SubjectAccessReview sees them, and the approval
// webhooks record them as the decider. The API server checks the operator may impersonate
// that user and those groups; the console only ever asks for names under its prefix.
import { request as httpsRequest, type RequestOptions } from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';

export interface Person {
  /** The Kubernetes user name: the prefix and the ID token's username claim. */
  user: string;
  /** The Kubernetes groups: the prefix and each of the ID token's groups. */
  groups: string[];
}

export interface ApiReply {
  status: number;
  body: unknown;
}

/** One call to the API server; the body is JSON, a merge patch when the method is PATCH. */
export type ApiCall = (method: string, path: string, body?: unknown) => Promise<ApiReply>;

const maxReply = 64 * 1024 * 1024;

export function impersonating(config: KubeConfig, person: Person): ApiCall {
  const server = config.getCurrentCluster()?.server;
  if (!server) throw new Error('the kubeconfig names no API server');
  return async (method, path, body) => {
    const url = new URL(path, server);
    const options: RequestOptions = {
      method,
      protocol: url.protocol,
      hostname: url.hostname.replace(/^\[|\]$/g, ''),
      port: url.port,
      path: `${url.pathname}${url.search}`,
      headers: {},
    };
    await config.applyToHTTPSOptions(options);
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    options.headers = {
      ...(options.headers as Record<string, string>),
      accept: 'application/json',
      'impersonate-user': person.user,
      // One header line per group: a comma is a legal character in a group name.
      'impersonate-group': person.groups,
      ...(payload && {
        'content-type': method === 'PATCH' ? 'application/merge-patch+json' : 'application/json',
        'content-length': String(payload.length),
      }),
    };
    return new Promise<ApiReply>((resolve, reject) => {
      const request = httpsRequest(options, (response) => {
        const chunks: Buffer[] = [];
        let size = 0;
        response.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > maxReply) request.destroy(new Error(`the API server's reply to ${path} is too large`));
          else chunks.push(chunk);
        });
        response.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown = text;
          try {
            parsed = JSON.parse(text);
          } catch {}
          resolve({ status: response.statusCode ?? 0, body: parsed });
        });
        response.on('error', reject);
      });
      request.on('error', reject);
      request.end(payload);
    });
  };
}

/** The API server's words for a refused call (a webhook's message, RBAC's), not the whole Status. */
export function replyMessage(reply: ApiReply): string {
  const body = reply.body as { message?: unknown } | string;
  if (typeof body === 'object' && body && typeof body.message === 'string') return body.message;
  return `the API server answered ${reply.status}`;
}
