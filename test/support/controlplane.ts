// A real Kubernetes control plane for tests: etcd and kube-apiserver on loopback with TLS,
// service-account signing keys (TokenRequest and TokenReview work), and client-certificate
// users with distinct names and groups. Each suite gets its own, on free ports.
import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { createCertificateAuthority, type KeyPairPem } from '../../operator/pki.ts';
import { freePort, type Service, startService, temporaryDirectory, waitFor } from './process.ts';
import { tool } from './tools.ts';

const run = promisify(execFile);
const repository = new URL('../../', import.meta.url).pathname;

export const users = {
  admin: { name: 'admin', groups: ['system:masters'] },
  approver: { name: 'alice', groups: ['dba-oncall'] },
  user: { name: 'bob', groups: ['developers'] },
} as const;
export type UserName = keyof typeof users;

export const serviceAccountIssuer = 'https://kubernetes.default.svc.cluster.local';

export interface ControlPlane {
  /** https://127.0.0.1:PORT */
  url: string;
  /** PEM of the CA that signed the API server's certificate and the users' certificates. */
  ca: string;
  directory: string;
  /** A kubeconfig file per user. */
  kubeconfig: Record<UserName, string>;
  credentials: Record<UserName, KeyPairPem>;
  /** Runs the real kubectl as a user; rejects with stderr on a non-zero exit. */
  kubectl(args: string[], options?: { as?: UserName; input?: string }): Promise<string>;
  /**
   * Runs the `kubectl airlock` plugin (this CLI, as kubectl-airlock on PATH) through the real
   * kubectl as a user types it; resolves with the exit code and the output (stdout, then stderr).
   */
  plugin(as: UserName, args: string[]): Promise<{ code: number; out: string; err: string }>;
  /** Applies crds/ and waits until the API server serves them. */
  installCrds(): Promise<void>;
  /** A token from the TokenRequest API, bound to a pod, for an audience. */
  podToken(
    pod: { namespace: string; name: string; uid: string; serviceAccount: string },
    audience?: string,
  ): Promise<string>;
  stop(): Promise<void>;
}

function kubeconfig(url: string, ca: string, user: string, pair: KeyPairPem): string {
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'airlock-test', cluster: { server: url, 'certificate-authority-data': b64(ca) } }],
    users: [
      {
        name: user,
        user: { 'client-certificate-data': b64(pair.certificate), 'client-key-data': b64(pair.privateKey) },
      },
    ],
    contexts: [{ name: user, context: { cluster: 'airlock-test', user, namespace: 'default' } }],
    'current-context': user,
  });
}

function get(url: string, ca: string, pair: KeyPairPem): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca, cert: pair.certificate, key: pair.privateKey, timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end();
  });
}

/**
 * The real kubectl, and the `kubectl airlock` plugin through it, as each user with a
 * kubeconfig; `directory` holds the plugin's link.
 */
export function kubectlAs(
  kubeconfigs: Record<UserName, string>,
  directory: string,
): Pick<ControlPlane, 'kubectl' | 'plugin'> {
  const file = (name: string) => join(directory, name);
  const kubectlPath = tool('kubectl');
  const kubectl: ControlPlane['kubectl'] = async (args, options = {}) => {
    const child = run(kubectlPath, [`--kubeconfig=${kubeconfigs[options.as ?? 'admin']}`, ...args], {
      maxBuffer: 16 * 1024 * 1024,
    });
    if (options.input !== undefined) child.child.stdin?.end(options.input);
    try {
      return (await child).stdout;
    } catch (error) {
      const failure = error as { stderr?: string; message: string };
      throw new Error(`kubectl ${args.join(' ')}: ${failure.stderr?.trim() || failure.message}`);
    }
  };
  let plugins: Promise<string> | undefined;
  const plugin: ControlPlane['plugin'] = async (as, args) => {
    plugins ??= (async () => {
      const links = file('plugins');
      await mkdir(links);
      await symlink(join(repository, 'bin/airlock.js'), join(links, 'kubectl-airlock'));
      return links;
    })();
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      PATH: `${await plugins}:${dirname(process.execPath)}:${process.env.PATH}`,
    };
    delete env.KUBECONFIG;
    return run(kubectlPath, ['airlock', ...args, `--kubeconfig=${kubeconfigs[as]}`], { env }).then(
      (r) => ({ code: 0, out: r.stdout.trim(), err: r.stderr.trim() }),
      (e: { code: number; stdout: string; stderr: string }) => ({
        code: e.code,
        out: `${e.stdout}${e.stderr}`.trim(),
        err: e.stderr.trim(),
      }),
    );
  };
  return { kubectl, plugin };
}

