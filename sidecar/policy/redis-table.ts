// Redis's own command table (redis-command-table.json, written from a real server's COMMAND
// reply by sidecar/redis/generate-command-table.ts): arity, flags, ACL categories, key specs and
// subcommands of every command. Lookup and key extraction follow Redis's own code
// (lookupCommand, getKeysUsingKeySpecs), so the keys a rule sees are the keys Redis touches.
import table from './redis-command-table.json' with { type: 'json' };

export interface RedisKeySpec {
  /** RO, RW, OW, RM, ACCESS, UPDATE, INSERT, DELETE, NOT_KEY, INCOMPLETE, VARIABLE_FLAGS. */
  flags: string[];
  /** begin_search: a fixed argument index, or the argument after a keyword; neither: unknown. */
  index?: number;
  keyword?: { keyword: string; startfrom: number };
  /** find_keys: a range from the first key, or a count argument; neither: unknown. */
  range?: { lastkey: number; step: number; limit: number };
  keynum?: { keynumidx: number; firstkey: number; step: number };
}

export interface RedisCommandSpec {
  /** Argument count with the name; negative: at least that many. */
  arity: number;
  flags: string[];
  /** ACL categories, without the @. */
  categories: string[];
  keys: RedisKeySpec[];
  subcommands?: Record<string, RedisCommandSpec>;
}

export const redisTableVersion: string = table.version;
const commands = table.commands as unknown as Record<string, RedisCommandSpec>;

export interface FoundCommand {
  /** As rules and events name it: "GET", "CONFIG SET". */
  name: string;
  spec: RedisCommandSpec;
}

/** The command (and subcommand) argv names, or undefined when Redis would not know it. */
export function lookupCommand(argv: readonly string[]): FoundCommand | undefined {
  const first = argv[0]?.toLowerCase();
  if (first === undefined || !Object.hasOwn(commands, first)) return undefined;
  const spec = commands[first]!;
  if (!spec.subcommands) return { name: first.toUpperCase(), spec };
  // A container with no subcommand named is Redis's arity error (or its HELP): the container.
  const second = argv[1]?.toLowerCase();
  if (second === undefined) return { name: first.toUpperCase(), spec };
  if (!Object.hasOwn(spec.subcommands, second)) return undefined;
  return { name: `${first} ${second}`.toUpperCase(), spec: spec.subcommands[second]! };
}

/** Every command and subcommand name in the table, as rules name them. */
export function allCommands(): FoundCommand[] {
  const found: FoundCommand[] = [];
  for (const [name, spec] of Object.entries(commands)) {
    found.push({ name: name.toUpperCase(), spec });
    for (const [sub, subSpec] of Object.entries(spec.subcommands ?? {}))
      found.push({ name: `${name} ${sub}`.toUpperCase(), spec: subSpec });
  }
  return found;
}

export interface CommandKey {
  name: string;
  flags: string[];
}

/**
 * The keys a command touches by its key specs (Redis's getKeysUsingKeySpecs), and whether that
 * is all of them: false when a spec is unknown or marked INCOMPLETE, or does not fit the argv.
 * Pub/sub channels (NOT_KEY) are not keys.
 */
export function commandKeys(
  spec: RedisCommandSpec,
  argv: readonly string[],
): { keys: CommandKey[]; complete: boolean } {
  const argc = argv.length;
  const keys: CommandKey[] = [];
  let complete = true;
  for (const ks of spec.keys) {
    if (ks.flags.includes('INCOMPLETE')) complete = false;
    let first = 0;
    if (ks.index !== undefined) {
      first = ks.index;
      if (first >= argc) continue;
    } else if (ks.keyword) {
      const { keyword, startfrom } = ks.keyword;
      const start = startfrom > 0 ? startfrom : argc + startfrom;
      const end = startfrom > 0 ? argc - 1 : 1;
      for (let i = start; i !== end; i = start <= end ? i + 1 : i - 1) {
        if (i >= argc || i < 1) break;
        if (argv[i]!.toLowerCase() === keyword.toLowerCase()) {
          first = i + 1;
          break;
        }
      }
      if (first === 0) continue;
    } else {
      complete = false;
      continue;
    }
    let last: number;
    let step: number;
    if (ks.range) {
      step = ks.range.step;
      if (ks.range.lastkey >= 0) last = first + ks.range.lastkey;
      else if (!ks.range.limit) last = argc + ks.range.lastkey;
      else last = first + (Math.floor((argc - first) / ks.range.limit) + ks.range.lastkey);
    } else if (ks.keynum) {
      step = ks.keynum.step;
      if (ks.keynum.keynumidx >= argc - first) {
        complete = false;
        continue;
      }
      const count = argv[first + ks.keynum.keynumidx]!;
      if (!/^(0|[1-9][0-9]{0,9})$/.test(count)) {
        complete = false;
        continue;
      }
      first += ks.keynum.firstkey;
      last = first + Number(count) - 1;
    } else {
      complete = false;
      continue;
    }
    if (step < 1) {
      complete = false;
      continue;
    }
    for (let i = first; i <= last; i += step) {
      // Past the argv: Redis leaves the arity error to the command; nothing runs.
      if (i >= argc) break;
      if (ks.flags.includes('NOT_KEY')) continue;
      keys.push({ name: argv[i]!, flags: ks.flags });
    }
  }
  return { keys, complete };
}
