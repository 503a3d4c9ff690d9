//! The Socket.IO contract, as types: what a browser sends in its handshake
//! and its events, and what it receives. docs/realtime.md describes the same
//! contract for people; these types are the single source of it in code.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::events::{Event, EventPayload};
use crate::incident::incident_of;

/// The most incident rooms a handshake may ask to rejoin.
pub const MAX_HANDSHAKE_ROOMS: usize = 100;

/// The handshake's `auth` object: `{token, lastOffset?, rooms?}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HandshakeAuth {
    pub token: String,
    /// The offset of the last incident event this client received; the
    /// server replays everything after it before going live.
    #[serde(default)]
    pub last_offset: Option<u64>,
    /// Incident rooms to rejoin before the replay, so the replay includes
    /// their room-only events (`incident:updated`, `comment:added`).
    #[serde(default)]
    pub rooms: Vec<Uuid>,
}

/// The payload of `incident:join`, `incident:leave`, `typing:start` and
/// `typing:stop`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IncidentRef {
    pub incident_id: Uuid,
}

/// What an acknowledgement carries: `{ok: true}` or `{error: {code, message}}`,
/// the same error shape as the REST API.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Ack {
    Ok { ok: bool },
    Error { error: AckError },
}

#[derive(Debug, Serialize)]
pub struct AckError {
    pub code: &'static str,
    pub message: String,
}

impl Ack {
    pub fn ok() -> Ack {
        Ack::Ok { ok: true }
    }

    pub fn error(code: &'static str, message: impl Into<String>) -> Ack {
        Ack::Error {
            error: AckError {
                code,
                message: message.into(),
            },
        }
    }
}

/// Who receives an incident event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Every live connection.
    Everyone,
    /// Only the connections in room `incident:<id>`.
    IncidentRoom(Uuid),
}

impl Audience {
    /// Whether a connection in `rooms` receives it.
    pub fn includes(self, rooms: &std::collections::BTreeSet<Uuid>) -> bool {
        match self {
            Audience::Everyone => true,
            Audience::IncidentRoom(id) => rooms.contains(&id),
        }
    }
}

/// The Socket.IO room of an incident.
pub fn incident_room(id: Uuid) -> String {
    format!("incident:{id}")
}

/// The Socket.IO room of every connection of one user.
pub fn user_room(id: Uuid) -> String {
    format!("user:{id}")
}

/// The room of connections that have finished their replay and receive
/// broadcasts to everyone. A connection still replaying is not in it, which
/// is what keeps a live event from overtaking the replay.
pub const LIVE_ROOM: &str = "live";

/// The Socket.IO event name and audience of an incident event, or `None`
/// for events that are not sent to browsers.
pub fn route(payload: &EventPayload) -> Option<(&'static str, Audience)> {
    let id = incident_of(payload)?;
    Some(match payload {
        EventPayload::IncidentCreated(_) => ("incident:created", Audience::Everyone),
        EventPayload::IncidentUpdated(_) => ("incident:updated", Audience::IncidentRoom(id)),
        EventPayload::IncidentResolved(_) => ("incident:resolved", Audience::Everyone),
        EventPayload::IncidentDeleted(_) => ("incident:deleted", Audience::Everyone),
        EventPayload::CommentAdded(_) => ("comment:added", Audience::IncidentRoom(id)),
        EventPayload::SeverityEscalated(_) => ("severity:escalated", Audience::Everyone),
        _ => return None,
    })
}

/// The payload of every incident event sent to a browser:
/// `{offset, eventId, eventType, timestamp, userId, data}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveEvent {
    pub offset: u64,
    pub event_id: Uuid,
    pub event_type: &'static str,
    pub timestamp: DateTime<Utc>,
    pub user_id: Option<Uuid>,
    pub data: serde_json::Value,
}

/// An incident event ready to send: its name, who gets it, and its payload
/// serialized once (however many connections receive it).
#[derive(Debug)]
pub struct Outgoing {
    pub name: &'static str,
    pub audience: Audience,
    pub payload: Box<RawValue>,
}

