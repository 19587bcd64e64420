// Entry point of the airlock CLI: a table of subcommands, each loaded only when it runs.
import { readFileSync } from 'node:fs';

export interface Command {
  summary: string;
  usage: string;
  /** Runs the command; absent while the command is planned but not yet built. */
  run?: (args: string[]) => Promise<number>;
}

const packageJson = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

export const commands: Record<string, Command> = {
  version: {
    summary: 'Print the version of airlock',
    usage: 'airlock version',
    run: async () => {
      console.log(`airlock ${packageJson.version} (node ${process.versions.node})`);
      return 0;
    },
  },
  operator: {
    summary: 'Run the operator: controllers, injector, control API, collector',
    usage: 'airlock operator [--kubeconfig PATH] [--namespace NS] [--certificates operator|cert-manager] ...',
    run: async (args) => (await import('../operator/command.ts')).runOperator(args),
  },
  sidecar: {
    summary: 'Run the enforcing sidecar in an agent pod',
    usage:
      'airlock sidecar --control-api URL --token-file PATH --ca-file PATH --listen CONNECTION=HOST:PORT[/PROTOCOL]...',
    run: async (args) => (await import('../sidecar/command.ts')).runSidecar(args),
  },
  init: {
    summary: 'Install the traffic capture of an agent pod (init container)',
    usage:
      'airlock init --sidecar-uid UID --virtual-cidr CIDR [--egress strict|permissive] [--virtual NAME=VIP:PORT]...',
    run: async (args) => (await import('../sidecar/capture/command.ts')).runInit(args),
  },
  local: {
    summary: 'Serve the whole data path on one machine from manifests',
    usage:
      'airlock local -f DIR --as system:serviceaccount:NS:NAME --listen CONNECTION=HOST:PORT [--store DIR|URL]',
    run: async (args) => (await import('../local/local.ts')).runLocal(args),
  },
  sessions: {
    summary: 'List, show and replay recorded sessions',
    usage:
      'airlock sessions list [--limit N] | show|replay ID [-o json] [--speed N] [--asciicast FILE] [--store DIR|URL | -n NS|-A [--kubeconfig PATH]]',
    run: async (args) => (await import('../local/commands.ts')).sessionsCommand(args),
  },
  approvals: {
    summary: 'List requests waiting for approval',
    usage: 'airlock approvals list [-o json] [--store DIR|URL]',
    run: async (args) => (await import('../local/commands.ts')).approvalsCommand(args),
  },
  approve: {
    summary: 'Approve a held request',
    usage: 'airlock approve ID [--store DIR|URL]',
    run: async (args) => (await import('../local/commands.ts')).decideCommand('approve')(args),
  },
  deny: {
    summary: 'Deny a held request',
    usage: 'airlock deny ID [--reason TEXT] [--store DIR|URL]',
    run: async (args) => (await import('../local/commands.ts')).decideCommand('deny')(args),
  },
  policy: {
    summary: 'Check, lint, test and replay AccessPolicies before they govern anyone',
    usage: `airlock policy check -f PATH... --as system:serviceaccount:NS:NAME [--user U [--group G]...] --connection NAME
                     (--sql TEXT | --command TEXT | --http 'METHOD PATH' | --redis 'COMMAND ARGS...'
                      | --kubernetes 'METHOD PATH' | --mcp 'tools/call NAME [JSON]') [-o json]
         The decision, the policy and rule that decided and why, and what would be masked.
         Exit status 0 allowed, 3 denied, 4 held for approval, 2 bad input.
       airlock policy lint -f PATH... [--strict] [--audit-max-age 30d] [-o json]
         Rules that can never match or never decide, patterns that match the empty string,
         approvals without approvers, audit mode left on. --strict: exit status 1 on any warning.
       airlock policy test PATH... [-f MANIFESTS...] [-o json]
         Runs the cases of every *.test.yaml under PATH against the manifests directly in PATH
         (or those given with -f). Exit status 1 when a case fails.
       airlock policy replay -f PATH... (--store DIR|postgres://... | --cluster [-n NS|-A] [--kubeconfig PATH])
                      [--since 7d] [--connection NAME] [-o json]
         Decides every recorded request of the period again under the policies in PATH and
         prints what would change, counted per rule, with examples as recorded.`,
    run: async (args) => (await import('../policy/command.ts')).policyCommand(args),
  },
  audit: {
    summary: 'Verify the audit trail, prune it by age, migrate a store of an earlier release',
    usage: 'airlock audit verify|prune|migrate --store DIR|URL [--key FILE] [--retention 30d] [-o json]',
    run: async (args) => (await import('../audit/command.ts')).auditCommand(args),
  },
};

function help(): string {
  const width = Math.max(...Object.keys(commands).map((name) => name.length));
  const lines = Object.entries(commands).map(
    ([name, command]) => `  ${name.padEnd(width)}  ${command.summary}${command.run ? '' : ' (planned)'}`,
  );
  return [
    'airlock: govern what automation and AI agents do with production data.',
    '',
    'Usage: airlock COMMAND [options]',
    '',
    'Commands:',
    ...lines,
    '',
    'Run `airlock COMMAND --help` for the options of a command.',
  ].join('\n');
}

export async function main(args: string[]): Promise<number> {
  const [name, ...rest] = args;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    console.log(help());
    return name === undefined ? 2 : 0;
  }
  if (name === '--version') return main(['version']);
  const command = commands[name];
  if (!command) {
    console.error(`airlock: unknown command "${name}"\n\n${help()}`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(`Usage: ${command.usage}\n\n${command.summary}.`);
    return 0;
  }
  if (!command.run) {
    console.error(`airlock: "${name}" is planned and not available in this version`);
    return 2;
  }
  return command.run(rest);
}
