// The SSH enforcer. Toward the agent it is an SSH server (identity is the pod's, so any client
// key, or none, is accepted); toward the target it is an SSH client that authenticates with the
// held key and accepts only host keys listed in the Connection's ssh.knownHosts. Each exec
// request is parsed into the commands it would run and decided before anything runs; shells and
// subsystems are decided as interactive sessions; forwarding of ports and agents is refused.
// Output is masked by the policies' detectors, and every session is recorded: exec requests as
// request events, shells as asciicast v2 data events. While the audit trail cannot record
// (the spool is full under fail-closed), every exec, shell and subsystem request is refused as
// a denial is, and a connection made meanwhile neither starts its session nor reaches the target.
import { connect } from 'node:net';
import { finished } from 'node:stream/promises';
import ssh2, {
  type AuthContext,
  type Client,
  type ClientChannel,
  type PseudoTtyInfo,
  type ServerChannel,
  type Connection as ServerConnection,
  type Session,
} from 'ssh2';
import { type BundlePolicy, endUserOf } from '../../api/bundle.ts';
import type { Enforcer, EnforcerOptions } from '../core/enforcer.ts';
import { AirlockError, sshExitStatuses } from '../core/errors.ts';
import { ApprovalGate, passageFields } from '../core/gate.ts';
import { listen, listenerEnforcer } from '../core/listen.ts';
import { maskingFields, type RequestFields, SessionRecorder } from '../core/recorder.ts';
import { MaskingTransform, StreamMasker, valueShape } from '../core/stream-masker.ts';
import { actingFor, PolicyVariants } from '../identity/session.ts';
import { EndUserRefusal, EndUserVerifier } from '../identity/verifier.ts';
import { type Decision, decideSsh, decideSshExec, refuseUnderCommandRules } from '../policy/decide.ts';
import { compileMasking, type MaskingPlan } from '../policy/masking.ts';
import { parseCommandLine } from '../policy/shell/command-line.ts';
import { ciphers, macs } from './algorithms.ts';
import { fingerprint, isKnownHostKey, type KnownHosts, keyType, parseKnownHosts } from './known-hosts.ts';

// ssh2 is CommonJS: its classes come from the default export.
const { Client: SshClient, Server, utils } = ssh2;

export interface SshEnforcerOptions extends EnforcerOptions {
  /** The host key the enforcer presents to the agent (PEM or OpenSSH); one is generated when omitted. */
  hostKey?: string;
  /** How long to wait for the target's SSH handshake. */
  connectTimeoutMs?: number;
}

/** On a Connection with endUser: the token's verifier, and the masking plan of each set of policies. */
interface EndUserAuthentication {
  verifier: EndUserVerifier;
  plans: PolicyVariants<MaskingPlan>;
}

/** The keyboard-interactive prompt for the end user's token: it names Airlock, so a person can tell. */
export const endUserPrompt = 'Airlock: the OIDC token of the person this agent acts for: ';

/** Exit status when the target cannot be reached (as ssh itself uses). */
const unreachableExitStatus = sshExitStatuses['upstream-unreachable'];

export class UpstreamError extends Error {
  readonly code: 'host-key-rejected' | 'connect-failed';
  constructor(code: UpstreamError['code'], message: string) {
    super(message);
    this.code = code;
  }
}

/**
 * An ed25519 key pair in OpenSSH format. ssh2's generator now and then (about 2 in 1,000)
 * writes a private key its own parser rejects as malformed, so each key is parsed before use.
 */
export function generateHostKey(): { private: string; public: string } {
  for (let attempt = 0; attempt < 16; attempt++) {
    const pair = utils.generateKeyPairSync('ed25519');
    if (!(utils.parseKey(pair.private) instanceof Error)) return pair;
  }
  throw new Error('could not generate a host key that parses');
}