impl Outgoing {
    /// `None` for events browsers do not receive.
    pub fn of(offset: u64, event: &Event) -> Option<Outgoing> {
        let (name, audience) = route(&event.payload)?;
        let live = LiveEvent {
            offset,
            event_id: event.event_id,
            event_type: event.event_type().as_str(),
            timestamp: event.timestamp,
            user_id: event.user_id,
            data: event.payload.to_data(),
        };
        // Plain structs of ids, strings and numbers always serialize.
        let payload = serde_json::value::to_raw_value(&live).expect("live events serialize");
        Some(Outgoing {
            name,
            audience,
            payload,
        })
    }
}

/// `replay:complete`: the replay is over; live events follow.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReplayComplete {
    /// The first offset the replay looked at (`lastOffset + 1`, or the live
    /// position when no `lastOffset` was given).
    pub from_offset: u64,
    /// The last offset now covered (`null` while the log is empty): the
    /// client's `lastOffset` from here on.
    pub to_offset: Option<u64>,
    /// How many events the replay sent.
    pub count: u64,
}

/// `replay:incomplete`: the history after `lastOffset` cannot be replayed;
/// refetch the board and continue from `toOffset`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReplayIncomplete {
    pub from_offset: u64,
    pub to_offset: Option<u64>,
    pub reason: String,
}

/// `connection:closing {reason, message}`: sent just before the server
/// closes a connection, since a Socket.IO disconnect carries no reason of
/// its own.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionClosing {
    pub reason: CloseReason,
    pub message: &'static str,
}

/// Why the server closes a connection (docs/realtime.md, "Disconnect
/// reasons"). A slow client is the one case without it: its send buffer is
/// full, so nothing more reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The handshake's access token expired: refresh it and reconnect with
    /// `lastOffset`.
    TokenExpired,
    /// The token's session was logged out: log in again.
    LoggedOut,
    /// The session was revoked (its refresh token was used twice): log in
    /// again.
    SessionRevoked,
    /// The session itself ran out (30 days): log in again.
    SessionExpired,
    /// The log could not be read for the replay: reconnect with the same
    /// `lastOffset`, after a pause.
    ReplayFailed,
    /// The instance is shutting down: reconnect (best effort: it may not
    /// arrive before the transport closes).
    ShuttingDown,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::TokenExpired => "token_expired",
            CloseReason::LoggedOut => "logged_out",
            CloseReason::SessionRevoked => "session_revoked",
            CloseReason::SessionExpired => "session_expired",
            CloseReason::ReplayFailed => "replay_failed",
            CloseReason::ShuttingDown => "shutting_down",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            CloseReason::TokenExpired => {
                "the access token has expired; refresh it and reconnect with your lastOffset"
            }
            CloseReason::LoggedOut => "the session was logged out",
            CloseReason::SessionRevoked => "the session was revoked; log in again",
            CloseReason::SessionExpired => "the session has expired; log in again",
            CloseReason::ReplayFailed => {
                "the log could not be read for the replay; reconnect with the same lastOffset"
            }
            CloseReason::ShuttingDown => "the service is shutting down; reconnect",
        }
    }
}

impl Serialize for CloseReason {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One user in `presence:online`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OnlineUser {
    pub user_id: Uuid,
    pub display_name: String,
    pub role: crate::domain::Role,
}

/// `presence:online`: everyone online, each user once.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PresenceOnline {
    pub users: Vec<OnlineUser>,
}

/// `typing`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Typing {
    pub incident_id: Uuid,
    pub user_id: Uuid,
    pub display_name: String,
    pub typing: bool,
}

/// `notification:new`: the same shape as an item of `GET /api/notifications`.
#[derive(Debug, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct NewNotification {
    pub id: Uuid,
    #[serde(skip_serializing)]
    pub user_id: Uuid,
    pub kind: String,
    pub incident_id: Uuid,
    pub message: String,
    pub created_at: DateTime<Utc>,
    pub read_at: Option<DateTime<Utc>>,
}