export async function startControlPlane(): Promise<ControlPlane> {
  const dir = await temporaryDirectory('controlplane');
  const services: Service[] = [];
  const stop = async () => {
    for (const service of services.reverse()) await service.stop();
    await dir.remove();
  };
  try {
    const ca = await createCertificateAuthority('airlock-test-ca');
    const serving = await ca.issue({
      commonName: 'kube-apiserver',
      dnsNames: ['localhost', 'kubernetes', 'kubernetes.default', 'kubernetes.default.svc'],
      ipAddresses: ['127.0.0.1'],
      usage: 'server',
    });
    const credentials = {} as Record<UserName, KeyPairPem>;
    for (const [key, user] of Object.entries(users) as [UserName, (typeof users)[UserName]][]) {
      credentials[key] = await ca.issue({
        commonName: user.name,
        organizations: [...user.groups],
        usage: 'client',
      });
    }
    // The aggregation layer: the API server proxies aggregated APIs (the operator's sessions)
    // with a client certificate from its own front-proxy CA and the caller in X-Remote-* headers.
    const frontProxyCa = await createCertificateAuthority('airlock-test-front-proxy-ca');
    const frontProxyClient = await frontProxyCa.issue({ commonName: 'front-proxy-client', usage: 'client' });
    const serviceAccountKey = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const file = (name: string) => join(dir.path, name);
    await writeFile(file('ca.crt'), ca.certificate);
    await writeFile(file('apiserver.crt'), serving.certificate);
    await writeFile(file('apiserver.key'), serving.privateKey, { mode: 0o600 });
    await writeFile(file('sa.key'), serviceAccountKey.privateKey.export({ type: 'pkcs8', format: 'pem' }), {
      mode: 0o600,
    });
    await writeFile(file('front-proxy-ca.crt'), frontProxyCa.certificate);
    await writeFile(file('front-proxy-client.crt'), frontProxyClient.certificate);
    await writeFile(file('front-proxy-client.key'), frontProxyClient.privateKey, { mode: 0o600 });
    await writeFile(file('sa.pub'), serviceAccountKey.publicKey.export({ type: 'spki', format: 'pem' }));

    const [etcdClient, etcdPeer, apiPort] = [await freePort(), await freePort(), await freePort()];
    const etcd = startService(
      'etcd',
      tool('etcd'),
      [
        `--data-dir=${file('etcd')}`,
        `--listen-client-urls=http://127.0.0.1:${etcdClient}`,
        `--advertise-client-urls=http://127.0.0.1:${etcdClient}`,
        `--listen-peer-urls=http://127.0.0.1:${etcdPeer}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeer}`,
        `--initial-cluster=default=http://127.0.0.1:${etcdPeer}`,
        '--unsafe-no-fsync',
        '--log-level=warn',
      ],
      { logFile: file('etcd.log') },
    );
    services.push(etcd);
    await waitFor('etcd', async () => (await fetch(`http://127.0.0.1:${etcdClient}/health`)).ok, {
      service: etcd,
      timeoutMs: 30_000,
    });

    const apiserver = startService(
      'kube-apiserver',
      tool('kube-apiserver'),
      [
        `--etcd-servers=http://127.0.0.1:${etcdClient}`,
        '--bind-address=127.0.0.1',
        '--advertise-address=127.0.0.1',
        `--secure-port=${apiPort}`,
        `--tls-cert-file=${file('apiserver.crt')}`,
        `--tls-private-key-file=${file('apiserver.key')}`,
        `--client-ca-file=${file('ca.crt')}`,
        `--service-account-key-file=${file('sa.pub')}`,
        `--service-account-signing-key-file=${file('sa.key')}`,
        `--service-account-issuer=${serviceAccountIssuer}`,
        `--api-audiences=${serviceAccountIssuer}`,
        '--service-cluster-ip-range=10.96.0.0/16',
        '--authorization-mode=RBAC',
        `--requestheader-client-ca-file=${file('front-proxy-ca.crt')}`,
        '--requestheader-allowed-names=front-proxy-client',
        '--requestheader-username-headers=X-Remote-User',
        '--requestheader-uid-headers=X-Remote-Uid',
        '--requestheader-group-headers=X-Remote-Group',
        '--requestheader-extra-headers-prefix=X-Remote-Extra-',
        `--proxy-client-cert-file=${file('front-proxy-client.crt')}`,
        `--proxy-client-key-file=${file('front-proxy-client.key')}`,
        '--allow-privileged=true',
        '--enable-priority-and-fairness=false',
        `--cert-dir=${file('certs')}`,
        '--v=1',
      ],
      { logFile: file('kube-apiserver.log') },
    );
    services.push(apiserver);
    const url = `https://127.0.0.1:${apiPort}`;
    await waitFor(
      'kube-apiserver',
      async () => (await get(`${url}/readyz`, ca.certificate, credentials.admin)) === 200,
      {
        service: apiserver,
        timeoutMs: 90_000,
      },
    );

    const kubeconfigs = {} as Record<UserName, string>;
    for (const key of Object.keys(users) as UserName[]) {
      kubeconfigs[key] = file(`${key}.kubeconfig`);
      await writeFile(kubeconfigs[key], kubeconfig(url, ca.certificate, users[key].name, credentials[key]), {
        mode: 0o600,
      });
    }
    const { kubectl, plugin } = kubectlAs(kubeconfigs, dir.path);
    return {
      url,
      ca: ca.certificate,
      directory: dir.path,
      kubeconfig: kubeconfigs,
      credentials,
      kubectl,
      plugin,
      async installCrds() {
        await kubectl(['apply', '-f', join(repository, 'crds')]);
        await kubectl([
          'wait',
          '--for=condition=Established',
          '--timeout=60s',
          'crd',
          '-l',
          'app.kubernetes.io/part-of=airlock',
        ]);
      },
      async podToken(pod, audience = 'airlock') {
        const token = await kubectl([
          'create',
          'token',
          pod.serviceAccount,
          `--namespace=${pod.namespace}`,
          `--audience=${audience}`,
          '--bound-object-kind=Pod',
          `--bound-object-name=${pod.name}`,
          `--bound-object-uid=${pod.uid}`,
        ]);
        return token.trim();
      },
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
