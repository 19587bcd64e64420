// Variations of a file deletion sent by the real ssh client through the SSH enforcer to a real
// OpenSSH server. Each line is first shown to delete the file where no rule applies (so it is a
// real attack, read by the real bash), then refused, with the file intact, under an "rm *"
// rule and under a file-deletion class rule.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { BundlePolicy } from '../../api/bundle.ts';
import type { Enforcer } from '../../sidecar/core/enforcer.ts';
import { policy } from '../../sidecar/policy/fixtures.ts';
import { generateHostKey, serveSsh } from '../../sidecar/ssh/enforcer.ts';
import { runCommand } from '../support/process.ts';
import { generateKeyPair, type KeyPair, type Sshd, sshToEnforcer, startSshd } from '../support/sshd.ts';
import { requires } from '../support/tools.ts';

/** Lines that run rm on the canary: an "rm *" rule and a file-deletion rule refuse each. */
function rmVariations(canary: string, lock: string): string[] {
  const hex = [...'rm'].map((c) => `\\x${c.charCodeAt(0).toString(16)}`).join('');
  return [
    `rm -f ${canary}`,
    `rm -f -- ${canary}`,
    `/usr/bin/rm ${canary}`,
    `/bin/r? ${canary}`,
    `r''m ${canary}`,
    `\\rm ${canary}`,
    `"r"m ${canary}`,
    `$'${hex}' ${canary}`,
    `x=rm; $x ${canary}`,
    `{rm,${canary}}`,
    `r\\\nm ${canary}`,
    `time -p rm ${canary}`,
    `coproc { rm ${canary}; }; wait`,
    `set -- x; for a; do rm ${canary}; done`,
    `trap 'rm ${canary}' EXIT`,
    `f() { rm ${canary}; }; f`,
    `echo $(( a[$(rm ${canary})0] ))`,
    `x='a[$(rm ${canary})0]'; echo $((x))`,
    `echo $( (rm ${canary}) )`,
    `bash <<< 'rm ${canary}'`,
    `sh <<EOF\nrm ${canary}\nEOF`,
    `eval 'rm ${canary}'`,
    `exec rm ${canary}`,
    `command rm ${canary}`,
    `nohup rm ${canary}`,
    `timeout -s KILL 5 rm ${canary}`,
    `nice -n 5 rm ${canary}`,
    `ionice -c 3 rm ${canary}`,
    `taskset -c 0 rm ${canary}`,
    `chrt -o 0 rm ${canary}`,
    `stdbuf -o0 rm ${canary}`,
    `setsid -w rm ${canary}`,
    `setpriv --nnp rm ${canary}`,
    `prlimit --nofile=1024 rm ${canary}`,
    `linux64 rm ${canary}`,
    `flock ${lock} rm ${canary}`,
    `flock ${lock} -c 'rm ${canary}'`,
    `env -i PATH=/usr/bin:/bin rm ${canary}`,
    `env -S 'rm ${canary}'`,
    `runuser -u root -- rm ${canary}`,
    `su root -c 'rm ${canary}'`,
    `script -qc 'rm ${canary}' /dev/null`,
    `find ${canary} -exec rm {} \\;`,
    `echo ${canary} | xargs rm`,
    `sh -c 'nice sh -c "rm ${canary}"'`,
    `perl -e 'unlink "${canary}"'`,
    `python3 -c 'import os; os.remove("${canary}")'`,
    `awk 'BEGIN { system("rm ${canary}") }'`,
    `echo x | sed 's|x|rm ${canary}|e'`,
    `printf 'rm ${canary}' > ${lock}.env; BASH_ENV=${lock}.env bash -c true`,
    `env 'BASH_FUNC_ls%%=() { rm ${canary}; }' bash -c ls`,
    `test -v 'a[$(rm ${canary})]'`,
    `printf -v 'a[$(rm ${canary})]' x`,
    `x=1; bash -c 'rm $0' ${canary}`,
    `echo 'rm ${canary}' | xargs -I{} sh -c '{}'`,
    `echo ${canary} | xargs -I% sh -c 'rm %'`,
    `tar -cf /dev/null /etc/hostname --checkpoint=1 --checkpoint-action=exec='rm ${canary}'`,
  ];
}

