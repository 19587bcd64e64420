// Programs that run a command given in a syntax of their own: watch, find -exec, GNU parallel,
// ssh's remote command, options of ordinary programs that name a command (tar, rsync, scp, zip,
// tcpdump) and git's command-line configuration.
import { script } from './script.ts';
import { shellString } from './shells.ts';
import { run } from './simple-commands.ts';
import type { State, Stdin } from './state.ts';

export function watch(argv: string[], dynamic: boolean[], stdin: Stdin, state: State): void {
  let exec = false;
  let i = 1;
  for (; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      i++;
      break;
    }
    if (arg === '-x' || arg === '--exec') exec = true;
    else if (['-n', '-q', '--interval', '--equexit'].includes(arg)) i++;
    else if (/^-[bcdegtwpxrC]+$/.test(arg) || /^--(interval|equexit|differences)=/.test(arg)) {
      if (arg.includes('x') && !arg.startsWith('--')) exec = true;
    } else if (
      /^--(beep|color|no-color|differences|chgexit|errexit|no-title|no-wrap|precise|no-linewrap)$/.test(
        arg,
      ) ||
      /^-n[0-9.]+$/.test(arg)
    ) {
      // a known flag
    } else if (arg.startsWith('-')) {
      state.unverifiable.push(`watch: unknown option ${arg}`);
      return;
    } else break;
  }
  if (i >= argv.length) return;
  // Without -x, watch hands its arguments, joined, to sh -c.
  if (exec) run(argv.slice(i), dynamic.slice(i), stdin, state);
  else shellString(argv.slice(i).join(' '), dynamic.slice(i).some(Boolean), state);
}

export function find(argv: string[], dynamic: boolean[], state: State): void {
  for (let i = 1; i < argv.length; i++) {
    const arg = argv[i]!;
    if (['-exec', '-execdir', '-ok', '-okdir'].includes(arg)) {
      const end = argv.findIndex((a, j) => j > i && (a === ';' || a === '+'));
      const stop = end === -1 ? argv.length : end;
      // {} is a file name, which the agent may have chosen earlier: a word holding it is computed.
      const words = argv.slice(i + 1, stop);
      const computed = words.map((w, k) => dynamic[i + 1 + k] === true || w.includes('{}'));
      if (computed[0]) state.unverifiable.push(`find runs a computed command: ${words[0]}`);
      else if (words.length > 0) run(words, computed, undefined, state);
      i = stop;
    } else if (arg === '-fprint' || arg === '-fprint0' || arg === '-fprintf' || arg === '-fls') {
      i++;
    }
  }
}

/** GNU parallel: the command words, joined, run under a shell for each input. */
export function parallel(argv: string[], dynamic: boolean[], state: State): void {
  const values = new Set([
    '-j',
    '-P',
    '-S',
    '-I',
    '-a',
    '-d',
    '-E',
    '-L',
    '-N',
    '-n',
    '-s',
    '-C',
    '--jobs',
    '--sshlogin',
    '--arg-file',
    '--delimiter',
    '--colsep',
    '--halt',
    '--joblog',
    '--results',
    '--tmpdir',
    '--timeout',
    '--retries',
    '--delay',
    '--tagstring',
    '--max-args',
    '--max-replace-args',
  ]);
  const flags = new Set([
    '-k',
    '-v',
    '-u',
    '-q',
    '-X',
    '-m',
    '-0',
    '-g',
    '-t',
    '--null',
    '--group',
    '--keep-order',
    '--verbose',
    '--dry-run',
    '--tag',
    '--line-buffer',
    '--ungroup',
    '--bar',
    '--progress',
    '--eta',
    '--no-notice',
    '--will-cite',
    '--quote',
    '--xargs',
    '--pipe',
  ]);
  let i = 1;
  for (; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      i++;
      break;
    }
    if (values.has(arg)) i++;
    else if (flags.has(arg) || /^-[jPnNsL][0-9]+$/.test(arg) || /^--[a-z-]+=/.test(arg)) continue;
    else if (arg.startsWith('-')) {
      state.unverifiable.push(`${argv[0]}: unknown option ${arg}`);
      return;
    } else break;
  }
  const end = argv.findIndex((a, j) => j >= i && /^:::+\+?$/.test(a));
  const words = argv.slice(i, end === -1 ? argv.length : end);
  if (words.length === 0) {
    state.unverifiable.push(`${argv[0]} runs commands it reads from stdin or its arguments`);
    return;
  }
  if (words.some((w) => w.includes('{'))) {
    // Replacement strings ({}, {.}, {1}, ...) put the inputs into the command line.
    state.unverifiable.push(`${argv[0]} puts its inputs into the command line`);
    return;
  }
  // Each input is appended to the command (shown as {} like xargs').
  shellString(`${words.join(' ')} {}`, dynamic.slice(i, i + words.length).some(Boolean), state);
}

