//! Every incident, folded from `incident-events`, in memory.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::events::Event;
use crate::incident::{FoldOutcome, Incident, IncidentFold, incident_and_version};
use crate::log::{EventLog, LogError, Topic};

const SNAPSHOT_NAME: &str = "incidents";
/// Bump when the fold's serialized shape changes: older snapshots are then
/// ignored and the fold is rebuilt from offset 0.
const SNAPSHOT_FORMAT: i32 = 1;
/// Take a snapshot after this many events since the last one.
const SNAPSHOT_EVERY: u64 = 10_000;
const READ_BATCH: u32 = 1_000;

pub struct WriteModel {
    log: EventLog,
    pool: PgPool,
    state: Mutex<FoldState>,
}

#[derive(Default)]
struct FoldState {
    fold: IncidentFold,
    /// The next offset of `incident-events` to fold.
    next_offset: u64,
    /// The offset of each incident's latest accepted event (for the
    /// `Event-Offset` of a command that changed nothing).
    last_offsets: HashMap<Uuid, u64>,
    events_since_snapshot: u64,
}

/// How a start-up went, for logs and the benchmark.
#[derive(Debug, Clone, Copy)]
pub struct StartupReport {
    pub snapshot_offset: Option<u64>,
    pub events_replayed: u64,
    pub incidents: usize,
    pub took: Duration,
}

impl WriteModel {
    pub fn new(log: EventLog, pool: PgPool) -> Self {
        WriteModel {
            log,
            pool,
            state: Mutex::new(FoldState::default()),
        }
    }

    /// Loads the latest snapshot (when `use_snapshot`) and folds every
    /// event after it.
    pub async fn rebuild(&self, use_snapshot: bool) -> Result<StartupReport, LogError> {
        let started = Instant::now();
        let end = self.log.log_end(Topic::IncidentEvents).await?;
        let mut snapshot_offset = None;
        if use_snapshot {
            match self.load_snapshot().await {
                Ok(Some((next_offset, fold))) if next_offset <= end => {
                    let mut state = self.state.lock().await;
                    state.fold = fold;
                    state.next_offset = next_offset;
                    snapshot_offset = Some(next_offset);
                }
                Ok(Some((next_offset, _))) => {
                    tracing::warn!(
                        next_offset,
                        end,
                        "ignoring a snapshot beyond the log's end (another log?)"
                    );
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%error, "could not load the write model snapshot; replaying all")
                }
            }
        }
        let events_replayed = self.catch_up_to(end).await?;
        let incidents = self.state.lock().await.fold.len();
        Ok(StartupReport {
            snapshot_offset,
            events_replayed,
            incidents,
            took: started.elapsed(),
        })
    }

    /// Folds everything up to the log's current end: afterwards the model
    /// reflects every event appended before this call, by any instance.
    pub async fn sync(&self) -> Result<(), LogError> {
        let end = self.log.log_end(Topic::IncidentEvents).await?;
        self.catch_up_to(end).await.map(|_| ())
    }

    /// Folds events until `next_offset` reaches `end`; returns how many.
    pub async fn catch_up_to(&self, end: u64) -> Result<u64, LogError> {
        let mut state = self.state.lock().await;
        let mut folded = 0;
        while state.next_offset < end {
            let records = self
                .log
                .read(Topic::IncidentEvents, state.next_offset, READ_BATCH)
                .await?;
            let Some(last) = records.last() else {
                // The log said it had more; reporting success here would make
                // a command handler think its event was lost.
                return Err(LogError::Unavailable {
                    backend: self.log.backend_name(),
                    reason: format!(
                        "incident-events ended at {} before its reported end {end}",
                        state.next_offset
                    ),
                });
            };
            let next_offset = last.offset + 1;
            for record in &records {
                match Event::decode(&record.payload) {
                    Ok(event) => {
                        if state.fold.apply(&event) == FoldOutcome::Applied
                            && let Some((id, _)) = incident_and_version(&event.payload)
                        {
                            state.last_offsets.insert(id, record.offset);
                        }
                    }
                    Err(error) => {
                        tracing::warn!(offset = record.offset, %error, "write model skips an undecodable event")
                    }
                }
            }
            folded += records.len() as u64;
            state.events_since_snapshot += records.len() as u64;
            state.next_offset = next_offset;
        }
        if state.events_since_snapshot >= SNAPSHOT_EVERY {
            state.events_since_snapshot = 0;
            let (fold, next_offset) = (state.fold.clone(), state.next_offset);
            drop(state);
            if let Err(error) = self.save_snapshot(&fold, next_offset).await {
                tracing::warn!(%error, "could not save a write model snapshot");
            }
        }
        Ok(folded)
    }

    /// A copy of one incident as currently folded.
    pub async fn incident(&self, id: Uuid) -> Option<Incident> {
        self.state.lock().await.fold.get(id).cloned()
    }

    /// The offset of the incident's latest accepted event.
    pub async fn last_offset_of(&self, id: Uuid) -> Option<u64> {
        self.state.lock().await.last_offsets.get(&id).copied()
    }

    pub async fn was_accepted(&self, incident: Uuid, version: u64, event_id: Uuid) -> bool {
        self.state
            .lock()
            .await
            .fold
            .was_accepted(incident, version, event_id)
    }

    /// A copy of the whole fold (tests compare it with other readers').
    pub async fn fold(&self) -> IncidentFold {
        self.state.lock().await.fold.clone()
    }

    /// Keeps the model current with events appended by other instances,
    /// until `shutdown`; then saves a snapshot.
    pub async fn follow_log(&self, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            let known = self.state.lock().await.next_offset;
            let end = tokio::select! {
                _ = shutdown.cancelled() => break,
                end = self.log.wait_for_new_events(Topic::IncidentEvents, known, Duration::from_secs(30)) => end,
            };
            if let Err(error) = self.catch_up_to(end).await {
                tracing::warn!(%error, "write model could not follow the log; retrying in 1s");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
        let (fold, next_offset) = {
            let state = self.state.lock().await;
            (state.fold.clone(), state.next_offset)
        };
        if next_offset > 0
            && let Err(error) = self.save_snapshot(&fold, next_offset).await
        {
            tracing::warn!(%error, "could not save the write model snapshot at shutdown");
        }
    }

    pub async fn save_snapshot(&self, fold: &IncidentFold, next_offset: u64) -> anyhow::Result<()> {
        let state = serde_json::to_value(fold)?;
        sqlx::query(
            "INSERT INTO write_model_snapshots (name, format, next_offset, state) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO UPDATE SET format = EXCLUDED.format, next_offset = EXCLUDED.next_offset,
                 state = EXCLUDED.state, taken_at = now()
             WHERE write_model_snapshots.next_offset <= EXCLUDED.next_offset",
        )
        .bind(SNAPSHOT_NAME)
        .bind(SNAPSHOT_FORMAT)
        .bind(next_offset as i64)
        .bind(state)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn load_snapshot(&self) -> anyhow::Result<Option<(u64, IncidentFold)>> {
        let row: Option<(i64, serde_json::Value)> = sqlx::query_as(
            "SELECT next_offset, state FROM write_model_snapshots WHERE name = $1 AND format = $2",
        )
        .bind(SNAPSHOT_NAME)
        .bind(SNAPSHOT_FORMAT)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(next_offset, state)| Ok((next_offset as u64, serde_json::from_value(state)?)))
            .transpose()
    }

    /// Drops the snapshot (the benchmark measures start-up without one).
    pub async fn delete_snapshot(&self) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM write_model_snapshots WHERE name = $1")
            .bind(SNAPSHOT_NAME)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
