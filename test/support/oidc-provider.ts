// A real OpenID provider on loopback for the console's tests: the `oidc-provider` package (a
// certified implementation) over HTTPS with a certificate from a private CA and a freshly generated
// RS256 signing key, one confidential client, and people who sign in through real HTML login
// and consent forms. ID tokens carry email and groups, as the console's flags ask.
import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, request, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { exportJWK, generateKeyPair } from 'jose';
import Provider, { errors } from 'oidc-provider';
import { createCertificateAuthority } from '../../operator/pki.ts';
import { temporaryDirectory } from './process.ts';

export interface OidcPerson {
  email: string;
  password: string;
  groups: string[];
}

export interface OidcProvider {
  issuer: string;
  clientId: string;
  clientSecret: string;
  /** The PEM file of the CA that signed the provider's certificate, for NODE_EXTRA_CA_CERTS. */
  caFile: string;
  /** The base64 SHA-256 of its public key, as Chromium's --ignore-certificate-errors-spki-list takes it. */
  spki: string;
  /**
   * A person's ID token (a JWT for the client as audience), obtained as an application does:
   * the authorization code flow with PKCE, the login and consent forms posted over HTTP, the
   * code exchanged at the token endpoint. ttlSeconds shortens its life (expiry tests).
   */
  idToken(email: string, password: string, options?: { ttlSeconds?: number }): Promise<string>;
  stop(): Promise<void>;
}

/** base64(SHA-256(SubjectPublicKeyInfo)) of a PEM certificate. */
export function spkiHash(pem: string): string {
  const der = new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(der).digest('base64');
}

const html = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

async function form(req: IncomingMessage): Promise<URLSearchParams> {
  let body = '';
  for await (const chunk of req) body += chunk;
  return new URLSearchParams(body);
}

/**
 * An HTTPS server on 127.0.0.1 with a certificate from a CA of its own (`authorityName`), the
 * issuer URL it serves, its certificate, an RS256 signing key as a JWK, and a client secret bound to the issuer.
 */
async function servingIssuer(authorityName: string) {
  const authority = await createCertificateAuthority(authorityName);
  const serving = await authority.issue({
    commonName: '127.0.0.1',
    ipAddresses: ['127.0.0.1'],
    usage: 'server',
  });
  const server: Server = createServer({ key: serving.privateKey, cert: serving.certificate });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const signing = await generateKeyPair('RS256', { extractable: true });
  const jwk = { ...(await exportJWK(signing.privateKey)), kid: 'test-signing-key', alg: 'RS256', use: 'sig' };
  const clientSecret = createHash('sha256').update(issuer).update(String(Math.random())).digest('hex');
  return { authority, certificate: serving.certificate, server, issuer, jwk, clientSecret };
}

export interface ClientCredentialsProvider {
  issuer: string;
  tokenUrl: string;
  clientId: string;
  clientSecret: string;
  /** PEM of the CA that signed the provider's certificate. */
  ca: string;
  /** Access tokens the token endpoint has issued so far. */
  issued(): number;
  stop(): Promise<void>;
}

/**
 * The same provider for machines: one confidential client with only the client_credentials
 * grant, whose access tokens are JWTs (RS256, the provider's JWKS at /jwks) for one resource
 * (RFC 8707, the aud claim) with the scopes asked for, living ttlSeconds.
 */
