// The logged-in page: wires the REST client, the live connection, the
// incident store and the views together.
//
// How the board stays right (see also store.ts and live.ts):
// 1. Pick the offset to start from: the one this browser saw last, or else
//    the log's current end (GET /health).
// 2. Load the board from the read model with `minOffset` = that offset, so
//    it reflects at least every event up to it.
// 3. Connect with `lastOffset` = that offset and the rooms of the incidents
//    on the board: the service rejoins those rooms, replays every event
//    after the offset, then goes live. Snapshot + replay + live = nothing
//    missed; the version rule makes any overlap harmless.
// Only room members get `incident:updated` and `comment:added`, so the page
// joins the room of every incident on the board and of the open one. A room
// joined later was not covered by the replay: after joining, the page reads
// that incident again with `minOffset` = the log's end at that moment.
//
// The map draws the same store as the board. The board's filter form holds
// the filters, the address mirrors them (`?location=LIBRARY`), and the map
// shows the board's filters except the location — the location is what the
// map chooses — so with the board narrowed to one place the page also reads
// the other places' incidents, to keep them on the map.

import { ApiError, query, type Api } from './api';
import { ActivityFeed, ConnectionBadge, PresenceList } from './activity';
import { ProjectionsPanel } from './admin';
import { BoardView, errorText } from './board';
import { h } from './dom';
import { filtersFromSearch, matchesFilters, sameFilters, searchWithFilters, type Filters } from './filters';
import { IncidentView } from './incident-view';
import { LiveConnection, loadLastOffset, type LiveHandlers } from './live';
import { MapView, type MapChange } from './map';
import { NotificationBell } from './notifications';
import { isLocation, placeName } from './places';
import { IncidentStore, incidentIdOf } from './store';
import { label, type Comment, type Incident, type LiveEvent, type Location, type User } from './types';

const BOARD_PAGE = 50;
// The service takes at most 100 rooms in a handshake; the board's newest
// incidents and the open one fit.
const MAX_ROOMS = 100;

export class App {
  readonly element: HTMLElement;
  private store = new IncidentStore();
  private live: LiveConnection | null = null;
  private board: BoardView;
  private map: MapView;
  private view: IncidentView;
  private bell: NotificationBell;
  private connection = new ConnectionBadge();
  private presence = new PresenceList();
  private feed: ActivityFeed;
  private projections: ProjectionsPanel | null = null;
  private layout!: HTMLElement;
  private boardError = h('p', { class: 'form-message error', role: 'alert', id: 'board-error' });
  private names = new Map<string, string>();
  /** Reads wait for at least this offset: what we saw, and what we did. */
  private readOffset: number | null = null;
  private openId: string | null = null;
  /** Guards against an older board load finishing after a newer one. */
  private boardLoads = 0;

  constructor(
    private api: Api,
    private user: User,
  ) {
    this.names.set(user.id, user.displayName);
    this.board = new BoardView(this.store, {
      filtersChanged: () => void this.filtersChanged('push'),
      report: (fields) => this.report(fields),
      open: (id) => void this.open(id),
    });
    this.map = new MapView({ choose: (location) => this.chooseLocation(location) });
    this.showFilters(filtersFromSearch(window.location.search));
    this.view = new IncidentView(user, {
      update: (id, fields) => this.command('PUT', `/api/incidents/${id}`, fields),
      escalate: (id, severity) => this.command('PATCH', `/api/incidents/${id}/severity`, { severity }),
      resolve: (id, resolution) => this.command('PATCH', `/api/incidents/${id}/resolve`, { resolution }),
      remove: (id) => this.remove(id),
      comment: (id, body) => this.comment(id, body),
      typing: (id, typing) => this.live?.typing(id, typing),
      close: () => this.close(),
      nameOf: (id) => this.nameOf(id),
    });
    this.bell = new NotificationBell(api, (id) => void this.open(id));
    this.feed = new ActivityFeed((event) => this.describe(event));
    if (user.role === 'PROFESSOR') {
      this.projections = new ProjectionsPanel(api, () => void this.reloadBoard(this.readOffset));
    }
    this.element = h(
      'div',
      { class: 'app' },
      h(
        'header',
        { class: 'top' },
        h('h1', {}, "The Marauder's Map"),
        this.connection.element,
        this.bell.element,
        h(
          'div',
          { class: 'me' },
          h('span', { id: 'me' }, `${user.displayName} (${label(user.role)})`),
          h('button', { type: 'button', class: 'secondary', onclick: () => void this.api.logout() }, 'Log out'),
        ),
      ),
      (this.layout = h(
        'main',
        { id: 'main', class: 'layout' },
        h('div', { class: 'board-column' }, this.boardError, this.map.element, this.board.element),
        this.view.element,
        h('aside', { class: 'side' }, this.presence.element, this.feed.element, this.projections?.element),
      )),
    );
  }

