import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { SessionEvent } from '../api/events.ts';
import type { SessionSummary } from '../audit/store.ts';
import { asciicast } from './commands.ts';

const summary: SessionSummary = {
  id: 's1',
  connection: 'bastion',
  namespace: 'ops',
  protocol: 'ssh',
  identity: 'system:serviceaccount:ops:deploy-bot',
  started: '2026-11-22T03:00:00.000Z',
  requests: 0,
  blocked: 0,
  masked: 0,
};
const base = {
  version: 1 as const,
  sessionId: 's1',
  time: '2026-11-22T03:00:00.000Z',
  connection: { name: 'bastion', namespace: 'ops', protocol: 'ssh' },
  identity: { namespace: 'ops', serviceAccount: 'deploy-bot' },
};

test('a shell session becomes asciicast v2: a header, then input and output frames in order', () => {
  const events: SessionEvent[] = [
    { ...base, id: 'a', seq: 0, type: 'session.start', client: { address: '10.0.0.1:5000' } },
    { ...base, id: 'b', seq: 1, type: 'data', stream: 'output', at: 0.1, data: '$ ' },
    { ...base, id: 'c', seq: 2, type: 'data', stream: 'input', at: 1.5, data: 'uptime\r' },
    { ...base, id: 'd', seq: 3, type: 'data', stream: 'output', at: 1.6, data: ' 03:00 up 1 day\r\n' },
  ];
  const cast = asciicast(summary, events)!;
  assert.deepEqual(cast[0], {
    version: 2,
    width: 80,
    height: 24,
    timestamp: 1795316400,
    title: 'bastion as system:serviceaccount:ops:deploy-bot',
  });
  assert.deepEqual(cast.slice(1), [
    [0.1, 'o', '$ '],
    [1.5, 'i', 'uptime\r'],
    [1.6, 'o', ' 03:00 up 1 day\r\n'],
  ]);
});

test('a session without terminal data has no asciicast (it replays as its timeline)', () => {
  const events: SessionEvent[] = [
    { ...base, id: 'a', seq: 0, type: 'request', text: 'SELECT 1', outcome: 'allowed', durationMs: 1 },
  ];
  assert.equal(asciicast(summary, events), undefined);
});
