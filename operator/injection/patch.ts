// JSON Patch (RFC 6902) derived by diffing two JSON documents, and a small applier that the
// tests use to prove a derived patch turns the original into the result. The injector never
// writes patch paths by hand: it builds the injected pod and diffs.

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

export type Operation =
  | { op: 'add'; path: string; value: JsonValue }
  | { op: 'remove'; path: string }
  | { op: 'replace'; path: string; value: JsonValue };

/** Escapes one reference token of a JSON Pointer (RFC 6901): `~` first, then `/`. */
export function escapePointer(token: string): string {
  return token.replace(/~/g, '~0').replace(/\//g, '~1');
}

export function unescapePointer(token: string): string {
  return token.replace(/~1/g, '/').replace(/~0/g, '~');
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Structural equality under JSON semantics: keys holding undefined count as absent. */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a)) {
    return Array.isArray(b) && a.length === b.length && a.every((item, i) => jsonEqual(item, b[i]));
  }
  if (isObject(a) && isObject(b)) {
    const keys = (o: Record<string, unknown>) => Object.keys(o).filter((k) => o[k] !== undefined);
    const ak = keys(a);
    const bk = keys(b);
    return ak.length === bk.length && ak.every((k) => k in b && jsonEqual(a[k], b[k]));
  }
  return false;
}

/** A deep copy with undefined-valued keys dropped, as JSON.stringify would. */
export function toJson(value: unknown): JsonValue {
  return JSON.parse(JSON.stringify(value ?? null)) as JsonValue;
}

/**
 * The operations that turn `from` into `to`. Objects are diffed key by key; arrays keep their
 * common prefix and suffix, diff the overlapping middle element-wise, then remove (from the
 * end, so indices stay valid) or add (in order) what is left. Anything else is replaced.
 */
export function diff(from: unknown, to: unknown): Operation[] {
  const operations: Operation[] = [];
  walk(from, to, '', operations);
  return operations;
}

function walk(from: unknown, to: unknown, path: string, out: Operation[]): void {
  if (jsonEqual(from, to)) return;
  if (isObject(from) && isObject(to)) {
    for (const key of Object.keys(from)) {
      if (from[key] !== undefined && to[key] === undefined) {
        out.push({ op: 'remove', path: `${path}/${escapePointer(key)}` });
      }
    }
    for (const key of Object.keys(to)) {
      if (to[key] === undefined) continue;
      const child = `${path}/${escapePointer(key)}`;
      if (from[key] === undefined) out.push({ op: 'add', path: child, value: toJson(to[key]) });
      else walk(from[key], to[key], child, out);
    }
    return;
  }
  if (Array.isArray(from) && Array.isArray(to)) {
    let prefix = 0;
    while (prefix < from.length && prefix < to.length && jsonEqual(from[prefix], to[prefix])) prefix++;
    let suffix = 0;
    while (
      suffix < from.length - prefix &&
      suffix < to.length - prefix &&
      jsonEqual(from[from.length - 1 - suffix], to[to.length - 1 - suffix])
    ) {
      suffix++;
    }
    const fromMiddle = from.length - prefix - suffix;
    const toMiddle = to.length - prefix - suffix;
    const common = Math.min(fromMiddle, toMiddle);
    for (let i = 0; i < common; i++) walk(from[prefix + i], to[prefix + i], `${path}/${prefix + i}`, out);
    for (let i = fromMiddle - 1; i >= common; i--) out.push({ op: 'remove', path: `${path}/${prefix + i}` });
    for (let i = common; i < toMiddle; i++) {
      out.push({ op: 'add', path: `${path}/${prefix + i}`, value: toJson(to[prefix + i]) });
    }
    return;
  }
  out.push({ op: 'replace', path, value: toJson(to) });
}

export class PatchError extends Error {
  readonly code = 'InvalidPatch';
}

/** Applies add, remove and replace operations to a copy of `document` (RFC 6902 semantics). */
export function applyPatch(document: unknown, operations: readonly Operation[]): JsonValue {
  let root = toJson(document);
  for (const operation of operations) {
    if (operation.path === '') {
      if (operation.op === 'remove') throw new PatchError('cannot remove the document root');
      root = toJson(operation.value);
      continue;
    }
    const tokens = operation.path.split('/').slice(1).map(unescapePointer);
    const last = tokens.pop()!;
    let parent: JsonValue = root;
    for (const token of tokens) {
      const next: JsonValue | undefined = Array.isArray(parent)
        ? parent[arrayIndex(token, parent.length - 1)]
        : isObject(parent)
          ? parent[token]
          : undefined;
      if (next === undefined) throw new PatchError(`path not found: ${operation.path}`);
      parent = next;
    }
    if (Array.isArray(parent)) {
      if (operation.op === 'add') {
        const index = last === '-' ? parent.length : arrayIndex(last, parent.length);
        parent.splice(index, 0, toJson(operation.value));
      } else {
        const index = arrayIndex(last, parent.length - 1);
        if (operation.op === 'remove') parent.splice(index, 1);
        else parent[index] = toJson(operation.value);
      }
    } else if (isObject(parent)) {
      if (operation.op !== 'add' && !(last in parent))
        throw new PatchError(`path not found: ${operation.path}`);
      if (operation.op === 'remove') delete parent[last];
      else parent[last] = toJson(operation.value);
    } else {
      throw new PatchError(`parent is not a container: ${operation.path}`);
    }
  }
  return root;
}

function arrayIndex(token: string, max: number): number {
  if (!/^(0|[1-9][0-9]*)$/.test(token)) throw new PatchError(`bad array index: ${token}`);
  const index = Number(token);
  if (index > max) throw new PatchError(`array index out of range: ${token}`);
  return index;
}