export async function serveSsh(options: SshEnforcerOptions): Promise<Enforcer> {
  const { connection } = options;
  if (connection.protocol !== 'ssh')
    throw new Error(`Connection ${connection.name} is not an ssh Connection`);
  const knownHosts = parseKnownHosts(connection.ssh?.knownHosts ?? []);
  const hostKey = options.hostKey ?? generateHostKey().private;
  const plan = compileMasking(connection.policies);
  const endUser = connection.endUser && {
    verifier: new EndUserVerifier(connection.endUser, options.lookup),
    plans: new PolicyVariants((policies) => compileMasking(policies)),
  };
  const clients = new Set<ServerConnection>();
  const algorithms = { cipher: ciphers, hmac: macs };
  const server = new Server({ hostKeys: [hostKey], ident: 'Airlock', algorithms }, (client, info) => {
    clients.add(client);
    client.on('close', () => clients.delete(client));
    new AgentSession(options, knownHosts, plan, client, info.ip, endUser).run();
  });
  const address = await listen(server, options.listen);
  // A shell's idleness is not visible from here: a drain waits for the clients to leave.
  return listenerEnforcer(server, address, clients, () => {
    for (const client of clients) client.end();
  });
}

/** One agent connection: its upstream connection, its channels and its recording. */
class AgentSession {
  private readonly options: SshEnforcerOptions;
  private readonly knownHosts: KnownHosts;
  private plan: MaskingPlan;
  private readonly endUser: EndUserAuthentication | undefined;
  /** The policies of the session: the end user's, once verified. */
  private policies: BundlePolicy[];
  /** Set once an end-user token was refused: the connection gets no other try. */
  private refused = false;
  private readonly client: ServerConnection;
  private readonly address: string;
  private readonly recorder: SessionRecorder;
  private upstream: Promise<Client> | undefined;
  private upstreamClient: Client | undefined;
  /** The agent's user name, once authenticated. */
  private user: string | undefined;
  /** Whether the session is recorded and its upstream connection made (see admit()). */
  private started = false;
  /** policy/rule pairs approved for the rest of the session (approval scope session). */
  private readonly gateway: ApprovalGate;
  private readonly closed = new AbortController();

  constructor(
    options: SshEnforcerOptions,
    knownHosts: KnownHosts,
    plan: MaskingPlan,
    client: ServerConnection,
    address: string,
    endUser?: EndUserAuthentication,
  ) {
    this.options = options;
    this.knownHosts = knownHosts;
    this.plan = plan;
    this.endUser = endUser;
    this.policies = options.connection.policies;
    this.client = client;
    this.address = address;
    this.recorder = new SessionRecorder(options.connection, options.identity, options.events);
    this.gateway = new ApprovalGate({
      sessionId: this.recorder.id,
      connection: options.connection.name,
      approvals: options.approvals,
      unrecorded: () => options.events.refusal?.(),
      endUser: () => endUserOf(this.recorder.identity),
    });
  }

  run(): void {
    const client = this.client;
    client.on('authentication', (ctx: AuthContext) => {
      this.user = ctx.username;
      if (this.endUser) {
        this.authenticateEndUser(ctx, this.endUser);
        return;
      }
      // The pod's identity is what counts; the agent's key (or none) is not a credential here.
      if (['none', 'publickey', 'password', 'keyboard-interactive'].includes(ctx.method)) ctx.accept();
      else ctx.reject(['none', 'publickey']);
    });
    client.on('ready', () => this.admit());
    client.on('session', (accept) => this.session(accept()));
    client.on('tcpip', (_accept, reject, info) => {
      this.refuse('direct-tcpip', `port forwarding to ${info.destIP}:${info.destPort}`);
      reject();
    });
    client.on('openssh.streamlocal', (_accept, reject, info) => {
      this.refuse('direct-streamlocal', `forwarding to socket ${info.socketPath}`);
      reject();
    });
    client.on('request', (_accept, reject, name, info) => {
      const where =
        'bindPort' in info
          ? `${info.bindAddr}:${info.bindPort}`
          : (info as { socketPath: string }).socketPath;
      this.refuse(name, `remote forwarding (${name} ${where})`);
      reject?.();
    });
    client.on('error', (error) => {
      if (this.started) this.recorder.error('agent-connection', error.message);
    });
    client.on('close', () => {
      this.closed.abort();
      this.upstreamClient?.end();
      if (this.started) this.recorder.end('closed');
    });
  }

