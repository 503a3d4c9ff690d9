// The notification bell: the unread count, and a list that opens on demand.
// The list is loaded from GET /api/notifications on every (re)connect — the
// socket does not replay notifications — and grows with notification:new.

import type { Api } from './api';
import { h, when } from './dom';
import type { Notification } from './types';

export class NotificationBell {
  readonly element: HTMLElement;
  private button: HTMLButtonElement;
  private count = h('span', { class: 'count', id: 'unread-count' }, '0');
  private panel = h('div', { class: 'notification-panel', id: 'notification-panel', hidden: true });
  private items = new Map<string, Notification>();

  constructor(
    private api: Api,
    private open: (incidentId: string) => void,
  ) {
    this.button = h(
      'button',
      { type: 'button', class: 'bell', 'aria-expanded': 'false', 'aria-controls': 'notification-panel', onclick: () => this.toggle() },
      bellIcon(),
      'Notifications',
      this.count,
    );
    this.panel.addEventListener('keydown', (event) => {
      if (event.key === 'Escape') this.toggle(false);
    });
    this.element = h('div', { class: 'notifications' }, this.button, this.panel);
    this.render();
  }

  async reload(minOffset?: number | null): Promise<void> {
    const path = minOffset == null ? '/api/notifications' : `/api/notifications?minOffset=${minOffset}`;
    const answer = await this.api.request<{ items: Notification[]; unreadCount: number }>('GET', path);
    this.items = new Map(answer.body.items.map((item) => [item.id, item]));
    this.render();
  }

  add(notification: Notification): void {
    if (this.items.has(notification.id)) return;
    this.items.set(notification.id, notification);
    this.render();
  }

  private unread(): number {
    return [...this.items.values()].filter((item) => !item.readAt).length;
  }

  private toggle(show = this.panel.hidden): void {
    this.panel.hidden = !show;
    this.button.setAttribute('aria-expanded', String(show));
    if (show) (this.panel.querySelector('button') as HTMLButtonElement | null)?.focus();
    else this.button.focus();
  }

  private async read(notification: Notification): Promise<void> {
    if (!notification.readAt) {
      await this.api.request('PATCH', `/api/notifications/${notification.id}/read`);
      this.items.set(notification.id, { ...notification, readAt: new Date().toISOString() });
      this.render();
    }
    this.toggle(false);
    this.open(notification.incidentId);
  }

  private render(): void {
    const unread = this.unread();
    this.count.textContent = String(unread);
    this.count.classList.toggle('zero', unread === 0);
    this.button.setAttribute('aria-label', `Notifications: ${unread} unread`);
    const sorted = [...this.items.values()].sort((a, b) => b.createdAt.localeCompare(a.createdAt));
    this.panel.replaceChildren(
      h('h2', { class: 'visually-hidden' }, 'Notifications'),
      sorted.length
        ? h(
            'ul',
            {},
            sorted.map((item) =>
              h(
                'li',
                { class: item.readAt ? 'read' : 'unread' },
                h(
                  'button',
                  { type: 'button', class: 'link', onclick: () => void this.read(item) },
                  item.readAt ? '' : h('span', { class: 'visually-hidden' }, 'Unread: '),
                  item.message,
                ),
                h('time', { class: 'muted', datetime: item.createdAt }, when(item.createdAt)),
              ),
            ),
          )
        : h('p', { class: 'muted' }, 'Nothing yet.'),
    );
  }
}

/** An inline bell (no icon font or emoji font needed). */
function bellIcon(): SVGSVGElement {
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  const path = document.createElementNS('http://www.w3.org/2000/svg', 'path');
  path.setAttribute('d', 'M12 22a2.5 2.5 0 0 0 2.45-2h-4.9A2.5 2.5 0 0 0 12 22zm7-6V11a7 7 0 0 0-5.5-6.84V3a1.5 1.5 0 0 0-3 0v1.16A7 7 0 0 0 5 11v5l-2 2v1h18v-1z');
  svg.append(path);
  return svg;
}
