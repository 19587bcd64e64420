// One recorded session, for every enforcer: numbers its events, stamps them with the
// Connection and identity, counts bytes and time, and never lets a failing sink break the data
// path. The generic TCP session is the base case; SSH and HTTP add requests and terminal data.
import { randomUUID } from 'node:crypto';
import type { BundleConnection, Identity } from '../../api/bundle.ts';
import {
  type DataEvent,
  type EventSink,
  type RequestEvent,
  type SessionEvent,
  sessionEventVersion,
} from '../../api/events.ts';

type Base = 'version' | 'id' | 'sessionId' | 'seq' | 'time' | 'connection' | 'identity' | 'type';

/** A request event's own fields: what a session knows, before the recorder adds the rest. */
export type RequestFields = Omit<RequestEvent, Base>;

export class SessionRecorder {
  readonly id = randomUUID();
  readonly startedAt = Date.now();
  bytesIn = 0;
  bytesOut = 0;
  /** Whether terminal data (replay) is recorded: any granting policy has recording enabled. */
  readonly recordData: boolean;
  private seq = 0;
  private ended = false;
  private readonly connection: BundleConnection;
  private readonly identity: Identity;
  private readonly sink: EventSink;

  constructor(connection: BundleConnection, identity: Identity, sink: EventSink) {
    this.connection = connection;
    this.identity = identity;
    this.sink = sink;
    this.recordData = connection.policies.some((policy) => policy.recording.enabled);
  }

  start(client: { address: string; user?: string; application?: string }): void {
    this.emit({ ...this.base(), type: 'session.start', client });
  }

  request(fields: RequestFields): void {
    this.emit({ ...this.base(), type: 'request', ...fields } as RequestEvent);
  }

  /** Terminal input or output, as an asciicast v2 frame (seconds since the session started). */
  data(stream: DataEvent['stream'], data: string): void {
    if (!this.recordData || data.length === 0) return;
    this.emit({ ...this.base(), type: 'data', stream, at: (Date.now() - this.startedAt) / 1000, data });
  }

  error(code: string, message: string): void {
    this.emit({ ...this.base(), type: 'protocol.error', code, message });
  }

  end(reason: string): void {
    if (this.ended) return;
    this.ended = true;
    this.emit({
      ...this.base(),
      type: 'session.end',
      reason,
      bytesIn: this.bytesIn,
      bytesOut: this.bytesOut,
    });
  }

  private base() {
    return {
      version: sessionEventVersion,
      id: randomUUID(),
      sessionId: this.id,
      seq: this.seq++,
      time: new Date().toISOString(),
      connection: {
        name: this.connection.name,
        namespace: this.connection.namespace,
        protocol: this.connection.protocol,
      },
      identity: this.identity,
    } as const;
  }

  private emit(event: SessionEvent): void {
    try {
      this.sink.emit(event);
    } catch {
      // The sink spools and retries on its own; a failure here must not break the session.
    }
  }
}
