//! `marauders-map log migrate --to <IGGY_URL>`: moving from the embedded log
//! to Apache Iggy, the path a deployment takes when it outgrows the default.
//!
//! The copy is the same log, not a new one: every topic is copied in order
//! into an empty Iggy stream, so every message keeps its offset and id, and
//! the log keeps its identity ([`LogId`]). Everything that kept a position
//! on the embedded log — each projector's offset, the write model's
//! snapshot, a browser's `lastOffset` — is therefore still right on Iggy,
//! and the projections continue without a rebuild.
//!
//! It runs with the service stopped: every `serve` and `project` process
//! holds [`LOG_USERS_LOCK`] shared for as long as it runs, and the migration
//! takes it exclusively, so it refuses while any of them is up (an event
//! appended during the copy would be lost to the copy).

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use sqlx::{Connection, PgConnection, PgPool};

use crate::log::iggy::IggyConfig;
use crate::log::{EventLog, LogConfig, LogId, MAX_READ_LIMIT, Topic};

/// The advisory lock (an arbitrary constant) that marks "a process uses the
/// log": held shared by every service and projector process, exclusively by
/// the migration.
pub const LOG_USERS_LOCK: i64 = 0x6d6d_6c6f_6775_7365;

/// How many messages are copied per append.
const COPY_BATCH: u32 = 1_000;

/// What a migration copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    pub log_id: LogId,
    /// Messages per topic, in [`Topic::ALL`] order.
    pub copied: Vec<(Topic, u64)>,
    pub consumer_offsets: usize,
}

/// Holds [`LOG_USERS_LOCK`] shared for as long as it lives: how a running
/// process tells `log migrate` to keep off.
pub struct LogUserLock {
    _connection: PgConnection,
}

impl LogUserLock {
    pub async fn acquire(database_url: &str) -> anyhow::Result<LogUserLock> {
        let mut connection = PgConnection::connect(database_url)
            .await
            .context("Failed to connect to PostgreSQL for the log user lock")?;
        sqlx::query("SELECT pg_advisory_lock_shared($1)")
            .bind(LOG_USERS_LOCK)
            .execute(&mut connection)
            .await
            .context("Failed to take the log user lock")?;
        Ok(LogUserLock {
            _connection: connection,
        })
    }
}

/// Copies the embedded log in `pool`'s database into the empty Iggy stream
/// `target.stream` at `target.url`, then verifies the copy.
pub async fn migrate_embedded_log_to_iggy(
    database_url: &str,
    pool: &PgPool,
    mut target: IggyConfig,
) -> anyhow::Result<MigrationReport> {
    let mut guard = PgConnection::connect(database_url)
        .await
        .context("Failed to connect to PostgreSQL")?;
    let alone: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(LOG_USERS_LOCK)
        .fetch_one(&mut guard)
        .await?;
    ensure!(
        alone,
        "the service (or a projector process) is running on this database: stop every \
         `marauders-map serve` and `project` process first, so no event is appended during the copy"
    );

    let source = EventLog::open(LogConfig::Postgres(pool.clone())).await?;
    let log_id = source.log_id().await?;
    target.identity_for_new_log = Some(log_id);
    let stream = target.stream.clone();
    let destination = EventLog::open(LogConfig::Iggy(target)).await?;
    let result = copy_and_verify(&source, &destination, log_id, &stream).await;
    destination.shutdown().await;
    source.shutdown().await;
    let _ = guard.close().await;
    result
}