  /**
   * Fails closed on the audit trail: returns the refusal while the event sink cannot record
   * the session's work. Otherwise starts the session (recording, upstream connection) if it
   * has not started yet, and returns undefined. Asked at connect and for every request, so a
   * session opened while the trail was full starts once it has room again.
   */
  private admit(): string | undefined {
    const unrecorded = this.options.events.refusal?.();
    if (unrecorded || this.started) return unrecorded;
    this.started = true;
    this.recorder.start({ address: this.address, ...(this.user !== undefined && { user: this.user }) });
    this.upstream = this.connectUpstream();
    // Failure is reported per channel, with a message the agent sees.
    this.upstream.catch((error: Error) => {
      this.recorder.error(error instanceof UpstreamError ? error.code : 'connect-failed', error.message);
    });
    return undefined;
  }

  /**
   * On a Connection with endUser, the agent proves whom it acts for with the person's token:
   * the password of password authentication, or the answer to Airlock's one keyboard-interactive
   * prompt. A key is not asked for (the pod's identity is the workload's); without a token the
   * session is served only when the Connection does not require one. One refused token ends
   * the connection.
   */
  private authenticateEndUser(ctx: AuthContext, endUser: EndUserAuthentication): void {
    if (this.refused) {
      ctx.reject([]);
      return;
    }
    const verify = (token: string | undefined) => {
      actingFor(this.options.connection, this.options.identity, endUser.verifier, token).then(
        (acting) => {
          this.policies = acting.policies;
          this.plan = endUser.plans.for(acting.policies);
          this.recorder.identity = acting.identity;
          ctx.accept();
        },
        (error: unknown) => {
          this.refused = true;
          this.refuseAuthentication(
            error instanceof AirlockError
              ? error
              : new EndUserRefusal(`the end-user token could not be verified: ${String(error)}`),
          );
          ctx.reject([]);
          this.client.end();
        },
      );
    };
    if (ctx.method === 'password') verify(ctx.password);
    else if (ctx.method === 'keyboard-interactive')
      ctx.prompt(
        [{ prompt: endUserPrompt, echo: false }],
        'Airlock',
        `Connection ${this.options.connection.name} acts for a person: give their OIDC token.`,
        (answers) => verify(answers[0]),
      );
    else if (ctx.method === 'none' && !this.options.connection.endUser?.required) verify(undefined);
    else ctx.reject(['password', 'keyboard-interactive']);
  }

  /** A refused end-user token, recorded as a session that did not start work. */
  private refuseAuthentication(error: AirlockError): void {
    if (this.options.events.refusal?.()) return;
    this.started = true;
    this.recorder.start({ address: this.address, ...(this.user !== undefined && { user: this.user }) });
    this.recorder.request({
      text: 'end-user authentication',
      kind: 'authentication',
      outcome: 'denied',
      reasons: [error.message],
      durationMs: 0,
      error: error.event(sshExitStatuses[error.code]),
    });
  }

  /** What is recorded of agent-typed text: never a value the policies mask. */
  private redact(text: string): string {
    return this.plan.hasScanners ? this.plan.maskText(text).value : text;
  }

  private refuse(kind: string, what: string): void {
    // Recorded in a started session; a session not started (the audit trail was full) may start now.
    this.admit();
    if (!this.started) return;
    this.recorder.request({
      text: what,
      kind,
      outcome: 'blocked',
      reasons: [`${what} is not allowed through Airlock`],
      durationMs: 0,
    });
  }

