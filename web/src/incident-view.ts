// One incident: its details, what you may do to it, its comments, and who
// is typing a comment right now.

import { errorText, severityBadge, statusBadge } from './board';
import { h, select, when } from './dom';
import { placeName } from './places';
import { LOCATIONS, SEVERITIES, label, type Comment, type Incident, type TypingSignal, type User } from './types';

export interface IncidentActions {
  update(id: string, fields: Record<string, string | null>): Promise<void>;
  escalate(id: string, severity: string): Promise<void>;
  resolve(id: string, resolution: string): Promise<void>;
  remove(id: string): Promise<void>;
  comment(id: string, body: string): Promise<void>;
  typing(id: string, typing: boolean): void;
  close(): void;
  nameOf(userId: string): string;
}

// While the user keeps typing, say so every 2 s (the service forgets an
// indicator ~5 s after the last typing:start); stop after 3 s of quiet.
const TYPING_REPEAT_MS = 2000;
const TYPING_QUIET_MS = 3000;
// Forget someone's indicator if neither a refresh nor a stop arrives.
const TYPING_SHOWN_MS = 6000;

export class IncidentView {
  readonly element = h('section', { class: 'incident-view', 'aria-labelledby': 'incident-heading', id: 'incident-view', hidden: true });
  incidentId: string | null = null;
  private details = h('div', { class: 'incident-details' });
  private commentList = h('ol', { class: 'comments', id: 'comments', 'aria-label': 'Comments' });
  private typingLine = h('p', { class: 'typing', id: 'typing', 'aria-live': 'polite' });
  private message = h('p', { class: 'form-message', role: 'status', id: 'incident-message' });
  private actionsBox = h('div', { class: 'incident-actions' });
  private shownVersion = 0;
  private comments = new Map<string, Comment>();
  private typists = new Map<string, { name: string; timer: number }>();
  private lastTypingSent = 0;
  private quietTimer: number | undefined;

  constructor(
    private me: User,
    private actions: IncidentActions,
  ) {}

  show(incident: Incident, comments: Comment[]): void {
    this.stopTyping();
    this.incidentId = incident.id;
    // A comment:added that arrived while the incident was loading may be
    // newer than the fetched list: keep it.
    const arrivedWhileLoading = [...this.comments.values()].filter((comment) => comment.incidentId === incident.id);
    this.comments = new Map([...arrivedWhileLoading, ...comments].map((comment) => [comment.id, comment]));
    this.typists.forEach(({ timer }) => window.clearTimeout(timer));
    this.typists.clear();
    this.message.textContent = '';
    this.element.hidden = false;
    this.element.replaceChildren(
      h(
        'div',
        { class: 'incident-header' },
        h('h2', { id: 'incident-heading', tabindex: -1 }, incident.title),
        h('button', { type: 'button', class: 'secondary', onclick: () => this.actions.close() }, 'Close'),
      ),
      this.details,
      this.message,
      this.actionsBox,
      h('h3', {}, 'Comments'),
      this.commentList,
      this.typingLine,
      this.commentForm(incident.id),
    );
    this.shownVersion = 0;
    this.refresh(incident);
    this.renderComments();
    this.renderTyping();
    (this.element.querySelector('#incident-heading') as HTMLElement).focus();
  }

  hide(): void {
    this.stopTyping();
    this.incidentId = null;
    this.element.hidden = true;
    this.element.replaceChildren();
  }

