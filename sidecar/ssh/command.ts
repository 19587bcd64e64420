// The commands an SSH exec request would run, read statically from its command line the way a
// POSIX shell (and bash) would split it: quoting, escapes, `;` `&&` `||` `|` `&`, newlines,
// redirections, here-documents, subshells, command and process substitution, and `sh -c`,
// `bash -c`, `su -c`, `find -exec`, `watch` recursively. argv[0] is reduced to its basename and
// wrappers (sudo, env, nice, nohup, timeout, command, exec, xargs, ...) are stripped, so
// `sudo /bin/rm -rf /` is seen as `rm -rf /`.
//
// What a shell would compute at run time and cannot be known here (a command name built from a
// substitution or a variable, eval, a shell reading its script from stdin or a file, a variable
// the line sets and then uses as an argument) is reported as unverifiable; the enforcer refuses
// such lines under a policy with command rules. Pure: no I/O.

export interface CommandLine {
  /** Every simple command the line would run, in order, normalized (see normalizeArgv). */
  commands: string[][];
  /** Why the line cannot be verified statically; empty when it can. */
  unverifiable: string[];
}

/** Bounds on adversarial input: nesting of sh -c and substitutions, and line length. */
const maxDepth = 8;
export const maxCommandLength = 256 * 1024;

const shells = new Set([
  'sh',
  'bash',
  'dash',
  'zsh',
  'ksh',
  'ash',
  'mksh',
  'yash',
  'posh',
  'fish',
  'csh',
  'tcsh',
]);
const keywordsBeforeCommand = new Set([
  'if',
  'then',
  'else',
  'elif',
  'do',
  'while',
  'until',
  '!',
  '{',
  'time',
  'coproc',
]);
const keywordsEnding = new Set(['fi', 'done', '}', 'esac']);
const assigningBuiltins = new Set([
  'export',
  'declare',
  'typeset',
  'local',
  'readonly',
  'read',
  'mapfile',
  'readarray',
]);

interface Word {
  /** The text after quote removal; expansions are kept as written ($X, $(...)). */
  value: string;
  /** Parameters expanded unquoted or quoted: their names. */
  parameters: string[];
  /** Contains a command substitution, arithmetic or process substitution. */
  computed: boolean;
  /** Contains an unquoted glob character or a brace expansion. */
  pattern: boolean;
  /** Any part was quoted or escaped (so it is not a keyword). */
  quoted: boolean;
  /** Length of the value before the first quote, escape or expansion (NAME= must lie within). */
  literalPrefix: number;
}

type Token = { kind: 'word'; word: Word } | { kind: 'op'; op: string };

interface State {
  commands: string[][];
  unverifiable: string[];
  assigned: Set<string>;
  depth: number;
}

/** Parses one command line as the remote shell would. */
export function parseCommandLine(line: string): CommandLine {
  const state: State = { commands: [], unverifiable: [], assigned: new Set(), depth: 0 };
  if (line.length > maxCommandLength) {
    return { commands: [], unverifiable: [`command line longer than ${maxCommandLength} characters`] };
  }
  if (line.includes('\0')) return { commands: [], unverifiable: ['NUL byte in command line'] };
  parseScript(line, state);
  return { commands: state.commands, unverifiable: [...new Set(state.unverifiable)] };
}

function parseScript(script: string, state: State): void {
  if (state.depth > maxDepth) {
    state.unverifiable.push(`nesting deeper than ${maxDepth}`);
    return;
  }
  const lexer = new Lexer(script, state, 0, undefined);
  const tokens = lexer.tokens();
  analyse(tokens, state);
}

/** Parses a nested script (sh -c, substitution) with its own assignments scope inherited. */
function nested(script: string, state: State): void {
  const inner: State = { ...state, assigned: new Set(state.assigned), depth: state.depth + 1 };
  parseScript(script, inner);
  state.commands = inner.commands;
  state.unverifiable = inner.unverifiable;
}

class Lexer {
  private readonly source: string;
  private readonly state: State;
  pos: number;
  /** ')' when lexing a $( ... ) or <( ... ) body: stop at the unmatched close. */
  private readonly stop: ')' | undefined;
  private readonly pendingHeredocs: { delimiter: string; strip: boolean; expand: boolean }[] = [];

  constructor(source: string, state: State, pos: number, stop: ')' | undefined) {
    this.source = source;
    this.state = state;
    this.pos = pos;
    this.stop = stop;
  }

