//! Every incident, folded from `incident-events`, in memory — plus what the
//! command path needs to recognise a retried command: where each recent
//! accepted event landed, and the outcome of every recent keyed command.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio::sync::{Mutex, Notify};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::events::Event;
use crate::incident::{Claim, FoldOutcome, Incident, IncidentFold, incident_of};
use crate::log::{EventLog, LogError, LogId, Topic};

const SNAPSHOT_NAME: &str = "incidents";
/// Bump when the snapshot's serialized shape changes: older snapshots are
/// then ignored and the fold is rebuilt from offset 0.
const SNAPSHOT_FORMAT: i32 = 2;
/// Take a snapshot after this many events since the last one.
const SNAPSHOT_EVERY: u64 = 10_000;
const READ_BATCH: u32 = 1_000;

/// How many accepted events' offsets are remembered: enough for every
/// command still being confirmed and for the gateway's replays (at most
/// 10,000 events back), so neither mistakes a copy of an event for it.
const REMEMBERED_ACCEPTED_EVENTS: usize = 100_000;

/// The idempotency-key budget. A keyed command's outcome is remembered while
/// it is younger than [`KEY_MAX_AGE`] *and* among the newest
/// [`MAX_REMEMBERED_KEYS`] keyed outcomes; whichever limit is reached first
/// forgets it. Past the budget a retry is decided again as a new command —
/// which still cannot create a second incident (its id is derived from the
/// key, so the report is refused as `already_exists`), but could add a
/// second comment.
pub const MAX_REMEMBERED_KEYS: usize = 50_000;
pub const KEY_MAX_AGE: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// The fold is behind a lock that is only ever held to look something up or
/// to apply records already read: log reads happen outside it, so commands,
/// the gateway and `/health` never wait behind a catch-up's I/O.
pub struct WriteModel {
    log: EventLog,
    pool: PgPool,
    state: RwLock<FoldState>,
    /// One catch-up reads the log at a time; whoever waits for it finds the
    /// records it was waiting for already folded.
    reading: Mutex<()>,
    /// The log's end, asked once for everyone who asked while it was asked.
    log_end: LogEndFlight,
    /// Set once enough events were folded since the last snapshot; the
    /// snapshot is taken by [`WriteModel::follow_log`], off every
    /// command's path.
    snapshot_due: Notify,
}

/// Many callers of [`WriteModel::sync`] at once make one `log_end` call,
/// not one each — yet each gets an end asked for *after* it called, so it
/// still sees every event appended before that.
#[derive(Default)]
struct LogEndFlight {
    /// Numbers the callers in the order they arrived.
    arrivals: AtomicU64,
    /// The last answer (an end, or why there was none), and the last
    /// arrival it covers: a call made after arrival `n` was numbered covers
    /// every caller up to `n` — with its failure too, so callers queued
    /// behind a call to a log that stopped answering fail with it instead
    /// of each waiting for a call of their own.
    last: Mutex<Option<(Result<u64, LogError>, u64)>>,
}

/// What a command that took effect answered, kept so that its retry gets
/// the same answer: the incident as it was right after the event, the event,
/// and the offset of the copy the version rule accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AcceptedCommand {
    pub incident: Incident,
    pub event: Event,
    pub offset: u64,
}

/// A keyed command's outcome, by (user, key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyedOutcome {
    user: Uuid,
    key: String,
    fingerprint: String,
    accepted: AcceptedCommand,
}

/// What a retry's lookup found.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyLookup {
    /// No remembered outcome: decide the command.
    Unknown,
    /// The same request took effect: answer with this.
    Replay(Box<AcceptedCommand>),
    /// The key took effect for a different request.
    Reused,
}

/// The newest keyed outcomes, oldest first, bounded by
/// [`MAX_REMEMBERED_KEYS`]. Folded from the log like everything else, so
/// every instance (and every restart) remembers the same keys.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(from = "Vec<KeyedOutcome>", into = "Vec<KeyedOutcome>")]
struct KeyIndex {
    by_key: HashMap<(Uuid, String), KeyedOutcome>,
    order: VecDeque<(Uuid, String)>,
}

