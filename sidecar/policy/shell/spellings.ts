// Matching: the equivalent spellings of one command (its flags, its options before a
// subcommand, another command that does the same), so a rule matches however the agent writes it.

/** Long options that are another spelling of a short one, for the commands rules name most. */
const longSpellings: Record<string, Record<string, string>> = {
  rm: { '--recursive': '-r', '-R': '-r', '--force': '-f', '--dir': '-d', '--verbose': '-v' },
  chmod: { '--recursive': '-R' },
  chown: { '--recursive': '-R' },
  cp: { '--recursive': '-r', '-R': '-r', '--force': '-f' },
};

/**
 * Other commands that do what this one does, for the service managers rules name most: a rule
 * written for `systemctl restart *` also holds `service orders restart`, one for `reboot*`
 * also `systemctl reboot` and `init 6`.
 */
function equivalents(argv: string[]): string[][] {
  const [name, ...rest] = argv;
  const operands = rest.filter((arg) => !arg.startsWith('-'));
  if (name === 'service' && operands.length >= 2) return [['systemctl', operands[1]!, operands[0]!]];
  if (name === 'systemctl') {
    const verb = operands[0];
    if (verb === 'reboot' || verb === 'kexec') return [['reboot']];
    if (verb === 'poweroff' || verb === 'halt') return [['shutdown'], [verb]];
  }
  if ((name === 'init' || name === 'telinit') && operands.length === 1) {
    if (operands[0] === '0') return [['shutdown'], ['poweroff']];
    if (operands[0] === '6') return [['reboot']];
  }
  return [];
}

/**
 * Equivalent spellings of one command, so a rule matches however the agent writes it: a rule
 * written "rm -rf *" also matches `rm -r -f /`, `rm -fr /`, `rm / -rf` and
 * `rm --recursive --force /`; one written "systemctl restart *" also matches
 * `systemctl --no-pager -H host restart orders` and `service orders restart`. The forms: as
 * written; short flags clustered in the order written, sorted, and reverse sorted; each flag on
 * its own, all before the operands (GNU tools accept options anywhere); and, when there are
 * options, the operands alone or followed by the options, also without the first one or two
 * operands (which may be an option's value: `git -C /srv clean -fdx` reads as
 * `git clean -f -d -x`). Only deny and approval rules decide, so a form too many refuses more,
 * never less.
 */
export function spellings(argv: string[]): string[][] {
  const forms = [...flagForms(argv), ...equivalents(argv).flatMap(flagForms)];
  const seen = new Set<string>();
  return forms.filter((form) => {
    const key = JSON.stringify(form);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

function flagForms(argv: string[]): string[][] {
  if (argv.length < 2) return [argv];
  const table = longSpellings[argv[0]!] ?? {};
  const letters: string[] = [];
  const longs: string[] = [];
  const operands: string[] = [];
  let ended = false;
  for (const raw of argv.slice(1)) {
    const arg = table[raw] ?? raw;
    if (ended || arg === '-' || !arg.startsWith('-') || /^-[0-9]/.test(arg)) {
      operands.push(arg);
    } else if (arg === '--') {
      ended = true;
    } else if (arg.startsWith('--')) {
      longs.push(arg);
    } else {
      for (const letter of arg.slice(1)) {
        const aliased = (table[`-${letter}`] ?? `-${letter}`).slice(1);
        if (!letters.includes(aliased)) letters.push(aliased);
      }
    }
  }
  if (letters.length === 0 && longs.length === 0) return [argv];
  const name = argv[0]!;
  const options = [...letters.map((l) => `-${l}`), ...longs];
  const bare = [0, 1, 2]
    .filter((skip) => skip === 0 || operands.length > skip)
    .flatMap((skip) => [
      [name, ...operands.slice(skip)],
      [name, ...operands.slice(skip), ...options],
    ]);
  if (letters.length === 0) return [argv, [name, ...longs, ...operands], ...bare];
  const sorted = [...letters].sort();
  return [
    argv,
    [name, `-${letters.join('')}`, ...longs, ...operands],
    [name, `-${sorted.join('')}`, ...longs, ...operands],
    [name, `-${[...sorted].reverse().join('')}`, ...longs, ...operands],
    [name, ...letters.map((l) => `-${l}`), ...longs, ...operands],
    ...bare,
  ];
}
