// Notifications of AccessRequests to the configured webhooks (--notify-webhook): one when a
// request is created (by the replica that created it), one when its phase moves to Approved,
// Denied or Expired (by the leader's reconciler, whose status patch is conditional on the
// resourceVersion, so one per transition). Sent with the audit export's sender: batches in
// order, retried with backoff, at least once while the process lives; each notification has
// an id to dedupe on. What they carry is what the AccessRequest holds: the statement as stored
// (parameters redacted), never a credential.
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { AccessRequest, AccessRequestPhase, PolicyRule } from '../../api/v1alpha1.ts';
import {
  ndjson,
  slackMessage,
  type WebhookBody,
  type WebhookFormat,
  WebhookSender,
} from '../../audit/webhook.ts';

export type NotificationType =
  | 'accessrequest.created'
  | 'accessrequest.approved'
  | 'accessrequest.denied'
  | 'accessrequest.expired';

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
  notify(notification: AccessRequestNotification): void;
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
    notify(notification) {
      for (const sender of senders) sender.push(notification);
    },
    stop() {
      for (const sender of senders) sender.stop();
    },
  };
}
