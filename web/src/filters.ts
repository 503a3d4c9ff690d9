// The board's filters and the page's address: `?status=OPEN&location=LIBRARY`.
// The board's filter form holds the filters; the address mirrors them, so a
// filtered board can be bookmarked, reloaded and stepped through with back
// and forward. Pure functions, so they are easy to test.

import { LOCATIONS, SEVERITIES, STATUSES, type Incident } from './types';

/** Each filter is a wire value, or '' for "any". */
export interface Filters {
  status: string;
  severity: string;
  location: string;
}

export const NO_FILTERS: Filters = { status: '', severity: '', location: '' };

const ALLOWED: Record<keyof Filters, readonly string[]> = {
  status: STATUSES,
  severity: SEVERITIES,
  location: LOCATIONS,
};

const KEYS = Object.keys(ALLOWED) as (keyof Filters)[];

/** The filters an address asks for; unknown values are ignored. */
export function filtersFromSearch(search: string): Filters {
  const params = new URLSearchParams(search);
  const filters = { ...NO_FILTERS };
  for (const key of KEYS) {
    const value = params.get(key) ?? '';
    if (ALLOWED[key].includes(value)) filters[key] = value;
  }
  return filters;
}

/** `search` with the filters in it (other parameters kept), e.g. "?location=LIBRARY". */
export function searchWithFilters(search: string, filters: Filters): string {
  const params = new URLSearchParams(search);
  for (const key of KEYS) {
    if (filters[key]) params.set(key, filters[key]);
    else params.delete(key);
  }
  const text = params.toString();
  return text ? `?${text}` : '';
}

export function sameFilters(a: Filters, b: Filters): boolean {
  return KEYS.every((key) => a[key] === b[key]);
}

export function matchesFilters(incident: Incident, filters: Filters): boolean {
  return (
    (!filters.status || incident.status === filters.status) &&
    (!filters.severity || incident.severity === filters.severity) &&
    (!filters.location || incident.location === filters.location)
  );
}
