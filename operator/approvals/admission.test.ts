import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { AccessPolicy, AccessRequest } from '../../api/v1alpha1.ts';
import {
  type AdmissionRequest,
  decidedByAnnotation,
  mutateAccessRequest,
  validateAccessRequest,
} from './admission.ts';
import { desiredStatus } from './service.ts';

const policy = {
  apiVersion: 'airlock.dev/v1alpha1',
  kind: 'AccessPolicy',
  metadata: { name: 'p', namespace: 'agents' },
  spec: {
    subjects: [{ kind: 'ServiceAccount', name: 'agent' }],
    connections: ['db'],
    mode: 'enforce',
    recording: { enabled: true, results: 'summary' },
    rules: [
      {
        name: 'writes',
        action: 'require-approval',
        sql: { statements: ['UPDATE'] },
        approval: {
          approvers: { groups: ['dba-oncall'], users: ['carol'] },
          timeout: '15m',
          scope: 'statement',
        },
      },
    ],
  },
} as unknown as AccessPolicy;
const policies = (namespace: string, name: string) =>
  namespace === 'agents' && name === 'p' ? policy : undefined;

const pending: AccessRequest = {
  apiVersion: 'airlock.dev/v1alpha1',
  kind: 'AccessRequest',
  metadata: { name: 'ar-1', namespace: 'agents', creationTimestamp: '2026-01-01T00:00:00Z' },
  spec: {
    connection: 'db',
    policy: 'p',
    rule: 'writes',
    requester: { pod: 'agent-0', serviceAccount: 'agent' },
    request: 'UPDATE t SET a = $1',
  },
  status: { phase: 'Pending', expiresAt: '2026-01-01T00:15:00Z' },
};
const now = new Date('2026-01-01T00:05:00Z');

function update(
  user: { username: string; groups?: string[] },
  change: (o: AccessRequest) => AccessRequest,
  old = pending,
): AdmissionRequest {
  return {
    uid: 'u',
    kind: { group: 'airlock.dev', kind: 'AccessRequest' },
    namespace: 'agents',
    operation: 'UPDATE',
    userInfo: user,
    oldObject: old,
    object: change(structuredClone(old)),
  };
}
const decide = (o: AccessRequest, action: 'approve' | 'deny' = 'approve', by?: string) => ({
  ...o,
  metadata: { ...o.metadata, ...(by && { annotations: { [decidedByAnnotation]: by } }) },
  spec: { ...o.spec, decision: { action } },
});
const alice = { username: 'alice', groups: ['dba-oncall'] };

test('mutating: a first decision records the authenticated user, whatever the body claims', () => {
  const response = mutateAccessRequest(update(alice, (o) => decide(o, 'approve', 'mallory')));
  assert.equal(response.allowed, true);
  const patch = JSON.parse(Buffer.from(response.patch!, 'base64').toString());
  assert.deepEqual(patch, [
    { op: 'add', path: '/metadata/annotations/airlock.dev~1decided-by', value: 'alice' },
  ]);
  const bare = JSON.parse(
    Buffer.from(mutateAccessRequest(update(alice, (o) => decide(o))).patch!, 'base64').toString(),
  );
  assert.deepEqual(bare, [
    { op: 'add', path: '/metadata/annotations', value: { [decidedByAnnotation]: 'alice' } },
  ]);
});

test('mutating: any other write of the annotation is refused', () => {
  const decided = decide(pending, 'approve', 'alice');
  const response = mutateAccessRequest(
    update(
      alice,
      (o) => ({ ...o, metadata: { ...o.metadata, annotations: { [decidedByAnnotation]: 'bob' } } }),
      decided,
    ),
  );
  assert.equal(response.allowed, false);
  assert.match(response.status!.message, /cannot be changed/);
});

test('validating: approvers by group or user decide; others, the requester and late deciders do not', () => {
  const check = (user: { username: string; groups?: string[] }, old = pending) =>
    validateAccessRequest(
      update(user, (o) => decide(o, 'approve', user.username), old),
      policies,
      now,
    );
  assert.equal(check(alice).allowed, true);
  assert.equal(check({ username: 'carol' }).allowed, true);
  const bob = check({ username: 'bob', groups: ['developers'] });
  assert.equal(bob.allowed, false);
  assert.match(
    bob.status!.message,
    /bob may not decide ar-1: rule p\/writes lists as approvers user carol, group dba-oncall/,
  );
  const self = check({ username: 'system:serviceaccount:agents:agent', groups: ['dba-oncall'] });
  assert.match(self.status!.message, /nobody may approve their own request/);
  const expired = check(alice, {
    ...pending,
    status: { phase: 'Pending', expiresAt: '2026-01-01T00:01:00Z' },
  });
  assert.match(expired.status!.message, /expired/);
  const gone = validateAccessRequest(
    update(alice, (o) => decide(o, 'approve', 'alice')),
    () => undefined,
    now,
  );
  assert.match(gone.status!.message, /has no rule writes that requires approval/);
});

test('validating: a second decision and other spec edits are refused', () => {
  const decided = decide(pending, 'deny', 'alice');
  const second = validateAccessRequest(
    update(alice, (o) => decide(o, 'approve', 'alice'), decided),
    policies,
    now,
  );
  assert.match(second.status!.message, /already decided \(deny\) by alice/);
  const edit = validateAccessRequest(
    update(alice, (o) => ({ ...o, spec: { ...o.spec, request: 'SELECT 1' } })),
    policies,
    now,
  );
  assert.match(edit.status!.message, /spec.request cannot be changed/);
  const created = validateAccessRequest(
    {
      uid: 'u',
      kind: { group: 'airlock.dev', kind: 'AccessRequest' },
      operation: 'CREATE',
      object: decide(pending),
    },
    policies,
    now,
  );
  assert.equal(created.allowed, false);
});

test('desiredStatus: Pending until the decision or the expiry', () => {
  assert.deepEqual(desiredStatus(pending, now, 900_000), { requeueAfterMs: 600_000 });
  const approved = desiredStatus(decide(pending, 'approve', 'alice'), now, 900_000).status;
  assert.deepEqual(approved, { phase: 'Approved', decidedBy: 'alice', decidedAt: now.toISOString() });
  assert.equal(desiredStatus(decide(pending, 'deny', 'alice'), now, 0).status?.phase, 'Denied');
  assert.deepEqual(desiredStatus(pending, new Date('2026-01-01T00:15:00Z'), 0).status, { phase: 'Expired' });
  // A request without a status: its creator writes it (its expiry may be shorter than the
  // rule's); past the grace, the leader does, from the creation time and the rule.
  const fresh = { ...pending, status: {} };
  const created = Date.parse(pending.metadata.creationTimestamp!);
  assert.deepEqual(desiredStatus(fresh, new Date(created + 1_000), 900_000), { requeueAfterMs: 4_000 });
  assert.deepEqual(desiredStatus(fresh, now, 900_000).status, {
    phase: 'Pending',
    expiresAt: '2026-01-01T00:15:00.000Z',
  });
  assert.deepEqual(desiredStatus({ ...pending, status: { phase: 'Denied' } }, now, 0), {});
});
