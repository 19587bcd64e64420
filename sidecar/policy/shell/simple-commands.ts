// Simple commands: a call's words expanded into argv, recorded with its classes, and handed to
// what knows how that program runs other code (a runner, a shell, an interpreter, a builtin).
import { classify } from './classes.ts';
import { interpreter } from './interpreters.ts';
import { commandOptions, find, git, parallel, sshCommand, watch } from './launchers.ts';
import { runners, unwrap } from './runners.ts';
import { assignment, evaluatedSubscript, script, takesNames } from './script.ts';
import { otherShells, posixShells, scriptCommand, shell, shellString, su } from './shells.ts';
import { assign, type State, type Stdin, tainted } from './state.ts';
import type { Node } from './syntax.ts';
import { braceWords, word } from './words.ts';

export function call(cmd: Node, stdin: Stdin, state: State): void {
  for (const assign of cmd.Assigns ?? []) assignment(assign, state, false);
  const argv: string[] = [];
  const dynamic: boolean[] = [];
  for (const [index, arg] of (cmd.Args ?? []).entries()) {
    const value = word(arg, state);
    const words = braceWords(value.segments);
    if (!words) {
      state.unverifiable.push('brace expansion too large');
      return;
    }
    const pattern = value.segments.some((s) => !s.quoted && /[*?[]/.test(s.c));
    if (index === 0) {
      if (value.dynamic) {
        state.unverifiable.push(`command name is computed: ${value.value}`);
        return;
      }
      if (pattern) {
        state.unverifiable.push(`command name is a pattern: ${value.value}`);
        return;
      }
    }
    const chosen = value.params.find((name) => tainted(state, name));
    if (chosen !== undefined) state.unverifiable.push(`argument from a variable the line sets: $${chosen}`);
    for (const expanded of words) {
      argv.push(expanded);
      dynamic.push(value.dynamic);
    }
  }
  if (argv.length > 0) run(argv, dynamic, stdin, state);
}

export function basename(name: string): string {
  const trimmed = name.replace(/\/+$/, '');
  const slash = trimmed.lastIndexOf('/');
  return slash === -1 ? trimmed : trimmed.slice(slash + 1);
}

/** Records one command (and what it runs, recursively). */
export function run(raw: string[], dynamic: boolean[], stdin: Stdin, state: State): void {
  const argv = [basename(raw[0]!), ...raw.slice(1)];
  state.commands.push(argv);
  for (const cls of classify(argv)) state.classes.add(cls);
  const name = argv[0]!;
  const isDynamic = (i: number) => dynamic[i] === true;
  if (takesNames.has(name) && argv.slice(1).some((a) => evaluatedSubscript.test(a))) {
    state.unverifiable.push('a variable name whose subscript bash evaluates');
  }
  const runner = runners[name];
  if (runner) {
    unwrap(argv, dynamic, runner, stdin, state);
    return;
  }
  if (posixShells.has(name) || otherShells.has(name)) {
    shell(argv, dynamic, stdin, state);
    return;
  }
  switch (name) {
    case 'eval': {
      // eval joins its arguments with spaces and runs the result.
      const args = argv.slice(1);
      if (args.some((_, i) => isDynamic(i + 1))) state.unverifiable.push('eval of a computed string');
      else script(args.join(' '), state);
      return;
    }
    case 'source':
    case '.':
      state.unverifiable.push(`${name} runs a script file`);
      return;
    case 'alias':
      if (argv.length > 1) state.unverifiable.push('alias redefines commands');
      return;
    case 'hash':
      if (argv.includes('-p')) state.unverifiable.push('hash -p maps a name to another program');
      return;
    case 'enable':
      state.unverifiable.push('enable loads or switches builtins');
      return;
    case 'bind':
    case 'complete':
    case 'compgen':
    case 'fc':
      if (argv.length > 1) state.unverifiable.push(`${name} can run commands it is given`);
      return;
    case 'mapfile':
    case 'readarray':
    case 'read':
    case 'printf':
    case 'getopts':
      reads(argv, state);
      return;
    case 'set':
      // set -- a b sets the positional parameters (tainted already); other options are harmless here.
      return;
    case 'trap': {
      let i = 1;
      if (argv[i] === '--') i++;
      const action = argv[i];
      if (action === undefined || action.startsWith('-') || argv.length === i + 1) return;
      if (isDynamic(i)) state.unverifiable.push('trap handler is computed');
      else script(action, state);
      return;
    }
    case 'su':
    case 'runuser':
      su(argv, dynamic, state);
      return;
    case 'sg':
    case 'newgrp': {
      // sg group [-c] command: the command string runs under /bin/sh -c.
      const rest = argv.slice(2).filter((a) => a !== '-c' && a !== '-');
      if (name === 'newgrp' || rest.length === 0) {
        state.unverifiable.push(`${name} starts a shell that reads its commands from stdin`);
        return;
      }
      shellString(
        rest.join(' '),
        argv.slice(2).some((_, i) => isDynamic(i + 2)),
        state,
      );
      return;
    }
    case 'script':
      scriptCommand(argv, dynamic, state);
      return;
    case 'watch':
      watch(argv, dynamic, stdin, state);
      return;
    case 'find':
      find(argv, dynamic, state);
      return;
    case 'parallel':
    case 'sem':
      parallel(argv, dynamic, state);
      return;
    case 'ssh':
      sshCommand(argv, dynamic, state);
      return;
    case 'at':
    case 'batch':
      if (!argv.some((a) => /^-[lrdcV]/.test(a)))
        state.unverifiable.push(`${name} schedules commands it reads`);
      return;
    case 'crontab':
      if (!argv.slice(1).every((a) => /^-[lr]$|^-u$/.test(a) || argv[argv.indexOf(a) - 1] === '-u')) {
        state.unverifiable.push('crontab installs commands that run later');
      }
      return;
    case 'git':
      git(argv, state);
      return;
    case 'tar':
    case 'rsync':
    case 'scp':
    case 'zip':
    case 'tcpdump':
      commandOptions(argv, state);
      break;
  }
  interpreter(argv, stdin, state);
}

/** Builtins that assign the variables they name from input the agent controls. */
function reads(argv: string[], state: State): void {
  const name = argv[0]!;
  for (let i = 1; i < argv.length; i++) {
    const arg = argv[i]!;
    if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(arg)) assign(state, arg, null);
    if (arg === '-v' && argv[i + 1]) assign(state, argv[i + 1]!, null);
    if ((name === 'mapfile' || name === 'readarray') && arg.startsWith('-C')) {
      const callback = arg.length > 2 ? arg.slice(2) : argv[i + 1];
      if (callback) script(callback, state);
    }
  }
  if (name === 'mapfile' || name === 'readarray') assign(state, 'MAPFILE', null);
  if (name === 'read') assign(state, 'REPLY', null);
}