  tokens(): Token[] {
    const out: Token[] = [];
    let parens = 0;
    const s = this.source;
    while (this.pos < s.length) {
      const c = s[this.pos]!;
      if (c === ' ' || c === '\t') {
        this.pos++;
        continue;
      }
      if (c === '\\' && s[this.pos + 1] === '\n') {
        this.pos += 2;
        continue;
      }
      if (c === '#') {
        while (this.pos < s.length && s[this.pos] !== '\n') this.pos++;
        continue;
      }
      if (c === '\n') {
        this.pos++;
        out.push({ kind: 'op', op: ';' });
        this.readHeredocBodies();
        continue;
      }
      if (c === ')' && this.stop === ')' && parens === 0) {
        this.pos++;
        return out;
      }
      if ((c === '<' || c === '>') && s[this.pos + 1] === '(') {
        // Process substitution: the commands inside run.
        this.pos += 2;
        this.substitution();
        out.push({
          kind: 'word',
          word: {
            value: '/dev/fd/N',
            parameters: [],
            computed: true,
            pattern: false,
            quoted: false,
            literalPrefix: 9,
          },
        });
        continue;
      }
      const op = this.operator();
      if (op) {
        if (op === '(') parens++;
        if (op === ')') parens--;
        if (op === '<<' || op === '<<-') {
          const delimiter = this.skipBlanksAndReadWord();
          if (delimiter) {
            this.pendingHeredocs.push({
              delimiter: delimiter.value,
              strip: op === '<<-',
              expand: !delimiter.quoted,
            });
          }
          out.push({ kind: 'op', op: '<<' });
          continue;
        }
        out.push({ kind: 'op', op });
        continue;
      }
      const word = this.word();
      if (word) out.push({ kind: 'word', word });
    }
    if (this.stop === ')') this.state.unverifiable.push('unterminated substitution');
    return out;
  }

  private operator(): string | undefined {
    const s = this.source;
    const rest = s.slice(this.pos, this.pos + 4);
    // An IO number (2>, 10<) belongs to the redirection.
    const io = /^[0-9]+(?=[<>])/.exec(s.slice(this.pos, this.pos + 12));
    if (io) {
      this.pos += io[0].length;
      return this.operator() ?? '>';
    }
    for (const op of [
      '<<<',
      '<<-',
      '&>>',
      ';;&',
      '&&',
      '||',
      ';;',
      ';&',
      '|&',
      '<<',
      '>>',
      '<&',
      '>&',
      '<>',
      '>|',
      '&>',
    ]) {
      if (rest.startsWith(op)) {
        this.pos += op.length;
        return op === ';;&' || op === ';;' || op === ';&' ? ';' : op;
      }
    }
    const c = s[this.pos]!;
    if (';&|()<>'.includes(c)) {
      this.pos++;
      return c;
    }
    return undefined;
  }

  private skipBlanksAndReadWord(): Word | undefined {
    while (this.source[this.pos] === ' ' || this.source[this.pos] === '\t') this.pos++;
    return this.word();
  }

