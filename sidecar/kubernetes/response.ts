// Sends a decided request to the API server and its response back, masked by what it is: a
// JSON document read whole (bounded), masked (objects.ts) and sent; a watch masked event by event
// as they arrive (watch.ts); text (logs, proxied pages) through the detectors as it streams.
// What cannot be masked (a compressed, protobuf, CBOR or YAML body where something must be
// masked, or any such body for Secrets) is refused rather than passed on.
import type { Agent as HttpAgent, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Agent as HttpsAgent } from 'node:https';
import type { LookupFunction } from 'node:net';
import type { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { BundleConnection } from '../../api/bundle.ts';
import { AirlockError } from '../core/errors.ts';
import { http, https } from '../core/node-http.ts';
import { MaskingTransform, StreamMasker, valueShape } from '../core/stream-masker.ts';
import type { KubernetesRequest } from '../policy/kubernetes-request.ts';
import { upstreamHeaders } from './headers.ts';
import { maskDocument, newTally, type ObjectMasking, parseJson } from './objects.ts';
import { writeStatus } from './status.ts';
import { WatchMasker } from './watch.ts';

/** The largest JSON document (or watch event) read whole to be masked: a list page is far smaller. */
export const maxDocumentBytes = 64 * 1024 * 1024;

export interface Upstream {
  connection: BundleConnection;
  secure: boolean;
  agent: HttpAgent | HttpsAgent;
  /** The agent's resolver and TLS options, for the streams that leave its pool (upgrade.ts). */
  socket: { lookup?: LookupFunction; ca?: string; servername?: string; rejectUnauthorized?: boolean };
  token: string;
  masking: ObjectMasking;
}

export interface ForwardEnd {
  status?: number;
  counts: Record<string, number>;
  wouldMask: Record<string, number>;
  error?: AirlockError;
}

const hopByHop = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'trailer',
  'content-length',
]);

export async function forward(
  upstream: Upstream,
  request: KubernetesRequest,
  req: IncomingMessage,
  res: ServerResponse,
  finish: (end: ForwardEnd) => void,
  /** The request body when it was read whole to be checked; otherwise it streams from `req`. */
  body?: Buffer,
): Promise<void> {
  const { connection } = upstream;
  const jsonOnly = request.resourceRequest && request.subresource !== 'log' && !isProxy(request);
  const headers = upstreamHeaders(
    req.headers,
    upstream.token,
    `${connection.host}:${connection.port}`,
    jsonOnly,
  );
  const send = upstream.secure ? https.request : http.request;
  let response: IncomingMessage;
  try {
    response = await new Promise<IncomingMessage>((resolve, reject) => {
      const outgoing = send({
        host: connection.host,
        port: connection.port,
        method: req.method,
        // The target as the agent sent it: its reading is the one decided (kubernetes-request.ts).
        path: req.url,
        headers,
        agent: upstream.agent,
      });
      outgoing.once('response', resolve);
      outgoing.once('error', reject);
      res.once('close', () => {
        if (!res.writableFinished) outgoing.destroy();
      });
      if (body) outgoing.end(body);
      else req.pipe(outgoing);
    });
  } catch (error) {
    const failure = new AirlockError(
      'upstream-unreachable',
      `airlock: the API server is unreachable: ${(error as Error).message}`,
    );
    const status = res.headersSent ? undefined : writeStatus(res, failure.code, failure.message);
    finish({ ...(status !== undefined && { status }), counts: {}, wouldMask: {}, error: failure });
    return;
  }
  const status = response.statusCode ?? 502;
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(response.headers))
    if (value !== undefined && !hopByHop.has(name)) out[name] = value;
  const type = String(response.headers['content-type'] ?? '').toLowerCase();
  const encoded =
    (response.headers['content-encoding'] ?? 'identity').toString().toLowerCase() !== 'identity';
  const secrets = request.resource === 'secrets';
  const { masking } = upstream;
  const masks = secrets || masking.plan.hasScanners || masking.jsonPaths.length > 0;
  const refuse = (message: string) => {
    response.resume();
    const error = new AirlockError('masking-failed', `airlock: ${message}`);
    finish({ status: writeStatus(res, error.code, error.message), counts: {}, wouldMask: {}, error });
  };
  if (encoded) return refuse('the API server sent a compressed response, which cannot be masked');
  if (isJson(type)) {
    const tally = newTally();
    const maskEvent = (text: string) => {
      const event = maskDocument(parseJson(text), secrets, masking, tally);
      return tally.changed ? JSON.stringify(event) : text;
    };
    if (request.verb === 'watch') {
      res.writeHead(status, out);
      const error = await relay(response, res, new WatchMasker(maxDocumentBytes, maskEvent));
      finish({ status, counts: tally.counts, wouldMask: tally.wouldMask, ...(error && { error }) });
      return;
    }
    const body = await readWhole(response, maxDocumentBytes);
    if (body === undefined)
      return refuse(`a response larger than ${maxDocumentBytes} bytes cannot be masked whole`);
    let text: string;
    try {
      text = body.length === 0 ? '' : maskEvent(body.toString('utf8'));
    } catch (error) {
      return refuse(`the API server's JSON could not be read to be masked: ${(error as Error).message}`);
    }
    const sent = tally.changed ? Buffer.from(text) : body;
    res.writeHead(status, { ...out, 'content-length': sent.length });
    res.end(sent);
    finish({ status, counts: tally.counts, wouldMask: tally.wouldMask });
    return;
  }
  if (type.startsWith('text/') && masking.plan.hasScanners) {
    const masker = new StreamMasker((text) => masking.plan.maskText(text), valueShape(connection.policies));
    res.writeHead(status, out);
    const error = await relay(response, res, new MaskingTransform(masker));
    finish({ status, counts: masker.counts, wouldMask: masker.wouldMask, ...(error && { error }) });
    return;
  }
  if (!type.startsWith('text/') && type !== '' && masks)
    return refuse(`a ${type.split(';')[0]} response cannot be masked`);
  res.writeHead(status, out);
  const error = await relay(response, res);
  finish({ status, counts: {}, wouldMask: {}, ...(error && { error }) });
}

/**
 * Streams a response to the agent through `transform`. The agent leaving (the end of kubectl
 * logs -f or get --watch) is how such streams end: no error. A stream that could not be masked
 * or read is cut off, and its error returned.
 */
async function relay(
  response: IncomingMessage,
  res: ServerResponse,
  transform?: Transform,
): Promise<AirlockError | undefined> {
  let agentLeft = false;
  res.once('close', () => {
    agentLeft = !res.writableFinished;
  });
  try {
    await (transform ? pipeline(response, transform, res) : pipeline(response, res));
    return undefined;
  } catch (error) {
    res.destroy();
    if (agentLeft) return undefined;
    const message = `airlock: the response was cut off: ${(error as Error).message}`;
    return new AirlockError(transform ? 'masking-failed' : 'target-error', message);
  }
}

function isProxy(request: KubernetesRequest): boolean {
  return request.verb === 'proxy' || request.subresource === 'proxy';
}

function isJson(type: string): boolean {
  const media = type.split(';')[0]!.trim();
  return media === 'application/json' || media.endsWith('+json');
}

/** The whole body, or undefined past `limit` bytes (the rest is left unread). */
function readWhole(stream: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    stream.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        stream.destroy();
        resolve(undefined);
        return;
      }
      chunks.push(chunk);
    });
    stream.once('end', () => resolve(Buffer.concat(chunks)));
    stream.once('error', reject);
  });
}
