// Verifies the token an agent presents for the person it acts for (Connection endUser): an
// OIDC JWT from the organisation's identity provider, checked as the API server's OIDC
// authenticator checks one. The signing keys come from the issuer's discovery document
// (jwks_uri), fetched by the sidecar itself and cached; a token signed with a key the cache
// does not know makes it fetch the set again (key rotation), at most once per cooldown.
// Only asymmetric algorithms are accepted: with HS256 an agent could sign with the provider's
// public key as the HMAC secret, and `none` signs nothing.
import type { LookupFunction } from 'node:net';
import {
  createRemoteJWKSet,
  customFetch,
  decodeJwt,
  decodeProtectedHeader,
  errors,
  type JWTPayload,
  jwtVerify,
} from 'jose';
import type { BundleConnection, EndUser } from '../../api/bundle.ts';
import { AirlockError } from '../core/errors.ts';
import { providerFetch } from './fetch.ts';

export type EndUserSettings = NonNullable<BundleConnection['endUser']>;

/** The algorithms a token may be signed with: asymmetric only. */
export const allowedAlgorithms = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
];

/** Longest token read: far above any real ID token, bounding what an agent can make us parse. */
export const maxTokenLength = 16 * 1024;

/** Seconds of clock difference tolerated on exp, nbf and iat. */
export const clockToleranceSeconds = 5;

/** A token that cannot stand for a person: refused with the reason, in the protocol's own terms. */
export class EndUserRefusal extends AirlockError {
  constructor(message: string) {
    super('unauthenticated', message);
  }
}

interface Keys {
  jwks: ReturnType<typeof createRemoteJWKSet>;
}

export class EndUserVerifier {
  readonly settings: EndUserSettings;
  readonly #issuer: string;
  readonly #fetch: ReturnType<typeof providerFetch>;
  #keys: Promise<Keys> | undefined;

  /** lookup: how the provider's name is resolved (the sidecar's resolver), the system's when absent. */
  constructor(settings: EndUserSettings, lookup?: LookupFunction) {
    this.settings = settings;
    this.#issuer = settings.issuer;
    this.#fetch = providerFetch(lookup, settings.ca);
  }

