// The REST client: JSON in and out, the access token on every request, and
// transparent refresh — a 401 refreshes the session once and retries; if the
// refresh fails too, the session is over and the page goes back to login.
//
// Commands answer with an `Event-Offset` header: the offset of the event the
// command appended. Reading with `minOffset` = that offset makes the query
// wait until the read model has applied it, so the page never shows state
// older than what the user just did (read-your-writes).

import type { User } from './types';

export interface Session {
  user: User;
  accessToken: string;
  refreshToken: string;
}

/** A non-2xx answer: the service's `{error: {code, message, fields?}}`. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly fields: Record<string, string> = {},
    /** The `Retry-After` of a 503, in seconds (0 when absent). */
    readonly retryAfterSeconds = 0,
  ) {
    super(message);
  }
}

/** The refresh token was refused: the user must log in again. */
export class SessionEnded extends Error {}

export interface Answer<T> {
  body: T;
  /** The `Event-Offset` header of a command's answer, if any. */
  offset: number | null;
}

const SESSION_KEY = 'marauders-map.session';
// A command whose answer did not arrive (a network error, a 503) is retried
// with the same Idempotency-Key after these pauses: the service answers a
// retry with the first outcome, so it takes effect once however often it is
// sent.
const COMMAND_RETRY_PAUSES_MS = [250, 500, 1000, 2000, 4000];
// Refresh a little before the access token expires, so a request or a
// socket handshake never starts with a token about to lapse: 30 s, or a
// quarter of the token's lifetime when it is that short (a test setting).
const REFRESH_MARGIN_SECONDS = 30;

export class Api {
  private session: Session | null = loadSession();
  private refreshing: Promise<void> | null = null;

  /** Called once when the session ends (refresh refused, or logout). */
  onSessionEnded: (reason: string) => void = () => {};

  get user(): User | null {
    return this.session?.user ?? null;
  }

  async register(email: string, password: string, displayName: string): Promise<User> {
    return this.start(await this.send<Session>('POST', '/api/auth/register', { email, password, displayName }, false));
  }

  async login(email: string, password: string): Promise<User> {
    return this.start(await this.send<Session>('POST', '/api/auth/login', { email, password }, false));
  }

  async logout(): Promise<void> {
    try {
      await this.request('POST', '/api/auth/logout');
    } finally {
      this.end('You have logged out.');
    }
  }

