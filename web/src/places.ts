// The twelve locations as people name them, and what the map says about
// each: how many incidents, how severe, how many resolved. Pure functions
// over the store's incidents, so the map and its tests need no DOM.

import { LOCATIONS, SEVERITIES, type Incident, type Location, type Severity } from './types';

/** Proper names: "Great Hall", not the wire's GREAT_HALL. */
export const PLACE_NAMES: Record<Location, string> = {
  GREAT_HALL: 'Great Hall',
  FORBIDDEN_FOREST: 'Forbidden Forest',
  ROOM_OF_REQUIREMENT: 'Room of Requirement',
  DUNGEONS: 'Dungeons',
  ASTRONOMY_TOWER: 'Astronomy Tower',
  LIBRARY: 'Library',
  HOGSMEADE: 'Hogsmeade',
  GRYFFINDOR_TOWER: 'Gryffindor Tower',
  QUIDDITCH_PITCH: 'Quidditch Pitch',
  HOSPITAL_WING: 'Hospital Wing',
  BLACK_LAKE: 'Black Lake',
  OWLERY: 'Owlery',
};

/** Shorter names, for the map on a narrow screen. */
export const SHORT_PLACE_NAMES: Record<Location, string> = {
  GREAT_HALL: 'Great Hall',
  FORBIDDEN_FOREST: 'Forest',
  ROOM_OF_REQUIREMENT: 'Requirement',
  DUNGEONS: 'Dungeons',
  ASTRONOMY_TOWER: 'Astronomy',
  LIBRARY: 'Library',
  HOGSMEADE: 'Hogsmeade',
  GRYFFINDOR_TOWER: 'Gryffindor',
  QUIDDITCH_PITCH: 'Quidditch',
  HOSPITAL_WING: 'Hospital',
  BLACK_LAKE: 'Black Lake',
  OWLERY: 'Owlery',
};

export function isLocation(value: string): value is Location {
  return (LOCATIONS as readonly string[]).includes(value);
}

/** A location's proper name; anything else as it came. */
export function placeName(location: string): string {
  return isLocation(location) ? PLACE_NAMES[location] : location;
}

const MOST_SEVERE_FIRST = [...SEVERITIES].reverse();

export interface PlaceSummary {
  location: Location;
  /** Unresolved first, most severe first; newest first within a severity. */
  incidents: Incident[];
  /** Unresolved incidents by severity. */
  unresolved: Record<Severity, number>;
  resolved: number;
  /** The most severe unresolved incident's severity, if any. */
  worst: Severity | null;
}

/** One summary per location, all twelve, in the order of LOCATIONS. */
export function summarizePlaces(incidents: Iterable<Incident>): Map<Location, PlaceSummary> {
  const places = new Map<Location, PlaceSummary>(
    LOCATIONS.map((location) => [location, { location, incidents: [], unresolved: { LOW: 0, MEDIUM: 0, HIGH: 0, CRITICAL: 0 }, resolved: 0, worst: null }]),
  );
  for (const incident of incidents) {
    const place = places.get(incident.location);
    if (!place) continue; // a location this page does not know
    place.incidents.push(incident);
    if (incident.status === 'RESOLVED') place.resolved += 1;
    else place.unresolved[incident.severity] += 1;
  }
  for (const place of places.values()) {
    place.incidents.sort(markerOrder);
    place.worst = MOST_SEVERE_FIRST.find((severity) => place.unresolved[severity] > 0) ?? null;
  }
  return places;
}

function markerOrder(a: Incident, b: Incident): number {
  const resolved = Number(a.status === 'RESOLVED') - Number(b.status === 'RESOLVED');
  if (resolved !== 0) return resolved;
  const severity = SEVERITIES.indexOf(b.severity) - SEVERITIES.indexOf(a.severity);
  if (severity !== 0) return severity;
  return a.id < b.id ? 1 : a.id > b.id ? -1 : 0; // UUIDv7: newest first
}

/** "Library: 3 incidents, 1 critical, 1 low, 1 resolved"; "Owlery: no incidents". */
export function describePlace(place: PlaceSummary): string {
  const name = PLACE_NAMES[place.location];
  const total = place.incidents.length;
  if (total === 0) return `${name}: no incidents`;
  const parts = [`${total} incident${total === 1 ? '' : 's'}`];
  for (const severity of MOST_SEVERE_FIRST) {
    if (place.unresolved[severity]) parts.push(`${place.unresolved[severity]} ${severity.toLowerCase()}`);
  }
  if (place.resolved) parts.push(`${place.resolved} resolved`);
  return `${name}: ${parts.join(', ')}`;
}