impl KeyIndex {
    fn remember(&mut self, outcome: KeyedOutcome) {
        let id = (outcome.user, outcome.key.clone());
        // A second accepted event with the same key (a key reused after its
        // first outcome was forgotten) replaces the first.
        if self.by_key.insert(id.clone(), outcome).is_some() {
            self.order.retain(|known| *known != id);
        }
        self.order.push_back(id);
        while self.order.len() > MAX_REMEMBERED_KEYS {
            if let Some(oldest) = self.order.pop_front() {
                self.by_key.remove(&oldest);
            }
        }
    }

    fn lookup(&self, user: Uuid, key: &str, fingerprint: &str, now: DateTime<Utc>) -> KeyLookup {
        match self.by_key.get(&(user, key.to_owned())) {
            Some(known) if now - known.accepted.event.timestamp > KEY_MAX_AGE => KeyLookup::Unknown,
            Some(known) if known.fingerprint == fingerprint => {
                KeyLookup::Replay(Box::new(known.accepted.clone()))
            }
            Some(_) => KeyLookup::Reused,
            None => KeyLookup::Unknown,
        }
    }
}

impl From<Vec<KeyedOutcome>> for KeyIndex {
    fn from(outcomes: Vec<KeyedOutcome>) -> Self {
        let mut index = KeyIndex::default();
        for outcome in outcomes {
            index.remember(outcome);
        }
        index
    }
}

impl From<KeyIndex> for Vec<KeyedOutcome> {
    fn from(mut index: KeyIndex) -> Self {
        index
            .order
            .into_iter()
            .filter_map(|id| index.by_key.remove(&id))
            .collect()
    }
}

/// The offsets of the most recent accepted events, by event id: a command
/// learns where its event was accepted (a copy it re-sent may have landed
/// later, and another instance's identical copy earlier), and the gateway
/// sends the accepted copy only.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(from = "Vec<(Uuid, u64)>", into = "Vec<(Uuid, u64)>")]
struct AcceptedOffsets {
    by_event: HashMap<Uuid, u64>,
    order: VecDeque<Uuid>,
}

impl AcceptedOffsets {
    fn record(&mut self, event_id: Uuid, offset: u64) {
        if self.by_event.insert(event_id, offset).is_none() {
            self.order.push_back(event_id);
        }
        while self.order.len() > REMEMBERED_ACCEPTED_EVENTS {
            if let Some(oldest) = self.order.pop_front() {
                self.by_event.remove(&oldest);
            }
        }
    }
}

impl From<Vec<(Uuid, u64)>> for AcceptedOffsets {
    fn from(entries: Vec<(Uuid, u64)>) -> Self {
        let mut offsets = AcceptedOffsets::default();
        for (event_id, offset) in entries {
            offsets.record(event_id, offset);
        }
        offsets
    }
}

impl From<AcceptedOffsets> for Vec<(Uuid, u64)> {
    fn from(offsets: AcceptedOffsets) -> Self {
        offsets
            .order
            .into_iter()
            .filter_map(|id| Some((id, *offsets.by_event.get(&id)?)))
            .collect()
    }
}

#[derive(Default)]
struct FoldState {
    /// Everything that decides and reports, and which is saved in a
    /// snapshot.
    folded: Folded,
    events_since_snapshot: u64,
    /// Why the model could not follow the log last time, if it could not.
    problem: Option<String>,
}

/// The part of the state a snapshot holds.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Folded {
    fold: IncidentFold,
    /// The next offset of `incident-events` to fold.
    next_offset: u64,
    /// The offset of each incident's latest accepted event (for the
    /// `Event-Offset` of a command that changed nothing).
    last_offsets: HashMap<Uuid, u64>,
    accepted_offsets: AcceptedOffsets,
    keys: KeyIndex,
}

