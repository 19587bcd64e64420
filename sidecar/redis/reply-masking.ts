// Masking of one decoded reply, in every reply type: bulk, simple and verbatim strings, errors,
// numbers (a card number fits in an integer: a masked one becomes a bulk string), and the
// elements of arrays, sets, maps, attributes and pushes, in RESP2 and RESP3. Detectors and
// patterns scan every value; a masked key's values are masked whatever they hold. Where the
// reply says which key or hash field a value belongs to (MGET, HGET, HMGET, and the field/value
// pairs of HGETALL, HSCAN and HRANDFIELD … WITHVALUES, flat in RESP2, a map or pairs in RESP3),
// each value gets its own key's or field's mask; field names and scan cursors are not values
// (detectors alone read them); elsewhere one mask covers the whole reply. Status lines and
// errors are never a key's value: detectors alone read them.
import type { ColumnMask, MaskingPlan } from '../policy/masking.ts';
import type { RedisCommand } from '../policy/redis.ts';
import { type KeyMaskRule, keyMask } from '../policy/redis-masking.ts';
import { type Reply, T } from './replies.ts';

/** Which mask each value of a reply gets. */
export type ValueMask = (path: readonly number[], reply: Reply, parent?: Reply) => ColumnMask | undefined;

export interface MaskCounts {
  masked: Record<string, number>;
  wouldMask: Record<string, number>;
}

const noMask: ValueMask = () => undefined;

/** The masks of a command's reply values from its keys, or undefined when no key of it is masked. */
export function replyMasks(
  rules: readonly KeyMaskRule[],
  command: RedisCommand,
  argv: readonly string[],
): ValueMask | undefined {
  if (rules.length === 0) return undefined;
  const read = command.keys.filter((key) => key.flags.includes('ACCESS'));
  const whole = read.map((key) => keyMask(rules, key.name)).find((mask) => mask !== undefined);
  if (!whole) return undefined;
  const key = argv[1] ?? '';
  switch (command.name) {
    case 'MGET':
      return (path) => (path.length === 1 ? keyMask(rules, argv[path[0]! + 1] ?? '') : whole);
    case 'HGET':
      return () => keyMask(rules, key, argv[2] ?? '');
    case 'HMGET':
      return (path) => (path.length === 1 ? keyMask(rules, key, argv[path[0]! + 2] ?? '') : whole);
    case 'HGETALL':
      // [field, value, …] (a RESP3 map reads the same).
      return (path, _reply, parent) => (path.length === 1 ? pairValue(rules, key, path[0]!, parent) : whole);
    case 'HSCAN': {
      // [cursor, [field, value, …]], or [cursor, [field, …]] with NOVALUES.
      const values = !scanNoValues(argv);
      return (path, _reply, parent) => {
        if (path.length === 1 && path[0] === 0) return undefined;
        if (path.length !== 2 || path[0] !== 1) return whole;
        return values ? pairValue(rules, key, path[1]!, parent) : undefined;
      };
    }
    case 'SSCAN':
    case 'ZSCAN':
      // [cursor, [member, …]] or [cursor, [member, score, …]]: all but the cursor is the key's.
      return (path) => (path.length === 1 && path[0] === 0 ? undefined : whole);
    case 'HRANDFIELD':
      // Field names only, unless WITHVALUES: [field, value, …] in RESP2, [[field, value], …] in RESP3.
      if (argv[3]?.toUpperCase() !== 'WITHVALUES') return (path) => (path.length <= 1 ? undefined : whole);
      return (path, _reply, parent) => {
        if (path.length === 1) return pairValue(rules, key, path[0]!, parent);
        if (path.length === 2) return pairValue(rules, key, path[1]!, parent);
        return whole;
      };
    default:
      return () => whole;
  }
}

/** In a [field, value, …] list: a field name is not a value; a value takes its field's mask. */
function pairValue(
  rules: readonly KeyMaskRule[],
  key: string,
  index: number,
  list: Reply | undefined,
): ColumnMask | undefined {
  if (index % 2 === 0) return undefined;
  const field = list?.items?.[index - 1]?.data;
  // A field that is not a string (never from Redis) leaves its value under every field rule.
  return field ? keyMask(rules, key, field.toString()) : keyMask(rules, key);
}

/**
 * Whether HSCAN key cursor … asks for field names only, its options read as the server reads
 * them: a MATCH pattern or a COUNT that reads "NOVALUES" is not the option.
 */
function scanNoValues(argv: readonly string[]): boolean {
  let noValues = false;
  for (let i = 3; i < argv.length; i++) {
    const option = argv[i]!.toUpperCase();
    if (option === 'MATCH' || option === 'COUNT') i++;
    else if (option === 'NOVALUES') noValues = true;
    else return false;
  }
  return noValues;
}

/** The masked reply, or the same object when nothing changed. Counts are added to `counts`. */
export function maskReply(
  reply: Reply,
  plan: MaskingPlan,
  masks: ValueMask = noMask,
  counts: MaskCounts = { masked: {}, wouldMask: {} },
  path: number[] = [],
  parent?: Reply,
): Reply {
  const value = maskValue(reply, plan, masks, counts, path, parent);
  // An attribute describes the value (RESP3): its strings are read by detectors alone.
  const attribute = reply.attribute && maskValue(reply.attribute, plan, noMask, counts, path, undefined);
  if (attribute === reply.attribute) return value;
  return { ...value, attribute };
}

function maskValue(
  reply: Reply,
  plan: MaskingPlan,
  masks: ValueMask,
  counts: MaskCounts,
  path: number[],
  parent: Reply | undefined,
): Reply {
  const { type } = reply;
  if (reply.items !== undefined) {
    const items = reply.items;
    if (items === null) return reply;
    let changed: Reply[] | undefined;
    for (let i = 0; i < items.length; i++) {
      path.push(i);
      const item = items[i]!;
      const masked = maskReply(item, plan, masks, counts, path, reply);
      path.pop();
      if (masked !== item) {
        changed ??= items.slice();
        changed[i] = masked;
      }
    }
    return changed ? { ...reply, items: changed } : reply;
  }
  const data = reply.data;
  if (data === null || data === undefined || type === T.null || type === T.boolean) return reply;
  // Status lines (OK, QUEUED, a type name) and errors are the server's words, not a value.
  const mask = type === T.simple || type === T.error ? undefined : masks(path, reply, parent);
  if (!mask && !plan.hasScanners) return reply;
  const verbatim = type === T.verbatim && data.length >= 4 ? 4 : 0;
  const text = data.toString('utf8', verbatim);
  const result = plan.maskText(text, mask);
  add(counts.masked, result.counts);
  add(counts.wouldMask, result.wouldMask);
  if (result.value === text) return reply;
  const value = Buffer.from(result.value);
  switch (type) {
    case T.bulk:
    case T.blobError:
      return { ...reply, data: value };
    case T.verbatim:
      return { ...reply, data: Buffer.concat([data.subarray(0, 4), value]) };
    case T.simple:
    case T.error:
      return { ...reply, data: Buffer.from(result.value.replace(/[\r\n]+/g, ' ')) };
    default:
      // A number cannot carry the mask: it becomes a bulk string.
      return { type: T.bulk, data: value, ...(reply.attribute && { attribute: reply.attribute }) };
  }
}

function add(into: Record<string, number>, from: Record<string, number>): void {
  for (const key in from) into[key] = (into[key] ?? 0) + from[key]!;
}
