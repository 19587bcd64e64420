// parseCommandLine against the shell grammar: what a line runs, every runner layer unwrapped,
// and what cannot be verified statically.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseCommandLine } from './command-line.ts';

const commands = (line: string) => parseCommandLine(line).commands;
const last = (line: string) => commands(line).at(-1);
const verified = (line: string) => parseCommandLine(line).unverifiable;

describe('parseCommandLine: the shell grammar', () => {
  it('splits simple commands on every control operator', () => {
    assert.deepEqual(commands('ls -l /tmp; echo a && echo b || echo c | wc -l & true'), [
      ['ls', '-l', '/tmp'],
      ['echo', 'a'],
      ['echo', 'b'],
      ['echo', 'c'],
      ['wc', '-l'],
      ['true'],
    ]);
    assert.deepEqual(commands('a\nb\tc\n\nd'), [['a'], ['b', 'c'], ['d']]);
    assert.deepEqual(commands('a |& b'), [['a'], ['b']]);
  });

  it('removes quotes and escapes the way the shell does', () => {
    assert.deepEqual(commands(`echo 'a b' "c \\"d\\" \\$e" f\\ g $'h\\ti' "x"'y'z "\\q"`), [
      ['echo', 'a b', 'c "d" $e', 'f g', 'h\ti', 'xyz', '\\q'],
    ]);
    for (const spelled of [
      "r''m",
      '\\rm',
      '"r"m',
      "$'\\x72m'",
      "$'\\162m'",
      "$'\\u0072m'",
      "'rm'",
      '$"rm"',
      'r\\\nm',
    ]) {
      assert.deepEqual(commands(`${spelled} -rf /x`), [['rm', '-rf', '/x']], spelled);
    }
  });

  it('skips redirections, keeps their targets out of argv, and runs what they substitute', () => {
    assert.deepEqual(commands('cat < in > out 2>&1 >> log 2>/dev/null &> all'), [['cat']]);
    assert.deepEqual(commands('cat <<EOF\nrm -rf /\nEOF\necho done'), [['cat'], ['echo', 'done']]);
    assert.deepEqual(verified("cat <<-'E'\n\t$(rm)\n\tE"), []);
    assert.deepEqual(commands('cat <<E\n$(rm -rf /)\nE'), [['rm', '-rf', '/'], ['cat']]);
    assert.deepEqual(commands('echo > $(rm -rf /x)'), [['rm', '-rf', '/x'], ['echo']]);
  });

  it('reads a here-document or here-string as a shell reads it: on descriptor 0 only, escapes as bash expands them', () => {
    assert.deepEqual(commands('bash 0<<<"rm -rf /x"').at(-1), ['rm', '-rf', '/x']);
    assert.deepEqual(commands('bash <<EOF\necho \\$(rm -rf /x)\nEOF')[1], ['rm', '-rf', '/x']);
    assert.deepEqual(commands('bash <<EOF\nr\\\nm -rf /x\nEOF').at(-1), ['rm', '-rf', '/x']);
    for (const line of [
      // The script comes from the channel, not from the here-string on another descriptor.
      'bash 3<<<ls',
      'bash <<<ls <&3',
      'bash <<<ls 0</dev/null',
      'cat <<EOF | bash\nrm -rf /x\nEOF',
      // bash itself cannot parse the quoted body: nothing to guess.
      "bash <<'EOF'\necho \\$(rm -rf /x)\nEOF",
    ]) {
      assert.notDeepEqual(verified(line), [], line);
    }
  });

  it('reads compound commands, functions, traps and coprocesses as bash does', () => {
    const cases: [string, string[]][] = [
      ['time -p rm -rf /x', ['rm', '-rf', '/x']],
      ['time rm -rf /x', ['rm', '-rf', '/x']],
      ['coproc NAME { rm -rf /x; }', ['rm', '-rf', '/x']],
      ['coproc rm -rf /x', ['rm', '-rf', '/x']],
      ['for x; do rm -rf /x; done', ['rm', '-rf', '/x']],
      ['for x in a b; do rm -rf /x; done', ['rm', '-rf', '/x']],
      ['for ((i=0;i<1;i++)); do rm -rf /x; done', ['rm', '-rf', '/x']],
      ['select x in a; do rm -rf /x; done', ['rm', '-rf', '/x']],
      ["trap 'rm -rf /x' EXIT", ['rm', '-rf', '/x']],
      ["trap -- 'rm -rf /x' EXIT INT", ['rm', '-rf', '/x']],
      ['f() { rm -rf /x; }', ['rm', '-rf', '/x']],
      ['function f { rm -rf /x; }', ['rm', '-rf', '/x']],
      ['f() ( rm -rf /x )', ['rm', '-rf', '/x']],
      ['case a in a) rm -rf /x ;; esac', ['rm', '-rf', '/x']],
      ['case $(rm -rf /x) in *) ;; esac', ['rm', '-rf', '/x']],
      ['if true; then :; else rm -rf /x; fi', ['rm', '-rf', '/x']],
      ['while false; do :; done; until rm -rf /x; do :; done', ['rm', '-rf', '/x']],
      ['echo $(( a[$(rm -rf /x)] ))', ['rm', '-rf', '/x']],
      ['(( a[$(rm -rf /x)] ))', ['rm', '-rf', '/x']],
      ['(( x = $(rm -rf /x) ))', ['rm', '-rf', '/x']],
      ['let "a[$(rm -rf /x)]"', ['rm', '-rf', '/x']],
      // biome-ignore lint/suspicious/noTemplateCurlyInString: shell text, not a template
      ['echo ${a[$(rm -rf /x)]}', ['rm', '-rf', '/x']],
      // biome-ignore lint/suspicious/noTemplateCurlyInString: shell text, not a template
      ['echo ${x:-$(rm -rf /x)}', ['rm', '-rf', '/x']],
      // biome-ignore lint/suspicious/noTemplateCurlyInString: shell text, not a template
      ['echo ${x/a/$(rm -rf /x)}', ['rm', '-rf', '/x']],
      // biome-ignore lint/suspicious/noTemplateCurlyInString: shell text, not a template
      ['echo ${x:$(rm -rf /x):1}', ['rm', '-rf', '/x']],
      ['x=( $(rm -rf /x) )', ['rm', '-rf', '/x']],
      ['x=([$(rm -rf /x)]=1)', ['rm', '-rf', '/x']],
      ['declare y=$(rm -rf /x)', ['rm', '-rf', '/x']],
      ['[[ $(rm -rf /x) ]]', ['rm', '-rf', '/x']],
      ['echo $( (rm -rf /x) )', ['rm', '-rf', '/x']],
      ['echo $((1)) $( (rm -rf /x) )', ['rm', '-rf', '/x']],
      ['diff <(rm -rf /x) >(cat)', ['rm', '-rf', '/x']],
      ['echo `rm -rf /x`', ['rm', '-rf', '/x']],
      ['echo "$(echo "$(rm -rf /x)")"', ['rm', '-rf', '/x']],
      ['! rm -rf /x', ['rm', '-rf', '/x']],
      ['{ rm -rf /x; }', ['rm', '-rf', '/x']],
      ['(rm -rf /x)', ['rm', '-rf', '/x']],
      ['{rm,-rf,/x}', ['rm', '-rf', '/x']],
      ['rm -{r,f} /x', ['rm', '-r', '-f', '/x']],
      ['bash <<< "rm -rf /x"', ['rm', '-rf', '/x']],
      ["sh <<'EOF'\nrm -rf /x\nEOF", ['rm', '-rf', '/x']],
      ['bash -s <<EOF\nrm -rf /x\nEOF', ['rm', '-rf', '/x']],
      ['eval "rm -rf /x"', ['rm', '-rf', '/x']],
      ["eval rm '-rf' /x", ['rm', '-rf', '/x']],
      ['builtin eval "rm -rf /x"', ['rm', '-rf', '/x']],
      ["mapfile -C 'rm -rf /x' -c 1 < /etc/hosts", ['rm', '-rf', '/x']],
      ["tar -cf /dev/null d --checkpoint=1 --checkpoint-action=exec='rm -rf /x'", ['rm', '-rf', '/x']],
      ["tar --to-command='rm -rf /x' -xf a.tar", ['rm', '-rf', '/x']],
      ["tar -I 'rm -rf /x' -cf a.tar d", ['rm', '-rf', '/x']],
      ['rsync -e \'sh -c "rm -rf /x"\' a host:b', ['rm', '-rf', '/x']],
      ["zip a.zip f -T -TT 'rm -rf /x #'", ['rm', '-rf', '/x']],
      ['tcpdump -z /bin/rm -w f', ['rm']],
      ['scp -S /bin/rm a host:b', ['rm']],
    ];
    for (const [line, expected] of cases) {
      assert.ok(
        commands(line).some((argv) => JSON.stringify(argv) === JSON.stringify(expected)),
        `${JSON.stringify(line)} → ${JSON.stringify(commands(line))}`,
      );
    }
  });

  it('reads argv[0] by its basename and keeps every runner layer, outermost first', () => {
    assert.deepEqual(commands('sudo -u root /usr/bin/rm -rf /'), [
      ['sudo', '-u', 'root', '/usr/bin/rm', '-rf', '/'],
      ['rm', '-rf', '/'],
    ]);
    assert.deepEqual(
      last(
        '/usr/bin/sudo -u root -E env A=1 -i nice -n 5 nohup timeout -s KILL 10 command exec /bin/rm -rf /',
      ),
      ['rm', '-rf', '/'],
    );
    assert.deepEqual(last('echo / | xargs -0 -n 1 rm -f'), ['rm', '-f', '{}']);
    assert.deepEqual(last('xargs -I % rm %'), ['rm', '%']);
    assert.deepEqual(commands('command -v rm'), [['command', '-v', 'rm']]);
    assert.deepEqual(commands('sudo -l'), [['sudo', '-l']]);
  });

  it('unwraps every runner with its own option grammar', () => {
    const cases = [
      'timeout -s KILL 5 rm -rf /x',
      'timeout --signal=KILL -k 1 5s rm -rf /x',
      'nice -n 5 rm -rf /x',
      'nice -10 rm -rf /x',
      'nice --adjustment 5 rm -rf /x',
      'ionice -c 3 rm -rf /x',
      'ionice -c3 -n7 rm -rf /x',
      'taskset -c 0 rm -rf /x',
      'taskset 0x1 rm -rf /x',
      'flock /tmp/l rm -rf /x',
      'flock -w 5 /tmp/l rm -rf /x',
      "flock /tmp/l -c 'rm -rf /x'",
      'chrt -f 10 rm -rf /x',
      'chrt 0 rm -rf /x',
      'setpriv --reuid=0 --init-groups rm -rf /x',
      'setpriv --reuid 0 rm -rf /x',
      'prlimit --nofile=1024 rm -rf /x',
      'prlimit -n512 rm -rf /x',
      'unshare -m rm -rf /x',
      'unshare --mount --propagation private rm -rf /x',
      'nsenter -t 1 -m rm -rf /x',
      'setarch x86_64 -R rm -rf /x',
      'linux32 rm -rf /x',
      'stdbuf -o0 rm -rf /x',
      'stdbuf -o L rm -rf /x',
      'setsid -f rm -rf /x',
      'nohup rm -rf /x',
      'env -i rm -rf /x',
      'env - PATH=/bin rm -rf /x',
      'env -u HOME -C / rm -rf /x',
      'env -S "rm -rf /x"',
      'env -S"rm -rf /x"',
      'chroot / rm -rf /x',
      'chroot --userspec=0:0 / rm -rf /x',
      'doas -u root rm -rf /x',
      'pkexec rm -rf /x',
      'sudo -- rm -rf /x',
      'sudo -iu root rm -rf /x',
      'sudo --user=root rm -rf /x',
      'sudo A=1 rm -rf /x',
      'exec -a name rm -rf /x',
      'command -p rm -rf /x',
      'builtin command rm -rf /x',
      'busybox rm -rf /x',
      '/usr/bin/time -p rm -rf /x',
      '\\time -f %e rm -rf /x',
      'strace -f -o /dev/null rm -rf /x',
      'ltrace -f rm -rf /x',
      'systemd-run --scope -p MemoryMax=1G rm -rf /x',
      'fakeroot rm -rf /x',
      'eatmydata rm -rf /x',
      'numactl --interleave=all rm -rf /x',
      'watch -n 1 rm -rf /x',
      'watch -x rm -rf /x',
      "watch 'rm -rf /x'",
      "su -c 'rm -rf /x' root",
      "su root -c 'rm -rf /x'",
      "su --command='rm -rf /x'",
      'runuser -u nobody -- rm -rf /x',
      "runuser -l root -c 'rm -rf /x'",
      "sg wheel 'rm -rf /x'",
      "sg wheel -c 'rm -rf /x'",
      "script -qc 'rm -rf /x' /dev/null",
      "script -c 'rm -rf /x'",
      'parallel rm -rf ::: /x',
      'ssh host rm -rf /x',
      "ssh -p 22 -i key host 'rm -rf /x'",
      'find / -name x -exec rm -rf {} \\;',
      'find / -execdir rm -rf {} +',
      'find / -ok rm -rf {} \\;',
      'xargs rm -rf',
      'xargs -r -P 4 rm -rf',
      "sh -c 'rm -rf /x'",
      "bash -lc 'rm -rf /x'",
      "dash -ec 'rm -rf /x'",
      "busybox sh -c 'rm -rf /x'",
      "bash -o pipefail -c 'rm -rf /x'",
      'sudo sh -c "sudo -u root bash -c \'rm -rf /x\'"',
    ];
    for (const line of cases) {
      const parsed = parseCommandLine(line);
      assert.deepEqual(parsed.unverifiable, [], line);
      assert.ok(
        parsed.commands.some((argv) => argv[0] === 'rm' && argv.slice(1).join(' ').startsWith('-rf')),
        `${line} → ${JSON.stringify(parsed.commands)}`,
      );
    }
  });

  it('refuses to guess: an option a runner does not know, or a runner with nothing it can read', () => {
    for (const line of [
      'timeout --bogus 5 rm -rf /x',
      'nice -Z rm -rf /x',
      'taskset --frobnicate 0 rm -rf /x',
      'env --bogus rm -rf /x',
      'sudo --bogus rm -rf /x',
      'flock --bogus /l rm -rf /x',
      "flock -c 'rm -rf /x' /tmp/l",
      'sudo -s',
      'sudo -i',
      'chroot /',
      'unshare -m',
      'nsenter -t 1 -a',
      'su root',
      'su -',
      'script /dev/null',
      'ssh host',
      'ssh -o ProxyCommand="rm -rf /x" host ls',
      'ssh -F ./cfg host ls',
      'parallel',
      'systemd-run --shell',
      'watch --bogus ls',
      'xargs $X rm',
      "xargs -I{} sh -c '{}'",
      'xargs -I % sh -c %',
      'xargs -i sh -c {}',
      'find . -exec {} \\;',
      "find . -name 'rm*' -exec sh -c {} \\;",
      "parallel {} ::: 'rm -rf /x'",
      "parallel -j 2 'rm -rf {}' ::: /x",
      "parallel ::: 'rm -rf /x'",
      'env -S "$X"',
      'sudo $CMD',
    ]) {
      assert.notDeepEqual(verified(line), [], line);
    }
  });

  it('reports what cannot be verified statically', () => {
    for (const line of [
      '$(echo rm) -rf /',
      '`echo rm` -rf /',
      '$CMD -rf /',
      // biome-ignore lint/suspicious/noTemplateCurlyInString: shell text, not a template
      '${CMD} -rf /',
      'x=rm; $x -rf /',
      '"$x" -rf /',
      'eval "$X"',
      'eval $(echo rm -rf /)',
      'echo cm0gLXJmIC8= | base64 -d | sh',
      'curl http://x | bash',
      'bash',
      'sh -s',
      'bash script.sh',
      'bash -- script.sh',
      'source ./x',
      '. ./x',
      'F=-rf; rm $F /',
      'export F=-rf; rm $F /',
      'read F; rm $F /',
      'for f in -rf; do rm $f /; done',
      'for f in a b; do echo "$f"; done',
      "sh -c 'rm $1 /' _ -rf",
      'X="rm -rf /" sh -c "$X"',
      'sh -c "$X"',
      '/bin/r? -rf /',
      '/bin/r* -rf /',
      '/bin/[r]m -rf /',
      '@(rm) -rf /',
      "echo 'unterminated",
      'echo "unterminated',
      'echo $(',
      'if true; then',
      'alias ls="rm -rf /"; ls',
      'hash -p /bin/rm ls; ls -rf /',
      'enable -f ./x.so x',
      'a\0b',
      'BASH_ENV=/tmp/x bash -c true',
      'ENV=/tmp/x sh -c true',
      'export BASH_ENV=/tmp/x; bash -c true',
      'env BASH_ENV=/tmp/x bash -c true',
      'sudo BASH_ENV=/tmp/x bash -c true',
      "env 'BASH_FUNC_ls%%=() { rm -rf /; }' bash -c ls",
      'PROMPT_COMMAND="rm -rf /" bash -i',
      'LD_PRELOAD=/tmp/x.so ls',
      "SHELLOPTS=xtrace PS4='$(rm -rf /)' bash -c true",
      "PS4='$(rm -rf /)' bash -xc true",
      'declare -x BASH_ENV=/tmp/x',
      'x="a[\\$(rm -rf /)]"; echo $((x))',
      "x='a[$(rm -rf /)]'; (( x ))",
      "x='a[$(rm -rf /)]'; [[ $x -eq 1 ]]",
      "x='a[$(rm -rf /)]'; [[ x -gt 1 ]]",
      'read x; echo $((x))',
      "[ -v 'a[$(rm -rf /)]' ]",
      "test -v 'a[$(rm -rf /)]'",
      "[[ -v 'a[$(rm -rf /)]' ]]",
      "printf -v 'a[$(rm -rf /)]' x",
      "read 'a[$(rm -rf /)]' <<< x",
      "declare 'a[$(rm -rf /)]=1'",
      'x=\'a[$(rm -rf /)]\'; declare "$x=1"',
      "a=(); unset 'a[$(rm -rf /)]'",
      // biome-ignore lint/suspicious/noTemplateCurlyInString: shell text, not a template
      "x='a[$(rm -rf /)]'; echo ${!x}",
      "declare -n r='a[$(rm -rf /)]'; echo $r",
      // biome-ignore lint/suspicious/noTemplateCurlyInString: shell text, not a template
      "x='a[$(rm -rf /)]'; echo ${y[x]}",
      // biome-ignore lint/suspicious/noTemplateCurlyInString: shell text, not a template
      'echo ${x@P}',
      'declare -i n; n="$1"',
      "zsh -c 'rm -rf /'",
      "fish -c 'rm -rf /'",
      "perl -e 'unlink q(x)'",
      "python3 -c 'import shutil'",
      'python3 - <<EOF\nimport os\nEOF',
      "ruby -e 'File.delete(1)'",
      "node -e 'x'",
      "php -r 'x'",
      'awk \'BEGIN { system("rm -rf /") }\'',
      'awk \'{ print | "sh" }\'',
      'awk \'BEGIN { "date" | getline d }\'',
      'awk -f prog.awk',
      "sed 's/x/rm -rf \\//e' f",
      "sed '1e rm -rf /' f",
      "sed -n 'w /etc/x' f",
      'sed -f script.sed f',
      "gdb -batch -ex 'shell rm -rf /'",
      "vim -c ':!rm -rf /'",
      'at now',
      'crontab ./jobs',
      "git -c alias.x='!rm -rf /' x",
      "git -c core.sshCommand='rm -rf /' fetch",
      `rsync -e 'ssh -o ProxyCommand="rm -rf /"' a host:b`,
      'rsync -e \'sh -c "$X"\' a host:b',
      `${'sh -c '.repeat(12)}ls`,
      'echo {1..100000}',
    ]) {
      assert.notDeepEqual(verified(line), [], line);
    }
  });

  it('verifies ordinary lines', () => {
    for (const line of [
      'ls -la /var/log',
      'echo $HOME',
      'grep -r "x" /etc | head -n 5',
      'sh -c "ls /tmp"',
      'bash --version',
      'cat /etc/passwd > /tmp/x 2>&1',
      'test -f /x && echo yes || echo no',
      'sudo systemctl status nginx',
      'find / -name "*.log" -mtime +7',
      'printf "%s\\n" a b c',
      "awk '{print $1}' /etc/passwd",
      "sed -n 's/a/b/gp' f",
      "sed -e '/^#/d' -e 's/x/y/2' f",
      'x=1; echo $((x + 1))',
      'echo $((1 + 2))',
      '[[ -f /etc/hosts && $HOME == /root ]]',
      'case $HOME in /root) echo root ;; *) echo other ;; esac',
      'python3 --version',
      'cat <<EOF\nhello $HOME\nEOF',
      'journalctl -u nginx --since "1 hour ago" | tail',
      'df -h; free -m; uptime',
      'time ls',
      'rsync -avz -e ssh src/ host:dst/',
      "rsync -e 'ssh -p 2222' src/ host:dst/",
      "tar -I 'zstd -19' -cf a.tar.zst d",
      'echo {a,b}.txt',
    ]) {
      assert.deepEqual(verified(line), [], line);
    }
  });
});