impl Folded {
    fn apply(&mut self, offset: u64, event: &Event) {
        if self.fold.apply(event) != FoldOutcome::Applied {
            return;
        }
        let Some(id) = incident_of(&event.payload) else {
            return;
        };
        self.last_offsets.insert(id, offset);
        self.accepted_offsets.record(event.event_id, offset);
        if let (Some(record), Some(user), Some(incident)) =
            (&event.idempotency, event.user_id, self.fold.get(id))
        {
            self.keys.remember(KeyedOutcome {
                user,
                key: record.key.clone(),
                fingerprint: record.fingerprint.clone(),
                accepted: AcceptedCommand {
                    incident: incident.clone(),
                    event: event.clone(),
                    offset,
                },
            });
        }
    }
}

/// An incident event as read at an offset: what
/// [`WriteModel::accepted_copies`] is asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventAt {
    pub incident: Uuid,
    pub claim: Claim,
    pub event_id: Uuid,
    pub offset: u64,
}

/// A snapshot as stored: the fold and the log it was folded from.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Snapshot {
    log_id: LogId,
    #[serde(flatten)]
    folded: Folded,
}

/// How a start-up went, for logs and the benchmark.
#[derive(Debug, Clone, Copy)]
pub struct StartupReport {
    pub snapshot_offset: Option<u64>,
    pub events_replayed: u64,
    pub incidents: usize,
    pub took: Duration,
}

/// What `/health` says about the write model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteModelHealth {
    pub next_offset: u64,
    pub problem: Option<String>,
}

impl WriteModel {
    pub fn new(log: EventLog, pool: PgPool) -> Self {
        WriteModel {
            log,
            pool,
            state: RwLock::default(),
            reading: Mutex::new(()),
            log_end: LogEndFlight::default(),
            snapshot_due: Notify::new(),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, FoldState> {
        self.state
            .read()
            .expect("the fold's lock is never poisoned")
    }

    fn write(&self) -> RwLockWriteGuard<'_, FoldState> {
        self.state
            .write()
            .expect("the fold's lock is never poisoned")
    }

    /// Loads the latest snapshot (when `use_snapshot`) and folds every
    /// event after it. A snapshot of another log, or beyond this log's end,
    /// is ignored: the model is only a cache of the log.
    pub async fn rebuild(&self, use_snapshot: bool) -> Result<StartupReport, LogError> {
        let started = Instant::now();
        let end = self.log.log_end(Topic::IncidentEvents).await?;
        let log_id = self.log.log_id().await?;
        let mut snapshot_offset = None;
        if use_snapshot {
            match self.load_snapshot().await {
                Ok(Some(snapshot)) if snapshot.log_id != log_id => tracing::warn!(
                    snapshot_log = %snapshot.log_id,
                    %log_id,
                    "ignoring a write model snapshot of another log; folding this one from offset 0"
                ),
                Ok(Some(snapshot)) if snapshot.folded.next_offset > end => tracing::warn!(
                    next_offset = snapshot.folded.next_offset,
                    end,
                    "ignoring a snapshot beyond the log's end; folding from offset 0"
                ),
                Ok(Some(snapshot)) => {
                    snapshot_offset = Some(snapshot.folded.next_offset);
                    self.write().folded = snapshot.folded;
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%error, "could not load the write model snapshot; replaying all")
                }
            }
        }
        let events_replayed = self.catch_up_to(end).await?;
        let incidents = self.read().folded.fold.len();
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
        let end = self.log_end().await?;
        self.catch_up_to(end).await.map(|_| ())
    }

    /// The end of `incident-events` as asked after this call began, shared
    /// with everyone who calls while it is being asked.
    async fn log_end(&self) -> Result<u64, LogError> {
        let arrival = self.log_end.arrivals.fetch_add(1, Ordering::SeqCst) + 1;
        let mut last = self.log_end.last.lock().await;
        if let Some((answer, covers)) = &*last
            && *covers >= arrival
        {
            return answer.clone();
        }
        // Everyone who arrived until now waits behind this lock, or already
        // had their answer: this one call is after all of them.
        let covers = self.log_end.arrivals.load(Ordering::SeqCst);
        let answer = self.log.log_end(Topic::IncidentEvents).await;
        *last = Some((answer.clone(), covers));
        answer
    }