  /** The person the token stands for, with the Connection's prefixes; throws EndUserRefusal. */
  async verify(token: string): Promise<EndUser> {
    if (token.length === 0) throw new EndUserRefusal('an end-user token is required and none was given');
    if (token.length > maxTokenLength)
      throw new EndUserRefusal(`the end-user token is longer than ${maxTokenLength} bytes`);
    // Read unverified only to say why a token is refused; nothing is trusted before jwtVerify.
    let alg: unknown;
    let issuer: unknown;
    try {
      alg = decodeProtectedHeader(token).alg;
      issuer = decodeJwt(token).iss;
    } catch {
      throw new EndUserRefusal('the end-user token is not a signed JWT');
    }
    if (typeof alg !== 'string' || !allowedAlgorithms.includes(alg))
      throw new EndUserRefusal(
        `the end-user token's algorithm ${JSON.stringify(alg)} is not allowed (only asymmetric signatures are)`,
      );
    if (issuer !== this.#issuer)
      throw new EndUserRefusal(
        `the end-user token is from an unknown issuer ${JSON.stringify(issuer)}, not ${this.#issuer}`,
      );
    const { jwks } = await this.#keySet();
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, jwks, {
        issuer: this.#issuer,
        audience: this.settings.audiences,
        algorithms: allowedAlgorithms,
        clockTolerance: clockToleranceSeconds,
        requiredClaims: ['exp'],
      }));
    } catch (error) {
      throw new EndUserRefusal(reason(error));
    }
    return this.#person(payload);
  }

  #person(payload: JWTPayload): EndUser {
    const { usernameClaim, groupsClaim } = this.settings;
    const name = payload[usernameClaim];
    if (typeof name !== 'string' || name === '')
      throw new EndUserRefusal(`the end-user token has no ${usernameClaim} claim to name the person`);
    const raw = payload[groupsClaim];
    const groups = raw === undefined ? [] : Array.isArray(raw) ? raw : [raw];
    if (!groups.every((g): g is string => typeof g === 'string'))
      throw new EndUserRefusal(
        `the end-user token's ${groupsClaim} claim must be a string or a list of strings`,
      );
    const userPrefix = this.settings.usernamePrefix ?? '';
    const groupPrefix = this.settings.groupsPrefix ?? '';
    return { user: `${userPrefix}${name}`, groups: [...new Set(groups)].map((g) => `${groupPrefix}${g}`) };
  }

  /** The issuer's key set, from its discovery document; asked again after a failure. */
  #keySet(): Promise<Keys> {
    this.#keys ??= this.#discover().catch((error: Error) => {
      this.#keys = undefined;
      const cause = error.cause instanceof Error ? `: ${error.cause.message}` : '';
      // Node's reason, without its hint about the process's own trust store.
      const why = isCertificateFailure(error)
        ? `its TLS certificate is not trusted (${error.message.split(';')[0]}): ${this.settings.ca === undefined ? 'it does not chain to the system roots; name its CA in endUser.caSecretRef' : 'it does not chain to the CA of endUser.caSecretRef'}`
        : `${error.message}${cause}`;
      throw new EndUserRefusal(`Airlock could not read the keys of ${this.#issuer}: ${why}`);
    });
    return this.#keys;
  }

  async #discover(): Promise<Keys> {
    const url = `${this.#issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
    const response = await this.#fetch(url, { signal: AbortSignal.timeout(10_000) });
    if (!response.ok) throw new Error(`${url} answered ${response.status}`);
    const document = (await response.json()) as { issuer?: unknown; jwks_uri?: unknown };
    if (document.issuer !== this.#issuer)
      throw new Error(`the discovery document names issuer ${JSON.stringify(document.issuer)}`);
    if (typeof document.jwks_uri !== 'string' || !document.jwks_uri.startsWith('https://'))
      throw new Error('the discovery document has no https jwks_uri');
    return {
      jwks: createRemoteJWKSet(new URL(document.jwks_uri), {
        timeoutDuration: 10_000,
        cooldownDuration: 30_000,
        cacheMaxAge: 10 * 60_000,
        [customFetch]: this.#fetch,
      }),
    };
  }
}

/** Whether fetching failed because the provider's certificate was not trusted (Node's TLS codes). */
function isCertificateFailure(error: Error): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  return (
    typeof code === 'string' &&
    (/CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY|DECRYPT|DECODE)/.test(code) ||
      code === 'ERR_TLS_CERT_ALTNAME_INVALID')
  );
}

/** Why jose refused a token, as the agent and the audit trail read it. */
function reason(error: unknown): string {
  if (error instanceof errors.JWTExpired) return 'the end-user token has expired';
  if (error instanceof errors.JWTClaimValidationFailed) {
    if (error.claim === 'aud')
      return 'the end-user token is for the wrong audience (its aud names none of the Connection audiences)';
    if (error.claim === 'iss') return 'the end-user token is from an unknown issuer';
    if (error.claim === 'nbf') return 'the end-user token is not valid yet';
    return `the end-user token's ${error.claim} claim is invalid: ${error.message}`;
  }
  if (error instanceof errors.JWSSignatureVerificationFailed || error instanceof errors.JWKSNoMatchingKey)
    return 'the end-user token has a bad signature (no key the issuer publishes verifies it)';
  if (error instanceof errors.JOSEAlgNotAllowed) return "the end-user token's algorithm is not allowed";
  if (error instanceof errors.JWKSTimeout || error instanceof errors.JOSEError)
    return `the end-user token could not be verified: ${(error as Error).message}`;
  return `the end-user token could not be verified: ${error instanceof Error ? error.message : String(error)}`;
}
