// The console's OpenID Connect relying party: the authorization code flow with PKCE (S256), a
// state and a nonce, through openid-client, which checks the ID token (issuer, audience,
// signature from the provider's JWKS, expiry, nonce). The person is read from the ID token as
// the API server's own OIDC authenticator reads it: a username claim and a groups claim, each
// under the configured prefix, so names from the provider can never be a ServiceAccount,
// system:masters or any other identity outside that prefix.
import * as client from 'openid-client';
import type { Person } from './impersonation.ts';

export interface OidcSettings {
  issuer: URL;
  clientId: string;
  clientSecret: string;
  /** The console's own callback, registered with the provider. */
  redirectUri: URL;
  /** The ID token claim that names the person: sub (the API server's default) or email. */
  usernameClaim: string;
  groupsClaim: string;
  /**
   * The provider's groups the console passes on (the chart's RBAC lets the operator impersonate
   * exactly these, prefixed); others in the token are dropped.
   */
  groups: string[];
  /** What to ask the provider for: some release groups only for a scope (Dex: groups). */
  scopes: string;
  /** Put before the user and each group, like the API server's --oidc-username-prefix. */
  prefix: string;
}

/** What a sign-in in progress keeps on the server until the provider sends the person back. */
export interface PendingSignIn {
  verifier: string;
  state: string;
  nonce: string;
}

export interface SignedIn {
  person: Person;
  /** When the ID token expires (ms since the epoch): the console session ends then. */
  expiresAt: number;
  idToken: string;
}

export interface RelyingParty {
  /** Where to send the browser, and what to keep until it returns. */
  begin(): Promise<{ url: URL; pending: PendingSignIn }>;
  /** Redeems the code the provider returned to `callback`, checking state, PKCE and nonce. */
  finish(callback: URL, pending: PendingSignIn): Promise<SignedIn>;
  /** The provider's sign-out page, when it has one. */
  endSessionUrl(idToken: string): Promise<URL | undefined>;
}

/** The person an ID token names, under the prefix; an error says which claim is missing. */
export function personFromClaims(claims: Record<string, unknown>, settings: OidcSettings): Person {
  const name = claims[settings.usernameClaim];
  if (typeof name !== 'string' || name === '')
    throw new Error(`the ID token has no ${settings.usernameClaim} claim to name the user`);
  // As the API server: an email claim counts only when the provider says it was verified.
  if (settings.usernameClaim === 'email' && claims.email_verified === false)
    throw new Error('the ID token says its email address is not verified');
  const raw = claims[settings.groupsClaim];
  const groups = raw === undefined ? [] : Array.isArray(raw) ? raw : [raw];
  if (!groups.every((g) => typeof g === 'string'))
    throw new Error(`the ID token's ${settings.groupsClaim} claim must be a string or a list of strings`);
  return {
    user: `${settings.prefix}${name}`,
    groups: groups.filter((g) => settings.groups.includes(g)).map((g) => `${settings.prefix}${g}`),
  };
}

export function relyingParty(settings: OidcSettings): RelyingParty {
  // Discovered on first use and kept: the provider may be down while the operator starts.
  let configuration: Promise<client.Configuration> | undefined;
  const configured = () => {
    configuration ??= client
      .discovery(settings.issuer, settings.clientId, settings.clientSecret)
      .catch((error: unknown) => {
        configuration = undefined;
        throw new Error(
          `the OpenID provider ${settings.issuer} could not be discovered: ${(error as Error).message}`,
        );
      });
    return configuration;
  };
  return {
    async begin() {
      const config = await configured();
      const pending = {
        verifier: client.randomPKCECodeVerifier(),
        state: client.randomState(),
        nonce: client.randomNonce(),
      };
      const url = client.buildAuthorizationUrl(config, {
        redirect_uri: settings.redirectUri.href,
        scope: settings.scopes,
        code_challenge: await client.calculatePKCECodeChallenge(pending.verifier),
        code_challenge_method: 'S256',
        state: pending.state,
        nonce: pending.nonce,
      });
      return { url, pending };
    },
    async finish(callback, pending) {
      const config = await configured();
      const tokens = await client.authorizationCodeGrant(config, callback, {
        pkceCodeVerifier: pending.verifier,
        expectedState: pending.state,
        expectedNonce: pending.nonce,
        idTokenExpected: true,
      });
      const claims = tokens.claims()!;
      return {
        person: personFromClaims(claims, settings),
        expiresAt: claims.exp * 1000,
        idToken: tokens.id_token!,
      };
    },
    async endSessionUrl(idToken) {
      const config = await configured();
      if (!config.serverMetadata().end_session_endpoint) return undefined;
      return client.buildEndSessionUrl(config, { id_token_hint: idToken });
    },
  };
}