  async start(): Promise<void> {
    // The address, tidied: filters it asked for that do not exist are dropped.
    this.writeAddress('replace');
    window.addEventListener('popstate', this.addressChanged);
    const logEnd = await this.incidentLogEnd();
    // Resume where this browser left off, unless that is not in this log.
    let start = loadLastOffset(this.user.id);
    const resuming = start !== null && logEnd !== null && start < logEnd;
    if (!resuming) start = logEnd !== null && logEnd > 0 ? logEnd - 1 : null;
    this.readOffset = start;
    await this.reloadBoard(start);
    this.live = new LiveConnection(this.api, this.user.id, this.handlers(resuming), start);
    await this.live.setRooms(this.roomsWanted()); // sent with the handshake
    this.live.connect();
    void this.projections?.reload();
  }

  /** Stops everything this page started (logout, or the session ended). */
  stop(): void {
    window.removeEventListener('popstate', this.addressChanged);
    this.live?.close();
    this.projections?.stop();
    this.map.stop();
  }

  private handlers(resuming: boolean): LiveHandlers {
    let firstConnect = true;
    return {
      incidentEvent: (event, replayed) => this.receive(event, replayed),
      resync: (toOffset, fresh) => {
        if (fresh) {
          this.store.clear();
          // Offsets seen before a reset may be beyond the log now; reads
          // that wait for them would be refused.
          this.readOffset = toOffset;
        }
        void this.reloadBoard(toOffset);
        if (fresh && this.openId) void this.open(this.openId);
      },
      notification: (notification) => this.bell.add(notification),
      presence: (users) => {
        for (const user of users) this.names.set(user.userId, user.displayName);
        this.presence.show(users);
      },
      typing: (signal) => this.view.typing(signal),
      state: (state) => {
        // The first connect of a fresh page has nothing to catch up on.
        if (state.kind === 'live' && firstConnect && !resuming) state = { kind: 'live', replayed: null };
        if (state.kind === 'live' || state.kind === 'resynced') firstConnect = false;
        this.connection.show(state);
      },
      connected: () => {
        this.bell.reload(this.readOffset).catch((error) => console.warn('notifications', error));
      },
    };
  }

  // ---- live events ---------------------------------------------------------

  private receive(event: LiveEvent, replayed: boolean): void {
    this.feed.add(event, replayed);
    this.readOffset = Math.max(this.readOffset ?? -1, event.offset);
    const id = incidentIdOf(event);
    const before = this.store.get(id);
    const outcome = this.store.apply(event);
    if (outcome === 'refetch') void this.refetch(id, event.offset);
    if (event.eventType === 'comment.added' && id === this.openId) {
      const data = event.data as unknown as Comment & { version: number };
      this.view.setComments([{ id: data.id, incidentId: data.incidentId, authorId: data.authorId, body: data.body, createdAt: data.createdAt }]);
    }
    if (event.eventType === 'incident.deleted' && id === this.openId) this.view.deleted();
    this.changed();
    if (!replayed) this.showOnMap(event, before);
  }

  /** A live event: pulse it on the map, and say what others changed. */
  private showOnMap(event: LiveEvent, before: Incident | undefined): void {
    const after = this.store.get(incidentIdOf(event));
    const incident = after ?? before;
    const scope = this.mapFilters();
    if (!incident || !isLocation(incident.location) || !matchesFilters(incident, scope)) return;
    this.map.pulse(incident.location, after ? incident.id : null);
    const kind = mapChangeKind(event.eventType);
    if (kind && event.userId !== this.user.id) {
      this.map.announce({ kind, location: incident.location, severity: incident.severity });
    }
  }

