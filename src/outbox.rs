//! The transactional outbox and its relay: how a change committed in
//! PostgreSQL reaches the log with nothing lost.
//!
//! A writer calls [`insert_outbox_event`] inside the transaction that makes
//! the change; the event commits or rolls back with it. The relay
//! ([`OutboxRelay`]) appends unpublished rows to the log in id order, in
//! batches, and marks them published. If the log is down, rows wait; the API
//! is unaffected. If the relay dies between "appended" and "marked", the
//! batch is appended again on restart — consumers deduplicate by `eventId`.
//!
//! A row the relay can never publish (it names a topic the log does not
//! have) is set aside with its error rather than stopping every row behind
//! it; [`set_aside_rows`] lists them for operators. Published rows are
//! pruned once they are [`PUBLISHED_RETENTION`] old (the log has them), at
//! most [`PRUNE_BATCH`] per idle step, so the table stays as small as the
//! backlog plus a day of sign-ups and logins.

use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::events::Event;
use crate::log::{EventLog, LogError, LogMessage, Topic};

/// Held by every writer from its outbox insert until it commits, so outbox
/// ids are assigned in commit order and a relay never sees id N+1 committed
/// while N is still in flight (which would publish them out of order).
const OUTBOX_WRITE_LOCK: i64 = 0x4d41_5241_5544_0001;
/// Held by the relay for one batch: with several service instances, one
/// relays at a time, so the log receives the rows in order.
const OUTBOX_RELAY_LOCK: i64 = 0x4d41_5241_5544_0002;
const NOTIFY_CHANNEL: &str = "marauders_outbox";

/// Records `event` in the outbox as part of the caller's transaction.
pub async fn insert_outbox_event(tx: &mut PgConnection, event: &Event) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(OUTBOX_WRITE_LOCK)
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO outbox (topic, event_id, payload) VALUES ($1, $2, $3)")
        .bind(event.topic().name())
        .bind(event.event_id)
        .bind(event.encode().as_ref())
        .execute(&mut *tx)
        .await?;
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(NOTIFY_CHANNEL)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// How long a published row is kept (for an operator looking into what
/// was relayed) before it is pruned.
pub const PUBLISHED_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);
/// The most published rows one idle step prunes.
pub const PRUNE_BATCH: i64 = 1_000;

/// What one relay step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayOutcome {
    /// Appended and marked this many rows, and set aside this many that
    /// cannot be published.
    Published { published: usize, set_aside: usize },
    /// Nothing to publish.
    Idle,
    /// Another instance's relay holds the lock; it will publish.
    AnotherRelayIsActive,
}

/// The longest one batch of the relay may take (see [`RelayError::TimedOut`]).
pub const RELAY_STEP_DEADLINE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("outbox database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A batch waited longer than [`RELAY_STEP_DEADLINE`]: the database or
    /// the log stopped answering. Its transaction is rolled back, so its
    /// rows are published again (at least once, as after a crash).
    #[error(
        "an outbox batch did not finish within {0:?}: the database or the log is not answering"
    )]
    TimedOut(Duration),
    #[error(transparent)]
    Log(#[from] LogError),
}

/// A row the relay could not publish, kept with why.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetAsideRow {
    pub id: i64,
    pub topic: String,
    pub event_id: Uuid,
    pub error: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub set_aside_at: chrono::DateTime<chrono::Utc>,
}

/// How many rows wait to be relayed.
pub async fn backlog(pool: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM outbox WHERE published_at IS NULL AND set_aside_at IS NULL",
    )
    .fetch_one(pool)
    .await
}

/// How many rows were set aside.
pub async fn set_aside_count(pool: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM outbox WHERE set_aside_at IS NOT NULL")
        .fetch_one(pool)
        .await
}

