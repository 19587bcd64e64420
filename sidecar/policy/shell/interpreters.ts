// Interpreters: programs that run code given inline, from a file or from stdin (python, perl,
// node, vim, ...), and awk and sed, whose programs run commands only with certain constructs.
import type { State, Stdin } from './state.ts';

interface Interpreter {
  /** Options whose value (or whose following operand) is inline code. */
  inline: string[];
  /** Options that print and exit. */
  inert: string[];
  /** Short options that take a value (so the value is not the script operand). */
  values?: string[];
}

const interpreters: Record<string, Interpreter> = {
  python: { inline: ['-c'], inert: ['-V', '--version', '-h', '--help', '-m'], values: ['-W', '-X', '-Q'] },
  perl: {
    inline: ['-e', '-E'],
    inert: ['-v', '-V', '--version', '-h', '--help', '-c'],
    values: ['-I', '-M', '-m', '-x'],
  },
  ruby: { inline: ['-e'], inert: ['-v', '--version', '-h', '--help'], values: ['-I', '-r', '-C', '-E'] },
  node: {
    inline: ['-e', '--eval', '-p', '--print'],
    inert: ['-v', '--version', '-h', '--help'],
    values: ['-r', '--require', '--import', '--loader'],
  },
  nodejs: {
    inline: ['-e', '--eval', '-p', '--print'],
    inert: ['-v', '--version', '-h', '--help'],
    values: ['-r'],
  },
  deno: { inline: ['eval'], inert: ['--version', '-V', 'help'] },
  bun: { inline: ['-e', '--eval', '-p', '--print'], inert: ['--version', '-v', '--help', '-h'] },
  php: {
    inline: ['-r', '-B', '-R', '-E', '-F', '-a'],
    inert: ['-v', '--version', '-h', '-i', '-m', '-l'],
    values: ['-c', '-d', '-z'],
  },
  lua: { inline: ['-e'], inert: ['-v'], values: ['-l'] },
  luajit: { inline: ['-e'], inert: ['-v'], values: ['-l'] },
  tclsh: { inline: [], inert: [] },
  wish: { inline: [], inert: [] },
  expect: { inline: ['-c'], inert: ['-v'] },
  Rscript: { inline: ['-e'], inert: ['--version'] },
  R: { inline: ['-e'], inert: ['--version'] },
  julia: { inline: ['-e', '-E', '--eval', '--print'], inert: ['-v', '--version'] },
  osascript: { inline: ['-e'], inert: [] },
  irb: { inline: [], inert: ['-v', '--version'] },
  gdb: {
    inline: ['-ex', '--eval-command', '-x', '--command', '-batch', '--batch', '-p', '--pid'],
    inert: ['--version'],
  },
  ex: { inline: ['-c', '+'], inert: ['--version'] },
  vim: { inline: ['-c', '+', '-S', '--cmd', '-s'], inert: ['--version'] },
  vi: { inline: ['-c', '+', '-S', '--cmd', '-s'], inert: ['--version'] },
  nvim: { inline: ['-c', '+', '-S', '--cmd', '-s', '-l'], inert: ['--version'] },
  ed: { inline: [], inert: ['--version'] },
  emacs: { inline: ['--eval', '-l', '--load', '--script', '-x'], inert: ['--version'] },
};

const awks = new Set(['awk', 'gawk', 'mawk', 'nawk', 'busybox-awk']);

function interpreterName(name: string): string | undefined {
  if (/^python[0-9.]*$|^pypy[0-9.]*$/.test(name)) return 'python';
  if (/^perl[0-9.]*$/.test(name)) return 'perl';
  if (/^ruby[0-9.]*$/.test(name)) return 'ruby';
  if (/^php[0-9.]*$/.test(name)) return 'php';
  if (/^lua[0-9.]*$/.test(name)) return 'lua';
  if (/^tclsh[0-9.]*$/.test(name)) return 'tclsh';
  return name in interpreters ? name : undefined;
}

/** A command that runs code: inline, from a file or from stdin (a here-document is not read). */
export function interpreter(argv: string[], stdin: Stdin, state: State): void {
  const name = argv[0]!;
  if (awks.has(name)) {
    awk(argv, state);
    return;
  }
  if (name === 'sed') {
    sed(argv, state);
    return;
  }
  const kind = interpreterName(name);
  if (!kind) return;
  const spec = interpreters[kind]!;
  const args = argv.slice(1);
  let why: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (
      spec.inline.some(
        (o) =>
          arg === o ||
          (o.startsWith('-') && !o.startsWith('--') && arg.startsWith(o) && o.length === 2) ||
          (o === '+' && arg.startsWith('+')),
      )
    ) {
      why = 'runs inline code';
      break;
    }
    if (spec.inert.includes(arg)) return;
    if (spec.values?.includes(arg)) {
      i++;
      continue;
    }
    if (arg === '-' || arg === '--') {
      why = stdin ? 'runs code from a here-document' : 'reads code from stdin';
      break;
    }
    if (arg.startsWith('-')) continue;
    why = `runs a script file: ${arg}`;
    break;
  }
  why ??= stdin ? 'runs code from a here-document' : 'reads code from stdin';
  state.classes.add('interpreter');
  state.unverifiable.push(`${name} ${why}`);
}

