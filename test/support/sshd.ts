// A real OpenSSH server for tests: its own host key, authorized key and config in a temporary
// directory, listening on a free loopback port, logging in as the current user with a
// generated key. Tests only; it shells out to ssh-keygen.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { freePort, type Service, startService, temporaryDirectory, waitFor } from './process.ts';
import { tool } from './tools.ts';

export interface KeyPair {
  /** OpenSSH private key (PEM-like "OPENSSH PRIVATE KEY"). */
  privateKey: string;
  /** One line: "ssh-ed25519 AAAA... comment". */
  publicKey: string;
  /** Where the private key is on disk, mode 0600 (for ssh -i). */
  path: string;
}

export interface Sshd {
  host: string;
  port: number;
  /** The user the client key logs in as: whoever runs the tests. */
  user: string;
  /** The key authorized to log in. */
  clientKey: KeyPair;
  /** The server's host key as a known_hosts line ("[127.0.0.1]:port ssh-ed25519 AAAA..."). */
  knownHosts: string[];
  /** A temporary directory the test may use; removed on stop. */
  dir: string;
  service: Service;
  stop(): Promise<void>;
}

/** Generates an ed25519 key pair with ssh-keygen under dir. */
export function generateKeyPair(dir: string, name: string): KeyPair {
  const path = join(dir, name);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', path], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  return {
    privateKey: readFileSync(path, 'utf8'),
    publicKey: readFileSync(`${path}.pub`, 'utf8').trim(),
    path,
  };
}

export async function startSshd(options: { extraConfig?: string[] } = {}): Promise<Sshd> {
  const sshd = tool('sshd');
  const temp = await temporaryDirectory('sshd');
  const dir = temp.path;
  const port = await freePort();
  const hostKey = generateKeyPair(dir, 'ssh_host_ed25519_key');
  const clientKey = generateKeyPair(dir, 'client_ed25519');
  writeFileSync(join(dir, 'authorized_keys'), `${clientKey.publicKey}\n`, { mode: 0o600 });
  const sftpServer = [
    '/usr/lib/openssh/sftp-server',
    '/usr/libexec/openssh/sftp-server',
    '/usr/libexec/sftp-server',
  ].find((candidate) => existsSync(candidate));
  const config = [
    `Port ${port}`,
    'ListenAddress 127.0.0.1',
    `HostKey ${hostKey.path}`,
    `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
    `PidFile ${join(dir, 'sshd.pid')}`,
    'StrictModes no',
    'PermitRootLogin prohibit-password',
    'PubkeyAuthentication yes',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'UsePAM no',
    // Forwarding stays on so that a refusal in a test is the enforcer's, not the server's.
    'AllowTcpForwarding yes',
    'AllowAgentForwarding yes',
    'PrintMotd no',
    'PrintLastLog no',
    'LogLevel VERBOSE',
    ...(sftpServer ? [`Subsystem sftp ${sftpServer}`] : []),
    ...(options.extraConfig ?? []),
    '',
  ].join('\n');
  const configPath = join(dir, 'sshd_config');
  writeFileSync(configPath, config);
  // sshd insists on its privilege-separation directory.
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const service = startService('sshd', sshd, ['-D', '-e', '-f', configPath], {
    logFile: join(dir, 'sshd.log'),
  });
  await waitFor(
    'sshd listening',
    () =>
      new Promise<boolean>((resolve) => {
        const socket = connect(port, '127.0.0.1');
        socket.once('data', (data) => {
          socket.destroy();
          resolve(data.toString('latin1').startsWith('SSH-2.0-'));
        });
        socket.once('error', () => resolve(false));
      }),
    { service, timeoutMs: 20_000 },
  );
  const [type, key] = hostKey.publicKey.split(' ');
  return {
    host: '127.0.0.1',
    port,
    user: userInfo().username,
    clientKey,
    knownHosts: [`[127.0.0.1]:${port} ${type} ${key}`],
    dir,
    service,
    async stop() {
      await service.stop();
      await temp.remove();
    },
  };
}

/**
 * The arguments of an ssh client reaching an SSH enforcer on 127.0.0.1:`port` as the agent: its
 * own key only, no config file, and only the enforcer's host key trusted (written to a
 * known_hosts file in `dir`, one per port). The destination is the caller's.
 */
export function sshToEnforcer(options: {
  dir: string;
  port: number;
  hostKey: string;
  agentKeyPath: string;
}): string[] {
  const knownHostsFile = join(options.dir, `enforcer_known_hosts_${options.port}`);
  writeFileSync(knownHostsFile, `[127.0.0.1]:${options.port} ${options.hostKey}\n`);
  return [
    '-F',
    '/dev/null',
    '-i',
    options.agentKeyPath,
    '-o',
    'IdentitiesOnly=yes',
    '-o',
    'BatchMode=yes',
    '-o',
    'StrictHostKeyChecking=yes',
    '-o',
    `UserKnownHostsFile=${knownHostsFile}`,
    '-o',
    'LogLevel=ERROR',
    '-p',
    String(options.port),
  ];
}
