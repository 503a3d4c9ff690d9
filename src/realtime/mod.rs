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
//! - [`session`]: one connection's user, token and rooms.
//! - [`expiry`]: closes a connection when its access token expires or its
//!   login session ends, saying why (`connection:closing`).
//! - [`wire`]: the contract as types (docs/realtime.md describes it).
//!
//! Several instances need no adapter between them: each reads the log and
//! serves its own connections.

pub mod broadcaster;
pub mod expiry;
pub mod notifications;
pub mod presence;
pub mod session;
pub mod typing;
pub mod wire;

use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use marauders_projections::AppliedWatch;
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
use crate::incident::Incident;
use crate::log::EventLog;
use broadcaster::{Broadcaster, ReplayOutcome};
use expiry::SessionWatch;
use notifications::NotificationPusher;
use presence::{PresenceAppender, PresenceProjector, PresencePublisher};
use session::{Client, Session};
use typing::TypingTracker;
use wire::{
    Ack, CloseReason, ConnectionClosing, HandshakeAuth, IncidentRef, MAX_HANDSHAKE_ROOMS,
    PresenceOnline, incident_room,
};

/// Packets buffered per connection before it counts as too slow (a live
/// event to a full buffer drops the connection; it then reconnects and
/// replays).
const SEND_BUFFER: usize = 4096;

/// How long shutdown waits for the connections to close.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// How long a join or a handshake waits for the write model to catch up
/// with the log (to find an incident just created through another
/// instance) before answering that the log is unavailable.
const CATCH_UP_DEADLINE: Duration = Duration::from_secs(2);

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
    /// How often [`SessionWatch`] checks tokens and sessions.
    session_check_interval: Duration,
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
    applied: AppliedWatch,
    session_check_interval: Duration,
) -> (SocketIoLayer, Workers) {
    let (layer, io) = SocketIo::builder()
        .max_buffer_size(SEND_BUFFER)
        .build_layer();
    let (push, pusher) = NotificationPusher::new(pool.clone(), applied, io.clone());
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
            session_check_interval,
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
            session_check_interval,
            presence_projector,
            presence_appender,
            presence_drain,
            pusher,
        } = self;
        let typing = gateway.typing.clone();
        let broadcaster = gateway.broadcaster.clone();
        let session_watch = SessionWatch::new(gateway.clone(), session_check_interval);
        let closer = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                shutdown.cancelled().await;
                // Log every open connection's disconnect now: socketioxide
                // runs disconnect handlers as tasks that may not get to run
                // before the process ends.
                for socket in gateway.io.sockets() {
                    if let Some(session) = socket.extensions.get::<Arc<Session>>() {
                        tell_why(&socket, CloseReason::ShuttingDown);
                        log_disconnect(&gateway, &session, CloseReason::ShuttingDown.as_str());
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
            tokio::spawn(session_watch.run(shutdown.clone())),
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
    #[error("{}", .0.message())]
    SessionEnded(CloseReason),
    #[error("the service cannot read the log right now; retry")]
    LogUnavailable,
    #[error("the service is shutting down")]
    ShuttingDown,
    #[error("the service cannot check accounts right now; retry")]
    Unavailable,
}

/// The longest each of a handshake's three lookups may take (the session,
/// the account, the rooms' incidents): all three within 5 s.
const HANDSHAKE_LOOKUP_DEADLINE: Duration = Duration::from_millis(1_500);

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
    // Without the verifier's leeway: a connection accepted now would be
    // closed as expired at once by the session watch.
    if claims.exp <= chrono::Utc::now().timestamp() {
        return Err(Refused::Token(TokenError::Expired));
    }
    // The database may be frozen: a handshake is refused in time, never
    // held (see `http::deadline` for requests).
    let ended = tokio::time::timeout(
        HANDSHAKE_LOOKUP_DEADLINE,
        expiry::ended_sessions(&gateway.pool, &[claims.sid]),
    )
    .await
    .unwrap_or(Err(sqlx::Error::PoolTimedOut))
    .map_err(|error| {
        tracing::warn!(%error, "could not check a session for a handshake");
        Refused::Unavailable
    })?;
    if let Some(reason) = ended.get(&claims.sid) {
        return Err(Refused::SessionEnded(*reason));
    }
    let account = tokio::time::timeout(
        HANDSHAKE_LOOKUP_DEADLINE,
        find_account(&gateway.pool, claims.sub),
    )
    .await
    .unwrap_or(Err(crate::identity::accounts::IdentityError::Database(
        sqlx::Error::PoolTimedOut,
    )))
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
    let rooms = gateway.known_incidents(auth.rooms);
    let rooms = tokio::time::timeout(HANDSHAKE_LOOKUP_DEADLINE, rooms)
        .await
        .unwrap_or(Err(LogUnreadable))
        .map_err(|LogUnreadable| Refused::LogUnavailable)?;
    let user = Client {
        user_id: account.id,
        role: claims.role,
        display_name: account.display_name,
    };
    socket.extensions.insert(Arc::new(Session::new(
        user,
        &claims,
        auth.last_offset,
        &rooms,
    )));
    Ok(())
}

