// The map: Hogwarts drawn by hand (hogwarts.svg), and over the drawing one
// button per location. Each button shows how many incidents are there and a
// marker per incident (up to three), coloured and labelled by severity;
// resolved ones fade, deleted ones go. Choosing a location filters the board
// to it (app.ts keeps the filter in the address); choosing it again, or
// "Show every place", lifts the filter.
//
// The map draws what the board's store holds (app.ts decides which
// incidents: the board's filters, except the location), so map and board can
// never disagree. Its elements are made once and updated in place: a live
// update never takes the keyboard focus away or restarts an animation.

import drawing from './hogwarts.svg?raw';
import { h } from './dom';
import { PLACE_NAMES, SHORT_PLACE_NAMES, describePlace, summarizePlaces, type PlaceSummary } from './places';
import { label, type Incident, type Location, type Severity } from './types';

/**
 * Markers drawn per location; the rest are counted ("+2"). A narrow map
 * (a phone, or beside an open incident) shows only the first, the most
 * severe, and counts the rest (style.css picks which count shows).
 */
const MARKERS_SHOWN = 3;
const MARKERS_SHOWN_NARROW = 1;
/** How long a location and its marker pulse after a live event. */
const PULSE_MS = 2000;
/** Live changes are gathered this long, then announced in one sentence. */
const ANNOUNCE_AFTER_MS = 1500;

/** Top to bottom as the eye reads the drawing: the order Tab follows. */
const PLACE_ORDER: readonly Location[] = [
  'ASTRONOMY_TOWER',
  'GRYFFINDOR_TOWER',
  'OWLERY',
  'ROOM_OF_REQUIREMENT',
  'FORBIDDEN_FOREST',
  'HOSPITAL_WING',
  'GREAT_HALL',
  'LIBRARY',
  'DUNGEONS',
  'BLACK_LAKE',
  'QUIDDITCH_PITCH',
  'HOGSMEADE',
];

export interface MapActions {
  /** The user chose a location (again: `null`, show every place). */
  choose(location: Location | null): void;
}

/** A live change worth saying out loud. */
export interface MapChange {
  location: Location;
  kind: 'reported' | 'changed' | 'escalated' | 'resolved' | 'deleted';
  severity: Severity;
}

interface PlaceElements {
  button: HTMLButtonElement;
  count: HTMLElement;
  markers: HTMLElement;
  more: HTMLElement;
  moreNarrow: HTMLElement;
  markerById: Map<string, HTMLElement>;
}

export class MapView {
  readonly element: HTMLElement;
  private places = new Map<Location, PlaceElements>();
  private clearButton: HTMLButtonElement;
  private selected: Location | null = null;
  private announcer = h('p', { class: 'visually-hidden', id: 'map-announcer', 'aria-live': 'polite' });
  private pendingChanges: MapChange[] = [];
  private announceTimer: number | undefined;
  private pulseTimers = new WeakMap<Element, number>();

  constructor(private actions: MapActions) {
    const art = h('div', { class: 'map-drawing' });
    // Our own committed drawing, not user content.
    art.innerHTML = drawing;
    const canvas = h(
      'div',
      { class: 'map-canvas', id: 'map', role: 'group', 'aria-labelledby': 'map-heading', 'aria-describedby': 'map-description' },
      art,
      PLACE_ORDER.map((location) => this.placeButton(location)),
    );
    this.clearButton = h(
      'button',
      { type: 'button', class: 'secondary map-clear', id: 'map-clear', hidden: true, onclick: () => this.clear() },
      'Show every place',
    );
    this.element = h(
      'section',
      { class: 'panel map-panel', 'aria-labelledby': 'map-heading' },
      h(
        'div',
        { class: 'map-header' },
        h('h2', { id: 'map-heading' }, 'Map of Hogwarts'),
        this.clearButton,
      ),
      h(
        'p',
        { class: 'muted', id: 'map-description' },
        'The incidents on the board, where they happen; resolved ones faded. Choose a place to show only its incidents.',
      ),
      canvas,
      legend(),
      this.announcer,
    );
  }

  /** Draws these incidents (all twelve locations are updated). */
  render(incidents: Iterable<Incident>): void {
    for (const place of summarizePlaces(incidents).values()) this.renderPlace(place);
  }

  /** Marks the location the board is filtered to (or none). */
  setSelected(location: Location | null): void {
    this.selected = location;
    for (const [place, { button }] of this.places) {
      const chosen = place === location;
      button.setAttribute('aria-pressed', String(chosen));
      button.classList.toggle('selected', chosen);
    }
    this.clearButton.hidden = location === null;
  }

  /** A live event touched this location (and incident): pulse them. */
  pulse(location: Location, incidentId: string | null): void {
    const place = this.places.get(location);
    if (!place) return;
    this.restartPulse(place.button);
    const marker = incidentId ? place.markerById.get(incidentId) : undefined;
    if (marker) this.restartPulse(marker);
  }

  /**
   * Says what changed, politely: changes arriving close together are
   * gathered into one sentence, so a burst is one announcement, not many.
   */
  announce(change: MapChange): void {
    this.pendingChanges.push(change);
    if (this.announceTimer === undefined) {
      this.announceTimer = window.setTimeout(() => {
        this.announceTimer = undefined;
        this.announcer.textContent = announcement(this.pendingChanges);
        this.pendingChanges = [];
      }, ANNOUNCE_AFTER_MS);
    }
  }

