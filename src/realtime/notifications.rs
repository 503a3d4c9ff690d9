//! Pushes new notifications to their owner's open connections.
//!
//! The notifications projection decides who is notified of what; this
//! worker only delivers its result. For each accepted event that may notify
//! someone, it waits until that projection has applied the event, reads the
//! rows it produced, and sends each to room `user:<id>` as
//! `notification:new`. One source of truth, and nothing here can disagree
//! with what `GET /api/notifications` returns.

use std::time::Duration;

use marauders_projections::{NOTIFICATIONS, wait_until_applied};
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

pub struct NotificationPusher {
    pool: PgPool,
    io: SocketIo,
    events: mpsc::UnboundedReceiver<(u64, Uuid)>,
}

impl NotificationPusher {
    pub fn new(
        pool: PgPool,
        io: SocketIo,
    ) -> (mpsc::UnboundedSender<(u64, Uuid)>, NotificationPusher) {
        let (sender, events) = mpsc::unbounded_channel();
        (sender, NotificationPusher { pool, io, events })
    }

    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => break,
                next = self.events.recv() => next,
            };
            let Some((offset, event_id)) = next else {
                break;
            };
            // Bounded: a frozen database costs this push (the
            // notification is stored; the bell shows it on the next read),
            // not every push after it.
            tokio::select! {
                _ = shutdown.cancelled() => break,
                pushed = tokio::time::timeout(PUSH_DEADLINE, self.push(offset, event_id)) => match pushed {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => tracing::warn!(%error, offset, "could not push notifications"),
                    Err(_) => tracing::warn!(offset, "a notification push did not finish within {PUSH_DEADLINE:?}; skipped"),
                },
            }
        }
    }

    /// Delivers the notifications event `event_id` (at `offset`) produced.
    pub async fn push(&self, offset: u64, event_id: Uuid) -> Result<usize, sqlx::Error> {
        let applied = wait_until_applied(
            &self.pool,
            NOTIFICATIONS,
            Topic::IncidentEvents,
            offset,
            PROJECTION_WAIT,
        )
        .await?;
        if !applied {
            tracing::warn!(
                offset,
                "the notifications projection is behind; push skipped"
            );
            return Ok(0);
        }
        let rows: Vec<NewNotification> = sqlx::query_as(
            "SELECT id, user_id, kind, incident_id, message, created_at, read_at
               FROM notifications WHERE event_id = $1",
        )
        .bind(event_id)
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
