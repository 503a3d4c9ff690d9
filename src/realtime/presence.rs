//! Presence: who is online, as a projection of `presence-events`.
//!
//! The gateway *tells* the log (`user.connected`, `user.disconnected`,
//! `user.joined_room`, `user.left_room`) through a [`PresencePublisher`],
//! which buffers and retries while the log is down so a socket never waits
//! for it. The online list is then *read back* from the log by each
//! instance's [`PresenceProjector`], so two instances sharing the log agree
//! on who is online without talking to each other.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use socketioxide::SocketIo;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::wire::{LIVE_ROOM, OnlineUser, PresenceOnline};
use crate::domain::Role;
use crate::events::{Event, EventPayload};
use crate::log::{EventLog, LogError, Topic};

/// Presence events waiting for the log, at most; beyond it new ones are
/// dropped with a warning (presence is advisory; incidents never wait here).
const BUFFER: usize = 100_000;
const APPEND_BATCH: usize = 200;
/// How long the publisher keeps trying to flush its buffer at shutdown.
const DRAIN_WAIT: Duration = Duration::from_secs(5);

/// The sending half: cheap to clone, never blocks.
#[derive(Clone)]
pub struct PresencePublisher {
    events: mpsc::Sender<Event>,
}

impl PresencePublisher {
    /// The publisher and the task that appends what it is given, until
    /// `drain` fires and the buffer is flushed.
    pub fn new(log: EventLog, drain: CancellationToken) -> (PresencePublisher, PresenceAppender) {
        let (events, queue) = mpsc::channel(BUFFER);
        (
            PresencePublisher { events },
            PresenceAppender { log, queue, drain },
        )
    }

    pub fn publish(&self, payload: EventPayload, user_id: Uuid) {
        if let Err(error) = self.events.try_send(Event::new(payload, Some(user_id))) {
            tracing::warn!(%error, "presence buffer full; dropping a presence event");
        }
    }
}

/// Appends buffered presence events in batches, in order, retrying with
/// backoff while the log is down.
pub struct PresenceAppender {
    log: EventLog,
    queue: mpsc::Receiver<Event>,
    drain: CancellationToken,
}

impl PresenceAppender {
    pub async fn run(mut self) {
        let mut batch = Vec::new();
        loop {
            if batch.is_empty() {
                tokio::select! {
                    received = self.queue.recv() => match received {
                        Some(event) => batch.push(event),
                        None => break,
                    },
                    _ = self.drain.cancelled() => break,
                }
            }
            while batch.len() < APPEND_BATCH {
                match self.queue.try_recv() {
                    Ok(event) => batch.push(event),
                    Err(_) => break,
                }
            }
            self.append_until_done(&mut batch, None).await;
        }
        // Flush what is left (the disconnects of a closing server), for a
        // bounded time.
        let deadline = tokio::time::Instant::now() + DRAIN_WAIT;
        self.queue.close();
        while let Some(event) = self.queue.recv().await {
            batch.push(event);
        }
        self.append_until_done(&mut batch, Some(deadline)).await;
        if !batch.is_empty() {
            tracing::warn!(
                lost = batch.len(),
                "presence events not appended before shutdown"
            );
        }
    }