/// The log could not be read in time to catch up.
#[derive(Debug, Clone, Copy)]
struct LogUnreadable;

impl Gateway {
    /// Folds the write model up to the log's end, within
    /// [`CATCH_UP_DEADLINE`]. The model follows the log by itself, but an
    /// incident created through another instance a moment ago may not have
    /// reached it yet.
    async fn catch_up_with_log(&self) -> Result<(), LogUnreadable> {
        match tokio::time::timeout(CATCH_UP_DEADLINE, self.write_model.sync()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => {
                tracing::warn!(%error, "the gateway could not catch up with the log");
                Err(LogUnreadable)
            }
            Err(_) => {
                tracing::warn!(deadline = ?CATCH_UP_DEADLINE, "the gateway did not catch up with the log in time");
                Err(LogUnreadable)
            }
        }
    }

    /// The incident as the write model knows it, catching up with the log
    /// first when it does not know it yet.
    async fn incident_caught_up(&self, id: Uuid) -> Result<Option<Incident>, LogUnreadable> {
        if let Some(incident) = self.write_model.incident(id) {
            return Ok(Some(incident));
        }
        self.catch_up_with_log().await?;
        Ok(self.write_model.incident(id))
    }

    /// Those of `ids` that are incidents (deleted ones included), catching
    /// up with the log once if any of them is unknown here.
    async fn known_incidents(&self, ids: Vec<Uuid>) -> Result<Vec<Uuid>, LogUnreadable> {
        if self.write_model.known_incidents(&ids).contains(&false) {
            self.catch_up_with_log().await?;
        }
        let known = self.write_model.known_incidents(&ids);
        Ok(ids
            .into_iter()
            .zip(known)
            .filter_map(|(id, known)| known.then_some(id))
            .collect())
    }
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
            connection_id: session.connection_id,
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
            tracing::debug!(connection = %session.connection_id, count = done.count, "connection replayed and live")
        }
        Ok(ReplayOutcome::Incomplete(why)) => {
            tracing::info!(connection = %session.connection_id, reason = %why.reason, "replay incomplete; client refetches")
        }
        Err(error) => {
            // The client reconnects with the same lastOffset and tries again.
            tracing::warn!(connection = %session.connection_id, %error, "could not replay to a connection; closing it");
            close_connection(&gateway, &socket, &session, CloseReason::ReplayFailed);
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
            log_disconnect(&gateway, &session, &reason.to_string());
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
            match gateway.incident_caught_up(incident).await {
                Ok(Some(found)) if !found.deleted => {}
                Ok(_) => return Ack::error("not_found", "no such incident"),
                Err(LogUnreadable) => {
                    return Ack::error(
                        "unavailable",
                        "the service cannot read the log right now to find this incident; retry",
                    );
                }
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
fn log_disconnect(gateway: &Gateway, session: &Session, reason: &str) {
    if session.mark_disconnected() {
        let user_id = session.user.user_id;
        gateway.presence.publish(
            EventPayload::UserDisconnected(UserDisconnected {
                user_id,
                connection_id: session.connection_id,
                reason: reason.to_owned(),
            }),
            user_id,
        );
    }
}

/// Closes a connection from the server's side: tells the client why, logs
/// its disconnect with that reason, then disconnects it (the disconnect
/// packet follows `connection:closing` on the same transport).
fn close_connection(gateway: &Gateway, socket: &SocketRef, session: &Session, reason: CloseReason) {
    if !socket.connected() {
        return;
    }
    tracing::info!(connection = %session.connection_id, %reason, "closing a connection");
    tell_why(socket, reason);
    log_disconnect(gateway, session, reason.as_str());
    let _ = socket.clone().disconnect();
}

/// Sends `connection:closing {reason, message}`.
fn tell_why(socket: &SocketRef, reason: CloseReason) {
    let closing = ConnectionClosing {
        reason,
        message: reason.message(),
    };
    if let Err(error) = socket.emit("connection:closing", &closing) {
        tracing::debug!(%error, "a closing connection could not be told why");
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
