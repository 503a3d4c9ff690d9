//! The broadcaster: a projector of `incident-events` whose "table" is the set
//! of connected browsers.
//!
//! Its position (the next offset to broadcast) lives in memory, per
//! instance, and starts at the log's end: its audience does not survive a
//! restart either. The durable position is each client's own `lastOffset`,
//! which it sends when it (re)connects; [`Broadcaster::attach`] replays what
//! it missed and then switches it to live delivery.
//!
//! No gap and no duplicate across that switch: a connection receives
//! broadcasts only once it is in the live rooms, and it joins them while
//! holding the same lock the broadcaster holds while it sends a batch. So
//! every event is either replayed to it (offset below the position at that
//! moment) or broadcast to it (at or above), never both and never neither.

use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;
use socketioxide::SocketIo;
use socketioxide::extract::SocketRef;
use socketioxide::{SendError, SocketError};
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

use super::session::Session;
use super::wire::{
    Audience, LIVE_ROOM, Outgoing, ReplayComplete, ReplayIncomplete, incident_room, route,
    user_room,
};
use crate::commands::WriteModel;
use crate::commands::write_model::EventAt;
use crate::events::{Event, EventPayload};
use crate::incident::incident_and_claim;
use crate::log::{EventLog, LogError, LogRecord, Topic};

/// Events read from the log per step (live) or per replay read.
const BATCH: u32 = 500;
/// The longest history a reconnecting client is replayed; beyond it, it is
/// told `replay:incomplete` and refetches the board instead.
pub const MAX_REPLAY_EVENTS: u64 = 10_000;
/// How long a replay waits for a slow client's send buffer to drain before
/// dropping the connection (the client then reconnects and replays again).
const SLOW_CLIENT_WAIT: Duration = Duration::from_secs(2);

/// How long a client whose `lastOffset` is ahead of this instance's
/// broadcaster (but within the log) waits for it before being told the
/// replay is incomplete.
const AHEAD_WAIT: Duration = Duration::from_secs(2);

/// Whether a replay may wait for a connection whose send buffer is full.
#[derive(Debug, Clone, Copy)]
enum Pace {
    WaitForSlowClient,
    DropSlowClient,
}

/// What one [`Broadcaster::step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Sent the events up to (excluding) `next_offset`.
    Advanced { events: usize, next_offset: u64 },
    /// Nothing new at `next_offset`.
    CaughtUp { next_offset: u64 },
}

/// How a connection's replay ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayOutcome {
    Complete(ReplayComplete),
    Incomplete(ReplayIncomplete),
}

pub struct Broadcaster {
    log: EventLog,
    /// The write side's fold of the same log tells which events won their
    /// version: a command that lost a race left an event in the log that
    /// never happened, and browsers must not see it.
    write_model: Arc<WriteModel>,
    io: SocketIo,
    /// The next offset to broadcast; `None` until the log's end is known.
    /// Held while a batch is sent and while a connection goes live.
    position: Mutex<Option<u64>>,
    /// Accepted events that may have produced notifications, for the
    /// notification pusher.
    notifications: mpsc::Sender<(u64, uuid::Uuid)>,
}

impl Broadcaster {
    pub fn new(
        log: EventLog,
        write_model: Arc<WriteModel>,
        io: SocketIo,
        notifications: mpsc::Sender<(u64, uuid::Uuid)>,
    ) -> Broadcaster {
        Broadcaster {
            log,
            write_model,
            io,
            position: Mutex::new(None),
            notifications,
        }
    }

    /// Sends the next batch of incident events to the live connections.
    pub async fn step(&self) -> Result<Step, LogError> {
        let mut position = self.position.lock().await;
        let next = self.known_position(&mut position).await?;
        let page = self
            .log
            .read_page(Topic::IncidentEvents, next, BATCH)
            .await?;
        if page.next_offset == next {
            return Ok(Step::CaughtUp { next_offset: next });
        }
        let next_offset = page.next_offset;
        self.write_model.catch_up_to(next_offset).await?;
        let mut events = 0;
        for (offset, event, audience) in self.accepted(&page.records) {
            let recipients = match audience {
                Audience::Everyone => self.io.to(LIVE_ROOM).sockets(),
                Audience::IncidentRoom(id) => self.io.to(incident_room(id)).sockets(),
            };
            // Serialized only for someone: most comments go to a room
            // nobody has open.
            if !recipients.is_empty()
                && let Some(outgoing) = Outgoing::of(offset, &event)
            {
                for socket in &recipients {
                    deliver_live(socket, outgoing.name, &outgoing.payload);
                }
            }
            if matches!(
                event.payload,
                EventPayload::CommentAdded(_)
                    | EventPayload::IncidentResolved(_)
                    | EventPayload::SeverityEscalated(_)
            ) {
                // Never waited for: a pusher that is behind (its queue
                // full) or gone (shutdown) costs the live push only — the
                // notification is stored, and the bell lists it on its
                // next read.
                if let Err(mpsc::error::TrySendError::Full(_)) =
                    self.notifications.try_send((offset, event.event_id))
                {
                    tracing::warn!(
                        offset,
                        "the notification pusher is behind; live push skipped"
                    );
                }
            }
            events += 1;
        }
        *position = Some(next_offset);
        Ok(Step::Advanced {
            events,
            next_offset,
        })
    }

