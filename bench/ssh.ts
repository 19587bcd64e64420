// SSH data path: the real ssh client running `cat` of a 100 MB text file (log lines, a card
// number and an email every 1000th line) against a real sshd, direct vs through the enforcer,
// interleaved round by round. The enforcer runs as `airlock local` in its own process and
// serves two Connections to the same sshd: one whose policy masks output with detectors, one
// whose policy only has command rules, so the masking path and the plain relay show apart.
import { execFile, spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { nodeFlags } from '../bin/node-flags.js';
import { freePort, startService, waitFor } from '../test/support/process.ts';
import { type Sshd, startSshd } from '../test/support/sshd.ts';
import { findTool } from '../test/support/tools.ts';

const run = promisify(execFile);
const repository = new URL('../', import.meta.url).pathname;
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const megabytes = Number(process.env.BENCH_SSH_MB ?? 100);
const MB = 1024 * 1024;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function memory(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0) / 1024;
}
const rss = (pid: number) => memory(pid, 'VmRSS');
const peakRss = (pid: number) => memory(pid, 'VmHWM');

/** megabytes of log lines; every 1000th carries a card number and an email. */
function writeLogFile(path: string): number {
  const lines: string[] = [];
  for (let i = 0; i < 1000; i++) {
    const at = `2025-03-01T12:${String(i % 60).padStart(2, '0')}:${String((i * 7) % 60).padStart(2, '0')}.${String(i).padStart(3, '0')}Z`;
    lines.push(
      i === 999
        ? `${at} WARN payment declined card=4111111111111111 customer=alice@example.com order=${100000 + i}\n`
        : `${at} INFO GET /api/v1/orders/${100000 + i} status=200 bytes=${(i * 37) % 9000} duration_ms=${i % 97} worker=${i % 8}\n`,
    );
  }
  const block = Buffer.from(lines.join(''));
  const fd = openSync(path, 'w');
  let size = 0;
  while (size < megabytes * MB) {
    const part = block.subarray(0, Math.min(block.length, megabytes * MB - size));
    writeSync(fd, part);
    size += part.length;
  }
  closeSync(fd);
  return size;
}

async function startEnforcer(sshd: Sshd, work: string) {
  const ports = { masked: await freePort(), plain: await freePort() };
  const connection = (name: string) => `apiVersion: airlock.dev/v1alpha1
kind: Connection
metadata: {name: ${name}, namespace: bench}
spec:
  protocol: ssh
  host: 127.0.0.1
  port: ${sshd.port}
  credentials: {secretRef: {name: web}}
  ssh:
    knownHosts: ${JSON.stringify(sshd.knownHosts)}
`;
  const rules = `  rules:
    - {name: no-rm-rf, action: deny, ssh: {commands: ["rm -rf *", "rm -r *"]}}
    - {name: no-shells, action: deny, ssh: {interactive: true}}
`;
  writeFileSync(
    join(work, 'manifests.yaml'),
    `apiVersion: v1
kind: Secret
metadata: {name: web, namespace: bench}
stringData:
  username: ${sshd.user}
  privateKey: ${JSON.stringify(sshd.clientKey.privateKey)}
---
${connection('web-masked')}---
${connection('web-plain')}---
apiVersion: airlock.dev/v1alpha1
kind: AccessPolicy
metadata: {name: masked, namespace: bench}
spec:
  subjects: [{kind: ServiceAccount, name: agent}]
  connections: [web-masked]
  masking:
    - name: pii
      detectors: [credit-card, email, us-ssn, phone, iban]
      strategy: redact
${rules}---
apiVersion: airlock.dev/v1alpha1
kind: AccessPolicy
metadata: {name: plain, namespace: bench}
spec:
  subjects: [{kind: ServiceAccount, name: agent}]
  connections: [web-plain]
${rules}`,
  );
  const service = startService(
    'airlock local',
    process.execPath,
    [
      ...nodeFlags('local'), // as the CLI would re-run itself; so the measured process is the enforcer
      join(repository, 'bin/airlock.js'),
      'local',
      '-f',
      join(work, 'manifests.yaml'),
      '--as',
      'system:serviceaccount:bench:agent',
      '--listen',
      `web-masked=127.0.0.1:${ports.masked}`,
      '--listen',
      `web-plain=127.0.0.1:${ports.plain}`,
      '--store',
      join(work, 'store'),
    ],
    { logFile: join(work, 'airlock.log') },
  );
  await waitFor(
    'airlock local',
    async () => readFileSync(join(work, 'airlock.log'), 'utf8').includes('ready'),
    { service },
  );
  return { ports, pid: service.child.pid!, stop: () => service.stop() };
}

/** Runs ssh with the remote command, counting what arrives on stdout with wc -c. */
function transfer(args: string[]): Promise<{ seconds: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn('bash', ['-o', 'pipefail', '-c', 'ssh "$@" | wc -c', 'ssh', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 300_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      if (code !== 0) reject(new Error(`ssh exited ${code}: ${stderr}`));
      else resolve({ seconds, bytes: Number(stdout.trim()) });
    });
  });
}