async fn copy_and_verify(
    source: &EventLog,
    destination: &EventLog,
    log_id: LogId,
    stream: &str,
) -> anyhow::Result<MigrationReport> {
    destination
        .wait_until_ready(Duration::from_secs(30))
        .await
        .context("Iggy did not become ready")?;
    let target_id = destination.log_id().await?;
    ensure!(
        target_id == log_id,
        "the Iggy stream '{stream}' already holds another log ({target_id}); migrate into a stream \
         that does not exist yet"
    );
    for topic in Topic::ALL {
        let end = destination.log_end(topic).await?;
        ensure!(
            end == 0,
            "the Iggy stream '{stream}' is not empty ({topic} has {end} messages); migrate into a \
             stream that does not exist yet"
        );
    }
    let mut copied = Vec::new();
    for topic in Topic::ALL {
        copied.push((topic, copy_topic(source, destination, topic).await?));
    }
    let consumer_offsets = copy_consumer_offsets(source, destination).await?;
    for topic in Topic::ALL {
        verify_topic(source, destination, topic).await?;
    }
    Ok(MigrationReport {
        log_id,
        copied,
        consumer_offsets,
    })
}

/// Appends every message of `topic` in order; each must land at the offset
/// it has on the source (the destination partition starts empty, and the
/// embedded log's offsets are gapless from 0).
async fn copy_topic(
    source: &EventLog,
    destination: &EventLog,
    topic: Topic,
) -> anyhow::Result<u64> {
    let mut next = 0;
    loop {
        let page = source.read_page(topic, next, COPY_BATCH).await?;
        let resumes_at = page
            .records
            .first()
            .map_or(page.next_offset, |first| first.offset);
        ensure!(
            resumes_at == next,
            "{topic}: the source has a hole at offsets {next}..{resumes_at} (an append cut short by a crash); \
             the copy cannot leave one, so every event after it would get another offset"
        );
        let records = page.records;
        let Some(last) = records.last() else {
            return Ok(next);
        };
        let messages: Vec<_> = records
            .iter()
            .map(|record| crate::log::LogMessage {
                id: record.id,
                payload: record.payload.clone(),
            })
            .collect();
        let offsets = destination.append(topic, &messages).await?;
        let expected: Vec<u64> = records.iter().map(|record| record.offset).collect();
        ensure!(
            offsets == expected,
            "{topic}: messages landed at offsets {:?}.. instead of {:?}..; the copy is not the same log",
            offsets.first(),
            expected.first()
        );
        next = last.offset + 1;
    }
}

/// Consumer offsets stored on the embedded log itself (`LogConsumer`s such
/// as the taste-test consumer); projectors keep theirs in PostgreSQL.
async fn copy_consumer_offsets(source: &EventLog, destination: &EventLog) -> anyhow::Result<usize> {
    let EventLog::Postgres(embedded) = source else {
        bail!("the source must be the embedded log");
    };
    let stored = embedded.consumer_offsets().await?;
    for (consumer, topic, next_offset) in &stored {
        destination
            .store_consumer_offset(consumer, *topic, *next_offset)
            .await?;
    }
    Ok(stored.len())
}

/// The destination holds exactly the source's messages: same count, and at
/// every offset the same id and bytes.
async fn verify_topic(
    source: &EventLog,
    destination: &EventLog,
    topic: Topic,
) -> anyhow::Result<()> {
    let (source_end, destination_end) = (
        source.log_end(topic).await?,
        destination.log_end(topic).await?,
    );
    ensure!(
        source_end == destination_end,
        "{topic}: the source ends at {source_end}, the copy at {destination_end}"
    );
    let mut next = 0;
    while next < source_end {
        let limit = COPY_BATCH.min(MAX_READ_LIMIT);
        let (left, right) = (
            source.read(topic, next, limit).await?,
            destination.read(topic, next, limit).await?,
        );
        ensure!(
            left.len() == right.len() && !left.is_empty(),
            "{topic}: from offset {next} the source has {} messages, the copy {}",
            left.len(),
            right.len()
        );
        for (original, copy) in left.iter().zip(&right) {
            ensure!(
                original == copy,
                "{topic}: the copy differs at offset {} (message {} vs {})",
                original.offset,
                original.id,
                copy.id
            );
        }
        next = left.last().map_or(next, |record| record.offset + 1);
    }
    Ok(())
}
