// The injection webhook: AdmissionReview v1 over HTTPS. It decides with injectPod, answers
// with the JSON Patch between the pod it received and the pod it built, and reports every
// outcome as a metric and an Event. The serving certificate is swapped in place when it
// rotates, so every replica serves while one leader writes.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { V1Pod } from '@kubernetes/client-node';
import { Counter, Histogram, type Registry } from '../../metrics/registry.ts';
import { injectionPath } from './configuration.ts';
import type { InjectionEvent } from './events.ts';
import type { Grant } from './hosts.ts';
import { type InjectionOptions, type InjectionReport, injectPod, serviceAccountOf } from './inject.ts';
import { diff } from './patch.ts';

/** The serving certificate and its changes; the certificate manager is one. */
export interface ServingCertificateSource {
  current(): { certificate: string; privateKey: string } | undefined;
  onChange(listener: (pair: { certificate: string; privateKey: string }) => void): () => void;
}

export interface Log {
  info(object: object, message?: string): void;
  warn(object: object, message?: string): void;
  error(object: object, message?: string): void;
}

export interface InjectionServerOptions {
  /** 0.0.0.0 when omitted. */
  host?: string;
  /** 0 picks a free port. */
  port: number;
  injection: InjectionOptions;
  certificates: ServingCertificateSource;
  /** The Connections granted to a ServiceAccount, from the operator's caches. */
  grantsFor(namespace: string, serviceAccount: string): Promise<Grant[]> | Grant[];
  /**
   * The namespace's labels, if the operator has them cached. Omitted, the webhook's
   * namespaceSelector is trusted (see configuration.ts).
   */
  namespaceLabels?(namespace: string): Promise<Record<string, string> | undefined>;
  /** Called once per decision, never awaited; kubernetesEventRecorder writes Events. */
  recordEvent?(event: InjectionEvent): void;
  registry?: Registry;
  log?: Log;
  /** More admission webhooks served on the same listener, by path (the AccessRequest ones). */
  routes?: Record<string, (req: IncomingMessage, res: ServerResponse) => void | Promise<void>>;
}

export interface InjectionServer {
  /** https://HOST:PORT */
  url: string;
  port: number;
  close(): Promise<void>;
}

interface AdmissionRequest {
  uid: string;
  kind?: { group?: string; version?: string; kind?: string };
  resource?: { resource?: string };
  subResource?: string;
  namespace?: string;
  operation?: string;
  dryRun?: boolean;
  object?: V1Pod;
}

interface AdmissionResponse {
  uid: string;
  allowed: boolean;
  patchType?: 'JSONPatch';
  patch?: string;
  status?: { code: number; reason?: string; message: string };
  warnings?: string[];
  auditAnnotations?: Record<string, string>;
}

interface Metrics {
  decisions: Counter<'result' | 'reason'>;
  latency: Histogram<'result'>;
}

function metrics(registry: Registry | undefined): Metrics {
  const existing = <T>(name: string) => registry?.get(name) as T | undefined;
  return {
    decisions:
      existing<Counter<'result' | 'reason'>>('airlock_injections_total') ??
      new Counter({
        name: 'airlock_injections_total',
        help: 'Pod admissions seen by the injector, by result (injected, skipped, refused, error) and reason.',
        labelNames: ['result', 'reason'],
        registry,
      }),
    latency:
      existing<Histogram<'result'>>('airlock_injection_duration_seconds') ??
      new Histogram({
        name: 'airlock_injection_duration_seconds',
        help: 'Time the injector takes to answer an AdmissionReview, by result.',
        labelNames: ['result'],
        buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
        registry,
      }),
  };
}

/** Decides one AdmissionRequest. Exported for tests; the server is a thin adapter around it. */
export async function admit(
  request: AdmissionRequest,
  options: Pick<InjectionServerOptions, 'injection' | 'grantsFor' | 'namespaceLabels'>,
): Promise<{ response: AdmissionResponse; report?: InjectionReport }> {
  const allowed: AdmissionResponse = { uid: request.uid, allowed: true };
  const pod = request.object;
  if (request.kind?.kind !== 'Pod' || request.operation !== 'CREATE' || request.subResource || !pod) {
    return { response: allowed };
  }
  const namespace = request.namespace || pod.metadata?.namespace || 'default';
  let report: InjectionReport;
  let injected: V1Pod;
  try {
    const namespaceLabels = await options.namespaceLabels?.(namespace);
    const context = { namespace, ...(namespaceLabels && { namespaceLabels }) };
    // Decide before asking for grants: a skipped pod needs none.
    const decided = injectPod(pod, options.injection, [], context);
    if (decided.report.result !== 'injected') {
      ({ pod: injected, report } = decided);
    } else {
      const grants = await options.grantsFor(namespace, serviceAccountOf(pod));
      ({ pod: injected, report } = injectPod(pod, options.injection, grants, context));
    }
  } catch (error) {
    report = {
      result: 'error',
      reason: 'GrantsUnavailable',
      message: `cannot tell which Connections the pod is granted: ${(error as Error).message}`,
    };
    return {
      response: {
        ...allowed,
        allowed: false,
        status: { code: 500, message: `airlock: ${report.reason}: ${report.message}` },
      },
      report,
    };
  }
  const audit = { 'airlock.dev/injection': `${report.result}/${report.reason}` };
  if (report.result === 'refused') {
    return {
      response: {
        ...allowed,
        allowed: false,
        status: { code: 403, reason: 'Forbidden', message: `airlock: ${report.reason}: ${report.message}` },
        auditAnnotations: audit,
      },
      report,
    };
  }
  const patch = diff(pod, injected);
  return {
    response: {
      ...allowed,
      ...(patch.length > 0 && {
        patchType: 'JSONPatch' as const,
        patch: Buffer.from(JSON.stringify(patch)).toString('base64'),
      }),
      ...(report.warnings && { warnings: report.warnings }),
      auditAnnotations: audit,
    },
    report,
  };
}

