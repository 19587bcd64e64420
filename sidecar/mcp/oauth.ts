// OAuth client credentials (RFC 6749 §4.4) for an MCP Connection: the sidecar exchanges the
// Secret's client id and secret at the token endpoint and presents the access token to the
// server as a bearer token. One exchange at a time, however many requests wait for it; the
// token is renewed ahead of its expiry, and once more when the server refuses it (401). The
// token endpoint is always verified (it is given the client secret), with the Connection's CA
// when it has one. The token lives only in this process: no event, log line or answer to the
// agent carries it.
import type { IncomingMessage } from 'node:http';
import type { ConnectionSpec } from '../../api/v1alpha1.ts';
import { AirlockError } from '../core/errors.ts';
import { https } from '../core/node-http.ts';

export type OAuthSettings = NonNullable<NonNullable<ConnectionSpec['mcp']>['oauth']>;

/** The longest token response read. */
const maxResponseBytes = 64 * 1024;
const exchangeTimeoutMs = 10_000;
/** A token is renewed this long before it expires, or a tenth of its life when that is shorter. */
const renewAheadMs = 60_000;

export class ClientCredentials {
  readonly #settings: OAuthSettings;
  readonly #clientId: string;
  readonly #clientSecret: string;
  readonly #ca: string | undefined;
  #token: { value: string; renewAt: number } | undefined;
  #exchanging: Promise<string> | undefined;

  constructor(settings: OAuthSettings, client: { clientId: string; clientSecret: string }, ca?: string) {
    if (new URL(settings.tokenUrl).protocol !== 'https:')
      throw new Error('the OAuth token endpoint must be an https URL: it is given the client secret');
    this.#settings = settings;
    this.#clientId = client.clientId;
    this.#clientSecret = client.clientSecret;
    this.#ca = ca;
  }

  /** A current access token, exchanged for when there is none or it is due for renewal. */
  token(): Promise<string> {
    if (this.#token && Date.now() < this.#token.renewAt) return Promise.resolve(this.#token.value);
    this.#exchanging ??= this.#exchange().finally(() => {
      this.#exchanging = undefined;
    });
    return this.#exchanging;
  }

  /** The server refused `token`: the next token() exchanges again, unless that already happened. */
  refused(token: string): void {
    if (this.#token?.value === token) this.#token = undefined;
  }

  async #exchange(): Promise<string> {
    const { tokenUrl, scopes, audience, resource } = this.#settings;
    const form = new URLSearchParams({ grant_type: 'client_credentials' });
    if (scopes && scopes.length > 0) form.set('scope', scopes.join(' '));
    if (audience !== undefined) form.set('audience', audience);
    if (resource !== undefined) form.set('resource', resource);
    const body = form.toString();
    // client_secret_basic: both parts form-encoded first (RFC 6749 §2.3.1).
    const basic = Buffer.from(
      `${encodeURIComponent(this.#clientId)}:${encodeURIComponent(this.#clientSecret)}`,
    ).toString('base64');
    const started = Date.now();
    const { status, text } = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = https.request(
        tokenUrl,
        {
          method: 'POST',
          headers: {
            authorization: `Basic ${basic}`,
            'content-type': 'application/x-www-form-urlencoded',
            'content-length': String(Buffer.byteLength(body)),
            accept: 'application/json',
          },
          rejectUnauthorized: true,
          ...(this.#ca !== undefined && { ca: this.#ca }),
          timeout: exchangeTimeoutMs,
        },
        (res: IncomingMessage) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (chunk: Buffer) => {
            size += chunk.length;
            if (size > maxResponseBytes) res.destroy(new Error('the token response is too large'));
            else chunks.push(chunk);
          });
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }),
          );
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`no answer in ${exchangeTimeoutMs / 1000} s`)));
      req.on('error', reject);
      req.end(body);
    }).catch((error: Error) => {
      throw refusal(`is unreachable: ${error.message}`);
    });
    let answer: Record<string, unknown>;
    try {
      answer = JSON.parse(text);
    } catch {
      throw refusal(`answered ${status} with a body that is not JSON`);
    }
    if (status !== 200) {
      // The error code and description the endpoint gives (RFC 6749 §5.2); never the request.
      const code = typeof answer.error === 'string' ? answer.error.slice(0, 64) : 'no error code';
      const description =
        typeof answer.error_description === 'string' ? `: ${answer.error_description.slice(0, 256)}` : '';
      throw refusal(`refused the client credentials (${status} ${code}${description})`);
    }
    const value = answer.access_token;
    const type = answer.token_type;
    if (typeof value !== 'string' || value === '' || /[\s\0-\x1f\x7f]/.test(value))
      throw refusal('answered without a usable access_token');
    if (typeof type !== 'string' || type.toLowerCase() !== 'bearer')
      throw refusal(`answered a token of type ${JSON.stringify(type)}, not Bearer`);
    const lifeMs =
      typeof answer.expires_in === 'number' && answer.expires_in > 0 ? answer.expires_in * 1000 : undefined;
    // Without an expiry the token is kept until the server refuses it.
    const renewAt =
      lifeMs === undefined
        ? Number.POSITIVE_INFINITY
        : started + lifeMs - Math.min(renewAheadMs, lifeMs / 10);
    this.#token = { value, renewAt };
    return value;
  }
}

function refusal(what: string): AirlockError {
  return new AirlockError('upstream-unreachable', `airlock: the OAuth token endpoint ${what}`);
}
