// A session per client connection, for the enforcers that serve HTTP on keep-alive connections
// (HTTP, the Kubernetes API): each connection is one recorded session with its own gate, started
// at connect, or at its first request served when the audit trail could not record it then.
import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import { endUserOf } from '../../api/bundle.ts';
import type { EnforcerOptions } from './enforcer.ts';
import { ApprovalGate } from './gate.ts';
import { SessionRecorder } from './recorder.ts';

/** One client connection's session: its recording, and the gate its requests pass. */
export interface ConnectionSession {
  recorder: SessionRecorder;
  gate: ApprovalGate;
}

export class ConnectionSessions {
  /** The open client connections. */
  readonly sockets = new Set<Socket>();
  readonly #sessions = new WeakMap<Socket, ConnectionSession>();
  readonly #options: EnforcerOptions;

  constructor(server: Server, options: EnforcerOptions) {
    this.#options = options;
    server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      // A connection made while the audit trail cannot record it starts its session later; one
      // that acts for an end user, at its first request, which names them.
      if (!options.connection.endUser && !options.events.refusal?.()) this.begin(socket);
    });
  }

  /** The connection's session, started once (acting for the end user in `identity`, if any). */
  begin(socket: Socket, identity = this.#options.identity): ConnectionSession {
    const existing = this.#sessions.get(socket);
    if (existing) return existing;
    const { connection, events, approvals } = this.#options;
    const recorder = new SessionRecorder(connection, identity, events);
    const gate = new ApprovalGate({
      sessionId: recorder.id,
      connection: connection.name,
      approvals,
      unrecorded: () => events.refusal?.(),
      endUser: () => endUserOf(identity),
    });
    recorder.start({ address: socket.remoteAddress ?? '' });
    const session = { recorder, gate };
    this.#sessions.set(socket, session);
    socket.on('close', () => {
      recorder.bytesIn = socket.bytesRead;
      recorder.bytesOut = socket.bytesWritten;
      recorder.end('closed');
    });
    return session;
  }

  /** The connection's session if it started. */
  get(socket: Socket): ConnectionSession | undefined {
    return this.#sessions.get(socket);
  }
}
