//! One connection's state: who it is and which incident rooms it wants.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use socketioxide::extract::SocketRef;
use uuid::Uuid;

use super::wire::{Audience, OnlineUser, incident_room};
use crate::domain::Role;
use crate::identity::tokens::AccessClaims;

/// The most incident rooms one connection may be in: a board shows at most
/// this many incidents, and every room costs memory and a presence event.
pub const MAX_ROOMS_PER_CONNECTION: usize = super::wire::MAX_HANDSHAKE_ROOMS;

/// A join refused because the connection is in too many rooms.
#[derive(Debug)]
pub struct TooManyRooms;

/// The authenticated user behind a connection.
#[derive(Debug, Clone)]
pub struct Client {
    pub user_id: Uuid,
    pub role: Role,
    pub display_name: String,
}

impl Client {
    pub fn as_online_user(&self) -> OnlineUser {
        OnlineUser {
            user_id: self.user_id,
            display_name: self.display_name.clone(),
            role: self.role,
        }
    }
}

/// Stored in the socket's extensions by the handshake check.
#[derive(Debug)]
pub struct Session {
    pub user: Client,
    /// This connection's name on the log (`connectionId` of its presence
    /// events): random, and never the Socket.IO id, which is the engine.io
    /// session id — a credential for the transport.
    pub connection_id: Uuid,
    /// The handshake token's login session (its `sid`): when that session
    /// is logged out or revoked, this connection is closed.
    pub login_session: Uuid,
    /// When the handshake token expires (`exp`, seconds since the epoch):
    /// the connection is closed then.
    pub token_expires_at: i64,
    /// The `lastOffset` of the handshake.
    pub last_offset: Option<u64>,
    rooms: Mutex<Rooms>,
    /// Whether its `user.disconnected` has been logged.
    disconnected: AtomicBool,
}

#[derive(Debug, Default)]
struct Rooms {
    /// Incident rooms this connection is in (or will be, once live).
    incidents: BTreeSet<Uuid>,
    /// Whether the replay is over. Until then a join is only recorded: the
    /// Socket.IO room is joined at the switch-over, so no live event can
    /// overtake the replay.
    live: bool,
}

impl Session {
    pub fn new(
        user: Client,
        token: &AccessClaims,
        last_offset: Option<u64>,
        rooms: &[Uuid],
    ) -> Session {
        Session {
            user,
            connection_id: Uuid::new_v4(),
            login_session: token.sid,
            token_expires_at: token.exp,
            last_offset,
            rooms: Mutex::new(Rooms {
                incidents: rooms.iter().copied().collect(),
                live: false,
            }),
            disconnected: AtomicBool::new(false),
        }
    }

    /// Whether this connection receives an event for `audience`.
    pub fn may_see(&self, audience: Audience) -> bool {
        audience.includes(&self.lock().incidents)
    }

    pub fn is_in(&self, incident: Uuid) -> bool {
        self.lock().incidents.contains(&incident)
    }

    pub fn rooms(&self) -> Vec<Uuid> {
        self.lock().incidents.iter().copied().collect()
    }

    /// Marks the connection live; `join` joins the Socket.IO rooms for the
    /// incidents recorded so far, under the same lock as later joins.
    pub fn go_live(&self, socket: &SocketRef, join: impl FnOnce(&BTreeSet<Uuid>)) {
        let mut rooms = self.lock();
        rooms.live = true;
        join(&rooms.incidents);
        leave_if_closed(socket);
    }

    /// True the first time only: the disconnect is logged once, whether the
    /// client left or the server is shutting down.
    pub fn mark_disconnected(&self) -> bool {
        !self.disconnected.swap(true, Ordering::SeqCst)
    }

    /// Records a join: `Ok(false)` when already in the room, `Err` when the
    /// connection is in [`MAX_ROOMS_PER_CONNECTION`] rooms already.
    pub fn join(&self, socket: &SocketRef, incident: Uuid) -> Result<bool, TooManyRooms> {
        let mut rooms = self.lock();
        if rooms.incidents.contains(&incident) {
            return Ok(false);
        }
        if rooms.incidents.len() >= MAX_ROOMS_PER_CONNECTION {
            return Err(TooManyRooms);
        }
        rooms.incidents.insert(incident);
        if rooms.live {
            socket.join(incident_room(incident));
            leave_if_closed(socket);
        }
        Ok(true)
    }

    /// Records a leave; returns false when not in the room.
    pub fn leave(&self, socket: &SocketRef, incident: Uuid) -> bool {
        let mut rooms = self.lock();
        let removed = rooms.incidents.remove(&incident);
        if removed && rooms.live {
            socket.leave(incident_room(incident));
        }
        removed
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Rooms> {
        // The lock is never held across an await or a panic-prone call.
        self.rooms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// socketioxide removes a closing socket from its rooms once; a join that
/// lands after that (a replay or a join racing the disconnect) would keep a
/// dead socket in them for good.
fn leave_if_closed(socket: &SocketRef) {
    if !socket.connected() {
        socket.leave_all();
    }
}
