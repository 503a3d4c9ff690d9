// The incidents the page knows, kept current from two sources: snapshots
// from the REST read model, and events from the socket. Both are merged by
// the incident's `version`, the same rule every reader of the log follows
// (docs/events.md): an event applies only when its version is the current
// version + 1. An older or equal version is already reflected; a newer one
// means we missed an event (a room we had not joined yet), so the caller
// fetches that incident again instead of guessing.

import type { Incident, LiveEvent, Severity, Status } from './types';

export type ApplyOutcome = 'applied' | 'already-seen' | 'refetch';

export class IncidentStore {
  private incidents = new Map<string, Incident>();
  /** Deleted ids, so a snapshot taken before the delete cannot revive one. */
  private deleted = new Set<string>();

  get(id: string): Incident | undefined {
    return this.incidents.get(id);
  }

  /**
   * Known incidents, newest first: by creation time (ids derived from an
   * idempotency key carry no time), the id breaking ties.
   */
  all(): Incident[] {
    return [...this.incidents.values()].sort(
      (a, b) => Date.parse(b.createdAt) - Date.parse(a.createdAt) || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0),
    );
  }

  ids(): string[] {
    return [...this.incidents.keys()];
  }

  isDeleted(id: string): boolean {
    return this.deleted.has(id);
  }

  /** Forgets every incident (a new filter); deletions are still remembered. */
  clear(): void {
    this.incidents.clear();
  }

  /** A snapshot replaces what we have unless ours is newer. */
  upsert(incident: Incident): void {
    if (this.deleted.has(incident.id)) return;
    const current = this.incidents.get(incident.id);
    if (!current || incident.version >= current.version) this.incidents.set(incident.id, incident);
  }

  remove(id: string): void {
    this.deleted.add(id);
    this.incidents.delete(id);
  }

  /** Folds one socket event into the store. */
  apply(event: LiveEvent): ApplyOutcome {
    const data = event.data;
    if (event.eventType === 'incident.created') {
      if (this.incidents.has(String(data.id)) || this.deleted.has(String(data.id))) return 'already-seen';
      this.upsert(data as unknown as Incident);
      return 'applied';
    }
    const id = incidentIdOf(event);
    if (event.eventType === 'incident.deleted') {
      if (this.deleted.has(id)) return 'already-seen';
      this.remove(id);
      return 'applied';
    }
    if (this.deleted.has(id)) return 'already-seen';
    const current = this.incidents.get(id);
    if (!current) return 'refetch';
    if (event.eventType === 'comment.added' && data.version === undefined) {
      // A comment commutes (docs/events.md): it claims no version and
      // changes nothing on the incident. The gateway sends each event once.
      return 'applied';
    }
    const version = Number(data.version);
    if (version <= current.version) return 'already-seen';
    if (version > current.version + 1) return 'refetch';
    const next: Incident = { ...current, version, updatedAt: event.timestamp };
    switch (event.eventType) {
      case 'incident.updated':
        for (const field of ['title', 'description', 'location', 'status', 'assignedTo'] as const) {
          if (field in data) (next as unknown as Record<string, unknown>)[field] = data[field];
        }
        break;
      case 'incident.resolved':
        next.status = 'RESOLVED' as Status;
        next.resolvedBy = data.resolvedBy as string;
        next.resolution = data.resolution as string;
        next.resolvedAt = event.timestamp;
        break;
      case 'severity.escalated':
        next.severity = data.newSeverity as Severity;
        break;
      case 'comment.added':
        next.updatedAt = current.updatedAt; // an old comment counts for the version only
        break;
      default:
        return 'already-seen'; // an event type this page does not know
    }
    this.incidents.set(id, next);
    return 'applied';
  }
}

/** The incident id an event is about. */
export function incidentIdOf(event: LiveEvent): string {
  return String(event.eventType === 'comment.added' || event.eventType === 'severity.escalated' ? event.data.incidentId : event.data.id);
}
