// For PROFESSORs: the projections — each one's offset, log end, lag and
// state — and a rebuild button that replays one from offset 0 into fresh
// tables (POST /api/admin/projections/{name}/rebuild) and shows its progress.

import type { Api } from './api';
import { errorText } from './board';
import { h } from './dom';
import type { ProjectionStatus } from './types';

// How often to ask for progress while a rebuild runs.
const POLL_MS = 500;

export class ProjectionsPanel {
  readonly element: HTMLElement;
  private body = h('tbody');
  private message = h('p', { class: 'form-message', role: 'status', id: 'projections-message' });
  private timer: number | undefined;
  private wasRebuilding = new Set<string>();

  constructor(
    private api: Api,
    private rebuilt: (name: string) => void,
  ) {
    this.element = h(
      'section',
      { class: 'panel projections', 'aria-labelledby': 'projections-heading' },
      h('h2', { id: 'projections-heading' }, 'Projections'),
      h(
        'div',
        { class: 'table-scroll' },
        h(
          'table',
          { id: 'projections' },
          h('thead', {}, h('tr', {}, ['Projection', 'Offset', 'Log end', 'Lag', 'State'].map((text) => h('th', { scope: 'col' }, text)))),
          this.body,
        ),
      ),
      h('button', { type: 'button', class: 'secondary', onclick: () => void this.reload() }, 'Refresh'),
      this.message,
    );
  }

  async reload(): Promise<void> {
    window.clearTimeout(this.timer);
    try {
      const { body } = await this.api.request<ProjectionStatus[]>('GET', '/api/admin/projections');
      this.render(body);
      const rebuilding = body.filter((projection) => projection.state === 'rebuilding').map((p) => p.name);
      for (const name of this.wasRebuilding) {
        if (!rebuilding.includes(name)) {
          this.message.textContent = `${name} rebuilt from offset 0 and switched over.`;
          this.rebuilt(name);
        }
      }
      this.wasRebuilding = new Set(rebuilding);
      if (rebuilding.length) this.timer = window.setTimeout(() => void this.reload(), POLL_MS);
    } catch (error) {
      this.message.textContent = `Could not load the projections: ${errorText(error)}`;
    }
  }

  stop(): void {
    window.clearTimeout(this.timer);
  }

  private async rebuild(name: string): Promise<void> {
    this.message.textContent = `Rebuilding ${name}…`;
    try {
      await this.api.request('POST', `/api/admin/projections/${encodeURIComponent(name)}/rebuild`);
      this.wasRebuilding.add(name);
    } catch (error) {
      this.message.textContent = `Could not rebuild ${name}: ${errorText(error)}`;
    }
    await this.reload();
  }

  private render(projections: ProjectionStatus[]): void {
    this.body.replaceChildren(
      ...projections.map((p) =>
        h(
          'tr',
          { 'data-projection': p.name },
          // The rebuild button sits under the name: a column of its own
          // made the table wider than the side panel (issue 20).
          h(
            'th',
            { scope: 'row' },
            p.name,
            h('span', { class: 'muted topic' }, p.topic),
            h(
              'button',
              { type: 'button', disabled: p.state === 'rebuilding', 'aria-label': `Rebuild ${p.name}`, onclick: () => void this.rebuild(p.name) },
              'Rebuild',
            ),
          ),
          h('td', { class: 'number' }, p.storedOffset),
          h('td', { class: 'number' }, p.logEnd),
          h('td', { class: 'number' }, p.lag),
          h('td', { class: `state-${p.state}` }, p.state, p.deadLetters ? ` · ${p.deadLetters} dead letters` : '', this.progress(p)),
        ),
      ),
    );
  }

  private progress(p: ProjectionStatus): HTMLElement | null {
    if (!p.rebuild) return null;
    const { appliedOffset, logEnd, eventsPerSecond, secondsLeft } = p.rebuild;
    const pace = `${Math.round(eventsPerSecond)} events/s`;
    const left = secondsLeft === undefined ? '' : `, about ${Math.ceil(secondsLeft)} s left`;
    const text = `${appliedOffset} of ${logEnd} events replayed (${pace}${left})`;
    return h('span', { class: 'progress' }, h('progress', { max: Math.max(logEnd, 1), value: appliedOffset, 'aria-label': `${p.name} rebuild progress` }), ' ', text);
  }
}