  /**
   * New state of the open incident (from an event or a snapshot). The forms
   * are rebuilt for the new state unless the user is filling one in.
   */
  refresh(incident: Incident): void {
    if (incident.id !== this.incidentId) return;
    const editing = this.actionsBox.contains(document.activeElement) && document.activeElement?.tagName !== 'BUTTON';
    if (incident.version !== this.shownVersion && !editing) {
      const hadFocus = this.actionsBox.contains(document.activeElement);
      this.shownVersion = incident.version;
      this.actionsBox.replaceChildren(...this.actionForms(incident));
      if (hadFocus) (this.element.querySelector('#incident-heading') as HTMLElement | null)?.focus();
    }
    const heading = this.element.querySelector('#incident-heading');
    if (heading) heading.textContent = incident.title;
    this.details.replaceChildren(
      h('p', { class: 'incident-meta' }, severityBadge(incident.severity), ' ', statusBadge(incident.status), ' ', placeName(incident.location)),
      incident.description ? h('p', { class: 'description' }, incident.description) : '',
      h(
        'p',
        { class: 'muted' },
        `Reported by ${this.actions.nameOf(incident.reportedBy)}, `,
        h('time', { datetime: incident.createdAt }, when(incident.createdAt)),
        incident.assignedTo ? ` · assigned to ${this.actions.nameOf(incident.assignedTo)}` : '',
      ),
      incident.status === 'RESOLVED'
        ? h('p', { class: 'resolution' }, h('strong', {}, 'Resolved: '), incident.resolution ?? '')
        : '',
    );
  }

  /** The open incident was deleted (by anyone). */
  deleted(): void {
    this.stopTyping();
    this.element.replaceChildren(
      h('h2', { id: 'incident-heading' }, 'Incident deleted'),
      h('p', {}, 'This incident has been deleted.'),
      h('button', { type: 'button', onclick: () => this.actions.close() }, 'Back to the board'),
    );
  }

  setComments(comments: Comment[]): void {
    for (const comment of comments) this.comments.set(comment.id, comment);
    this.renderComments();
  }

  typing(signal: TypingSignal): void {
    if (signal.incidentId !== this.incidentId || signal.userId === this.me.id) return;
    const previous = this.typists.get(signal.userId);
    if (previous) window.clearTimeout(previous.timer);
    if (signal.typing) {
      const timer = window.setTimeout(() => {
        this.typists.delete(signal.userId);
        this.renderTyping();
      }, TYPING_SHOWN_MS);
      this.typists.set(signal.userId, { name: signal.displayName, timer });
    } else {
      this.typists.delete(signal.userId);
    }
    this.renderTyping();
  }

  private renderComments(): void {
    const sorted = [...this.comments.values()].sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
    this.commentList.replaceChildren(
      ...(sorted.length
        ? sorted.map((comment) =>
            h(
              'li',
              { class: 'comment', 'data-comment-id': comment.id },
              h('p', { class: 'muted' }, h('strong', {}, this.actions.nameOf(comment.authorId)), ' · ', h('time', { datetime: comment.createdAt }, when(comment.createdAt))),
              h('p', {}, comment.body),
            ),
          )
        : [h('li', { class: 'empty' }, 'No comments yet.')]),
    );
  }

  private renderTyping(): void {
    const names = [...this.typists.values()].map((typist) => typist.name);
    this.typingLine.textContent =
      names.length === 0 ? '' : names.length === 1 ? `${names[0]} is typing…` : `${names.join(', ')} are typing…`;
  }

  private commentForm(incidentId: string): HTMLFormElement {
    const body = h('textarea', { id: 'comment-body', name: 'body', rows: 3, required: true });
    const form = h(
      'form',
      { class: 'comment-form' },
      h('label', { for: 'comment-body' }, h('span', {}, 'Add a comment'), body),
      h('button', { type: 'submit' }, 'Post comment'),
    );
    body.addEventListener('input', () => this.userTyped(incidentId));
    body.addEventListener('blur', () => this.stopTyping());
    this.submit(form, async () => {
      this.stopTyping();
      await this.actions.comment(incidentId, body.value);
      body.value = '';
      return 'Comment posted.';
    });
    return form;
  }

  private userTyped(incidentId: string): void {
    const now = Date.now();
    if (now - this.lastTypingSent >= TYPING_REPEAT_MS) {
      this.lastTypingSent = now;
      this.actions.typing(incidentId, true);
    }
    window.clearTimeout(this.quietTimer);
    this.quietTimer = window.setTimeout(() => this.stopTyping(), TYPING_QUIET_MS);
  }

  private stopTyping(): void {
    window.clearTimeout(this.quietTimer);
    if (this.lastTypingSent !== 0 && this.incidentId) this.actions.typing(this.incidentId, false);
    this.lastTypingSent = 0;
  }

