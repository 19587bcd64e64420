// Words as the shell reads them: quote removal, ANSI-C quoting, parameter, command, process and
// arithmetic substitutions (each analysed for what it runs), and brace expansion.
import { arithmetic, nested, statements } from './script.ts';
import type { State } from './state.ts';
import { expansionOperator, extGlobFirst, extGlobOperators, type Node } from './syntax.ts';

/** Bounds on adversarial input: brace expansion. */
const maxBraceWords = 256;
const maxBraceWord = 4096;

export interface Char {
  /** One character (in brace expansion), or a run of them. */
  c: string;
  /** Quoted or escaped: neither a glob, a brace nor a keyword. */
  quoted: boolean;
}

export interface Value {
  /** The text after quote removal; expansions kept as written. */
  value: string;
  /** Contains an expansion whose result is not known here. */
  dynamic: boolean;
  /** Names of the parameters it expands. */
  params: string[];
  /** The text in pieces, each quoted (or escaped, or the result of an expansion) or not. */
  segments: Char[];
}

export function word(w: Node, state: State): Value {
  const value: Value = { value: '', dynamic: false, params: [], segments: [] };
  for (const part of w.Parts ?? []) wordPart(part, state, value, false);
  return value;
}

function add(value: Value, text: string, quoted: boolean): void {
  value.value += text;
  value.segments.push({ c: text, quoted });
}

export function wordPart(part: Node, state: State, value: Value, inDoubleQuotes: boolean): void {
  const type = part.type;
  switch (type) {
    case 'Lit':
      literal(part.Value, value, inDoubleQuotes);
      return;
    case 'SglQuoted':
      add(value, part.Dollar ? ansiC(part.Value) : part.Value, true);
      return;
    case 'DblQuoted':
      for (const inner of part.Parts ?? []) wordPart(inner, state, value, true);
      return;
    case 'ParamExp': {
      const name = part.Param?.Value as string | undefined;
      value.dynamic = true;
      if (name !== undefined) value.params.push(name);
      if (part.Index) arithmetic(part.Index, state);
      if (part.Slice) {
        if (part.Slice.Offset) arithmetic(part.Slice.Offset, state);
        if (part.Slice.Length) arithmetic(part.Slice.Length, state);
      }
      if (part.Repl) {
        if (part.Repl.Orig) word(part.Repl.Orig, state);
        if (part.Repl.With) word(part.Repl.With, state);
      }
      if (part.Exp?.Word) {
        const operand = word(part.Exp.Word, state);
        if (part.Exp.Op === expansionOperator && operand.value.includes('P')) {
          state.unverifiable.push('the @P operator expands a prompt string, running what it holds');
        }
      }
      add(value, `$${name ?? ''}`, inDoubleQuotes);
      return;
    }
    case 'CmdSubst':
      value.dynamic = true;
      nested(state, () => statements(part.Stmts, state));
      add(value, '$(...)', true);
      return;
    case 'ProcSubst':
      value.dynamic = true;
      nested(state, () => statements(part.Stmts, state));
      add(value, '/dev/fd/N', true);
      return;
    case 'ArithmExp':
      value.dynamic = true;
      arithmetic(part.X, state);
      add(value, '$((...))', true);
      return;
    case 'ExtGlob':
      add(value, `${extGlobOperators[part.Op - extGlobFirst] ?? '@'}(${part.Pattern.Value})`, false);
      value.segments.push({ c: '*', quoted: false });
      return;
    default:
      value.dynamic = true;
      state.unverifiable.push(`${type} is not modelled`);
  }
}

/** A literal's text as the shell reads it: backslash escapes removed (in double quotes, only before $ ` " \). */
function literal(text: string, value: Value, inDoubleQuotes: boolean): void {
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c !== '\\' || i + 1 >= text.length) {
      add(value, c, inDoubleQuotes);
      continue;
    }
    const next = text[i + 1]!;
    i++;
    if (next === '\n') continue;
    if (inDoubleQuotes && !'$`"\\'.includes(next)) add(value, `\\${next}`, true);
    else add(value, next, true);
  }
}

const ansiEscapes: Record<string, string> = {
  n: '\n',
  t: '\t',
  r: '\r',
  a: '\x07',
  b: '\b',
  e: '\x1b',
  E: '\x1b',
  f: '\f',
  v: '\v',
  '\\': '\\',
  "'": "'",
  '"': '"',
  '?': '?',
};

