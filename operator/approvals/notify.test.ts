import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { AccessRequest } from '../../api/v1alpha1.ts';
import { parseOperatorFlags } from '../command.ts';
import {
  type AccessRequestNotification,
  dueNotifications,
  formatNotifications,
  notificationOf,
  outcomeType,
  slackText,
} from './notify.ts';

const now = new Date('2030-01-02T03:04:05.000Z');

function accessRequest(overrides: Partial<AccessRequest['spec']> = {}, status?: AccessRequest['status']) {
  return {
    apiVersion: 'airlock.dev/v1alpha1',
    kind: 'AccessRequest',
    metadata: { name: 'ar-0a1b2c3d4e', namespace: 'agents', uid: 'uid-1' },
    spec: {
      connection: 'orders-db',
      policy: 'agent-orders',
      rule: 'writes',
      requester: { pod: 'agent-0', serviceAccount: 'agent' },
      request: "UPDATE orders SET status = $1 WHERE id < 3 AND note = '<!channel> ```x```'",
      reasons: ['rule writes: statement UPDATE'],
      ...overrides,
    },
    status: status ?? { phase: 'Pending', expiresAt: '2030-01-02T03:06:05.000Z' },
  } satisfies AccessRequest;
}

const approvers = { groups: ['dba-oncall'], users: ['carol'] };

test('created: every fact of the request and the commands that decide it', () => {
  const n = notificationOf('accessrequest.created', accessRequest(), { approvers, now });
  assert.deepEqual(n, {
    version: 1,
    id: 'uid-1/accessrequest.created',
    type: 'accessrequest.created',
    time: '2030-01-02T03:04:05.000Z',
    namespace: 'agents',
    name: 'ar-0a1b2c3d4e',
    phase: 'Pending',
    requester: { namespace: 'agents', serviceAccount: 'agent', pod: 'agent-0' },
    connection: 'orders-db',
    policy: 'agent-orders',
    rule: 'writes',
    text: "UPDATE orders SET status = $1 WHERE id < 3 AND note = '<!channel> ```x```'",
    reasons: ['rule writes: statement UPDATE'],
    approvers: { groups: ['dba-oncall'], users: ['carol'] },
    expiresAt: '2030-01-02T03:06:05.000Z',
    decide: {
      approve: 'kubectl airlock approve ar-0a1b2c3d4e -n agents',
      deny: 'kubectl airlock deny ar-0a1b2c3d4e -n agents --reason TEXT',
    },
  });
});

test('outcomes: the phase names the type; decidedBy and the reason come with it', () => {
  assert.equal(outcomeType('Pending'), undefined);
  assert.equal(outcomeType(undefined), undefined);
  assert.equal(outcomeType('Approved'), 'accessrequest.approved');
  assert.equal(outcomeType('Denied'), 'accessrequest.denied');
  assert.equal(outcomeType('Expired'), 'accessrequest.expired');
  const denied = notificationOf(
    'accessrequest.denied',
    accessRequest(
      { decision: { action: 'deny', reason: 'not during the freeze' } },
      { phase: 'Denied', decidedBy: 'alice', decidedAt: '2030-01-02T03:05:00.000Z' },
    ),
    { now },
  );
  assert.equal(denied.id, 'uid-1/accessrequest.denied');
  assert.equal(denied.phase, 'Denied');
  assert.equal(denied.decidedBy, 'alice');
  assert.equal(denied.decidedAt, '2030-01-02T03:05:00.000Z');
  assert.equal(denied.reason, 'not during the freeze');
  assert.equal(denied.decide, undefined, 'nothing left to decide');
  assert.equal(denied.approvers, undefined, 'the policy was not found');
});

test('generic: NDJSON, one notification a line, as built', () => {
  const items: AccessRequestNotification[] = [
    notificationOf('accessrequest.created', accessRequest(), { approvers, now }),
    notificationOf('accessrequest.expired', accessRequest({}, { phase: 'Expired' }), { now }),
  ];
  const { body, contentType } = formatNotifications('generic', items);
  assert.equal(contentType, 'application/x-ndjson');
  assert.ok(body.endsWith('\n'));
  const lines = body.trimEnd().split('\n');
  assert.equal(lines.length, 2);
  assert.deepEqual(
    lines.map((line) => JSON.parse(line)),
    items,
  );
});

test('slack: a readable message with the facts and the command; the text cannot mention or break out', () => {
  const created = notificationOf('accessrequest.created', accessRequest(), { approvers, now });
  const { body, contentType } = formatNotifications('slack', [created]);
  assert.equal(contentType, 'application/json');
  const { text } = JSON.parse(body) as { text: string };
  assert.equal(text, slackText(created));
  const lines = text.split('\n');
  assert.equal(lines[0], '*Approval needed:* AccessRequest `ar-0a1b2c3d4e` in `agents`');
  assert.equal(lines[1], '*Requester:* agents/agent (pod agent-0)');
  assert.equal(lines[2], '*Connection:* orders-db  *Rule:* agent-orders/writes');
  // Slack's control characters are escaped, and a ``` in the statement cannot close the block.
  assert.equal(
    lines[3],
    "```UPDATE orders SET status = $1 WHERE id &lt; 3 AND note = '&lt;!channel&gt; `\u200b`\u200b`x`\u200b`\u200b`'```",
  );
  assert.equal(lines[4], '*Why:* rule writes: statement UPDATE');
  assert.equal(lines[5], '*Approvers:* groups dba-oncall; users carol');
  assert.equal(lines[6], '*Expires:* 2030-01-02T03:06:05.000Z');
  assert.equal(
    lines[7],
    '*Decide:* `kubectl airlock approve ar-0a1b2c3d4e -n agents` or `kubectl airlock deny ar-0a1b2c3d4e -n agents --reason TEXT`',
  );
  assert.equal(lines.length, 8);
});

