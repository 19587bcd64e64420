// One agent connection to a Redis Connection. Commands are read whole, classified and decided
// one by one in arrival order (a hold stops reading until it ends, so a pipeline never runs
// past a held command); allowed ones go upstream as received, refused ones get a local error
// reply in their turn (reply-relay.ts keeps the order). MULTI … EXEC is queued here and
// decided whole at EXEC before any of it goes upstream. The agent's AUTH is answered here; the
// target only ever sees the held credential.
import type { Socket } from 'node:net';
import type { BundlePolicy } from '../../api/bundle.ts';
import type { EnforcerOptions } from '../core/enforcer.ts';
import { AirlockError, redisErrors } from '../core/errors.ts';
import { type ApprovalGate, type Passage, passageFields } from '../core/gate.ts';
import type { RequestFields, SessionRecorder } from '../core/recorder.ts';
import { type Decision, denialMessage } from '../policy/decide.ts';
import type { MaskingPlan } from '../policy/masking.ts';
import { analyzeRedis, type RedisCommand, refusedRedisCommand } from '../policy/redis.ts';
import { decideRedis } from '../policy/redis-decide.ts';
import { type KeyMaskRule, rulesForKey } from '../policy/redis-masking.ts';
import { commandText } from './command-text.ts';
import { type ClientCommand, CommandReader, encodeCommand, RespError } from './commands-reader.ts';
import { errorReply, T } from './replies.ts';
import { replyMasks } from './reply-masking.ts';
import { ReplyRelay, type Tracked } from './reply-relay.ts';
import { authCommand } from './upstream.ts';

export interface RedisLimits {
  /** The largest command read whole (its keys may follow any value). */
  maxCommandBytes: number;
  /** The largest reply read whole to be masked; a larger one is refused. */
  maxMaskedReplyBytes: number;
  /** The most commands one MULTI may queue. */
  maxTransactionCommands: number;
}

export interface SessionContext {
  options: EnforcerOptions;
  policies: BundlePolicy[];
  plan: MaskingPlan;
  keyRules: KeyMaskRule[];
  limits: RedisLimits;
  recorder: SessionRecorder;
  gate: ApprovalGate;
}

interface Queued {
  command: ClientCommand;
  argv: string[];
  analysis: RedisCommand;
  text: string;
}

const subscribeCommands = new Set([
  'SUBSCRIBE',
  'PSUBSCRIBE',
  'SSUBSCRIBE',
  'UNSUBSCRIBE',
  'PUNSUBSCRIBE',
  'SUNSUBSCRIBE',
]);
/** What cannot be queued in a transaction here: it changes the connection, not the data. */
const notInTransaction = new Set([
  'AUTH',
  'HELLO',
  'RESET',
  'MONITOR',
  'QUIT',
  'WATCH',
  ...subscribeCommands,
]);
const ok = Buffer.from('+OK\r\n');
const queued = Buffer.from('+QUEUED\r\n');

export class RedisSession {
  readonly #context: SessionContext;
  readonly #agent: Socket;
  readonly #upstream: Socket;
  readonly #reader: CommandReader;
  readonly #relay: ReplyRelay;
  #transaction: { commands: Queued[]; bytes: number; aborted?: string } | undefined;
  /** A hold or a full upstream buffer: no command is read meanwhile. */
  #holding = false;
  #upstreamFull = false;
  #closing = false;
  /** Aborted when the agent goes: a hold it waits on is withdrawn. */
  readonly #gone = new AbortController();
  #toUpstream: Buffer[] = [];

