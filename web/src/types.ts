// The shapes the service sends: REST bodies (README "HTTP") and the
// Socket.IO payloads of the real-time contract (README "Real time").

export const SEVERITIES = ['LOW', 'MEDIUM', 'HIGH', 'CRITICAL'] as const;
export type Severity = (typeof SEVERITIES)[number];

export const STATUSES = ['OPEN', 'INVESTIGATING', 'RESOLVED'] as const;
export type Status = (typeof STATUSES)[number];

export const LOCATIONS = [
  'GREAT_HALL',
  'FORBIDDEN_FOREST',
  'ROOM_OF_REQUIREMENT',
  'DUNGEONS',
  'ASTRONOMY_TOWER',
  'LIBRARY',
  'HOGSMEADE',
  'GRYFFINDOR_TOWER',
  'QUIDDITCH_PITCH',
  'HOSPITAL_WING',
  'BLACK_LAKE',
  'OWLERY',
] as const;
export type Location = (typeof LOCATIONS)[number];

export type Role = 'STUDENT' | 'PREFECT' | 'PROFESSOR';

export interface User {
  id: string;
  email: string;
  displayName: string;
  role: Role;
}

export interface Incident {
  id: string;
  title: string;
  description: string | null;
  severity: Severity;
  location: Location;
  status: Status;
  reportedBy: string;
  assignedTo: string | null;
  resolvedBy: string | null;
  resolution: string | null;
  createdAt: string;
  updatedAt: string;
  resolvedAt: string | null;
  version: number;
}

export interface Comment {
  id: string;
  incidentId: string;
  authorId: string;
  body: string;
  createdAt: string;
}

export interface Notification {
  id: string;
  kind: string;
  incidentId: string;
  message: string;
  createdAt: string;
  readAt: string | null;
}

/** One incident event as the socket delivers it, live or replayed. */
export interface LiveEvent {
  offset: number;
  eventId: string;
  eventType: string;
  timestamp: string;
  userId: string | null;
  data: Record<string, unknown>;
}

export interface OnlineUser {
  userId: string;
  displayName: string;
  role: Role;
}

export interface TypingSignal {
  incidentId: string;
  userId: string;
  displayName: string;
  typing: boolean;
}

export interface ProjectionStatus {
  name: string;
  topic: string;
  storedOffset: number;
  logEnd: number;
  lag: number;
  state: 'running' | 'stopped' | 'rebuilding';
  deadLetters: number;
  rebuild: { appliedOffset: number; logEnd: number; eventsPerSecond: number; secondsLeft?: number } | null;
}

/** "INVESTIGATING" → "Investigating": enum values as people read them (locations: placeName in places.ts). */
export function label(value: string): string {
  const words = value.toLowerCase().split('_').join(' ');
  return words.charAt(0).toUpperCase() + words.slice(1);
}