    /// Folds events until `next_offset` reaches `end`; returns how many
    /// this call folded (none when another call folded them first).
    pub async fn catch_up_to(&self, end: u64) -> Result<u64, LogError> {
        let mut folded = 0;
        loop {
            if self.read().folded.next_offset >= end {
                break;
            }
            let _reading = self.reading.lock().await;
            let from = self.read().folded.next_offset;
            if from >= end {
                break;
            }
            let page = self
                .log
                .read_page(Topic::IncidentEvents, from, READ_BATCH)
                .await?;
            if page.records.is_empty() && page.next_offset == from {
                // The log said it had more. Reporting success would make a
                // command think its event was lost; retrying will not help.
                let problem = LogError::Inconsistent {
                    backend: self.log.backend_name(),
                    reason: format!(
                        "incident-events reports its end at {end} but cannot be read beyond {from}"
                    ),
                };
                self.write().problem = Some(problem.to_string());
                return Err(problem);
            }
            // Decoded before the lock is taken: holding it is only applying.
            let events: Vec<(u64, Event)> = page
                .records
                .iter()
                .filter_map(|record| match Event::decode(&record.payload) {
                    Ok(event) => Some((record.offset, event)),
                    Err(error) => {
                        tracing::warn!(offset = record.offset, %error, "write model skips an undecodable event");
                        None
                    }
                })
                .collect();
            let snapshot_due = {
                let mut state = self.write();
                // A hole in the log (see `LogPage`) has no records: only
                // the offset moves.
                for (offset, event) in &events {
                    state.folded.apply(*offset, event);
                }
                state.folded.next_offset = page.next_offset;
                state.events_since_snapshot += page.records.len() as u64;
                state.events_since_snapshot >= SNAPSHOT_EVERY
            };
            folded += page.records.len() as u64;
            if snapshot_due {
                self.snapshot_due.notify_one();
            }
        }
        if self.read().problem.is_some() {
            self.write().problem = None;
        }
        Ok(folded)
    }

    /// A copy of one incident as currently folded.
    pub fn incident(&self, id: Uuid) -> Option<Incident> {
        self.read().folded.fold.get(id).cloned()
    }

    /// The offset of the incident's latest accepted event.
    pub fn last_offset_of(&self, id: Uuid) -> Option<u64> {
        self.read().folded.last_offsets.get(&id).copied()
    }

    /// Where the accepted copy of `event_id` is, if the version rule has
    /// accepted one (among the recent events this model remembers).
    pub fn accepted_offset(&self, event_id: Uuid) -> Option<u64> {
        self.read()
            .folded
            .accepted_offsets
            .by_event
            .get(&event_id)
            .copied()
    }

    /// For each record's event, whether the message at its offset is the
    /// accepted copy of the event — not a lost race, and not a second copy
    /// of an accepted event. One look at the fold for a whole batch (the
    /// gateway asks this of every page it sends); records beyond what has
    /// been folded are not accepted *yet*, so callers catch up first.
    pub fn accepted_copies(&self, events: &[EventAt]) -> Vec<bool> {
        let state = self.read();
        events
            .iter()
            .map(|at| {
                state
                    .folded
                    .fold
                    .was_accepted_as(at.incident, at.claim, at.event_id)
                    && state
                        .folded
                        .accepted_offsets
                        .by_event
                        .get(&at.event_id)
                        // Beyond what is remembered: the fold's word alone.
                        .is_none_or(|accepted| *accepted == at.offset)
            })
            .collect()
    }

    /// For each id, whether it is an incident (a deleted one included) as
    /// far as the fold has read: one look for the whole list.
    pub fn known_incidents(&self, ids: &[Uuid]) -> Vec<bool> {
        let state = self.read();
        ids.iter()
            .map(|id| state.folded.fold.get(*id).is_some())
            .collect()
    }

    /// The next offset the fold will read: everything before it is folded.
    pub fn next_offset(&self) -> u64 {
        self.read().folded.next_offset
    }

