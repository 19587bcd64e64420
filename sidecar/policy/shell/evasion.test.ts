// Deny rules against evasion: an "rm *" rule and a file-deletion rule still refuse a deleting
// command however it is spelled, quoted, nested or wrapped, and the analysis stays bounded.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { SshCommandClass } from '../../../api/names.ts';
import { policy } from '../fixtures.ts';
import { matchGlob } from '../glob.ts';
import { decideKubernetes } from '../kubernetes.ts';
import { parseCommandLine } from './command-line.ts';
import { spellings } from './spellings.ts';

/** Whether a deny rule with this glob would refuse the line: a matching command, or unverifiable. */
function caughtBy(glob: string, line: string): boolean {
  const parsed = parseCommandLine(line);
  if (parsed.unverifiable.length > 0) return true;
  return parsed.commands.some((argv) => spellings(argv).some((form) => matchGlob(glob, form.join(' '))));
}
const caughtByRmRf = (line: string) => caughtBy('rm -rf *', line);

/** Whether a deny rule naming the class would refuse the line. */
function caughtByClass(cls: SshCommandClass, line: string): boolean {
  const parsed = parseCommandLine(line);
  return parsed.unverifiable.length > 0 || parsed.classes.includes(cls);
}
const verified = (line: string) => parseCommandLine(line).unverifiable;

