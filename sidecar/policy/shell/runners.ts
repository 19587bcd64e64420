// Runners: programs that run the argv (or the shell string) they are given (sudo, env, timeout,
// flock, xargs, ...), each with its own option grammar, and the unwrapping that strips those
// options to analyse what runs.
import { environment } from './script.ts';
import { shellString } from './shells.ts';
import { run } from './simple-commands.ts';
import { assign, type State, type Stdin } from './state.ts';

interface Runner {
  /** Short options without a value. */
  flags?: string;
  /** Short options with a value, attached or in the next word. */
  values?: string;
  /** Short options whose optional value can only be attached (xargs -i, prlimit -n). */
  attached?: string;
  /** Long options: true when they take a value (attached with = or in the next word). */
  long?: Record<string, boolean>;
  /** Positional operands before the command (timeout's duration, chroot's new root). */
  operands?: number;
  /** The operands come before the options (setarch arch [options] program). */
  operandsFirst?: boolean;
  /** NAME=value words before the command. */
  assignments?: boolean;
  /** Options after which the command is not run (command -v, sudo -l). */
  inert?: string[];
  /** Options that make it start a shell reading its commands from the channel when no command follows. */
  shells?: string[];
  /** Without a command, it starts a shell reading from the channel. */
  shellWhenEmpty?: boolean;
  /** Numeric options (nice -10). */
  numeric?: boolean;
  /** Appends what it reads from stdin as arguments (xargs). */
  appends?: boolean;
}

const flag = (names: string) => Object.fromEntries(names.split(' ').map((n) => [n, false]));
const valued = (names: string) => Object.fromEntries(names.split(' ').map((n) => [n, true]));

