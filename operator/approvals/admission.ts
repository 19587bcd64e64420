// Admission of AccessRequest writes: pure functions over an AdmissionRequest, served by the
// webhook server (operator/approvals/webhook.ts).
//
// Who decided is recorded at admission, because only the API server knows it: the mutating
// webhook writes the annotation airlock.dev/decided-by from userInfo when a decision is first
// written (and restores the stored value on every other write, whatever the body claims); the
// validating webhook then admits the decision only from an approver the rule lists, never the
// requester, once, and checks that the annotation still names the user. The controller copies
// the annotation into status.decidedBy.
import type { AccessPolicy, AccessRequest, PolicyRule } from '../../api/v1alpha1.ts';

export const decidedByAnnotation = 'airlock.dev/decided-by';

export interface AdmissionRequest {
  uid: string;
  kind?: { group?: string; kind?: string };
  subResource?: string;
  namespace?: string;
  operation?: string;
  userInfo?: { username?: string; groups?: string[] };
  object?: AccessRequest;
  oldObject?: AccessRequest;
}

export interface AdmissionResponse {
  uid: string;
  allowed: boolean;
  patchType?: 'JSONPatch';
  patch?: string;
  status?: { code: number; reason?: string; message: string };
  auditAnnotations?: Record<string, string>;
}

/** Looks an AccessPolicy up in the operator's cache. */
export type PolicyLookup = (namespace: string, name: string) => AccessPolicy | undefined;

const applies = (request: AdmissionRequest) =>
  request.kind?.group === 'airlock.dev' &&
  request.kind?.kind === 'AccessRequest' &&
  !request.subResource &&
  request.object !== undefined;

const refuse = (uid: string, message: string): AdmissionResponse => ({
  uid,
  allowed: false,
  status: { code: 403, reason: 'Forbidden', message: `airlock: ${message}` },
});

const pointerToken = (key: string) => key.replace(/~/g, '~0').replace(/\//g, '~1');

function newlyDecided(request: AdmissionRequest): boolean {
  return (
    request.operation === 'UPDATE' && !request.oldObject?.spec?.decision && !!request.object?.spec?.decision
  );
}

/**
 * Mutating: on a first decision, sets the decided-by annotation to the user the API server
 * authenticated, overwriting whatever the body says; refuses any other write of it.
 */
export function mutateAccessRequest(request: AdmissionRequest): AdmissionResponse {
  const allowed: AdmissionResponse = { uid: request.uid, allowed: true };
  if (!applies(request) || (request.operation !== 'CREATE' && request.operation !== 'UPDATE')) return allowed;
  const annotations = request.object!.metadata?.annotations;
  const have = annotations?.[decidedByAnnotation];
  if (!newlyDecided(request)) {
    const stored = request.oldObject?.metadata?.annotations?.[decidedByAnnotation];
    if (have === stored) return allowed;
    return refuse(
      request.uid,
      `AccessRequest ${request.object!.metadata?.name ?? ''}: the ${decidedByAnnotation} annotation is written by Airlock when a decision is made, and cannot be changed`,
    );
  }
  const want = request.userInfo?.username ?? '';
  if (have === want) return allowed;
  const path = `/metadata/annotations/${pointerToken(decidedByAnnotation)}`;
  const patch = annotations
    ? [{ op: 'add', path, value: want }]
    : [{ op: 'add', path: '/metadata/annotations', value: { [decidedByAnnotation]: want } }];
  return {
    ...allowed,
    patchType: 'JSONPatch',
    patch: Buffer.from(JSON.stringify(patch)).toString('base64'),
  };
}

function ruleOf(policies: PolicyLookup, request: AccessRequest): PolicyRule | undefined {
  const policy = policies(request.metadata.namespace ?? '', request.spec.policy);
  return policy?.spec.rules?.find((r) => r.name === request.spec.rule);
}

const same = (a: unknown, b: unknown) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);