  private connectUpstream(): Promise<Client> {
    const { connection } = this.options;
    return new Promise<Client>((resolve, reject) => {
      const upstream = new SshClient();
      this.upstreamClient = upstream;
      let rejectedKey: Buffer | undefined;
      if (this.knownHosts.keys.length === 0) {
        reject(
          new UpstreamError(
            'host-key-rejected',
            `Connection ${connection.name} lists no usable host key in ssh.knownHosts`,
          ),
        );
        return;
      }
      let ready = false;
      upstream.once('ready', () => {
        ready = true;
        resolve(upstream);
      });
      upstream.once('error', (error) => {
        if (rejectedKey) {
          reject(
            new UpstreamError(
              'host-key-rejected',
              `host key verification failed: ${connection.host}:${connection.port} presented ${keyType(rejectedKey)} ${fingerprint(rejectedKey)}, which is not in Connection ${connection.name}'s ssh.knownHosts`,
            ),
          );
        } else {
          reject(
            new UpstreamError(
              'connect-failed',
              `cannot reach ${connection.host}:${connection.port}: ${error.message}`,
            ),
          );
        }
      });
      // The target hanging up ends the agent's connection; a failed connect is reported per channel instead.
      upstream.on('close', () => {
        if (ready && !this.closed.signal.aborted) this.client.end();
      });
      const { lookup } = this.options;
      upstream.connect({
        host: connection.host,
        port: connection.port,
        // ssh2 dials with the system's resolver; a socket of our own resolves as the sidecar must.
        ...(lookup && { sock: connect({ host: connection.host, port: connection.port, lookup }) }),
        username: connection.credentials.username ?? '',
        privateKey: connection.credentials.privateKey ?? '',
        readyTimeout: this.options.connectTimeoutMs ?? 20_000,
        algorithms: { serverHostKey: this.knownHosts.algorithms as never, cipher: ciphers, hmac: macs },
        hostVerifier: (key: Buffer) => {
          if (isKnownHostKey(this.knownHosts, key)) return true;
          rejectedKey = Buffer.from(key);
          return false;
        },
      });
    });
  }

  private session(session: Session): void {
    let pty: PseudoTtyInfo | undefined;
    let active: ClientChannel | undefined;
    session.on('pty', (accept, _reject, info) => {
      pty = info;
      accept?.();
    });
    session.on('window-change', (accept, _reject, info) => {
      active?.setWindow(info.rows, info.cols, info.height, info.width);
      accept?.();
    });
    // Environment variables could change what the remote shell runs (BASH_ENV, LD_PRELOAD).
    session.on('env', (_accept, reject) => reject?.());
    session.on('auth-agent', (_accept, reject) => {
      this.refuse('auth-agent', 'agent forwarding');
      reject?.();
    });
    session.on('x11', (_accept, reject) => {
      this.refuse('x11', 'X11 forwarding');
      reject?.();
    });
    session.on('signal', (accept, _reject, info) => {
      active?.signal(info.name);
      accept?.();
    });
    session.on('exec', (accept, _reject, info) => {
      const channel = accept();
      void this.exec(channel, info.command, pty, (c) => {
        active = c;
      });
    });
    session.on('shell', (accept) => {
      const channel = accept();
      void this.interactive(channel, { kind: 'shell', pty }, (c) => {
        active = c;
      });
    });
    session.on('subsystem', (accept, _reject, info) => {
      const channel = accept();
      void this.interactive(channel, { kind: 'subsystem', name: info.name }, (c) => {
        active = c;
      });
    });
  }

  /** Decides an exec request's command line. */
  decideExec(command: string): Decision {
    const parsed = parseCommandLine(command);
    return decideSshExec(this.policies, parsed.commands, parsed.unverifiable, parsed.classes);
  }

  /** Decides a shell or subsystem. */
  decideInteractive(what: string, argv: string[][]): Decision {
    const decision = decideSsh(this.policies, argv, { interactive: true });
    let result = refuseUnderCommandRules(
      this.policies,
      decision,
      `an ${what} cannot be checked against command rules, so it is refused where the policy has them`,
    );
    if (what !== 'interactive shell' && result.action === 'allow' && this.plan.hasScanners) {
      // A subsystem (sftp) moves file contents in a binary protocol that detectors cannot read.
      const masking = this.policies.find(
        (p) => p.mode === 'enforce' && p.masking.some((m) => m.detectors || m.patterns),
      );
      if (masking) {
        result = {
          action: 'deny',
          policy: masking.name,
          message: `the ${what} carries file contents that Airlock cannot mask`,
          reasons: [`AccessPolicy "${masking.name}" masks output, and the ${what} cannot be masked`],
          wouldHave: result.wouldHave,
        };
      }
    }
    return result;
  }

