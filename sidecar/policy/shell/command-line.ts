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
//
// This file is the entry. The walk: script.ts (statements, compound commands, arithmetic),
// words.ts (expansion), simple-commands.ts (argv and its dispatch). What programs run:
// runners.ts (sudo, env, xargs, ...), shells.ts, launchers.ts (find -exec, watch, ssh, ...),
// interpreters.ts. classes.ts gives a command's classes; spellings.ts is for rule matching.
import type { SshCommandClass } from '../../../api/names.ts';
import { script } from './script.ts';
import type { State } from './state.ts';

export interface CommandLine {
  /** Every command the line would run, in order, argv[0] reduced to its basename; runners and what they run. */
  commands: string[][];
  /** The command classes of those commands (file-deletion, interpreter, privilege, network). */
  classes: SshCommandClass[];
  /** Why the line cannot be verified statically; empty when it can. */
  unverifiable: string[];
}

/** Linux passes at most 128 KiB in one argument, and sshd runs the line as `$SHELL -c line`. */
const maxCommandLength = 128 * 1024;

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