  constructor(context: SessionContext, agent: Socket, upstream: Socket) {
    this.#context = context;
    this.#agent = agent;
    this.#upstream = upstream;
    this.#reader = new CommandReader(context.limits.maxCommandBytes);
    this.#relay = new ReplyRelay(context, {
      end: () => {
        this.#flush();
        this.#agent.end();
        this.#upstream.destroy();
      },
      fail: () => {
        this.#flush();
        this.#agent.destroy();
        this.#upstream.destroy();
      },
    });
  }

  start(): void {
    this.#upstream.on('data', (chunk: Buffer) => {
      this.#relay.fromUpstream(chunk);
      this.#flush();
    });
    this.#upstream.on('drain', () => {
      this.#upstreamFull = false;
      this.#resume();
    });
    this.#agent.on('drain', () => this.#upstream.resume());
    this.#agent.once('close', () => this.#gone.abort());
    this.#agent.on('data', (chunk: Buffer) => {
      if (this.#closing) return;
      this.#context.recorder.bytesIn += chunk.length;
      this.#reader.push(chunk);
      this.#read();
    });
    this.#upstream.resume();
    this.#agent.resume();
  }

  /** Work in flight: a command read and not answered, or a hold. */
  busy(): boolean {
    return (
      this.#relay.pending > 0 || this.#holding || this.#reader.buffered > 0 || this.#transaction !== undefined
    );
  }

  // ---------------------------------------------------------------------------------------
  // Agent → target

  #read(): void {
    while (!this.#holding && !this.#upstreamFull && !this.#closing) {
      let command: ClientCommand | undefined;
      try {
        command = this.#reader.next();
      } catch (error) {
        if (!(error instanceof RespError)) throw error;
        this.#protocolError(error.message);
        break;
      }
      if (!command) break;
      const waiting = this.#handle(command);
      if (waiting) {
        this.#holding = true;
        this.#agent.pause();
        waiting.then(
          () => {
            this.#holding = false;
            this.#resume();
          },
          (error: unknown) => this.#agent.destroy(error instanceof Error ? error : new Error(String(error))),
        );
        break;
      }
    }
    this.#flush();
  }

  #resume(): void {
    if (this.#holding || this.#upstreamFull || this.#closing) return;
    this.#agent.resume();
    this.#read();
  }

  /** Decides one command; a promise while it is held for approval. */
  #handle(command: ClientCommand): Promise<void> | undefined {
    const argv = command.argv.map((arg) => arg.toString('utf8'));
    const name = argv[0]!.toUpperCase();
    if (this.#transaction) return this.#inTransaction(command, argv, name);
    switch (name) {
      case 'AUTH':
        // The agent's credential is not the target's: the session is already authenticated.
        this.#local(ok);
        this.#record({ text: 'AUTH', kind: 'redis', outcome: 'allowed', durationMs: 0 });
        return undefined;
      case 'MULTI':
        this.#transaction = { commands: [], bytes: 0 };
        this.#local(ok);
        return undefined;
      case 'EXEC':
      case 'DISCARD':
        this.#local(errorReply(`ERR ${name} without MULTI`));
        return undefined;
    }
    const refusal = refusedRedisCommand(argv);
    if (refusal) return this.#refuse(argv, refusal.code, refusal.message);
    const analysis = analyzeRedis(argv);
    const text = this.#text(argv, analysis);
    const decision = decideRedis(this.#context.policies, [analysis], this.#context.keyRules);
    return this.#pass(
      decision,
      text,
      (passage) => this.#forward(command, argv, name, analysis, text, decision, passage),
      argv,
    );
  }

  /** Through the gate: synchronously when allowed, so a pipeline of allowed commands never waits. */
  #pass(
    decision: Decision,
    text: string,
    go: (passage: Passage) => void,
    argv: readonly string[],
  ): Promise<void> | undefined {
    const started = Date.now();
    const refused = (passage: Extract<Passage, { go: false }>) => {
      const wire = redisErrors[passage.error.code];
      this.#local(errorReply(`${wire} ${passage.error.message}`));
      this.#record({
        text,
        kind: 'redis',
        durationMs: Date.now() - started,
        ...passageFields(decision, passage),
        error: passage.error.event(wire),
      });
    };
    if (decision.action === 'allow') {
      const unrecorded = this.#context.gate.unrecorded();
      if (unrecorded) refused({ go: false, outcome: 'error', error: unrecorded });
      else go({ go: true, outcome: 'allowed' });
      return undefined;
    }
    return this.#context.gate
      .pass({
        decision,
        text,
        what: `command ${(argv[0] ?? '').toUpperCase()}`,
        signal: this.#gone.signal,
      })
      .then((passage) => {
        if (passage.go) go(passage);
        else refused(passage);
      });
  }

  #forward(
    command: ClientCommand,
    argv: string[],
    name: string,
    analysis: RedisCommand,
    text: string,
    decision: Decision,
    passage: Passage,
  ): void {
    const tracked: Tracked = {
      text,
      started: Date.now(),
      fields: passageFields(decision, passage),
      masks: replyMasks(this.#context.keyRules, analysis, argv),
    };
    if (name === 'HELLO') {
      // The agent's HELLO … AUTH is not the target's credential: HELLO goes without it.
      const forwarded = [argv[0]!];
      for (let i = 1; i < argv.length; i++) {
        if (argv[i]!.toUpperCase() === 'AUTH') i += 2;
        else forwarded.push(argv[i]!);
      }
      const version = forwarded[1];
      this.#sendUpstream(encodeCommand(forwarded));
      tracked.onReply = (reply) => {
        if (reply.type !== T.error && version !== undefined) this.#relay.protocol = Number(version);
      };
      this.#relay.push({ kind: 'reply', tracked });
      return;
    }
    this.#sendUpstream(command.raw ?? encodeCommand(command.argv));
    if (subscribeCommands.has(name)) {
      // Their replies are pub/sub frames, in RESP2 and RESP3 alike: recorded as sent.
      this.#relay.push({ kind: 'subscribe' });
      this.#record({ text, kind: 'redis', durationMs: 0, ...tracked.fields });
      return;
    }
    if (name === 'RESET') {
      tracked.onReply = () => this.#relay.reset();
      this.#relay.push({ kind: 'reply', tracked });
      // RESET logs the connection in as the default user: the held credential goes again.
      const auth = authCommand(this.#context.options.connection);
      if (auth) {
        this.#sendUpstream(auth);
        this.#relay.push({ kind: 'hidden', what: 'AUTH after RESET' });
      }
      return;
    }
    this.#relay.push({ kind: 'reply', tracked });
  }

  #inTransaction(command: ClientCommand, argv: string[], name: string): Promise<void> | undefined {
    const transaction = this.#transaction!;
    if (name === 'DISCARD') {
      this.#transaction = undefined;
      this.#local(ok);
      return undefined;
    }
    if (name === 'MULTI') {
      this.#local(errorReply('ERR MULTI calls can not be nested'));
      return undefined;
    }
    if (name === 'EXEC') {
      this.#transaction = undefined;
      return this.#exec(transaction);
    }
    const abort = (message: string, wire = 'ERR') => {
      transaction.aborted ??= message;
      this.#local(errorReply(`${wire} ${message}`));
    };
    if (notInTransaction.has(name)) {
      abort(`airlock: ${name} inside MULTI is not supported`);
      return undefined;
    }
    transaction.bytes += command.size;
    if (
      transaction.commands.length >= this.#context.limits.maxTransactionCommands ||
      transaction.bytes > this.#context.limits.maxCommandBytes
    ) {
      abort('airlock: the transaction is larger than Airlock queues');
      return undefined;
    }
    const analysis = analyzeRedis(argv);
    const text = this.#text(argv, analysis);
    // A command denied on its own fails the transaction now, as Redis fails one it cannot queue.
    const decision = decideRedis(this.#context.policies, [analysis], this.#context.keyRules);
    if (decision.action === 'deny') {
      const error = new AirlockError('policy-denied', denialMessage(decision, `command ${name}`));
      abort(error.message, redisErrors[error.code]);
      this.#record({
        text,
        kind: 'redis',
        durationMs: 0,
        ...passageFields(decision, { go: false, outcome: 'blocked', error }),
        error: error.event(redisErrors[error.code]),
      });
      return undefined;
    }
    transaction.commands.push({ command, argv, analysis, text });
    this.#local(queued);
    return undefined;
  }

  /** The whole transaction through the gate, then MULTI, its commands and EXEC upstream. */
  #exec(transaction: { commands: Queued[]; aborted?: string }): Promise<void> | undefined {
    const texts = transaction.commands.map((c) => c.text);
    const text = ['MULTI', ...texts, 'EXEC'].join('; ');
    if (transaction.aborted !== undefined) {
      this.#local(
        errorReply(`EXECABORT Transaction discarded because of previous errors: ${transaction.aborted}`),
      );
      return undefined;
    }
    const analyses = transaction.commands.map((c) => c.analysis);
    const decision = decideRedis(this.#context.policies, analyses, this.#context.keyRules);
    return this.#pass(
      decision,
      text,
      (passage) => {
        this.#sendUpstream(encodeCommand(['MULTI']));
        this.#relay.push({ kind: 'hidden', what: 'MULTI' });
        for (const c of transaction.commands) {
          this.#sendUpstream(c.command.raw ?? encodeCommand(c.command.argv));
          this.#relay.push({ kind: 'hidden', what: 'QUEUED' });
        }
        this.#sendUpstream(encodeCommand(['EXEC']));
        this.#relay.push({
          kind: 'reply',
          tracked: {
            text,
            started: Date.now(),
            fields: passageFields(decision, passage),
            transaction: {
              masks: transaction.commands.map((c) => replyMasks(this.#context.keyRules, c.analysis, c.argv)),
              texts,
            },
          },
        });
      },
      ['EXEC'],
    );
  }

  /** The command as recorded and shown to approvers. */
  #text(argv: readonly string[], analysis: RedisCommand): string {
    const { keyRules, plan } = this.#context;
    const masked =
      keyRules.length > 0 && analysis.keys.some((key) => rulesForKey(keyRules, key.name).length > 0);
    if (!masked) return commandText(argv, plan);
    const keys = new Set(analysis.keys.map((key) => key.name));
    return commandText(argv, plan, { keys, subcommand: analysis.name.includes(' ') });
  }

  #refuse(argv: readonly string[], code: 'policy-denied' | 'unsupported', message: string): undefined {
    const error = new AirlockError(code, message);
    const wire = redisErrors[code];
    this.#local(errorReply(`${wire} ${message}`));
    this.#record({
      text: commandText(argv, this.#context.plan),
      kind: 'redis',
      outcome: 'blocked',
      reasons: [message],
      durationMs: 0,
      error: error.event(wire),
    });
    return undefined;
  }

  #protocolError(message: string): void {
    // Nothing after the malformed bytes is read or forwarded; what came before is answered.
    this.#closing = true;
    this.#agent.pause();
    this.#context.recorder.error('protocol-violation', `airlock: ${message}`);
    this.#relay.push({ kind: 'local', bytes: errorReply(`ERR Protocol error: ${message}`), end: true });
  }

  #sendUpstream(bytes: Buffer): void {
    this.#toUpstream.push(bytes);
  }

  #local(bytes: Buffer): void {
    this.#relay.push({ kind: 'local', bytes });
  }

  #flush(): void {
    if (this.#toUpstream.length > 0) {
      const bytes = this.#toUpstream.length === 1 ? this.#toUpstream[0]! : Buffer.concat(this.#toUpstream);
      this.#toUpstream = [];
      if (!this.#upstream.write(bytes)) {
        // The target is behind: stop reading the agent until it catches up.
        this.#upstreamFull = true;
        this.#agent.pause();
      }
    }
    const bytes = this.#relay.output();
    if (bytes) {
      this.#context.recorder.bytesOut += bytes.length;
      if (!this.#agent.write(bytes)) this.#upstream.pause();
    }
  }

  #record(fields: RequestFields): void {
    this.#context.recorder.request(fields);
  }
}
