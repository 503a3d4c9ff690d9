// The board's store as a specification (`npm run test:unit`, run by
// scripts/test): REST snapshots and socket events merged by the version
// rule — an event applies at the current version + 1, an older one is
// already reflected, a newer one means a missed event and a refetch — and
// deleted ids stay deleted.

import { describe, expect, it } from 'vitest';

import { IncidentStore, incidentIdOf } from './store';
import type { Incident, LiveEvent } from './types';

const TROLL = '01930000-0000-7000-8000-00000000a001';
const PEEVES = '01930000-0000-7000-8000-00000000a002';
const HARRY = '01930000-0000-7000-8000-00000000b001';
const HERMIONE = '01930000-0000-7000-8000-00000000b002';

/** The troll as the REST read model returns it, at `version`. */
function troll(version = 1, changes: Partial<Incident> = {}): Incident {
  return {
    id: TROLL,
    title: 'Troll in the dungeon',
    description: null,
    severity: 'HIGH',
    location: 'DUNGEONS',
    status: 'OPEN',
    reportedBy: HARRY,
    assignedTo: null,
    resolvedBy: null,
    resolution: null,
    createdAt: '2024-10-31T19:00:00Z',
    updatedAt: '2024-10-31T19:00:00Z',
    resolvedAt: null,
    version,
    ...changes,
  };
}

let offset = 0;

/** A socket event of `eventType` with `data`, at the next offset. */
function event(eventType: string, data: Record<string, unknown>, timestamp = '2024-10-31T19:30:00Z'): LiveEvent {
  offset += 1;
  return { offset, eventId: `event-${offset}`, eventType, timestamp, userId: HERMIONE, data };
}

function updated(version: number, fields: Record<string, unknown>): LiveEvent {
  return event('incident.updated', { id: TROLL, version, ...fields });
}

/** A store that holds the troll at `version` from a snapshot. */
function storeWithTroll(version = 1): IncidentStore {
  const store = new IncidentStore();
  store.upsert(troll(version));
  return store;
}

describe('the version rule', () => {
  it('applies an event at the current version + 1', () => {
    const store = storeWithTroll(1);

    expect(store.apply(updated(2, { title: 'Troll in the bathroom' }))).toBe('applied');

    expect(store.get(TROLL)?.title).toBe('Troll in the bathroom');
    expect(store.get(TROLL)?.version).toBe(2);
  });

  it('calls an event at or below the current version already seen and changes nothing', () => {
    const store = storeWithTroll(3);

    for (const version of [1, 2, 3]) {
      expect(store.apply(updated(version, { title: 'Stale' }))).toBe('already-seen');
    }

    expect(store.get(TROLL)).toEqual(troll(3));
  });

  it('asks for a refetch when an event skips a version', () => {
    const store = storeWithTroll(1);

    expect(store.apply(updated(3, { title: 'Too far ahead' }))).toBe('refetch');

    expect(store.get(TROLL)).toEqual(troll(1));
  });

  it('asks for a refetch of an incident it does not know', () => {
    const store = new IncidentStore();

    expect(store.apply(updated(2, { title: 'Who?' }))).toBe('refetch');
    expect(store.get(TROLL)).toBeUndefined();
  });
});

describe('snapshots', () => {
  it('replace what the store has when they are as new or newer', () => {
    const store = storeWithTroll(2);

    store.upsert(troll(2, { title: 'Same version, fresher read' }));
    expect(store.get(TROLL)?.title).toBe('Same version, fresher read');
    store.upsert(troll(4, { title: 'Newer' }));
    expect(store.get(TROLL)?.version).toBe(4);
  });

  it('never take the store back to an older version', () => {
    const store = storeWithTroll(1);
    store.apply(updated(2, { title: 'From the socket' }));

    store.upsert(troll(1, { title: 'A snapshot taken before' }));

    expect(store.get(TROLL)?.title).toBe('From the socket');
    expect(store.get(TROLL)?.version).toBe(2);
  });
});