export async function startClientCredentialsProvider(options: {
  resource: string;
  scopes: string[];
  ttlSeconds: number;
}): Promise<ClientCredentialsProvider> {
  const { authority, server, issuer, jwk, clientSecret } = await servingIssuer('test OAuth provider CA');
  const clientId = 'airlock-sidecar';
  let issued = 0;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'client_secret_basic',
        scope: options.scopes.join(' '),
      },
    ],
    jwks: { keys: [jwk] },
    scopes: options.scopes,
    ttl: { ClientCredentials: options.ttlSeconds },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => options.resource,
        useGrantedResource: () => true,
        getResourceServerInfo: async (_ctx, resource) => {
          if (resource !== options.resource) throw new errors.InvalidTarget();
          return {
            scope: options.scopes.join(' '),
            audience: resource,
            accessTokenTTL: options.ttlSeconds,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
  });
  // A JWT access token is issued, not stored.
  provider.on('client_credentials.issued', () => {
    issued++;
  });
  server.on('request', provider.callback());
  return {
    issuer,
    tokenUrl: `${issuer}/token`,
    clientId,
    clientSecret,
    ca: authority.certificate,
    issued: () => issued,
    async stop() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

export async function startOidcProvider(options: {
  redirectUri: string;
  people: OidcPerson[];
}): Promise<OidcProvider> {
  const work = await temporaryDirectory('oidc');
  const { authority, certificate, server, issuer, jwk, clientSecret } =
    await servingIssuer('test OpenID provider CA');
  const caFile = join(work.path, 'ca.crt');
  await writeFile(caFile, authority.certificate);
  const clientId = 'airlock-console';
  const byEmail = new Map(options.people.map((p) => [p.email, p]));
  let idTokenTtl = 3600;

  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        redirect_uris: [options.redirectUri],
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    jwks: { keys: [jwk] },
    cookies: { keys: [clientSecret] },
    scopes: ['openid', 'email', 'groups', 'offline_access'],
    claims: { openid: ['sub'], email: ['email', 'email_verified'], groups: ['groups'] },
    // The console reads the person from the ID token, as the API server's OIDC authenticator does.
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    ttl: { Interaction: 600, Session: 3600, Grant: 3600, AccessToken: 600, IdToken: () => idTokenTtl },
    features: { devInteractions: { enabled: false } },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    findAccount: async (_ctx, sub) => {
      const person = byEmail.get(sub);
      if (!person) return undefined;
      return {
        accountId: sub,
        claims: async () => ({ sub, email: person.email, email_verified: true, groups: person.groups }),
      };
    },
  });
  const callback = provider.callback();

  const interaction = async (req: IncomingMessage, res: ServerResponse, uid: string, action?: string) => {
    const details = await provider.interactionDetails(req, res);
    if (details.uid !== uid) throw new Error('interaction mismatch');
    const page = (body: string) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(`<!doctype html><html><head><title>Test IdP</title></head><body>${body}</body></html>`);
    };
    if (details.prompt.name === 'login') {
      if (req.method === 'POST' && action === 'login') {
        const fields = await form(req);
        const person = byEmail.get(fields.get('email') ?? '');
        if (!person || person.password !== fields.get('password')) {
          return page(`<p id="error">Wrong email or password.</p>${loginForm(uid)}`);
        }
        return provider.interactionFinished(
          req,
          res,
          { login: { accountId: person.email } },
          {
            mergeWithLastSubmission: false,
          },
        );
      }
      return page(loginForm(uid));
    }
    if (req.method === 'POST' && action === 'confirm') {
      const { accountId } = details.session!;
      const grant = details.grantId
        ? (await provider.Grant.find(details.grantId))!
        : new provider.Grant({ accountId, clientId: String(details.params.client_id) });
      const missing = details.prompt.details as { missingOIDCScope?: string[]; missingOIDCClaims?: string[] };
      if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
      if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
      const grantId = await grant.save();
      return provider.interactionFinished(
        req,
        res,
        { consent: details.grantId ? {} : { grantId } },
        { mergeWithLastSubmission: true },
      );
    }
    return page(
      `<p>${html(String(details.params.client_id))} asks for ${html(String(details.params.scope))}.</p>
      <form method="post" action="/interaction/${uid}/confirm"><button id="allow" type="submit">Allow</button></form>`,
    );
  };
  const loginForm = (uid: string) =>
    `<form method="post" action="/interaction/${uid}/login">
      <input name="email" id="email"> <input name="password" id="password" type="password">
      <button id="sign-in" type="submit">Sign in</button></form>`;

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const match = /^\/interaction\/([^/?]+)(?:\/(login|confirm))?$/.exec((req.url ?? '').split('?')[0]!);
    if (!match) return callback(req, res);
    interaction(req, res, match[1]!, match[2]).catch((error: unknown) => {
      if (!res.headersSent) res.writeHead(400, { 'content-type': 'text/plain' });
      res.end(`interaction failed: ${(error as Error).message}`);
    });
  });

  const idToken = async (email: string, password: string, ttl?: { ttlSeconds?: number }) => {
    const browser = new FormClient(issuer, authority.certificate);
    const verifier = randomBytes(32).toString('base64url');
    const query = new URLSearchParams({
      client_id: clientId,
      response_type: 'code',
      scope: 'openid email groups',
      redirect_uri: options.redirectUri,
      state: randomBytes(8).toString('hex'),
      nonce: randomBytes(8).toString('hex'),
      code_challenge: createHash('sha256').update(verifier).digest('base64url'),
      code_challenge_method: 'S256',
    });
    let location = `/auth?${query}`;
    let code: string | undefined;
    for (let step = 0; step < 12 && !code; step++) {
      if (location.startsWith(options.redirectUri)) {
        code = new URL(location).searchParams.get('code') ?? undefined;
        break;
      }
      const uid = /^\/interaction\/([^/?]+)$/.exec(location)?.[1];
      const answer = uid
        ? (await browser.call('GET', location)).body.includes('name="email"')
          ? await browser.call('POST', `/interaction/${uid}/login`, new URLSearchParams({ email, password }))
          : await browser.call('POST', `/interaction/${uid}/confirm`, new URLSearchParams())
        : await browser.call('GET', location);
      if (!answer.location)
        throw new Error(`sign-in stopped at ${location}: ${answer.status} ${answer.body}`);
      location = answer.location.replace(issuer, '');
    }
    if (!code) throw new Error('sign-in did not reach the redirect URI');
    idTokenTtl = ttl?.ttlSeconds ?? 3600;
    try {
      const exchanged = await browser.call(
        'POST',
        '/token',
        new URLSearchParams({
          grant_type: 'authorization_code',
          code,
          redirect_uri: options.redirectUri,
          code_verifier: verifier,
        }),
        `Basic ${Buffer.from(`${clientId}:${clientSecret}`).toString('base64')}`,
      );
      const token = (JSON.parse(exchanged.body) as { id_token?: string }).id_token;
      if (!token) throw new Error(`no ID token: ${exchanged.status} ${exchanged.body}`);
      return token;
    } finally {
      idTokenTtl = 3600;
    }
  };

  return {
    issuer,
    clientId,
    clientSecret,
    caFile,
    spki: spkiHash(certificate),
    idToken,
    async stop() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await work.remove();
    },
  };
}

