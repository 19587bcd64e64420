// A stand-in kubelet for log streaming: a Node whose kubelet endpoint is a local HTTPS server
// that serves /containerLogs, so the API server's `pods/log` (kubectl logs -f) reaches it with
// no container runtime. The test writes the log lines when it wants them.
import type { ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { createCertificateAuthority } from '../../operator/pki.ts';
import type { ControlPlane } from './controlplane.ts';

export interface FakeKubelet {
  node: string;
  /** Writes a line to every open log stream (kubectl logs -f). */
  write(line: string): void;
  /** How many log streams are open. */
  readonly streams: number;
  stop(): Promise<void>;
}

export async function startFakeKubelet(plane: ControlPlane, node = 'fake-node'): Promise<FakeKubelet> {
  const ca = await createCertificateAuthority('fake-kubelet-ca');
  const serving = await ca.issue({ commonName: node, ipAddresses: ['127.0.0.1'], usage: 'server' });
  const open = new Set<ServerResponse>();
  const server: Server = createServer({ cert: serving.certificate, key: serving.privateKey }, (req, res) => {
    if (!req.url?.startsWith('/containerLogs/')) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write('started\n');
    open.add(res);
    res.on('close', () => open.delete(res));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  await plane.kubectl(['apply', '-f', '-'], {
    input: JSON.stringify({ apiVersion: 'v1', kind: 'Node', metadata: { name: node } }),
  });
  await plane.kubectl([
    'patch',
    'node',
    node,
    '--subresource=status',
    '--type=merge',
    '-p',
    JSON.stringify({
      status: {
        addresses: [{ type: 'InternalIP', address: '127.0.0.1' }],
        daemonEndpoints: { kubeletEndpoint: { Port: port } },
      },
    }),
  ]);
  return {
    node,
    write: (line) => {
      for (const res of open) res.write(`${line}\n`);
    },
    get streams() {
      return open.size;
    },
    stop: async () => {
      for (const res of open) res.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
