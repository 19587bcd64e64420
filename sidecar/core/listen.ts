// Graceful drain, shared by the enforcers: once a listener is closed, wait until no session has
// work in flight or the deadline passes, whichever comes first.

/** Resolves when `busy()` turns false or at `deadlineMs` (epoch ms); polls, as sessions do not announce idleness. */
export async function settle(busy: () => boolean, deadlineMs: number, intervalMs = 25): Promise<void> {
  while (busy() && Date.now() < deadlineMs) {
    await new Promise((resolve) =>
      setTimeout(resolve, Math.min(intervalMs, Math.max(1, deadlineMs - Date.now()))),
    );
  }
}

/** Stops a listener from accepting without waiting for its open connections. */
export function stopAccepting(server: { close(callback?: (error?: Error) => void): unknown }): void {
  server.close(() => undefined);
}
