// Scripts and compound commands: a script parsed and walked statement by statement (the line,
// an sh -c string, an eval, a trap handler), with its redirections and here-documents, control
// flow, [[ ]] tests, arithmetic, declarations and assignments.
import { call } from './simple-commands.ts';
import { assign, type State, type Stdin, tainted } from './state.ts';
import { type Node, parser, plain, redirect, testArithmetic } from './syntax.ts';
import { type Value, word, wordPart } from './words.ts';

/** Bound on adversarial input: nesting of sh -c and substitutions. */
const maxDepth = 8;

/** Parses and analyses a script (the line, an sh -c string, an eval, a trap handler). */
export function script(text: string, state: State): void {
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

export function nested(state: State, run: () => void): void {
  state.depth++;
  try {
    if (state.depth > maxDepth) state.unverifiable.push(`nesting deeper than ${maxDepth}`);
    else run();
  } finally {
    state.depth--;
  }
}

export function statements(list: Node[] | null, state: State): void {
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
export function arithmetic(expr: Node, state: State): void {
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
export const evaluatedSubscript = /\[[^\]]*[$`]/;
/** Builtins that take variable names as arguments (and so evaluate their subscripts). */
export const takesNames = new Set([
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

export function declaration(decl: Node, state: State): void {
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

export function environment(name: string, state: State, value: string | null): void {
  assign(state, name, value);
  if (runsCode.test(name)) state.unverifiable.push(`${name} makes a program run code it names`);
}

export function assignment(node: Node, state: State, declared: boolean): void {
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
