// The live connection: Socket.IO to the service, resuming from an offset.
//
// The page remembers `lastOffset`, the offset of the last incident event it
// has seen (in localStorage, per user, so a reload resumes too). Every
// (re)connect sends it in the handshake with a fresh access token and the
// incident rooms to rejoin; the service first replays every event after
// that offset, then says `replay:complete`, then sends live events. The page
// drops any event it has already seen (by offset and by event id), so a
// replay that overlaps what arrived live never shows anything twice.
//
// The server closes a connection when its access token expires or its
// session ends, saying why first (`connection:closing {reason}`): after
// `token_expired` the page refreshes its token and reconnects at once, and
// the replay from `lastOffset` brings whatever happened meanwhile; after
// the session ended, the refresh fails and the page goes back to login.

import { io, type Socket } from 'socket.io-client';

import { SessionEnded, type Api } from './api';
import type { LiveEvent, Notification, OnlineUser, TypingSignal } from './types';

/** The live incident events, as named on the socket. */
export const INCIDENT_EVENTS = [
  'incident:created',
  'incident:updated',
  'incident:resolved',
  'incident:deleted',
  'comment:added',
  'severity:escalated',
] as const;

export type ConnectionState =
  | { kind: 'connecting' }
  | { kind: 'reconnecting'; reason: string }
  | { kind: 'live'; replayed: number | null }
  | { kind: 'resynced' }
  | { kind: 'closed' };

export interface LiveHandlers {
  /** A new incident event, live or replayed; never the same one twice. */
  incidentEvent(event: LiveEvent, replayed: boolean): void;
  /**
   * Reload the board from REST as of `toOffset`: history could not be
   * replayed (`fresh`: forget what we have), or we connected without a
   * lastOffset and the log is at `toOffset` now.
   */
  resync(toOffset: number | null, fresh: boolean): void;
  notification(notification: Notification): void;
  presence(users: OnlineUser[]): void;
  typing(signal: TypingSignal): void;
  state(state: ConnectionState): void;
  /** Each (re)connect, after the replay: reload what is not replayed (notifications). */
  connected(): void;
}

interface ReplayComplete {
  fromOffset: number | null;
  toOffset: number | null;
  count: number;
}

interface ReplayIncomplete {
  fromOffset: number | null;
  toOffset: number | null;
  reason: string;
}

type Ack = { ok: true } | { error: { code: string; message: string } };

/** `connection:closing`: sent just before the server closes the connection. */
interface ConnectionClosing {
  reason: string;
  message: string;
}

/** Closing reasons after which a fresh token is what it takes to come back. */
const REFRESH_AND_RECONNECT = new Set(['token_expired', 'logged_out', 'session_revoked', 'session_expired']);

// How many event ids to remember for deduplication (offsets do the rest).
const SEEN_IDS_KEPT = 2000;
const RETRY_FIRST_MS = 500;
const RETRY_MAX_MS = 30_000;

export class LiveConnection {
  private socket: Socket;
  private lastOffset: number | null;
  private seenIds = new Set<string>();
  /** Incident ids whose rooms this page wants (board + open incident). */
  private rooms = new Set<string>();
  private replaying = false;
  private hasConnected = false;
  private retryTimer: number | undefined;
  /** Grows while handshakes keep being refused, so we never spin. */
  private retryDelay = RETRY_FIRST_MS;
  /** The browser says the network is gone: wait for it, don't retry. */
  private offline = false;
  /** The access token the last handshake carried. */
  private handshakeToken = '';
  /** Why the server said it is closing this connection, until it does. */
  private closingReason: string | null = null;

  constructor(
    private api: Api,
    private userId: string,
    private handlers: LiveHandlers,
    /** Resume after this offset; null: start at the log's end. */
    startOffset: number | null,
  ) {
    this.lastOffset = startOffset;
    this.socket = io(location.origin, {
      autoConnect: false,
      // Called on every (re)connect: a fresh token, where we are, our rooms.
      auth: (send) => {
        this.api.freshAccessToken().then(
          (token) => {
            this.handshakeToken = token;
            const auth: Record<string, unknown> = { token, rooms: [...this.rooms] };
            if (this.lastOffset !== null) auth.lastOffset = this.lastOffset;
            this.replaying = this.lastOffset !== null;
            send(auth);
          },
          // No session any more: the API client has sent the page to login.
          () => send({ token: '' }),
        );
      },
    });
    this.listen();
  }

  /** The offset to resume from; null until the first replay:complete. */
  get offset(): number | null {
    return this.lastOffset;
  }

  connect(): void {
    this.handlers.state({ kind: 'connecting' });
    window.addEventListener('offline', this.wentOffline);
    window.addEventListener('online', this.cameOnline);
    this.socket.connect();
  }

  close(): void {
    window.removeEventListener('offline', this.wentOffline);
    window.removeEventListener('online', this.cameOnline);
    window.clearTimeout(this.retryTimer);
    this.socket.off();
    this.socket.io.off();
    this.socket.disconnect();
    this.handlers.state({ kind: 'closed' });
  }

  /**
   * The incident rooms this page wants. Joins and leaves now when connected
   * (answering the ids joined just now, whose earlier events were not sent
   * to us); otherwise the next handshake carries them.
   */
  async setRooms(wanted: Set<string>): Promise<string[]> {
    const added = [...wanted].filter((id) => !this.rooms.has(id));
    const removed = [...this.rooms].filter((id) => !wanted.has(id));
    this.rooms = new Set(wanted);
    if (!this.socket.connected) return [];
    const [joined] = await Promise.all([
      Promise.all(added.map(async (id) => ((await this.ask('incident:join', id)) ? id : null))),
      Promise.all(removed.map((id) => this.ask('incident:leave', id))),
    ]);
    return joined.filter((id): id is string => id !== null);
  }

