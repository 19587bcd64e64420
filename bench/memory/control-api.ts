// The operator side bench/memory.ts runs `airlock sidecar` against: the operator's control API
// (bundles compiled from the manifests in MANIFESTS_DIR) and its collector (an embedded store in
// STORE_DIR) on one HTTPS server, as the operator serves them, with no API server: every token
// is taken as pod bench/agent-0's, bound and injected. A file of its own, so the sidecar is
// measured apart from what serves it. Usage: node control-api.js MANIFESTS_DIR STORE_DIR CA_FILE
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { AuthenticationV1Api, CoreV1Api } from '@kubernetes/client-node';
import pino from 'pino';
import { loadManifests } from '../../local/manifests.ts';
import { runCollector } from '../../operator/collector.ts';
import { ControlApi, injectedAnnotation, tokenAudience } from '../../operator/control-api.ts';
import { createMetrics } from '../../operator/metrics.ts';
import { createCertificateAuthority } from '../../operator/pki.ts';

const [manifests, store, caFile] = process.argv.slice(2) as [string, string, string];
const pod = { namespace: 'bench', serviceAccount: 'agent', pod: 'agent-0' };
const logger = pino({ level: 'warn' });
const sources = await loadManifests([manifests]);
const api = new ControlApi({
  authentication: {
    createTokenReview: async () => ({
      status: {
        authenticated: true,
        audiences: [tokenAudience],
        user: {
          username: `system:serviceaccount:${pod.namespace}:${pod.serviceAccount}`,
          extra: {
            'authentication.kubernetes.io/pod-name': [pod.pod],
            'authentication.kubernetes.io/pod-uid': ['bench'],
          },
        },
      },
    }),
  } as unknown as AuthenticationV1Api,
  core: {
    readNamespacedPod: async () => ({
      metadata: { uid: 'bench', annotations: { [injectedAnnotation]: '{"version":1}' } },
      spec: { serviceAccountName: pod.serviceAccount },
    }),
  } as unknown as CoreV1Api,
  logger,
  metrics: createMetrics(),
  sources: () => sources,
});
const collector = runCollector(
  { store, webhooks: [], webhookFormat: 'generic', jsonLogs: false },
  { authenticate: async () => pod, logger },
);
const authority = await createCertificateAuthority('bench operator');
const serving = await authority.issue({
  commonName: '127.0.0.1',
  ipAddresses: ['127.0.0.1'],
  usage: 'server',
});
writeFileSync(caFile, authority.certificate);
const server = createServer({ key: serving.privateKey, cert: serving.certificate }, (req, res) => {
  if (req.url === '/v1/bundle') void api.serveBundle(req, res);
  else if (req.url === '/v1/events') void collector.handler(req, res);
  else {
    res.writeHead(404);
    res.end();
  }
});
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
console.log(`listening on https://127.0.0.1:${(server.address() as AddressInfo).port}`);
process.once('SIGTERM', () => {
  api.close();
  server.close();
  server.closeAllConnections();
  void collector.close().then(() => process.exit(0));
});
