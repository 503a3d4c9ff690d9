//! The real-time gateway: Socket.IO at `/socket.io`, fed only by the log.
//!
//! Command handlers never talk to WebSockets. Browsers get everything from
//! readers of the log, like any other projection:
//!
//! - [`broadcaster`]: the projector of `incident-events` that sends each
//!   accepted event to the live connections, and replays what a
//!   reconnecting client missed (its `lastOffset`) before it goes live.
//! - [`presence`]: connects, disconnects and room changes are appended to
//!   `presence-events`; the online list is folded back from that topic.
//! - [`typing`]: typing indicators, ephemeral and local to this instance.
//! - [`notifications`]: new rows of the notifications projection, pushed to
//!   their owner's connections.
//! - [`session`]: one connection's user and rooms.
//! - [`wire`]: the contract as types (docs/realtime.md describes it).
//!
//! Several instances need no adapter between them: each reads the log and
//! serves its own connections.

pub mod broadcaster;
pub mod notifications;
pub mod presence;
pub mod session;
pub mod typing;
pub mod wire;

use std::sync::{Arc, RwLock, Weak};

use socketioxide::extract::{AckSender, SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::layer::SocketIoLayer;
use socketioxide::socket::DisconnectReason;
use socketioxide::{ParserError, SocketIo};
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::commands::WriteModel;
use crate::events::{EventPayload, UserConnected, UserDisconnected, UserJoinedRoom, UserLeftRoom};
use crate::identity::accounts::find_account;
use crate::identity::tokens::{JwtKeys, TokenError};
use crate::log::EventLog;
use broadcaster::{Broadcaster, ReplayOutcome};
use notifications::NotificationPusher;
use presence::{PresenceAppender, PresenceProjector, PresencePublisher};
use session::{Client, Session};
use typing::TypingTracker;
use wire::{Ack, HandshakeAuth, IncidentRef, MAX_HANDSHAKE_ROOMS, PresenceOnline, incident_room};

/// Packets buffered per connection before it counts as too slow (a live
/// event to a full buffer drops the connection; it then reconnects and
/// replays).
const SEND_BUFFER: usize = 4096;

/// How long shutdown waits for the connections to close.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// What the socket handlers share.
pub struct Gateway {
    io: SocketIo,
    broadcaster: Arc<Broadcaster>,
    presence: PresencePublisher,
    online: Arc<RwLock<Vec<wire::OnlineUser>>>,
    typing: Arc<TypingTracker>,
    jwt: Arc<JwtKeys>,
    pool: PgPool,
    write_model: Arc<WriteModel>,
}

/// The gateway's background workers, started by [`Workers::spawn`].
pub struct Workers {
    gateway: Arc<Gateway>,
    presence_projector: PresenceProjector,
    presence_appender: PresenceAppender,
    presence_drain: CancellationToken,
    pusher: NotificationPusher,
}

/// Builds the Socket.IO layer for the router, and the workers that feed it.
pub fn gateway(
    log: EventLog,
    pool: PgPool,
    jwt: Arc<JwtKeys>,
    write_model: Arc<WriteModel>,
) -> (SocketIoLayer, Workers) {
    let (layer, io) = SocketIo::builder()
        .max_buffer_size(SEND_BUFFER)
        .build_layer();
    let (push, pusher) = NotificationPusher::new(pool.clone(), io.clone());
    let presence_drain = CancellationToken::new();
    let (presence, presence_appender) = PresencePublisher::new(log.clone(), presence_drain.clone());
    let presence_projector = PresenceProjector::new(log.clone(), pool.clone(), io.clone());
    let gateway = Arc::new(Gateway {
        broadcaster: Arc::new(Broadcaster::new(log, write_model.clone(), io.clone(), push)),
        online: presence_projector.current(),
        io: io.clone(),
        presence,
        typing: Arc::default(),
        jwt,
        pool,
        write_model,
    });
    // The handlers hold the gateway weakly: it owns `io`, which owns them.
    let weak = Arc::downgrade(&gateway);
    let on_connect = {
        let weak = weak.clone();
        move |socket: SocketRef| on_connect(weak, socket)
    };
    let authenticate = move |socket: SocketRef, TryData(auth): TryData<HandshakeAuth>| {
        authenticate(weak.clone(), socket, auth)
    };
    io.ns("/", on_connect.with(authenticate));
    (
        layer,
        Workers {
            gateway,
            presence_projector,
            presence_appender,
            presence_drain,
            pusher,
        },
    )
}

impl Workers {
    /// Starts the workers. When `shutdown` fires, every connection is
    /// closed (each appends its `user.disconnected`), then the presence
    /// buffer is flushed to the log.
    pub fn spawn(self, shutdown: CancellationToken) -> Vec<JoinHandle<()>> {
        let Workers {
            gateway,
            presence_projector,
            presence_appender,
            presence_drain,
            pusher,
        } = self;
        let typing = gateway.typing.clone();
        let broadcaster = gateway.broadcaster.clone();
        let closer = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                shutdown.cancelled().await;
                // Log every open connection's disconnect now: socketioxide
                // runs disconnect handlers as tasks that may not get to run
                // before the process ends.
                for socket in gateway.io.sockets() {
                    if let Some(session) = socket.extensions.get::<Arc<Session>>() {
                        log_disconnect(&gateway, &socket, &session, "server shutting down");
                    }
                }
                // A transport that never finishes closing must not hold the
                // whole shutdown.
                if tokio::time::timeout(CLOSE_WAIT, gateway.io.close())
                    .await
                    .is_err()
                {
                    tracing::warn!("some connections did not close in time");
                }
                presence_drain.cancel();
            })
        };
        vec![
            tokio::spawn(broadcaster.run(shutdown.clone())),
            tokio::spawn(presence_projector.run(shutdown.clone())),
            tokio::spawn(presence_appender.run()),
            tokio::spawn(pusher.run(shutdown.clone())),
            tokio::spawn({
                let shutdown = shutdown.clone();
                async move { typing.run_sweeper(shutdown).await }
            }),
            closer,
        ]
    }
}

