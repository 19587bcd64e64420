// The console's sign-ins, kept on the server: the browser holds only a random id in a cookie
// (HttpOnly, Secure, SameSite=Lax, with the __Host- prefix so no other site or subdomain can
// set it). A session ends when its ID token expires or when the person signs out; a sign-in
// in progress (PKCE verifier, state, nonce) lives ten minutes.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { PendingSignIn, SignedIn } from './oidc.ts';

export const sessionCookie = '__Host-airlock-session';
export const signInCookie = '__Host-airlock-sign-in';
const signInTtlMs = 10 * 60_000;
const maxSignIns = 10_000;

export interface ConsoleSession<T> extends SignedIn {
  id: string;
  /** Sent back by the page with every state-changing call (X-Airlock-CSRF). */
  csrfToken: string;
  /** What the console keeps for this person (its backend, acting as them). */
  context: T;
}

const randomId = () => randomBytes(32).toString('base64url');

export function cookie(name: string, value: string, maxAgeSeconds: number): string {
  return `${name}=${value}; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age=${Math.max(0, Math.floor(maxAgeSeconds))}`;
}

/** The value of one cookie in a Cookie header. */
export function readCookie(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

export function sameToken(given: string | undefined, expected: string): boolean {
  if (given === undefined) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

export class ConsoleSessions<T> {
  readonly #sessions = new Map<string, ConsoleSession<T>>();
  readonly #signIns = new Map<string, PendingSignIn & { until: number }>();
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  /** Keeps a sign-in in progress; returns the id its cookie carries. */
  beginSignIn(pending: PendingSignIn): string {
    this.#sweep();
    // A flood of abandoned sign-ins must not grow without bound: the oldest give way.
    while (this.#signIns.size >= maxSignIns) this.#signIns.delete(this.#signIns.keys().next().value!);
    const id = randomId();
    this.#signIns.set(id, { ...pending, until: this.#now() + signInTtlMs });
    return id;
  }

  /** The sign-in in progress with that id, once: a callback cannot be replayed. */
  takeSignIn(id: string | undefined): PendingSignIn | undefined {
    if (!id) return undefined;
    const found = this.#signIns.get(id);
    this.#signIns.delete(id);
    return found && found.until > this.#now() ? found : undefined;
  }

  create(signedIn: SignedIn, context: (csrfToken: string) => T): ConsoleSession<T> {
    this.#sweep();
    const csrfToken = randomId();
    const session = { ...signedIn, id: randomId(), csrfToken, context: context(csrfToken) };
    this.#sessions.set(session.id, session);
    return session;
  }

  /** The live session with that id; an expired one is ended. */
  get(id: string | undefined): ConsoleSession<T> | undefined {
    if (!id) return undefined;
    const session = this.#sessions.get(id);
    if (session && session.expiresAt <= this.#now()) {
      this.#sessions.delete(id);
      return undefined;
    }
    return session;
  }

  end(id: string): void {
    this.#sessions.delete(id);
  }

  #sweep(): void {
    const now = this.#now();
    for (const [id, s] of this.#sessions) if (s.expiresAt <= now) this.#sessions.delete(id);
    for (const [id, s] of this.#signIns) if (s.until <= now) this.#signIns.delete(id);
  }
}