/** Validating: who may decide, once; nothing else in spec changes. */
export function validateAccessRequest(
  request: AdmissionRequest,
  policies: PolicyLookup,
  now: Date = new Date(),
): AdmissionResponse {
  const allowed: AdmissionResponse = { uid: request.uid, allowed: true };
  if (!applies(request)) return allowed;
  const object = request.object!;
  const name = object.metadata?.name ?? '';
  if (request.operation === 'CREATE') {
    if (object.spec?.decision) return refuse(request.uid, 'an AccessRequest is created without a decision');
    return allowed;
  }
  if (request.operation !== 'UPDATE' || !request.oldObject) return allowed;
  const old = request.oldObject;
  for (const field of ['connection', 'policy', 'rule', 'requester', 'request', 'reasons'] as const) {
    if (!same(old.spec[field], object.spec[field])) {
      return refuse(
        request.uid,
        `AccessRequest ${name}: spec.${field} cannot be changed; only spec.decision is written, once`,
      );
    }
  }
  const username = request.userInfo?.username ?? '';
  const annotation = object.metadata?.annotations?.[decidedByAnnotation];
  if (old.spec.decision) {
    if (!same(old.spec.decision, object.spec.decision)) {
      const by = old.metadata?.annotations?.[decidedByAnnotation] ?? 'someone';
      return refuse(
        request.uid,
        `AccessRequest ${name} was already decided (${old.spec.decision.action}) by ${by}; a decision cannot be changed`,
      );
    }
    if (annotation !== old.metadata?.annotations?.[decidedByAnnotation]) {
      return refuse(
        request.uid,
        `AccessRequest ${name}: the ${decidedByAnnotation} annotation cannot be changed`,
      );
    }
    return allowed;
  }
  if (!object.spec.decision) {
    if (annotation !== undefined) {
      return refuse(
        request.uid,
        `AccessRequest ${name}: the ${decidedByAnnotation} annotation is set by Airlock`,
      );
    }
    return allowed;
  }
  // A first decision.
  const phase = old.status?.phase;
  const expiresAt = old.status?.expiresAt ? Date.parse(old.status.expiresAt) : undefined;
  if (phase === 'Expired' || (expiresAt !== undefined && expiresAt <= now.getTime())) {
    return refuse(
      request.uid,
      `AccessRequest ${name} expired at ${old.status?.expiresAt}; it can no longer be decided`,
    );
  }
  if (phase && phase !== 'Pending') {
    return refuse(request.uid, `AccessRequest ${name} is already ${phase}; a decision cannot be changed`);
  }
  const requester = object.spec.requester;
  const namespace = object.metadata?.namespace ?? request.namespace ?? '';
  if (
    username === `system:serviceaccount:${namespace}:${requester.serviceAccount}` ||
    username === requester.user
  ) {
    return refuse(
      request.uid,
      `${username} requested ${name} and cannot decide it: nobody may approve their own request`,
    );
  }
  const rule = ruleOf(policies, object);
  if (!rule?.approval) {
    return refuse(
      request.uid,
      `AccessRequest ${name}: AccessPolicy ${namespace}/${object.spec.policy} has no rule ${object.spec.rule} that requires approval, so nobody can decide it`,
    );
  }
  const users = rule.approval.approvers.users ?? [];
  const groups = rule.approval.approvers.groups ?? [];
  const member = (request.userInfo?.groups ?? []).some((g) => groups.includes(g));
  if (!users.includes(username) && !member) {
    const listed =
      [...users.map((u) => `user ${u}`), ...groups.map((g) => `group ${g}`)].join(', ') || 'nobody';
    return refuse(
      request.uid,
      `${username} may not decide ${name}: rule ${object.spec.policy}/${object.spec.rule} lists as approvers ${listed}`,
    );
  }
  if (annotation !== username) {
    return refuse(
      request.uid,
      `AccessRequest ${name}: the ${decidedByAnnotation} annotation must name the deciding user`,
    );
  }
  return {
    ...allowed,
    auditAnnotations: { 'airlock.dev/decision': `${object.spec.decision.action} by ${username}` },
  };
}