    /// What became of the keyed command `(user, key)` with this request's
    /// `fingerprint`, as far as the events folded so far tell.
    pub fn lookup_key(
        &self,
        user: Uuid,
        key: &str,
        fingerprint: &str,
        now: DateTime<Utc>,
    ) -> KeyLookup {
        self.read().folded.keys.lookup(user, key, fingerprint, now)
    }

    /// A copy of the whole fold (tests compare it with other readers').
    pub fn fold(&self) -> IncidentFold {
        self.read().folded.fold.clone()
    }

    pub fn health(&self) -> WriteModelHealth {
        let state = self.read();
        WriteModelHealth {
            next_offset: state.folded.next_offset,
            problem: state.problem.clone(),
        }
    }

    /// Keeps the model current with events appended by other instances,
    /// and takes a snapshot whenever one is due, until `shutdown`; then
    /// saves a last snapshot.
    pub async fn follow_log(&self, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            let known = self.next_offset();
            let end = tokio::select! {
                _ = shutdown.cancelled() => break,
                () = self.snapshot_due.notified() => {
                    self.snapshot_in_background_of_commands().await;
                    continue;
                }
                end = self.log.wait_for_new_events(Topic::IncidentEvents, known, Duration::from_secs(30)) => end,
            };
            if let Err(error) = self.catch_up_to(end).await {
                // An inconsistent log will not mend itself within a second:
                // say so once in a while instead of hammering it.
                let pause = match error {
                    LogError::Inconsistent { .. } => {
                        tracing::error!(%error, "write model cannot follow the log; retrying in 10s");
                        Duration::from_secs(10)
                    }
                    _ => {
                        tracing::warn!(%error, "write model could not follow the log; retrying in 1s");
                        Duration::from_secs(1)
                    }
                };
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
        if self.next_offset() > 0
            && let Err(error) = self.take_snapshot().await
        {
            tracing::warn!(%error, "could not save the write model snapshot at shutdown");
        }
    }

    async fn snapshot_in_background_of_commands(&self) {
        self.write().events_since_snapshot = 0;
        if let Err(error) = self.take_snapshot().await {
            tracing::warn!(%error, "could not save a write model snapshot");
        }
    }

    /// Saves the current state as the snapshot now. The copy is taken under
    /// the lock; serializing and saving it happen outside.
    pub async fn take_snapshot(&self) -> anyhow::Result<()> {
        let folded = self.read().folded.clone();
        self.save_snapshot(folded).await
    }

    async fn save_snapshot(&self, folded: Folded) -> anyhow::Result<()> {
        let next_offset = folded.next_offset;
        let snapshot = Snapshot {
            log_id: self.log.log_id().await?,
            folded,
        };
        // Serializing a large fold takes a while: not on a runtime thread
        // that commands are waiting for. Straight to JSON text, which
        // PostgreSQL parses into the JSONB column as it would any other:
        // a `serde_json::Value` in between cost an allocation per field of
        // every incident and every remembered key, and then had to be
        // written out as text all the same.
        let state = tokio::task::spawn_blocking(move || {
            serde_json::value::to_raw_value(&snapshot).map(sqlx::types::Json)
        })
        .await??;
        sqlx::query(
            "INSERT INTO write_model_snapshots (name, format, next_offset, state) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO UPDATE SET format = EXCLUDED.format, next_offset = EXCLUDED.next_offset,
                 state = EXCLUDED.state, taken_at = now()
             WHERE write_model_snapshots.next_offset <= EXCLUDED.next_offset
                OR write_model_snapshots.format <> EXCLUDED.format
                OR write_model_snapshots.state->>'logId' IS DISTINCT FROM EXCLUDED.state->>'logId'",
        )
        .bind(SNAPSHOT_NAME)
        .bind(SNAPSHOT_FORMAT)
        .bind(next_offset as i64)
        .bind(state)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn load_snapshot(&self) -> anyhow::Result<Option<Snapshot>> {
        let row: Option<(i64, serde_json::Value)> = sqlx::query_as(
            "SELECT next_offset, state FROM write_model_snapshots WHERE name = $1 AND format = $2",
        )
        .bind(SNAPSHOT_NAME)
        .bind(SNAPSHOT_FORMAT)
        .fetch_optional(&self.pool)
        .await?;
        let Some((next_offset, state)) = row else {
            return Ok(None);
        };
        let mut snapshot: Snapshot = serde_json::from_value(state)?;
        // The column is what the upsert compares; it is the offset the row
        // claims to reflect.
        snapshot.folded.next_offset = next_offset as u64;
        Ok(Some(snapshot))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(user: u128, key: &str, fingerprint: &str, at: DateTime<Utc>) -> KeyedOutcome {
        use crate::domain::{IncidentStatus, Location, Severity};
        use crate::events::{EventPayload, IncidentDeleted};
        let id = Uuid::from_u128(7);
        KeyedOutcome {
            user: Uuid::from_u128(user),
            key: key.into(),
            fingerprint: fingerprint.into(),
            accepted: AcceptedCommand {
                incident: Incident {
                    id,
                    title: "Troll".into(),
                    description: None,
                    severity: Severity::Low,
                    location: Location::Dungeons,
                    status: IncidentStatus::Open,
                    reported_by: Uuid::from_u128(user),
                    assigned_to: None,
                    resolved_by: None,
                    resolution: None,
                    created_at: at,
                    updated_at: at,
                    resolved_at: None,
                    version: 2,
                    deleted: true,
                },
                event: Event::at(
                    Uuid::from_u128(8),
                    at,
                    EventPayload::IncidentDeleted(IncidentDeleted {
                        id,
                        version: 2,
                        deleted_by: Uuid::from_u128(user),
                    }),
                    Some(Uuid::from_u128(user)),
                ),
                offset: 3,
            },
        }
    }

    #[test]
    fn a_key_is_remembered_per_user_and_refused_with_another_request() {
        let now = Utc::now();
        let mut index = KeyIndex::default();
        index.remember(outcome(1, "k", "sha256:a", now));
        assert!(matches!(
            index.lookup(Uuid::from_u128(1), "k", "sha256:a", now),
            KeyLookup::Replay(_)
        ));
        assert_eq!(
            index.lookup(Uuid::from_u128(1), "k", "sha256:b", now),
            KeyLookup::Reused
        );
        assert_eq!(
            index.lookup(Uuid::from_u128(2), "k", "sha256:a", now),
            KeyLookup::Unknown,
            "keys are per user"
        );
    }

    #[test]
    fn the_key_budget_forgets_by_age_and_by_count() {
        let now = Utc::now();
        let mut index = KeyIndex::default();
        index.remember(outcome(
            1,
            "old",
            "f",
            now - KEY_MAX_AGE - chrono::TimeDelta::seconds(1),
        ));
        assert_eq!(
            index.lookup(Uuid::from_u128(1), "old", "f", now),
            KeyLookup::Unknown
        );
        for n in 0..=MAX_REMEMBERED_KEYS {
            index.remember(outcome(1, &format!("k{n}"), "f", now));
        }
        assert_eq!(index.by_key.len(), MAX_REMEMBERED_KEYS);
        assert_eq!(
            index.lookup(Uuid::from_u128(1), "k0", "f", now),
            KeyLookup::Unknown,
            "the oldest key went first"
        );
        assert!(matches!(
            index.lookup(
                Uuid::from_u128(1),
                &format!("k{MAX_REMEMBERED_KEYS}"),
                "f",
                now
            ),
            KeyLookup::Replay(_)
        ));
    }

    #[test]
    fn the_key_index_survives_a_snapshot_round_trip_in_order() {
        let now = Utc::now();
        let mut index = KeyIndex::default();
        for key in ["a", "b", "c"] {
            index.remember(outcome(1, key, "f", now));
        }
        let json = serde_json::to_value(&index).unwrap();
        let back: KeyIndex = serde_json::from_value(json).unwrap();
        assert_eq!(back.order, index.order);
        assert_eq!(back.by_key, index.by_key);
    }
}
