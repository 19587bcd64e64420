// Loaded into every test file's process (`node --test --import`). A file whose tests have all
// ended but whose process stays alive (a server, a worker or a child left open by a failed
// test) would hold the whole run until CI's deadline; a minute after its last test it is ended
// instead, and reported as failed with the reason on stderr.
import { after } from 'node:test';

const graceMs = 60_000;

after(() => {
  setTimeout(() => {
    process.stderr.write(
      `exit guard: this test file's process was still alive ${graceMs / 1000} s after its tests ended (a handle left open); ending it\n`,
    );
    process.exit(1);
  }, graceMs).unref();
});