interface Row {
  name: string;
  /** MB/s once connected: the file's size over the wall time less the setup time. */
  throughput: number;
  seconds: number;
  /** Wall time of `ssh ... true`: connection, key exchange, authentication, exec. */
  setup: number;
  bytes: number;
}

export async function benchSsh(log: (line: string) => void): Promise<{ rows: Row[]; notes: string[] }> {
  const sshd = await startSshd();
  const work = mkdtempSync(join(tmpdir(), 'airlock-bench-ssh-'));
  const rows: Row[] = [];
  const notes: string[] = [];
  try {
    const file = join(work, 'app.log');
    const size = writeLogFile(file);
    writeFileSync(join(work, 'known_hosts'), `${sshd.knownHosts.join('\n')}\n`);
    const common = ['-F', '/dev/null', '-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR'];
    const direct = [
      ...common,
      '-i',
      sshd.clientKey.path,
      '-o',
      'IdentitiesOnly=yes',
      '-o',
      `UserKnownHostsFile=${join(work, 'known_hosts')}`,
      '-p',
      String(sshd.port),
      `${sshd.user}@127.0.0.1`,
    ];
    const enforcer = await startEnforcer(sshd, work);
    const idle = rss(enforcer.pid);
    try {
      // The enforcer's host key is new on every start; the agent trusts it on first use.
      const through = (port: number) => [
        ...common,
        '-o',
        'StrictHostKeyChecking=no',
        '-o',
        'UserKnownHostsFile=/dev/null',
        '-p',
        String(port),
        'agent@127.0.0.1',
      ];
      const { stdout: sample } = await run('ssh', [
        ...through(enforcer.ports.masked),
        `head -c 300000 ${file}`,
      ]);
      if (sample.includes('4111111111111111') || !sample.includes('[REDACTED:credit-card]'))
        throw new Error('the masked Connection did not mask');
      const { stderr: refused } = await run('ssh', [
        ...through(enforcer.ports.plain),
        `rm -rf ${work}/nothing`,
      ]).catch((error: { stderr: string }) => error);
      if (!/denied by AccessPolicy/.test(refused)) throw new Error(`rm -rf was not refused: ${refused}`);

      const paths = [
        { name: 'direct (OpenSSH client → sshd)', args: direct },
        { name: 'enforcer, no masking (command rules only)', args: through(enforcer.ports.plain) },
        { name: 'enforcer, masking with 5 detectors', args: through(enforcer.ports.masked) },
      ];
      const results = paths.map(() => [] as { seconds: number; bytes: number }[]);
      const setups = paths.map(() => [] as number[]);
      for (let round = 0; round < rounds; round++) {
        for (const [i, path] of paths.entries()) {
          setups[i]!.push((await transfer([...path.args, 'true'])).seconds);
          const result = await transfer([...path.args, `cat ${file}`]);
          // Masking changes the length; the other paths must deliver every byte.
          if (i < 2 && result.bytes !== size)
            throw new Error(`${path.name}: ${result.bytes} of ${size} bytes`);
          results[i]!.push(result);
          log(`  round ${round + 1} ${path.name}: ${result.seconds.toFixed(2)} s`);
        }
      }
      for (const [i, path] of paths.entries()) {
        const seconds = median(results[i]!.map((r) => r.seconds));
        const setup = median(setups[i]!);
        rows.push({
          name: path.name,
          seconds,
          setup,
          throughput: size / MB / (seconds - setup),
          bytes: results[i]![0]!.bytes,
        });
      }
      notes.push(`enforcer RSS: idle ${idle.toFixed(0)} MB, peak ${peakRss(enforcer.pid).toFixed(0)} MB`);
    } finally {
      await enforcer.stop();
    }
  } finally {
    await sshd.stop();
    rmSync(work, { recursive: true, force: true });
  }
  return { rows, notes };
}

function table(rows: Row[]): string {
  const direct = rows[0]!;
  const lines = [
    '| path | wall time | setup (`ssh … true`) | throughput after setup | / direct | bytes received |',
    '|---|---|---|---|---|---|',
  ];
  for (const row of rows) {
    lines.push(
      `| ${row.name} | ${row.seconds.toFixed(2)} s | ${row.setup.toFixed(2)} s | ${row.throughput.toFixed(1)} MB/s | ${(row.throughput / direct.throughput).toFixed(2)}× | ${row.bytes} |`,
    );
  }
  return lines.join('\n');
}

if (import.meta.main) {
  const missing = ['sshd', 'ssh'].filter((t) => !findTool(t));
  if (missing.length) {
    console.log(`SSH: not run: missing ${missing.join(', ')}`);
    process.exit(1);
  }
  console.log(
    `SSH: ssh exec \`cat\` of a ${megabytes} MB log file (1 MB = 2^20 bytes), median of ${rounds} interleaved rounds`,
  );
  const { rows, notes } = await benchSsh((line) => console.log(line));
  console.log(table(rows));
  for (const note of notes) console.log(note);
}
