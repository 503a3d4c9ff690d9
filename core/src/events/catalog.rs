//! The catalog: every event type, its topic and its `data`.
//!
//! Incident events carry the incident's `version` (1 for `incident.created`,
//! then +1 per event). The log has no conditional append, so the version is
//! how every reader — the write side and each projector — agrees which of two
//! racing events on one incident counts: the fold accepts an event only when
//! its version is the current one + 1.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use super::envelope::DecodeError;
use super::upcast;
use crate::domain::{IncidentStatus, Location, Role, Severity};
use crate::log::Topic;

/// Generates [`EventType`] and [`EventPayload`] from one list, so a type's
/// name, topic and data struct are declared once.
macro_rules! catalog {
    ($($variant:ident => $wire:literal on $topic:ident),+ $(,)?) => {
        /// The name of an event type, e.g. `incident.created`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum EventType { $($variant),+ }

        impl EventType {
            /// Every event type, in catalog order.
            pub const ALL: &'static [EventType] = &[$(EventType::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $(EventType::$variant => $wire),+ }
            }

            /// The one topic events of this type are appended to.
            pub fn topic(self) -> Topic {
                match self { $(EventType::$variant => Topic::$topic),+ }
            }
        }

        impl FromStr for EventType {
            type Err = ();

            fn from_str(name: &str) -> Result<Self, ()> {
                match name { $($wire => Ok(EventType::$variant),)+ _ => Err(()) }
            }
        }

        /// The typed `data` of an event, one variant per event type.
        #[derive(Debug, Clone, PartialEq)]
        pub enum EventPayload { $($variant($variant)),+ }

        impl EventPayload {
            pub fn event_type(&self) -> EventType {
                match self { $(EventPayload::$variant(_) => EventType::$variant),+ }
            }

            /// The payload as the envelope's `data`.
            pub fn to_data(&self) -> serde_json::Value {
                let result = match self {
                    $(EventPayload::$variant(data) => serde_json::to_value(data)),+
                };
                result.expect("event data serializes to JSON")
            }

            /// Parses `data` as the given type's payload.
            pub fn from_data(event_type: EventType, data: serde_json::Value) -> Result<Self, DecodeError> {
                let malformed = |source| DecodeError::MalformedData { event_type, source };
                Ok(match event_type {
                    $(EventType::$variant => EventPayload::$variant(serde_json::from_value(data).map_err(malformed)?)),+
                })
            }
        }

        $(impl From<$variant> for EventPayload {
            fn from(data: $variant) -> Self { EventPayload::$variant(data) }
        })+
    };
}

catalog! {
    IncidentCreated => "incident.created" on IncidentEvents,
    IncidentUpdated => "incident.updated" on IncidentEvents,
    IncidentResolved => "incident.resolved" on IncidentEvents,
    IncidentDeleted => "incident.deleted" on IncidentEvents,
    CommentAdded => "comment.added" on IncidentEvents,
    SeverityEscalated => "severity.escalated" on IncidentEvents,
    UserConnected => "user.connected" on PresenceEvents,
    UserDisconnected => "user.disconnected" on PresenceEvents,
    UserJoinedRoom => "user.joined_room" on PresenceEvents,
    UserLeftRoom => "user.left_room" on PresenceEvents,
    UserLoggedIn => "user.logged_in" on AuthEvents,
    UserLoggedOut => "user.logged_out" on AuthEvents,
    UserRegistered => "user.registered" on AuthEvents,
    TokenRefreshed => "token.refreshed" on AuthEvents,
    UserRoleChanged => "user.role_changed" on AuthEvents,
    SessionRevoked => "session.revoked" on AuthEvents,
    AuthLockedOut => "auth.locked_out" on AuthEvents,
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EventType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse()
            .map_err(|()| serde::de::Error::custom(format!("unknown event type '{name}'")))
    }
}

// ---- incident-events -------------------------------------------------------

/// `incident.created`: the full incident as it was reported (version 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IncidentCreated {
    pub id: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub severity: Severity,
    pub location: Location,
    pub status: IncidentStatus,
    pub reported_by: Uuid,
    pub assigned_to: Option<Uuid>,
    pub resolved_by: Option<Uuid>,
    pub resolution: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub version: u64,
}