    /// Steps until `shutdown`: straight on while behind, asleep until the log
    /// grows when caught up, retrying every second while the log is down.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            match self.step().await {
                Ok(Step::Advanced { .. }) => {}
                Ok(Step::CaughtUp { next_offset }) => {
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = self.log.wait_for_new_events(Topic::IncidentEvents, next_offset, Duration::from_secs(30)) => {}
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "broadcaster step failed; retrying in 1s");
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
        tracing::info!("broadcaster stopped");
    }

    /// Brings a new connection up to date and makes it live: replays every
    /// event after `last_offset` it may see, tells it how that went, then
    /// joins it to the live rooms.
    pub async fn attach(
        &self,
        socket: &SocketRef,
        session: &Session,
        last_offset: Option<u64>,
    ) -> Result<ReplayOutcome, LogError> {
        let mut replay = Replay::new(last_offset);
        // Most of the replay runs without the lock, so live broadcasting
        // goes on meanwhile; each pass chases the position the broadcaster
        // had reached when it started.
        if replay.from.is_some() {
            let ahead_deadline = tokio::time::Instant::now() + AHEAD_WAIT;
            loop {
                let target = {
                    let mut position = self.position.lock().await;
                    self.known_position(&mut position).await?
                };
                if replay.settled(target) {
                    break;
                }
                // A client may know an offset this instance has not
                // broadcast yet (it read the log's end, or another instance
                // answered its command): wait for the broadcaster rather
                // than call the history missing.
                if let Some(from) = replay.from
                    && from > target
                    && tokio::time::Instant::now() < ahead_deadline
                    && from <= self.log.log_end(Topic::IncidentEvents).await?
                {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                self.replay_until(
                    socket,
                    session,
                    &mut replay,
                    target,
                    Pace::WaitForSlowClient,
                )
                .await?;
            }
        }
        // The switch-over: what is left below the position is replayed, and
        // the connection joins the live rooms before the next batch is sent.
        let mut position = self.position.lock().await;
        let target = self.known_position(&mut position).await?;
        if !replay.settled(target) {
            // Under the lock every other client's live delivery waits, so a
            // slow client is dropped here rather than waited for.
            self.replay_until(socket, session, &mut replay, target, Pace::DropSlowClient)
                .await?;
        }
        let outcome = replay.outcome(target);
        let sent = match &outcome {
            ReplayOutcome::Complete(complete) => socket.emit("replay:complete", complete),
            ReplayOutcome::Incomplete(incomplete) => socket.emit("replay:incomplete", incomplete),
        };
        if let Err(error) = sent {
            tracing::debug!(%error, "a connection closed during its replay");
        }
        session.go_live(socket, |rooms| {
            let mut all = vec![LIVE_ROOM.to_owned(), user_room(session.user.user_id)];
            all.extend(rooms.iter().map(|id| incident_room(*id)));
            socket.join(all);
        });
        drop(position);
        Ok(outcome)
    }

    /// Replays `[replay.next, target)` to one connection, or marks the
    /// replay incomplete when that history is not available.
    async fn replay_until(
        &self,
        socket: &SocketRef,
        session: &Session,
        replay: &mut Replay,
        target: u64,
        pace: Pace,
    ) -> Result<(), LogError> {
        let Some(mut from) = replay.from else {
            return Ok(());
        };
        if from > target {
            replay.incomplete = Some(format!(
                "lastOffset {} is beyond the end of the log ({target} events)",
                from - 1
            ));
            return Ok(());
        }
        if target - replay.start > MAX_REPLAY_EVENTS {
            replay.incomplete = Some(format!(
                "more than {MAX_REPLAY_EVENTS} events were missed; refetch instead"
            ));
            return Ok(());
        }
        self.write_model.catch_up_to(target).await?;
        while from < target {
            let page = self
                .log
                .read_page(
                    Topic::IncidentEvents,
                    from,
                    BATCH.min((target - from) as u32),
                )
                .await?;
            if page.next_offset == from {
                return Err(LogError::Unavailable {
                    backend: self.log.backend_name(),
                    reason: format!("incident-events ended at {from}, before {target}"),
                });
            }
            // Past a hole the page starts later than `from`: those offsets
            // never held an event, so there is nothing to miss.
            let within: Vec<LogRecord> = page
                .records
                .into_iter()
                .take_while(|record| record.offset < target)
                .collect();
            for (offset, event, audience) in self.accepted(&within) {
                if session.may_see(audience)
                    && let Some(outgoing) = Outgoing::of(offset, &event)
                {
                    match pace {
                        Pace::WaitForSlowClient => {
                            deliver_replayed(socket, outgoing.name, &outgoing.payload).await
                        }
                        Pace::DropSlowClient => {
                            deliver_live(socket, outgoing.name, &outgoing.payload)
                        }
                    }
                    replay.count += 1;
                }
            }
            from = page.next_offset.min(target);
            replay.from = Some(from);
        }
        Ok(())
    }

    /// The position, finding the log's end the first time.
    async fn known_position(&self, position: &mut Option<u64>) -> Result<u64, LogError> {
        match *position {
            Some(next) => Ok(next),
            None => {
                let end = self.log.log_end(Topic::IncidentEvents).await?;
                *position = Some(end);
                Ok(end)
            }
        }
    }

    /// Of `records`, the events browsers receive that won their version,
    /// with who receives each, in log order: one look at the write model
    /// for the whole page, which it must have folded already. What to send
    /// ([`Outgoing::of`]) is left to the caller, who knows whether anyone
    /// will receive it.
    fn accepted(&self, records: &[LogRecord]) -> Vec<(u64, Event, Audience)> {
        let decoded: Vec<(EventAt, Event)> = records
            .iter()
            .filter_map(|record| {
                let event = match Event::decode(&record.payload) {
                    Ok(event) => event,
                    Err(error) => {
                        tracing::warn!(offset = record.offset, %error, "broadcaster skips an undecodable event");
                        return None;
                    }
                };
                let (incident, claim) = incident_and_claim(&event.payload)?;
                let at = EventAt {
                    incident,
                    claim,
                    event_id: event.event_id,
                    offset: record.offset,
                };
                Some((at, event))
            })
            .collect();
        let asked: Vec<EventAt> = decoded.iter().map(|(at, _)| *at).collect();
        // Only the copy the version rule accepted: not a lost race, and not
        // a re-sent copy of an accepted event.
        let accepted = self.write_model.accepted_copies(&asked);
        decoded
            .into_iter()
            .zip(accepted)
            .filter(|(_, accepted)| *accepted)
            .filter_map(|((at, event), _)| {
                let (_, audience) = route(&event.payload)?;
                Some((at.offset, event, audience))
            })
            .collect()
    }
}