  /** One event said we are behind on this incident: read it again. */
  private async refetch(id: string, minOffset: number): Promise<void> {
    try {
      const { body } = await this.api.request<Incident>('GET', `/api/incidents/${id}${query({ minOffset })}`);
      this.store.upsert(body);
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) this.store.remove(id);
      else console.warn(`refetch ${id}`, error);
    }
    this.changed();
  }

  /** After any change to the store: redraw, and keep our rooms in step. */
  private changed(): void {
    this.board.render();
    this.map.render(this.store.all().filter((incident) => matchesFilters(incident, this.mapFilters())));
    if (this.openId) {
      const incident = this.store.get(this.openId);
      if (incident) this.view.refresh(incident);
    }
    void this.syncRooms();
  }

  private roomsWanted(): Set<string> {
    const wanted = new Set<string>();
    if (this.openId && !this.store.isDeleted(this.openId)) wanted.add(this.openId);
    for (const incident of this.store.all()) {
      if (wanted.size >= MAX_ROOMS) break;
      if (this.board.matches(incident)) wanted.add(incident.id);
    }
    // Then the other places' incidents the map shows.
    const mapFilters = this.mapFilters();
    for (const incident of this.store.all()) {
      if (wanted.size >= MAX_ROOMS) break;
      if (matchesFilters(incident, mapFilters)) wanted.add(incident.id);
    }
    return wanted;
  }

  private async syncRooms(): Promise<void> {
    if (!this.live) return;
    const joined = await this.live.setRooms(this.roomsWanted());
    if (joined.length === 0) return;
    // Events in these rooms before the join were not sent to us; read the
    // incidents as of now.
    const end = await this.incidentLogEnd();
    const minOffset = end !== null && end > 0 ? end - 1 : this.readOffset;
    if (joined.length > 1) {
      await this.reloadBoard(minOffset);
    } else {
      await this.refetch(joined[0], minOffset ?? 0);
    }
  }

  // ---- reads ---------------------------------------------------------------

  private async reloadBoard(minOffset: number | null): Promise<void> {
    const load = ++this.boardLoads;
    const filters = this.board.filters();
    // With the board narrowed to one place, the map still shows them all.
    const pages = filters.location ? [filters, this.mapFilters()] : [filters];
    this.board.setBusy(true);
    try {
      const answers = await Promise.all(
        pages.map((page) => this.api.request<{ items: Incident[] }>('GET', `/api/incidents${query({ ...page, limit: BOARD_PAGE, minOffset })}`)),
      );
      if (load !== this.boardLoads) return;
      for (const { body } of answers) for (const incident of body.items) this.store.upsert(incident);
      this.boardError.textContent = '';
    } catch (error) {
      if (load === this.boardLoads) this.boardError.textContent = `The board could not be loaded: ${errorText(error)}`;
    }
    if (load === this.boardLoads) this.board.setBusy(false);
    this.changed();
  }

  // ---- filters and the address --------------------------------------------

  /** The filters changed (the form, the map, or back/forward): follow them. */
  private async filtersChanged(address: 'push' | 'keep'): Promise<void> {
    if (address === 'push') this.writeAddress('push');
    this.map.setSelected(this.selectedLocation());
    // The map keeps its drawing until the new board arrives (no flicker).
    this.store.clear();
    this.board.render();
    await this.reloadBoard(this.readOffset);
  }

  private chooseLocation(location: Location | null): void {
    this.board.setFilters({ ...this.board.filters(), location: location ?? '' });
    void this.filtersChanged('push');
  }

  /** Back or forward: show the filters the address has now. */
  private addressChanged = (): void => {
    const wanted = filtersFromSearch(window.location.search);
    if (sameFilters(wanted, this.board.filters())) return;
    this.showFilters(wanted);
    void this.filtersChanged('keep');
  };

  private showFilters(filters: Filters): void {
    this.board.setFilters(filters);
    this.map.setSelected(this.selectedLocation());
  }

  /** Puts the board's filters in the address: a new history entry, or in place. */
  private writeAddress(how: 'push' | 'replace'): void {
    const { pathname, search, hash } = window.location;
    const wanted = searchWithFilters(search, this.board.filters());
    if (wanted === search) return;
    const url = `${pathname}${wanted}${hash}`;
    if (how === 'push') history.pushState(null, '', url);
    else history.replaceState(null, '', url);
  }

  private selectedLocation(): Location | null {
    const { location } = this.board.filters();
    return isLocation(location) ? location : null;
  }

  /** What the map shows: the board's filters, every location. */
  private mapFilters(): Filters {
    return { ...this.board.filters(), location: '' };
  }

  /** The next offset of incident-events (GET /health), or null if unknown. */
  private async incidentLogEnd(): Promise<number | null> {
    try {
      const response = await fetch('/health');
      const health = (await response.json()) as { log?: { topics?: Record<string, { logEnd?: number }> } };
      const end = health.log?.topics?.['incident-events']?.logEnd;
      return typeof end === 'number' ? end : null;
    } catch {
      return null;
    }
  }

  private async open(id: string): Promise<void> {
    this.openId = id;
    this.board.setOpen(id);
    this.layout.classList.add('incident-open');
    try {
      // Join first, then read: what happened before the join is in the read.
      const joined = (await this.live?.setRooms(this.roomsWanted()))?.includes(id) ?? false;
      const end = joined ? await this.incidentLogEnd() : null;
      const minOffset = end !== null && end > 0 ? Math.max(end - 1, this.readOffset ?? 0) : this.readOffset;
      const [incident, comments] = await Promise.all([
        this.api.request<Incident>('GET', `/api/incidents/${id}${query({ minOffset })}`),
        this.api.request<{ items: Comment[] }>('GET', `/api/incidents/${id}/comments${query({ minOffset })}`),
      ]);
      if (this.openId !== id) return;
      this.store.upsert(incident.body);
      this.view.show(this.store.get(id) ?? incident.body, comments.body.items);
    } catch (error) {
      if (this.openId !== id) return;
      if (error instanceof ApiError && error.status === 404) {
        this.store.remove(id);
        this.view.show(placeholder(id), []);
        this.view.deleted();
      } else {
        this.boardError.textContent = `Could not open the incident: ${errorText(error)}`;
        this.openId = null;
        this.board.setOpen(null);
        this.layout.classList.remove('incident-open');
      }
    }
    this.changed();
  }

  private close(): void {
    this.openId = null;
    this.view.hide();
    this.layout.classList.remove('incident-open');
    this.board.setOpen(null);
    this.changed();
    (this.board.element.querySelector('#board-heading') as HTMLElement | null)?.focus();
  }

  // ---- commands (each answers with Event-Offset: read at least that) ------

  private async report(fields: { title: string; description: string | null; severity: string; location: string }): Promise<void> {
    const answer = await this.api.command<Incident>('POST', '/api/incidents', fields);
    this.sawOwnWrite(answer.offset);
    this.store.upsert(answer.body);
    this.changed();
  }

  /** A command answering with the incident's new state. */
  private async command(method: string, path: string, body: unknown): Promise<void> {
    const answer = await this.api.command<Incident>(method, path, body);
    this.sawOwnWrite(answer.offset);
    this.store.upsert(answer.body);
    this.changed();
  }

  private async remove(id: string): Promise<void> {
    const answer = await this.api.command('DELETE', `/api/incidents/${id}`);
    this.sawOwnWrite(answer.offset);
    this.store.remove(id);
    this.close();
  }

  private async comment(id: string, body: string): Promise<void> {
    const answer = await this.api.command<Comment>('POST', `/api/incidents/${id}/comments`, { body });
    this.sawOwnWrite(answer.offset);
    this.view.setComments([answer.body]);
    // Read the comments back as of our write: ours and any before it.
    const comments = await this.api.request<{ items: Comment[] }>('GET', `/api/incidents/${id}/comments${query({ minOffset: answer.offset })}`);
    if (this.openId === id) this.view.setComments(comments.body.items);
  }

  private sawOwnWrite(offset: number | null): void {
    if (offset !== null) this.readOffset = Math.max(this.readOffset ?? -1, offset);
  }

  // ---- words ---------------------------------------------------------------

  private nameOf(userId: string): string {
    if (userId === this.user.id) return 'you';
    return this.names.get(userId) ?? `someone (${userId.slice(0, 8)})`;
  }

  private describe(event: LiveEvent): string {
    const who = event.userId ? this.nameOf(event.userId) : 'the system';
    const data = event.data;
    const title = `“${String(data.title ?? this.store.get(incidentIdOf(event))?.title ?? 'an incident')}”`;
    switch (event.eventType) {
      case 'incident.created':
        return `${who} reported ${title} (${label(String(data.severity))}, ${placeName(String(data.location))})`;
      case 'incident.updated':
        return `${who} updated ${title}`;
      case 'incident.resolved':
        return `${who} resolved ${title}`;
      case 'incident.deleted':
        return `${who} deleted ${title}`;
      case 'comment.added':
        return `${who} commented on ${title}`;
      case 'severity.escalated':
        return `${who} changed the severity of ${title} from ${label(String(data.oldSeverity))} to ${label(String(data.newSeverity))}`;
      default:
        return `${who}: ${event.eventType}`;
    }
  }
}

function mapChangeKind(eventType: string): MapChange['kind'] | null {
  switch (eventType) {
    case 'incident.created':
      return 'reported';
    case 'incident.updated':
      return 'changed';
    case 'severity.escalated':
      return 'escalated';
    case 'incident.resolved':
      return 'resolved';
    case 'incident.deleted':
      return 'deleted';
    default:
      return null; // comments pulse the map, but are not announced
  }
}

function placeholder(id: string): Incident {
  const now = new Date().toISOString();
  return {
    id,
    title: 'Incident',
    description: null,
    severity: 'LOW',
    location: 'GREAT_HALL',
    status: 'OPEN',
    reportedBy: '',
    assignedTo: null,
    resolvedBy: null,
    resolution: null,
    createdAt: now,
    updatedAt: now,
    resolvedAt: null,
    version: 0,
  };
}
