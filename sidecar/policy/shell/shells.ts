// Shells and what hands them a string: sh/bash -c, a here-document fed to a shell, su -c,
// runuser, script -c; shells with a grammar of their own cannot be read.
import { script } from './script.ts';
import { basename, run } from './simple-commands.ts';
import type { State, Stdin } from './state.ts';

/** Shells whose -c string and stdin are read with the bash grammar. */
export const posixShells = new Set([
  'sh',
  'bash',
  'dash',
  'ash',
  'ksh',
  'mksh',
  'yash',
  'posh',
  'rbash',
  'ksh93',
  'lksh',
]);
/** Shells with a grammar of their own: what they run cannot be read here. */
export const otherShells = new Set([
  'zsh',
  'fish',
  'csh',
  'tcsh',
  'rc',
  'es',
  'xonsh',
  'nu',
  'elvish',
  'pwsh',
]);

/** A string a program hands to /bin/sh -c. */
export function shellString(text: string, computed: boolean, state: State): void {
  if (computed) state.unverifiable.push(`a computed shell string: ${text}`);
  else script(text, state);
}

const shellValueOptions = new Set(['-o', '+o', '-O', '+O', '--rcfile', '--init-file']);

/** sh/bash/...: -c string, a script file, or commands read from stdin (a here-document is read). */
export function shell(argv: string[], dynamic: boolean[], stdin: Stdin, state: State): void {
  const name = argv[0]!;
  const args = argv.slice(1);
  let command = false;
  let operand: number | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--' || arg === '-') {
      operand = i + 1 < args.length ? i + 1 : undefined;
      break;
    }
    if (shellValueOptions.has(arg)) {
      if (/^[-+]o$/.test(arg) && args[i + 1] === 'xtrace')
        state.unverifiable.push(`${name} -o xtrace expands PS4`);
      i++;
      continue;
    }
    if (/^[-+][a-zA-Z]+$/.test(arg)) {
      if (arg.startsWith('-') && arg.includes('c')) command = true;
      if (arg.includes('x')) state.unverifiable.push(`${name} -x expands PS4`);
      continue;
    }
    if (arg.startsWith('--')) {
      if (arg === '--version' || arg === '--help') return;
      if (arg === '--rcfile' || arg === '--init-file') i++;
      continue;
    }
    operand = i;
    break;
  }
  if (otherShells.has(name)) {
    state.classes.add('interpreter');
    state.unverifiable.push(`${name} has a grammar of its own: what it runs cannot be read`);
    return;
  }
  if (command) {
    if (operand === undefined) state.unverifiable.push(`${name} -c without a script`);
    else {
      // sh -c script name args: the args become $0, $1, ... (tainted: the agent chose them).
      shellString(args[operand]!, dynamic[operand + 1] === true, state);
    }
  } else if (operand !== undefined) {
    state.unverifiable.push(`${name} runs a script file: ${args[operand]}`);
  } else if (stdin) {
    script(stdin.text, state);
  } else {
    state.unverifiable.push(`${name} reads its script from stdin`);
  }
}

export function su(argv: string[], dynamic: boolean[], state: State): void {
  const name = argv[0]!;
  let shellOption: string | undefined;
  for (let i = 1; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '-s' || arg === '--shell') shellOption = argv[i + 1];
    else if (arg.startsWith('--shell=')) shellOption = arg.slice(8);
    else if (
      arg === '-c' ||
      arg === '--command' ||
      arg === '--session-command' ||
      arg.startsWith('--command=')
    ) {
      if (shellOption !== undefined && !posixShells.has(basename(shellOption))) {
        state.unverifiable.push(`${name} runs its command with ${shellOption}`);
        return;
      }
      const attached = arg.includes('=');
      const script = attached ? arg.slice(arg.indexOf('=') + 1) : argv[i + 1];
      if (script === undefined) state.unverifiable.push(`${name} -c without a command`);
      else shellString(script, dynamic[attached ? i : i + 1] === true, state);
      return;
    } else if (name === 'runuser' && (arg === '-u' || arg === '--user')) {
      // runuser -u user [--] command args: argv, not a shell string.
      let j = i + 2;
      if (argv[j] === '--') j++;
      if (j < argv.length) run(argv.slice(j), dynamic.slice(j), undefined, state);
      else state.unverifiable.push(`${name} starts a shell that reads its commands from stdin`);
      return;
    }
  }
  state.unverifiable.push(`${name} starts a shell that reads its commands from stdin`);
}

export function scriptCommand(argv: string[], dynamic: boolean[], state: State): void {
  for (let i = 1; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '-c' || arg === '--command') {
      shellString(argv[i + 1] ?? '', dynamic[i + 1] === true, state);
      return;
    }
    if (arg.startsWith('--command=')) {
      shellString(arg.slice(10), dynamic[i] === true, state);
      return;
    }
    if (/^-[a-zA-Z]*c/.test(arg) && !arg.startsWith('--')) {
      const attached = arg.slice(arg.indexOf('c') + 1);
      shellString(attached || (argv[i + 1] ?? ''), dynamic[attached ? i : i + 1] === true, state);
      return;
    }
  }
  state.unverifiable.push('script starts a shell that reads its commands from stdin');
}
