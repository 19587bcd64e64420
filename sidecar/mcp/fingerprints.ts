// Rug pulls: a server that shows a harmless tool, has it approved or trusted, then changes its
// description (instructions to the agent's model) or its input schema. The enforcer pins each
// tool's definition the first time it lists it, for the Connection, whatever the session: a
// new session does not reset what was seen. A tool whose definition differs from its pin is
// changed until a person approves the new definition (or, with toolChanges: deny, for good).
// The server's `instructions` in its initialize result speak to the agent's model the same way
// and are pinned the same way, under a name no tool can have (':' is outside the plain set).
import { createHash } from 'node:crypto';

/** The pin of the server's initialize instructions among the tools'. */
export const instructionsPin = 'initialize:instructions';

/** SHA-256 of the server's initialize instructions. */
export function instructionsFingerprint(instructions: string): string {
  return createHash('sha256').update(instructions).digest('hex');
}

/** The parts of a tool definition that tell the agent's model what the tool does. */
const definitionKeys = ['name', 'title', 'description', 'inputSchema', 'outputSchema', 'annotations'];

/** SHA-256 of the tool's definition as canonical JSON (keys sorted at every level). */
export function toolFingerprint(tool: Record<string, unknown>): string {
  const definition: Record<string, unknown> = {};
  for (const key of definitionKeys) if (tool[key] !== undefined) definition[key] = tool[key];
  return createHash('sha256').update(canonical(definition)).digest('hex');
}

function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

export interface ToolChange {
  tool: string;
  pinned: string;
  seen: string;
}

/** The pinned definitions of one Connection's tools. */
export class ToolPins {
  readonly #pins = new Map<string, string>();
  /** The latest differing definition seen per tool, so a call can name what changed. */
  readonly #changed = new Map<string, string>();

  /** Pins a listed tool on first sight; the change when it differs from its pin. */
  see(name: string, fingerprint: string): ToolChange | undefined {
    const pinned = this.#pins.get(name);
    if (pinned === undefined) {
      this.#pins.set(name, fingerprint);
      return undefined;
    }
    if (pinned === fingerprint) {
      this.#changed.delete(name);
      return undefined;
    }
    this.#changed.set(name, fingerprint);
    return { tool: name, pinned, seen: fingerprint };
  }

  /** The change standing against a tool, if its latest listing differed from its pin. */
  change(name: string): ToolChange | undefined {
    const seen = this.#changed.get(name);
    const pinned = this.#pins.get(name);
    return seen === undefined || pinned === undefined ? undefined : { tool: name, pinned, seen };
  }

  /** A person approved the changed definition: it becomes the pin. */
  accept(change: ToolChange): void {
    if (this.#changed.get(change.tool) !== change.seen) return;
    this.#pins.set(change.tool, change.seen);
    this.#changed.delete(change.tool);
  }
}
