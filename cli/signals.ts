// How long-running commands (operator, sidecar, local) learn they must stop.

/**
 * Resolves at the first SIGINT or SIGTERM; later ones are ignored while the command stops. The
 * same signal can arrive twice (on a Node that cannot replace its process, bin/airlock.js
 * forwards it to the process it started, and a kill of the process group reaches both), and a
 * second one must not cut a graceful stop short.
 * SIGKILL still ends it.
 */
export function terminationSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => resolve(signal));
  });
}
