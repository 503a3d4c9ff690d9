//! Upcasters: how events written by earlier versions of the catalog are
//! read today. Events are forever (ARCHITECTURE.md), so a shape that
//! changed keeps its old form here, decoded and turned into the new one;
//! nothing is ever rewritten on the log.
//!
//! ## `user.connected` / `user.disconnected`: `socketId` → `connectionId`
//!
//! Version 1 named a connection by `socketId`, socketioxide's socket id,
//! which is also the engine.io session id: whoever reads it can poll,
//! post and close as that connection. Today the gateway gives each
//! connection a random `connectionId` (a UUID) instead.
//!
//! An old event's `socketId` is read as the connection id
//! [`connection_id_of_socket_id`]: a UUIDv5 of it, so the `user.connected`
//! and `user.disconnected` of one old connection still pair up (the online
//! list folds exactly as before), while the socket id itself never leaves
//! the decoder. Every reader decodes, so the replay API serves old events
//! in the new shape too: a socket id still on the log, dead or (during a
//! rolling upgrade, written by an old instance) alive, is never served.

use serde::Deserialize;
use uuid::Uuid;

use super::catalog::{UserConnected, UserDisconnected};
use crate::domain::Role;

/// The UUIDv5 namespace of connection ids derived from version 1's socket
/// ids. Fixed forever: changing it would split old connections' events.
const SOCKET_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6d61_7261_7564_4000_8000_736f_636b_6574);

/// The connection id of a version-1 event that named its connection by
/// `socketId`. One-way (SHA-1 of a random 16-character id): the id read
/// back tells nothing about the socket id.
pub fn connection_id_of_socket_id(socket_id: &str) -> Uuid {
    Uuid::new_v5(&SOCKET_ID_NAMESPACE, socket_id.as_bytes())
}

/// How an event names its connection: `connectionId` today, `socketId` in
/// version 1. Flattened into each event's shape as read from the log.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ConnectionNamed {
    connection_id: Option<Uuid>,
    /// Version 1.
    socket_id: Option<String>,
}

impl ConnectionNamed {
    fn connection_id(self) -> Result<Uuid, &'static str> {
        match (self.connection_id, self.socket_id) {
            (Some(id), _) => Ok(id),
            (None, Some(socket_id)) => Ok(connection_id_of_socket_id(&socket_id)),
            (None, None) => Err("missing field `connectionId`"),
        }
    }
}

/// `user.connected` as any version wrote it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct UserConnectedOnLog {
    user_id: Uuid,
    #[serde(flatten)]
    connection: ConnectionNamed,
    role: Role,
}

impl TryFrom<UserConnectedOnLog> for UserConnected {
    type Error = &'static str;

    fn try_from(event: UserConnectedOnLog) -> Result<Self, Self::Error> {
        Ok(UserConnected {
            user_id: event.user_id,
            connection_id: event.connection.connection_id()?,
            role: event.role,
        })
    }
}

/// `user.disconnected` as any version wrote it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct UserDisconnectedOnLog {
    user_id: Uuid,
    #[serde(flatten)]
    connection: ConnectionNamed,
    reason: String,
}

impl TryFrom<UserDisconnectedOnLog> for UserDisconnected {
    type Error = &'static str;

    fn try_from(event: UserDisconnectedOnLog) -> Result<Self, Self::Error> {
        Ok(UserDisconnected {
            user_id: event.user_id,
            connection_id: event.connection.connection_id()?,
            reason: event.reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::events::{EventPayload, EventType};

    fn decode(event_type: EventType, data: serde_json::Value) -> EventPayload {
        EventPayload::from_data(event_type, data).unwrap()
    }

    #[test]
    fn a_version_1_connect_and_disconnect_pair_up_without_their_socket_id() {
        let user = Uuid::now_v7();
        let connected = decode(
            EventType::UserConnected,
            json!({"userId": user, "socketId": "Xk3_harry-tab-1", "role": "STUDENT"}),
        );
        let disconnected = decode(
            EventType::UserDisconnected,
            json!({"userId": user, "socketId": "Xk3_harry-tab-1", "reason": "transport close"}),
        );
        let (EventPayload::UserConnected(connected), EventPayload::UserDisconnected(gone)) =
            (connected, disconnected)
        else {
            panic!("decoded as other types");
        };
        assert_eq!(connected.connection_id, gone.connection_id);
        assert_eq!(
            connected.connection_id,
            connection_id_of_socket_id("Xk3_harry-tab-1")
        );
        assert_ne!(
            connected.connection_id,
            connection_id_of_socket_id("Pw2_harry-tab-2")
        );
        let written_today = EventPayload::UserConnected(connected).to_data();
        assert!(
            !written_today.to_string().contains("Xk3_harry-tab-1"),
            "{written_today}"
        );
        assert_eq!(written_today["connectionId"], json!(gone.connection_id));
        assert!(written_today.get("socketId").is_none(), "{written_today}");
    }

    #[test]
    fn todays_shape_round_trips() {
        let connected = UserConnected {
            user_id: Uuid::now_v7(),
            connection_id: Uuid::new_v4(),
            role: Role::Prefect,
        };
        let data = EventPayload::UserConnected(connected.clone()).to_data();
        assert_eq!(
            data,
            json!({"userId": connected.user_id, "connectionId": connected.connection_id, "role": "PREFECT"})
        );
        assert_eq!(
            decode(EventType::UserConnected, data),
            EventPayload::UserConnected(connected)
        );
    }

    #[test]
    fn a_connection_event_naming_no_connection_is_malformed() {
        let error = EventPayload::from_data(
            EventType::UserDisconnected,
            json!({"userId": Uuid::now_v7(), "reason": "transport close"}),
        )
        .unwrap_err();
        assert!(error.to_string().contains("connectionId"), "{error}");
    }

    #[test]
    fn a_connection_id_that_is_not_a_uuid_is_malformed() {
        let error = EventPayload::from_data(
            EventType::UserConnected,
            json!({"userId": Uuid::now_v7(), "connectionId": "sock-1", "role": "STUDENT"}),
        );
        assert!(error.is_err());
    }
}
