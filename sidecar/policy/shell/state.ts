// What the analysis of one command line gathers as it walks: the commands, their classes, why
// the line cannot be verified, and the variables the line sets.
import type { SshCommandClass } from '../../../api/names.ts';

export interface State {
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
export type Stdin = { text: string } | undefined;

/** Records an assignment: the value stays known only while every assignment agrees. */
export function assign(state: State, name: string, value: string | null): void {
  const known = state.assigned.get(name);
  state.assigned.set(name, state.assigned.has(name) && known !== value ? null : value);
}

/** A parameter whose value the agent chose: set on the line, or positional (sh -c script name args). */
export function tainted(state: State, name: string): boolean {
  return /^[0-9@*]/.test(name) || state.assigned.has(name);
}
