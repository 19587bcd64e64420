// Notifications of AccessRequests to the configured webhooks (--notify-webhook): one when a
// request is created, one when its phase moves to Approved, Denied or Expired. The leader's
// reconciler sends what a request is owed (dueNotifications) and records in its status what
// every receiver acknowledged, so the AccessRequest itself is the queue: a notification
// unsent when the operator stops or crashes is sent by the next leader (at least once; each
// has an id to dedupe on). Sent with the audit export's sender: in order, retried with
// backoff. What they carry is what the AccessRequest holds: the statement as stored
// (parameters redacted), never a credential.
import type { Logger } from 'pino';
import type {
  AccessRequest,
  AccessRequestPhase,
  accessRequestNotificationTypes,
  PolicyRule,
} from '../../api/v1alpha1.ts';
import {
  ndjson,
  slackMessage,
  type WebhookBody,
  type WebhookFormat,
  WebhookSender,
} from '../../audit/webhook.ts';
import type { Registry } from '../../metrics/registry.ts';

export type NotificationType = (typeof accessRequestNotificationTypes)[number];

export type Approvers = NonNullable<PolicyRule['approval']>['approvers'];

export interface AccessRequestNotification {
  version: 1;
  /** The AccessRequest's uid and the type: the same notification sent again has the same id. */
  id: string;
  type: NotificationType;
  time: string;
  namespace: string;
  name: string;
  phase: AccessRequestPhase;
  requester: { namespace: string; serviceAccount: string; pod: string; user?: string };
  connection: string;
  policy: string;
  rule: string;
  /** The held statement, command or HTTP request, as the AccessRequest stores it. */
  text: string;
  reasons: string[];
  /** Who may decide, from the rule (absent when the policy is gone). */
  approvers?: Approvers;
  expiresAt?: string;
  decidedBy?: string;
  decidedAt?: string;
  /** The approver's reason. */
  reason?: string;
  /** The commands an approver types, on created. */
  decide?: { approve: string; deny: string };
}

const outcomes: Partial<Record<AccessRequestPhase, NotificationType>> = {
  Approved: 'accessrequest.approved',
  Denied: 'accessrequest.denied',
  Expired: 'accessrequest.expired',
};

/** The notification a move to `phase` sends, if any (none for Pending). */
export function outcomeType(phase: AccessRequestPhase | undefined): NotificationType | undefined {
  return phase ? outcomes[phase] : undefined;
}

/** How long a decision or an expiry is news: past it, an unsent outcome is not sent any more. */
export const outcomeNewsMs = 60 * 60_000;

/**
 * The notifications an AccessRequest is owed, in the order they are sent: those its status does
 * not list as acknowledged. `created` once its status says Pending, with the expiry that
 * applies (or before an outcome that is owed, so
 * a receiver never learns an outcome of a request it never heard of); the outcome while it is
 * news (an hour after the decision or the expiry), so an operator that was down, or is new to
 * requests decided long ago, does not replay history to a chat.
 */
export function dueNotifications(request: AccessRequest, now = new Date()): NotificationType[] {
  const status = request.status ?? {};
  const sent = new Set(status.notified ?? []);
  const outcome = outcomeType(status.phase);
  const since = Date.parse((outcome === 'accessrequest.expired' ? status.expiresAt : status.decidedAt) ?? '');
  const outcomeDue =
    outcome !== undefined && !sent.has(outcome) && now.getTime() - (since || now.getTime()) <= outcomeNewsMs;
  const createdDue = !sent.has('accessrequest.created') && (status.phase === 'Pending' || outcomeDue);
  return [...(createdDue ? (['accessrequest.created'] as const) : []), ...(outcomeDue ? [outcome] : [])];
}

export function decideCommands(namespace: string, name: string): { approve: string; deny: string } {
  return {
    approve: `kubectl airlock approve ${name} -n ${namespace}`,
    deny: `kubectl airlock deny ${name} -n ${namespace} --reason TEXT`,
  };
}

