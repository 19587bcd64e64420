// The check a sidecar makes of a bundle received over the wire before it trusts its shape: the
// envelope (version, revision, identity) and each connection's name, protocol and policies.
// Written out rather than built with zod: the sidecar validates no other API object, and zod
// with the schemas built with it was 6-8 MB of its memory (bench/README.md "Memory"). Its
// messages are zod's, so a refused bundle is logged in the same words.
import { bundleVersion } from './bundle.ts';

/** Where a bundle is malformed (keys and indexes from its root), and how. */
export interface BundleIssue {
  path: (string | number)[];
  message: string;
}

type Check = (value: unknown, path: (string | number)[]) => BundleIssue | undefined;

/** A value's type as zod names it in a message; the bundle is parsed JSON. */
function received(value: unknown): string {
  if (value === null) return 'null';
  return Array.isArray(value) ? 'array' : typeof value;
}

const expected = (type: string, value: unknown, path: (string | number)[]): BundleIssue => ({
  path,
  message: `Invalid input: expected ${type}, received ${received(value)}`,
});

const literal =
  (want: number): Check =>
  (value, path) =>
    value === want ? undefined : { path, message: `Invalid input: expected ${want}` };

const string: Check = (value, path) =>
  typeof value === 'string' ? undefined : expected('string', value, path);

const optional =
  (check: Check): Check =>
  (value, path) =>
    value === undefined ? undefined : check(value, path);

const array =
  (item: Check): Check =>
  (value, path) => {
    if (!Array.isArray(value)) return expected('array', value, path);
    for (const [index, element] of value.entries()) {
      const issue = item(element, [...path, index]);
      if (issue) return issue;
    }
    return undefined;
  };

/** An object with at least these keys, checked in order; other keys are let through. */
const object =
  (shape: Record<string, Check>): Check =>
  (value, path) => {
    if (typeof value !== 'object' || value === null || Array.isArray(value))
      return expected('object', value, path);
    for (const [key, check] of Object.entries(shape)) {
      const issue = check(Object.hasOwn(value, key) ? (value as Record<string, unknown>)[key] : undefined, [
        ...path,
        key,
      ]);
      if (issue) return issue;
    }
    return undefined;
  };

const bundleCheck = object({
  version: literal(bundleVersion),
  revision: string,
  identity: object({
    namespace: string,
    serviceAccount: string,
    pod: optional(string),
    user: optional(string),
    groups: optional(array(string)),
  }),
  connections: array(object({ name: string, protocol: string, policies: array(object({})) })),
});

/** Validates a bundle received over the wire: success, or the first issue found. */
export const bundleSchema = {
  safeParse(value: unknown): { success: true } | { success: false; error: { issues: BundleIssue[] } } {
    const issue = bundleCheck(value, []);
    return issue ? { success: false, error: { issues: [issue] } } : { success: true };
  },
};
