// `airlock local` serving a kubernetes Connection to a real kube-apiserver, as the CLI in its
// own process: it writes the agent's kubeconfig (no credential in it) and prints where, and the
// real kubectl with that kubeconfig gets Secrets redacted and a namespace delete refused.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import YAML from 'yaml';
import { type ControlPlane, startControlPlane } from '../support/controlplane.ts';
import { agentToken } from '../support/kubernetes.ts';
import { startLocal } from '../support/local.ts';
import { freePort, type Service, temporaryDirectory } from '../support/process.ts';
import { requires, tool } from '../support/tools.ts';

const run = promisify(execFile);
const _cli = new URL('../../bin/airlock.js', import.meta.url).pathname;
const password = 'hunter2-correct-horse';

const object = (kind: string, name: string, body: object) => ({
  apiVersion: kind === 'Secret' ? 'v1' : 'airlock.dev/v1alpha1',
  kind,
  metadata: { name, namespace: 'ops' },
  ...body,
});

describe('airlock local with a kubernetes Connection', requires('kube-apiserver', 'etcd', 'kubectl'), () => {
  let plane: ControlPlane;
  let work: { path: string; remove(): Promise<void> };
  let server: Service | undefined;
  let kubeconfig: string;

  const kubectl = (args: string[]) =>
    run(tool('kubectl'), args, { env: { ...process.env, KUBECONFIG: kubeconfig, HOME: work.path } }).then(
      (r) => ({ code: 0, out: r.stdout, err: r.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => ({
        code: e.code,
        out: e.stdout,
        err: e.stderr,
      }),
    );

  before(async () => {
    plane = await startControlPlane();
    work = await temporaryDirectory('kubernetes-local');
    const token = await agentToken(plane);
    await plane.kubectl(['create', 'namespace', 'prod']);
    await plane.kubectl(['create', 'secret', 'generic', 'db', `--from-literal=password=${password}`]);
    const api = new URL(plane.url);
    const dir = join(work.path, 'manifests');
    mkdirSync(dir);
    writeFileSync(
      join(dir, 'cluster.yaml'),
      [
        object('Secret', 'cluster-token', { stringData: { token } }),
        object('Secret', 'cluster-ca', { stringData: { 'ca.crt': plane.ca } }),
        object('Connection', 'cluster', {
          spec: {
            protocol: 'kubernetes',
            host: api.hostname,
            port: Number(api.port),
            tls: { mode: 'verify-full', caSecretRef: { name: 'cluster-ca' } },
            credentials: { secretRef: { name: 'cluster-token' } },
          },
        }),
        object('AccessPolicy', 'agents', {
          spec: {
            subjects: [{ kind: 'ServiceAccount', name: 'agent' }],
            connections: ['cluster'],
            rules: [
              {
                name: 'no-namespace-deletes',
                action: 'deny',
                kubernetes: { verbs: ['delete'], resources: ['/namespaces'] },
              },
            ],
          },
        }),
      ]
        .map((o) => YAML.stringify(o))
        .join('---\n'),
    );
    const logFile = join(work.path, 'airlock.log');
    const started = await startLocal({
      manifests: dir,
      logFile,
      listen: { cluster: `127.0.0.1:${await freePort()}` },
      store: join(work.path, 'store'),
    });
    server = started.service;
    const log = started.log;
    kubeconfig = /KUBECONFIG=(\S+) kubectl get pods/.exec(log)?.[1] ?? '';
    assert.ok(kubeconfig, log);
  });
  after(async () => {
    await server?.stop();
    await work?.remove();
    await plane?.stop();
  });

  it('prints a kubeconfig that names the listener and holds no credential', async () => {
    const config = JSON.parse(await readFile(kubeconfig, 'utf8'));
    assert.match(config.clusters[0].cluster.server, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.deepEqual(config.users[0].user, {});
  });

  it('redacts Secrets and refuses a namespace delete for the real kubectl', async () => {
    const secret = await kubectl(['get', 'secret', 'db', '-o', 'yaml']);
    assert.equal(secret.code, 0, secret.err);
    assert.ok(!secret.out.includes(Buffer.from(password).toString('base64')), secret.out);
    assert.match(secret.out, /password: W1JFREFDVEVEXQ==/);
    const pods = await kubectl(['get', 'pods', '-A']);
    assert.equal(pods.code, 0, pods.err);
    const deleted = await kubectl(['delete', 'namespace', 'prod']);
    assert.notEqual(deleted.code, 0);
    assert.match(
      deleted.err,
      /Forbidden.*airlock: request denied by AccessPolicy "agents" rule "no-namespace-deletes"/,
    );
    await plane.kubectl(['get', 'namespace', 'prod']);
  });
});
