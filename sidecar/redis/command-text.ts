// A command as events and approvers see it: the name and arguments, each cut to a readable
// length, with passwords left out (AUTH, HELLO … AUTH, MIGRATE … AUTH/AUTH2, ACL SETUSER
// >password, CONFIG SET requirepass) and detected values masked. A command on a key whose
// values are masked shows its keys and nothing else: what it writes there is masked data too.
import type { MaskingPlan } from '../policy/masking.ts';

const maxArgument = 64;
const maxText = 4096;
const secretSettings = new Set([
  'requirepass',
  'masterauth',
  'masteruser',
  'tls-key-file-pass',
  'tls-client-key-file-pass',
]);

/** keysOnly: show the name, the subcommand and these keys, every other argument as '?'. */
export function commandText(
  argv: readonly string[],
  plan: MaskingPlan,
  keysOnly?: { keys: ReadonlySet<string>; subcommand: boolean },
): string {
  const name = (argv[0] ?? '').toUpperCase();
  const shown: string[] = [name];
  let hidden = name === 'AUTH' ? argv.length : 0;
  const container = name === 'CONFIG' || name === 'ACL' ? (argv[1] ?? '').toUpperCase() : '';
  for (let i = 1; i < argv.length; i++) {
    const arg = argv[i]!;
    if (keysOnly && !(keysOnly.subcommand && i === 1) && !keysOnly.keys.has(arg)) {
      shown.push('?');
      continue;
    }
    if (hidden > 0) {
      hidden--;
      shown.push('?');
      continue;
    }
    const word = arg.toUpperCase();
    if (word === 'AUTH') hidden = name === 'MIGRATE' ? 1 : 2;
    else if (word === 'AUTH2') hidden = 2;
    else if (container === 'SETUSER' && i > 2 && /^[<>#!]/.test(arg)) {
      shown.push(`${arg[0]}?`);
      continue;
    } else if (
      container === 'SET' &&
      i > 2 &&
      i % 2 === 1 &&
      secretSettings.has((argv[i - 1] ?? '').toLowerCase())
    ) {
      shown.push('?');
      continue;
    }
    shown.push(quote(arg.length > maxArgument ? `${arg.slice(0, maxArgument)}…(${arg.length})` : arg));
  }
  const text = shown.join(' ');
  return plan.maskText(text.length > maxText ? `${text.slice(0, maxText)}…` : text).value;
}

function quote(arg: string): string {
  return arg === '' || /[\s"']/.test(arg) ? JSON.stringify(arg) : arg;
}
