// The commands an SSH exec request would run, read statically from its command line with the
// mvdan/sh parser (bash grammar: the parser behind shfmt) and analysed on its syntax tree: every
// simple command in lists, pipelines, compound commands, function bodies, trap handlers, command,
// process and arithmetic substitutions, array subscripts, here-documents fed to shells, and the
// argv or `-c` string of each command runner (sudo, env, timeout, flock, su -c, sh -c, find
// -exec, xargs, ...), unwrapped with each runner's own option grammar. Every layer is reported,
// outermost first, so `sudo /bin/rm -rf /` yields `sudo /bin/rm -rf /` and `rm -rf /`, and each
// command gets its classes (file-deletion, interpreter, privilege, network).
//
// What a shell would compute at run time and cannot be known here (a command name built from a
// substitution or a variable, a variable set on the line and used as an argument or evaluated
// arithmetically, a shell or interpreter reading code from a file or an unreadable stdin, an
// option a runner does not know, a construct this analysis does not model) is reported as
// unverifiable; the enforcer refuses such lines under a policy with command or class rules.
// Pure: no I/O.
import sh from 'mvdan-sh';
import type { SshCommandClass } from '../../api/v1alpha1.ts';

export interface CommandLine {
  /** Every command the line would run, in order, argv[0] reduced to its basename; runners and what they run. */
  commands: string[][];
  /** The command classes of those commands (file-deletion, interpreter, privilege, network). */
  classes: SshCommandClass[];
  /** Why the line cannot be verified statically; empty when it can. */
  unverifiable: string[];
}

/**
 * Bounds on adversarial input: nesting of sh -c and substitutions, line length (Linux passes at
 * most 128 KiB in one argument, and sshd runs the line as `$SHELL -c line`), brace expansion.
 */
const maxDepth = 8;
const maxCommandLength = 128 * 1024;
const maxBraceWords = 256;
const maxBraceWord = 4096;

const { syntax } = sh;
const parser = syntax.NewParser(syntax.KeepComments(false), syntax.Variant(syntax.LangBash));

// A node of the mvdan/sh syntax tree, as plain data: `type` is the Go type's name (CallExpr,
// Word, Lit, ...) and the fields are the Go fields, positions and comments left out.
// biome-ignore lint/suspicious/noExplicitAny: the tree is typed by its `type` at run time.
type Node = any;

/**
 * Copies the parser's tree out of its GopherJS representation. Reading the package's wrapped
 * objects converts on every field access, which made a long line cost tens of milliseconds; the
 * copy is one pass. Slices are views into batches the parser reuses, so the copy is taken at once.
 */
function plain(value: Node): Node {
  if (typeof value === 'string')
    return /[\x80-\xff]/.test(value) ? Buffer.from(value, 'latin1').toString('utf8') : value;
  if (value === null || typeof value !== 'object') return value;
  if (value.$array !== undefined && value.$length !== undefined) {
    const out: Node[] = [];
    for (let i = 0; i < value.$length; i++) out.push(plain(value.$array[value.$offset + i]));
    return out;
  }
  const type = value.constructor;
  const name: unknown = type?.string;
  const fields: { name: string; prop: string; typ: { string: string } }[] | undefined = type?.elem?.fields;
  if (typeof name !== 'string' || !fields || value === type.nil) return null;
  const node: Node = { type: name.replace(/^\*syntax\./, '') };
  for (const field of fields) {
    if (field.typ.string === 'syntax.Pos' || field.typ.string === '[]syntax.Comment') continue;
    node[field.name] = plain(value[field.prop]);
  }
  return node;
}

/** Redirection operators, by mvdan/sh token number. */
const redirect = {
  /** < <> <& << <<- <<<: the operators whose default descriptor is 0. */
  inputs: new Set([56, 57, 58, 61, 62, 63]),
  hereDoc: 61,
  hereDocTabs: 62,
  hereString: 63,
} as const;
/** [[ ]] operators -eq, -ne, -le, -ge, -lt, -gt: their operands are arithmetic. */
const testArithmetic = { first: 116, last: 121 } as const;
/** ExtGlob operators ?( *( +( @( !( from 122. */
const extGlobOperators = ['?', '*', '+', '@', '!'];
const extGlobFirst = 122;
/** ParamExp.Exp operator `@` (${x@P} expands a prompt string: it runs substitutions in the value). */
const expansionOperator = 84;

interface State {
  commands: string[][];
  classes: Set<SshCommandClass>;
  unverifiable: string[];
  /**
   * Variables the line sets (or reads from stdin): the agent chose their values. A literal value
   * when every assignment on the line gives the same one, null when unknown. Arguments from them
   * are unverifiable (the line's control flow decides which value, or none, a use sees); in
   * arithmetic a number is inert.
   */
  assigned: Map<string, string | null>;
  depth: number;
}

/** What a command reads on stdin: literal text (a here-document or here-string), or unknown. */
type Stdin = { text: string } | undefined;

/** Parses one command line as the remote shell (bash) would. */
export function parseCommandLine(line: string): CommandLine {
  if (line.length > maxCommandLength) {
    return {
      commands: [],
      classes: [],
      unverifiable: [`command line longer than ${maxCommandLength} characters`],
    };
  }
  if (line.includes('\0')) return { commands: [], classes: [], unverifiable: ['NUL byte in command line'] };
  // Twice where the line sets variables: one is the agent's from its first use even where the
  // line sets it later (a loop).
  const first = analyse(line, new Map());
  const state = first.assigned.size === 0 ? first : analyse(line, first.assigned);
  return {
    commands: state.commands,
    classes: [...state.classes],
    unverifiable: [...new Set(state.unverifiable)],
  };
}

function analyse(line: string, assigned: Map<string, string | null>): State {
  const state: State = {
    commands: [],
    classes: new Set(),
    unverifiable: [],
    assigned: new Map(assigned),
    depth: 0,
  };
  script(line, state);
  return state;
}

/** Records an assignment: the value stays known only while every assignment agrees. */
function assign(state: State, name: string, value: string | null): void {
  const known = state.assigned.get(name);
  state.assigned.set(name, state.assigned.has(name) && known !== value ? null : value);
}

/** A parameter whose value the agent chose: set on the line, or positional (sh -c script name args). */
function tainted(state: State, name: string): boolean {
  return /^[0-9@*]/.test(name) || state.assigned.has(name);
}

/** Parses and analyses a script (the line, an sh -c string, an eval, a trap handler). */
function script(text: string, state: State): void {
  if (state.depth > maxDepth) {
    state.unverifiable.push(`nesting deeper than ${maxDepth}`);
    return;
  }
  let file: Node;
  try {
    // The GopherJS object behind the package's wrapper (see plain()).
    file = plain((parser.Parse(text, '') as unknown as { __internal_object__: unknown }).__internal_object__);
  } catch (error) {
    const message = (error as { Error?: () => string }).Error?.() ?? String(error);
    state.unverifiable.push(`does not parse as bash: ${message}`);
    return;
  }
  nested(state, () => statements(file.Stmts, state));
}

function nested(state: State, run: () => void): void {
  state.depth++;
  try {
    if (state.depth > maxDepth) state.unverifiable.push(`nesting deeper than ${maxDepth}`);
    else run();
  } finally {
    state.depth--;
  }
}

function statements(list: Node[] | null, state: State): void {
  for (const stmt of list ?? []) statement(stmt, state);
}