  typing(incidentId: string, typing: boolean): void {
    if (this.socket.connected) {
      this.socket.volatile.emit(typing ? 'typing:start' : 'typing:stop', { incidentId });
    }
  }

  private async ask(event: string, incidentId: string): Promise<boolean> {
    try {
      const ack = (await this.socket.timeout(5000).emitWithAck(event, { incidentId })) as Ack;
      if ('error' in ack) console.warn(`${event} ${incidentId}: ${ack.error.message}`);
      return 'ok' in ack;
    } catch {
      return false; // timed out; the next connect sends our rooms again
    }
  }

  private listen(): void {
    const socket = this.socket;
    for (const name of INCIDENT_EVENTS) {
      socket.on(name, (event: LiveEvent) => this.receive(event));
    }
    socket.on('replay:complete', (info: ReplayComplete) => {
      const wasReplay = this.replaying;
      this.replaying = false;
      // Without a lastOffset nothing was replayed: start from the log's end,
      // and read the board as of it.
      if (this.lastOffset === null && info.toOffset !== null) {
        this.advance(info.toOffset);
        this.handlers.resync(info.toOffset, false);
      }
      this.handlers.state({ kind: 'live', replayed: wasReplay ? info.count : null });
      this.handlers.connected();
    });
    socket.on('replay:incomplete', (info: ReplayIncomplete) => {
      this.replaying = false;
      console.warn(`replay from ${info.fromOffset} incomplete: ${info.reason}`);
      this.lastOffset = null;
      // The stored offset is what the server could not replay from: forget it
      // even when the log is empty now (a reset environment).
      localStorage.removeItem(lastOffsetKey(this.userId));
      if (info.toOffset !== null) this.advance(info.toOffset);
      this.handlers.resync(info.toOffset, true);
      this.handlers.state({ kind: 'resynced' });
      this.handlers.connected();
    });
    socket.on('notification:new', (n: Notification) => this.handlers.notification(n));
    socket.on('presence:online', (p: { users: OnlineUser[] }) => this.handlers.presence(p.users));
    socket.on('typing', (t: TypingSignal) => this.handlers.typing(t));

    socket.on('connect', () => {
      window.clearTimeout(this.retryTimer);
      this.retryDelay = RETRY_FIRST_MS;
      this.hasConnected = true;
      this.closingReason = null;
    });
    socket.on('connection:closing', (info: ConnectionClosing) => {
      this.closingReason = info.reason;
    });
    socket.on('disconnect', (reason) => {
      const why = this.closingReason ?? reason;
      this.closingReason = null;
      this.handlers.state({ kind: 'reconnecting', reason: why });
      // The client reconnects by itself unless the server closed the socket.
      if (socket.active) return;
      // An expired token: refresh and come straight back (a session that
      // ended fails the refresh, and the page goes to login instead).
      if (REFRESH_AND_RECONNECT.has(why)) this.retrySoon(true, true);
      else this.retrySoon(false);
    });
    socket.on('connect_error', (error) => {
      this.handlers.state(this.hasConnected ? { kind: 'reconnecting', reason: error.message } : { kind: 'connecting' });
      // A refused handshake (a forged or expired token) is not retried by
      // the client: refresh the token, then try again ourselves.
      if (!socket.active) this.retrySoon(true);
    });
  }

  // The browser knows at once when the network goes; the socket would only
  // notice at the next missed ping (up to 45 s). Close it now, and come
  // back (with a replay from lastOffset) when the network does.
  private wentOffline = (): void => {
    this.offline = true;
    window.clearTimeout(this.retryTimer);
    this.socket.disconnect();
    this.handlers.state({ kind: 'reconnecting', reason: 'offline' });
  };

  private cameOnline = (): void => {
    this.offline = false;
    if (!this.socket.connected) this.socket.connect();
  };

  /**
   * Connects again after a pause that grows with each attempt (or at once),
   * refreshing the access token first when `refresh` (a refused handshake,
   * an expired token).
   */
  private retrySoon(refresh: boolean, immediately = false): void {
    window.clearTimeout(this.retryTimer);
    if (this.offline) return;
    this.retryTimer = window.setTimeout(
      async () => {
        try {
          if (refresh) await this.api.refresh(this.handshakeToken);
          this.socket.connect();
        } catch (error) {
          if (!(error instanceof SessionEnded)) this.retrySoon(refresh);
        }
      },
      immediately ? 0 : this.retryDelay,
    );
    if (!immediately) this.retryDelay = Math.min(this.retryDelay * 2, RETRY_MAX_MS);
  }

  private receive(event: LiveEvent): void {
    if (typeof event?.offset !== 'number' || typeof event.eventId !== 'string') return;
    if (this.seenIds.has(event.eventId)) return;
    if (this.lastOffset !== null && event.offset <= this.lastOffset) return;
    this.seenIds.add(event.eventId);
    if (this.seenIds.size > SEEN_IDS_KEPT) {
      this.seenIds.delete(this.seenIds.values().next().value as string);
    }
    this.advance(event.offset);
    this.handlers.incidentEvent(event, this.replaying);
  }

  private advance(offset: number): void {
    this.lastOffset = offset;
    localStorage.setItem(lastOffsetKey(this.userId), String(offset));
  }
}

function lastOffsetKey(userId: string): string {
  return `marauders-map.lastOffset.${userId}`;
}

/** The offset this user's page last saw, kept across reloads. */
export function loadLastOffset(userId: string): number | null {
  const stored = Number(localStorage.getItem(lastOffsetKey(userId)) ?? NaN);
  return Number.isInteger(stored) && stored >= 0 ? stored : null;
}
