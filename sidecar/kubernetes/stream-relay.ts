// Relays one WebSocket stream between the agent and the API server, message by message, once
// both handshakes are done. Each hop's control frames end at the enforcer (pings answered
// there, a close passed on as a close). Exec and attach speak the channel protocol
// (v5.channel.k8s.io: a first byte naming the stream): stdout and stderr pass through the
// stream masker and are recorded as terminal output, stdin is recorded as input (redacted), and
// resize and the v5 close signal pass as they are. A port-forward is relayed opaque. Any frame
// that cannot be read, or a message on a channel its sender does not write, ends the stream.
import type { Duplex } from 'node:stream';
import type { BundlePolicy } from '../../api/bundle.ts';
import type { SessionRecorder } from '../core/recorder.ts';
import { encodeText, StreamMasker, valueShape } from '../core/stream-masker.ts';
import type { MaskingPlan } from '../policy/masking.ts';
import { closePayload, FrameError, FrameReader, frame, type Message, opcodes } from './websocket.ts';

export const channels = { stdin: 0, stdout: 1, stderr: 2, error: 3, resize: 4, close: 255 } as const;

/** The channels each side writes (v4 has no close signal; v5 adds it). */
const fromAgent = new Set<number>([channels.stdin, channels.resize, channels.close]);
const fromTarget = new Set<number>([channels.stdout, channels.stderr, channels.error, channels.close]);

export interface RelayEnd {
  /** The command's exit status from the error channel, when it sent one. */
  exitStatus?: number | string;
  /** Why the stream ended early: a frame that could not be read, a channel out of place. */
  violation?: string;
  masked: Record<string, number>;
  wouldMask: Record<string, number>;
}

export interface RelayOptions {
  /** Channel protocol (exec, attach) or opaque (port-forward). */
  channeled: boolean;
  /** Whether the request asked for stdin: it was decided on that, so input it did not ask for ends the stream. */
  stdin: boolean;
  policies: BundlePolicy[];
  plan: MaskingPlan;
  recorder: SessionRecorder;
}

/** A channel message to the agent, as the target would write it (a server's frames are not masked). */
export function agentMessage(channel: number, data: Buffer | string): Buffer {
  const body = typeof data === 'string' ? Buffer.from(data) : data;
  return frame(opcodes.binary, Buffer.concat([Buffer.from([channel]), body]), false);
}

/**
 * Relays until either side closes. `agentReader` has read what the agent sent before the
 * target answered (its messages queued in `pending`); `head` is what the target sent with its
 * handshake.
 */
