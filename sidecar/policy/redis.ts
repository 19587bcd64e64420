// What a Redis command is, for the policy: its name (with the subcommand), its classes from
// Redis's own ACL categories, and the keys it touches from its key specs. What cannot be known
// is read the fail-closed way: a command Redis's table does not list has every class and
// unknown keys; a script (EVAL, FCALL) has the classes of every command it could call and
// unknown keys; a write with no key specs (FLUSHALL, SWAPDB) touches keys it cannot name.
import { type RedisCommandClass, redisCommandClasses } from '../../api/names.ts';
import {
  allCommands,
  type CommandKey,
  commandKeys,
  type FoundCommand,
  lookupCommand,
} from './redis-table.ts';

export interface RedisCommand {
  /** "GET", "CONFIG SET"; a command Redis does not know: its first word, in capitals. */
  name: string;
  known: boolean;
  classes: RedisCommandClass[];
  keys: CommandKey[];
  /** Every key the command touches is in keys. */
  keysComplete: boolean;
  /** It reads values: the read class, or a key spec that returns or copies a value (ACCESS). */
  reads: boolean;
  /** A script runner: the commands its script may call (every one, or those that do not write). */
  runs?: 'any' | 'read';
  /** Blocks until data arrives or a timeout (BLPOP, XREAD BLOCK…), by the table's flag. */
  blocking: boolean;
}

/** The commands that run a script, and what the script may call: _RO scripts cannot write. */
const runners: Record<string, 'any' | 'read'> = {
  EVAL: 'any',
  EVALSHA: 'any',
  FCALL: 'any',
  EVAL_RO: 'read',
  EVALSHA_RO: 'read',
  FCALL_RO: 'read',
};

function classesOf(found: FoundCommand): RedisCommandClass[] {
  return redisCommandClasses.filter((c) => found.spec.categories.includes(c));
}

/** What a script may call: commands Redis allows in scripts (no noscript flag). */
function callable(runs: 'any' | 'read'): FoundCommand[] {
  return allCommands().filter(
    (c) => !c.spec.flags.includes('noscript') && (runs === 'any' || !c.spec.categories.includes('write')),
  );
}

const callableCache = new Map<'any' | 'read', { names: string[]; classes: RedisCommandClass[] }>();

/** The command names a script runner may call, and their classes. */
export function scriptReach(runs: 'any' | 'read'): { names: string[]; classes: RedisCommandClass[] } {
  let reach = callableCache.get(runs);
  if (!reach) {
    const commands = callable(runs);
    const classes = new Set<RedisCommandClass>(['scripting']);
    for (const c of commands) for (const cls of classesOf(c)) classes.add(cls);
    reach = {
      names: commands.map((c) => c.name),
      classes: redisCommandClasses.filter((c) => classes.has(c)),
    };
    callableCache.set(runs, reach);
  }
  return reach;
}

/** What a command is whatever its arguments, worked out once per command. */
interface Traits {
  classes: RedisCommandClass[];
  /** Its key specs can name every key it touches. */
  keysNamed: boolean;
  reads: boolean;
  runs?: 'any' | 'read';
  blocking: boolean;
}

const traitsCache = new Map<string, Traits>();

function traitsOf(found: FoundCommand): Traits {
  let traits = traitsCache.get(found.name);
  if (!traits) {
    const runs = runners[found.name];
    const classes = runs ? scriptReach(runs).classes : classesOf(found);
    const writesUnnamed = classes.includes('write') && found.spec.keys.length === 0;
    traits = {
      classes,
      keysNamed: !runs && !writesUnnamed,
      reads: classes.includes('read') || found.spec.keys.some((k) => k.flags.includes('ACCESS')),
      ...(runs && { runs }),
      blocking: found.spec.flags.includes('blocking'),
    };
    traitsCache.set(found.name, traits);
  }
  return traits;
}

/**
 * What the enforcer refuses whatever the policies say: commands whose effect it could not
 * govern. undefined for every other command.
 */
export function refusedRedisCommand(
  argv: readonly string[],
): { code: 'policy-denied' | 'unsupported'; message: string } | undefined {
  const name = (argv[0] ?? '').toUpperCase();
  switch (name) {
    case 'MONITOR':
      return {
        code: 'policy-denied',
        message: 'airlock: MONITOR is refused: it would show every client’s commands, past any policy',
      };
    case 'SYNC':
    case 'PSYNC':
      // A replication stream is not RESP replies: nothing could be decided or masked in it.
      return { code: 'unsupported', message: `airlock: ${name} (replication) is not supported` };
    case 'CLIENT':
      // With replies off, replies could no longer be matched to commands.
      if ((argv[1] ?? '').toUpperCase() === 'REPLY' && (argv[2] ?? '').toUpperCase() !== 'ON')
        return { code: 'unsupported', message: 'airlock: CLIENT REPLY OFF and SKIP are not supported' };
      return undefined;
    default:
      return undefined;
  }
}

export function analyzeRedis(argv: readonly string[]): RedisCommand {
  const found = lookupCommand(argv);
  if (!found) {
    return {
      name: (argv[0] ?? '').toUpperCase(),
      known: false,
      classes: [...redisCommandClasses],
      keys: [],
      keysComplete: false,
      reads: true,
      blocking: false,
    };
  }
  const { keys, complete } = commandKeys(found.spec, argv);
  const traits = traitsOf(found);
  return {
    name: found.name,
    known: true,
    classes: traits.classes,
    keys,
    keysComplete: complete && traits.keysNamed,
    reads: traits.reads,
    ...(traits.runs && { runs: traits.runs }),
    blocking: traits.blocking,
  };
}
