// Matching: the equivalent spellings of one command's flags, so a rule matches however the
// agent writes them.

/** Long options that are another spelling of a short one, for the commands rules name most. */
const longSpellings: Record<string, Record<string, string>> = {
  rm: { '--recursive': '-r', '-R': '-r', '--force': '-f', '--dir': '-d', '--verbose': '-v' },
  chmod: { '--recursive': '-R' },
  chown: { '--recursive': '-R' },
  cp: { '--recursive': '-r', '-R': '-r', '--force': '-f' },
};

/**
 * Equivalent spellings of one command's flags, so a rule written "rm -rf *" also matches
 * `rm -r -f /`, `rm -fr /`, `rm / -rf` and `rm --recursive --force /`: as written; short flags
 * clustered in the order written, sorted, and reverse sorted; and each flag on its own, all
 * before the operands (GNU tools accept options anywhere).
 */
export function spellings(argv: string[]): string[][] {
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
  if (letters.length === 0) return [argv];
  const name = argv[0]!;
  const sorted = [...letters].sort();
  const forms = [
    argv,
    [name, `-${letters.join('')}`, ...longs, ...operands],
    [name, `-${sorted.join('')}`, ...longs, ...operands],
    [name, `-${[...sorted].reverse().join('')}`, ...longs, ...operands],
    [name, ...letters.map((l) => `-${l}`), ...longs, ...operands],
  ];
  const seen = new Set<string>();
  return forms.filter((form) => {
    const key = JSON.stringify(form);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