function statement(stmt: Node, state: State): void {
  // What the command reads on descriptor 0: the last redirection of it decides.
  let stdin: Stdin;
  for (const redir of stmt.Redirs ?? []) {
    let text: Stdin;
    if (redir.Word) {
      const target = word(redir.Word, state);
      if (/^\/dev\/(tcp|udp)\//.test(target.value)) state.classes.add('network');
      if (redir.Op === redirect.hereString && !target.dynamic) text = { text: `${target.value}\n` };
    }
    if (redir.Hdoc) {
      const quoted = (redir.Word?.Parts ?? []).some((p: Node) => p.type !== 'Lit' || p.Value.includes('\\'));
      text = hereDocument(redir.Hdoc, quoted, state);
    }
    const fd = redir.N?.Value ?? (redirect.inputs.has(redir.Op) ? '0' : '1');
    if (fd === '0') stdin = text;
  }
  if (stmt.Cmd) command(stmt.Cmd, stdin, state);
}

/**
 * A here-document's body as the command reads it: literal text (where the delimiter is not
 * quoted, backslash escapes $ ` \ and newline), or unknown when it expands something.
 */
function hereDocument(hdoc: Node, quoted: boolean, state: State): Stdin {
  let text = '';
  let dynamic = false;
  for (const part of hdoc.Parts ?? []) {
    if (part.type === 'Lit') {
      text += quoted
        ? part.Value
        : part.Value.replace(/\\([$`\\\n])/g, (_: string, c: string) => (c === '\n' ? '' : c));
      continue;
    }
    dynamic = true;
    wordPart(part, state, { value: '', dynamic: false, params: [], segments: [] }, true);
  }
  return dynamic ? undefined : { text };
}

function command(cmd: Node, stdin: Stdin, state: State): void {
  const type = cmd.type;
  switch (type) {
    case 'CallExpr':
      call(cmd, stdin, state);
      return;
    case 'BinaryCmd':
      statement(cmd.X, state);
      statement(cmd.Y, state);
      return;
    case 'Block':
    case 'Subshell':
      statements(cmd.Stmts, state);
      return;
    case 'IfClause':
      statements(cmd.Cond, state);
      statements(cmd.Then, state);
      if (cmd.Else) command(cmd.Else, undefined, state);
      return;
    case 'WhileClause':
      statements(cmd.Cond, state);
      statements(cmd.Do, state);
      return;
    case 'ForClause': {
      const loop = cmd.Loop;
      if (loop.type === 'WordIter') {
        // `for x; do` iterates over the positional parameters.
        for (const item of loop.Items ?? []) word(item, state);
        assign(state, loop.Name.Value, null);
      } else {
        for (const part of [loop.Init, loop.Cond, loop.Post]) if (part) arithmetic(part, state);
      }
      statements(cmd.Do, state);
      return;
    }
    case 'CaseClause':
      word(cmd.Word, state);
      for (const item of cmd.Items ?? []) {
        for (const pattern of item.Patterns ?? []) word(pattern, state);
        statements(item.Stmts, state);
      }
      return;
    case 'FuncDecl':
      // The body runs when the function is called: analysed as if it ran here.
      statement(cmd.Body, state);
      return;
    case 'ArithmCmd':
      arithmetic(cmd.X, state);
      return;
    case 'LetClause':
      for (const expr of cmd.Exprs ?? []) arithmetic(expr, state);
      return;
    case 'TestClause':
      test(cmd.X, state);
      return;
    case 'DeclClause':
      declaration(cmd, state);
      return;
    case 'TimeClause':
      if (cmd.Stmt) statement(cmd.Stmt, state);
      return;
    case 'CoprocClause':
      if (cmd.Name) word(cmd.Name, state);
      statement(cmd.Stmt, state);
      return;
    default:
      state.unverifiable.push(`${type} is not modelled`);
  }
}

/** [[ ... ]]: operands of -eq, -lt, ... are evaluated as arithmetic. */
function test(expr: Node, state: State): void {
  switch (expr.type) {
    case 'BinaryTest': {
      const arithmeticOperands = expr.Op >= testArithmetic.first && expr.Op <= testArithmetic.last;
      for (const side of [expr.X, expr.Y]) {
        if (arithmeticOperands && side.type === 'Word') arithmeticWord(side, state);
        else test(side, state);
      }
      return;
    }
    case 'UnaryTest':
      if (expr.X?.type === 'Word') {
        // -v a[$(cmd)]: the operand names a variable whose subscript bash evaluates.
        if (evaluatedSubscript.test(word(expr.X, state).value)) {
          state.unverifiable.push('a variable name whose subscript bash evaluates');
        }
        return;
      }
      test(expr.X, state);
      return;
    case 'ParenTest':
      test(expr.X, state);
      return;
    case 'Word':
      word(expr, state);
      return;
    default:
      state.unverifiable.push(`${expr.type} in [[ ]] is not modelled`);
  }
}

/** Arithmetic: names are variables whose values bash evaluates as expressions in turn. */
function arithmetic(expr: Node, state: State): void {
  switch (expr.type) {
    case 'BinaryArithm':
      arithmetic(expr.X, state);
      arithmetic(expr.Y, state);
      return;
    case 'UnaryArithm':
    case 'ParenArithm':
      arithmetic(expr.X, state);
      return;
    case 'Word':
      arithmeticWord(expr, state);
      return;
    default:
      state.unverifiable.push(`${expr.type} in arithmetic is not modelled`);
  }
}

function arithmeticWord(w: Node, state: State): void {
  const value = word(w, state);
  const names = [...value.params, ...(value.value.match(/[A-Za-z_][A-Za-z0-9_]*/g) ?? [])];
  // bash evaluates a variable's value as an expression in turn: only numbers are known to be inert.
  const unsafe = names.find((name) => {
    const known = state.assigned.get(name);
    return (
      /^[0-9@*]/.test(name) || known === null || (typeof known === 'string' && !/^[-+]?[0-9]+$/.test(known))
    );
  });
  if (unsafe !== undefined) {
    state.unverifiable.push(`arithmetic evaluates a variable the line sets: ${unsafe}`);
  }
}

/** A variable name whose subscript expands something: bash evaluates it (a[$(cmd)]). */
const evaluatedSubscript = /\[[^\]]*[$`]/;
/** Builtins that take variable names as arguments (and so evaluate their subscripts). */
const takesNames = new Set([
  'read',
  'printf',
  'test',
  '[',
  'unset',
  'mapfile',
  'readarray',
  'wait',
  'getopts',
  'export',
  'declare',
  'typeset',
  'local',
  'readonly',
]);

function declaration(decl: Node, state: State): void {
  const variant = decl.Variant.Value as string;
  for (const assign of decl.Args ?? []) assignment(assign, state, true);
  const names = (decl.Args ?? [])
    .filter((a: Node) => a.Naked && !a.Name && a.Value)
    .map((a: Node) => word(a.Value, state));
  if (names.some((name: Value) => evaluatedSubscript.test(name.value))) {
    state.unverifiable.push('a variable name whose subscript bash evaluates');
  }
  // declare "$x=1": a name the agent chose, whose subscript bash evaluates.
  const chosen = names.flatMap((name: Value) => name.params).find((name: string) => tainted(state, name));
  if (chosen !== undefined)
    state.unverifiable.push(`a variable name from a variable the line sets: $${chosen}`);
  if (variant === 'local' || variant === 'export' || variant === 'readonly') return;
  // declare/typeset -i makes later assignments arithmetic: values set on the line are evaluated.
  const options = (decl.Args ?? [])
    .filter((a: Node) => a.Naked && !a.Name && a.Value)
    .map((a: Node) => word(a.Value, state).value);
  if (options.some((o: string) => /^[-+][a-zA-Z]*i/.test(o))) {
    state.unverifiable.push(`${variant} -i evaluates values arithmetically`);
  }
}

/** Environment that makes a program run code it names (a shell's startup file, a preload). */
const runsCode =
  /^(BASH_ENV|ENV|PROMPT_COMMAND|PS[0-4]|SHELLOPTS|BASHOPTS|BASH_FUNC_.*|LD_PRELOAD|LD_AUDIT|LD_LIBRARY_PATH|PERL5OPT|PERL5LIB|PYTHONSTARTUP|PYTHONPATH|NODE_OPTIONS|RUBYOPT|GIT_SSH_COMMAND|GIT_EXTERNAL_DIFF|GIT_PAGER|GIT_EDITOR|PAGER|MANPAGER|EDITOR|VISUAL|LESSOPEN|LESSCLOSE)$/;

function environment(name: string, state: State, value: string | null): void {
  assign(state, name, value);
  if (runsCode.test(name)) state.unverifiable.push(`${name} makes a program run code it names`);
}

function assignment(node: Node, state: State, declared: boolean): void {
  if (node.Index) arithmetic(node.Index, state);
  const value = node.Value ? word(node.Value, state) : undefined;
  for (const elem of node.Array?.Elems ?? []) {
    if (elem.Index) arithmetic(elem.Index, state);
    if (elem.Value) word(elem.Value, state);
  }
  if (node.Name) {
    const literal = !node.Index && !node.Array && !node.Append && value && !value.dynamic;
    environment(
      node.Name.Value,
      state,
      literal ? value.value : node.Naked ? (state.assigned.get(node.Name.Value) ?? null) : null,
    );
  } else if (declared && node.Naked && value) {
    // declare -x NAME (no value): a name, or an option.
    if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(value.value)) {
      environment(value.value, state, state.assigned.get(value.value) ?? null);
    }
  }
}

// ---------------------------------------------------------------------------------------
// Words

interface Char {
  /** One character (in brace expansion), or a run of them. */
  c: string;
  /** Quoted or escaped: neither a glob, a brace nor a keyword. */
  quoted: boolean;
}

interface Value {
  /** The text after quote removal; expansions kept as written. */
  value: string;
  /** Contains an expansion whose result is not known here. */
  dynamic: boolean;
  /** Names of the parameters it expands. */
  params: string[];
  /** The text in pieces, each quoted (or escaped, or the result of an expansion) or not. */
  segments: Char[];
}

function word(w: Node, state: State): Value {
  const value: Value = { value: '', dynamic: false, params: [], segments: [] };
  for (const part of w.Parts ?? []) wordPart(part, state, value, false);
  return value;
}

function add(value: Value, text: string, quoted: boolean): void {
  value.value += text;
  value.segments.push({ c: text, quoted });
}

function wordPart(part: Node, state: State, value: Value, inDoubleQuotes: boolean): void {
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
function braceWords(segments: Char[]): string[] | undefined {
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

// ---------------------------------------------------------------------------------------
// Simple commands

function call(cmd: Node, stdin: Stdin, state: State): void {
  for (const assign of cmd.Assigns ?? []) assignment(assign, state, false);
  const argv: string[] = [];
  const dynamic: boolean[] = [];
  for (const [index, arg] of (cmd.Args ?? []).entries()) {
    const value = word(arg, state);
    const words = braceWords(value.segments);
    if (!words) {
      state.unverifiable.push('brace expansion too large');
      return;
    }
    const pattern = value.segments.some((s) => !s.quoted && /[*?[]/.test(s.c));
    if (index === 0) {
      if (value.dynamic) {
        state.unverifiable.push(`command name is computed: ${value.value}`);
        return;
      }
      if (pattern) {
        state.unverifiable.push(`command name is a pattern: ${value.value}`);
        return;
      }
    }
    const chosen = value.params.find((name) => tainted(state, name));
    if (chosen !== undefined) state.unverifiable.push(`argument from a variable the line sets: $${chosen}`);
    for (const expanded of words) {
      argv.push(expanded);
      dynamic.push(value.dynamic);
    }
  }
  if (argv.length > 0) run(argv, dynamic, stdin, state);
}

function basename(name: string): string {
  const trimmed = name.replace(/\/+$/, '');
  const slash = trimmed.lastIndexOf('/');
  return slash === -1 ? trimmed : trimmed.slice(slash + 1);
}

/** Shells whose -c string and stdin are read with the bash grammar. */
const posixShells = new Set([
  'sh',
  'bash',
  'dash',
  'ash',
  'ksh',
  'mksh',
  'yash',
  'posh',
  'rbash',
  'ksh93',
  'lksh',
]);
/** Shells with a grammar of their own: what they run cannot be read here. */
const otherShells = new Set(['zsh', 'fish', 'csh', 'tcsh', 'rc', 'es', 'xonsh', 'nu', 'elvish', 'pwsh']);

/** Records one command (and what it runs, recursively). */
function run(raw: string[], dynamic: boolean[], stdin: Stdin, state: State): void {
  const argv = [basename(raw[0]!), ...raw.slice(1)];
  state.commands.push(argv);
  for (const cls of classify(argv)) state.classes.add(cls);
  const name = argv[0]!;
  const isDynamic = (i: number) => dynamic[i] === true;
  if (takesNames.has(name) && argv.slice(1).some((a) => evaluatedSubscript.test(a))) {
    state.unverifiable.push('a variable name whose subscript bash evaluates');
  }
  const runner = runners[name];
  if (runner) {
    unwrap(argv, dynamic, runner, stdin, state);
    return;
  }
  if (posixShells.has(name) || otherShells.has(name)) {
    shell(argv, dynamic, stdin, state);
    return;
  }
  switch (name) {
    case 'eval': {
      // eval joins its arguments with spaces and runs the result.
      const args = argv.slice(1);
      if (args.some((_, i) => isDynamic(i + 1))) state.unverifiable.push('eval of a computed string');
      else script(args.join(' '), state);
      return;
    }
    case 'source':
    case '.':
      state.unverifiable.push(`${name} runs a script file`);
      return;
    case 'alias':
      if (argv.length > 1) state.unverifiable.push('alias redefines commands');
      return;
    case 'hash':
      if (argv.includes('-p')) state.unverifiable.push('hash -p maps a name to another program');
      return;
    case 'enable':
      state.unverifiable.push('enable loads or switches builtins');
      return;
    case 'bind':
    case 'complete':
    case 'compgen':
    case 'fc':
      if (argv.length > 1) state.unverifiable.push(`${name} can run commands it is given`);
      return;
    case 'mapfile':
    case 'readarray':
    case 'read':
    case 'printf':
    case 'getopts':
      reads(argv, state);
      return;
    case 'set':
      // set -- a b sets the positional parameters (tainted already); other options are harmless here.
      return;
    case 'trap': {
      let i = 1;
      if (argv[i] === '--') i++;
      const action = argv[i];
      if (action === undefined || action.startsWith('-') || argv.length === i + 1) return;
      if (isDynamic(i)) state.unverifiable.push('trap handler is computed');
      else script(action, state);
      return;
    }
    case 'su':
    case 'runuser':
      su(argv, dynamic, state);
      return;
    case 'sg':
    case 'newgrp': {
      // sg group [-c] command: the command string runs under /bin/sh -c.
      const rest = argv.slice(2).filter((a) => a !== '-c' && a !== '-');
      if (name === 'newgrp' || rest.length === 0) {
        state.unverifiable.push(`${name} starts a shell that reads its commands from stdin`);
        return;
      }
      shellString(
        rest.join(' '),
        argv.slice(2).some((_, i) => isDynamic(i + 2)),
        state,
      );
      return;
    }
    case 'script':
      scriptCommand(argv, dynamic, state);
      return;
    case 'watch':
      watch(argv, dynamic, stdin, state);
      return;
    case 'find':
      find(argv, dynamic, state);
      return;
    case 'parallel':
    case 'sem':
      parallel(argv, dynamic, state);
      return;
    case 'ssh':
      sshCommand(argv, dynamic, state);
      return;
    case 'at':
    case 'batch':
      if (!argv.some((a) => /^-[lrdcV]/.test(a)))
        state.unverifiable.push(`${name} schedules commands it reads`);
      return;
    case 'crontab':
      if (!argv.slice(1).every((a) => /^-[lr]$|^-u$/.test(a) || argv[argv.indexOf(a) - 1] === '-u')) {
        state.unverifiable.push('crontab installs commands that run later');
      }
      return;
    case 'git':
      git(argv, state);
      return;
    case 'tar':
    case 'rsync':
    case 'scp':
    case 'zip':
    case 'tcpdump':
      commandOptions(argv, state);
      break;
  }
  interpreter(argv, stdin, state);
}

/** Builtins that assign the variables they name from input the agent controls. */
function reads(argv: string[], state: State): void {
  const name = argv[0]!;
  for (let i = 1; i < argv.length; i++) {
    const arg = argv[i]!;
    if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(arg)) assign(state, arg, null);
    if (arg === '-v' && argv[i + 1]) assign(state, argv[i + 1]!, null);
    if ((name === 'mapfile' || name === 'readarray') && arg.startsWith('-C')) {
      const callback = arg.length > 2 ? arg.slice(2) : argv[i + 1];
      if (callback) script(callback, state);
    }
  }
  if (name === 'mapfile' || name === 'readarray') assign(state, 'MAPFILE', null);
  if (name === 'read') assign(state, 'REPLY', null);
}

// ---------------------------------------------------------------------------------------
// Runners: programs that run the argv (or the shell string) they are given.

interface Runner {
  /** Short options without a value. */
  flags?: string;
  /** Short options with a value, attached or in the next word. */
  values?: string;
  /** Short options whose optional value can only be attached (xargs -i, prlimit -n). */
  attached?: string;
  /** Long options: true when they take a value (attached with = or in the next word). */
  long?: Record<string, boolean>;
  /** Positional operands before the command (timeout's duration, chroot's new root). */
  operands?: number;
  /** The operands come before the options (setarch arch [options] program). */
  operandsFirst?: boolean;
  /** NAME=value words before the command. */
  assignments?: boolean;
  /** Options after which the command is not run (command -v, sudo -l). */
  inert?: string[];
  /** Options that make it start a shell reading its commands from the channel when no command follows. */
  shells?: string[];
  /** Without a command, it starts a shell reading from the channel. */
  shellWhenEmpty?: boolean;
  /** Numeric options (nice -10). */
  numeric?: boolean;
  /** Appends what it reads from stdin as arguments (xargs). */
  appends?: boolean;
}

const flag = (names: string) => Object.fromEntries(names.split(' ').map((n) => [n, false]));
const valued = (names: string) => Object.fromEntries(names.split(' ').map((n) => [n, true]));

const runners: Record<string, Runner> = {
  sudo: {
    flags: 'AbEeHiKklnPSsVv',
    values: 'CDghpRrTtUu',
    long: {
      ...flag(
        'askpass background preserve-env edit set-home login remove-timestamp reset-timestamp list non-interactive preserve-groups stdin shell validate version help bell',
      ),
      ...valued('user group close-from chdir host prompt role type command-timeout other-user chroot'),
    },
    assignments: true,
    inert: ['-e', '--edit', '-l', '--list', '-v', '--validate', '-V', '--version', '-K', '--help'],
    shells: ['-s', '-i', '--shell', '--login'],
  },
  doas: { flags: 'Lns', values: 'uC', inert: ['-C', '-L'], shells: ['-s'] },
  pkexec: {
    long: { ...flag('disable-internal-agent keep-cwd version help'), ...valued('user') },
    shellWhenEmpty: true,
  },
  env: {
    flags: '0iv',
    values: 'uCS',
    long: {
      ...flag('ignore-environment null debug list-signal-handling block-signal default-signal ignore-signal'),
      ...valued('unset chdir split-string'),
    },
    assignments: true,
  },
  nice: { values: 'n', long: valued('adjustment'), numeric: true },
  ionice: {
    flags: 't',
    values: 'cnpPu',
    long: { ...flag('ignore'), ...valued('class classdata pid pgid uid') },
    inert: ['-p', '-P', '-u', '--pid', '--pgid', '--uid'],
  },
  nohup: {},
  setsid: { flags: 'cfw', long: flag('ctty fork wait') },
  time: {
    flags: 'pvqaV',
    values: 'fo',
    long: { ...flag('append verbose quiet portability'), ...valued('format output') },
  },
  stdbuf: { values: 'ioe', long: valued('input output error') },
  timeout: {
    flags: 'fpv',
    values: 'sk',
    long: { ...flag('foreground preserve-status verbose'), ...valued('signal kill-after') },
    operands: 1,
  },
  command: { flags: 'p', inert: ['-v', '-V'] },
  builtin: {},
  exec: { flags: 'cl', values: 'a' },
  xargs: {
    flags: '0prtxo',
    values: 'adEILnPs',
    attached: 'eil',
    long: {
      ...flag('interactive no-run-if-empty null open-tty show-limits exit verbose replace eof max-lines'),
      ...valued('arg-file delimiter max-args max-procs max-chars process-slot-var'),
    },
    appends: true,
  },
  busybox: {},
  chroot: {
    long: { ...flag('skip-chdir'), ...valued('userspec groups') },
    operands: 1,
    shellWhenEmpty: true,
  },
  // flock [options] file command..., or flock [options] file -c string (-c only after the file).
  flock: {
    flags: 'sxeunoF',
    values: 'wE',
    long: {
      ...flag('shared exclusive unlock nonblock nb close no-fork fcntl verbose'),
      ...valued('wait timeout conflict-exit-code'),
    },
    operands: 1,
  },
  chrt: {
    flags: 'abdefiorRmpv',
    values: 'TPD',
    long: {
      ...flag('all-tasks batch deadline ext fifo idle other rr reset-on-fork max pid verbose'),
      ...valued('sched-runtime sched-period sched-deadline'),
    },
    operands: 1,
    inert: ['-m', '--max', '-p', '--pid'],
  },
  taskset: { flags: 'acp', long: flag('all-tasks cpu-list pid'), operands: 1, inert: ['-p', '--pid'] },
  setpriv: {
    flags: 'd',
    long: {
      ...flag('clear-groups keep-groups init-groups reset-env nnp no-new-privs dump'),
      ...valued(
        'reuid regid ruid rgid euid egid groups inh-caps ambient-caps bounding-set securebits pdeathsig selinux-label apparmor-profile landlock-access landlock-rule seccomp-filter ptracer',
      ),
    },
    inert: ['-d', '--dump'],
  },
  prlimit: {
    attached: 'cdefilmnqrstuvxy',
    values: 'po',
    long: {
      ...flag(
        'noheadings raw verbose as core cpu data fsize locks memlock msgqueue nice nofile nproc rss rtprio rttime sigpending stack',
      ),
      ...valued('pid output'),
    },
    inert: ['-p', '--pid'],
  },
  unshare: {
    flags: 'muinpUCTfrc',
    values: 'SGRwl',
    long: {
      ...flag(
        'mount uts ipc net pid user cgroup time fork kill-child mount-proc map-root-user map-current-user map-auto keep-caps mount-binfs',
      ),
      ...valued(
        'propagation setgroups map-user map-group map-users map-groups setuid setgid root wd monotonic boottime load-interp',
      ),
    },
    shellWhenEmpty: true,
  },
  nsenter: {
    flags: 'amuinpUCTFZe',
    attached: 'rw',
    values: 'tSG',
    long: {
      ...flag(
        'all mount uts ipc net pid user cgroup time root wd preserve-credentials no-fork follow-context env join-cgroup',
      ),
      ...valued('target setuid setgid user-parent'),
    },
    shellWhenEmpty: true,
  },
  setarch: {
    flags: 'RFZLXBIT3v',
    long: flag(
      'uname-2.6 addr-no-randomize fdpic-funcptrs mmap-page-zero addr-compat-layout read-implies-exec 32bit short-inode whole-seconds sticky-timeouts 3gb 4gb verbose',
    ),
    operands: 1,
    operandsFirst: true,
    inert: ['--list'],
    shellWhenEmpty: true,
  },
  strace: {
    flags: 'fFcCwdDqrtTvVxyzZkin',
    values: 'eoOpsuEabIPSXU',
    long: {
      ...flag('follow-forks summary-only summary output-separately'),
      ...valued('trace signal status output'),
    },
    inert: ['-p', '-V'],
  },
  ltrace: {
    flags: 'bcCfhiLrStTVw',
    values: 'aeEnopsuAxDFlI',
    inert: ['-p', '-V'],
  },
  'systemd-run': {
    flags: 'rtPGq',
    values: 'uEpMH',
    long: {
      ...flag(
        'user system scope remain-after-exit wait pty pipe collect quiet no-block no-ask-password same-dir',
      ),
      ...valued(
        'unit property description slice setenv uid gid nice working-directory machine host service-type on-active on-boot on-startup on-unit-active on-unit-inactive on-calendar timer-property path-property socket-property',
      ),
    },
    shells: ['-S', '--shell'],
  },
  fakeroot: { long: valued('lib faked') },
  faketime: { flags: 'm', values: 'fp', operands: 1 },
  eatmydata: {},
  catchsegv: {},
  torsocks: { flags: 'iq', values: 'uapP', long: flag('isolate quiet') },
  proxychains: { flags: 'q', values: 'f' },
  proxychains4: { flags: 'q', values: 'f' },
  cgexec: { values: 'g', long: flag('sticky') },
  unbuffer: { flags: 'p' },
  'dbus-run-session': {},
  numactl: {
    flags: 'al',
    values: 'CNmipP',
    long: {
      ...flag('all localalloc'),
      ...valued('physcpubind cpunodebind membind interleave preferred weighted-interleave'),
    },
  },
};
for (const name of [
  'linux32',
  'linux64',
  'i386',
  'x86_64',
  'i686',
  'aarch64',
  'arm64',
  'armv7l',
  'ppc64le',
  's390x',
]) {
  runners[name] = { ...runners.setarch, operands: 0 };
}

/** Strips a runner's options with its own grammar and analyses what it runs. */
function unwrap(argv: string[], dynamic: boolean[], runner: Runner, stdin: Stdin, state: State): void {
  const name = argv[0]!;
  const leading = runner.operandsFirst ? (runner.operands ?? 0) : 0;
  const trailing = (runner.operands ?? 0) - leading;
  let i = 1 + leading;
  let inert = false;
  let shellRequested = false;
  const refuse = (why: string) => state.unverifiable.push(`${name}: ${why}`);
  // xargs -I R / -i[R] / --replace[=R]: R in the command stands for what stdin holds.
  let replace: string | undefined;
  const option = (opt: string, value?: string) => {
    if (name === 'xargs' && opt === '-I') replace = value;
    if (name === 'xargs' && (opt === '-i' || opt === '--replace')) replace = value ?? '{}';
    if (runner.inert?.includes(opt)) inert = true;
    if (runner.shells?.includes(opt)) shellRequested = true;
    if (name === 'env' && (opt === '-S' || opt === '--split-string') && value !== undefined) {
      splitString(value, argv.slice(i + 1), state);
      inert = true;
    }
    if (name === 'env' && (opt === '-u' || opt === '--unset') && value !== undefined)
      assign(state, value, null);
  };
  for (; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      i++;
      break;
    }
    // env and sudo take any word with = for an assignment (BASH_FUNC_ls%%=() {...} included).
    if (runner.assignments && /^[^=-][^=]*=/.test(arg)) {
      environment(arg.slice(0, arg.indexOf('=')), state, arg.slice(arg.indexOf('=') + 1));
      continue;
    }
    if (name === 'env' && arg === '-') continue;
    if (arg.startsWith('--') && arg.length > 2) {
      const eq = arg.indexOf('=');
      const longName = arg.slice(2, eq === -1 ? undefined : eq);
      const takes = runner.long?.[longName];
      if (takes === undefined) {
        refuse(`unknown option ${arg}`);
        return;
      }
      let value = eq === -1 ? undefined : arg.slice(eq + 1);
      if (takes && value === undefined) value = argv[++i];
      option(`--${longName}`, value);
      continue;
    }
    if (arg.startsWith('-') && arg.length > 1) {
      if (runner.numeric && /^-[0-9]+$/.test(arg)) continue;
      for (let j = 1; j < arg.length; j++) {
        const letter = arg[j]!;
        if (runner.flags?.includes(letter)) {
          option(`-${letter}`);
          continue;
        }
        if (runner.attached?.includes(letter)) {
          option(`-${letter}`, arg.slice(j + 1) || undefined);
          break;
        }
        if (runner.values?.includes(letter)) {
          const attached = arg.slice(j + 1);
          const value = attached || argv[i + 1];
          if (!attached) i++;
          option(`-${letter}`, value);
          break;
        }
        refuse(`unknown option -${letter}`);
        return;
      }
      continue;
    }
    break;
  }
  if (inert) return;
  let rest = argv.slice(i + trailing);
  let restDynamic = dynamic.slice(i + trailing);
  if (name === 'flock' && rest[0] !== undefined && (rest[0] === '-c' || rest[0] === '--command')) {
    // flock file -c 'command'
    shellString(rest[1] ?? '', restDynamic[1] === true, state);
    return;
  }
  if (i + trailing > argv.length) return;
  if (rest.length === 0) {
    if (shellRequested || runner.shellWhenEmpty) refuse('starts a shell that reads its commands from stdin');
    return;
  }
  if (name === 'busybox' && rest[0]!.startsWith('-')) return;
  if (replace !== undefined) {
    const r = replace;
    restDynamic = rest.map((a, k) => restDynamic[k] === true || (r !== '' && a.includes(r)));
  } else if (runner.appends) {
    // xargs appends what it reads from stdin: shown as {} like find -exec's file name.
    rest = [...rest, '{}'];
    restDynamic = [...restDynamic, true];
  }
  if (restDynamic[0]) {
    refuse(`runs a computed command: ${rest[0]}`);
    return;
  }
  run(rest, restDynamic, runner.appends ? undefined : stdin, state);
}

/** env -S "string": split into words (quotes and backslashes as env reads them) and run. */
function splitString(value: string, following: string[], state: State): void {
  if (/[$\\]/.test(value)) {
    state.unverifiable.push('env -S with escapes or variables');
    return;
  }
  const words = value.match(/'[^']*'|"[^"]*"|[^\s'"]+/g) ?? [];
  const argv = [...words.map((w) => w.replace(/^['"]|['"]$/g, '')), ...following];
  if (argv.length > 0) run(argv, [], undefined, state);
}

/** A string a program hands to /bin/sh -c. */
function shellString(text: string, computed: boolean, state: State): void {
  if (computed) state.unverifiable.push(`a computed shell string: ${text}`);
  else script(text, state);
}

const shellValueOptions = new Set(['-o', '+o', '-O', '+O', '--rcfile', '--init-file']);

/** sh/bash/...: -c string, a script file, or commands read from stdin (a here-document is read). */
function shell(argv: string[], dynamic: boolean[], stdin: Stdin, state: State): void {
  const name = argv[0]!;
  const args = argv.slice(1);
  let command = false;
  let operand: number | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--' || arg === '-') {
      operand = i + 1 < args.length ? i + 1 : undefined;
      break;
    }
    if (shellValueOptions.has(arg)) {
      if (/^[-+]o$/.test(arg) && args[i + 1] === 'xtrace')
        state.unverifiable.push(`${name} -o xtrace expands PS4`);
      i++;
      continue;
    }
    if (/^[-+][a-zA-Z]+$/.test(arg)) {
      if (arg.startsWith('-') && arg.includes('c')) command = true;
      if (arg.includes('x')) state.unverifiable.push(`${name} -x expands PS4`);
      continue;
    }
    if (arg.startsWith('--')) {
      if (arg === '--version' || arg === '--help') return;
      if (arg === '--rcfile' || arg === '--init-file') i++;
      continue;
    }
    operand = i;
    break;
  }
  if (otherShells.has(name)) {
    state.classes.add('interpreter');
    state.unverifiable.push(`${name} has a grammar of its own: what it runs cannot be read`);
    return;
  }
  if (command) {
    if (operand === undefined) state.unverifiable.push(`${name} -c without a script`);
    else {
      // sh -c script name args: the args become $0, $1, ... (tainted: the agent chose them).
      shellString(args[operand]!, dynamic[operand + 1] === true, state);
    }
  } else if (operand !== undefined) {
    state.unverifiable.push(`${name} runs a script file: ${args[operand]}`);
  } else if (stdin) {
    script(stdin.text, state);
  } else {
    state.unverifiable.push(`${name} reads its script from stdin`);
  }
}

function su(argv: string[], dynamic: boolean[], state: State): void {
  const name = argv[0]!;
  let shellOption: string | undefined;
  for (let i = 1; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '-s' || arg === '--shell') shellOption = argv[i + 1];
    else if (arg.startsWith('--shell=')) shellOption = arg.slice(8);
    else if (
      arg === '-c' ||
      arg === '--command' ||
      arg === '--session-command' ||
      arg.startsWith('--command=')
    ) {
      if (shellOption !== undefined && !posixShells.has(basename(shellOption))) {
        state.unverifiable.push(`${name} runs its command with ${shellOption}`);
        return;
      }
      const attached = arg.includes('=');
      const script = attached ? arg.slice(arg.indexOf('=') + 1) : argv[i + 1];
      if (script === undefined) state.unverifiable.push(`${name} -c without a command`);
      else shellString(script, dynamic[attached ? i : i + 1] === true, state);
      return;
    } else if (name === 'runuser' && (arg === '-u' || arg === '--user')) {
      // runuser -u user [--] command args: argv, not a shell string.
      let j = i + 2;
      if (argv[j] === '--') j++;
      if (j < argv.length) run(argv.slice(j), dynamic.slice(j), undefined, state);
      else state.unverifiable.push(`${name} starts a shell that reads its commands from stdin`);
      return;
    }
  }
  state.unverifiable.push(`${name} starts a shell that reads its commands from stdin`);
}

function scriptCommand(argv: string[], dynamic: boolean[], state: State): void {
  for (let i = 1; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '-c' || arg === '--command') {
      shellString(argv[i + 1] ?? '', dynamic[i + 1] === true, state);
      return;
    }
    if (arg.startsWith('--command=')) {
      shellString(arg.slice(10), dynamic[i] === true, state);
      return;
    }
    if (/^-[a-zA-Z]*c/.test(arg) && !arg.startsWith('--')) {
      const attached = arg.slice(arg.indexOf('c') + 1);
      shellString(attached || (argv[i + 1] ?? ''), dynamic[attached ? i : i + 1] === true, state);
      return;
    }
  }
  state.unverifiable.push('script starts a shell that reads its commands from stdin');
}

function watch(argv: string[], dynamic: boolean[], stdin: Stdin, state: State): void {
  let exec = false;
  let i = 1;
  for (; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      i++;
      break;
    }
    if (arg === '-x' || arg === '--exec') exec = true;
    else if (['-n', '-q', '--interval', '--equexit'].includes(arg)) i++;
    else if (/^-[bcdegtwpxrC]+$/.test(arg) || /^--(interval|equexit|differences)=/.test(arg)) {
      if (arg.includes('x') && !arg.startsWith('--')) exec = true;
    } else if (
      /^--(beep|color|no-color|differences|chgexit|errexit|no-title|no-wrap|precise|no-linewrap)$/.test(
        arg,
      ) ||
      /^-n[0-9.]+$/.test(arg)
    ) {
      // a known flag
    } else if (arg.startsWith('-')) {
      state.unverifiable.push(`watch: unknown option ${arg}`);
      return;
    } else break;
  }
  if (i >= argv.length) return;
  // Without -x, watch hands its arguments, joined, to sh -c.
  if (exec) run(argv.slice(i), dynamic.slice(i), stdin, state);
  else shellString(argv.slice(i).join(' '), dynamic.slice(i).some(Boolean), state);
}

function find(argv: string[], dynamic: boolean[], state: State): void {
  for (let i = 1; i < argv.length; i++) {
    const arg = argv[i]!;
    if (['-exec', '-execdir', '-ok', '-okdir'].includes(arg)) {
      const end = argv.findIndex((a, j) => j > i && (a === ';' || a === '+'));
      const stop = end === -1 ? argv.length : end;
      // {} is a file name, which the agent may have chosen earlier: a word holding it is computed.
      const words = argv.slice(i + 1, stop);
      const computed = words.map((w, k) => dynamic[i + 1 + k] === true || w.includes('{}'));
      if (computed[0]) state.unverifiable.push(`find runs a computed command: ${words[0]}`);
      else if (words.length > 0) run(words, computed, undefined, state);
      i = stop;
    } else if (arg === '-fprint' || arg === '-fprint0' || arg === '-fprintf' || arg === '-fls') {
      i++;
    }
  }
}

/** GNU parallel: the command words, joined, run under a shell for each input. */
function parallel(argv: string[], dynamic: boolean[], state: State): void {
  const values = new Set([
    '-j',
    '-P',
    '-S',
    '-I',
    '-a',
    '-d',
    '-E',
    '-L',
    '-N',
    '-n',
    '-s',
    '-C',
    '--jobs',
    '--sshlogin',
    '--arg-file',
    '--delimiter',
    '--colsep',
    '--halt',
    '--joblog',
    '--results',
    '--tmpdir',
    '--timeout',
    '--retries',
    '--delay',
    '--tagstring',
    '--max-args',
    '--max-replace-args',
  ]);
  const flags = new Set([
    '-k',
    '-v',
    '-u',
    '-q',
    '-X',
    '-m',
    '-0',
    '-g',
    '-t',
    '--null',
    '--group',
    '--keep-order',
    '--verbose',
    '--dry-run',
    '--tag',
    '--line-buffer',
    '--ungroup',
    '--bar',
    '--progress',
    '--eta',
    '--no-notice',
    '--will-cite',
    '--quote',
    '--xargs',
    '--pipe',
  ]);
  let i = 1;
  for (; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      i++;
      break;
    }
    if (values.has(arg)) i++;
    else if (flags.has(arg) || /^-[jPnNsL][0-9]+$/.test(arg) || /^--[a-z-]+=/.test(arg)) continue;
    else if (arg.startsWith('-')) {
      state.unverifiable.push(`${argv[0]}: unknown option ${arg}`);
      return;
    } else break;
  }
  const end = argv.findIndex((a, j) => j >= i && /^:::+\+?$/.test(a));
  const words = argv.slice(i, end === -1 ? argv.length : end);
  if (words.length === 0) {
    state.unverifiable.push(`${argv[0]} runs commands it reads from stdin or its arguments`);
    return;
  }
  if (words.some((w) => w.includes('{'))) {
    // Replacement strings ({}, {.}, {1}, ...) put the inputs into the command line.
    state.unverifiable.push(`${argv[0]} puts its inputs into the command line`);
    return;
  }
  // Each input is appended to the command (shown as {} like xargs').
  shellString(`${words.join(' ')} {}`, dynamic.slice(i, i + words.length).some(Boolean), state);
}

const remoteShell = 'ssh starts a remote shell that reads its commands from stdin';

/** ssh host command...: the words, joined, run under the remote user's shell. */
function sshCommand(argv: string[], dynamic: boolean[], state: State): void {
  const values = 'BbcDEeFIiJLlmOopQRSWw';
  let i = 1;
  for (; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('-') || arg === '-') break;
    if (arg === '--') {
      i++;
      break;
    }
    const letter = arg[1]!;
    if (!values.includes(letter)) continue;
    const value = arg.length > 2 ? arg.slice(2) : argv[++i];
    if (
      letter === 'F' ||
      (letter === 'o' &&
        /^(Proxy|Local|KnownHosts)Command|PermitLocalCommand|Match|Include/i.test(value ?? ''))
    ) {
      state.unverifiable.push('ssh runs a local command from its configuration');
      return;
    }
    if (letter === 'J' || letter === 'W') continue;
  }
  const words = argv.slice(i + 1);
  if (words.length === 0) {
    state.unverifiable.push(remoteShell);
    return;
  }
  shellString(words.join(' '), dynamic.slice(i + 1).some(Boolean), state);
}

/** Options of ordinary programs whose value is a command they run (GTFOBins' classics). */
const commandOption: Record<string, RegExp> = {
  tar: /^(--to-command|--use-compress-program|--info-script|--new-volume-script|--rsh-command|--checkpoint-action=exec)=?(.*)$|^-([IF])(.*)$/,
  rsync: /^(--rsh)=?(.*)$|^-(e)(.*)$/,
  scp: /^-(S)(.*)$/,
  zip: /^(--unzip-command)=?(.*)$|^-(TT)(.*)$/,
  tcpdump: /^-(z)(.*)$/,
};

/** Analyses the commands such options name, as the shell string each program hands to sh -c. */
function commandOptions(argv: string[], state: State): void {
  const pattern = commandOption[argv[0]!]!;
  for (let i = 1; i < argv.length; i++) {
    const match = pattern.exec(argv[i]!);
    if (!match) continue;
    const attached = match[2] ?? match[4] ?? '';
    const value = attached !== '' || argv[i]!.includes('=') ? attached.replace(/^=?exec=/, '') : argv[++i];
    if (value === undefined) continue;
    // ssh run by rsync or scp gets the host and the remote command after the words given: its
    // want of a remote command is not one here.
    const before = state.unverifiable.length;
    script(value, state);
    const added = state.unverifiable.splice(before);
    state.unverifiable.push(...added.filter((why) => why !== remoteShell));
  }
}

/** git: configuration given on the command line can name programs git runs. */
function git(argv: string[], state: State): void {
  for (let i = 1; i < argv.length; i++) {
    const arg = argv[i]!;
    const config = arg === '-c' ? argv[i + 1] : arg.startsWith('-c') ? arg.slice(2) : undefined;
    if (
      config !== undefined &&
      /alias\.|command|editor|pager|hook|ssh|fsmonitor|filter\.|diff\.|textconv|credential|proxy|program|askpass/i.test(
        config,
      )
    ) {
      state.unverifiable.push(`git -c ${config} names a program to run`);
      return;
    }
    if (arg === '--exec-path' || arg.startsWith('--exec-path=') || arg === '--config-env') {
      state.unverifiable.push(`git ${arg} changes the programs git runs`);
      return;
    }
  }
}

// ---------------------------------------------------------------------------------------
// Interpreters and classes

interface Interpreter {
  /** Options whose value (or whose following operand) is inline code. */
  inline: string[];
  /** Options that print and exit. */
  inert: string[];
  /** Short options that take a value (so the value is not the script operand). */
  values?: string[];
}

const interpreters: Record<string, Interpreter> = {
  python: { inline: ['-c'], inert: ['-V', '--version', '-h', '--help', '-m'], values: ['-W', '-X', '-Q'] },
  perl: {
    inline: ['-e', '-E'],
    inert: ['-v', '-V', '--version', '-h', '--help', '-c'],
    values: ['-I', '-M', '-m', '-x'],
  },
  ruby: { inline: ['-e'], inert: ['-v', '--version', '-h', '--help'], values: ['-I', '-r', '-C', '-E'] },
  node: {
    inline: ['-e', '--eval', '-p', '--print'],
    inert: ['-v', '--version', '-h', '--help'],
    values: ['-r', '--require', '--import', '--loader'],
  },
  nodejs: {
    inline: ['-e', '--eval', '-p', '--print'],
    inert: ['-v', '--version', '-h', '--help'],
    values: ['-r'],
  },
  deno: { inline: ['eval'], inert: ['--version', '-V', 'help'] },
  bun: { inline: ['-e', '--eval', '-p', '--print'], inert: ['--version', '-v', '--help', '-h'] },
  php: {
    inline: ['-r', '-B', '-R', '-E', '-F', '-a'],
    inert: ['-v', '--version', '-h', '-i', '-m', '-l'],
    values: ['-c', '-d', '-z'],
  },
  lua: { inline: ['-e'], inert: ['-v'], values: ['-l'] },
  luajit: { inline: ['-e'], inert: ['-v'], values: ['-l'] },
  tclsh: { inline: [], inert: [] },
  wish: { inline: [], inert: [] },
  expect: { inline: ['-c'], inert: ['-v'] },
  Rscript: { inline: ['-e'], inert: ['--version'] },
  R: { inline: ['-e'], inert: ['--version'] },
  julia: { inline: ['-e', '-E', '--eval', '--print'], inert: ['-v', '--version'] },
  osascript: { inline: ['-e'], inert: [] },
  irb: { inline: [], inert: ['-v', '--version'] },
  gdb: {
    inline: ['-ex', '--eval-command', '-x', '--command', '-batch', '--batch', '-p', '--pid'],
    inert: ['--version'],
  },
  ex: { inline: ['-c', '+'], inert: ['--version'] },
  vim: { inline: ['-c', '+', '-S', '--cmd', '-s'], inert: ['--version'] },
  vi: { inline: ['-c', '+', '-S', '--cmd', '-s'], inert: ['--version'] },
  nvim: { inline: ['-c', '+', '-S', '--cmd', '-s', '-l'], inert: ['--version'] },
  ed: { inline: [], inert: ['--version'] },
  emacs: { inline: ['--eval', '-l', '--load', '--script', '-x'], inert: ['--version'] },
};

const awks = new Set(['awk', 'gawk', 'mawk', 'nawk', 'busybox-awk']);

function interpreterName(name: string): string | undefined {
  if (/^python[0-9.]*$|^pypy[0-9.]*$/.test(name)) return 'python';
  if (/^perl[0-9.]*$/.test(name)) return 'perl';
  if (/^ruby[0-9.]*$/.test(name)) return 'ruby';
  if (/^php[0-9.]*$/.test(name)) return 'php';
  if (/^lua[0-9.]*$/.test(name)) return 'lua';
  if (/^tclsh[0-9.]*$/.test(name)) return 'tclsh';
  return name in interpreters ? name : undefined;
}

/** A command that runs code: inline, from a file or from stdin (a here-document is not read). */
function interpreter(argv: string[], stdin: Stdin, state: State): void {
  const name = argv[0]!;
  if (awks.has(name)) {
    awk(argv, state);
    return;
  }
  if (name === 'sed') {
    sed(argv, state);
    return;
  }
  const kind = interpreterName(name);
  if (!kind) return;
  const spec = interpreters[kind]!;
  const args = argv.slice(1);
  let why: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (
      spec.inline.some(
        (o) =>
          arg === o ||
          (o.startsWith('-') && !o.startsWith('--') && arg.startsWith(o) && o.length === 2) ||
          (o === '+' && arg.startsWith('+')),
      )
    ) {
      why = 'runs inline code';
      break;
    }
    if (spec.inert.includes(arg)) return;
    if (spec.values?.includes(arg)) {
      i++;
      continue;
    }
    if (arg === '-' || arg === '--') {
      why = stdin ? 'runs code from a here-document' : 'reads code from stdin';
      break;
    }
    if (arg.startsWith('-')) continue;
    why = `runs a script file: ${arg}`;
    break;
  }
  why ??= stdin ? 'runs code from a here-document' : 'reads code from stdin';
  state.classes.add('interpreter');
  state.unverifiable.push(`${name} ${why}`);
}

function awk(argv: string[], state: State): void {
  let program: string | undefined;
  for (let i = 1; i < argv.length; i++) {
    const arg = argv[i]!;
    if (/^(-[fEil]|--(file|exec|include|load))/.test(arg)) {
      state.classes.add('interpreter');
      state.unverifiable.push(`${argv[0]} runs a program file`);
      return;
    }
    if (arg === '-e' || arg === '--source') {
      program = (program ?? '') + (argv[i + 1] ?? '');
      i++;
      continue;
    }
    if (arg === '-F' || arg === '-v' || arg === '--assign' || arg === '--field-separator') {
      i++;
      continue;
    }
    if (arg === '--') {
      program ??= argv[i + 1];
      break;
    }
    if (arg.startsWith('-')) continue;
    program ??= arg;
    break;
  }
  if (program !== undefined && /system|getline|\||@load|@include|extension/.test(program)) {
    state.classes.add('interpreter');
    state.unverifiable.push(`${argv[0]} program runs commands`);
  }
}

function sed(argv: string[], state: State): void {
  const scripts: string[] = [];
  let sandbox = false;
  let positional: string | undefined;
  for (let i = 1; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '-e' || arg === '--expression') scripts.push(argv[++i] ?? '');
    else if (arg.startsWith('--expression=')) scripts.push(arg.slice(13));
    else if (arg === '-f' || arg.startsWith('--file') || /^-[a-zA-Z]*f/.test(arg)) {
      state.classes.add('interpreter');
      state.unverifiable.push('sed runs a script file');
      return;
    } else if (arg === '--sandbox') sandbox = true;
    else if (arg === '-l' || arg === '--line-length') i++;
    else if (/^-[a-zA-Z]*e$/.test(arg)) scripts.push(argv[++i] ?? '');
    else if (arg.startsWith('-') && arg !== '-') continue;
    else if (positional === undefined && scripts.length === 0) positional = arg;
  }
  if (positional !== undefined) scripts.push(positional);
  if (!sandbox && scripts.some(sedRunsOrWrites)) {
    state.classes.add('interpreter');
    state.unverifiable.push('sed script runs commands or writes files (e, w)');
  }
}

/** Reads a sed script command by command: the e command, s///e and the w commands run or write. */
export function sedRunsOrWrites(script: string): boolean {
  let i = 0;
  const s = script;
  const skipRegex = (delim: string) => {
    i++;
    while (i < s.length && s[i] !== delim) {
      if (s[i] === '\\') i++;
      else if (s[i] === '\n') return false;
      i++;
    }
    i++;
    return true;
  };
  while (i < s.length) {
    const c = s[i]!;
    if (' \t\n;'.includes(c)) {
      i++;
      continue;
    }
    // Addresses: numbers, $, /re/, \cREc, first~step, addr1,addr2, !, and I/M flags of a regex address.
    if (/[0-9$,~!+]/.test(c)) {
      i++;
      continue;
    }
    if (c === '/') {
      if (!skipRegex('/')) return true;
      while (s[i] === 'I' || s[i] === 'M') i++;
      continue;
    }
    if (c === '\\') {
      i++;
      if (!skipRegex(s[i] ?? '')) return true;
      continue;
    }
    if (c === '{' || c === '}' || c === '=') {
      i++;
      continue;
    }
    if (c === '#') {
      while (i < s.length && s[i] !== '\n') i++;
      continue;
    }
    if ('aic'.includes(c)) {
      // Text to the end of the line (with backslash-newline continuations).
      while (i < s.length && s[i] !== '\n') i += s[i] === '\\' ? 2 : 1;
      continue;
    }
    if ('rRbtTvL:'.includes(c)) {
      while (i < s.length && s[i] !== '\n' && (c === 'r' || c === 'R' || s[i] !== ';')) i++;
      continue;
    }
    if (c === 's' || c === 'y') {
      const delim = s[i + 1];
      if (delim === undefined || delim === '\n' || delim === '\\') return true;
      i++;
      if (!skipRegex(delim)) return true;
      i--;
      if (!skipRegex(delim)) return true;
      if (c === 'y') continue;
      while (i < s.length && /[gpiImMe0-9w]/.test(s[i]!)) {
        if (s[i] === 'e' || s[i] === 'w') return true;
        i++;
      }
      continue;
    }
    if ('dDgGhHlnNpPqQxzF'.includes(c)) {
      i++;
      continue;
    }
    // e, w, W, and anything not known here.
    return true;
  }
  return false;
}

const fileDeletion = new Set([
  'rm',
  'rmdir',
  'unlink',
  'shred',
  'srm',
  'wipe',
  'wipefs',
  'blkdiscard',
  'truncate',
]);
const privilege = new Set([
  'sudo',
  'su',
  'doas',
  'pkexec',
  'runuser',
  'setpriv',
  'sg',
  'newgrp',
  'chroot',
  'nsenter',
  'unshare',
  'setcap',
  'capsh',
  'chown',
  'chgrp',
  'passwd',
  'chpasswd',
  'usermod',
  'useradd',
  'userdel',
  'groupadd',
  'groupmod',
  'gpasswd',
  'visudo',
  'sudoedit',
]);
const network = new Set([
  'curl',
  'wget',
  'nc',
  'ncat',
  'netcat',
  'socat',
  'ssh',
  'scp',
  'sftp',
  'telnet',
  'ftp',
  'lftp',
  'tftp',
  'aria2c',
  'http',
  'https',
  'nmap',
  'openssl',
  'dig',
  'nslookup',
  'host',
  'ssh-keyscan',
  'rclone',
  'smbclient',
]);

/** The classes of one command (its own, not those of what it runs). */
function classify(argv: string[]): SshCommandClass[] {
  const name = argv[0]!;
  const args = argv.slice(1);
  const classes: SshCommandClass[] = [];
  const deletes =
    fileDeletion.has(name) ||
    /^mkfs(\..+)?$/.test(name) ||
    (name === 'find' && args.includes('-delete')) ||
    (name === 'rsync' && args.some((a) => /^--(delete|remove-source-files)/.test(a))) ||
    (name === 'tar' && args.some((a) => a === '--remove-files')) ||
    (name === 'git' && args.some((a) => a === 'clean' || a === 'rm')) ||
    (name === 'mv' && args.at(-1) === '/dev/null') ||
    (name === 'dd' && args.some((a) => a.startsWith('of='))) ||
    (name === 'zip' && args.some((a) => /^-[a-zA-Z]*m/.test(a) || a === '--move')) ||
    (name === 'crontab' && args.some((a) => /^-[a-zA-Z]*r/.test(a)));
  if (deletes) classes.push('file-deletion');
  const setuid =
    (name === 'chmod' || name === 'install') &&
    args.some(
      (a) =>
        /^[ugoa]*[+=][rwxXt]*s/.test(a) ||
        /^[0-7]?[2-7][0-7]{3}$/.test(a) ||
        /(^|,)[ugoa]*[+=][^,]*s/.test(a),
    );
  if (privilege.has(name) || setuid) classes.push('privilege');
  const remote =
    network.has(name) ||
    (name === 'rsync' && args.some((a) => /^[^/-][^/]*:/.test(a) || a.startsWith('rsync://'))) ||
    (name === 'git' &&
      args.some((a) => ['clone', 'fetch', 'pull', 'push', 'ls-remote', 'remote'].includes(a))) ||
    args.some((a) => /^\/dev\/(tcp|udp)\//.test(a));
  if (remote) classes.push('network');
  return classes;
}

// ---------------------------------------------------------------------------------------
// Matching

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
