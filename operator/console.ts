// The operator's web console: the same pages and API as `airlock local --console`, served over
// HTTPS with the operator's certificate to people who sign in with the organisation's OpenID
// provider. Everything the console reads or decides, it does as the signed-in person through
// impersonation (operator/console-backend.ts): RBAC, the sessions API's SubjectAccessReview
// and the approval webhooks see them, not the operator.
//
// /auth/sign-in starts the code flow; /auth/callback finishes it and opens a server-side
// session; /auth/sign-out (POST, with the CSRF token) ends it. Every state-changing call
// carries the session's CSRF token in X-Airlock-CSRF, on top of the console's own same-origin
// checks, and the session cookie is SameSite=Lax.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { type ConsoleBackend, consoleHandler } from '../console/server.ts';
import { clusterConsoleBackend } from './console-backend.ts';
import {
  ConsoleSessions,
  cookie,
  readCookie,
  sameToken,
  sessionCookie,
  signInCookie,
} from './console-sessions.ts';
import { impersonating } from './impersonation.ts';
import type { ServingCertificateSource } from './injection/server.ts';
import type { OidcSettings, RelyingParty } from './oidc.ts';
import { listen } from './server.ts';

export interface ConsoleOptions {
  listen: { host: string; port: number };
  certificates: ServingCertificateSource;
  relyingParty: RelyingParty;
  settings: OidcSettings;
  config: KubeConfig;
  /** Every namespace, read with the operator's credentials. */
  namespaces: () => Promise<string[]>;
  logger: Logger;
}

export interface RunningConsole {
  address: AddressInfo;
  close(): Promise<void>;
}

const signOutPath = '/auth/sign-out';
const headers = {
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
};

function page(res: ServerResponse, status: number, title: string, message: string, extraHeaders = {}) {
  const text = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', ...headers, ...extraHeaders });
  res.end(
    `<!doctype html><html lang="en"><meta charset="utf-8"><title>Airlock: ${text(title)}</title>` +
      `<h1>${text(title)}</h1><p>${text(message)}</p><p><a href="/auth/sign-in">Sign in</a></p></html>`,
  );
}

function json(res: ServerResponse, status: number, body: unknown, extraHeaders = {}) {
  res.writeHead(status, { 'content-type': 'application/json', ...headers, ...extraHeaders });
  res.end(JSON.stringify(body));
}

export function consoleRequestHandler(options: Omit<ConsoleOptions, 'listen' | 'certificates'>) {
  const { relyingParty, settings, logger } = options;
  const sessions = new ConsoleSessions<ConsoleBackend>();
  const secondsLeft = (until: number) => (until - Date.now()) / 1000;

  return async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', settings.redirectUri);
    if (req.method === 'GET' && url.pathname === '/auth/sign-in') {
      let begun: Awaited<ReturnType<RelyingParty['begin']>>;
      try {
        begun = await relyingParty.begin();
      } catch (error) {
        logger.warn({ err: (error as Error).message }, 'console sign-in could not start');
        return page(res, 503, 'Sign-in unavailable', (error as Error).message);
      }
      const { url: provider, pending } = begun;
      const id = sessions.beginSignIn(pending);
      res.writeHead(302, {
        location: provider.href,
        'set-cookie': cookie(signInCookie, id, 600),
        ...headers,
      });
      return res.end();
    }
    if (req.method === 'GET' && url.pathname === settings.redirectUri.pathname) {
      const pending = sessions.takeSignIn(readCookie(req.headers.cookie, signInCookie));
      const clear = { 'set-cookie': cookie(signInCookie, '', 0) };
      if (!pending)
        return page(res, 400, 'Sign-in failed', 'This sign-in expired or was already used.', clear);
      let signedIn: Awaited<ReturnType<RelyingParty['finish']>>;
      try {
        // The callback's own address as the provider redirected to it, query and all.
        const callback = new URL(`${url.pathname}${url.search}`, settings.redirectUri);
        signedIn = await relyingParty.finish(callback, pending);
      } catch (error) {
        logger.warn({ err: (error as Error).message }, 'console sign-in failed');
        return page(res, 401, 'Sign-in failed', (error as Error).message, clear);
      }
      const session = sessions.create(signedIn, (csrfToken) =>
        clusterConsoleBackend({
          user: signedIn.person.user,
          csrfToken,
          signOut: signOutPath,
          call: impersonating(options.config, signedIn.person),
          namespaces: options.namespaces,
        }),
      );
      logger.info(
        { event: 'console-sign-in', user: signedIn.person.user, groups: signedIn.person.groups },
        'signed in to the console',
      );
      res.writeHead(302, {
        location: '/',
        'set-cookie': [
          clear['set-cookie'],
          cookie(sessionCookie, session.id, secondsLeft(session.expiresAt)),
        ],
        ...headers,
      });
      return res.end();
    }
    if (req.method === 'GET' && url.pathname === '/auth/signed-out')
      return page(res, 200, 'Signed out', 'Your console session has ended.');

    const session = sessions.get(readCookie(req.headers.cookie, sessionCookie));
    if (!session) {
      if (url.pathname.startsWith('/api/') || req.method !== 'GET')
        return json(res, 401, { message: 'sign in to the console first' });
      res.writeHead(302, { location: '/auth/sign-in', ...headers });
      return res.end();
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      const token = req.headers['x-airlock-csrf'];
      if (!sameToken(typeof token === 'string' ? token : undefined, session.csrfToken))
        return json(res, 403, { message: 'the request carries no valid CSRF token' });
    }
    if (req.method === 'POST' && url.pathname === signOutPath) {
      sessions.end(session.id);
      logger.info({ event: 'console-sign-out', user: session.person.user }, 'signed out of the console');
      const provider = await relyingParty.endSessionUrl(session.idToken).catch(() => undefined);
      return json(
        res,
        200,
        { location: provider?.href ?? '/auth/signed-out' },
        {
          'set-cookie': cookie(sessionCookie, '', 0),
        },
      );
    }
    return consoleHandler(session.context)(req, res);
  };
}

export async function startConsole(options: ConsoleOptions): Promise<RunningConsole> {
  const handle = consoleRequestHandler(options);
  const first = options.certificates.current();
  if (!first) throw new Error('the console has no serving certificate yet');
  const server: Server = createServer(
    { cert: first.certificate, key: first.privateKey, minVersion: 'TLSv1.2' },
    (req, res) =>
      handle(req, res).catch((error: unknown) => {
        options.logger.error({ err: String((error as Error)?.stack ?? error) }, 'console request failed');
        if (!res.headersSent) json(res, 500, { message: (error as Error).message });
        else res.end();
      }),
  );
  const unsubscribe = options.certificates.onChange((pair) =>
    server.setSecureContext({ cert: pair.certificate, key: pair.privateKey, minVersion: 'TLSv1.2' }),
  );
  const address = await listen(server, options.listen.host, options.listen.port);
  options.logger.info({ address, issuer: options.settings.issuer.href }, 'console listening');
  return {
    address,
    async close() {
      unsubscribe();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
