// The decision on an MCP request: a tool call by its tool name and arguments, a resource read
// by its URI, a prompt by its name. Pure, like every decision. Names are matched as a server
// could read them: without regard to case and in Unicode NFKC form (a look-alike spelled with
// fullwidth letters matches the rule for the plain name); the enforcer refuses tool names
// outside the plain set altogether (isPlainToolName). Arguments are matched by JSON path, each
// matcher against every value at or under its path, so nesting a value deeper does not dodge it.
import { RE2JS } from 're2js';
import type { BundlePolicy } from '../../api/bundle.ts';
import type { PolicyRule } from '../../api/v1alpha1.ts';
import { combine, type Decision, type Match, noGrant, ruleMatch } from './decide.ts';
import { matchGlob } from './glob.ts';
import { matchesJsonPath, parseJsonPath, type Step } from './json-paths.ts';

export type McpRequest =
  | { kind: 'tool'; name: string; arguments: unknown }
  | { kind: 'resource'; uri: string }
  | { kind: 'prompt'; name: string };

type McpCriteria = NonNullable<PolicyRule['mcp']>;
type ArgumentMatcher = NonNullable<McpCriteria['arguments']>[number];

/**
 * The tool names the enforcer lets through: the characters the MCP specification recommends
 * (ASCII letters, digits, _ - . /), at most 128. A name outside it (a homoglyph, a control
 * character, a zero-width joiner) could read as another tool to a server or a person.
 */
export function isPlainToolName(name: string): boolean {
  return /^[A-Za-z0-9_./-]{1,128}$/.test(name);
}

export function decideMcp(policies: BundlePolicy[], request: McpRequest): Decision {
  if (policies.length === 0) return noGrant();
  const matches: Match[] = [];
  for (const policy of policies)
    for (const rule of policy.rules) {
      if (!rule.mcp || !ruleMatches(rule.mcp, request)) continue;
      matches.push({
        ...ruleMatch(policy, rule),
        reason: `rule "${rule.name}" of AccessPolicy "${policy.name}" matches ${describe(request)}`,
      });
    }
  return combine(matches, []);
}

/**
 * Whether tools/list offers a tool: not when an enforcing rule denies every call to it,
 * whatever its arguments (a rule with argument matchers leaves it offered, its calls decided
 * one by one).
 */
export function toolOffered(policies: BundlePolicy[], name: string): boolean {
  if (policies.length === 0) return false;
  return !policies.some(
    (policy) =>
      policy.mode === 'enforce' &&
      policy.rules.some(
        (rule) =>
          rule.action === 'deny' &&
          rule.mcp !== undefined &&
          rule.mcp.arguments === undefined &&
          ruleMatches(rule.mcp, { kind: 'tool', name, arguments: {} }),
      ),
  );
}

function ruleMatches(mcp: McpCriteria, request: McpRequest): boolean {
  const everything = !mcp.tools && !mcp.arguments && !mcp.resources && !mcp.prompts;
  if (everything) return true;
  switch (request.kind) {
    case 'tool':
      if (!mcp.tools && !mcp.arguments) return false;
      if (mcp.tools && !mcp.tools.some((g) => nameMatches(g, request.name))) return false;
      return (mcp.arguments ?? []).every((matcher) => argumentMatches(matcher, request.arguments));
    case 'resource': {
      const uris = uriReadings(request.uri);
      return (mcp.resources ?? []).some((g) => uris.some((uri) => matchGlob(g, uri)));
    }
    case 'prompt':
      return (mcp.prompts ?? []).some((g) => nameMatches(g, request.name));
  }
}

function nameMatches(pattern: string, name: string): boolean {
  return matchGlob(pattern, name, true) || matchGlob(pattern, name.normalize('NFKC'), true);
}

/** Some value at or under the matcher's path matches its glob or regex. */
function argumentMatches(matcher: ArgumentMatcher, args: unknown): boolean {
  const steps = pathSteps(matcher.path);
  const test = valueTest(matcher);
  let found = false;
  walk(args, [], false, (value, selected) => {
    if (!found && selected && readings(value).some(test)) found = true;
  });
  return found;

  /** Visits every scalar with whether its path, or a path above it, is selected. */
  function walk(
    value: unknown,
    path: (string | number)[],
    above: boolean,
    visit: (value: unknown, selected: boolean) => void,
  ): void {
    const selected = above || matchesJsonPath(steps, path);
    if (Array.isArray(value)) {
      for (const [i, item] of value.entries()) walk(item, [...path, i], selected, visit);
    } else if (value !== null && typeof value === 'object')
      for (const [key, item] of Object.entries(value)) walk(item, [...path, key], selected, visit);
    else visit(value, selected);
  }
}

