// The replies of one Redis session, in the order the agent sent its commands. A queue holds,
// per command, what its reply is: the target's, forwarded and masked; the target's to a command
// the agent did not send (MULTI, QUEUED, the AUTH after RESET), swallowed; or one written here
// (a refusal, the answer to AUTH), in its turn. Pub/sub frames (RESP3 pushes, and RESP2
// messages while subscribed) belong to no command and pass out of band. A reply with nothing to
// mask streams through whatever its size; one to mask is read whole, up to a bound.
import { AirlockError } from '../core/errors.ts';
import { maskingFields, type RequestFields } from '../core/recorder.ts';
import { RespError } from './commands-reader.ts';
import { decodeReply, encodeReply, errorReply, type Reply, ReplyScanner, T } from './replies.ts';
import { type MaskCounts, maskReply, type ValueMask } from './reply-masking.ts';
import type { SessionContext } from './session.ts';

/** What a recorded command is waiting for. */
export interface Tracked {
  text: string;
  started: number;
  fields: Pick<RequestFields, 'outcome' | 'policy' | 'rule' | 'reasons' | 'wouldHave' | 'approval'>;
  masks?: ValueMask | undefined;
  /** EXEC: the masks of each queued command's reply, and their texts for the events. */
  transaction?: { masks: (ValueMask | undefined)[]; texts: string[] };
  onReply?: (reply: Reply) => void;
}

export type Entry =
  /** A reply written here, in its turn; `end` closes the session after it. */
  | { kind: 'local'; bytes: Buffer; end?: boolean }
  /** The target's reply, forwarded. */
  | { kind: 'reply'; tracked: Tracked }
  /** The target's reply to a command the agent did not send: swallowed. */
  | { kind: 'hidden'; what: string }
  /** A (un)subscribe command reached its turn: from here RESP2 pub/sub frames come out of band. */
  | { kind: 'subscribe' };

/** How the relay ends its session: after what is owed (end), or at once (fail). */
export interface SessionEnds {
  end(): void;
  fail(): void;
}

type FrameMode = 'pass' | 'buffer' | 'overflow';

const pubsubKinds = new Set([
  'message',
  'pmessage',
  'smessage',
  'subscribe',
  'psubscribe',
  'ssubscribe',
  'unsubscribe',
  'punsubscribe',
  'sunsubscribe',
]);

export class ReplyRelay {
  readonly #context: SessionContext;
  readonly #ends: SessionEnds;
  readonly #scanner = new ReplyScanner();
  readonly #queue: Entry[] = [];
  #subscribed = false;
  #toAgent: Buffer[] = [];
  /** The reply being read. */
  #frame: { mode: FrameMode; parts: Buffer[]; size: number; oob: boolean; type: number } | undefined;
  /** The RESP version the agent and the target speak (HELLO changes it, RESET restores 2). */
  protocol = 2;

  constructor(context: SessionContext, ends: SessionEnds) {
    this.#context = context;
    this.#ends = ends;
  }

  /** Replies still owed to the agent. */
  get pending(): number {
    return this.#queue.length;
  }

  /** A command's place in the reply order. */
  push(entry: Entry): void {
    this.#queue.push(entry);
    if (entry.kind === 'local' || entry.kind === 'subscribe') this.#advance();
  }

  /** RESET: RESP2, no subscriptions. */
  reset(): void {
    this.protocol = 2;
    this.#subscribed = false;
  }

  /** The bytes owed to the agent so far, taken once. */
  output(): Buffer | undefined {
    if (this.#toAgent.length === 0) return undefined;
    const bytes = this.#toAgent.length === 1 ? this.#toAgent[0]! : Buffer.concat(this.#toAgent);
    this.#toAgent = [];
    return bytes;
  }

  /** Reads the target's bytes: replies in their turn, pub/sub frames as they come. */
  fromUpstream(chunk: Buffer): void {
    let at = 0;
    try {
      while (at < chunk.length) {
        if (!this.#scanner.inFrame) this.#begin(chunk[at]!);
        const end = this.#scanner.scan(chunk, at);
        this.#take(chunk.subarray(at, end < 0 ? chunk.length : end));
        if (end < 0) break;
        this.#end();
        at = end;
      }
    } catch (error) {
      if (!(error instanceof RespError)) throw error;
      this.#context.recorder.error(
        'target-error',
        `airlock: the target sent malformed RESP: ${error.message}`,
      );
      this.#ends.fail();
    }
  }

  /** A reply starts: is it streamed through, or read whole to be masked? */
  #begin(type: number): void {
    this.#advance();
    const head = this.#queue[0];
    const oob = type === T.push;
    let buffer: boolean;
    if (oob || this.#subscribed || head === undefined) buffer = oob ? this.#context.plan.hasScanners : true;
    else if (head.kind === 'hidden') buffer = true;
    else if (head.kind === 'reply') {
      const t = head.tracked;
      buffer =
        this.#context.plan.hasScanners ||
        t.masks !== undefined ||
        t.transaction !== undefined ||
        t.onReply !== undefined ||
        type === T.error ||
        type === T.blobError;
    } else buffer = true;
    this.#frame = { mode: buffer ? 'buffer' : 'pass', parts: [], size: 0, oob, type };
  }

  #take(bytes: Buffer): void {
    const frame = this.#frame!;
    if (frame.mode === 'pass') {
      this.#toAgent.push(bytes);
      return;
    }
    if (frame.mode === 'overflow') return;
    frame.size += bytes.length;
    if (frame.size > this.#context.limits.maxMaskedReplyBytes) {
      frame.mode = 'overflow';
      frame.parts = [];
      return;
    }
    frame.parts.push(bytes);
  }