/// Why a handshake is refused; its text is the `connect_error` message.
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error(
        "the handshake needs auth {{token, lastOffset?, rooms?}}: {0} (lastOffset is a non-negative integer, rooms a list of incident ids)"
    )]
    MalformedAuth(ParserError),
    #[error("at most {MAX_HANDSHAKE_ROOMS} rooms can be rejoined at once")]
    TooManyRooms,
    #[error("{0}")]
    Token(TokenError),
    #[error("the account no longer exists")]
    UnknownAccount,
    #[error("the service is shutting down")]
    ShuttingDown,
    #[error("the service cannot check accounts right now; retry")]
    Unavailable,
}

/// The handshake check, on every connect and reconnect.
async fn authenticate(
    gateway: Weak<Gateway>,
    socket: SocketRef,
    auth: Result<HandshakeAuth, ParserError>,
) -> Result<(), Refused> {
    let gateway = gateway.upgrade().ok_or(Refused::ShuttingDown)?;
    let auth = auth.map_err(Refused::MalformedAuth)?;
    if auth.rooms.len() > MAX_HANDSHAKE_ROOMS {
        return Err(Refused::TooManyRooms);
    }
    let claims = gateway
        .jwt
        .verify_access_token(&auth.token)
        .map_err(Refused::Token)?;
    let account = find_account(&gateway.pool, claims.sub)
        .await
        .map_err(|error| match error {
            crate::identity::accounts::IdentityError::UnknownUser => Refused::UnknownAccount,
            error => {
                tracing::warn!(%error, "could not look up an account for a handshake");
                Refused::Unavailable
            }
        })?;
    // Rooms of incidents that never existed would only put noise in the
    // presence log; deleted ones stay, so their events up to the deletion
    // are replayed.
    let mut rooms = Vec::with_capacity(auth.rooms.len());
    for incident in auth.rooms {
        if gateway.write_model.incident(incident).await.is_some() {
            rooms.push(incident);
        }
    }
    let user = Client {
        user_id: account.id,
        role: claims.role,
        display_name: account.display_name,
    };
    socket
        .extensions
        .insert(Arc::new(Session::new(user, auth.last_offset, &rooms)));
    Ok(())
}

async fn on_connect(gateway: Weak<Gateway>, socket: SocketRef) {
    let (Some(gateway), Some(session)) =
        (gateway.upgrade(), socket.extensions.get::<Arc<Session>>())
    else {
        return;
    };
    register_handlers(&gateway, &socket, &session);
    let user_id = session.user.user_id;
    gateway.presence.publish(
        EventPayload::UserConnected(UserConnected {
            user_id,
            socket_id: socket.id.to_string(),
            role: session.user.role,
        }),
        user_id,
    );
    for incident in session.rooms() {
        publish_room_change(&gateway, user_id, incident, true);
    }
    match gateway
        .broadcaster
        .attach(&socket, &session, session.last_offset)
        .await
    {
        Ok(ReplayOutcome::Complete(done)) => {
            tracing::debug!(sid = %socket.id, count = done.count, "connection replayed and live")
        }
        Ok(ReplayOutcome::Incomplete(why)) => {
            tracing::info!(sid = %socket.id, reason = %why.reason, "replay incomplete; client refetches")
        }
        Err(error) => {
            // The client reconnects with the same lastOffset and tries again.
            tracing::warn!(sid = %socket.id, %error, "could not replay to a connection; closing it");
            let _ = socket.disconnect();
            return;
        }
    }
    let users = gateway
        .online
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone();
    let _ = socket.emit("presence:online", &PresenceOnline { users });
}