function awk(argv: string[], state: State): void {
  let program: string | undefined;
  for (let i = 1; i < argv.length; i++) {
    const arg = argv[i]!;
    if (/^(-[fEil]|--(file|exec|include|load))/.test(arg)) {
      state.classes.add('interpreter');
      state.unverifiable.push(`${argv[0]} runs a program file`);
      return;
    }
    if (arg === '-e' || arg === '--source') {
      program = (program ?? '') + (argv[i + 1] ?? '');
      i++;
      continue;
    }
    if (arg === '-F' || arg === '-v' || arg === '--assign' || arg === '--field-separator') {
      i++;
      continue;
    }
    if (arg === '--') {
      program ??= argv[i + 1];
      break;
    }
    if (arg.startsWith('-')) continue;
    program ??= arg;
    break;
  }
  if (program !== undefined && /system|getline|\||@load|@include|extension/.test(program)) {
    state.classes.add('interpreter');
    state.unverifiable.push(`${argv[0]} program runs commands`);
  }
}

function sed(argv: string[], state: State): void {
  const scripts: string[] = [];
  let sandbox = false;
  let positional: string | undefined;
  for (let i = 1; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '-e' || arg === '--expression') scripts.push(argv[++i] ?? '');
    else if (arg.startsWith('--expression=')) scripts.push(arg.slice(13));
    else if (arg === '-f' || arg.startsWith('--file') || /^-[a-zA-Z]*f/.test(arg)) {
      state.classes.add('interpreter');
      state.unverifiable.push('sed runs a script file');
      return;
    } else if (arg === '--sandbox') sandbox = true;
    else if (arg === '-l' || arg === '--line-length') i++;
    else if (/^-[a-zA-Z]*e$/.test(arg)) scripts.push(argv[++i] ?? '');
    else if (arg.startsWith('-') && arg !== '-') continue;
    else if (positional === undefined && scripts.length === 0) positional = arg;
  }
  if (positional !== undefined) scripts.push(positional);
  if (!sandbox && scripts.some(sedRunsOrWrites)) {
    state.classes.add('interpreter');
    state.unverifiable.push('sed script runs commands or writes files (e, w)');
  }
}

/** Reads a sed script command by command: the e command, s///e and the w commands run or write. */
export function sedRunsOrWrites(script: string): boolean {
  let i = 0;
  const s = script;
  const skipRegex = (delim: string) => {
    i++;
    while (i < s.length && s[i] !== delim) {
      if (s[i] === '\\') i++;
      else if (s[i] === '\n') return false;
      i++;
    }
    i++;
    return true;
  };
  while (i < s.length) {
    const c = s[i]!;
    if (' \t\n;'.includes(c)) {
      i++;
      continue;
    }
    // Addresses: numbers, $, /re/, \cREc, first~step, addr1,addr2, !, and I/M flags of a regex address.
    if (/[0-9$,~!+]/.test(c)) {
      i++;
      continue;
    }
    if (c === '/') {
      if (!skipRegex('/')) return true;
      while (s[i] === 'I' || s[i] === 'M') i++;
      continue;
    }
    if (c === '\\') {
      i++;
      if (!skipRegex(s[i] ?? '')) return true;
      continue;
    }
    if (c === '{' || c === '}' || c === '=') {
      i++;
      continue;
    }
    if (c === '#') {
      while (i < s.length && s[i] !== '\n') i++;
      continue;
    }
    if ('aic'.includes(c)) {
      // Text to the end of the line (with backslash-newline continuations).
      while (i < s.length && s[i] !== '\n') i += s[i] === '\\' ? 2 : 1;
      continue;
    }
    if ('rRbtTvL:'.includes(c)) {
      while (i < s.length && s[i] !== '\n' && (c === 'r' || c === 'R' || s[i] !== ';')) i++;
      continue;
    }
    if (c === 's' || c === 'y') {
      const delim = s[i + 1];
      if (delim === undefined || delim === '\n' || delim === '\\') return true;
      i++;
      if (!skipRegex(delim)) return true;
      i--;
      if (!skipRegex(delim)) return true;
      if (c === 'y') continue;
      while (i < s.length && /[gpiImMe0-9w]/.test(s[i]!)) {
        if (s[i] === 'e' || s[i] === 'w') return true;
        i++;
      }
      continue;
    }
    if ('dDgGhHlnNpPqQxzF'.includes(c)) {
      i++;
      continue;
    }
    // e, w, W, and anything not known here.
    return true;
  }
  return false;
}
