// An exec or attach that kubectl sends over SPDY (KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false, or a
// client that speaks nothing else), governed as the WebSocket one is: the SPDY session is
// translated into the v5 channel protocol, so the same stream (upgrade.ts) decides it, holds it,
// opens it to the API server over WebSocket and relays it through the same masker and recorder
// (stream-relay.ts). kubectl opens one SPDY stream per channel, named by its streamType header
// (error, stdin, stdout, stderr, resize); each is answered at once, and what the stream writes
// waits until every stream the request asked for is open, so a refusal reaches kubectl's error
// stream. Ending the agent's stdin (its FIN) becomes v5's close signal. Anything else ends the
// session: a frame that cannot be read, a stream the request did not ask for or opened twice,
// data on a stream the agent does not write.
import { type Duplex, duplexPair } from 'node:stream';
import {
  controlFrame,
  dataFrame,
  finFlag,
  frameTypes,
  HeaderDeflater,
  HeaderInflater,
  SpdyError,
  SpdyFrameReader,
} from './spdy.ts';
import { channels } from './stream-relay.ts';
import { closePayload, FrameReader, frame, type Message, opcodes } from './websocket.ts';

const streamChannels: Record<string, number> = {
  stdin: channels.stdin,
  stdout: channels.stdout,
  stderr: channels.stderr,
  error: channels.error,
  resize: channels.resize,
};
/** The streams whose data comes from the agent. */
const agentWrites = new Set(['stdin', 'resize']);
/** How long the streams the request asked for may take to open before what waits is sent anyway. */
const openWithinMs = 5000;
/** How long kubectl has to close the session once its streams are finished. */
const closeWithinMs = 10_000;
/** What waits for the streams to open: a hold's note and a refusal are far smaller. */
const maxWaitingBytes = 1024 * 1024;

export interface SpdyChannels {
  /** The agent as the stream sees it: masked v5 messages in, the stream's frames out. */
  agent: Duplex;
  /** Why the session was ended, when the agent broke the protocol. */
  violation(): string | undefined;
}

/**
 * Translates the agent's SPDY session on `socket` (already answered 101) into v5 channel
 * messages. `expected` names the streams the request asked for.
 */
