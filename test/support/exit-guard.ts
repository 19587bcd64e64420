// Loaded into every test file's process (`node --test --import`). A file whose tests have all
// ended but whose process stays alive (a server, a worker or a child left open by a failed
// test) would hold the whole run until CI's deadline; a minute after its last test it is ended
// instead, and reported as failed with the reason, and what held it, on stderr.
import { after } from 'node:test';

const graceMs = 60_000;

/** What keeps the event loop alive, one line each, with what identifies it. */
export function openHandles(): string[] {
  const handles = (process as unknown as { _getActiveHandles(): object[] })._getActiveHandles();
  return handles
    .filter((handle) => !('hasRef' in handle) || (handle as { hasRef(): boolean }).hasRef())
    .map((handle) => {
      const name = handle.constructor?.name ?? typeof handle;
      const h = handle as Record<string, unknown> & { address?: () => unknown };
      if (name === 'Server' && typeof h.address === 'function')
        return `${name} listening on ${JSON.stringify(h.address())}`;
      if (name === 'Socket' || name === 'TLSSocket') {
        const socket = handle as { localPort?: number; remoteAddress?: string; remotePort?: number };
        if (socket.remotePort)
          return `${name} ${socket.localPort} -> ${socket.remoteAddress}:${socket.remotePort}`;
        const fd = (handle as { _handle?: { fd?: number } })._handle?.fd;
        return fd !== undefined && fd <= 2 ? '' : `${name} (fd ${fd ?? '?'})`;
      }
      if (name === 'ChildProcess') {
        const child = handle as { pid?: number; spawnargs?: string[] };
        return `${name} ${child.pid} ${(child.spawnargs ?? []).join(' ').slice(0, 200)}`;
      }
      return name;
    })
    .filter(Boolean);
}

after(() => {
  setTimeout(() => {
    // This guard's own timer is unreferenced, so every timer counted here holds the process.
    const timers = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const held = [...openHandles(), ...(timers > 0 ? [`${timers} timer(s)`] : [])];
    process.stderr.write(
      `exit guard: this test file's process was still alive ${graceMs / 1000} s after its tests ended (a handle left open); ending it. Open: ${held.join('; ') || 'nothing listed'}\n`,
    );
    process.exit(1);
  }, graceMs).unref();
});
