// The side panel: the connection's state, who is online, and the activity
// feed — every incident event the socket delivered, once each, newest first,
// with its offset in the log.

import { h, when } from './dom';
import type { ConnectionState } from './live';
import { label, type LiveEvent, type OnlineUser } from './types';

const FEED_KEPT = 50;

export class ConnectionBadge {
  readonly element = h('p', { class: 'connection', id: 'connection-state', role: 'status' }, 'Connecting…');

  show(state: ConnectionState): void {
    const [kind, text] = describe(state);
    this.element.className = `connection ${kind}`;
    this.element.textContent = text;
    // Why the connection dropped (the server's closing reason, e.g.
    // token_expired, or Socket.IO's), for the curious and for tests.
    this.element.dataset.reason = state.kind === 'reconnecting' ? state.reason : '';
  }
}

function describe(state: ConnectionState): [string, string] {
  switch (state.kind) {
    case 'connecting':
      return ['pending', 'Connecting…'];
    case 'reconnecting':
      return ['pending', 'Reconnecting…'];
    case 'live':
      if (state.replayed === null) return ['live', 'Live'];
      return ['live', `Caught up — replayed ${state.replayed} missed event${state.replayed === 1 ? '' : 's'}`];
    case 'resynced':
      return ['live', 'Caught up — too much was missed to replay, so the board was reloaded'];
    case 'closed':
      return ['pending', 'Offline'];
  }
}

export class PresenceList {
  readonly element: HTMLElement;
  private list = h('ul', { id: 'online-users', class: 'online' });
  private heading = h('h2', { id: 'online-heading' }, 'Online');

  constructor() {
    this.element = h('section', { class: 'panel', 'aria-labelledby': 'online-heading' }, this.heading, this.list);
  }

  show(users: OnlineUser[]): void {
    this.heading.textContent = `Online (${users.length})`;
    this.list.replaceChildren(
      ...users.map((user) => h('li', { 'data-user-id': user.userId }, user.displayName, ' ', h('span', { class: 'muted' }, `(${label(user.role)})`))),
    );
  }
}

export class ActivityFeed {
  readonly element: HTMLElement;
  // Not a live region: the map announces live changes, gathered (map.ts);
  // announcing every event here as well would say each one twice.
  private list = h('ol', { id: 'activity', class: 'activity', reversed: true });

  constructor(private describeEvent: (event: LiveEvent) => string) {
    this.element = h(
      'section',
      { class: 'panel', 'aria-labelledby': 'activity-heading' },
      h('h2', { id: 'activity-heading' }, 'Activity'),
      this.list,
    );
  }

  add(event: LiveEvent, replayed: boolean): void {
    const item = h(
      'li',
      { 'data-offset': event.offset, 'data-event-id': event.eventId, 'data-event-type': event.eventType },
      this.describeEvent(event),
      ' ',
      h('span', { class: 'muted' }, h('time', { datetime: event.timestamp }, when(event.timestamp)), ` · offset ${event.offset}`, replayed ? ' · replayed' : ''),
    );
    this.list.prepend(item);
    while (this.list.children.length > FEED_KEPT) this.list.lastElementChild?.remove();
  }
}