  private readHeredocBodies(): void {
    const s = this.source;
    for (const heredoc of this.pendingHeredocs.splice(0)) {
      for (;;) {
        if (this.pos >= s.length) {
          this.state.unverifiable.push('unterminated here-document');
          return;
        }
        const end = s.indexOf('\n', this.pos);
        const line = s.slice(this.pos, end === -1 ? s.length : end);
        this.pos = end === -1 ? s.length : end + 1;
        const text = heredoc.strip ? line.replace(/^\t+/, '') : line;
        if (text === heredoc.delimiter) break;
        if (heredoc.expand && /\$\(|`|\$\{|\$\(\(/.test(line)) {
          this.state.unverifiable.push('substitution in a here-document');
        }
      }
    }
  }

  /** Reads one word; returns undefined at a metacharacter. */
  private word(): Word | undefined {
    const s = this.source;
    const word: Word = {
      value: '',
      parameters: [],
      computed: false,
      pattern: false,
      quoted: false,
      literalPrefix: -1,
    };
    const start = this.pos;
    let braceOpen = false;
    while (this.pos < s.length) {
      const c = s[this.pos]!;
      if (' \t\n;&|()<>'.includes(c)) break;
      if (word.literalPrefix === -1 && '\\\'"$`'.includes(c)) word.literalPrefix = word.value.length;
      if (c === '\\') {
        word.quoted = true;
        if (s[this.pos + 1] === '\n') {
          this.pos += 2;
          continue;
        }
        word.value += s[this.pos + 1] ?? '';
        this.pos += 2;
        continue;
      }
      if (c === "'") {
        word.quoted = true;
        const end = s.indexOf("'", this.pos + 1);
        if (end === -1) {
          this.state.unverifiable.push('unterminated single quote');
          word.value += s.slice(this.pos + 1);
          this.pos = s.length;
          break;
        }
        word.value += s.slice(this.pos + 1, end);
        this.pos = end + 1;
        continue;
      }
      if (c === '$' && s[this.pos + 1] === "'") {
        word.quoted = true;
        this.pos += 2;
        word.value += this.ansiC();
        continue;
      }
      if (c === '$' && s[this.pos + 1] === '"') {
        this.pos++;
        continue;
      }
      if (c === '"') {
        word.quoted = true;
        this.pos++;
        this.doubleQuoted(word);
        continue;
      }
      if (c === '$' || c === '`') {
        this.expansion(word);
        continue;
      }
      if (c === '*' || c === '?' || c === '[') word.pattern = true;
      if (c === '{') braceOpen = true;
      if (c === '}' && braceOpen && /\{[^{}]*(,|\.\.)[^{}]*\}/.test(s.slice(start, this.pos + 1))) {
        word.pattern = true;
      }
      // extglob: @( !( +( *( ?( would be a pattern with a paren; treat the word as a pattern.
      word.value += c;
      this.pos++;
    }
    if (word.literalPrefix === -1) word.literalPrefix = word.value.length;
    return this.pos === start ? undefined : word;
  }

  private doubleQuoted(word: Word): void {
    const s = this.source;
    while (this.pos < s.length) {
      const c = s[this.pos]!;
      if (c === '"') {
        this.pos++;
        return;
      }
      if (c === '\\') {
        const next = s[this.pos + 1];
        if (next === '\n') {
          this.pos += 2;
          continue;
        }
        if (next !== undefined && '$`"\\'.includes(next)) {
          word.value += next;
          this.pos += 2;
          continue;
        }
        word.value += c;
        this.pos++;
        continue;
      }
      if (c === '$' || c === '`') {
        this.expansion(word);
        continue;
      }
      word.value += c;
      this.pos++;
    }
    this.state.unverifiable.push('unterminated double quote');
  }

  /** $name, ${...}, $(...), $((...)), `...`: kept as written, with what they mean recorded. */
  private expansion(word: Word): void {
    const s = this.source;
    const start = this.pos;
    if (s[this.pos] === '`') {
      // Inside backquotes, backslash escapes $ ` and \ ; the result is parsed again.
      let body = '';
      this.pos++;
      while (this.pos < s.length && s[this.pos] !== '`') {
        if (s[this.pos] === '\\' && s[this.pos + 1] !== undefined && '$`\\'.includes(s[this.pos + 1]!)) {
          body += s[this.pos + 1];
          this.pos += 2;
          continue;
        }
        body += s[this.pos];
        this.pos++;
      }
      if (this.pos >= s.length) this.state.unverifiable.push('unterminated backquote');
      this.pos++;
      nested(body, this.state);
      word.computed = true;
      word.value += s.slice(start, this.pos);
      return;
    }
    const next = s[this.pos + 1];
    if (next === '(' && s[this.pos + 2] === '(') {
      // Arithmetic: only a substitution inside would run anything, and we do not parse it.
      let depth = 0;
      let i = this.pos + 1;
      for (; i < s.length; i++) {
        if (s[i] === '(') depth++;
        else if (s[i] === ')' && --depth === 0) break;
      }
      const body = s.slice(this.pos, i + 1);
      if (/\$\(|`/.test(body.slice(3))) this.state.unverifiable.push('substitution inside arithmetic');
      word.computed = true;
      word.value += body;
      this.pos = i + 1;
      return;
    }
    if (next === '(') {
      this.pos += 2;
      this.substitution();
      word.computed = true;
      word.value += s.slice(start, this.pos);
      return;
    }
    if (next === '{') {
      const end = s.indexOf('}', this.pos);
      const body = s.slice(this.pos + 2, end === -1 ? s.length : end);
      if (end === -1) this.state.unverifiable.push('unterminated parameter expansion');
      if (/\$\(|`|\$\{/.test(body)) this.state.unverifiable.push('substitution inside a parameter expansion');
      const name = /^[#!]?([A-Za-z_][A-Za-z0-9_]*|[0-9]+|[@*#?$!-])/.exec(body)?.[1];
      word.parameters.push(name ?? body);
      word.value += s.slice(start, end === -1 ? s.length : end + 1);
      this.pos = end === -1 ? s.length : end + 1;
      return;
    }
    const name = /^([A-Za-z_][A-Za-z0-9_]*|[0-9]|[@*#?$!-])/.exec(s.slice(this.pos + 1, this.pos + 256))?.[1];
    if (name) {
      word.parameters.push(name);
      word.value += '$' + name;
      this.pos += 1 + name.length;
      return;
    }
    word.value += '$';
    this.pos++;
  }

  /** The body of $( ... ) or <( ... ): lexed and analysed as a script of its own. */
  private substitution(): void {
    const inner: State = {
      ...this.state,
      assigned: new Set(this.state.assigned),
      depth: this.state.depth + 1,
    };
    if (inner.depth > maxDepth) {
      this.state.unverifiable.push(`nesting deeper than ${maxDepth}`);
      this.pos = this.source.length;
      return;
    }
    const lexer = new Lexer(this.source, inner, this.pos, ')');
    const tokens = lexer.tokens();
    this.pos = lexer.pos;
    analyse(tokens, inner);
    this.state.commands = inner.commands;
    this.state.unverifiable = inner.unverifiable;
  }

  private ansiC(): string {
    const s = this.source;
    let out = '';
    while (this.pos < s.length && s[this.pos] !== "'") {
      const c = s[this.pos]!;
      if (c !== '\\') {
        out += c;
        this.pos++;
        continue;
      }
      const e = s[this.pos + 1] ?? '';
      const simple: Record<string, string> = {
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
      if (e in simple) {
        out += simple[e];
        this.pos += 2;
        continue;
      }
      const hex = /^x([0-9a-fA-F]{1,2})/.exec(s.slice(this.pos + 1, this.pos + 4));
      if (hex) {
        out += String.fromCharCode(Number.parseInt(hex[1]!, 16));
        this.pos += 1 + hex[0].length;
        continue;
      }
      const unicode = /^(?:u([0-9a-fA-F]{1,4})|U([0-9a-fA-F]{1,8}))/.exec(
        s.slice(this.pos + 1, this.pos + 11),
      );
      if (unicode) {
        const code = Number.parseInt((unicode[1] ?? unicode[2])!, 16);
        out += code <= 0x10ffff ? String.fromCodePoint(code) : '';
        this.pos += 1 + unicode[0].length;
        continue;
      }
      const octal = /^[0-7]{1,3}/.exec(s.slice(this.pos + 1, this.pos + 4));
      if (octal) {
        out += String.fromCharCode(Number.parseInt(octal[0], 8) & 0xff);
        this.pos += 1 + octal[0].length;
        continue;
      }
      const control = /^c(.)/.exec(s.slice(this.pos + 1, this.pos + 3));
      if (control) {
        out += String.fromCharCode(control[1]!.charCodeAt(0) & 0x1f);
        this.pos += 3;
        continue;
      }
      out += '\\' + e;
      this.pos += 2;
    }
    if (this.pos >= s.length) this.state.unverifiable.push("unterminated $'");
    this.pos++;
    return out;
  }
}

const redirections = new Set(['<', '>', '>>', '<&', '>&', '<>', '>|', '&>', '&>>', '<<<', '<<']);
const separators = new Set([';', '&', '&&', '||', '|', '|&', '(', ')']);

/** Groups tokens into simple commands and records each. */
function analyse(tokens: Token[], state: State): void {
  let words: Word[] = [];
  let i = 0;
  const flush = () => {
    if (words.length > 0) simpleCommand(words, state);
    words = [];
  };
  while (i < tokens.length) {
    const token = tokens[i]!;
    if (token.kind === 'op') {
      if (redirections.has(token.op)) {
        // The target is a file name (or the here-document delimiter, already consumed).
        const target = tokens[i + 1];
        if (token.op !== '<<' && target?.kind === 'word') i++;
        i++;
        continue;
      }
      if (token.op === '(' && words.length === 1 && tokens[i + 1]?.kind === 'op') {
        // name() { body }: a function definition; the body's commands are checked as they are.
        const close = tokens[i + 1] as { kind: 'op'; op: string };
        if (close.op === ')') {
          words = [];
          i += 2;
          continue;
        }
      }
      if (separators.has(token.op)) flush();
      i++;
      continue;
    }
    words.push(token.word);
    i++;
  }
  flush();
}

function isName(text: string): boolean {
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(text);
}

function simpleCommand(input: Word[], state: State): void {
  let words = input;
  // Reserved words that precede a command (if, then, do, !, {, time ...) and those that end one.
  for (let guard = 0; guard < 64 && words.length > 0; guard++) {
    const first = words[0]!;
    if (first.quoted) break;
    if (keywordsBeforeCommand.has(first.value)) {
      words = words.slice(1);
      continue;
    }
    if (keywordsEnding.has(first.value)) {
      words = words.slice(1);
      continue;
    }
    if (first.value === 'function' && words[1]) {
      words = words.slice(2);
      continue;
    }
    if (first.value === 'for' || first.value === 'select') {
      if (words[1]) state.assigned.add(words[1].value);
      return;
    }
    if (first.value === 'case') {
      state.unverifiable.push('case statements are not analysed');
      return;
    }
    if (first.value === 'in') return;
    if (first.value.startsWith('((') || first.value === '[[' || first.value === ']]') return;
    break;
  }
  // Leading assignments: NAME=value.
  while (words.length > 0) {
    const eq = words[0]!.value.indexOf('=');
    if (eq > 0 && eq < words[0]!.literalPrefix && isName(words[0]!.value.slice(0, eq))) {
      state.assigned.add(words[0]!.value.slice(0, eq));
      words = words.slice(1);
      continue;
    }
    break;
  }
  if (words.length === 0) return;
  const head = words[0]!;
  if (head.computed) {
    state.unverifiable.push(`command name is computed: ${head.value}`);
    return;
  }
  if (head.parameters.length > 0) {
    state.unverifiable.push(`command name comes from a variable: ${head.value}`);
    return;
  }
  if (head.pattern) {
    state.unverifiable.push(`command name is a pattern: ${head.value}`);
    return;
  }
  // Names this command assigns (export X=..., read X) taint later uses of $X.
  const base = basename(head.value);
  if (assigningBuiltins.has(base)) {
    for (const word of words.slice(1)) {
      const name = word.value.split('=')[0]!;
      if (isName(name)) state.assigned.add(name);
    }
  }
  for (const word of words) {
    if (word.value === '-v' && base === 'printf')
      state.assigned.add(words[words.indexOf(word) + 1]?.value ?? '');
  }
  const tainted = words
    .slice(1)
    .flatMap((word) => word.parameters)
    .filter((name) => state.assigned.has(name));
  if (tainted.length > 0) {
    state.unverifiable.push(`argument from a variable set on the same line: $${tainted[0]}`);
  }
  commandVector(
    words.map((w) => w.value),
    words.map((w) => w.computed || w.parameters.length > 0),
    state,
  );
}

export function basename(name: string): string {
  const trimmed = name.replace(/\/+$/, '');
  const slash = trimmed.lastIndexOf('/');
  return slash === -1 ? trimmed : trimmed.slice(slash + 1);
}

/** Option grammar of a wrapper: options that take a value, and how the wrapped command starts. */
interface Wrapper {
  withValue: Set<string>;
  /** Long options that take a separate value (--user root). */
  longWithValue?: Set<string>;
  /** A number of positional operands before the command (timeout's duration, chroot's dir). */
  operands?: number;
  /** env: NAME=value words before the command. */
  assignments?: boolean;
}

const wrappers: Record<string, Wrapper> = {
  sudo: {
    withValue: new Set(['-u', '-g', '-C', '-D', '-h', '-p', '-r', '-t', '-T', '-U', '-R']),
    longWithValue: new Set([
      '--user',
      '--group',
      '--close-from',
      '--chdir',
      '--host',
      '--prompt',
      '--role',
      '--type',
      '--command-timeout',
      '--other-user',
      '--chroot',
    ]),
    assignments: true,
  },
  doas: { withValue: new Set(['-u', '-C']) },
  env: {
    withValue: new Set(['-u', '-C', '-P']),
    longWithValue: new Set(['--unset', '--chdir']),
    assignments: true,
  },
  nice: { withValue: new Set(['-n']), longWithValue: new Set(['--adjustment']) },
  ionice: {
    withValue: new Set(['-c', '-n', '-p', '-P', '-u']),
    longWithValue: new Set(['--class', '--classdata']),
  },
  nohup: { withValue: new Set() },
  setsid: { withValue: new Set() },
  time: { withValue: new Set(['-f', '-o']), longWithValue: new Set(['--format', '--output']) },
  stdbuf: {
    withValue: new Set(['-i', '-o', '-e']),
    longWithValue: new Set(['--input', '--output', '--error']),
  },
  timeout: {
    withValue: new Set(['-s', '-k']),
    longWithValue: new Set(['--signal', '--kill-after']),
    operands: 1,
  },
  command: { withValue: new Set() },
  builtin: { withValue: new Set() },
  exec: { withValue: new Set(['-a']) },
  xargs: {
    withValue: new Set(['-I', '-n', '-L', '-P', '-s', '-d', '-E', '-a']),
    longWithValue: new Set([
      '--arg-file',
      '--delimiter',
      '--max-args',
      '--max-lines',
      '--max-procs',
      '--max-chars',
      '--process-slot-var',
    ]),
  },
  busybox: { withValue: new Set() },
  chroot: { withValue: new Set(), longWithValue: new Set(['--userspec', '--groups']), operands: 1 },
  flock: { withValue: new Set(['-w', '-E', '-c']), operands: 1 },
};

/** Strips one wrapper's options; returns the wrapped argv, or undefined when none follows. */
function unwrapOnce(argv: string[], wrapper: Wrapper): { rest: string[]; shellFlag?: boolean } | undefined {
  let i = 1;
  for (; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      i++;
      break;
    }
    if (wrapper.assignments && /^[A-Za-z_][A-Za-z0-9_]*=/.test(arg)) continue;
    if (arg.startsWith('--')) {
      if (wrapper.longWithValue?.has(arg)) i++;
      continue;
    }
    if (arg.startsWith('-') && arg.length > 1) {
      if (/^-[0-9]+$/.test(arg)) continue; // nice -10
      // Clustered flags: the first one taking a value consumes the rest or the next word.
      for (let j = 1; j < arg.length; j++) {
        if (wrapper.withValue.has(`-${arg[j]}`)) {
          if (j === arg.length - 1) i++;
          break;
        }
      }
      continue;
    }
    break;
  }
  i += wrapper.operands ?? 0;
  if (i >= argv.length) return undefined;
  return { rest: argv.slice(i) };
}

/**
 * Normalizes a command's argv for matching: argv[0] to its basename, wrappers stripped
 * (repeatedly: `sudo env nice rm` is `rm`). Returns the wrapped commands too, outermost first.
 */
export function normalizeArgv(argv: string[]): string[] {
  let current = argv.length > 0 ? [basename(argv[0]!), ...argv.slice(1)] : argv;
  for (let guard = 0; guard < 32 && current.length > 0; guard++) {
    const wrapper = wrappers[current[0]!];
    if (!wrapper) break;
    if (current[0] === 'command' && current.slice(1).some((a) => a === '-v' || a === '-V')) break;
    const unwrapped = unwrapOnce(current, wrapper);
    if (!unwrapped) break;
    // xargs appends what it reads from stdin: shown as {} like find -exec's file name.
    const appended =
      current[0] === 'xargs' &&
      !current.some((a) => /^-[a-zA-Z0-9]*[Ii]/.test(a) || a.startsWith('--replace'))
        ? ['{}']
        : [];
    current = [basename(unwrapped.rest[0]!), ...unwrapped.rest.slice(1), ...appended];
  }
  return current;
}

const shellFlagsWithValue = new Set(['-o', '+o', '-O', '+O', '--rcfile', '--init-file']);

function commandVector(raw: string[], dynamic: boolean[], state: State): void {
  const argv = normalizeArgv(raw);
  if (argv.length === 0) return;
  const offset = raw.length - argv.length;
  const isDynamic = (index: number) => dynamic[index + offset] === true;
  state.commands.push(argv);
  const name = argv[0]!;
  if (raw.some((w) => basename(w) === 'env') && raw.some((w) => /^(-[a-zA-Z0-9]*S|--split-string)/.test(w))) {
    state.unverifiable.push('env -S splits a string into a command');
  }
  if (raw.length > 0 && ['sudo', 'doas'].includes(basename(raw[0]!))) {
    // sudo -s / -i with no command starts a shell that reads the exec channel.
    const unwrapped = unwrapOnce([basename(raw[0]!), ...raw.slice(1)], wrappers.sudo!);
    if (
      !unwrapped &&
      raw.slice(1).some((a) => /^-[a-zA-Z]*[si]/.test(a) || a === '--shell' || a === '--login')
    ) {
      state.unverifiable.push('sudo starts a shell that reads its commands from stdin');
    }
  }
  if (shells.has(name) || (name === 'busybox' && shells.has(argv[1] ?? ''))) {
    const args = name === 'busybox' ? argv.slice(2) : argv.slice(1);
    let command = false;
    let operand: number | undefined;
    for (let i = 0; i < args.length; i++) {
      const arg = args[i]!;
      if (arg === '--' || arg === '-') {
        operand = i + 1 < args.length ? i + 1 : undefined;
        break;
      }
      if (shellFlagsWithValue.has(arg)) {
        i++;
        continue;
      }
      if (/^[-+][a-zA-Z]+$/.test(arg)) {
        if (arg.startsWith('-') && arg.includes('c')) command = true;
        if (arg.startsWith('-') && (arg.includes('s') || arg.includes('i'))) {
          if (!command) state.unverifiable.push(`${name} reads its script from stdin`);
        }
        continue;
      }
      if (arg.startsWith('--')) {
        if (arg === '--version' || arg === '--help') return;
        continue;
      }
      operand = i;
      break;
    }
    if (command) {
      if (operand === undefined) {
        state.unverifiable.push(`${name} -c without a script`);
      } else if (isDynamic(operand + (name === 'busybox' ? 2 : 1))) {
        state.unverifiable.push(`${name} -c script is computed: ${args[operand]}`);
      } else {
        nested(args[operand]!, state);
      }
    } else if (operand !== undefined) {
      state.unverifiable.push(`${name} runs a script file: ${args[operand]}`);
    } else {
      state.unverifiable.push(`${name} reads its script from stdin`);
    }
    return;
  }
  switch (name) {
    case 'eval':
      state.unverifiable.push('eval');
      return;
    case 'source':
    case '.':
      state.unverifiable.push(`${name} runs a script file`);
      return;
    case 'alias':
      state.unverifiable.push('alias redefines commands');
      return;
    case 'trap': {
      const action = argv[1];
      if (action && action !== '-' && !action.startsWith('-')) nested(action, state);
      return;
    }
    case 'su':
    case 'runuser': {
      const index = argv.findIndex((a, i) => i > 0 && (a === '-c' || a === '--command'));
      if (index !== -1) {
        const script = argv[index + 1];
        if (script === undefined || isDynamic(index + 1))
          state.unverifiable.push(`${name} -c script is computed`);
        else nested(script, state);
      } else {
        state.unverifiable.push(`${name} starts a shell that reads its commands from stdin`);
      }
      return;
    }
    case 'watch': {
      let i = 1;
      for (; i < argv.length; i++) {
        const arg = argv[i]!;
        if (['-n', '-d', '-c', '-x', '-g', '-t', '-b', '-e', '-p', '-w', '-q'].includes(arg)) {
          if (arg === '-n' || arg === '-q') i++;
          continue;
        }
        if (arg.startsWith('-')) continue;
        break;
      }
      if (i < argv.length) nested(argv.slice(i).join(' '), state);
      return;
    }
    case 'find': {
      // -exec/-execdir/-ok/-okdir run a command per file; -delete is find's own (match it with "find *-delete*").
      for (let i = 1; i < argv.length; i++) {
        if (['-exec', '-execdir', '-ok', '-okdir'].includes(argv[i]!)) {
          const end = argv.findIndex((a, j) => j > i && (a === ';' || a === '+'));
          const inner = argv.slice(i + 1, end === -1 ? argv.length : end);
          if (inner.length > 0)
            commandVector(
              inner,
              inner.map((_, j) => isDynamic(i + 1 + j)),
              state,
            );
          i = end === -1 ? argv.length : end;
        }
      }
      return;
    }
  }
}

/** Long options that are another spelling of a short one, for the commands rules name most. */
const aliases: Record<string, Record<string, string>> = {
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
  const table = aliases[argv[0]!] ?? {};
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
