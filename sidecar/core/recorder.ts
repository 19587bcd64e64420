// One recorded session, for every enforcer: numbers its events, stamps them with the
// Connection and identity, counts bytes and time, and never lets a failing sink break the data
// path. Every event is also published on the `airlock:event` diagnostics channel (metrics and
// logs subscribe; with no subscriber it costs one check). Masking counts become event fields
// here, the same way in every protocol.
import { randomUUID } from 'node:crypto';
import { channel } from 'node:diagnostics_channel';
import type { BundleConnection, BundlePolicy, Identity } from '../../api/bundle.ts';
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

/** Where every recorded event is published, for metrics and logs. */
export const eventChannel = channel('airlock:event');

/**
 * Masked-value counts (keyed "<masking rule>/<detector or column>") as a request records them:
 * enforced ones as `masked`, audit-mode ones as wouldHave entries naming the policy whose
 * masking rule it is.
 */
export function maskingFields(
  policies: BundlePolicy[],
  masked: Record<string, number>,
  wouldMask: Record<string, number>,
  wouldHave: RequestEvent['wouldHave'] = [],
): Pick<RequestFields, 'masked' | 'wouldHave'> {
  const would = Object.entries(wouldMask).map(([key, n]) => {
    const rule = key.split('/')[0];
    const policy = policies.find((p) => p.mode === 'audit' && p.masking.some((m) => m.name === rule));
    return {
      action: 'mask',
      policy: policy?.name ?? '',
      rule: `masking:${key}`,
      reason: `${n} value(s) would have been masked`,
    };
  });
  return {
    ...(Object.values(masked).some((n) => n > 0) && { masked }),
    ...(wouldHave.length + would.length > 0 && { wouldHave: [...wouldHave, ...would] }),
  };
}

/**
 * The current time in ISO 8601. Events come many to a millisecond under load, and formatting a
 * Date costs more than the rest of an event's stamp: one string per millisecond serves them.
 */
let lastMs = 0;
let lastIso = '';
function isoNow(): string {
  const ms = Date.now();
  if (ms !== lastMs) {
    lastMs = ms;
    lastIso = new Date(ms).toISOString();
  }
  return lastIso;
}

export class SessionRecorder {
  readonly id: string;
  readonly startedAt = Date.now();
  bytesIn = 0;
  bytesOut = 0;
  /** Whether terminal data (replay) is recorded: any granting policy has recording enabled. */
  readonly recordData: boolean;
  private seq = 0;
  private ended = false;
  /** The Connection as every event names it: made once, shared by the session's events. */
  private readonly named: SessionEvent['connection'];
  /** Whom the events name: the workload, and the end user once a session verified one (before it starts). */
  identity: Identity;
  private readonly sink: EventSink;

  constructor(connection: BundleConnection, identity: Identity, sink: EventSink, id: string = randomUUID()) {
    this.id = id;
    this.named = { name: connection.name, namespace: connection.namespace, protocol: connection.protocol };
    this.identity = identity;
    this.sink = sink;
    this.recordData = connection.policies.some((policy) => policy.recording.enabled);
  }

  start(client: { address: string; user?: string; application?: string }): void {
    this.emit({ ...this.base(), type: 'session.start', client });
  }

  request(fields: RequestFields): void {
    this.emit({ ...this.base(), type: 'request', ...fields });
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
      time: isoNow(),
      connection: this.named,
      identity: this.identity,
    } as const;
  }

  private emit(event: SessionEvent): void {
    if (eventChannel.hasSubscribers) eventChannel.publish(event);
    try {
      this.sink.emit(event);
    } catch {
      // The sink spools and retries on its own; a failure here must not break the session.
    }
  }
}
