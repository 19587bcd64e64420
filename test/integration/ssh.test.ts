// The SSH enforcer between the real ssh/sftp clients and a real OpenSSH server.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { BundleConnection, BundlePolicy } from '../../api/bundle.ts';
import type { DataEvent, RequestEvent, SessionEvent } from '../../api/events.ts';
import type { ApprovalRequest, ApprovalResult, Approvals, Enforcer } from '../../sidecar/core/enforcer.ts';
import { policy } from '../../sidecar/policy/fixtures.ts';
import { generateHostKey, serveSsh } from '../../sidecar/ssh/enforcer.ts';
import { runCommand } from '../support/process.ts';
import { generateKeyPair, type KeyPair, type Sshd, sshToEnforcer, startSshd } from '../support/sshd.ts';
import { requires } from '../support/tools.ts';

/** Approvals decided by the test, programmatically, through the real interface. */
class ScriptedApprovals implements Approvals {
  readonly requests: ApprovalRequest[] = [];
  decide: (request: ApprovalRequest) => ApprovalResult | 'never' = () => 'never';
  request(request: ApprovalRequest, signal?: AbortSignal): Promise<ApprovalResult> {
    this.requests.push(request);
    const answer = this.decide(request);
    if (answer !== 'never') return new Promise((resolve) => setTimeout(() => resolve(answer), 50));
    // Nobody decides: the request expires after its timeout, as the operator's flow does.
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve({ approved: false, outcome: 'expired' }), request.timeoutMs);
      signal?.addEventListener('abort', () => clearTimeout(timer));
    });
  }
}