/** Programs other than rm that delete: a file-deletion rule refuses them; an "rm *" rule does not name them. */
function otherDeleters(canary: string, lock: string): string[] {
  return [
    `unlink ${canary}`,
    `shred -u ${canary}`,
    `find ${canary} -delete`,
    `tar -cf ${lock}.tar --remove-files ${canary}`,
    `timeout 5 unlink ${canary}`,
  ];
}

describe('SSH enforcer against file deletion variations', requires('sshd', 'ssh'), () => {
  let sshd: Sshd;
  let agentKey: KeyPair;
  let enforcerHostKey: { private: string; public: string };
  let work: string;
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

  async function enforce(policies: BundlePolicy[]): Promise<string[]> {
    await enforcer?.close();
    enforcer = await serveSsh({
      connection: {
        name: 'web-1',
        namespace: 'default',
        protocol: 'ssh',
        host: sshd.host,
        port: sshd.port,
        tls: { mode: 'disable' },
        credentials: { username: sshd.user, privateKey: sshd.clientKey.privateKey },
        ssh: { knownHosts: sshd.knownHosts },
        policies,
      },
      identity: { namespace: 'default', serviceAccount: 'agent', pod: 'agent-0' },
      listen: { host: '127.0.0.1', port: 0 },
      events: { emit: () => undefined },
      approvals: { request: async () => ({ approved: false, outcome: 'denied' as const }) },
      hostKey: enforcerHostKey.private,
    });
    return [
      ...sshToEnforcer({
        dir: sshd.dir,
        port: enforcer.address.port,
        hostKey: enforcerHostKey.public,
        agentKeyPath: agentKey.path,
      }),
      'agent@127.0.0.1',
    ];
  }

  /** Runs each line against a fresh canary file; returns the lines after which it still exists. */
  async function survivors(ssh: string[], lines: (canary: string, lock: string) => string[]) {
    const canary = join(work, 'canary');
    const lock = join(work, 'lock');
    const kept: string[] = [];
    const results: { line: string; code: number | null; stderr: string }[] = [];
    for (const line of lines(canary, lock)) {
      writeFileSync(canary, 'data\n');
      const result = await runCommand('ssh', [...ssh, line]);
      results.push({ line, code: result.code, stderr: result.stderr });
      if (existsSync(canary)) kept.push(line);
    }
    return { kept, results };
  }

  const allowAll = policy({ name: 'ops' });
  const noRm = policy({
    name: 'ops',
    rules: [{ name: 'no-rm', action: 'deny', ssh: { commands: ['rm *'] } }],
  });
  const noDeletion = policy({
    name: 'ops',
    rules: [{ name: 'no-file-deletion', action: 'deny', ssh: { classes: ['file-deletion'] } }],
  });

  it('every variation deletes the file where no rule applies (the attacks are real)', async () => {
    const ssh = await enforce([allowAll]);
    const { kept } = await survivors(ssh, (c, l) => [...rmVariations(c, l), ...otherDeleters(c, l)]);
    assert.deepEqual(kept, []);
  });

  it('an "rm *" rule refuses every variation of rm, and the file stays', async () => {
    const ssh = await enforce([noRm]);
    const { kept, results } = await survivors(ssh, rmVariations);
    assert.equal(kept.length, rmVariations('c', 'l').length);
    for (const { line, code, stderr } of results) {
      assert.equal(code, 126, `${line}: ${stderr}`);
      assert.match(stderr, /airlock: command denied by AccessPolicy "ops"/, line);
    }
  });

  it('an "rm *" rule means the rm program: other programs that delete are not named by it', async () => {
    const ssh = await enforce([noRm]);
    const { kept } = await survivors(ssh, otherDeleters);
    assert.deepEqual(kept, []);
  });

  it('a file-deletion class rule refuses rm in every variation and the other programs that delete', async () => {
    const ssh = await enforce([noDeletion]);
    const { kept, results } = await survivors(ssh, (c, l) => [...rmVariations(c, l), ...otherDeleters(c, l)]);
    assert.equal(kept.length, results.length);
    for (const { line, code, stderr } of results) {
      assert.equal(code, 126, `${line}: ${stderr}`);
      assert.match(stderr, /airlock: command denied by AccessPolicy "ops"/, line);
    }
    const ls = await runCommand('ssh', [...ssh, `ls ${work}`]);
    assert.equal(ls.code, 0, ls.stderr);
    assert.match(ls.stdout, /^canary$/m);
  });
});
