import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { SessionEvent } from '../api/events.ts';
import { StoreSink } from './sink.ts';
import type { AuditStore } from './store.ts';

const event = (id: number, type: 'request' | 'data'): SessionEvent =>
  ({ id: String(id), type, sessionId: 's', seq: id }) as unknown as SessionEvent;

/** A store that records what it is given and can be told to fail or stall. */
function recordingStore() {
  const appended: string[] = [];
  let failures = 0;
  let gate: Promise<void> = Promise.resolve();
  const store = {
    append: async (events: SessionEvent[]) => {
      await gate;
      if (failures > 0) {
        failures--;
        throw new Error('store down');
      }
      appended.push(...events.map((e) => e.id));
      return events.length;
    },
  } as unknown as AuditStore;
  return {
    store,
    appended,
    fail: (n: number) => {
      failures = n;
    },
    stall: () => {
      let open!: () => void;
      gate = new Promise((resolve) => {
        open = resolve;
      });
      return open;
    },
  };
}

test('events are appended in order, and a failed batch is retried, not lost or reordered', async () => {
  const { store, appended, fail } = recordingStore();
  const errors: unknown[] = [];
  const sink = new StoreSink(store, { onError: (e) => errors.push(e), batchSize: 3 });
  fail(1);
  for (let i = 0; i < 5; i++) sink.emit(event(i, 'request'));
  await sink.flush();
  await sink.flush();
  assert.equal(errors.length, 1);
  assert.deepEqual(appended, ['0', '1', '2', '3', '4']);
});

test('past the bound, terminal data is shed before statements, and counted', async () => {
  const { store, appended, stall } = recordingStore();
  const open = stall();
  let shed = 0;
  const sink = new StoreSink(store, {
    onError: () => {},
    maxQueued: 4,
    batchSize: 100,
    onShed: (n) => (shed = n),
  });
  sink.emit(event(1, 'request'));
  sink.emit(event(2, 'data'));
  sink.emit(event(3, 'data'));
  sink.emit(event(4, 'request'));
  sink.emit(event(5, 'request')); // sheds data 2
  sink.emit(event(6, 'data')); // sheds data 3, keeps 6
  sink.emit(event(7, 'request')); // sheds data 6
  assert.equal(sink.shed, 3);
  assert.equal(shed, 3);
  open();
  await sink.flush();
  assert.deepEqual(appended, ['1', '4', '5', '7']);
});