/// One connection's replay in progress.
struct Replay {
    /// `lastOffset + 1`, where the replay started.
    start: u64,
    /// The next offset to replay; `None` without a `lastOffset`.
    from: Option<u64>,
    count: u64,
    /// Why the history cannot be replayed, once that is known.
    incomplete: Option<String>,
}

impl Replay {
    fn new(last_offset: Option<u64>) -> Replay {
        let from = last_offset.map(|offset| offset.saturating_add(1));
        Replay {
            start: from.unwrap_or(0),
            from,
            count: 0,
            incomplete: None,
        }
    }

    /// Nothing (more) to replay before `target`.
    fn settled(&self, target: u64) -> bool {
        self.incomplete.is_some() || self.from.is_none_or(|from| from == target)
    }

    fn outcome(&self, target: u64) -> ReplayOutcome {
        let to_offset = target.checked_sub(1);
        match (&self.incomplete, self.from) {
            (Some(reason), _) => ReplayOutcome::Incomplete(ReplayIncomplete {
                from_offset: self.start,
                to_offset,
                reason: reason.clone(),
            }),
            (None, from) => ReplayOutcome::Complete(ReplayComplete {
                from_offset: if from.is_some() { self.start } else { target },
                to_offset,
                count: self.count,
            }),
        }
    }
}

/// Sends a live event to one connection.
pub fn deliver_live(socket: &SocketRef, name: &str, payload: &RawValue) {
    if let Err(error) = socket.emit(name, payload) {
        handle_send_error(socket, error);
    }
}

/// Sends a replayed event, waiting while the connection's send buffer is
/// full (a replay can be longer than the buffer).
async fn deliver_replayed(socket: &SocketRef, name: &str, payload: &RawValue) {
    let deadline = tokio::time::Instant::now() + SLOW_CLIENT_WAIT;
    loop {
        match socket.emit(name, payload) {
            Ok(()) => return,
            Err(SendError::Socket(SocketError::InternalChannelFull))
                if tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Err(error) => return handle_send_error(socket, error),
        }
    }
}

/// A connection whose send buffer stays full cannot keep up: it is dropped
/// rather than silently skipped, so its client reconnects with its
/// `lastOffset` and gets the event then.
fn handle_send_error(socket: &SocketRef, error: SendError) {
    // Logged by connection id: the socket id is the engine.io session id, a
    // credential that has no place in logs either.
    let connection = socket
        .extensions
        .get::<Arc<Session>>()
        .map(|session| session.connection_id);
    match error {
        SendError::Socket(SocketError::InternalChannelFull) => {
            tracing::warn!(?connection, "dropping a connection that cannot keep up");
            let _ = socket.clone().disconnect();
        }
        // Gone already: it replays what it missed when it comes back.
        SendError::Socket(SocketError::Closed) => {}
        error => tracing::warn!(?connection, %error, "could not send an event"),
    }
}