/** A notification from the AccessRequest as it is after the change (its status included). */
export function notificationOf(
  type: NotificationType,
  request: AccessRequest,
  options: { approvers?: Approvers | undefined; now?: Date } = {},
): AccessRequestNotification {
  const namespace = request.metadata.namespace ?? '';
  const { name } = request.metadata;
  const { spec } = request;
  const status = request.status ?? {};
  return {
    version: 1,
    id: `${request.metadata.uid ?? `${namespace}/${name}`}/${type}`,
    type,
    time: (options.now ?? new Date()).toISOString(),
    namespace,
    name,
    phase: status.phase ?? 'Pending',
    requester: {
      namespace,
      serviceAccount: spec.requester.serviceAccount,
      pod: spec.requester.pod,
      ...(spec.requester.user && { user: spec.requester.user }),
    },
    connection: spec.connection,
    policy: spec.policy,
    rule: spec.rule,
    text: spec.request,
    reasons: spec.reasons ?? [],
    ...(options.approvers && { approvers: options.approvers }),
    ...(status.expiresAt && { expiresAt: status.expiresAt }),
    ...(status.decidedBy && { decidedBy: status.decidedBy }),
    ...(status.decidedAt && { decidedAt: status.decidedAt }),
    ...(spec.decision?.reason && { reason: spec.decision.reason }),
    ...(type === 'accessrequest.created' && { decide: decideCommands(namespace, name) }),
  };
}

/** Slack's control characters in text; a `<` would otherwise open a link or a mention. */
const slackEscape = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** The held text as a code block that it cannot close early. */
function codeBlock(text: string, max = 1500): string {
  const cut = text.length > max ? `${text.slice(0, max)}…` : text;
  return `\`\`\`${slackEscape(cut).replace(/```/g, '`\u200b`\u200b`')}\`\`\``;
}

function approversLine(approvers: Approvers | undefined): string | undefined {
  if (!approvers) return undefined;
  const parts = [
    approvers.groups?.length ? `groups ${approvers.groups.join(', ')}` : '',
    approvers.users?.length ? `users ${approvers.users.join(', ')}` : '',
  ].filter(Boolean);
  return parts.length > 0 ? `*Approvers:* ${slackEscape(parts.join('; '))}` : undefined;
}

/** One notification as a readable Slack message (mrkdwn). */
export function slackText(n: AccessRequestNotification): string {
  const subject = `AccessRequest \`${n.name}\` in \`${n.namespace}\``;
  const who = `${n.requester.namespace}/${n.requester.serviceAccount} (pod ${n.requester.pod}${n.requester.user ? `, for ${n.requester.user}` : ''})`;
  const facts = `*Requester:* ${slackEscape(who)}\n*Connection:* ${slackEscape(n.connection)}  *Rule:* ${slackEscape(`${n.policy}/${n.rule}`)}`;
  if (n.type === 'accessrequest.created') {
    return [
      `*Approval needed:* ${subject}`,
      facts,
      codeBlock(n.text),
      n.reasons.length > 0 ? `*Why:* ${slackEscape(n.reasons.join('; '))}` : undefined,
      approversLine(n.approvers),
      n.expiresAt ? `*Expires:* ${n.expiresAt}` : undefined,
      n.decide ? `*Decide:* \`${n.decide.approve}\` or \`${n.decide.deny}\`` : undefined,
    ]
      .filter((line) => line !== undefined)
      .join('\n');
  }
  const headline =
    n.type === 'accessrequest.expired'
      ? `*Expired* undecided: ${subject}`
      : `*${n.type === 'accessrequest.approved' ? 'Approved' : 'Denied'}* by ${slackEscape(n.decidedBy ?? 'unknown')}: ${subject}`;
  return [
    headline,
    facts,
    n.reason ? `*Reason:* ${slackEscape(n.reason)}` : undefined,
    codeBlock(n.text, 300),
  ]
    .filter((line) => line !== undefined)
    .join('\n');
}

/** One batch as the receiver gets it: NDJSON, or one Slack message. */
export function formatNotifications(
  format: WebhookFormat,
  notifications: AccessRequestNotification[],
): WebhookBody {
  if (format === 'generic') return ndjson(notifications);
  return slackMessage(notifications.map(slackText).join('\n\n'));
}

export interface Notifier {
  /** Resolves true once every receiver has acknowledged it. */
  notify(notification: AccessRequestNotification): Promise<boolean>;
  stop(): void;
}

/** Senders to every configured receiver (none: notifications go nowhere). */
export function webhookNotifier(
  urls: string[],
  format: WebhookFormat,
  context: { logger: Logger; registry?: Registry },
): Notifier {
  const senders = urls.map(
    (url) =>
      new WebhookSender<AccessRequestNotification>({
        url,
        stream: 'notifications',
        encode: (batch) => formatNotifications(format, batch),
        logger: context.logger,
        ...(context.registry && { registry: context.registry }),
        // A chat gets one message per request; a generic receiver gets NDJSON batches.
        ...(format === 'slack' && { batchSize: 1 }),
        flushMs: 50,
      }),
  );
  return {
    async notify(notification) {
      const acknowledged = await Promise.all(senders.map((sender) => sender.push(notification)));
      return acknowledged.every(Boolean);
    },
    stop() {
      for (const sender of senders) sender.stop();
    },
  };
}
