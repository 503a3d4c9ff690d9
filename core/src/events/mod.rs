//! Events: the facts the log records.
//!
//! Every message on the log is one [`Event`] encoded as a JSON envelope
//! (`{eventId, eventType, timestamp, source, userId, data}`, the seed's
//! shape). [`EventPayload`] is the typed catalog: one variant per event type,
//! each on exactly one [`Topic`](crate::log::Topic). Decoding is total: any
//! byte string either becomes an [`Event`] or a [`DecodeError`] that says
//! what was wrong, so a consumer can log and skip it instead of crashing.
//!
//! See `docs/events.md` for a JSON example of every event type.

mod catalog;
mod envelope;
mod upcast;

pub use catalog::{
    AuthAction, AuthLockedOut, CommentAdded, EventPayload, EventType, IncidentCreated,
    IncidentDeleted, IncidentResolved, IncidentUpdated, RevocationReason, SessionRevoked,
    SeverityEscalated, ThrottleScope, TokenRefreshed, UserConnected, UserDisconnected,
    UserJoinedRoom, UserLeftRoom, UserLoggedIn, UserLoggedOut, UserRegistered, UserRoleChanged,
};
pub use envelope::{
    DecodeError, ENVELOPE_JSON_SCHEMA, EVENT_SOURCE, Event, EventEnvelope, IdempotencyRecord,
};
pub use upcast::connection_id_of_socket_id;
