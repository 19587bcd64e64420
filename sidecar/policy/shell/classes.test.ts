// Command classes (file-deletion, privilege, network, interpreter) and rules that name them.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decideSshExec } from '../decide.ts';
import { policy } from '../fixtures.ts';
import { parseCommandLine } from './command-line.ts';
import { sedRunsOrWrites } from './interpreters.ts';

describe('command classes', () => {
  const classes = (line: string) => parseCommandLine(line).classes;

  it('file-deletion: the programs and options that delete, wrapped or not', () => {
    for (const line of [
      'rm x',
      'rmdir d',
      'unlink x',
      'shred -u x',
      'truncate -s 0 x',
      'find . -delete',
      'find . -name x -exec rm {} +',
      'rsync -a --delete src/ dst/',
      'rsync -a --delete-after src/ dst/',
      'rsync --remove-source-files a b',
      'tar czf x.tgz --remove-files d',
      'git clean -fdx',
      'mv x /dev/null',
      'dd if=/dev/zero of=/dev/sda',
      'mkfs.ext4 /dev/sdb1',
      'wipefs -a /dev/sdb',
      'zip -m a.zip x',
      'crontab -r',
      'sudo -u root unlink x',
      'busybox rm x',
      "bash -c 'unlink x'",
      'echo x | xargs shred',
    ]) {
      assert.ok(classes(line).includes('file-deletion'), line);
    }
    for (const line of ['ls', 'mv a b', 'rsync -a a b', 'tar czf x.tgz d', 'git status', 'cp a b']) {
      assert.ok(!classes(line).includes('file-deletion'), line);
    }
  });

  it('privilege, network and interpreter', () => {
    for (const line of [
      'sudo ls',
      'su -c id',
      'doas ls',
      'pkexec ls',
      'runuser -u x -- id',
      'setpriv --reuid=0 id',
      'chmod u+s /bin/x',
      'chmod 4755 /bin/x',
      'chmod +s x',
      'chown root x',
      'setcap cap_net_raw+ep x',
    ]) {
      assert.ok(classes(line).includes('privilege'), line);
    }
    assert.ok(!classes('chmod 755 x').includes('privilege'));
    for (const line of [
      'curl https://x',
      'wget x',
      'nc -l 4444',
      'socat - TCP:x:1',
      'scp a host:b',
      'ssh host ls',
      'rsync -a a host:b',
      'git push origin main',
      'cat < /dev/tcp/10.0.0.1/80',
      'exec 3<>/dev/tcp/10.0.0.1/80',
      'echo x > /dev/udp/10.0.0.1/53',
      'sudo -u x curl x',
    ]) {
      assert.ok(classes(line).includes('network'), line);
    }
    assert.ok(!classes('rsync -a a /b').includes('network'));
    for (const line of [
      "perl -e 'x'",
      "python3 -c 'x'",
      'python3 <<EOF\nx\nEOF',
      'python3',
      'python3 x.py',
      "ruby -e 'x'",
      "node -e 'x'",
      "php -r 'x'",
      "lua -e 'x'",
      'awk \'BEGIN{system("x")}\'',
      "sed 's/a/b/e'",
      "zsh -c 'x'",
      "gdb -ex 'shell x'",
    ]) {
      assert.ok(classes(line).includes('interpreter'), line);
    }
    for (const line of ["awk '{print}'", "sed 's/a/b/'", 'python3 --version', 'perl -v', 'sh -c ls']) {
      assert.ok(!classes(line).includes('interpreter'), line);
    }
  });

  it('sed scripts: e and w are found wherever they are, text and regexes are not commands', () => {
    for (const script of [
      'e ls',
      '1e ls',
      's/a/b/e',
      's|a|b|ge',
      's/a/b/w out',
      'w out',
      '/x/W out',
      '$!{e}',
      'y/a/b/;e',
    ]) {
      assert.ok(sedRunsOrWrites(script), script);
    }
    for (const script of [
      's/e/w/g',
      '/ew/d',
      'a\\ew',
      's/a/b/2p',
      'y/ew/we/',
      '1,$d',
      'i hello e',
      ':a;N;ba',
    ]) {
      assert.ok(!sedRunsOrWrites(script), script);
    }
  });

  it('rules naming classes refuse the line; command rules and class rules refuse what cannot be read', () => {
    const byClass = policy({
      name: 'no-deletion',
      rules: [{ name: 'no-file-deletion', action: 'deny', ssh: { classes: ['file-deletion'] } }],
    });
    const decide = (line: string) => {
      const parsed = parseCommandLine(line);
      return decideSshExec([byClass], parsed.commands, parsed.unverifiable, parsed.classes);
    };
    assert.equal(decide('ls -la').action, 'allow');
    assert.equal(decide('shred -u /x').action, 'deny');
    assert.equal(decide('shred -u /x').rule, 'no-file-deletion');
    assert.equal(decide('find /x -delete').action, 'deny');
    assert.equal(decide('$(echo rm) /x').action, 'deny');
    const both = policy({
      name: 'p',
      rules: [{ name: 'no-sudo-rm', action: 'deny', ssh: { commands: ['rm *'], classes: ['privilege'] } }],
    });
    const decideBoth = (line: string) => {
      const parsed = parseCommandLine(line);
      return decideSshExec([both], parsed.commands, parsed.unverifiable, parsed.classes);
    };
    assert.equal(decideBoth('rm /x').action, 'allow');
    assert.equal(decideBoth('sudo rm /x').action, 'deny');
  });
});
