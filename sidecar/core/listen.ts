// A listener's life, shared by the enforcers: binding it, closing it (ending the connections it
// holds), and the graceful drain: once it stops accepting, wait until no session has work in
// flight or the deadline passes, whichever comes first.
import type { AddressInfo } from 'node:net';
import type { Enforcer } from './enforcer.ts';

/** What the enforcers listen with: a net.Server, or a server that wraps one (ssh2's). */
interface Listener {
  listen(port: number, host: string, callback: () => void): unknown;
  once(event: 'error', listener: (error: Error) => void): unknown;
  off(event: 'error', listener: (error: Error) => void): unknown;
  close(callback?: (error?: Error) => void): unknown;
  address(): AddressInfo | string | null;
}

/** Binds the listener; resolves with its address once it accepts, rejects on a bind error. */
export function listen(server: Listener, at: { host: string; port: number }): Promise<AddressInfo> {
  return new Promise<AddressInfo>((resolve, reject) => {
    server.once('error', reject);
    server.listen(at.port, at.host, () => {
      server.off('error', reject);
      resolve(server.address() as AddressInfo);
    });
  });
}

/**
 * The Enforcer over a bound listener and the connections it holds: close stops it and ends
 * every connection (`endAll`); drain stops accepting, waits until none is left or the
 * deadline passes, then closes.
 */
export function listenerEnforcer(
  server: Listener,
  address: AddressInfo,
  connections: { readonly size: number },
  endAll: () => void,
): Enforcer {
  const close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      endAll();
    });
  return {
    address,
    close,
    async drain(deadlineMs) {
      stopAccepting(server);
      await settle(() => connections.size > 0, deadlineMs);
      await close();
    },
  };
}

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