  /**
   * Applies a decision: returns how it went, after holding for approval when needed. A refusal
   * has already been written to the channel's stderr, with the exit status of its code.
   */
  private async gate(
    channel: ServerChannel,
    decision: Decision,
    text: string,
    what: string,
  ): Promise<{ go: boolean; fields: Partial<RequestFields> }> {
    // Fail closed when the audit trail cannot record what would run.
    const unrecorded = this.admit();
    const closed = new AbortController();
    channel.once('close', () => closed.abort());
    const passage = unrecorded
      ? ({ go: false, outcome: 'error', error: new AirlockError('audit-unavailable', unrecorded) } as const)
      : await this.gateway.pass({
          decision,
          text: this.redact(text),
          what,
          signal: AbortSignal.any([closed.signal, this.closed.signal]),
          onHold: (message) => channel.stderr.write(`${message}\r\n`),
        });
    const fields = passageFields(decision, passage);
    if (passage.go) return { go: true, fields };
    const status = sshExitStatuses[passage.error.code];
    channel.stderr.write(`${passage.error.message}\r\n`);
    this.finish(channel, status);
    return { go: false, fields: { ...fields, error: passage.error.event(status) } };
  }

  private finish(channel: ServerChannel, status: number | string): void {
    try {
      if (typeof status === 'number') channel.exit(status);
      else channel.exit(status, false, '');
    } catch {
      // The agent may already have closed the channel.
    }
    channel.end();
  }

  private async target(channel: ServerChannel): Promise<Client | undefined> {
    try {
      if (!this.upstream) throw new UpstreamError('connect-failed', 'no upstream connection');
      return await this.upstream;
    } catch (error) {
      channel.stderr.write(`airlock: ${(error as Error).message}\r\n`);
      this.finish(channel, unreachableExitStatus);
      return undefined;
    }
  }

  /**
   * Passes a request through the gate and gets the target: the target's connection and a
   * recorder of the request's event, or undefined when it was refused or the target is
   * unreachable (the agent has been told, and the event recorded).
   */
  private async open(
    channel: ServerChannel,
    decision: Decision,
    text: string,
    what: string,
    kind: string,
  ): Promise<
    | {
        upstream: Client;
        record: (extra: Partial<RequestFields>) => void;
        gate: { go: boolean; fields: Partial<RequestFields> };
      }
    | undefined
  > {
    const started = Date.now();
    const gate = await this.gate(channel, decision, text, what);
    const record = (extra: Partial<RequestFields>) =>
      this.recorder.request({
        text: this.redact(text),
        kind,
        outcome: 'allowed',
        ...gate.fields,
        ...extra,
        durationMs: Date.now() - started,
      });
    if (!gate.go) {
      // A session refused before it started has nothing recorded to add this to.
      if (this.started) record({});
      return undefined;
    }
    const upstream = await this.target(channel);
    if (!upstream) {
      record({
        outcome: 'error',
        error: new AirlockError('upstream-unreachable', 'target unreachable').event(unreachableExitStatus),
      });
      return undefined;
    }
    return { upstream, record, gate };
  }

  private async exec(
    channel: ServerChannel,
    command: string,
    pty: PseudoTtyInfo | undefined,
    setActive: (c: ClientChannel) => void,
  ): Promise<void> {
    const opened = await this.open(channel, this.decideExec(command), command, 'command', 'exec');
    if (!opened) return;
    const { upstream, record, gate } = opened;
    upstream.exec(command, pty ? { pty: ptyOptions(pty) } : {}, (error, stream) => {
      if (error) {
        channel.stderr.write(`airlock: the target refused the command: ${error.message}\r\n`);
        this.finish(channel, unreachableExitStatus);
        record({
          outcome: 'error',
          error: new AirlockError('target-error', error.message).event(unreachableExitStatus),
        });
        return;
      }
      setActive(stream);
      void this.relay(channel, stream, false).then(({ status, masked, wouldMask }) => {
        const counted = maskingFields(this.policies, masked, wouldMask, gate.fields.wouldHave);
        record({
          ...counted,
          ...(counted.masked && { outcome: gate.fields.outcome === 'approved' ? 'approved' : 'masked' }),
          ...(status !== undefined && { exitStatus: status }),
        });
      });
    });
  }