fn register_handlers(gateway: &Arc<Gateway>, socket: &SocketRef, session: &Arc<Session>) {
    let handler = |action: Action| {
        let (gateway, session) = (Arc::downgrade(gateway), session.clone());
        move |socket: SocketRef, TryData(data): TryData<IncidentRef>, ack: AckSender| {
            let (gateway, session) = (gateway.clone(), session.clone());
            async move {
                let Some(gateway) = gateway.upgrade() else {
                    return;
                };
                let reply = match data {
                    Ok(IncidentRef { incident_id }) => {
                        handle(&gateway, &socket, &session, action, incident_id).await
                    }
                    Err(error) => Ack::error(
                        "invalid_payload",
                        format!("expected {{incidentId}} with an incident id: {error}"),
                    ),
                };
                let _ = ack.send(&reply);
            }
        }
    };
    socket.on("incident:join", handler(Action::Join));
    socket.on("incident:leave", handler(Action::Leave));
    socket.on("typing:start", handler(Action::TypingStart));
    socket.on("typing:stop", handler(Action::TypingStop));
    let (weak, session) = (Arc::downgrade(gateway), session.clone());
    socket.on_disconnect(
        move |socket: SocketRef, reason: DisconnectReason| async move {
            let Some(gateway) = weak.upgrade() else {
                return;
            };
            log_disconnect(&gateway, &socket, &session, &reason.to_string());
            gateway.typing.stop_all(&socket, None).await;
        },
    );
}

#[derive(Debug, Clone, Copy)]
enum Action {
    Join,
    Leave,
    TypingStart,
    TypingStop,
}

async fn handle(
    gateway: &Gateway,
    socket: &SocketRef,
    session: &Session,
    action: Action,
    incident: Uuid,
) -> Ack {
    let user_id = session.user.user_id;
    match action {
        Action::Join => {
            let exists = gateway
                .write_model
                .incident(incident)
                .await
                .is_some_and(|found| !found.deleted);
            if !exists {
                return Ack::error("not_found", "no such incident");
            }
            match session.join(socket, incident) {
                Ok(true) => publish_room_change(gateway, user_id, incident, true),
                Ok(false) => {}
                Err(session::TooManyRooms) => {
                    return Ack::error(
                        "too_many_rooms",
                        format!(
                            "a connection can be in at most {} incident rooms; leave one first",
                            session::MAX_ROOMS_PER_CONNECTION
                        ),
                    );
                }
            }
        }
        Action::Leave => {
            gateway.typing.stop_all(socket, Some(incident)).await;
            if session.leave(socket, incident) {
                publish_room_change(gateway, user_id, incident, false);
            }
        }
        Action::TypingStart => {
            if !session.is_in(incident) {
                return Ack::error("not_in_room", "join the incident before typing in it");
            }
            gateway.typing.start(socket, &session.user, incident).await;
        }
        Action::TypingStop => gateway.typing.stop(socket, incident).await,
    }
    Ack::ok()
}

/// Appends the connection's `user.disconnected`, once.
fn log_disconnect(gateway: &Gateway, socket: &SocketRef, session: &Session, reason: &str) {
    if session.mark_disconnected() {
        let user_id = session.user.user_id;
        gateway.presence.publish(
            EventPayload::UserDisconnected(UserDisconnected {
                user_id,
                socket_id: socket.id.to_string(),
                reason: reason.to_owned(),
            }),
            user_id,
        );
    }
}

fn publish_room_change(gateway: &Gateway, user_id: Uuid, incident: Uuid, joined: bool) {
    let room = incident_room(incident);
    let payload = if joined {
        EventPayload::UserJoinedRoom(UserJoinedRoom { user_id, room })
    } else {
        EventPayload::UserLeftRoom(UserLeftRoom { user_id, room })
    };
    gateway.presence.publish(payload, user_id);
}