  stop(): void {
    window.clearTimeout(this.announceTimer);
  }

  private clear(): void {
    const was = this.selected;
    this.actions.choose(null);
    // The clear button hides itself: keep the focus on the map.
    if (was) this.places.get(was)?.button.focus();
  }

  private placeButton(location: Location): HTMLButtonElement {
    const count = h('span', { class: 'place-count' });
    const more = h('span', { class: 'place-more wide', hidden: true });
    const moreNarrow = h('span', { class: 'place-more narrow', hidden: true });
    const markers = h('span', { class: 'place-markers' }, more, moreNarrow);
    const button = h(
      'button',
      {
        type: 'button',
        class: 'place vacant',
        'data-location': location,
        'aria-pressed': 'false',
        'aria-label': `${PLACE_NAMES[location]}: no incidents`,
        onclick: () => this.actions.choose(this.selected === location ? null : location),
      },
      h('span', { class: 'place-pin', 'aria-hidden': 'true' }, count),
      h(
        'span',
        { class: 'place-text', 'aria-hidden': 'true' },
        h('span', { class: 'place-name' }, h('span', { class: 'wide' }, PLACE_NAMES[location]), h('span', { class: 'narrow' }, SHORT_PLACE_NAMES[location])),
        markers,
      ),
    );
    this.places.set(location, { button, count, markers, more, moreNarrow, markerById: new Map() });
    return button;
  }

  private renderPlace(place: PlaceSummary): void {
    const elements = this.places.get(place.location);
    if (!elements) return;
    const { button, count, markers, more, moreNarrow, markerById } = elements;
    const total = place.incidents.length;
    button.setAttribute('aria-label', describePlace(place));
    button.dataset.count = String(total);
    button.classList.toggle('vacant', total === 0);
    button.classList.toggle('all-resolved', total > 0 && place.worst === null);
    replaceClass(button, 'worst-', place.worst?.toLowerCase() ?? null);
    count.textContent = total ? String(total) : '';

    const shown = place.incidents.slice(0, MARKERS_SHOWN);
    const keep = new Set(shown.map((incident) => incident.id));
    for (const [id, marker] of markerById) {
      if (!keep.has(id)) {
        marker.remove();
        markerById.delete(id);
      }
    }
    shown.forEach((incident, index) => {
      let marker = markerById.get(incident.id);
      if (!marker) {
        marker = h('span', { class: 'marker', 'data-incident-id': incident.id });
        markerById.set(incident.id, marker);
      }
      replaceClass(marker, 'severity-', incident.severity.toLowerCase());
      marker.classList.toggle('resolved', incident.status === 'RESOLVED');
      marker.textContent = label(incident.severity);
      marker.title = incident.status === 'RESOLVED' ? `${incident.title} (resolved)` : incident.title;
      const at = markers.children[index];
      if (at !== marker) markers.insertBefore(marker, at ?? more);
    });
    showRest(more, total - shown.length);
    showRest(moreNarrow, total - Math.min(total, MARKERS_SHOWN_NARROW));
  }

  private restartPulse(element: Element): void {
    window.clearTimeout(this.pulseTimers.get(element));
    element.classList.remove('pulse');
    void (element as HTMLElement).offsetWidth; // let the animation start over
    element.classList.add('pulse');
    this.pulseTimers.set(
      element,
      window.setTimeout(() => element.classList.remove('pulse'), PULSE_MS),
    );
  }
}

function showRest(counter: HTMLElement, rest: number): void {
  counter.hidden = rest <= 0;
  counter.textContent = rest > 0 ? `+${rest}` : '';
}

/** Swaps the one class starting with `prefix` for `prefix + value`. */
function replaceClass(element: Element, prefix: string, value: string | null): void {
  for (const name of [...element.classList]) {
    if (name.startsWith(prefix) && name !== `${prefix}${value}`) element.classList.remove(name);
  }
  if (value !== null) element.classList.add(`${prefix}${value}`);
}

function legend(): HTMLElement {
  return h(
    'ul',
    { class: 'map-legend', 'aria-label': 'Key' },
    (['LOW', 'MEDIUM', 'HIGH', 'CRITICAL'] as const).map((severity) =>
      h('li', {}, h('span', { class: `marker severity-${severity.toLowerCase()}` }, label(severity))),
    ),
    h('li', {}, h('span', { class: 'marker severity-high resolved' }, 'Resolved')),
  );
}

/** One sentence for a burst of changes. */
export function announcement(changes: MapChange[]): string {
  if (changes.length === 1) {
    const [change] = changes;
    const place = PLACE_NAMES[change.location];
    const severity = label(change.severity).toLowerCase();
    switch (change.kind) {
      case 'reported':
        return `${place}: a new ${severity} incident.`;
      case 'escalated':
        return `${place}: an incident is now ${severity}.`;
      case 'resolved':
        return `${place}: an incident was resolved.`;
      case 'deleted':
        return `${place}: an incident was deleted.`;
      case 'changed':
        return `${place}: an incident changed.`;
    }
  }
  const perPlace = new Map<Location, number>();
  for (const change of changes) perPlace.set(change.location, (perPlace.get(change.location) ?? 0) + 1);
  const where = [...perPlace].map(([location, n]) => `${PLACE_NAMES[location]} ${n}`).join(', ');
  return `${changes.length} changes on the map: ${where}.`;
}