    /// Appends `batch`, retrying until it is in the log (then clears it), or
    /// until the drain signal (without a deadline) or the deadline.
    async fn append_until_done(
        &self,
        batch: &mut Vec<Event>,
        deadline: Option<tokio::time::Instant>,
    ) {
        let mut backoff = Duration::from_millis(50);
        while !batch.is_empty() {
            match self.append(batch).await {
                Ok(()) => batch.clear(),
                Err(error) => {
                    tracing::warn!(%error, pending = batch.len(), "presence events not appended yet; retrying");
                    let give_up = match deadline {
                        Some(deadline) => tokio::time::Instant::now() + backoff > deadline,
                        None => self.drain.is_cancelled(),
                    };
                    if give_up {
                        return;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = self.drain.cancelled(), if deadline.is_none() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    async fn append(&self, batch: &[Event]) -> Result<(), LogError> {
        let messages: Vec<_> = batch.iter().map(Event::to_log_message).collect();
        self.log.append(Topic::PresenceEvents, &messages).await?;
        Ok(())
    }
}

/// The fold of `presence-events`: which connections (by `connectionId`)
/// each user has open.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OnlineUsers {
    connections: BTreeMap<Uuid, (Role, BTreeSet<Uuid>)>,
}

impl OnlineUsers {
    /// Applies one event; true when the set of online users changed.
    pub fn apply(&mut self, event: &Event) -> bool {
        match &event.payload {
            EventPayload::UserConnected(connected) => {
                let entry = self
                    .connections
                    .entry(connected.user_id)
                    .or_insert_with(|| (connected.role, BTreeSet::new()));
                let was_offline = entry.1.is_empty();
                let role_changed = entry.0 != connected.role;
                entry.0 = connected.role;
                entry.1.insert(connected.connection_id);
                was_offline || role_changed
            }
            EventPayload::UserDisconnected(disconnected) => {
                let Some((_, open)) = self.connections.get_mut(&disconnected.user_id) else {
                    return false;
                };
                open.remove(&disconnected.connection_id);
                if open.is_empty() {
                    self.connections.remove(&disconnected.user_id);
                    true
                } else {
                    false
                }
            }
            _ => false,
        }
    }

    /// Each online user once, with their role.
    pub fn users(&self) -> impl Iterator<Item = (Uuid, Role)> + '_ {
        self.connections.iter().map(|(id, (role, _))| (*id, *role))
    }

    pub fn connections_of(&self, user: Uuid) -> usize {
        self.connections.get(&user).map_or(0, |(_, s)| s.len())
    }
}

/// Follows `presence-events` from offset 0 (its offset lives in memory: the
/// fold is rebuilt on every start) and tells live connections whenever the
/// online list changes.
pub struct PresenceProjector {
    log: EventLog,
    pool: PgPool,
    io: SocketIo,
    online: OnlineUsers,
    next_offset: u64,
    display_names: HashMap<Uuid, String>,
    /// The latest list, for connections that have just arrived.
    current: Arc<RwLock<Vec<OnlineUser>>>,
}

impl PresenceProjector {
    pub fn new(log: EventLog, pool: PgPool, io: SocketIo) -> PresenceProjector {
        PresenceProjector {
            log,
            pool,
            io,
            online: OnlineUsers::default(),
            next_offset: 0,
            display_names: HashMap::new(),
            current: Arc::default(),
        }
    }

    /// A handle on the latest online list.
    pub fn current(&self) -> Arc<RwLock<Vec<OnlineUser>>> {
        self.current.clone()
    }

    /// Folds the next batch; broadcasts `presence:online` if it changed.
    /// Returns how many events it read.
    pub async fn step(&mut self) -> Result<usize, LogError> {
        let page = self
            .log
            .read_page(Topic::PresenceEvents, self.next_offset, 1000)
            .await?;
        let records = page.records;
        let mut changed = false;
        for record in &records {
            match Event::decode(&record.payload) {
                Ok(event) => changed |= self.online.apply(&event),
                Err(error) => {
                    tracing::warn!(offset = record.offset, %error, "presence skips an undecodable event")
                }
            }
        }
        self.next_offset = page.next_offset;
        if changed {
            let list = self.online_list().await;
            *self
                .current
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = list.clone();
            if let Err(error) = self
                .io
                .to(LIVE_ROOM)
                .emit("presence:online", &PresenceOnline { users: list })
                .await
            {
                tracing::debug!(%error, "presence:online did not reach every connection");
            }
        }
        Ok(records.len())
    }

    pub async fn run(mut self, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            match self.step().await {
                Ok(0) => {
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = self.log.wait_for_new_events(Topic::PresenceEvents, self.next_offset, Duration::from_secs(30)) => {}
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "presence step failed; retrying in 1s");
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }

    /// The online users with their display names (looked up once per user
    /// in the identity tables; the events carry ids only).
    async fn online_list(&mut self) -> Vec<OnlineUser> {
        let missing: Vec<Uuid> = self
            .online
            .users()
            .map(|(id, _)| id)
            .filter(|id| !self.display_names.contains_key(id))
            .collect();
        if !missing.is_empty() {
            match sqlx::query_as::<_, (Uuid, String)>(
                "SELECT id, display_name FROM users WHERE id = ANY($1)",
            )
            .bind(&missing)
            .fetch_all(&self.pool)
            .await
            {
                Ok(rows) => self.display_names.extend(rows),
                Err(error) => tracing::warn!(%error, "could not look up display names"),
            }
        }
        let mut list: Vec<OnlineUser> = self
            .online
            .users()
            .map(|(user_id, role)| OnlineUser {
                user_id,
                display_name: self
                    .display_names
                    .get(&user_id)
                    .cloned()
                    .unwrap_or_else(|| "someone".to_owned()),
                role,
            })
            .collect();
        list.sort_by(|a, b| a.display_name.cmp(&b.display_name));
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{UserConnected, UserDisconnected};

    /// A connection id per tab name, as the gateway would draw at random.
    fn tab(name: &str) -> Uuid {
        Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes())
    }

    fn connected(user: Uuid, tab_name: &str) -> Event {
        Event::new(
            EventPayload::UserConnected(UserConnected {
                user_id: user,
                connection_id: tab(tab_name),
                role: Role::Student,
            }),
            Some(user),
        )
    }

    fn disconnected(user: Uuid, tab_name: &str) -> Event {
        Event::new(
            EventPayload::UserDisconnected(UserDisconnected {
                user_id: user,
                connection_id: tab(tab_name),
                reason: "gone".into(),
            }),
            Some(user),
        )
    }

    #[test]
    fn a_user_with_two_tabs_is_online_once_until_both_close() {
        let (harry, ron) = (Uuid::now_v7(), Uuid::now_v7());
        let mut online = OnlineUsers::default();
        assert!(online.apply(&connected(harry, "tab-1")));
        assert!(!online.apply(&connected(harry, "tab-2")));
        assert!(online.apply(&connected(ron, "tab-3")));
        assert_eq!(online.users().count(), 2);
        assert_eq!(online.connections_of(harry), 2);
        assert!(!online.apply(&disconnected(harry, "tab-1")));
        assert_eq!(online.users().count(), 2);
        assert!(online.apply(&disconnected(harry, "tab-2")));
        assert_eq!(online.users().map(|(id, _)| id).collect::<Vec<_>>(), [ron]);
    }

    #[test]
    fn a_disconnect_without_a_connect_changes_nothing() {
        let mut online = OnlineUsers::default();
        assert!(!online.apply(&disconnected(Uuid::now_v7(), "tab")));
        assert_eq!(online.users().count(), 0);
    }
}