  /** A request as the logged-in user: refreshes and retries once on 401. */
  async request<T = unknown>(method: string, path: string, body?: unknown, idempotencyKey?: string): Promise<Answer<T>> {
    const token = await this.freshAccessToken();
    try {
      return await this.send<T>(method, path, body, true, token, idempotencyKey);
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 401) throw error;
      await this.refresh(token);
      return this.send<T>(method, path, body, true, this.session?.accessToken, idempotencyKey);
    }
  }

  /**
   * A command (report, edit, resolve, change severity, delete, comment):
   * sent with a fresh Idempotency-Key, and re-sent with the same key when
   * its answer is lost or the service is briefly unavailable — never a
   * second effect, whatever happened to the first attempt.
   */
  async command<T = unknown>(method: string, path: string, body?: unknown): Promise<Answer<T>> {
    const key = newIdempotencyKey();
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.request<T>(method, path, body, key);
      } catch (error) {
        const retriable = error instanceof ApiError && (error.status === 0 || error.status === 503);
        if (!retriable || attempt >= COMMAND_RETRY_PAUSES_MS.length) throw error;
        const advised = (error as ApiError).retryAfterSeconds * 1000;
        await sleep(Math.max(COMMAND_RETRY_PAUSES_MS[attempt], advised));
      }
    }
  }

  /**
   * An access token that is not about to expire, refreshing first if it is.
   * The socket's `auth` callback uses this on every (re)connect.
   */
  async freshAccessToken(): Promise<string> {
    if (!this.session) throw new SessionEnded('not logged in');
    const lifetime = tokenLifetime(this.session.accessToken);
    if (lifetime !== null) {
      const margin = Math.min(REFRESH_MARGIN_SECONDS, (lifetime.exp - lifetime.iat) / 4);
      if (lifetime.exp - margin <= Date.now() / 1000) await this.refresh(this.session.accessToken);
    }
    if (!this.session) throw new SessionEnded('not logged in');
    return this.session.accessToken;
  }

  /**
   * Exchanges the refresh token for a new pair, at most once for any number
   * of requests that failed with the same access token. Refresh tokens
   * rotate — each works once, and reusing one ends the session — so tabs of
   * one browser, which share the stored session, take turns (a Web Lock)
   * and a tab that finds the pair already renewed by another uses it.
   */
  async refresh(staleAccessToken: string): Promise<void> {
    if (this.session && this.session.accessToken !== staleAccessToken) return;
    this.refreshing ??= withLock('marauders-map.refresh', async () => {
      const stored = loadSession();
      if (stored && stored.accessToken !== staleAccessToken) {
        this.session = stored; // another tab refreshed already
        return;
      }
      if (!this.session) throw new SessionEnded('not logged in');
      try {
        const answer = await this.send<Session>('POST', '/api/auth/refresh', { refreshToken: this.session.refreshToken }, false);
        this.start(answer);
      } catch (error) {
        if (error instanceof ApiError && error.status === 401) {
          this.end('Your session has ended. Please log in again.');
          throw new SessionEnded(error.message);
        }
        throw error;
      }
    }).finally(() => {
      this.refreshing = null;
    });
    return this.refreshing;
  }

  private start(answer: Answer<Session>): User {
    this.session = answer.body;
    localStorage.setItem(SESSION_KEY, JSON.stringify(this.session));
    return this.session.user;
  }

  private end(reason: string): void {
    const hadSession = this.session !== null;
    this.session = null;
    localStorage.removeItem(SESSION_KEY);
    if (hadSession) this.onSessionEnded(reason);
  }

  private async send<T>(
    method: string,
    path: string,
    body: unknown,
    authenticated: boolean,
    token?: string,
    idempotencyKey?: string,
  ): Promise<Answer<T>> {
    const headers: Record<string, string> = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (authenticated && token) headers.Authorization = `Bearer ${token}`;
    if (idempotencyKey) headers['Idempotency-Key'] = idempotencyKey;
    let response: Response;
    try {
      response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch {
      throw new ApiError(0, 'network', 'The service cannot be reached. Check your connection and try again.');
    }
    const text = await response.text();
    const json = text ? safeJson(text) : null;
    if (!response.ok) {
      const error = (json as { error?: { code?: string; message?: string; fields?: Record<string, string> } } | null)?.error;
      throw new ApiError(
        response.status,
        error?.code ?? 'http_' + response.status,
        error?.message ?? `The service answered ${response.status}.`,
        error?.fields ?? {},
        Number(response.headers.get('Retry-After') ?? 0) || 0,
      );
    }
    const offset = response.headers.get('Event-Offset');
    return { body: json as T, offset: offset === null ? null : Number(offset) };
  }
}

/** A key no other command of this user will use. */
function newIdempotencyKey(): string {
  if (typeof crypto !== 'undefined' && typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return [...bytes].map((byte) => byte.toString(16).padStart(2, '0')).join('');
}

function sleep(milliseconds: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, milliseconds));
}

function loadSession(): Session | null {
  try {
    const stored = JSON.parse(localStorage.getItem(SESSION_KEY) ?? 'null') as Session | null;
    return stored?.accessToken && stored.refreshToken && stored.user ? stored : null;
  } catch {
    return null;
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** The `iat` and `exp` claims (seconds since the epoch) of a JWT, or null. */
function tokenLifetime(token: string): { iat: number; exp: number } | null {
  try {
    const payload = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const claims = JSON.parse(atob(payload)) as { iat?: number; exp?: number };
    if (typeof claims.exp !== 'number') return null;
    return { iat: typeof claims.iat === 'number' ? claims.iat : claims.exp - 15 * 60, exp: claims.exp };
  } catch {
    return null;
  }
}

/** Runs `task` holding a Web Lock across this browser's tabs, if there are locks. */
function withLock(name: string, task: () => Promise<void>): Promise<void> {
  if (typeof navigator !== 'undefined' && navigator.locks) {
    return navigator.locks.request(name, task);
  }
  return task();
}

/** A query string from the given parameters, leaving out empty ones. */
export function query(parameters: Record<string, string | number | null | undefined>): string {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(parameters)) {
    if (value !== null && value !== undefined && value !== '') search.set(name, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}