/** The value of $'...' (bash ANSI-C quoting). */
function ansiC(s: string): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c !== '\\') {
      out += c;
      continue;
    }
    const e = s[i + 1] ?? '';
    if (e in ansiEscapes) {
      out += ansiEscapes[e];
      i++;
      continue;
    }
    const hex = /^x([0-9a-fA-F]{1,2})/.exec(s.slice(i + 1, i + 4));
    if (hex) {
      out += String.fromCharCode(Number.parseInt(hex[1]!, 16));
      i += hex[0].length;
      continue;
    }
    const unicode = /^(?:u([0-9a-fA-F]{1,4})|U([0-9a-fA-F]{1,8}))/.exec(s.slice(i + 1, i + 11));
    if (unicode) {
      const code = Number.parseInt((unicode[1] ?? unicode[2])!, 16);
      out += code <= 0x10ffff ? String.fromCodePoint(code) : '';
      i += unicode[0].length;
      continue;
    }
    const octal = /^[0-7]{1,3}/.exec(s.slice(i + 1, i + 4));
    if (octal) {
      out += String.fromCharCode(Number.parseInt(octal[0], 8) & 0xff);
      i += octal[0].length;
      continue;
    }
    const control = /^c(.)/.exec(s.slice(i + 1, i + 3));
    if (control) {
      out += String.fromCharCode(control[1]!.charCodeAt(0) & 0x1f);
      i += 2;
      continue;
    }
    out += `\\${e}`;
    i++;
  }
  return out;
}

/**
 * The words a word becomes by brace expansion of its unquoted braces ({a,b} and {1..3}), as bash
 * expands them before anything else. Undefined when that is more than maxBraceWords words, or
 * more work than a word of maxBraceWord characters with as many braces takes.
 */
export function braceWords(segments: Char[]): string[] | undefined {
  const text = segments.map((s) => s.c).join('');
  if (!segments.some((s) => !s.quoted && s.c.includes('{'))) return [text];
  if (text.length > maxBraceWord) return undefined;
  const chars = segments.flatMap(({ c, quoted }) => [...c].map((ch) => ({ c: ch, quoted })));
  const budget = { steps: maxBraceWord };
  return braceExpand(chars, budget)?.map((word) => word.map((ch) => ch.c).join(''));
}

function braceExpand(chars: Char[], budget: { steps: number }): Char[][] | undefined {
  if (--budget.steps < 0) return undefined;
  const group = braceGroup(chars);
  if (!group) return [chars];
  const out: Char[][] = [];
  for (const alternative of group.alternatives) {
    const words = braceExpand(
      [...chars.slice(0, group.open), ...alternative, ...chars.slice(group.close + 1)],
      budget,
    );
    if (!words || out.length + words.length > maxBraceWords) return undefined;
    out.push(...words);
  }
  return out;
}

function braceGroup(chars: Char[]): { open: number; close: number; alternatives: Char[][] } | undefined {
  for (let open = 0; open < chars.length; open++) {
    if (chars[open]!.quoted || chars[open]!.c !== '{') continue;
    let depth = 0;
    const commas: number[] = [];
    for (let i = open + 1; i < chars.length; i++) {
      const { c, quoted } = chars[i]!;
      if (quoted) continue;
      if (c === '{') depth++;
      else if (c === '}' && depth > 0) depth--;
      else if (c === ',' && depth === 0) commas.push(i);
      else if (c === '}') {
        if (commas.length > 0) {
          const bounds = [open, ...commas, i];
          const alternatives = bounds.slice(1).map((end, k) => chars.slice(bounds[k]! + 1, end));
          return { open, close: i, alternatives };
        }
        const body = chars
          .slice(open + 1, i)
          .map((x) => x.c)
          .join('');
        const range = /^(-?[0-9]+|[a-zA-Z])\.\.(-?[0-9]+|[a-zA-Z])(?:\.\.-?[0-9]+)?$/.exec(body);
        if (range) {
          const alternatives = sequence(range[1]!, range[2]!).map((text) =>
            [...text].map((c) => ({ c, quoted: true })),
          );
          if (alternatives.length > 0) return { open, close: i, alternatives };
        }
        break;
      }
    }
  }
  return undefined;
}

function sequence(from: string, to: string): string[] {
  const numeric = /^-?[0-9]+$/.test(from) && /^-?[0-9]+$/.test(to);
  const a = numeric ? Number(from) : from.charCodeAt(0);
  const b = numeric ? Number(to) : to.charCodeAt(0);
  if (Math.abs(b - a) > maxBraceWords) return Array.from({ length: maxBraceWords + 1 }, () => '');
  const step = a <= b ? 1 : -1;
  const out: string[] = [];
  for (let n = a; n !== b + step; n += step) out.push(numeric ? String(n) : String.fromCharCode(n));
  return out;
}
