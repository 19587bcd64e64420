// Writes sidecar/policy/redis-command-table.json from a real Redis server's own COMMAND
// metadata (arity, flags, ACL categories, key specs, subcommands), so classification follows
// Redis and not a hand list. Run at development time against the Redis the table is for:
//   node sidecar/redis/generate-command-table.ts [host] [port]
// (for example after `redis-server --port 6399 --save ''` from Debian's redis-server 7.0),
// then `npx biome format --write sidecar/policy/redis-command-table.json`.
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { RedisCommandSpec, RedisKeySpec } from '../policy/redis-table.ts';
import { encodeCommand } from './commands-reader.ts';
import { decodeReply, type Reply, ReplyScanner } from './replies.ts';

const out = fileURLToPath(new URL('../policy/redis-command-table.json', import.meta.url));

async function fetchReply(host: string, port: number, argv: string[]): Promise<Reply> {
  const socket = connect({ host, port });
  const chunks: Buffer[] = [];
  const scanner = new ReplyScanner();
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.on('data', (chunk) => {
      chunks.push(chunk);
      if (scanner.scan(chunk, 0) >= 0) resolve();
    });
    socket.write(encodeCommand(argv));
  });
  socket.destroy();
  return decodeReply(Buffer.concat(chunks)).reply;
}

const text = (reply: Reply | undefined): string => reply?.data?.toString() ?? '';
const list = (reply: Reply | undefined): Reply[] => reply?.items ?? [];
/** A flat key/value array as an object of its replies. */
function pairs(reply: Reply | undefined): Record<string, Reply> {
  const items = list(reply);
  const result: Record<string, Reply> = {};
  for (let i = 0; i + 1 < items.length; i += 2) result[text(items[i])] = items[i + 1]!;
  return result;
}
const integer = (reply: Reply | undefined): number => Number(text(reply));

function keySpec(reply: Reply): RedisKeySpec {
  const spec = pairs(reply);
  const begin = pairs(spec.begin_search);
  const find = pairs(spec.find_keys);
  const beginSpec = pairs(begin.spec);
  const findSpec = pairs(find.spec);
  const result: RedisKeySpec = { flags: list(spec.flags).map((f) => text(f).toUpperCase()) };
  if (text(begin.type) === 'index') result.index = integer(beginSpec.index);
  else if (text(begin.type) === 'keyword')
    result.keyword = { keyword: text(beginSpec.keyword), startfrom: integer(beginSpec.startfrom) };
  if (text(find.type) === 'range')
    result.range = {
      lastkey: integer(findSpec.lastkey),
      step: integer(findSpec.keystep),
      limit: integer(findSpec.limit),
    };
  else if (text(find.type) === 'keynum')
    result.keynum = {
      keynumidx: integer(findSpec.keynumidx),
      firstkey: integer(findSpec.firstkey),
      step: integer(findSpec.keystep),
    };
  return result;
}

function command(reply: Reply): [string, RedisCommandSpec] {
  const [name, arity, flags, , , , categories, , keySpecs, subcommands] = list(reply);
  const spec: RedisCommandSpec = {
    arity: integer(arity),
    flags: list(flags).map(text),
    categories: list(categories).map((c) => text(c).replace(/^@/, '')),
    keys: list(keySpecs).map(keySpec),
  };
  // Sorted, as Redis lists them in its own hash order: a regenerated table diffs only by what changed.
  const subs = list(subcommands)
    .map(command)
    .sort(([a], [b]) => a.localeCompare(b));
  if (subs.length > 0)
    spec.subcommands = Object.fromEntries(subs.map(([sub, s]) => [sub.slice(sub.indexOf('|') + 1), s]));
  return [text(name).toLowerCase(), spec];
}

const [host = '127.0.0.1', port = '6379'] = process.argv.slice(2);
const version = text(await fetchReply(host, Number(port), ['INFO', 'server'])).match(
  /redis_version:(\S+)/,
)?.[1];
const commands = list(await fetchReply(host, Number(port), ['COMMAND'])).map(command);
commands.sort(([a], [b]) => a.localeCompare(b));
writeFileSync(out, `${JSON.stringify({ version, commands: Object.fromEntries(commands) })}\n`);
console.log(`${out}: ${commands.length} commands of Redis ${version}`);