describe('SSH enforcer', requires('sshd', 'ssh', 'sftp'), () => {
  let sshd: Sshd;
  let agentKey: KeyPair;
  let enforcerHostKey: { private: string; public: string };
  let work: string;
  const events: SessionEvent[] = [];
  const approvals = new ScriptedApprovals();
  let enforcer: Enforcer | undefined;

  before(async () => {
    sshd = await startSshd();
    agentKey = generateKeyPair(sshd.dir, 'agent');
    enforcerHostKey = generateHostKey();
    work = join(sshd.dir, 'work');
    mkdirSync(work);
  });
  after(async () => {
    await enforcer?.close();
    await sshd?.stop();
  });

  function connection(policies: BundlePolicy[], knownHosts = sshd.knownHosts): BundleConnection {
    return {
      name: 'web-1',
      namespace: 'default',
      protocol: 'ssh',
      host: sshd.host,
      port: sshd.port,
      tls: { mode: 'disable' },
      credentials: { username: sshd.user, privateKey: sshd.clientKey.privateKey },
      ssh: { knownHosts },
      policies,
    };
  }

  /** Starts a fresh enforcer for the given policies and returns the ssh client's arguments. */
  async function enforce(policies: BundlePolicy[], knownHosts?: string[]): Promise<string[]> {
    await enforcer?.close();
    events.length = 0;
    approvals.requests.length = 0;
    enforcer = await serveSsh({
      connection: connection(policies, knownHosts),
      identity: { namespace: 'default', serviceAccount: 'agent', pod: 'agent-0' },
      listen: { host: '127.0.0.1', port: 0 },
      events: { emit: (event) => events.push(event) },
      approvals,
      hostKey: enforcerHostKey.private,
    });
    return sshToEnforcer({
      dir: sshd.dir,
      port: enforcer.address.port,
      hostKey: enforcerHostKey.public,
      agentKeyPath: agentKey.path,
    });
  }

  const target = 'agent@127.0.0.1';
  const requests = () => events.filter((e): e is RequestEvent => e.type === 'request');
  /** Waits until the enforcer has recorded the session's end (events are emitted asynchronously). */
  async function settled(count = 1): Promise<void> {
    for (let i = 0; i < 100 && events.filter((e) => e.type === 'session.end').length < count; i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  const cards = policy({
    name: 'ops',
    masking: [{ name: 'pii', detectors: ['credit-card', 'email'], strategy: 'redact', indirectUse: 'deny' }],
  });
  const noRm = policy({
    name: 'ops',
    rules: [
      {
        name: 'no-rm-rf',
        action: 'deny',
        message: 'recursive deletes are not allowed',
        ssh: { commands: ['rm -rf *', 'rm -r *'] },
      },
    ],
  });

  it('runs an allowed command with the held key and masks its output', async () => {
    const ssh = await enforce([cards]);
    const result = await runCommand('ssh', [
      ...ssh,
      target,
      'echo card 4111111111111111; echo mail alice@example.com; whoami',
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.ok(!result.stdout.includes('4111111111111111'), result.stdout);
    assert.ok(!result.stdout.includes('alice@example.com'), result.stdout);
    assert.match(result.stdout, /card \[REDACTED:credit-card\]/);
    assert.match(result.stdout, new RegExp(`^${sshd.user}$`, 'm'));
    await settled();
    const [request] = requests();
    // The recorded command line is masked like the output.
    assert.equal(request?.text, 'echo card [REDACTED:credit-card]; echo mail [REDACTED:email]; whoami');
    assert.equal(request?.outcome, 'masked');
    assert.ok(Object.values(request?.masked ?? {}).reduce((a, b) => a + b, 0) >= 2);
    assert.equal((request as RequestEvent & { exitStatus?: number }).exitStatus, 0);
    assert.ok(!JSON.stringify(events).includes('4111111111111111'));
    assert.ok(!JSON.stringify(events).includes('PRIVATE KEY'));
  });

  it('masks a value that the remote program writes in pieces', async () => {
    const ssh = await enforce([cards]);
    const result = await runCommand('ssh', [
      ...ssh,
      target,
      // Separate writes, well within the 25 ms a partial line is held (a pause longer than that
      // releases it: output.test.ts covers every split point, this the path through sshd).
      'printf 4111; printf 1111; printf 11111111; echo; printf 4111111111111111 >&2',
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.ok(!result.stdout.includes('41111111'), result.stdout);
    assert.ok(!result.stderr.includes('41111111'), result.stderr);
    assert.match(result.stdout, /REDACTED/);
  });

  it('passes the exit status and stdin through', async () => {
    const ssh = await enforce([cards]);
    const result = await runCommand('ssh', [...ssh, target, 'cat; exit 7'], 'from stdin\n');
    assert.equal(result.code, 7);
    assert.equal(result.stdout, 'from stdin\n');
  });

  it('refuses rm -rf spelled many ways before anything runs', async () => {
    const ssh = await enforce([noRm]);
    const canary = join(work, 'canary');
    mkdirSync(join(canary, 'sub'), { recursive: true });
    const spellings = [
      `rm -rf ${canary}`,
      `rm -r -f ${canary}`,
      `rm -fr ${canary}`,
      `/bin/rm -rf ${canary}`,
      `\\rm -rf ${canary}`,
      `"rm" -rf ${canary}`,
      `r''m -rf ${canary}`,
      `sudo rm -rf ${canary}`,
      `env rm -rf ${canary}`,
      `echo ${canary} | xargs rm -rf`,
      `sh -c 'rm -rf ${canary}'`,
      `bash -c "cd / && rm -rf ${canary}"`,
      `$(echo rm) -rf ${canary}`,
      `echo ${Buffer.from(`rm -rf ${canary}`).toString('base64')} | base64 -d | sh`,
      `eval "rm -rf ${canary}"`,
      `true\nrm -rf ${canary}`,
      `true;rm -rf ${canary}`,
      `echo \`rm -rf ${canary}\``,
      `rm\t-rf\t${canary}`,
    ];
    for (const line of spellings) {
      const result = await runCommand('ssh', [...ssh, target, line]);
      assert.equal(result.code, 126, `${line}: ${result.stderr}`);
      assert.match(result.stderr, /airlock: command denied by AccessPolicy "ops"/, line);
      assert.ok(existsSync(join(canary, 'sub')), `canary removed by: ${line}`);
    }
    const ls = await runCommand('ssh', [...ssh, target, `ls ${canary}`]);
    assert.equal(ls.code, 0);
    assert.equal(ls.stdout, 'sub\n');
    await settled(spellings.length + 1);
    const blocked = requests().filter((r) => r.outcome === 'blocked');
    assert.equal(blocked.length, spellings.length);
    assert.ok(blocked.some((r) => r.rule === 'no-rm-rf'));
    assert.ok(requests().some((r) => r.outcome === 'allowed' && r.text === `ls ${canary}`));
  });

  describe('approval', () => {
    const held = policy({
      name: 'ops',
      rules: [
        {
          name: 'approve-touch',
          action: 'require-approval',
          ssh: { commands: ['touch *'] },
          approval: { approvers: { groups: ['sre'] }, timeout: '1s', scope: 'statement' },
        },
      ],
    });

    it('runs the command once approved', async () => {
      const ssh = await enforce([held]);
      approvals.decide = () => ({
        approved: true,
        outcome: 'approved',
        decidedBy: 'alice',
        request: 'touch-9c1e',
      });
      const file = join(work, 'approved');
      const result = await runCommand('ssh', [...ssh, target, `touch ${file}`]);
      assert.equal(result.code, 0, result.stderr);
      assert.ok(existsSync(file));
      assert.equal(approvals.requests.length, 1);
      assert.equal(approvals.requests[0]?.rule, 'approve-touch');
      assert.equal(approvals.requests[0]?.text, `touch ${file}`);
      assert.deepEqual(approvals.requests[0]?.approvers, { groups: ['sre'], users: [] });
      await settled();
      const [request] = requests();
      assert.equal(request?.outcome, 'approved');
      // The event names the AccessRequest that approved it.
      assert.deepEqual(request?.approval, { request: 'touch-9c1e', decidedBy: 'alice' });
    });

    it('refuses it when denied, and when nobody decides in time', async () => {
      const ssh = await enforce([held]);
      approvals.decide = () => ({ approved: false, outcome: 'denied', decidedBy: 'bob', reason: 'not now' });
      const denied = join(work, 'denied');
      const result = await runCommand('ssh', [...ssh, target, `touch ${denied}`]);
      assert.equal(result.code, 126);
      assert.match(result.stderr, /denied by approver bob.*not now/);
      assert.ok(!existsSync(denied));

      approvals.decide = () => 'never';
      const expired = join(work, 'expired');
      const began = Date.now();
      const late = await runCommand('ssh', [...ssh, target, `touch ${expired}`]);
      assert.equal(late.code, 126);
      assert.match(late.stderr, /not approved in time/);
      assert.ok(Date.now() - began >= 900);
      assert.ok(!existsSync(expired));
      await settled(2);
      assert.deepEqual(
        requests().map((r) => r.outcome),
        ['denied', 'expired'],
      );
      assert.deepEqual(
        requests().map((r) => [r.error?.code, r.error?.wire]),
        [
          ['approval-denied', '126'],
          ['approval-expired', '126'],
        ],
      );
    });
  });

  it('records a shell with a pty as asciicast data, masked', async () => {
    const ssh = await enforce([cards]);
    const result = await runCommand(
      'ssh',
      [...ssh, '-tt', target],
      'echo marker-$((40+2))\necho 4111111111111111\nexit 3\n',
    );
    assert.equal(result.code, 3, result.stderr);
    assert.match(result.stdout, /marker-42/);
    assert.ok(!result.stdout.includes('4111111111111111'), 'the agent sees masked terminal output');
    await settled();
    const data = events.filter((e): e is DataEvent => e.type === 'data');
    const input = data
      .filter((e) => e.stream === 'input')
      .map((e) => e.data)
      .join('');
    const output = data
      .filter((e) => e.stream === 'output')
      .map((e) => e.data)
      .join('');
    assert.match(input, /echo marker-\$\(\(40\+2\)\)/);
    assert.match(output, /marker-42/);
    assert.ok(!output.includes('4111111111111111'));
    assert.ok(!input.includes('4111111111111111'), 'typed input is recorded masked');
    assert.ok(
      data.every((e, i) => i === 0 || e.at >= data[i - 1]!.at),
      'asciicast times are monotonic',
    );
    assert.equal(requests()[0]?.kind, 'shell');
  });

  it('refuses a shell where the policy has command rules or denies interactive sessions', async () => {
    let ssh = await enforce([noRm]);
    let result = await runCommand('ssh', [...ssh, '-tt', target], 'echo should-not-run\nexit\n');
    assert.equal(result.code, 126);
    assert.match(result.stdout + result.stderr, /interactive shell denied.*command rules/);
    ssh = await enforce([
      policy({ name: 'ops', rules: [{ name: 'no-shells', action: 'deny', ssh: { interactive: true } }] }),
    ]);
    result = await runCommand('ssh', [...ssh, '-T', target], 'echo should-not-run\n');
    assert.equal(result.code, 126);
    assert.match(result.stderr, /rule "no-shells"/);
    // An exec request is not interactive, so the same policy lets it through.
    result = await runCommand('ssh', [...ssh, target, 'echo fine']);
    assert.equal(result.stdout, 'fine\n');
  });

  it('allows sftp where nothing forbids it, and refuses it per policy', async () => {
    writeFileSync(join(work, 'file.txt'), 'hello sftp\n');
    const open = policy({ name: 'ops' });
    let ssh = await enforce([open]);
    const sftpArgs = (args: string[]) => args.map((a) => (a === '-p' ? '-P' : a));
    let result = await runCommand(
      'sftp',
      [...sftpArgs(ssh), '-b', '-', target],
      `get ${join(work, 'file.txt')} ${join(work, 'copy.txt')}\n`,
    );
    assert.equal(result.code, 0, result.stderr);
    assert.ok(existsSync(join(work, 'copy.txt')));

    ssh = await enforce([
      policy({
        name: 'ops',
        rules: [{ name: 'no-interactive', action: 'deny', ssh: { interactive: true } }],
      }),
    ]);
    result = await runCommand('sftp', [...sftpArgs(ssh), '-b', '-', target], 'ls\n');
    assert.notEqual(result.code, 0);
    await settled();
    assert.equal(requests()[0]?.kind, 'subsystem');
    assert.equal(requests()[0]?.outcome, 'blocked');

    // Masking policies cannot mask sftp's binary protocol: refused too.
    ssh = await enforce([cards]);
    result = await runCommand('sftp', [...sftpArgs(ssh), '-b', '-', target], 'ls\n');
    assert.notEqual(result.code, 0);
  });

  it('refuses port forwarding', async () => {
    const ssh = await enforce([policy({ name: 'ops' })]);
    const direct = await runCommand('ssh', [...ssh, '-W', `127.0.0.1:${sshd.port}`, target], '');
    assert.equal(direct.code, 255);
    assert.match(direct.stderr, /stdio forwarding failed|administratively prohibited|open failed/);
    const remote = await runCommand('ssh', [
      ...ssh,
      '-o',
      'ExitOnForwardFailure=yes',
      '-R',
      '0:127.0.0.1:9',
      target,
      'sleep 5',
    ]);
    assert.equal(remote.code, 255);
    assert.match(remote.stderr, /forwarding failed/);
    await settled(2);
    assert.ok(requests().some((r) => r.kind === 'direct-tcpip' && r.outcome === 'blocked'));
    assert.ok(requests().some((r) => r.kind === 'tcpip-forward' && r.outcome === 'blocked'));
  });

  it('offers the agent no CBC cipher and no SHA-1 MAC; AEAD and CTR with SHA-2 connect', async () => {
    const ssh = await enforce([policy({ name: 'ops' })]);
    for (const [ciphers, macs] of [
      ['aes128-cbc,aes256-cbc', 'hmac-sha2-256'],
      ['aes128-ctr', 'hmac-sha1'],
      ['aes256-ctr', 'hmac-sha1-etm@openssh.com'],
    ]) {
      // ssh takes the first value of an option: this LogLevel before the one in `ssh`.
      const refused = await runCommand('ssh', [
        '-o',
        'LogLevel=INFO',
        ...ssh,
        '-c',
        ciphers!,
        '-m',
        macs!,
        target,
        'true',
      ]);
      assert.equal(refused.code, 255, `${ciphers} ${macs}`);
      assert.match(refused.stderr, /Unable to negotiate .*no matching (cipher|MAC) found/);
    }
    for (const [ciphers, macs] of [
      ['aes128-gcm@openssh.com', 'hmac-sha2-256'],
      ['chacha20-poly1305@openssh.com', 'hmac-sha2-256'],
      ['aes256-ctr', 'hmac-sha2-512-etm@openssh.com'],
    ]) {
      const served = await runCommand('ssh', [...ssh, '-c', ciphers!, '-m', macs!, target, 'echo ok']);
      assert.equal(served.stdout, 'ok\n', `${ciphers} ${macs}: ${served.stderr}`);
    }
  });

  it('refuses a target whose host key is not in knownHosts, with a clear message', async () => {
    const other = generateKeyPair(sshd.dir, `other-${Date.now()}`);
    const [type, key] = other.publicKey.split(' ');
    const ssh = await enforce([cards], [`[127.0.0.1]:${sshd.port} ${type} ${key}`]);
    const result = await runCommand('ssh', [...ssh, target, 'echo should-not-run']);
    assert.equal(result.code, 255);
    assert.match(
      result.stderr,
      /host key verification failed: .* presented ssh-ed25519 SHA256:.*not in Connection web-1's ssh.knownHosts/,
    );
    assert.ok(!result.stdout.includes('should-not-run'));
    await settled();
    assert.ok(events.some((e) => e.type === 'protocol.error' && e.code === 'host-key-rejected'));
  });
});
