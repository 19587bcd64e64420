// The policy decision for Redis: one command, or a whole MULTI … EXEC transaction decided
// before any of it runs. A rule's `redis` criteria (commands, classes, keys) must all match one
// command. Masking rules with key globs also decide: a command that could reveal a masked
// key's value around the masking of replies (a copy to an unmasked key, a script, keys that
// cannot be named, MIGRATE) gets the masking rule's indirectUse, as SQL does for columns.
import type { BundlePolicy } from '../../api/bundle.ts';
import type { PolicyRule } from '../../api/v1alpha1.ts';
import { combine, type Decision, defaultApproval, type Match, noGrant, ruleMatch } from './decide.ts';
import { matchGlob } from './glob.ts';
import { type RedisCommand, scriptReach } from './redis.ts';
import { type KeyMaskRule, keyMaskRules, rulesForKey } from './redis-masking.ts';

export function decideRedis(
  policies: readonly BundlePolicy[],
  commands: readonly RedisCommand[],
  keyRules: readonly KeyMaskRule[] = keyMaskRules(policies),
): Decision {
  if (policies.length === 0) return noGrant();
  const matches: Match[] = [];
  for (const policy of policies) {
    for (const rule of policy.rules) {
      if (!rule.redis) continue;
      const index = commands.findIndex((command) => redisRuleMatches(rule, command));
      if (index < 0) continue;
      matches.push({
        ...ruleMatch(policy, rule),
        reason: `rule "${rule.name}" of AccessPolicy "${policy.name}" matches ${describe(commands, index)}`,
      });
    }
    for (const masking of policy.masking) {
      if (!masking.keys || masking.indirectUse === 'allow') continue;
      const rules = keyRules.filter((r) => r.rule === masking);
      for (const [index, command] of commands.entries()) {
        const why = indirectUse(command, rules);
        if (why === undefined) continue;
        matches.push({
          action: masking.indirectUse,
          policy,
          rule: `masking:${masking.name}`,
          reason: `${describe(commands, index)} ${why} (masking rule "${masking.name}" of AccessPolicy "${policy.name}")`,
          ...(masking.indirectUse === 'require-approval' && { approval: defaultApproval }),
        });
        break;
      }
    }
  }
  return combine(matches, []);
}

/** All the criteria given must match; a criterion left out does not narrow the rule. */
export function redisRuleMatches(rule: PolicyRule, command: RedisCommand): boolean {
  const redis = rule.redis;
  if (!redis) return false;
  if (redis.commands && !redis.commands.some((glob) => commandMatches(glob, command))) return false;
  if (redis.classes && !redis.classes.some((cls) => command.classes.includes(cls))) return false;
  if (redis.keys) {
    const named = command.keys.some((key) => redis.keys!.some((glob) => matchGlob(glob, key.name)));
    if (!named && command.keysComplete) return false;
  }
  return true;
}

const reachCache = new Map<string, boolean>();

/** A glob over the name, or the container's name (CONFIG matches CONFIG SET); a script over what it may call. */
function commandMatches(glob: string, command: RedisCommand): boolean {
  const byName = (name: string) => {
    if (matchGlob(glob, name, true)) return true;
    const space = name.indexOf(' ');
    return space > 0 && matchGlob(glob, name.slice(0, space), true);
  };
  if (byName(command.name)) return true;
  if (!command.runs) return false;
  const cacheKey = `${command.runs}:${glob}`;
  let reached = reachCache.get(cacheKey);
  if (reached === undefined) {
    reached = scriptReach(command.runs).names.some(byName);
    reachCache.set(cacheKey, reached);
  }
  return reached;
}

/** How a command could reveal a masked key's value around the masking of its reply, or undefined. */
function indirectUse(command: RedisCommand, rules: readonly KeyMaskRule[]): string | undefined {
  if (rules.length === 0) return undefined;
  if (command.runs) return 'runs a script, which can read masked keys and return or copy them';
  if (!command.known)
    return 'is not a command Redis lists, so the keys it reads are unknown while keys are masked';
  if (!command.keysComplete && command.reads) return 'reads keys it does not name while keys are masked';
  const masked = command.keys.filter(
    (key) => key.flags.includes('ACCESS') && rulesForKey(rules, key.name).length > 0,
  );
  if (masked.length === 0) return undefined;
  if (command.classes.includes('dangerous')) return `uses masked key ${masked[0]!.name}`;
  const writes = (flags: string[]) => ['OW', 'RW', 'INSERT', 'UPDATE'].some((f) => flags.includes(f));
  const target = command.keys.find((key) => writes(key.flags) && rulesForKey(rules, key.name).length === 0);
  if (target) return `copies masked key ${masked[0]!.name} to unmasked key ${target.name}`;
  return undefined;
}

function describe(commands: readonly RedisCommand[], index: number): string {
  const command = commands[index]!;
  const position = commands.length > 1 ? `command ${index + 1} of the transaction, ` : '';
  const keys =
    command.keys.length > 0
      ? ` on ${command.keys
          .slice(0, 3)
          .map((k) => k.name)
          .join(', ')}`
      : '';
  return `${position}${command.name} (${command.classes.join(', ') || 'no class'})${keys}`;
}