/** HTTPS calls with a cookie jar, as a browser makes them to the provider's pages; redirects are returned, not followed. */
class FormClient {
  readonly #origin: string;
  readonly #ca: string;
  readonly #cookies = new Map<string, string>();

  constructor(origin: string, ca: string) {
    this.#origin = origin;
    this.#ca = ca;
  }

  call(
    method: 'GET' | 'POST',
    path: string,
    form?: URLSearchParams,
    authorization?: string,
  ): Promise<{ status: number; location?: string; body: string }> {
    const payload = form?.toString();
    return new Promise((resolve, reject) => {
      const req = request(
        new URL(path, this.#origin),
        {
          method,
          ca: this.#ca,
          headers: {
            cookie: [...this.#cookies].map(([name, value]) => `${name}=${value}`).join('; '),
            ...(authorization && { authorization }),
            ...(payload !== undefined && {
              'content-type': 'application/x-www-form-urlencoded',
              'content-length': Buffer.byteLength(payload),
            }),
          },
        },
        (res) => {
          for (const line of res.headers['set-cookie'] ?? []) {
            const [pair] = line.split(';');
            const eq = pair!.indexOf('=');
            this.#cookies.set(pair!.slice(0, eq), pair!.slice(eq + 1));
          }
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            body += chunk;
          });
          res.on('end', () =>
            resolve({
              status: res.statusCode ?? 0,
              ...(res.headers.location && { location: res.headers.location }),
              body,
            }),
          );
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
  }
}