const remoteShell = 'ssh starts a remote shell that reads its commands from stdin';

/** ssh host command...: the words, joined, run under the remote user's shell. */
export function sshCommand(argv: string[], dynamic: boolean[], state: State): void {
  const values = 'BbcDEeFIiJLlmOopQRSWw';
  let i = 1;
  for (; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('-') || arg === '-') break;
    if (arg === '--') {
      i++;
      break;
    }
    const letter = arg[1]!;
    if (!values.includes(letter)) continue;
    const value = arg.length > 2 ? arg.slice(2) : argv[++i];
    if (
      letter === 'F' ||
      (letter === 'o' &&
        /^(Proxy|Local|KnownHosts)Command|PermitLocalCommand|Match|Include/i.test(value ?? ''))
    ) {
      state.unverifiable.push('ssh runs a local command from its configuration');
      return;
    }
    if (letter === 'J' || letter === 'W') continue;
  }
  const words = argv.slice(i + 1);
  if (words.length === 0) {
    state.unverifiable.push(remoteShell);
    return;
  }
  shellString(words.join(' '), dynamic.slice(i + 1).some(Boolean), state);
}

/** Options of ordinary programs whose value is a command they run (GTFOBins' classics). */
const commandOption: Record<string, RegExp> = {
  tar: /^(--to-command|--use-compress-program|--info-script|--new-volume-script|--rsh-command|--checkpoint-action=exec)=?(.*)$|^-([IF])(.*)$/,
  rsync: /^(--rsh)=?(.*)$|^-(e)(.*)$/,
  scp: /^-(S)(.*)$/,
  zip: /^(--unzip-command)=?(.*)$|^-(TT)(.*)$/,
  tcpdump: /^-(z)(.*)$/,
};

/** Analyses the commands such options name, as the shell string each program hands to sh -c. */
export function commandOptions(argv: string[], state: State): void {
  const pattern = commandOption[argv[0]!]!;
  for (let i = 1; i < argv.length; i++) {
    const match = pattern.exec(argv[i]!);
    if (!match) continue;
    const attached = match[2] ?? match[4] ?? '';
    const value = attached !== '' || argv[i]!.includes('=') ? attached.replace(/^=?exec=/, '') : argv[++i];
    if (value === undefined) continue;
    // ssh run by rsync or scp gets the host and the remote command after the words given: its
    // want of a remote command is not one here.
    const before = state.unverifiable.length;
    script(value, state);
    const added = state.unverifiable.splice(before);
    state.unverifiable.push(...added.filter((why) => why !== remoteShell));
  }
}

/** git: configuration given on the command line can name programs git runs. */
export function git(argv: string[], state: State): void {
  for (let i = 1; i < argv.length; i++) {
    const arg = argv[i]!;
    const config = arg === '-c' ? argv[i + 1] : arg.startsWith('-c') ? arg.slice(2) : undefined;
    if (
      config !== undefined &&
      /alias\.|command|editor|pager|hook|ssh|fsmonitor|filter\.|diff\.|textconv|credential|proxy|program|askpass/i.test(
        config,
      )
    ) {
      state.unverifiable.push(`git -c ${config} names a program to run`);
      return;
    }
    if (arg === '--exec-path' || arg.startsWith('--exec-path=') || arg === '--config-env') {
      state.unverifiable.push(`git ${arg} changes the programs git runs`);
      return;
    }
  }
}