test('slack: outcomes name who decided and why; an expiry names nobody', () => {
  const approved = slackText(
    notificationOf(
      'accessrequest.approved',
      accessRequest(
        { request: 'UPDATE orders SET status = $1', decision: { action: 'approve', reason: 'ticket 42' } },
        { phase: 'Approved', decidedBy: 'alice' },
      ),
    ),
  );
  assert.equal(
    approved,
    [
      '*Approved* by alice: AccessRequest `ar-0a1b2c3d4e` in `agents`',
      '*Requester:* agents/agent (pod agent-0)',
      '*Connection:* orders-db  *Rule:* agent-orders/writes',
      '*Reason:* ticket 42',
      '```UPDATE orders SET status = $1```',
    ].join('\n'),
  );
  const denied = slackText(
    notificationOf(
      'accessrequest.denied',
      accessRequest({ decision: { action: 'deny' } }, { phase: 'Denied', decidedBy: 'alice' }),
    ),
  );
  assert.match(denied, /^\*Denied\* by alice: AccessRequest `ar-0a1b2c3d4e` in `agents`\n/);
  assert.doesNotMatch(denied, /Reason/);
  const expired = slackText(
    notificationOf(
      'accessrequest.expired',
      accessRequest({ request: 'x'.repeat(400) }, { phase: 'Expired' }),
    ),
  );
  assert.match(expired, /^\*Expired\* undecided: AccessRequest `ar-0a1b2c3d4e` in `agents`\n/);
  assert.ok(expired.endsWith(`\`\`\`${'x'.repeat(300)}…\`\`\``), 'a long statement is cut');
  assert.doesNotMatch(expired, /kubectl airlock approve/);
});

test('the operator takes --notify-webhook (repeatable) and --notify-format', () => {
  const defaults = parseOperatorFlags([], {});
  assert.deepEqual(defaults['notify-webhook'], []);
  assert.equal(defaults['notify-format'], 'generic');
  const flags = parseOperatorFlags(
    [
      '--notify-webhook=https://hooks.example.com/a',
      '--notify-webhook',
      'http://127.0.0.1:9000/b',
      '--notify-format=slack',
    ],
    {},
  );
  assert.deepEqual(flags['notify-webhook'], ['https://hooks.example.com/a', 'http://127.0.0.1:9000/b']);
  assert.equal(flags['notify-format'], 'slack');
  assert.throws(() => parseOperatorFlags(['--notify-webhook=not a url'], {}), /^Error: --notify-webhook/);
  assert.throws(() => parseOperatorFlags(['--notify-format=email'], {}), /^Error: --notify-format/);
});

test('what a request is owed: what its status does not list, created first, outcomes while they are news', () => {
  const at = (minutes: number) => new Date(now.getTime() + minutes * 60_000).toISOString();
  const owed = (status: AccessRequest['status'], minutes = 0) =>
    dueNotifications(accessRequest({}, status), new Date(now.getTime() + minutes * 60_000));
  assert.deepEqual(owed({ phase: 'Pending', expiresAt: at(2) }), ['accessrequest.created']);
  assert.deepEqual(owed({}), [], 'not before its status says Pending, with the expiry that applies');
  assert.deepEqual(owed({ phase: 'Pending', notified: ['accessrequest.created'] }), []);
  const approved = { phase: 'Approved' as const, decidedBy: 'alice', decidedAt: at(1) };
  assert.deepEqual(owed({ ...approved, notified: ['accessrequest.created'] }, 1), ['accessrequest.approved']);
  assert.deepEqual(
    owed(approved, 1),
    ['accessrequest.created', 'accessrequest.approved'],
    'never an outcome of a request the receivers did not hear of',
  );
  assert.deepEqual(
    owed({ ...approved, notified: ['accessrequest.created', 'accessrequest.approved'] }, 1),
    [],
  );
  assert.deepEqual(owed(approved, 62), [], 'an hour after the decision it is history, not news');
  assert.deepEqual(owed({ ...approved, notified: ['accessrequest.created'] }, 62), []);
  const expired = { phase: 'Expired' as const, expiresAt: at(2) };
  assert.deepEqual(owed(expired, 3), ['accessrequest.created', 'accessrequest.expired']);
  assert.deepEqual(owed(expired, 63), [], 'the expiry is the moment that ages');
  assert.deepEqual(owed({ phase: 'Denied', notified: ['accessrequest.created'] }, 0), [
    'accessrequest.denied',
  ]);
});
