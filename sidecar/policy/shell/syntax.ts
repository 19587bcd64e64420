// The bash parser (mvdan/sh, the parser behind shfmt) and the token numbers of its syntax tree
// that the analysis reads.
import sh from 'mvdan-sh';

const { syntax } = sh;
export const parser = syntax.NewParser(syntax.KeepComments(false), syntax.Variant(syntax.LangBash));

// A node of the mvdan/sh syntax tree, as plain data: `type` is the Go type's name (CallExpr,
// Word, Lit, ...) and the fields are the Go fields, positions and comments left out.
// biome-ignore lint/suspicious/noExplicitAny: the tree is typed by its `type` at run time.
export type Node = any;

/**
 * Copies the parser's tree out of its GopherJS representation. Reading the package's wrapped
 * objects converts on every field access, which made a long line cost tens of milliseconds; the
 * copy is one pass. Slices are views into batches the parser reuses, so the copy is taken at once.
 */
export function plain(value: Node): Node {
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
export const redirect = {
  /** < <> <& << <<- <<<: the operators whose default descriptor is 0. */
  inputs: new Set([56, 57, 58, 61, 62, 63]),
  hereDoc: 61,
  hereDocTabs: 62,
  hereString: 63,
} as const;
/** [[ ]] operators -eq, -ne, -le, -ge, -lt, -gt: their operands are arithmetic. */
export const testArithmetic = { first: 116, last: 121 } as const;
/** ExtGlob operators ?( *( +( @( !( from 122. */
export const extGlobOperators = ['?', '*', '+', '@', '!'];
export const extGlobFirst = 122;
/** ParamExp.Exp operator `@` (${x@P} expands a prompt string: it runs substitutions in the value). */
export const expansionOperator = 84;
