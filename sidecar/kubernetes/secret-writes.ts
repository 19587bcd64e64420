// A Secret read through the enforcer comes back with its values redacted. Written back as it
// came (kubectl get secret -o yaml | kubectl replace -f -, or an apply of that output), it would
// overwrite the real values with the redaction marker, so a Secret write that carries one is
// refused. The body is read whole for that, bounded: the API server refuses a larger one anyway.
import type { IncomingMessage } from 'node:http';
import type { KubernetesRequest } from '../policy/kubernetes-request.ts';
import { redactedData } from './objects.ts';

/** Larger than any Secret etcd stores (about 1.5 MiB), so no Secret the API server accepts is cut. */
export const maxSecretWriteBytes = 4 * 1024 * 1024;

const writes = new Set(['create', 'update', 'patch']);

export function writesSecret(request: KubernetesRequest): boolean {
  return request.resource === 'secrets' && request.subresource === '' && writes.has(request.verb);
}

/** Whether a body holds a value the enforcer (or a detector) redacted. */
export function carriesRedacted(body: Buffer): boolean {
  return body.includes(redactedData) || body.includes('[REDACTED');
}

/** The whole request body, or undefined past `limit` bytes or when the agent leaves before its end. */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.off('data', onData);
        req.resume();
        resolve(undefined);
      } else chunks.push(chunk);
    };
    req.on('data', onData);
    req.once('end', () => resolve(Buffer.concat(chunks)));
    req.once('error', reject);
    // The agent went away before the body ended: nothing to forward.
    req.once('close', () => {
      if (!req.readableEnded) resolve(undefined);
    });
  });
}