export const runners: Record<string, Runner> = {
  sudo: {
    flags: 'AbEeHiKklnPSsVv',
    values: 'CDghpRrTtUu',
    long: {
      ...flag(
        'askpass background preserve-env edit set-home login remove-timestamp reset-timestamp list non-interactive preserve-groups stdin shell validate version help bell',
      ),
      ...valued('user group close-from chdir host prompt role type command-timeout other-user chroot'),
    },
    assignments: true,
    inert: ['-e', '--edit', '-l', '--list', '-v', '--validate', '-V', '--version', '-K', '--help'],
    shells: ['-s', '-i', '--shell', '--login'],
  },
  doas: { flags: 'Lns', values: 'uC', inert: ['-C', '-L'], shells: ['-s'] },
  pkexec: {
    long: { ...flag('disable-internal-agent keep-cwd version help'), ...valued('user') },
    shellWhenEmpty: true,
  },
  env: {
    flags: '0iv',
    values: 'uCS',
    long: {
      ...flag('ignore-environment null debug list-signal-handling block-signal default-signal ignore-signal'),
      ...valued('unset chdir split-string'),
    },
    assignments: true,
  },
  nice: { values: 'n', long: valued('adjustment'), numeric: true },
  ionice: {
    flags: 't',
    values: 'cnpPu',
    long: { ...flag('ignore'), ...valued('class classdata pid pgid uid') },
    inert: ['-p', '-P', '-u', '--pid', '--pgid', '--uid'],
  },
  nohup: {},
  setsid: { flags: 'cfw', long: flag('ctty fork wait') },
  time: {
    flags: 'pvqaV',
    values: 'fo',
    long: { ...flag('append verbose quiet portability'), ...valued('format output') },
  },
  stdbuf: { values: 'ioe', long: valued('input output error') },
  timeout: {
    flags: 'fpv',
    values: 'sk',
    long: { ...flag('foreground preserve-status verbose'), ...valued('signal kill-after') },
    operands: 1,
  },
  command: { flags: 'p', inert: ['-v', '-V'] },
  builtin: {},
  exec: { flags: 'cl', values: 'a' },
  xargs: {
    flags: '0prtxo',
    values: 'adEILnPs',
    attached: 'eil',
    long: {
      ...flag('interactive no-run-if-empty null open-tty show-limits exit verbose replace eof max-lines'),
      ...valued('arg-file delimiter max-args max-procs max-chars process-slot-var'),
    },
    appends: true,
  },
  busybox: {},
  chroot: {
    long: { ...flag('skip-chdir'), ...valued('userspec groups') },
    operands: 1,
    shellWhenEmpty: true,
  },
  // flock [options] file command..., or flock [options] file -c string (-c only after the file).
  flock: {
    flags: 'sxeunoF',
    values: 'wE',
    long: {
      ...flag('shared exclusive unlock nonblock nb close no-fork fcntl verbose'),
      ...valued('wait timeout conflict-exit-code'),
    },
    operands: 1,
  },
  chrt: {
    flags: 'abdefiorRmpv',
    values: 'TPD',
    long: {
      ...flag('all-tasks batch deadline ext fifo idle other rr reset-on-fork max pid verbose'),
      ...valued('sched-runtime sched-period sched-deadline'),
    },
    operands: 1,
    inert: ['-m', '--max', '-p', '--pid'],
  },
  taskset: { flags: 'acp', long: flag('all-tasks cpu-list pid'), operands: 1, inert: ['-p', '--pid'] },
  setpriv: {
    flags: 'd',
    long: {
      ...flag('clear-groups keep-groups init-groups reset-env nnp no-new-privs dump'),
      ...valued(
        'reuid regid ruid rgid euid egid groups inh-caps ambient-caps bounding-set securebits pdeathsig selinux-label apparmor-profile landlock-access landlock-rule seccomp-filter ptracer',
      ),
    },
    inert: ['-d', '--dump'],
  },
  prlimit: {
    attached: 'cdefilmnqrstuvxy',
    values: 'po',
    long: {
      ...flag(
        'noheadings raw verbose as core cpu data fsize locks memlock msgqueue nice nofile nproc rss rtprio rttime sigpending stack',
      ),
      ...valued('pid output'),
    },
    inert: ['-p', '--pid'],
  },
  unshare: {
    flags: 'muinpUCTfrc',
    values: 'SGRwl',
    long: {
      ...flag(
        'mount uts ipc net pid user cgroup time fork kill-child mount-proc map-root-user map-current-user map-auto keep-caps mount-binfs',
      ),
      ...valued(
        'propagation setgroups map-user map-group map-users map-groups setuid setgid root wd monotonic boottime load-interp',
      ),
    },
    shellWhenEmpty: true,
  },
  nsenter: {
    flags: 'amuinpUCTFZe',
    attached: 'rw',
    values: 'tSG',
    long: {
      ...flag(
        'all mount uts ipc net pid user cgroup time root wd preserve-credentials no-fork follow-context env join-cgroup',
      ),
      ...valued('target setuid setgid user-parent'),
    },
    shellWhenEmpty: true,
  },
  setarch: {
    flags: 'RFZLXBIT3v',
    long: flag(
      'uname-2.6 addr-no-randomize fdpic-funcptrs mmap-page-zero addr-compat-layout read-implies-exec 32bit short-inode whole-seconds sticky-timeouts 3gb 4gb verbose',
    ),
    operands: 1,
    operandsFirst: true,
    inert: ['--list'],
    shellWhenEmpty: true,
  },
  strace: {
    flags: 'fFcCwdDqrtTvVxyzZkin',
    values: 'eoOpsuEabIPSXU',
    long: {
      ...flag('follow-forks summary-only summary output-separately'),
      ...valued('trace signal status output'),
    },
    inert: ['-p', '-V'],
  },
  ltrace: {
    flags: 'bcCfhiLrStTVw',
    values: 'aeEnopsuAxDFlI',
    inert: ['-p', '-V'],
  },
  'systemd-run': {
    flags: 'rtPGq',
    values: 'uEpMH',
    long: {
      ...flag(
        'user system scope remain-after-exit wait pty pipe collect quiet no-block no-ask-password same-dir',
      ),
      ...valued(
        'unit property description slice setenv uid gid nice working-directory machine host service-type on-active on-boot on-startup on-unit-active on-unit-inactive on-calendar timer-property path-property socket-property',
      ),
    },
    shells: ['-S', '--shell'],
  },
  fakeroot: { long: valued('lib faked') },
  faketime: { flags: 'm', values: 'fp', operands: 1 },
  eatmydata: {},
  catchsegv: {},
  torsocks: { flags: 'iq', values: 'uapP', long: flag('isolate quiet') },
  proxychains: { flags: 'q', values: 'f' },
  proxychains4: { flags: 'q', values: 'f' },
  cgexec: { values: 'g', long: flag('sticky') },
  unbuffer: { flags: 'p' },
  'dbus-run-session': {},
  numactl: {
    flags: 'al',
    values: 'CNmipP',
    long: {
      ...flag('all localalloc'),
      ...valued('physcpubind cpunodebind membind interleave preferred weighted-interleave'),
    },
  },
};
for (const name of [
  'linux32',
  'linux64',
  'i386',
  'x86_64',
  'i686',
  'aarch64',
  'arm64',
  'armv7l',
  'ppc64le',
  's390x',
]) {
  runners[name] = { ...runners.setarch, operands: 0 };
}

