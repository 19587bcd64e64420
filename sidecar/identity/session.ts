// Who a session acts for, decided once at its start: the end user from the token the agent
// presented (verified), and the policies that apply to that person. Policies that name no end
// user apply to every session; a policy granted only for certain people applies only when the
// verified token names one of them, never to a session without a token (fail closed). A
// session that no policy applies to is refused: the workload holds no grant of its own.
import {
  type BundleConnection,
  type BundlePolicy,
  type EndUser,
  type Identity,
  policiesFor,
} from '../../api/bundle.ts';
import { AirlockError } from '../core/errors.ts';
import { EndUserRefusal, type EndUserVerifier } from './verifier.ts';

/** Three base64url parts, the signature possibly empty (as an unsigned token has it). */
const jwtShape = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

export interface ActingFor {
  /** The workload identity, with the end user's user and groups when there is one. */
  identity: Identity;
  endUser?: EndUser;
  policies: BundlePolicy[];
}

/**
 * The session's end user and policies. `token` is what the agent presented (undefined or
 * empty: nothing). Throws EndUserRefusal for a missing or failing token, and an AirlockError
 * (policy-denied) when no policy applies to the person.
 */
export async function actingFor(
  connection: BundleConnection,
  identity: Identity,
  verifier: EndUserVerifier | undefined,
  token: string | undefined,
): Promise<ActingFor> {
  if (!connection.endUser || !verifier) return { identity, policies: connection.policies };
  // Where a token is optional, a credential that is not shaped as a JWT (the password an agent
  // always sent, another scheme's header) is not one; whatever is shaped as one is verified.
  const presented =
    connection.endUser.required || (token !== undefined && jwtShape.test(token)) ? token : undefined;
  let endUser: EndUser | undefined;
  if (presented) endUser = await verifier.verify(presented);
  else if (connection.endUser.required)
    throw new EndUserRefusal(`Connection ${connection.name} requires an end-user token and none was given`);
  const policies = policiesFor(connection.policies, endUser);
  if (policies.length === 0)
    throw new AirlockError(
      'policy-denied',
      `no AccessPolicy grants Connection ${connection.name} to ${identity.namespace}/${identity.serviceAccount}${endUser ? ` acting for ${endUser.user}` : ' without an end user'}`,
    );
  return {
    identity: endUser ? { ...identity, user: endUser.user, groups: endUser.groups } : identity,
    ...(endUser && { endUser }),
    policies,
  };
}

/**
 * What an enforcer builds from a set of policies (a policy engine, masking plans), built once
 * per distinct set: sessions acting for people in the same groups share it.
 */
export class PolicyVariants<T> {
  readonly #build: (policies: BundlePolicy[]) => T;
  readonly #built = new Map<string, T>();

  constructor(build: (policies: BundlePolicy[]) => T) {
    this.#build = build;
  }

  for(policies: BundlePolicy[]): T {
    const key = policies.map((p) => `${p.namespace}/${p.name}`).join('\n');
    let variant = this.#built.get(key);
    if (variant === undefined) {
      variant = this.#build(policies);
      this.#built.set(key, variant);
    }
    return variant;
  }
}