  private async interactive(
    channel: ServerChannel,
    request: { kind: 'shell'; pty: PseudoTtyInfo | undefined } | { kind: 'subsystem'; name: string },
    setActive: (c: ClientChannel) => void,
  ): Promise<void> {
    const what = request.kind === 'shell' ? 'interactive shell' : `${request.name} subsystem`;
    const text = request.kind === 'shell' ? 'shell' : `subsystem ${request.name}`;
    const decision = this.decideInteractive(what, request.kind === 'shell' ? [] : [[request.name]]);
    const ready = await this.open(channel, decision, text, what, request.kind);
    if (!ready) return;
    const { upstream, record } = ready;
    const opened = (error: Error | undefined, stream: ClientChannel) => {
      if (error) {
        channel.stderr.write(`airlock: the target refused the ${what}: ${error.message}\r\n`);
        this.finish(channel, unreachableExitStatus);
        record({
          outcome: 'error',
          error: new AirlockError('target-error', error.message).event(unreachableExitStatus),
        });
        return;
      }
      setActive(stream);
      // The decision is recorded when the shell opens; its terminal data follows as data events.
      record({});
      void this.relay(channel, stream, request.kind === 'shell');
    };
    if (request.kind === 'shell') {
      if (request.pty) upstream.shell(ptyOptions(request.pty), opened);
      else upstream.shell(false, opened);
    } else {
      upstream.subsys(request.name, opened);
    }
  }

  /**
   * Relays one channel both ways until the target closes it; masks output when the policies
   * scan free text (a subsystem never reaches here when they do); records terminal data for
   * shells. Resolves with the exit status and masked counts.
   */
  private async relay(
    channel: ServerChannel,
    stream: ClientChannel,
    terminal: boolean,
  ): Promise<{
    status: number | string | undefined;
    masked: Record<string, number>;
    wouldMask: Record<string, number>;
  }> {
    let status: number | string | undefined;
    stream.on('exit', (code: number | null, signal?: string) => {
      status = code ?? signal ?? undefined;
    });
    channel.on('data', (data: Buffer) => {
      this.recorder.bytesIn += data.length;
      if (terminal) this.recorder.data('input', this.redact(data.toString('utf8')));
    });
    channel.pipe(stream);
    channel.on('close', () => stream.close());
    const outputs: MaskingTransform[] = [];
    const outputDone: Promise<unknown>[] = [];
    const wire = (source: NodeJS.ReadableStream, sink: NodeJS.WritableStream) => {
      const count = (n: number) => {
        this.recorder.bytesOut += n;
      };
      if (this.plan.hasScanners) {
        const masker = new StreamMasker((text) => this.plan.maskText(text), valueShape(this.policies));
        const transform = new MaskingTransform(masker, {
          observe: (text, bytes) => {
            count(bytes);
            if (terminal) this.recorder.data('output', text);
          },
        });
        outputs.push(transform);
        source.pipe(transform).pipe(sink, { end: false });
        outputDone.push(finished(transform).catch(() => undefined));
      } else {
        source.on('data', (data: Buffer) => {
          count(data.length);
          if (terminal) this.recorder.data('output', data.toString('utf8'));
        });
        source.pipe(sink, { end: false });
        outputDone.push(finished(source as never).catch(() => undefined));
      }
    };
    wire(stream, channel);
    wire(stream.stderr, channel.stderr);
    await new Promise<void>((resolve) => stream.once('close', () => resolve()));
    await Promise.race([Promise.all(outputDone), new Promise((r) => setTimeout(r, 2000).unref())]);
    this.finish(channel, status ?? 0);
    const masked: Record<string, number> = {};
    const wouldMask: Record<string, number> = {};
    for (const t of outputs) {
      for (const [k, n] of Object.entries(t.masker.counts)) masked[k] = (masked[k] ?? 0) + n;
      for (const [k, n] of Object.entries(t.masker.wouldMask)) wouldMask[k] = (wouldMask[k] ?? 0) + n;
    }
    return { status, masked, wouldMask };
  }
}

function ptyOptions(pty: PseudoTtyInfo) {
  return {
    term: pty.term || 'xterm',
    rows: pty.rows,
    cols: pty.cols,
    height: pty.height,
    width: pty.width,
    modes: pty.modes,
  };
}
