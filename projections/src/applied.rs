//! Read-your-writes without polling: waiting until a projector has applied
//! an offset.
//!
//! Every projector step that advances tells `marauders_projector_advanced`
//! (a PostgreSQL NOTIFY sent in its transaction, so delivered at commit, by
//! whichever process runs the projector). An [`AppliedWatch`] listens once
//! per process and wakes whoever waits for that projector; the waiter then
//! reads the stored offset, which stays the one source of truth. A
//! notification lost across a reconnect costs a waiter at most
//! [`FALLBACK_POLL`], since it also reads the offset that often.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use marauders_core::log::Topic;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::runtime::stored_offset;

/// The channel projector steps notify: the payload is `<projector>
/// <next offset>`.
pub const ADVANCED_CHANNEL: &str = "marauders_projector_advanced";

/// How often a waiter reads the offset even without a notification.
pub const FALLBACK_POLL: Duration = Duration::from_millis(100);

/// How long the listener waits before listening again after it failed.
const RELISTEN_AFTER: Duration = Duration::from_secs(1);

/// Wakes waiters when a projector advances. Cheap to clone.
#[derive(Clone)]
pub struct AppliedWatch {
    pool: PgPool,
    /// Each projector's latest next offset heard of.
    advanced: Arc<Mutex<HashMap<String, watch::Sender<u64>>>>,
}

impl AppliedWatch {
    /// A watch that wakes nobody until [`AppliedWatch::run`] listens
    /// (waiters poll every [`FALLBACK_POLL`] meanwhile).
    pub fn new(pool: PgPool) -> AppliedWatch {
        AppliedWatch {
            pool,
            advanced: Arc::default(),
        }
    }

    /// Waits until `projector` has applied `offset` of `topic` (its stored
    /// offset is past it); false if it has not within `max_wait`.
    /// Read-your-writes queries and the notification pusher wait this way.
    pub async fn wait_until_applied(
        &self,
        projector: &str,
        topic: Topic,
        offset: u64,
        max_wait: Duration,
    ) -> Result<bool, sqlx::Error> {
        let mut advanced = self.sender(projector).subscribe();
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            if stored_offset(&self.pool, projector, topic).await? > offset {
                return Ok(true);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            let wait = FALLBACK_POLL.min(deadline - now);
            let _ = tokio::time::timeout(wait, advanced.wait_for(|next| *next > offset)).await;
        }
    }

    fn sender(&self, projector: &str) -> watch::Sender<u64> {
        self.advanced
            .lock()
            .expect("never poisoned")
            .entry(projector.to_owned())
            .or_insert_with(|| watch::Sender::new(0))
            .clone()
    }

    fn heard(&self, payload: &str) {
        let Some((projector, next)) = payload.split_once(' ') else {
            return;
        };
        let Ok(next) = next.parse::<u64>() else {
            return;
        };
        self.sender(projector).send_if_modified(|latest| {
            let advanced = next > *latest;
            *latest = (*latest).max(next);
            advanced
        });
    }

    /// Listens until `shutdown`, listening again a second after a failure.
    pub async fn run(self, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                failed = self.listen() => {
                    tracing::debug!(error = %failed, "projector notifications lost; listening again (waiters poll meanwhile)");
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = tokio::time::sleep(RELISTEN_AFTER) => {}
                    }
                }
            }
        }
    }

    /// Until the listener fails.
    async fn listen(&self) -> sqlx::Error {
        let mut listener = match PgListener::connect_with(&self.pool).await {
            Ok(listener) => listener,
            Err(error) => return error,
        };
        if let Err(error) = listener.listen(ADVANCED_CHANNEL).await {
            return error;
        }
        loop {
            // `None`: the connection was lost and remade; whatever was
            // notified meanwhile is lost, which the waiters' polling covers.
            match listener.try_recv().await {
                Ok(Some(notification)) => self.heard(notification.payload()),
                Ok(None) => {}
                Err(error) => return error,
            }
        }
    }
}