const maxBody = 8 * 1024 * 1024;
/** Longer than any API server keeps an idle connection to a webhook (Go's IdleConnTimeout, 90 s). */
export const idleTimeout = 180_000;

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBody) {
        reject(new Error('request body too large'));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, {
    'content-type': typeof body === 'string' ? 'text/plain' : 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

export async function startInjectionServer(options: InjectionServerOptions): Promise<InjectionServer> {
  const { decisions, latency } = metrics(options.registry);
  const initial = options.certificates.current();
  const server: Server = createServer({
    minVersion: 'TLSv1.2',
    ...(initial && { cert: initial.certificate, key: initial.privateKey }),
  });
  // The API server's client keeps idle connections for 90 s and does not retry a POST that
  // meets a connection the server just closed ("broken pipe": with failurePolicy Fail, a failed
  // pod creation). So the server must never be the side that closes an idle connection first.
  server.keepAliveTimeout = idleTimeout;
  server.headersTimeout = idleTimeout + 1000;
  server.requestTimeout = 30_000;
  let serving = initial !== undefined;
  const unsubscribe = options.certificates.onChange((pair) => {
    server.setSecureContext({ minVersion: 'TLSv1.2', cert: pair.certificate, key: pair.privateKey });
    serving = true;
    options.log?.info({ event: 'certificate-reloaded' }, 'injector serving certificate reloaded');
  });

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && path === '/healthz') return send(res, 200, 'ok');
    if (req.method === 'GET' && path === '/readyz')
      return send(res, serving ? 200 : 503, serving ? 'ok' : 'no certificate');
    const route = path === undefined ? undefined : options.routes?.[path];
    if (route) {
      void Promise.resolve(route(req, res)).catch((error: unknown) => {
        options.log?.error(
          { event: 'admission-failed', path, err: error },
          'admission webhook failed to answer',
        );
        if (!res.headersSent) send(res, 500, 'internal error');
      });
      return;
    }
    if (path !== injectionPath) return send(res, 404, 'not found');
    if (req.method !== 'POST') return send(res, 405, 'method not allowed');
    const started = process.hrtime.bigint();
    void (async () => {
      let review: { apiVersion?: string; kind?: string; request?: AdmissionRequest };
      try {
        review = JSON.parse((await readBody(req)).toString('utf8'));
      } catch (error) {
        return send(res, 400, `bad AdmissionReview: ${(error as Error).message}`);
      }
      if (
        review.kind !== 'AdmissionReview' ||
        review.apiVersion !== 'admission.k8s.io/v1' ||
        !review.request?.uid
      ) {
        return send(res, 400, 'expected an admission.k8s.io/v1 AdmissionReview with a request');
      }
      const request = review.request;
      const { response, report } = await admit(request, options);
      send(res, 200, { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response });
      const result = report?.result ?? 'ignored';
      latency.observe({ result }, Number(process.hrtime.bigint() - started) / 1e9);
      if (!report) return;
      decisions.inc({ result: report.result, reason: report.reason });
      const pod = request.object?.metadata;
      const namespace = request.namespace || pod?.namespace || 'default';
      options.log?.info(
        {
          event: 'injection',
          namespace,
          pod: pod?.name || pod?.generateName,
          result: report.result,
          reason: report.reason,
        },
        report.message,
      );
      if (!request.dryRun) {
        options.recordEvent?.({
          namespace,
          pod: {
            ...(pod?.name && { name: pod.name }),
            ...(pod?.generateName && { generateName: pod.generateName }),
          },
          report,
        });
      }
    })().catch((error: unknown) => {
      options.log?.error({ event: 'injection-failed', err: error }, 'injector failed to answer');
      if (!res.headersSent) send(res, 500, 'internal error');
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host ?? '0.0.0.0', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port, address } = server.address() as AddressInfo;
  const host = address.includes(':') ? `[${address}]` : address;
  return {
    url: `https://${host}:${port}`,
    port,
    async close() {
      unsubscribe();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
