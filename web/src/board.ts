// The incident board: filters, the report form and the live list.

import { ApiError } from './api';
import { h, select, when } from './dom';
import { matchesFilters, type Filters } from './filters';
import { placeName } from './places';
import type { IncidentStore } from './store';
import { LOCATIONS, SEVERITIES, STATUSES, label, type Incident } from './types';

export interface BoardActions {
  filtersChanged(filters: Filters): void;
  report(fields: { title: string; description: string | null; severity: string; location: string }): Promise<void>;
  open(incidentId: string): void;
}

export function severityBadge(severity: string): HTMLElement {
  // Colour and text together: the colour is never the only signal.
  return h('span', { class: `badge severity-${severity.toLowerCase()}` }, label(severity));
}

export function statusBadge(status: string): HTMLElement {
  return h('span', { class: `badge status-${status.toLowerCase()}` }, label(status));
}

export function errorText(error: unknown): string {
  if (error instanceof ApiError) {
    const fields = Object.entries(error.fields).map(([field, problem]) => `${field}: ${problem}`);
    return fields.length ? `${error.message} (${fields.join('; ')})` : error.message;
  }
  return error instanceof Error ? error.message : String(error);
}

export class BoardView {
  readonly element: HTMLElement;
  private list: HTMLUListElement;
  private summary: HTMLParagraphElement;
  private filterForm: HTMLFormElement;
  private openId: string | null = null;

  constructor(
    private store: IncidentStore,
    private actions: BoardActions,
  ) {
    this.filterForm = h(
      'form',
      { class: 'filters', 'aria-label': 'Filter incidents' },
      select('filter-status', 'Status', STATUSES, label, { any: 'Any status', name: 'status' }),
      select('filter-severity', 'Severity', SEVERITIES, label, { any: 'Any severity', name: 'severity' }),
      select('filter-location', 'Location', LOCATIONS, placeName, { any: 'Anywhere', name: 'location' }),
    );
    this.filterForm.addEventListener('change', () => this.actions.filtersChanged(this.filters()));
    this.filterForm.addEventListener('submit', (event) => event.preventDefault());

    this.list = h('ul', { class: 'incident-list', id: 'incident-list', 'aria-label': 'Incidents' });
    this.summary = h('p', { class: 'muted', id: 'board-summary' });
    this.element = h(
      'section',
      { class: 'board', 'aria-labelledby': 'board-heading' },
      h('h2', { id: 'board-heading' }, 'Incident board'),
      this.reportForm(),
      this.filterForm,
      this.summary,
      this.list,
    );
  }

  filters(): Filters {
    const data = new FormData(this.filterForm);
    return {
      status: String(data.get('status') ?? ''),
      severity: String(data.get('severity') ?? ''),
      location: String(data.get('location') ?? ''),
    };
  }

  /** Shows these filters in the form (from the address, or the map). */
  setFilters(filters: Filters): void {
    for (const [name, value] of Object.entries(filters)) {
      (this.filterForm.elements.namedItem(name) as HTMLSelectElement).value = value;
    }
  }

  matches(incident: Incident): boolean {
    return matchesFilters(incident, this.filters());
  }

  /** Marks the list as loading (aria-busy) while the board is read again. */
  setBusy(busy: boolean): void {
    this.list.setAttribute('aria-busy', String(busy));
  }

  setOpen(incidentId: string | null): void {
    this.openId = incidentId;
    this.render();
  }

  render(): void {
    const shown = this.store.all().filter((incident) => this.matches(incident));
    this.summary.textContent = shown.length === 1 ? '1 incident' : `${shown.length} incidents`;
    this.list.replaceChildren(
      ...(shown.length
        ? shown.map((incident) => this.card(incident))
        : [h('li', { class: 'empty' }, 'Mischief managed: no incidents match.')]),
    );
  }

  private card(incident: Incident): HTMLLIElement {
    const isOpen = incident.id === this.openId;
    return h(
      'li',
      { class: `incident severity-edge-${incident.severity.toLowerCase()}${isOpen ? ' open' : ''}`, 'data-incident-id': incident.id },
      h(
        'button',
        { type: 'button', class: 'incident-title', 'aria-current': isOpen ? 'true' : null, onclick: () => this.actions.open(incident.id) },
        incident.title,
      ),
      h(
        'p',
        { class: 'incident-meta' },
        severityBadge(incident.severity),
        ' ',
        statusBadge(incident.status),
        ' ',
        h('span', {}, placeName(incident.location)),
        ' · ',
        h('time', { datetime: incident.createdAt }, when(incident.createdAt)),
      ),
    );
  }

  private reportForm(): HTMLElement {
    const message = h('p', { class: 'form-message', role: 'status', id: 'report-message' });
    const form = h(
      'form',
      { class: 'report', id: 'report-form' },
      h('label', { for: 'report-title' }, h('span', {}, 'Title'), h('input', { id: 'report-title', name: 'title', required: true, maxlength: 200, autocomplete: 'off' })),
      h('label', { for: 'report-description' }, h('span', {}, 'Description (optional)'), h('textarea', { id: 'report-description', name: 'description', rows: 2 })),
      select('report-severity', 'Severity', SEVERITIES, label, { value: 'MEDIUM', name: 'severity' }),
      select('report-location', 'Location', LOCATIONS, placeName, { value: 'GREAT_HALL', name: 'location' }),
      h('button', { type: 'submit' }, 'Report incident'),
      message,
    );
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const data = new FormData(form);
      const description = String(data.get('description') ?? '').trim();
      const button = form.querySelector('button') as HTMLButtonElement;
      button.disabled = true;
      message.className = 'form-message';
      message.textContent = 'Reporting…';
      try {
        await this.actions.report({
          title: String(data.get('title') ?? ''),
          description: description || null,
          severity: String(data.get('severity')),
          location: String(data.get('location')),
        });
        message.textContent = 'Reported.';
        (form.elements.namedItem('title') as HTMLInputElement).value = '';
        (form.elements.namedItem('description') as HTMLTextAreaElement).value = '';
      } catch (error) {
        message.className = 'form-message error';
        message.textContent = `Could not report: ${errorText(error)}`;
      } finally {
        button.disabled = false;
      }
    });
    return h('details', { class: 'report-box', open: true }, h('summary', {}, 'Report an incident'), form);
  }
}