describe('an "rm *" rule and a file-deletion rule hold against variations', () => {
  it('catches rm -rf / spelled every way', () => {
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
      'env -i PATH=/bin rm -rf /',
      'nice -n 19 nohup timeout 5 rm -rf /',
      'echo / | xargs rm -rf',
      'sh -c "sh -c \'rm -rf /\'"',
      '$(echo rm) -rf /',
      'ls\nrm -rf /',
      ';rm -rf /',
      'ls&&rm -rf /',
      'ls|rm -rf /',
      'echo `rm -rf /`',
      'find / -exec rm -rf {} +',
      'rm -rf / # comment',
      'rm -rf \\\n/',
      'X=1 rm -rf /',
      '{rm,-rf,/}',
      'rm -{r,f} /',
      'time -p rm -rf /',
      'coproc { rm -rf /; }',
      "trap 'rm -rf /' EXIT",
      'f() { rm -rf /; }; f',
      "bash <<< 'rm -rf /'",
      'sh <<EOF\nrm -rf /\nEOF',
      'echo $(( a[$(rm -rf /)] ))',
    ]) {
      assert.ok(caughtByRmRf(line), JSON.stringify(line));
    }
  });

  it('holds a rule on a subcommand with options before it, and a service manager spelled another way', () => {
    const held = (glob: string, line: string) => caughtBy(glob, line);
    for (const line of [
      'systemctl restart orders',
      'systemctl --no-pager restart orders',
      'systemctl -q --no-block restart orders',
      'systemctl -H ops@host restart orders',
      'sudo systemctl --now restart orders.service',
      'service orders restart',
    ])
      assert.ok(held('systemctl restart *', line), line);
    for (const line of ['systemctl reboot', 'systemctl --force reboot', 'init 6', 'telinit 6', 'reboot -f'])
      assert.ok(held('reboot*', line), line);
    for (const line of ['systemctl poweroff', 'init 0', 'shutdown -h now'])
      assert.ok(held('shutdown*', line), line);
    assert.ok(held('rm /etc/*', 'rm -f /etc/passwd'));
    assert.ok(held('git clean *', 'git -C /srv/app clean -fdx'));
    for (const line of ['systemctl status orders', 'service orders status', 'init', 'ls -la /etc'])
      assert.ok(!held('systemctl restart *', line) && !held('reboot*', line), line);
  });

  it('decides a Kubernetes exec in every spelling too', () => {
    const noRm = policy({
      name: 'no-rm',
      rules: [{ name: 'no-rm-rf', action: 'deny', ssh: { commands: ['rm -rf *'] } }],
    });
    const exec = (...command: string[]) =>
      decideKubernetes([noRm], {
        path: '/api/v1/namespaces/web/pods/api-0/exec',
        resourceRequest: true,
        verb: 'create',
        group: '',
        version: 'v1',
        namespace: 'web',
        resource: 'pods',
        subresource: 'exec',
        name: 'api-0',
        query: new Map([['command', command]]),
      });
    for (const command of [
      ['rm', '-rf', '/'],
      ['rm', '-r', '-f', '/'],
      ['rm', '--recursive', '--force', '/'],
      ['/bin/rm', '/', '-fr'],
      ['sh', '-c', 'rm -R -f /'],
    ])
      assert.equal(exec(...command).action, 'deny', command.join(' '));
    assert.equal(exec('ls', '-la', '/').action, 'allow');
  });

  it('does not flag a line that only mentions rm', () => {
    for (const line of [
      'echo rm -rf /',
      'ls\trm -rf',
      "grep 'rm -rf' notes.txt",
      'ls /rm',
      'man rm',
      'cat <<EOF\nrm -rf /\nEOF',
      "echo 'rm -rf /' > notes",
      '# rm -rf /',
    ]) {
      assert.equal(caughtByRmRf(line), false, line);
    }
  });

  // Random wrappings of a deleting command: runners, quoting, nesting, substitutions.
  const deleting = fc.constantFrom(
    'rm -rf /srv/data',
    'rm /srv/data/x',
    'unlink /srv/data/x',
    'shred -u /srv/data/x',
  );
  const quoteName = (line: string, how: number) => {
    const [name, ...rest] = line.split(' ');
    const spelled = [
      name!,
      `\\${name}`,
      `"${name}"`,
      `${name![0]}''${name!.slice(1)}`,
      `$'${[...name!].map((c) => `\\x${c.charCodeAt(0).toString(16)}`).join('')}'`,
      `/usr/bin/${name}`,
    ][how % 6]!;
    return [spelled, ...rest].join(' ');
  };
  const singleQuote = (text: string) => `'${text.replaceAll("'", "'\\''")}'`;
  const wrap = (line: string, how: number) =>
    [
      `sudo ${line}`,
      `sudo -u root -- ${line}`,
      `env -i A=1 ${line}`,
      `nice -n 5 ${line}`,
      `timeout -s KILL 5 ${line}`,
      `nohup ${line}`,
      `taskset -c 0 ${line}`,
      `flock /tmp/l ${line}`,
      `setsid ${line}`,
      `stdbuf -o0 ${line}`,
      `command ${line}`,
      `exec ${line}`,
      `time -p ${line}`,
      `sh -c ${singleQuote(line)}`,
      `bash -c ${singleQuote(line)}`,
      `su -c ${singleQuote(line)} root`,
      `flock /tmp/l -c ${singleQuote(line)}`,
      `eval ${singleQuote(line)}`,
      `echo $( ${line} )`,
      `( ${line} )`,
      `{ ${line}; }`,
      `true && ${line}`,
      `false || ${line}`,
      `ls | ${line}`,
      `f() { ${line}; }; f`,
      `trap ${singleQuote(line)} EXIT`,
      `if true; then ${line}; fi`,
      `bash <<< ${singleQuote(line)}`,
      `coproc { ${line}; }`,
      `watch ${singleQuote(line)}`,
      `ssh host ${singleQuote(line)}`,
      `echo $(( a[$( ${line} )] ))`,
    ][how % 32]!;

  it('property: a deleting command in any nesting of runners, quoting and constructs stays refused', () => {
    fc.assert(
      fc.property(deleting, fc.nat(), fc.array(fc.nat(), { maxLength: 4 }), (line, quoting, wrappers) => {
        let wrapped = quoteName(line, quoting);
        for (const how of wrappers) wrapped = wrap(wrapped, how);
        const name = line.split(' ')[0]!;
        assert.ok(caughtBy(`${name} *`, wrapped), `${name} *: ${wrapped}`);
        assert.ok(caughtByClass('file-deletion', wrapped), `file-deletion: ${wrapped}`);
      }),
      { numRuns: 1500 },
    );
  });

  it('property: never throws and stays bounded on arbitrary input', () => {
    fc.assert(
      fc.property(
        fc.string({
          maxLength: 200,
          unit: fc.constantFrom(...'ab $()`\'"\\;&|<>{}[]\n\t#=*-c,.!'.split('')),
        }),
        (line) => {
          const parsed = parseCommandLine(line);
          assert.ok(Array.isArray(parsed.commands));
        },
      ),
      { numRuns: 2000 },
    );
    assert.ok(parseCommandLine(`${'sh -c '.repeat(50)}ls`));
    assert.notDeepEqual(verified(`${'$('.repeat(100)}${')'.repeat(100)}`), []);
    assert.notDeepEqual(verified('x'.repeat(130 * 1024)), []);
    assert.notDeepEqual(verified(`echo ${'{a,b}'.repeat(20000)}`), []);
  });
});
