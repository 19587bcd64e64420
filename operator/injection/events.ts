// Injection outcomes as core/v1 Events in the pod's namespace, so `kubectl get events` and
// `kubectl describe` of the owner show why a pod was injected, skipped or refused. At
// admission the pod does not exist yet: the Event names it by name, or by generateName.
import { hostname } from 'node:os';
import type { CoreV1Api, CoreV1Event } from '@kubernetes/client-node';
import type { InjectionReport } from './inject.ts';

export interface InjectionEvent {
  namespace: string;
  pod: { name?: string; generateName?: string };
  report: InjectionReport;
}

export const eventComponent = 'airlock-injector';

export function injectionEventObject(event: InjectionEvent, now: Date, instance = hostname()): CoreV1Event {
  const name = event.pod.name || event.pod.generateName || 'pod';
  const warning = event.report.result === 'refused' || event.report.result === 'error';
  return {
    metadata: {
      generateName: `${name.replace(/[^a-z0-9.-]/g, '').replace(/[.-]+$/, '') || 'pod'}.`,
      namespace: event.namespace,
    },
    involvedObject: { apiVersion: 'v1', kind: 'Pod', namespace: event.namespace, name },
    reason: event.report.reason,
    message: event.report.message.slice(0, 1024),
    type: warning || event.report.reason === 'NoGrants' ? 'Warning' : 'Normal',
    action: 'Inject',
    source: { component: eventComponent },
    reportingComponent: `airlock.dev/${eventComponent}`,
    reportingInstance: instance.slice(0, 128),
    firstTimestamp: now,
    lastTimestamp: now,
    count: 1,
  };
}

/**
 * Records Events without holding up admission: at most `maxInFlight` writes at a time, the
 * rest dropped (and counted by the caller's metrics, which never drop).
 */
export function kubernetesEventRecorder(
  api: CoreV1Api,
  options: { maxInFlight?: number; onError?: (error: unknown) => void } = {},
): (event: InjectionEvent) => void {
  let inFlight = 0;
  const max = options.maxInFlight ?? 64;
  return (event) => {
    if (inFlight >= max) return;
    inFlight++;
    api
      .createNamespacedEvent({ namespace: event.namespace, body: injectionEventObject(event, new Date()) })
      .catch((error: unknown) => options.onError?.(error))
      .finally(() => {
        inFlight--;
      });
  };
}