export function spdyChannels(socket: Duplex, head: Buffer, expected: Set<string>): SpdyChannels {
  const [agent, inner] = duplexPair();
  const reader = new SpdyFrameReader();
  const inflater = new HeaderInflater();
  const deflater = new HeaderDeflater();
  /** Each stream: `finished` once the enforcer ended its side, `closed` once the agent did. */
  const streams = new Map<number, { type: string; finished: boolean; closed: boolean }>();
  const byType = new Map<string, number>();
  const fromStream = new FrameReader(false);
  let lastStreamId = 0;
  let ready = false;
  let waiting: Message[] = [];
  let waitingBytes = 0;
  let violation: string | undefined;
  let ended = false;
  // kubectl opens its streams as soon as it has the 101; if it stops short, what waits goes anyway.
  const openTimer = setTimeout(() => open(), openWithinMs).unref();

  const toAgent = (bytes: Buffer) => {
    if (!socket.write(bytes)) inner.pause();
  };
  const open = () => {
    if (ready) return;
    ready = true;
    clearTimeout(openTimer);
    try {
      for (const message of waiting) fromStreamMessage(message);
    } catch (error) {
      fail((error as Error).message);
    }
    waiting = [];
    if (ended) finishStreams();
  };
  /**
   * The stream's end: every stream the agent reads from is finished. kubectl closes the session
   * once it has read them; closing it first could lose what it has not read yet (its streams
   * drop unread data when the connection goes), so the session is only cut after a while.
   */
  const finishStreams = () => {
    for (const [id, stream] of streams) {
      if (stream.finished || agentWrites.has(stream.type)) continue;
      stream.finished = true;
      socket.write(dataFrame(id, finFlag, Buffer.alloc(0)));
    }
    setTimeout(() => socket.destroy(), closeWithinMs).unref();
  };
  const end = () => {
    if (ended) return;
    ended = true;
    if (ready) finishStreams();
  };
  const fail = (reason: string) => {
    if (violation !== undefined) return;
    violation = reason;
    clearTimeout(openTimer);
    const goAway = Buffer.alloc(8);
    goAway.writeUInt32BE(lastStreamId, 0);
    goAway.writeUInt32BE(1, 4); // PROTOCOL_ERROR
    socket.end(controlFrame(frameTypes.goAway, 0, goAway));
    inner.end(frame(opcodes.close, closePayload(1002, 'airlock: protocol violation'), true));
    agent.destroy();
  };
  /** A message to the stream, as the agent's WebSocket would send it. */
  const toStream = (payload: Buffer) => {
    if (!inner.write(frame(opcodes.binary, payload, true))) socket.pause();
  };

  const synStream = (data: Buffer, flags: number) => {
    if (data.length < 10) throw new SpdyError('a SYN_STREAM cut short');
    const id = data.readUInt32BE(0) & 0x7fffffff;
    if (id % 2 === 0 || id <= lastStreamId) throw new SpdyError(`a stream ${id} the agent cannot open`);
    lastStreamId = id;
    const headers = inflater.read(data.subarray(10));
    const type = headers.get('streamtype');
    if (type === undefined || type.length !== 1 || !expected.has(type[0]!))
      throw new SpdyError(
        `a stream of type ${JSON.stringify(type?.join(',') ?? '')} the request did not ask for`,
      );
    if (byType.has(type[0]!)) throw new SpdyError(`a second ${type[0]} stream`);
    streams.set(id, { type: type[0]!, finished: false, closed: false });
    byType.set(type[0]!, id);
    const reply = Buffer.alloc(4);
    reply.writeUInt32BE(id);
    socket.write(controlFrame(frameTypes.synReply, 0, Buffer.concat([reply, deflater.write([])])));
    if (flags & finFlag) closeInput(id);
    if (byType.size === expected.size) open();
  };
  /** The agent's side of a stream ends: stdin's end reaches the command as v5's close signal. */
  const closeInput = (id: number) => {
    const stream = streams.get(id)!;
    if (stream.closed) throw new SpdyError(`the ${stream.type} stream ended twice`);
    stream.closed = true;
    if (stream.type === 'stdin') toStream(Buffer.from([channels.close, channels.stdin]));
  };
  const data = (id: number, flags: number, payload: Buffer) => {
    const stream = streams.get(id);
    if (stream === undefined) throw new SpdyError(`data on stream ${id}, which is not open`);
    if (payload.length > 0) {
      if (stream.closed) throw new SpdyError(`data on the ${stream.type} stream after the agent ended it`);
      if (!agentWrites.has(stream.type))
        throw new SpdyError(`data from the agent on its ${stream.type} stream`);
      toStream(Buffer.concat([Buffer.from([streamChannels[stream.type]!]), payload]));
    }
    if (flags & finFlag) closeInput(id);
  };

  const fromAgent = (chunk: Buffer) => {
    if (violation !== undefined) return;
    try {
      for (const f of reader.push(chunk)) {
        if (!f.control) {
          data(f.streamId, f.flags, f.data);
          continue;
        }
        switch (f.type) {
          case frameTypes.synStream:
            synStream(f.data, f.flags);
            break;
          case frameTypes.ping:
            // kubectl pings every few seconds; its pings (odd ids) are answered with the same id.
            if (f.data.length !== 4 || f.data.readUInt32BE(0) % 2 === 0)
              throw new SpdyError('a ping out of form');
            socket.write(controlFrame(frameTypes.ping, 0, f.data));
            break;
          case frameTypes.settings:
          case frameTypes.windowUpdate:
            // kubectl's SPDY streams keep no flow-control window: nothing to honour.
            break;
          case frameTypes.rstStream:
          case frameTypes.goAway:
            inner.end(frame(opcodes.close, closePayload(1000), true));
            return;
          default:
            throw new SpdyError(`a control frame of type ${f.type} from the agent`);
        }
      }
    } catch (error) {
      fail((error as Error).message);
    }
  };

  const fromStreamMessage = (message: Message) => {
    if (!ready) {
      waitingBytes += message.payload.length;
      if (waitingBytes > maxWaitingBytes)
        throw new SpdyError('more output than waits for the streams to open');
      waiting.push(message);
      return;
    }
    if (message.opcode === opcodes.close) {
      end();
      return;
    }
    if (message.opcode !== opcodes.binary || message.payload.length === 0) return;
    const channel = message.payload[0]!;
    if (channel === channels.close) {
      // The target closed a channel (v5): that stream ends.
      const type = Object.keys(streamChannels).find((t) => streamChannels[t] === message.payload[1]);
      const id = type === undefined ? undefined : byType.get(type);
      const stream = id === undefined ? undefined : streams.get(id);
      if (id !== undefined && stream && !stream.finished && !agentWrites.has(stream.type)) {
        stream.finished = true;
        toAgent(dataFrame(id, finFlag, Buffer.alloc(0)));
      }
      return;
    }
    const type = Object.keys(streamChannels).find((t) => streamChannels[t] === channel);
    const id = type === undefined ? undefined : byType.get(type);
    // A channel kubectl did not open (a note on stderr of a tty stream) has nowhere to go.
    if (id === undefined || streams.get(id)!.finished) return;
    const body = message.payload.subarray(1);
    for (let at = 0; at < body.length || at === 0; at += 64 * 1024) {
      toAgent(dataFrame(id, 0, body.subarray(at, at + 64 * 1024)));
      if (body.length === 0) break;
    }
  };

  inner.on('data', (chunk: Buffer) => {
    if (violation !== undefined) return;
    try {
      for (const message of fromStream.push(chunk)) fromStreamMessage(message);
    } catch (error) {
      fail((error as Error).message);
    }
  });
  inner.on('end', end);
  socket.on('drain', () => inner.resume());
  inner.on('drain', () => socket.resume());
  socket.on('data', fromAgent);
  const gone = () => {
    clearTimeout(openTimer);
    agent.destroy();
  };
  socket.once('close', gone);
  socket.on('error', gone);
  agent.on('error', () => undefined);
  inner.on('error', () => undefined);
  if (head.length > 0) fromAgent(head);
  return { agent, violation: () => violation };
}