/** Strips a runner's options with its own grammar and analyses what it runs. */
export function unwrap(argv: string[], dynamic: boolean[], runner: Runner, stdin: Stdin, state: State): void {
  const name = argv[0]!;
  const leading = runner.operandsFirst ? (runner.operands ?? 0) : 0;
  const trailing = (runner.operands ?? 0) - leading;
  let i = 1 + leading;
  let inert = false;
  let shellRequested = false;
  const refuse = (why: string) => state.unverifiable.push(`${name}: ${why}`);
  // xargs -I R / -i[R] / --replace[=R]: R in the command stands for what stdin holds.
  let replace: string | undefined;
  const option = (opt: string, value?: string) => {
    if (name === 'xargs' && opt === '-I') replace = value;
    if (name === 'xargs' && (opt === '-i' || opt === '--replace')) replace = value ?? '{}';
    if (runner.inert?.includes(opt)) inert = true;
    if (runner.shells?.includes(opt)) shellRequested = true;
    if (name === 'env' && (opt === '-S' || opt === '--split-string') && value !== undefined) {
      splitString(value, argv.slice(i + 1), state);
      inert = true;
    }
    if (name === 'env' && (opt === '-u' || opt === '--unset') && value !== undefined)
      assign(state, value, null);
  };
  for (; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      i++;
      break;
    }
    // env and sudo take any word with = for an assignment (BASH_FUNC_ls%%=() {...} included).
    if (runner.assignments && /^[^=-][^=]*=/.test(arg)) {
      environment(arg.slice(0, arg.indexOf('=')), state, arg.slice(arg.indexOf('=') + 1));
      continue;
    }
    if (name === 'env' && arg === '-') continue;
    if (arg.startsWith('--') && arg.length > 2) {
      const eq = arg.indexOf('=');
      const longName = arg.slice(2, eq === -1 ? undefined : eq);
      const takes = runner.long?.[longName];
      if (takes === undefined) {
        refuse(`unknown option ${arg}`);
        return;
      }
      let value = eq === -1 ? undefined : arg.slice(eq + 1);
      if (takes && value === undefined) value = argv[++i];
      option(`--${longName}`, value);
      continue;
    }
    if (arg.startsWith('-') && arg.length > 1) {
      if (runner.numeric && /^-[0-9]+$/.test(arg)) continue;
      for (let j = 1; j < arg.length; j++) {
        const letter = arg[j]!;
        if (runner.flags?.includes(letter)) {
          option(`-${letter}`);
          continue;
        }
        if (runner.attached?.includes(letter)) {
          option(`-${letter}`, arg.slice(j + 1) || undefined);
          break;
        }
        if (runner.values?.includes(letter)) {
          const attached = arg.slice(j + 1);
          const value = attached || argv[i + 1];
          if (!attached) i++;
          option(`-${letter}`, value);
          break;
        }
        refuse(`unknown option -${letter}`);
        return;
      }
      continue;
    }
    break;
  }
  if (inert) return;
  let rest = argv.slice(i + trailing);
  let restDynamic = dynamic.slice(i + trailing);
  if (name === 'flock' && rest[0] !== undefined && (rest[0] === '-c' || rest[0] === '--command')) {
    // flock file -c 'command'
    shellString(rest[1] ?? '', restDynamic[1] === true, state);
    return;
  }
  if (i + trailing > argv.length) return;
  if (rest.length === 0) {
    if (shellRequested || runner.shellWhenEmpty) refuse('starts a shell that reads its commands from stdin');
    return;
  }
  if (name === 'busybox' && rest[0]!.startsWith('-')) return;
  if (replace !== undefined) {
    const r = replace;
    restDynamic = rest.map((a, k) => restDynamic[k] === true || (r !== '' && a.includes(r)));
  } else if (runner.appends) {
    // xargs appends what it reads from stdin: shown as {} like find -exec's file name.
    rest = [...rest, '{}'];
    restDynamic = [...restDynamic, true];
  }
  if (restDynamic[0]) {
    refuse(`runs a computed command: ${rest[0]}`);
    return;
  }
  run(rest, restDynamic, runner.appends ? undefined : stdin, state);
}

/** env -S "string": split into words (quotes and backslashes as env reads them) and run. */
function splitString(value: string, following: string[], state: State): void {
  if (/[$\\]/.test(value)) {
    state.unverifiable.push('env -S with escapes or variables');
    return;
  }
  const words = value.match(/'[^']*'|"[^"]*"|[^\s'"]+/g) ?? [];
  const argv = [...words.map((w) => w.replace(/^['"]|['"]$/g, '')), ...following];
  if (argv.length > 0) run(argv, [], undefined, state);
}
