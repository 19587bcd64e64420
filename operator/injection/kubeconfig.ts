// The kubeconfig of an injected pod whose ServiceAccount is granted a `protocol: kubernetes`
// Connection: one context per such Connection, each naming the sidecar's listener at the
// Connection's virtual address in plain HTTP (the listener is inside the pod, and the sidecar,
// not the agent, holds the cluster's credential), with no user credentials at all. It travels in
// a pod annotation and reaches the agent's containers as a file through a downward API volume,
// so the injection stays one patch of the pod; KUBECONFIG names the file in every container
// that does not set KUBECONFIG itself.
import type { V1Container, V1Pod, V1Volume } from '@kubernetes/client-node';
import type { CapturedConnection } from './hosts.ts';

export const kubeconfigAnnotation = 'airlock.dev/kubeconfig';
export const kubeconfigVolume = 'airlock-kubeconfig';
export const kubeconfigDirectory = '/etc/airlock/kubeconfig';
export const kubeconfigPath = `${kubeconfigDirectory}/config`;

/** The kubeconfig for the pod's kubernetes Connections; undefined when it has none. */
export function podKubeconfig(
  connections: readonly CapturedConnection[],
  namespace: string,
): string | undefined {
  const clusters = connections.filter((c) => c.protocol === 'kubernetes');
  if (clusters.length === 0) return undefined;
  const named = clusters.map((c) => ({ name: `airlock-${c.name}`, server: `http://${c.vip}:${c.port}` }));
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: named.map(({ name, server }) => ({ name, cluster: { server } })),
    users: named.map(({ name }) => ({ name, user: {} })),
    contexts: named.map(({ name }) => ({ name, context: { cluster: name, user: name, namespace } })),
    'current-context': named[0]!.name,
  });
}

/** The downward API volume that writes the annotation to `config`. */
export function kubeconfigVolumeOf(): V1Volume {
  return {
    name: kubeconfigVolume,
    downwardAPI: {
      items: [
        {
          path: 'config',
          fieldRef: { fieldPath: `metadata.annotations['${kubeconfigAnnotation}']` },
          mode: 0o444,
        },
      ],
    },
  };
}

/**
 * Adds the kubeconfig to the pod built by the injector (`pod` is its own copy): the annotation,
 * the volume, and in each agent container the mount and KUBECONFIG, unless the container sets
 * KUBECONFIG itself. What an earlier injection added is taken out first, so the result is the
 * same however often it runs; a pod with no kubernetes Connection is left without any of it.
 */
export function addKubeconfig(pod: V1Pod, kubeconfig: string | undefined): void {
  const annotations = pod.metadata?.annotations ?? {};
  delete annotations[kubeconfigAnnotation];
  const spec = pod.spec!;
  spec.volumes = (spec.volumes ?? []).filter((v) => v.name !== kubeconfigVolume);
  for (const container of spec.containers) removeFrom(container);
  if (kubeconfig === undefined) return;
  annotations[kubeconfigAnnotation] = kubeconfig;
  spec.volumes.push(kubeconfigVolumeOf());
  for (const container of spec.containers) {
    container.volumeMounts = [
      ...(container.volumeMounts ?? []),
      { name: kubeconfigVolume, mountPath: kubeconfigDirectory, readOnly: true },
    ];
    if (!(container.env ?? []).some((e) => e.name === 'KUBECONFIG'))
      container.env = [...(container.env ?? []), { name: 'KUBECONFIG', value: kubeconfigPath }];
  }
}

function removeFrom(container: V1Container): void {
  if (container.volumeMounts) {
    container.volumeMounts = container.volumeMounts.filter((m) => m.name !== kubeconfigVolume);
    if (container.volumeMounts.length === 0) delete container.volumeMounts;
  }
  if (container.env) {
    container.env = container.env.filter((e) => !(e.name === 'KUBECONFIG' && e.value === kubeconfigPath));
    if (container.env.length === 0) delete container.env;
  }
}
