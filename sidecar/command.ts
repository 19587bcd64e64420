// `airlock sidecar`: options parsed once at the edge, then the Sidecar, its probes and metrics.
import { parseArgs } from 'node:util';
import pino from 'pino';
import type { EventSink } from '../api/events.ts';
import { terminationSignal } from '../cli/signals.ts';
import { registerProcessMetrics } from '../metrics/process.ts';
import { Gauge, Registry } from '../metrics/registry.ts';
import { OperatorApprovals } from './approvals.ts';
import { CollectorDelivery, type SpoolFullPolicy } from './audit/delivery.ts';
import { http } from './core/node-http.ts';
import { upstreamLookup } from './dns.ts';
import { subscribeDataPathMetrics } from './metrics.ts';
import { parseListen, Sidecar } from './sidecar.ts';

export const sidecarUsage = `Usage: airlock sidecar --control-api URL --token-file PATH --ca-file PATH --listen CONNECTION=HOST:PORT[/PROTOCOL]...
       [--health-port 15021] [--metrics-port 15020] [--spool-dir DIR] [--audit-full fail-closed|drop] [--no-audit-log] [--drain-seconds 20]`;

/** Session events as JSON log lines, one per event, on stdout. */
export const jsonLogSink: EventSink = {
  emit: (event) => process.stdout.write(`${JSON.stringify({ msg: 'session event', event })}\n`),
  flush: () => new Promise((resolve) => process.stdout.write('', () => resolve())),
};

export async function runSidecar(args: string[]): Promise<number> {
  let values: {
    'control-api'?: string;
    'token-file'?: string;
    'ca-file'?: string;
    listen?: string[];
    'health-port'?: string;
    'metrics-port'?: string;
    'spool-dir'?: string;
    'audit-full'?: string;
    'audit-log'?: boolean;
    'drain-seconds'?: string;
  };
  let listen: ReturnType<typeof parseListen>[];
  try {
    values = parseArgs({
      args,
      options: {
        'control-api': { type: 'string' },
        'token-file': { type: 'string' },
        'ca-file': { type: 'string' },
        listen: { type: 'string', multiple: true },
        'health-port': { type: 'string', default: '15021' },
        'metrics-port': { type: 'string', default: '15020' },
        'spool-dir': { type: 'string' },
        'audit-full': { type: 'string', default: 'fail-closed' },
        // Session events are also JSON log lines unless --no-audit-log.
        'audit-log': { type: 'boolean', default: true },
        'drain-seconds': { type: 'string', default: '20' },
      },
      allowNegative: true,
    }).values;
    for (const required of ['control-api', 'token-file', 'ca-file'] as const) {
      if (!values[required]) throw new Error(`--${required} is required`);
    }
    listen = (values.listen ?? []).map(parseListen);
    if (values['audit-full'] !== 'fail-closed' && values['audit-full'] !== 'drop')
      throw new Error('--audit-full must be fail-closed or drop');
    if (!/^\d+(\.\d+)?$/.test(values['drain-seconds']!))
      throw new Error('--drain-seconds must be a number of seconds');
  } catch (error) {
    console.error(`airlock sidecar: ${(error as Error).message}\n\n${sidecarUsage}`);
    return 2;
  }
  const logger = pino({ base: { component: 'airlock-sidecar' } });
  // Held requests become AccessRequests through the operator, with the same token and CA.
  const approvals = new OperatorApprovals({
    controlApi: values['control-api']!,
    tokenFile: values['token-file']!,
    caFile: values['ca-file']!,
    logger,
  });
  const registry = new Registry();
  // Session events go to the operator's collector, spooled while it is unreachable.
  const delivery = new CollectorDelivery({
    url: new URL('/v1/events', values['control-api']!).toString(),
    tokenFile: values['token-file']!,
    caFile: values['ca-file']!,
    ...(values['spool-dir'] && { spoolDir: values['spool-dir'] }),
    onFull: values['audit-full'] as SpoolFullPolicy,
    ...(values['audit-log'] && { mirror: jsonLogSink }),
    logger,
    registry,
  });
  const sidecar = new Sidecar({
    controlApi: values['control-api']!,
    tokenFile: values['token-file']!,
    caFile: values['ca-file']!,
    listen,
    events: delivery,
    approvals,
    logger,
    lookup: upstreamLookup(),
  });
  registerProcessMetrics(registry);
  // Requests, masking, approvals, sessions and bytes, as the enforcers publish them.
  const unsubscribeMetrics = subscribeDataPathMetrics(registry);
  new Gauge({
    name: 'airlock_sidecar_bundle_received',
    help: '1 once a policy bundle has been received.',
    registry,
    collect: (received) => received.set(sidecar.bundle ? 1 : 0),
  });
  const health = http.createServer((req, res) => {
    if (req.url === '/healthz') res.end('ok\n');
    else if (req.url === '/readyz') {
      res.writeHead(sidecar.bundle ? 200 : 503);
      res.end(sidecar.bundle ? 'ready\n' : 'no policy bundle yet\n');
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  const metrics = http.createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404);
      res.end();
      return;
    }
    res.writeHead(200, { 'content-type': registry.contentType });
    res.end(registry.metrics());
  });
  health.listen(Number(values['health-port']));
  metrics.listen(Number(values['metrics-port']));
  await sidecar.start();
  await terminationSignal();
  // Kubernetes waits terminationGracePeriodSeconds before SIGKILL: drain within it.
  const drainMs = Number(values['drain-seconds']) * 1000;
  logger.info({ drainSeconds: drainMs / 1000 }, 'draining');
  await sidecar.drain(Date.now() + drainMs);
  logger.info('drained');
  approvals.close();
  await Promise.race([delivery.drained(), new Promise((resolve) => setTimeout(resolve, 2000))]);
  await delivery.stop();
  health.close();
  unsubscribeMetrics();
  metrics.close();
  return 0;
}
