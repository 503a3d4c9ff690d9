//! Pushes new notifications to their owner's open connections.
//!
//! The notifications projection decides who is notified of what; this
//! worker only delivers its result. For the accepted events that may notify
//! someone, it waits until that projection has applied them, reads the
//! rows they produced, and sends each to room `user:<id>` as
//! `notification:new`. One source of truth, and nothing here can disagree
//! with what `GET /api/notifications` returns.
//!
//! The events that queued up while a push ran are pushed together: one
//! wait for the projection and one read for all of them, in their order,
//! rather than a wait and a read each (under load, half the commands are
//! comments, and a push each cost two queries per comment).

use std::time::Duration;

use marauders_projections::{AppliedWatch, NOTIFICATIONS};
use socketioxide::SocketIo;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::broadcaster::deliver_live;
use super::wire::{NewNotification, user_room};
use crate::log::Topic;

/// How long to wait for the notifications projection before giving up on a
/// push (the notification is still stored and listed by the API).
const PROJECTION_WAIT: Duration = Duration::from_secs(30);

/// The longest one push may take, its wait for the projection included.
const PUSH_DEADLINE: Duration = Duration::from_secs(35);

/// The most events one push reads the notifications of.
const PUSH_BATCH: usize = 256;

/// The most events waiting to be pushed; past it the broadcaster skips the
/// live push of the next ones (they are stored and listed all the same)
/// rather than hold memory for a pusher that cannot keep up.
pub const PUSH_QUEUE: usize = 4_096;

pub struct NotificationPusher {
    pool: PgPool,
    applied: AppliedWatch,
    io: SocketIo,
    events: mpsc::Receiver<(u64, Uuid)>,
}

impl NotificationPusher {
    pub fn new(
        pool: PgPool,
        applied: AppliedWatch,
        io: SocketIo,
    ) -> (mpsc::Sender<(u64, Uuid)>, NotificationPusher) {
        let (sender, events) = mpsc::channel(PUSH_QUEUE);
        (
            sender,
            NotificationPusher {
                pool,
                applied,
                io,
                events,
            },
        )
    }

    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut batch = Vec::with_capacity(PUSH_BATCH);
        loop {
            let received = tokio::select! {
                _ = shutdown.cancelled() => break,
                received = self.events.recv_many(&mut batch, PUSH_BATCH) => received,
            };
            if received == 0 {
                break;
            }
            let last_offset = batch.last().map(|(offset, _)| *offset);
            // Bounded: a frozen database costs this push (the
            // notifications are stored; the bell shows them on the next
            // read), not every push after it.
            tokio::select! {
                _ = shutdown.cancelled() => break,
                pushed = tokio::time::timeout(PUSH_DEADLINE, self.push(&batch)) => match pushed {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => tracing::warn!(%error, ?last_offset, "could not push notifications"),
                    Err(_) => tracing::warn!(?last_offset, "a notification push did not finish within {PUSH_DEADLINE:?}; skipped"),
                },
            }
            batch.clear();
        }
    }

    /// Delivers the notifications that `events` (event ids at their
    /// offsets, in log order) produced, event by event in that order.
    /// Returns how many there were.
    pub async fn push(&self, events: &[(u64, Uuid)]) -> Result<usize, sqlx::Error> {
        let Some(last_offset) = events.iter().map(|(offset, _)| *offset).max() else {
            return Ok(0);
        };
        let applied = self
            .applied
            .wait_until_applied(
                NOTIFICATIONS,
                Topic::IncidentEvents,
                last_offset,
                PROJECTION_WAIT,
            )
            .await?;
        if !applied {
            tracing::warn!(
                last_offset,
                "the notifications projection is behind; push skipped"
            );
            return Ok(0);
        }
        let event_ids: Vec<Uuid> = events.iter().map(|(_, event_id)| *event_id).collect();
        let rows: Vec<NewNotification> = sqlx::query_as(
            "SELECT id, user_id, kind, incident_id, message, created_at, read_at
               FROM notifications WHERE event_id = ANY($1)
              ORDER BY array_position($1, event_id)",
        )
        .bind(&event_ids)
        .fetch_all(&self.pool)
        .await?;
        for row in &rows {
            let payload = serde_json::value::to_raw_value(row).expect("notifications serialize");
            for socket in self.io.to(user_room(row.user_id)).sockets() {
                deliver_live(&socket, "notification:new", &payload);
            }
        }
        Ok(rows.len())
    }
}