export function relayStream(
  agent: Duplex,
  agentReader: FrameReader,
  pending: Message[],
  target: Duplex,
  head: Buffer,
  options: RelayOptions,
): Promise<RelayEnd> {
  const { recorder, plan, policies } = options;
  const targetReader = new FrameReader(false);
  const maskers = new Map<number, StreamMasker>();
  const end: RelayEnd = { masked: {}, wouldMask: {} };
  let finished = false;
  const redact = (text: string) => (plan.hasScanners ? plan.maskText(text).value : text);
  const toTarget = (opcode: number, payload: Buffer) => target.write(frame(opcode, payload, true));
  const toAgent = (opcode: number, payload: Buffer) => agent.write(frame(opcode, payload, false));

  const masker = (channel: number) => {
    let found = maskers.get(channel);
    if (!found) {
      found = new StreamMasker((text) => plan.maskText(text), valueShape(policies));
      maskers.set(channel, found);
    }
    return found;
  };
  /** Output of the target's stdout or stderr, masked, recorded, sent; the masker may hold some back. */
  const output = (channel: number, data: Buffer, flush: boolean) => {
    let text: string;
    if (plan.hasScanners) {
      const m = masker(channel);
      text = m.push(data) + (flush ? m.flush() : '');
    } else text = data.toString('utf8');
    if (text.length === 0) return;
    recorder.data('output', text);
    toAgent(
      opcodes.binary,
      Buffer.concat([Buffer.from([channel]), plan.hasScanners ? encodeText(text) : data]),
    );
  };
  const flushOutput = () => {
    for (const [channel, m] of maskers) {
      const text = m.flush();
      if (text.length === 0) continue;
      recorder.data('output', text);
      toAgent(opcodes.binary, Buffer.concat([Buffer.from([channel]), encodeText(text)]));
    }
  };

  return new Promise<RelayEnd>((resolve) => {
    const finish = (violation?: string) => {
      if (finished) return;
      finished = true;
      if (violation) end.violation = violation;
      try {
        flushOutput();
      } catch (error) {
        end.violation ??= (error as Error).message;
      }
      for (const m of maskers.values()) {
        for (const [k, n] of Object.entries(m.counts)) end.masked[k] = (end.masked[k] ?? 0) + n;
        for (const [k, n] of Object.entries(m.wouldMask)) end.wouldMask[k] = (end.wouldMask[k] ?? 0) + n;
      }
      const close = closePayload(violation ? 1002 : 1000, violation ? 'airlock: protocol violation' : '');
      if (agent.writable) agent.end(frame(opcodes.close, close, false));
      if (target.writable) target.end(frame(opcodes.close, close, true));
      setTimeout(() => {
        agent.destroy();
        target.destroy();
      }, 1000).unref();
      resolve(end);
    };

    /**
     * Answers a control message (a ping with a pong to its sender; a close ends both ways);
     * true when the message was one. Text is not the stream protocol's.
     */
    const control = (message: Message, pong: (payload: Buffer) => void): boolean => {
      switch (message.opcode) {
        case opcodes.ping:
          pong(message.payload);
          return true;
        case opcodes.pong:
          return true;
        case opcodes.close:
          finish();
          return true;
        case opcodes.text:
          throw new FrameError('a text message where the stream protocol sends binary');
      }
      return false;
    };

    const fromAgentMessage = (message: Message) => {
      if (control(message, (payload) => toAgent(opcodes.pong, payload))) return;
      if (options.channeled) {
        const channel = message.payload[0];
        if (channel === undefined || !fromAgent.has(channel))
          throw new FrameError(`a message on channel ${channel ?? '(none)'} from the agent`);
        if (channel === channels.stdin) {
          if (!options.stdin) throw new FrameError('input on a stream decided without stdin');
          recorder.data('input', redact(message.payload.subarray(1).toString('utf8')));
        }
      }
      if (!toTarget(opcodes.binary, message.payload)) agent.pause();
    };

    const fromTargetMessage = (message: Message) => {
      if (control(message, (payload) => toTarget(opcodes.pong, payload))) return;
      if (!options.channeled) {
        if (!toAgent(opcodes.binary, message.payload)) target.pause();
        return;
      }
      const channel = message.payload[0];
      if (channel === undefined || !fromTarget.has(channel))
        throw new FrameError(`a message on channel ${channel ?? '(none)'} from the target`);
      const data = message.payload.subarray(1);
      if (channel === channels.stdout || channel === channels.stderr) {
        output(channel, data, false);
        return;
      }
      if (channel === channels.error) {
        // The command's end: what output is held back goes first.
        flushOutput();
        end.exitStatus = exitStatus(data);
      }
      if (!toAgent(opcodes.binary, message.payload)) target.pause();
    };

    const read = (reader: FrameReader, handle: (m: Message) => void) => (chunk: Buffer) => {
      if (finished) return;
      try {
        for (const message of reader.push(chunk)) {
          handle(message);
          if (finished) return;
        }
      } catch (error) {
        finish((error as Error).message);
      }
    };
    agent.on('drain', () => target.resume());
    target.on('drain', () => agent.resume());
    agent.on('data', read(agentReader, fromAgentMessage));
    target.on('data', read(targetReader, fromTargetMessage));
    for (const side of [agent, target]) {
      side.on('end', () => finish());
      side.on('close', () => finish());
      side.on('error', () => finish());
    }
    try {
      for (const message of pending) {
        fromAgentMessage(message);
        if (finished) return;
      }
      if (head.length > 0) read(targetReader, fromTargetMessage)(head);
    } catch (error) {
      finish((error as Error).message);
    }
    agent.resume();
  });
}

/** The exit status an error-channel Status reports: 0 on Success, the ExitCode cause's on failure. */
function exitStatus(data: Buffer): number | string | undefined {
  try {
    const status = JSON.parse(data.toString('utf8')) as {
      status?: string;
      reason?: string;
      details?: { causes?: { reason?: string; message?: string }[] };
    };
    if (status.status === 'Success') return 0;
    const code = status.details?.causes?.find((c) => c.reason === 'ExitCode')?.message;
    if (status.reason === 'NonZeroExitCode' && code !== undefined && /^\d+$/.test(code)) return Number(code);
    return 'error';
  } catch {
    return undefined;
  }
}