  #end(): void {
    const frame = this.#frame!;
    this.#frame = undefined;
    const bytes = frame.mode === 'buffer' ? Buffer.concat(frame.parts) : undefined;
    const reply = bytes ? decodeReply(bytes).reply : undefined;
    // Pub/sub frames belong to no command: out of band, masked by detectors. One too large to
    // mask is dropped (while subscribed, only a message can be that large).
    if (frame.oob || (reply && this.#pubsubFrame(reply)) || (this.#subscribed && !reply)) {
      if (bytes && reply) this.#toAgent.push(this.#masked(reply, bytes, undefined, undefined));
      else if (frame.mode === 'overflow')
        this.#context.recorder.error(
          'masking-failed',
          'airlock: a pub/sub message too large to mask was dropped',
        );
      return;
    }
    const head = this.#queue[0];
    if (head?.kind === 'hidden') {
      this.#queue.shift();
      if (reply && (reply.type === T.error || reply.type === T.blobError)) {
        if (head.what === 'QUEUED') return; // EXEC will abort and say so
        this.#context.recorder.error(
          'target-error',
          `airlock: ${head.what} failed: ${reply.data?.toString() ?? ''}`,
        );
        this.#ends.fail();
      }
      return;
    }
    if (head?.kind !== 'reply') {
      // A reply with no command waiting (a race around pub/sub): forwarded, masked.
      if (bytes && reply) this.#toAgent.push(this.#masked(reply, bytes, undefined, undefined));
      else if (frame.mode === 'overflow')
        this.#toAgent.push(errorReply('ERR airlock: reply too large to mask'));
      return;
    }
    this.#queue.shift();
    const tracked = head.tracked;
    const counts: MaskCounts = { masked: {}, wouldMask: {} };
    const perCommand = tracked.transaction?.texts.map((): MaskCounts => ({ masked: {}, wouldMask: {} }));
    let error: RequestFields['error'];
    if (frame.mode === 'overflow') {
      const failure = new AirlockError(
        'masking-failed',
        `airlock: the reply is larger than ${this.#context.limits.maxMaskedReplyBytes} bytes, too large to mask`,
      );
      this.#toAgent.push(errorReply(`ERR ${failure.message}`));
      error = failure.event('ERR');
    } else if (reply && bytes) {
      tracked.onReply?.(reply);
      this.#toAgent.push(this.#masked(reply, bytes, tracked, counts, perCommand));
      error = errorOf(reply);
    } else if (frame.type === T.error) error = { code: 'target-error', message: '' };
    const durationMs = Date.now() - tracked.started;
    const transaction = tracked.transaction;
    if (transaction && perCommand) {
      // A transaction ran as one, and each of its commands is recorded with its own reply.
      for (const [i, text] of transaction.texts.entries()) {
        const item = reply?.items?.[i];
        this.#recordReply(text, durationMs, tracked, perCommand[i]!, error ?? (item && errorOf(item)));
      }
    } else this.#recordReply(tracked.text, durationMs, tracked, counts, error);
    this.#advance();
  }

  #recordReply(
    text: string,
    durationMs: number,
    tracked: Tracked,
    counts: MaskCounts,
    error: RequestFields['error'],
  ): void {
    const masking = maskingFields(
      this.#context.policies,
      counts.masked,
      counts.wouldMask,
      tracked.fields.wouldHave,
    );
    const anyMasked = Object.values(counts.masked).some((n) => n > 0);
    this.#context.recorder.request({
      text,
      kind: 'redis',
      durationMs,
      ...tracked.fields,
      ...masking,
      ...(anyMasked && { outcome: 'masked' }),
      ...(error && { outcome: 'error', error }),
    });
  }

  /** The reply as the agent gets it: the bytes received when nothing was masked. */
  #masked(
    reply: Reply,
    bytes: Buffer,
    tracked: Tracked | undefined,
    counts: MaskCounts | undefined,
    perCommand?: MaskCounts[],
  ): Buffer {
    const { plan } = this.#context;
    let masked: Reply;
    const transaction = tracked?.transaction;
    if (transaction && reply.items) {
      const items = reply.items.map((item, i) =>
        maskReply(item, plan, transaction.masks[i], perCommand?.[i] ?? counts),
      );
      masked = items.every((item, i) => item === reply.items![i]) ? reply : { ...reply, items };
    } else masked = maskReply(reply, plan, tracked?.masks, counts);
    return masked === reply ? bytes : Buffer.concat(encodeReply(masked));
  }

  /** A RESP2 pub/sub frame: a message, or a (un)subscribe confirmation whose count says if the mode goes on. */
  #pubsubFrame(reply: Reply): boolean {
    if (!this.#subscribed || reply.type !== T.array || !reply.items) return false;
    const [kind, , count] = reply.items;
    const word = kind?.type === T.bulk ? kind.data?.toString() : undefined;
    if (word === undefined || !pubsubKinds.has(word)) return false;
    if (word.endsWith('subscribe') && count?.type === T.integer)
      this.#subscribed = count.data?.toString() !== '0';
    return true;
  }

  /** Writes the local replies whose turn has come; a (un)subscribe in its turn starts pub/sub framing. */
  #advance(): void {
    for (;;) {
      const head = this.#queue[0];
      if (head?.kind === 'local') {
        this.#queue.shift();
        this.#toAgent.push(head.bytes);
        if (head.end) {
          this.#ends.end();
          return;
        }
      } else if (head?.kind === 'subscribe') {
        this.#queue.shift();
        this.#subscribed = this.protocol === 2;
      } else return;
    }
  }
}

/** The event error of an error reply, or undefined. */
function errorOf(reply: Reply): RequestFields['error'] {
  if (reply.type !== T.error && reply.type !== T.blobError) return undefined;
  return { code: 'target-error', message: reply.data?.toString() ?? '' };
}