/// The rows set aside, oldest first (at most `limit`).
pub async fn set_aside_rows(pool: &PgPool, limit: i64) -> sqlx::Result<Vec<SetAsideRow>> {
    sqlx::query_as(
        "SELECT id, topic, event_id, COALESCE(error, '') AS error, created_at, set_aside_at FROM outbox
          WHERE set_aside_at IS NOT NULL ORDER BY id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await
}

pub struct OutboxRelay {
    pool: PgPool,
    log: EventLog,
    batch_size: i64,
}

impl OutboxRelay {
    pub fn new(pool: PgPool, log: EventLog) -> Self {
        OutboxRelay {
            pool,
            log,
            batch_size: 100,
        }
    }

    /// One step: append the oldest unpublished rows (up to a batch) to the
    /// log, in id order, then mark them published — all inside one
    /// transaction that also holds the relay lock.
    pub async fn publish_outbox_batch(&self) -> Result<RelayOutcome, RelayError> {
        let mut tx = self.pool.begin().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(OUTBOX_RELAY_LOCK)
            .fetch_one(&mut *tx)
            .await?;
        if !locked {
            return Ok(RelayOutcome::AnotherRelayIsActive);
        }
        let rows: Vec<(i64, String, Uuid, Vec<u8>)> = sqlx::query_as(
            "SELECT id, topic, event_id, payload FROM outbox
              WHERE published_at IS NULL AND set_aside_at IS NULL ORDER BY id LIMIT $1",
        )
        .bind(self.batch_size)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(RelayOutcome::Idle);
        }
        // Consecutive rows of one topic go in one append (one fsync on
        // Iggy); the order across rows is kept.
        let mut group: Vec<LogMessage> = Vec::new();
        let mut group_topic: Option<Topic> = None;
        let mut published: Vec<i64> = Vec::new();
        let mut set_aside = 0;
        for (id, topic_name, event_id, payload) in &rows {
            let Ok(topic) = topic_name.parse::<Topic>() else {
                tracing::error!(id, topic = %topic_name, "setting aside an outbox row that names an unknown topic");
                sqlx::query("UPDATE outbox SET set_aside_at = now(), error = $2 WHERE id = $1")
                    .bind(id)
                    .bind(format!("names an unknown topic '{topic_name}'"))
                    .execute(&mut *tx)
                    .await?;
                set_aside += 1;
                continue;
            };
            if let Some(current) = group_topic.filter(|current| *current != topic) {
                self.log.append(current, &group).await?;
                group.clear();
            }
            group_topic = Some(topic);
            group.push(LogMessage {
                id: *event_id,
                payload: payload.clone().into(),
            });
            published.push(*id);
        }
        if let Some(topic) = group_topic {
            self.log.append(topic, &group).await?;
        }
        sqlx::query("UPDATE outbox SET published_at = now() WHERE id = ANY($1)")
            .bind(&published)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(RelayOutcome::Published {
            published: published.len(),
            set_aside,
        })
    }

    /// Deletes up to [`PRUNE_BATCH`] rows published more than
    /// [`PUBLISHED_RETENTION`] ago; how many.
    pub async fn prune_published(&self) -> sqlx::Result<u64> {
        let pruned = sqlx::query(
            "DELETE FROM outbox WHERE id IN (
                 SELECT id FROM outbox
                  WHERE published_at IS NOT NULL AND published_at < now() - $1 * interval '1 second'
                  ORDER BY published_at LIMIT $2)",
        )
        .bind(PUBLISHED_RETENTION.as_secs_f64())
        .bind(PRUNE_BATCH)
        .execute(&self.pool)
        .await?;
        Ok(pruned.rows_affected())
    }

    /// Relays until `shutdown`: at once while there is a backlog, woken by
    /// NOTIFY when new rows commit (and every second regardless, since a
    /// NOTIFY can be missed across a reconnect), backing off a second after
    /// a failure. The batch in hand is finished before it returns.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut listener = match PgListener::connect_with(&self.pool).await {
            Ok(mut listener) => match listener.listen(NOTIFY_CHANNEL).await {
                Ok(()) => Some(listener),
                Err(error) => {
                    tracing::warn!(%error, "outbox relay cannot LISTEN; polling every second");
                    None
                }
            },
            Err(error) => {
                tracing::warn!(%error, "outbox relay cannot LISTEN; polling every second");
                None
            }
        };
        while !shutdown.is_cancelled() {
            let batch = tokio::time::timeout(RELAY_STEP_DEADLINE, self.publish_outbox_batch())
                .await
                .unwrap_or(Err(RelayError::TimedOut(RELAY_STEP_DEADLINE)));
            let pause = match batch {
                Ok(RelayOutcome::Published {
                    published,
                    set_aside,
                }) => {
                    tracing::debug!(published, set_aside, "outbox rows relayed");
                    continue;
                }
                Ok(RelayOutcome::Idle) => {
                    let pruned =
                        tokio::time::timeout(RELAY_STEP_DEADLINE, self.prune_published()).await;
                    match pruned {
                        Ok(Ok(0)) => {}
                        Ok(Ok(count)) => tracing::debug!(count, "published outbox rows pruned"),
                        Ok(Err(error)) => tracing::warn!(%error, "pruning the outbox failed"),
                        Err(_) => tracing::warn!("pruning the outbox did not finish in time"),
                    }
                    Duration::from_secs(1)
                }
                Ok(RelayOutcome::AnotherRelayIsActive) => Duration::from_secs(1),
                Err(error) => {
                    tracing::warn!(%error, "outbox relay step failed; retrying in 1s");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    continue;
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = wait_for_notification(listener.as_mut(), pause) => {}
            }
        }
        tracing::info!("outbox relay stopped");
    }
}

async fn wait_for_notification(listener: Option<&mut PgListener>, max_wait: Duration) {
    match listener {
        Some(listener) => {
            let _ = tokio::time::timeout(max_wait, listener.try_recv()).await;
        }
        None => tokio::time::sleep(max_wait).await,
    }
}
