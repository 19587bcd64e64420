// Data-path metrics: what the enforcers publish on the core's diagnostics channels, counted into
// a Prometheus registry. The enforcers know nothing of it; with no subscriber a publish costs
// one check. Label values come only from the bundle (Connection protocol, policy, rule and
// detector names) or from code (outcomes, error codes), never from requests: no SQL text, no
// path, no column or key glob becomes a label.

import type { RequestEvent, SessionEvent } from '../api/events.ts';
import { detectors } from '../api/names.ts';
import { Counter, Histogram, type Registry } from '../metrics/registry.ts';
import { type ApprovalWait, approvalChannel } from './core/gate.ts';
import { eventChannel } from './core/recorder.ts';

const builtInDetectors = new Set<string>(detectors);
const dnsLabel = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/**
 * What masked a value, from its event key "<masking rule>/<what>": a detector or a custom
 * pattern by its name (both DNS labels from the bundle), anything else by its kind, since
 * column globs, JSON paths and Redis key globs may be long and many.
 */
export function maskedBy(key: string, protocol: string): string {
  const what = key.slice(key.indexOf('/') + 1);
  if (builtInDetectors.has(what)) return what;
  if (what.startsWith('$')) return 'json-path';
  if (protocol === 'redis') return dnsLabel.test(what) ? what : 'key';
  return dnsLabel.test(what) ? what : 'column';
}

/**
 * Counts every session event and approval wait into `registry` until the returned function is
 * called; that also removes the metrics from the registry, so a later subscription may add them
 * again.
 */
export function subscribeDataPathMetrics(registry: Registry): () => void {
  const names: string[] = [];
  const counter = <L extends string>(name: string, help: string, labelNames: readonly L[]) => {
    names.push(name);
    return new Counter({ name, help, labelNames, registry });
  };
  const histogram = <L extends string>(
    name: string,
    help: string,
    labelNames: readonly L[],
    buckets: number[],
  ) => {
    names.push(name);
    return new Histogram({ name, help, labelNames, buckets, registry });
  };
  const requests = counter(
    'airlock_sidecar_requests_total',
    'Statements, commands and requests decided, by protocol, outcome and the policy and rule that decided (empty when none did).',
    ['protocol', 'outcome', 'policy', 'rule'],
  );
  const duration = histogram(
    'airlock_sidecar_request_duration_seconds',
    'Time from a request reaching the enforcer to its end (the upstream latency as the enforcer sees it, approval holds included), by protocol.',
    ['protocol'],
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
  );
  const requestErrors = counter(
    'airlock_sidecar_request_errors_total',
    'Requests that did not complete, by protocol and error code (policy-denied, upstream-unreachable, ...).',
    ['protocol', 'code'],
  );
  const masked = counter(
    'airlock_sidecar_masked_values_total',
    'Values masked in responses, by protocol and detector (a custom pattern by its name; column, json-path or key for those rules).',
    ['protocol', 'detector'],
  );
  const approvalWait = histogram(
    'airlock_sidecar_approval_wait_seconds',
    'How long held requests waited for a decision, by how the hold ended (approved, denied, expired, cancelled).',
    ['outcome'],
    [0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600],
  );
  const relayed = counter(
    'airlock_sidecar_relayed_bytes_total',
    'Bytes relayed by ended sessions, by protocol and direction (in: read from the agent, out: written to it).',
    ['protocol', 'direction'],
  );
  const sessionsStarted = counter(
    'airlock_sidecar_sessions_started_total',
    'Sessions started, by protocol.',
    ['protocol'],
  );
  const sessionsEnded = counter('airlock_sidecar_sessions_ended_total', 'Sessions ended, by protocol.', [
    'protocol',
  ]);
  const protocolErrors = counter(
    'airlock_sidecar_protocol_errors_total',
    'Protocol errors (a broken frame, an unreachable target, a failed step), by protocol and code.',
    ['protocol', 'code'],
  );

  const onRequest = (event: RequestEvent, protocol: string) => {
    requests.inc({ protocol, outcome: event.outcome, policy: event.policy ?? '', rule: event.rule ?? '' });
    duration.observe({ protocol }, event.durationMs / 1000);
    if (event.error) requestErrors.inc({ protocol, code: event.error.code });
    if (event.masked) {
      for (const key in event.masked) {
        const n = event.masked[key]!;
        if (n > 0) masked.inc({ protocol, detector: maskedBy(key, protocol) }, n);
      }
    }
  };
  const onEvent = (message: unknown) => {
    const event = message as SessionEvent;
    const protocol = event.connection.protocol;
    switch (event.type) {
      case 'request':
        onRequest(event, protocol);
        return;
      case 'session.start':
        sessionsStarted.inc({ protocol });
        return;
      case 'session.end':
        sessionsEnded.inc({ protocol });
        relayed.inc({ protocol, direction: 'in' }, event.bytesIn);
        relayed.inc({ protocol, direction: 'out' }, event.bytesOut);
        return;
      case 'protocol.error':
        protocolErrors.inc({ protocol, code: event.code });
        return;
    }
  };
  const onApproval = (message: unknown) => {
    const wait = message as ApprovalWait;
    approvalWait.observe({ outcome: wait.outcome }, wait.waitMs / 1000);
  };

  eventChannel.subscribe(onEvent);
  approvalChannel.subscribe(onApproval);
  return () => {
    eventChannel.unsubscribe(onEvent);
    approvalChannel.unsubscribe(onApproval);
    for (const name of names) registry.remove(name);
  };
}