/**
 * A value as matchers read it: strings as sent, in NFKC form, and, where a string names a path,
 * as a file system resolves it (so a glob on /etc/* holds //etc/x, /tmp/../etc/x, a file: URL
 * of it, and the path with blanks around it); other scalars as JSON. Matchers only deny or hold,
 * so a reading too many refuses more, never less.
 */
function readings(value: unknown): string[] {
  if (typeof value !== 'string') return [JSON.stringify(value)];
  const out = new Set([value, value.normalize('NFKC')]);
  for (const text of [...out]) for (const path of pathReadings(text)) out.add(path);
  return [...out];
}

/**
 * A resource URI as sent, in NFKC form, and as a URL parser reads it (scheme and host in lower
 * case, dot segments resolved, escapes of plain characters decoded): SECRET://x is secret://x.
 */
function uriReadings(uri: string): string[] {
  const out = new Set([uri, uri.normalize('NFKC')]);
  for (const text of [...out]) {
    const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(text);
    if (scheme) out.add(`${scheme[1]!.toLowerCase()}${text.slice(scheme[1]!.length)}`);
    try {
      const url = new URL(text);
      out.add(url.href);
      out.add(decodeURI(url.href));
      // A file server reads the path of a file: URL and not its host (file://127.0.0.1/etc/x),
      // as a file system would (also without regard to case, as macOS and Windows do).
      if (url.protocol === 'file:')
        for (const path of pathReadings(url.pathname)) {
          out.add(`file://${path}`);
          out.add(decodeURI(`file://${path}`));
        }
    } catch {
      // Not a URL a parser reads: the readings above stand.
    }
  }
  return [...out];
}

function pathReadings(text: string): string[] {
  let path = text.trim();
  if (/^file:/i.test(path)) {
    try {
      path = decodeURIComponent(new URL(path).pathname);
    } catch {
      return [path];
    }
  }
  // A Windows server reads a backslash as a slash.
  if (path.includes('\\')) path = path.replaceAll('\\', '/');
  if (!path.includes('/')) return path === text ? [] : [path];
  const resolved = resolvePath(path);
  const out = [path, resolved];
  // Relative to a directory the enforcer does not know (the server's working directory; a home
  // directory for ~ and ~user, which servers expand): a path that climbs out of it, or out of a
  // home, is also read from the root, where a climb ends, so ../../../etc/x and ~/../etc/x are
  // /etc/x.
  if (/^~/.test(path)) out.push(resolvePath(`/${path.replace(/^~[^/]*/, '')}`));
  else if (/^\.\.(\/|$)/.test(resolved)) out.push(resolvePath(`/${resolved}`));
  // Servers on case-insensitive file systems (macOS, Windows) read /ETC/x as /etc/x.
  for (const reading of [...out]) out.push(reading.toLowerCase());
  return out;
}

/** `//a/./b/../c/` → `/a/c/`: duplicate slashes collapsed, dot segments resolved, none above the root. */
function resolvePath(path: string): string {
  const absolute = path.startsWith('/');
  const out: string[] = [];
  for (const segment of path.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') {
      if (out.length > 0 && out.at(-1) !== '..') out.pop();
      else if (!absolute) out.push('..');
      continue;
    }
    out.push(segment);
  }
  const trailing = path.endsWith('/') && out.length > 0 ? '/' : '';
  return `${absolute ? '/' : ''}${out.join('/')}${trailing}`;
}

const stepCache = new Map<string, Step[]>();

/** A path outside the supported subset selects every value: a deny rule then matches more, never less. */
function pathSteps(path: string): Step[] {
  let steps = stepCache.get(path);
  if (!steps) {
    steps = parseJsonPath(path) ?? [{ descendant: true, key: '*' }];
    stepCache.set(path, steps);
  }
  return steps;
}

const regexCache = new Map<string, RE2JS | undefined>();

function valueTest(matcher: ArgumentMatcher): (value: string) => boolean {
  const pattern = matcher.glob;
  if (pattern !== undefined) return (value) => matchGlob(pattern, value);
  const source = matcher.regex ?? '';
  if (!regexCache.has(source)) {
    let re: RE2JS | undefined;
    try {
      re = RE2JS.compile(source);
    } catch {
      // An expression RE2 cannot read matches everything: the rule errs on its own side.
    }
    regexCache.set(source, re);
  }
  const re = regexCache.get(source);
  return (value) => (re ? re.matcher(value).find() : true);
}

function describe(request: McpRequest): string {
  switch (request.kind) {
    case 'tool':
      return `tool call ${request.name}`;
    case 'resource':
      return `resource ${request.uri}`;
    case 'prompt':
      return `prompt ${request.name}`;
  }
}