  private actionForms(incident: Incident): HTMLElement[] {
    const staff = this.me.role === 'PREFECT' || this.me.role === 'PROFESSOR';
    const mine = incident.reportedBy === this.me.id;
    const forms: HTMLElement[] = [];
    if (incident.status !== 'RESOLVED') {
      forms.push(this.severityForm(incident));
      if (mine || staff) forms.push(this.editForm(incident), this.resolveForm(incident));
    }
    if (mine || this.me.role === 'PROFESSOR') {
      const remove = h('form', { class: 'delete-form' }, h('button', { type: 'submit', class: 'danger' }, 'Delete incident'));
      this.submit(remove, async () => {
        if (!window.confirm(`Delete “${incident.title}”? This cannot be undone.`)) return '';
        await this.actions.remove(incident.id);
        return '';
      });
      forms.push(remove);
    }
    return forms;
  }

  private severityForm(incident: Incident): HTMLFormElement {
    const form = h(
      'form',
      { class: 'inline-form' },
      select('escalate-severity', 'Severity', SEVERITIES, label, { value: incident.severity, name: 'severity' }),
      h('button', { type: 'submit' }, 'Change severity'),
    );
    this.submit(form, async () => {
      const severity = String(new FormData(form).get('severity'));
      await this.actions.escalate(incident.id, severity);
      return `Severity is now ${label(severity)}.`;
    });
    return form;
  }

  private editForm(incident: Incident): HTMLElement {
    const form = h(
      'form',
      { class: 'edit-form' },
      h('label', { for: 'edit-title' }, h('span', {}, 'Title'), h('input', { id: 'edit-title', name: 'title', value: incident.title, required: true })),
      h('label', { for: 'edit-description' }, h('span', {}, 'Description'), h('textarea', { id: 'edit-description', name: 'description', rows: 2 }, incident.description ?? '')),
      select('edit-location', 'Location', LOCATIONS, placeName, { value: incident.location, name: 'location' }),
      select('edit-status', 'Status', ['OPEN', 'INVESTIGATING'], label, { value: incident.status, name: 'status' }),
      h('button', { type: 'submit' }, 'Save changes'),
    );
    this.submit(form, async () => {
      const data = new FormData(form);
      // Send only what changed: the event then carries only those fields.
      const fields: Record<string, string | null> = {};
      const title = String(data.get('title'));
      const description = String(data.get('description') ?? '').trim();
      if (title !== incident.title) fields.title = title;
      if (description !== (incident.description ?? '')) fields.description = description || null;
      for (const field of ['location', 'status'] as const) {
        if (data.get(field) !== incident[field]) fields[field] = String(data.get(field));
      }
      if (Object.keys(fields).length === 0) return 'Nothing changed.';
      await this.actions.update(incident.id, fields);
      return 'Saved.';
    });
    return h('details', { class: 'edit-box' }, h('summary', {}, 'Edit'), form);
  }

  private resolveForm(incident: Incident): HTMLElement {
    const form = h(
      'form',
      { class: 'resolve-form' },
      h('label', { for: 'resolution' }, h('span', {}, 'Resolution'), h('textarea', { id: 'resolution', name: 'resolution', rows: 2, required: true })),
      h('button', { type: 'submit' }, 'Resolve'),
    );
    this.submit(form, async () => {
      await this.actions.resolve(incident.id, String(new FormData(form).get('resolution')));
      return 'Resolved.';
    });
    return h('details', { class: 'resolve-box' }, h('summary', {}, 'Resolve'), form);
  }

  /** Wires a form's submit to `run`, showing its outcome or error. */
  private submit(form: HTMLFormElement, run: () => Promise<string>): void {
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const button = form.querySelector('button[type=submit]') as HTMLButtonElement;
      button.disabled = true;
      this.message.className = 'form-message';
      try {
        const done = await run();
        if (done) this.message.textContent = done;
      } catch (error) {
        this.message.className = 'form-message error';
        this.message.textContent = errorText(error);
      } finally {
        button.disabled = false;
      }
    });
  }
}