/// `incident.updated`: the incident id and only the fields that changed.
/// An absent field did not change; `assignedTo: null` means "unassigned"
/// and `description: null` "the description was cleared".
///
/// Version 1 of the catalog never wrote `description: null` (a description
/// could not be cleared then), so its events read the same as before:
/// absent = unchanged, a string = the new description.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IncidentUpdated {
    pub id: Uuid,
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// `Some(None)` clears the description.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "present_or_null"
    )]
    pub description: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<IncidentStatus>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "present_or_null"
    )]
    pub assigned_to: Option<Option<Uuid>>,
}

/// `incident.resolved`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IncidentResolved {
    pub id: Uuid,
    pub version: u64,
    pub resolved_by: Uuid,
    pub resolution: String,
}

/// `incident.deleted`: nothing but reading happens to the incident after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IncidentDeleted {
    pub id: Uuid,
    pub version: u64,
    pub deleted_by: Uuid,
}

/// `comment.added`: the comment, with the incident it belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommentAdded {
    pub id: Uuid,
    pub incident_id: Uuid,
    pub author_id: Uuid,
    pub body: String,
    pub created_at: DateTime<Utc>,
    /// The incident's version after this comment — in comments appended
    /// before comments commuted. A comment without one takes no version:
    /// it is accepted while its incident exists and is not deleted, so
    /// comments made at the same moment never conflict (see
    /// [`crate::incident::Claim`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

/// `severity.escalated`: any severity change, up or down, with both values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeverityEscalated {
    pub incident_id: Uuid,
    pub version: u64,
    pub old_severity: Severity,
    pub new_severity: Severity,
}

// ---- presence-events -------------------------------------------------------

/// `user.connected`: a browser connection (one per tab) opened.
///
/// Read through an upcaster ([`super::upcast`]): version 1 named the
/// connection by its Socket.IO id (`socketId`), a transport credential.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", try_from = "upcast::UserConnectedOnLog")]
pub struct UserConnected {
    pub user_id: Uuid,
    /// A random id the gateway gives the connection: it pairs this event
    /// with its `user.disconnected`, and is never the Socket.IO or
    /// engine.io id (those let whoever holds them act as the connection).
    pub connection_id: Uuid,
    pub role: Role,
}

/// `user.disconnected`. Read through an upcaster, as [`UserConnected`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", try_from = "upcast::UserDisconnectedOnLog")]
pub struct UserDisconnected {
    pub user_id: Uuid,
    /// The `connectionId` of the connection's `user.connected`.
    pub connection_id: Uuid,
    pub reason: String,
}

/// `user.joined_room`, e.g. room `incident:<id>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserJoinedRoom {
    pub user_id: Uuid,
    pub room: String,
}

/// `user.left_room`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserLeftRoom {
    pub user_id: Uuid,
    pub room: String,
}

// ---- auth-events (the audit log) -------------------------------------------

/// `user.logged_in`, with the address the login came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserLoggedIn {
    pub user_id: Uuid,
    pub ip: String,
}

/// `user.logged_out`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserLoggedOut {
    pub user_id: Uuid,
}

/// `user.registered`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserRegistered {
    pub user_id: Uuid,
    pub email: String,
}

/// `token.refreshed`: a refresh token was rotated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRefreshed {
    pub user_id: Uuid,
}

/// `user.role_changed`: a user was granted another role (the seed has no
/// such event; promotions must be audited too).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserRoleChanged {
    pub user_id: Uuid,
    pub old_role: Role,
    pub new_role: Role,
}

/// `session.revoked`: a session ended other than by logging out (a logout
/// is `user.logged_out`), with every refresh token of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRevoked {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub reason: RevocationReason,
    /// The address of the request that caused it.
    pub ip: String,
}

/// Why a session was revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationReason {
    /// A refresh token that had already been exchanged came back after the
    /// grace period: it leaked, so the whole session ends.
    RefreshTokenReused,
}

/// `auth.locked_out`: attempts at a credential endpoint were refused for a
/// while (429). One event per lockout, however many attempts it refuses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthLockedOut {
    pub action: AuthAction,
    pub scope: ThrottleScope,
    /// The client address the lockout applies to.
    pub ip: String,
    /// For an account's lockout on login or registration: the email tried,
    /// when it is a well-formed one (whether or not an account has it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The account the attempts were aimed at, when one exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Uuid>,
    /// When the first refused attempt may be retried.
    pub retry_after_seconds: u64,
}

