//! The embedded log: the [`EventLog`](super::EventLog) model in PostgreSQL.
//!
//! Tables are created by `migrations/0001_embedded_event_log.sql`. An append
//! is one SQL statement: it bumps the topic's head row (which serializes
//! appenders), inserts the batch at the offsets that frees up, and sends a
//! NOTIFY `marauders_log` with `topic:new_end`. PostgreSQL delivers the
//! NOTIFY only when the transaction commits, so a woken reader always finds
//! the rows.
//!
//! Durability is PostgreSQL's: the append is acknowledged after the commit is
//! flushed to the WAL (`synchronous_commit = on`, the default).

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{ConsumerName, LogEndWatch, LogError, LogId, LogMessage, LogRecord, Topic};

pub const BACKEND: &str = "postgres";

/// The NOTIFY channel appends announce themselves on.
const NOTIFY_CHANNEL: &str = "marauders_log";

#[derive(Clone)]
pub struct PostgresLog {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    /// Read once at open: it never changes.
    log_id: LogId,
    watch: LogEndWatch,
    stop_listener: CancellationToken,
    listener: Mutex<Option<JoinHandle<()>>>,
}

impl PostgresLog {
    /// Opens the log in `pool`'s database (migrations must have run) and
    /// starts listening for appends made by other processes.
    pub async fn open(pool: PgPool) -> Result<PostgresLog, LogError> {
        let mut listener = PgListener::connect_with(&pool).await.map_err(unavailable)?;
        listener.listen(NOTIFY_CHANNEL).await.map_err(unavailable)?;
        let log_id: Uuid = sqlx::query_scalar("SELECT log_id FROM event_log_identity")
            .fetch_one(&pool)
            .await
            .map_err(classify)?;
        let log = PostgresLog {
            inner: Arc::new(Inner {
                pool,
                log_id: LogId(log_id),
                watch: LogEndWatch::default(),
                stop_listener: CancellationToken::new(),
                listener: Mutex::new(None),
            }),
        };
        // Listen first, then read the heads: an append that commits in
        // between is seen by one or the other.
        log.refresh_log_ends().await?;
        let task = tokio::spawn(listen_for_appends(log.clone(), listener));
        *log.inner.listener.lock().await = Some(task);
        Ok(log)
    }

    pub(super) fn watch(&self) -> &LogEndWatch {
        &self.inner.watch
    }

    pub(super) fn log_id(&self) -> LogId {
        self.inner.log_id
    }

    pub(super) async fn append(
        &self,
        topic: Topic,
        messages: &[LogMessage],
    ) -> Result<Vec<u64>, LogError> {
        let ids: Vec<Uuid> = messages.iter().map(|m| m.id).collect();
        let payloads: Vec<&[u8]> = messages.iter().map(|m| m.payload.as_ref()).collect();
        // Data-modifying CTEs always run to completion, referenced or not.
        let new_end: i64 = sqlx::query_scalar(
            r#"
            WITH head AS (
                UPDATE event_log_heads
                   SET next_offset = next_offset + cardinality($2::uuid[])
                 WHERE topic = $1 AND partition_id = 0
             RETURNING next_offset
            ), appended AS (
                INSERT INTO event_log (topic, log_offset, message_id, payload)
                SELECT $1, head.next_offset - cardinality($2::uuid[]) + m.ordinal - 1, m.id, m.payload
                  FROM head, UNNEST($2::uuid[], $3::bytea[]) WITH ORDINALITY AS m(id, payload, ordinal)
            )
            SELECT head.next_offset FROM head, pg_notify($4, $1 || ':' || head.next_offset)
            "#,
        )
        .bind(topic.name())
        .bind(&ids)
        .bind(&payloads)
        .bind(NOTIFY_CHANNEL)
        .fetch_optional(&self.inner.pool)
        .await
        .map_err(classify)?
        .ok_or_else(|| LogError::Failed {
            backend: BACKEND,
            reason: format!("topic {topic} has no head row; did the migrations run?"),
        })?;
        let first = new_end as u64 - messages.len() as u64;
        Ok((first..new_end as u64).collect())
    }

    pub(super) async fn read(
        &self,
        topic: Topic,
        from_offset: u64,
        limit: u32,
    ) -> Result<Vec<LogRecord>, LogError> {
        let from = i64::try_from(from_offset).unwrap_or(i64::MAX);
        let rows: Vec<(i64, Uuid, Vec<u8>)> = sqlx::query_as(
            "SELECT log_offset, message_id, payload FROM event_log
              WHERE topic = $1 AND partition_id = 0 AND log_offset >= $2
              ORDER BY log_offset LIMIT $3",
        )
        .bind(topic.name())
        .bind(from)
        .bind(i64::from(limit))
        .fetch_all(&self.inner.pool)
        .await
        .map_err(classify)?;
        Ok(rows
            .into_iter()
            .map(|(offset, id, payload)| LogRecord {
                offset: offset as u64,
                id,
                payload: payload.into(),
            })
            .collect())
    }

