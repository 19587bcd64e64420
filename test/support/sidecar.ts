// The real `airlock sidecar` as a process for the agent pod `agent-0` (ServiceAccount `agent` in
// namespace `agents`) against an operator started by startOperatorProcess: the Pod created so
// that its bound token is valid, the token and the operator's CA (once published in the
// namespace) written as a pod would mount them, and a wait until the sidecar is ready; and psql
// as the agent through it.
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { ControlPlane } from './controlplane.ts';
import { freePort, type Service, startService, waitFor } from './process.ts';

const cli = new URL('../../bin/airlock.js', import.meta.url).pathname;
const run = promisify(execFile);

export interface SidecarProcess {
  service: Service;
  /** Where the agent reaches the Connection through the sidecar, on 127.0.0.1. */
  port: number;
}

export async function startSidecarProcess(
  cluster: Pick<ControlPlane, 'kubectl' | 'podToken'>,
  directory: string,
  options: { controlApiUrl: string; connection: string; protocol: string },
): Promise<SidecarProcess> {
  const kubectl = (args: string[], input?: string) =>
    cluster.kubectl(args, input === undefined ? {} : { input });
  await kubectl(
    ['apply', '-f', '-'],
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'agent-0', namespace: 'agents' },
      spec: {
        serviceAccountName: 'agent',
        containers: [{ name: 'agent', image: 'agent:1', command: ['sleep', 'infinity'] }],
      },
    }),
  );
  const pod = JSON.parse(await kubectl(['get', 'pod', 'agent-0', '-n', 'agents', '-o', 'json']));
  const token = await cluster.podToken({
    namespace: 'agents',
    name: 'agent-0',
    uid: pod.metadata.uid,
    serviceAccount: 'agent',
  });
  await waitFor('CA published', async () => {
    await kubectl(['get', 'configmap', 'airlock-ca', '-n', 'agents']);
    return true;
  });
  const ca = JSON.parse(await kubectl(['get', 'configmap', 'airlock-ca', '-n', 'agents', '-o', 'json'])).data[
    'ca.crt'
  ];
  await writeFile(join(directory, 'token'), token);
  await writeFile(join(directory, 'ca.crt'), ca);
  const port = await freePort();
  const healthPort = await freePort();
  const service = startService(
    'airlock sidecar',
    process.execPath,
    [
      cli,
      'sidecar',
      `--control-api=${options.controlApiUrl}`,
      `--token-file=${join(directory, 'token')}`,
      `--ca-file=${join(directory, 'ca.crt')}`,
      `--listen=${options.connection}=127.0.0.1:${port}/${options.protocol}`,
      `--health-port=${healthPort}`,
      `--metrics-port=${await freePort()}`,
    ],
    { logFile: join(directory, 'sidecar.log') },
  );
  await waitFor('sidecar ready', async () => (await fetch(`http://127.0.0.1:${healthPort}/readyz`)).ok, {
    service,
  });
  return { service, port };
}

/**
 * psql as the agent through the sidecar's PostgreSQL listener on `port`: any password (the sidecar
 * logs in upstream with the held credential), stopping at the first error; its output or error.
 */
export function agentPsql(port: number, sql: string): Promise<{ ok: boolean; out: string }> {
  return run(
    'psql',
    [
      '-X',
      '-At',
      '-v',
      'ON_ERROR_STOP=1',
      '-h',
      '127.0.0.1',
      '-p',
      String(port),
      '-U',
      'agent',
      '-d',
      'x',
      '-c',
      sql,
    ],
    { env: { ...process.env, PGPASSWORD: 'not-the-password', PGCONNECT_TIMEOUT: '5' } },
  ).then(
    (r) => ({ ok: true, out: r.stdout.trim() }),
    (e: { stderr: string }) => ({ ok: false, out: e.stderr.trim() }),
  );
}