describe('each event type', () => {
  it('incident.created adds the incident once', () => {
    const store = new IncidentStore();
    const created = event('incident.created', { ...troll(1) });

    expect(store.apply(created)).toBe('applied');
    expect(store.apply(created)).toBe('already-seen');
    expect(store.get(TROLL)).toEqual(troll(1));
  });

  it('incident.updated changes only the fields it carries, null unassigning', () => {
    const store = new IncidentStore();
    store.upsert(troll(1, { assignedTo: HERMIONE, description: 'Big' }));

    store.apply(updated(2, { status: 'INVESTIGATING', assignedTo: null }));

    const incident = store.get(TROLL);
    expect(incident?.status).toBe('INVESTIGATING');
    expect(incident?.assignedTo).toBeNull();
    expect(incident?.description).toBe('Big');
    expect(incident?.title).toBe('Troll in the dungeon');
  });

  it('stamps updatedAt with the event time', () => {
    const store = storeWithTroll(1);

    store.apply(event('incident.updated', { id: TROLL, version: 2, title: 'Later' }, '2024-10-31T20:00:00Z'));

    expect(store.get(TROLL)?.updatedAt).toBe('2024-10-31T20:00:00Z');
  });

  it('incident.resolved sets the status, the resolver, the resolution and the time', () => {
    const store = storeWithTroll(1);

    store.apply(
      event('incident.resolved', { id: TROLL, version: 2, resolvedBy: HERMIONE, resolution: 'Knocked out' }, '2024-10-31T19:45:00Z'),
    );

    expect(store.get(TROLL)).toMatchObject({
      status: 'RESOLVED',
      resolvedBy: HERMIONE,
      resolution: 'Knocked out',
      resolvedAt: '2024-10-31T19:45:00Z',
      version: 2,
    });
  });

  it('severity.escalated takes the new severity, addressed by incidentId', () => {
    const store = storeWithTroll(1);

    const outcome = store.apply(
      event('severity.escalated', { incidentId: TROLL, version: 2, oldSeverity: 'HIGH', newSeverity: 'CRITICAL' }),
    );

    expect(outcome).toBe('applied');
    expect(store.get(TROLL)?.severity).toBe('CRITICAL');
  });

  it('comment.added from before comments commuted counts for the version only', () => {
    const store = storeWithTroll(1);

    store.apply(event('comment.added', { id: 'comment-1', incidentId: TROLL, version: 2, body: 'On my way' }));

    expect(store.get(TROLL)).toEqual(troll(2));
  });

  it('a comment without a version commutes: applied, and the incident is unchanged', () => {
    const store = storeWithTroll(1);

    expect(store.apply(event('comment.added', { id: 'comment-1', incidentId: TROLL, body: 'On my way' }))).toBe('applied');
    expect(store.apply(event('comment.added', { id: 'comment-2', incidentId: TROLL, body: 'Me too' }))).toBe('applied');

    expect(store.get(TROLL)).toEqual(troll(1));
  });

  it('a comment on an incident the page does not know asks for a refetch', () => {
    const store = storeWithTroll(1);

    expect(store.apply(event('comment.added', { id: 'comment-1', incidentId: PEEVES, body: 'Who?' }))).toBe('refetch');
  });

  it('an event type the page does not know is already seen and changes nothing', () => {
    const store = storeWithTroll(1);

    expect(store.apply(event('incident.teleported', { id: TROLL, version: 2 }))).toBe('already-seen');
    expect(store.get(TROLL)).toEqual(troll(1));
  });
});

describe('deleted incidents', () => {
  it('incident.deleted removes the incident and is seen once', () => {
    const store = storeWithTroll(1);
    const deleted = event('incident.deleted', { id: TROLL, version: 2, deletedBy: HARRY });

    expect(store.apply(deleted)).toBe('applied');
    expect(store.apply(deleted)).toBe('already-seen');
    expect(store.get(TROLL)).toBeUndefined();
    expect(store.isDeleted(TROLL)).toBe(true);
  });

  it('are not revived by a snapshot taken before the delete', () => {
    const store = storeWithTroll(1);
    store.remove(TROLL);

    store.upsert(troll(1));

    expect(store.get(TROLL)).toBeUndefined();
  });

  it('ignore later events, even a creation', () => {
    const store = storeWithTroll(1);
    store.remove(TROLL);

    expect(store.apply(updated(2, { title: 'Back' }))).toBe('already-seen');
    expect(store.apply(event('incident.created', { ...troll(1) }))).toBe('already-seen');
    expect(store.get(TROLL)).toBeUndefined();
  });

  it('are still remembered after the store is cleared for a new filter', () => {
    const store = storeWithTroll(1);
    store.remove(TROLL);

    store.clear();
    store.upsert(troll(1));

    expect(store.get(TROLL)).toBeUndefined();
  });
});

describe('listing', () => {
  it('lists incidents newest first by their UUIDv7 ids', () => {
    const store = new IncidentStore();
    store.upsert(troll(1));
    store.upsert(troll(1, { id: PEEVES, title: 'Peeves' }));

    expect(store.all().map((incident) => incident.id)).toEqual([PEEVES, TROLL]);
    expect(store.ids().sort()).toEqual([TROLL, PEEVES]);
  });

  it('finds the incident of an event by id or, for comments and severities, by incidentId', () => {
    expect(incidentIdOf(updated(2, {}))).toBe(TROLL);
    expect(incidentIdOf(event('comment.added', { id: 'comment-1', incidentId: PEEVES }))).toBe(PEEVES);
    expect(incidentIdOf(event('severity.escalated', { incidentId: PEEVES }))).toBe(PEEVES);
  });
});
