// The collector bench/memory.ts measures: the operator's, on an embedded store, with no token
// check. A file of its own, so the measured process loads nothing of the bench (its test
// helpers), in a folder, so `make bench` does not run it as a bench; bench/memory.ts runs it
// compiled, as the image would. Usage: node collector.js STORE_DIR
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { runCollector } from '../../operator/collector.ts';

const collector = runCollector(
  { store: process.argv[2]!, webhooks: [], webhookFormat: 'generic', jsonLogs: false },
  {
    authenticate: async () => ({ namespace: 'agents', serviceAccount: 'agent', pod: 'agent-0' }),
    logger: pino({ level: 'warn' }),
  },
);
const server = createServer((req, res) => void collector.handler(req, res));
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
console.log(`listening on http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/events`);
process.once('SIGTERM', () => {
  server.close();
  void collector.close().then(() => process.exit(0));
});