/// A credential endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthAction {
    Login,
    Register,
    Refresh,
}

impl AuthAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthAction::Login => "login",
            AuthAction::Register => "register",
            AuthAction::Refresh => "refresh",
        }
    }
}

impl ThrottleScope {
    pub fn as_str(self) -> &'static str {
        match self {
            ThrottleScope::AccountAndAddress => "account_and_address",
            ThrottleScope::Address => "address",
        }
    }
}

/// Which limit refused the attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThrottleScope {
    /// One account (email, or refresh token) from one address.
    AccountAndAddress,
    /// Every attempt from one address, whatever the account.
    Address,
}

/// Serde for `Option<Option<T>>` where an absent field is `None` and an
/// explicit `null` is `Some(None)` (used with `default` and
/// `skip_serializing_if = "Option::is_none"`).
mod present_or_null {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(
        value: &Option<Option<T>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(inner) => inner.serialize(serializer),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(deserializer).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_has_the_seeds_fourteen_types_plus_three_audit_events_on_three_topics() {
        assert_eq!(EventType::ALL.len(), 17);
        let on = |topic| EventType::ALL.iter().filter(|t| t.topic() == topic).count();
        assert_eq!(on(Topic::IncidentEvents), 6);
        assert_eq!(on(Topic::PresenceEvents), 4);
        assert_eq!(on(Topic::AuthEvents), 7);
        for event_type in EventType::ALL {
            assert_eq!(event_type.as_str().parse::<EventType>(), Ok(*event_type));
        }
    }

    #[test]
    fn an_update_carries_only_the_changed_fields() {
        let id = Uuid::now_v7();
        let update = IncidentUpdated {
            id,
            version: 3,
            title: Some("Troll in the dungeon".into()),
            description: None,
            location: None,
            status: None,
            assigned_to: None,
        };
        let data = serde_json::to_value(&update).unwrap();
        assert_eq!(
            data,
            serde_json::json!({"id": id, "version": 3, "title": "Troll in the dungeon"})
        );
    }

    #[test]
    fn unassigning_is_an_explicit_null_and_survives_a_round_trip() {
        let update = IncidentUpdated {
            id: Uuid::now_v7(),
            version: 2,
            title: None,
            description: None,
            location: None,
            status: None,
            assigned_to: Some(None),
        };
        let data = serde_json::to_value(&update).unwrap();
        assert_eq!(data["assignedTo"], serde_json::Value::Null);
        let back: IncidentUpdated = serde_json::from_value(data).unwrap();
        assert_eq!(back, update);
        let absent: IncidentUpdated =
            serde_json::from_value(serde_json::json!({"id": update.id, "version": 2})).unwrap();
        assert_eq!(absent.assigned_to, None);
    }

    #[test]
    fn clearing_the_description_is_an_explicit_null_and_a_version_1_update_reads_as_before() {
        let id = Uuid::now_v7();
        let cleared = IncidentUpdated {
            id,
            version: 2,
            title: None,
            description: Some(None),
            location: None,
            status: None,
            assigned_to: None,
        };
        let data = serde_json::to_value(&cleared).unwrap();
        assert_eq!(
            data,
            serde_json::json!({"id": id, "version": 2, "description": null})
        );
        assert_eq!(
            serde_json::from_value::<IncidentUpdated>(data).unwrap(),
            cleared
        );
        let version_1: IncidentUpdated = serde_json::from_value(
            serde_json::json!({"id": id, "version": 2, "description": "Throwing books"}),
        )
        .unwrap();
        assert_eq!(version_1.description, Some(Some("Throwing books".into())));
    }

    #[test]
    fn data_of_the_wrong_shape_is_rejected_with_the_event_type() {
        let error = EventPayload::from_data(
            EventType::UserRegistered,
            serde_json::json!({"userId": "not-a-uuid", "email": "harry@hogwarts.edu"}),
        )
        .unwrap_err();
        assert!(error.to_string().contains("user.registered"), "{error}");
    }
}