    pub(super) async fn log_end(&self, topic: Topic) -> Result<u64, LogError> {
        let end: i64 = sqlx::query_scalar(
            "SELECT next_offset FROM event_log_heads WHERE topic = $1 AND partition_id = 0",
        )
        .bind(topic.name())
        .fetch_one(&self.inner.pool)
        .await
        .map_err(classify)?;
        Ok(end as u64)
    }

    pub(super) async fn store_consumer_offset(
        &self,
        consumer: &ConsumerName,
        topic: Topic,
        next_offset: u64,
    ) -> Result<(), LogError> {
        let next = i64::try_from(next_offset).map_err(|_| {
            LogError::InvalidRequest(format!("offset {next_offset} is out of range"))
        })?;
        sqlx::query(
            "INSERT INTO event_log_consumer_offsets (consumer, topic, next_offset) VALUES ($1, $2, $3)
             ON CONFLICT (consumer, topic, partition_id)
             DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()",
        )
        .bind(consumer.as_str())
        .bind(topic.name())
        .bind(next)
        .execute(&self.inner.pool)
        .await
        .map_err(classify)?;
        Ok(())
    }

    pub(super) async fn load_consumer_offset(
        &self,
        consumer: &ConsumerName,
        topic: Topic,
    ) -> Result<u64, LogError> {
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT next_offset FROM event_log_consumer_offsets
              WHERE consumer = $1 AND topic = $2 AND partition_id = 0",
        )
        .bind(consumer.as_str())
        .bind(topic.name())
        .fetch_optional(&self.inner.pool)
        .await
        .map_err(classify)?;
        Ok(next.map_or(0, |n| n as u64))
    }

    /// Every consumer offset stored on this log, for `log migrate`.
    pub async fn consumer_offsets(&self) -> Result<Vec<(ConsumerName, Topic, u64)>, LogError> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT consumer, topic, next_offset FROM event_log_consumer_offsets
              WHERE partition_id = 0 ORDER BY consumer, topic",
        )
        .fetch_all(&self.inner.pool)
        .await
        .map_err(classify)?;
        rows.into_iter()
            .map(|(consumer, topic, next)| {
                let topic = topic.parse::<Topic>().map_err(|reason| LogError::Failed {
                    backend: BACKEND,
                    reason,
                })?;
                Ok((ConsumerName::parse(&consumer)?, topic, next as u64))
            })
            .collect()
    }

    async fn refresh_log_ends(&self) -> Result<(), LogError> {
        let heads: Vec<(String, i64)> =
            sqlx::query_as("SELECT topic, next_offset FROM event_log_heads WHERE partition_id = 0")
                .fetch_all(&self.inner.pool)
                .await
                .map_err(classify)?;
        for (name, end) in heads {
            if let Ok(topic) = name.parse::<Topic>() {
                self.inner.watch.advance(topic, end as u64);
            }
        }
        Ok(())
    }

    pub(super) async fn shutdown(&self) {
        self.inner.stop_listener.cancel();
        if let Some(task) = self.inner.listener.lock().await.take() {
            let _ = task.await;
        }
    }
}

/// Turns NOTIFYs into [`LogEndWatch`] advances until stopped.
///
/// `PgListener` reconnects by itself, but NOTIFYs sent while it was away are
/// lost; `try_recv` tells us about the reconnect with `Ok(None)`, and we then
/// re-read every head from the table.
async fn listen_for_appends(log: PostgresLog, mut listener: PgListener) {
    loop {
        let received = tokio::select! {
            _ = log.inner.stop_listener.cancelled() => return,
            received = listener.try_recv() => received,
        };
        match received {
            Ok(Some(notification)) => {
                let parsed = notification
                    .payload()
                    .rsplit_once(':')
                    .and_then(|(topic, end)| {
                        Some((topic.parse::<Topic>().ok()?, end.parse::<u64>().ok()?))
                    });
                match parsed {
                    Some((topic, end)) => log.inner.watch.advance(topic, end),
                    None => tracing::warn!(
                        payload = notification.payload(),
                        "ignoring a malformed log notification"
                    ),
                }
            }
            Ok(None) => {
                tracing::info!("log listener reconnected; re-reading log ends");
                if let Err(error) = log.refresh_log_ends().await {
                    tracing::warn!(%error, "could not re-read log ends after a reconnect");
                }
            }
            Err(error) => {
                tracing::warn!(%error, "log listener failed; retrying in 1s");
                tokio::select! {
                    _ = log.inner.stop_listener.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                if log.refresh_log_ends().await.is_ok() {
                    tracing::debug!("log ends re-read after a listener error");
                }
            }
        }
    }
}

fn unavailable(error: sqlx::Error) -> LogError {
    LogError::Unavailable {
        backend: BACKEND,
        reason: error.to_string(),
    }
}

/// Connection trouble means "unavailable, try again"; anything else is a
/// failure of the request.
fn classify(error: sqlx::Error) -> LogError {
    match error {
        // No connection was had: the statement never reached the server.
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => LogError::Unreachable {
            backend: BACKEND,
            reason: error.to_string(),
        },
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::WorkerCrashed => unavailable(error),
        other => LogError::Failed {
            backend: BACKEND,
            reason: other.to_string(),
        },
    }
}
