//! Executing one command: the write path.
//!
//! Serialize per incident → catch up with the log → (with a key: answer a
//! retry from its first outcome) → decide → append → confirm from the log
//! that our event is the one the version rule accepted. An append whose
//! answer was lost is not a failure but an *unknown*: the identical event is
//! re-sent until the log shows what became of it, within the command's
//! deadline.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use chrono::{SubsecRound, Utc};
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, Notify};
use tokio::time::Instant;
use uuid::Uuid;

use super::WriteModel;
use super::faults::Faults;
use super::group_commit::GroupCommit;
use super::write_model::{AcceptedCommand, KeyLookup};
use crate::events::{Event, IdempotencyRecord};
use crate::idempotency::{IdempotencyKey, derived_event_id};
use crate::incident::{
    Actor, Claim, Incident, IncidentCommand, Rejection, decide, evolve, incident_and_claim,
};
use crate::log::{EventLog, LogError};

/// Commands on one incident run one at a time in this instance — so an
/// incident has at most one event in flight, and a command is decided only
/// on confirmed state. This many locks, picked by hashing the id, bound the
/// memory that takes; with this many, two of 64 concurrent commands on
/// different incidents share a lock about once in 130 batches.
const LOCK_STRIPES: usize = 4096;

/// How long a command may take, waiting for its turn, the log and the
/// confirmation included, unless configured otherwise.
pub const DEFAULT_COMMAND_DEADLINE: Duration = Duration::from_secs(5);

/// The first pause before asking the log again about an append whose
/// answer was lost; doubled up to [`MAX_CONFIRM_PAUSE`].
const FIRST_CONFIRM_PAUSE: Duration = Duration::from_millis(20);
const MAX_CONFIRM_PAUSE: Duration = Duration::from_millis(500);

pub struct CommandHandler {
    log: EventLog,
    group_commit: GroupCommit,
    write_model: Arc<WriteModel>,
    locks: Vec<Mutex<()>>,
    deadline: Duration,
    /// Keyed commands being executed in this instance, so a duplicate waits
    /// for the first's outcome instead of racing it.
    in_flight: std::sync::Mutex<HashMap<(Uuid, IdempotencyKey), Arc<Notify>>>,
    /// Commands waiting for the command before them on their incident to
    /// be confirmed (`/metrics`).
    waiting_for_incident: std::sync::atomic::AtomicU64,
    faults: Arc<Faults>,
}

/// One command as the HTTP edge parsed it.
#[derive(Debug, Clone)]
pub struct CommandRequest {
    pub incident_id: Uuid,
    pub command: IncidentCommand,
    pub actor: Actor,
    /// The client's `Idempotency-Key`, if it sent one; then every id the
    /// command creates was derived from it.
    pub key: Option<IdempotencyKey>,
}

/// What a command did.
#[derive(Debug, Clone)]
pub enum CommandOutcome {
    /// The event was accepted at `offset` (now, or — for a retry with the
    /// same key — when the first attempt took effect).
    Applied(Box<AcceptedCommand>),
    /// Nothing to change; `offset` is the incident's latest event.
    Unchanged {
        incident: Incident,
        offset: Option<u64>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// Another command on the same incident (perhaps on another instance)
    /// reached the log first; ours was appended but voided by the fold.
    #[error("the incident was changed by another request at the same moment; reload and retry")]
    LostRace,
    /// The key already took effect for a different request.
    #[error(
        "this Idempotency-Key was already used for a different request; use a new key for a new request"
    )]
    KeyReused,
    /// A request with the same key is still being executed here.
    #[error(
        "a request with this Idempotency-Key is still being processed; retry it with the same key"
    )]
    KeyInFlight,
    /// The event was (perhaps) appended, but the log could not confirm it
    /// before the deadline. Retrying with the same key is safe.
    #[error("the command's outcome could not be confirmed in time: {reason}")]
    Unconfirmed { reason: String },
    #[error(transparent)]
    Log(#[from] LogError),
}

/// What the log says about an event we appended (or tried to).
enum Confirmation {
    /// Accepted, at this offset.
    Accepted(u64),
    /// Another event took its version: it can never be accepted.
    Lost,
    /// Not on the log as far as it can be read yet.
    NotYet,
}

impl CommandHandler {
    pub fn new(log: EventLog, write_model: Arc<WriteModel>) -> Self {
        let faults = Arc::<Faults>::default();
        CommandHandler {
            group_commit: GroupCommit::start(log.clone(), faults.clone()),
            log,
            write_model,
            locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            deadline: DEFAULT_COMMAND_DEADLINE,
            in_flight: std::sync::Mutex::default(),
            waiting_for_incident: std::sync::atomic::AtomicU64::new(0),
            faults,
        }
    }

    /// How long one command may take in all.
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// The fault hooks (tests arm them; nothing else does).
    pub fn faults(&self) -> Arc<Faults> {
        self.faults.clone()
    }

    pub async fn execute(&self, request: CommandRequest) -> Result<CommandOutcome, CommandError> {
        let deadline = Instant::now() + self.deadline;
        let _claim = match &request.key {
            Some(key) => Some(self.claim_key(request.actor.user_id, key, deadline).await?),
            None => None,
        };
        let _turn = self.turn_on(request.incident_id, deadline).await?;
        self.in_time(
            deadline,
            "catching up with the log",
            self.write_model.sync(),
        )
        .await??;
        // One clock per command: the time `decide` sees is the event's.
        let now = Utc::now().trunc_subsecs(6);
        let fingerprint = request
            .key
            .as_ref()
            .map(|_| fingerprint(request.incident_id, &request.command));
        if let (Some(key), Some(fingerprint)) = (&request.key, &fingerprint) {
            match self
                .write_model
                .lookup_key(request.actor.user_id, key.as_str(), fingerprint, now)
            {
                KeyLookup::Replay(accepted) => return Ok(CommandOutcome::Applied(accepted)),
                KeyLookup::Reused => return Err(CommandError::KeyReused),
                KeyLookup::Unknown => {}
            }
        }
        let current = self.write_model.incident(request.incident_id);
        let Some(payload) = decide(current.as_ref(), request.command, request.actor, now)? else {
            let incident = current.ok_or(Rejection::NotFound)?;
            let offset = self.write_model.last_offset_of(request.incident_id);
            return Ok(CommandOutcome::Unchanged { incident, offset });
        };
        let (incident_id, claim) =
            incident_and_claim(&payload).expect("decide emits incident events");
        let event_id = match &request.key {
            Some(key) => derived_event_id(request.actor.user_id, key, incident_id, claim),
            None => Uuid::now_v7(),
        };
        let mut event = Event::at(event_id, now, payload, Some(request.actor.user_id));
        if let (Some(key), Some(fingerprint)) = (request.key, fingerprint) {
            event = event.with_idempotency(IdempotencyRecord {
                key: key.to_string(),
                fingerprint,
            });
        }
        // Accepted at `version` means it applied to exactly `current`.
        let incident = evolve(current, &event.payload, event.timestamp)
            .expect("an accepted incident event leaves an incident");
        let offset = self
            .append_until_confirmed(&event, incident_id, claim, deadline)
            .await?;
        Ok(CommandOutcome::Applied(Box::new(AcceptedCommand {
            incident,
            event,
            offset,
        })))
    }

    /// Appends `event` and finds out from the log whether the version rule
    /// accepted it. An append whose answer is lost (timeout, connection
    /// error, failed read-back) may still have landed — or may land later —
    /// so it is never reported as a failure: the log is asked, and the
    /// *identical* event re-sent while it is not there. Copies are voided by
    /// every reader, so at most one counts.
    async fn append_until_confirmed(
        &self,
        event: &Event,
        incident: Uuid,
        claim: Claim,
        deadline: Instant,
    ) -> Result<u64, CommandError> {
        let message = event.to_log_message();
        let mut pause = FIRST_CONFIRM_PAUSE;
        // Once an append is acknowledged, the event is on the log: what is
        // left is to learn whether it was accepted, never to send it again.
        let mut acknowledged = false;
        // Whether some attempt may have reached the log: until one has, a
        // failure to reach it is a definite "nothing appended".
        let mut maybe_sent = false;
        loop {
            // Why the outcome is not known yet, for the 503 if it stays so.
            let mut last_problem = String::new();
            if !acknowledged && Instant::now() >= deadline {
                // Never a first send after the deadline: the caller has been
                // told 503 (or soon will be) and may be retrying already.
                return Err(if maybe_sent {
                    CommandError::Unconfirmed {
                        reason: "the deadline passed before the log confirmed the append".into(),
                    }
                } else {
                    LogError::Unavailable {
                        backend: self.log.backend_name(),
                        reason: "the deadline passed before the event could be appended".into(),
                    }
                    .into()
                });
            }
            if !acknowledged {
                let appended =
                    tokio::time::timeout_at(deadline, self.group_commit.append(message.clone()))
                        .await;
                match appended {
                    Ok(Ok(_)) if self.faults.take_lost_answer() => {
                        maybe_sent = true;
                        last_problem = "the append's answer was lost (injected fault)".into();
                    }
                    Ok(Ok(offset)) => {
                        acknowledged = true;
                        let caught_up = self.in_time(
                            deadline,
                            "folding the appended event",
                            self.write_model.catch_up_to(offset + 1),
                        );
                        match caught_up.await.flatten() {
                            // Folded past our own copy: if it is not
                            // accepted, its version was taken.
                            Ok(_) => {
                                return match self.confirmation(event, incident, claim) {
                                    Confirmation::Accepted(offset) => Ok(offset),
                                    Confirmation::Lost | Confirmation::NotYet => {
                                        Err(CommandError::LostRace)
                                    }
                                };
                            }
                            Err(error) => last_problem = error.to_string(),
                        }
                    }
                    Ok(Err(LogError::Unavailable { reason, .. })) => {
                        maybe_sent = true;
                        last_problem = reason;
                    }
                    Ok(Err(error @ LogError::Unreachable { .. })) if !maybe_sent => {
                        return Err(error.into());
                    }
                    Ok(Err(LogError::Unreachable { reason, .. })) => last_problem = reason,
                    Ok(Err(other)) => return Err(other.into()),
                    Err(_) => {
                        maybe_sent = true;
                        last_problem = "the append did not answer before the deadline".into();
                    }
                }
            }
            // The outcome is unknown: ask the log, once it can be read.
            let synced = self.in_time(
                deadline,
                "catching up with the log",
                self.write_model.sync(),
            );
            match synced.await.flatten() {
                Ok(()) => match self.confirmation(event, incident, claim) {
                    Confirmation::Accepted(offset) => return Ok(offset),
                    Confirmation::Lost => return Err(CommandError::LostRace),
                    Confirmation::NotYet if acknowledged => {
                        last_problem =
                            "the log acknowledged the event but does not show it yet".into();
                    }
                    Confirmation::NotYet => {}
                },
                Err(error) => last_problem = error.to_string(),
            }
            if Instant::now() + pause >= deadline {
                return Err(CommandError::Unconfirmed {
                    reason: last_problem,
                });
            }
            tracing::debug!(event_id = %event.event_id, problem = %last_problem, acknowledged, "the command's event is not confirmed yet");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_CONFIRM_PAUSE);
        }
    }

    /// The incident's turn: held from before the command is decided until
    /// its event is confirmed (or it gives up), so a command is decided on
    /// confirmed state only and an incident never has two events in flight.
    async fn turn_on(
        &self,
        incident: Uuid,
        deadline: Instant,
    ) -> Result<tokio::sync::MutexGuard<'_, ()>, LogError> {
        let lock = &self.locks[stripe_of(incident)];
        if let Ok(turn) = lock.try_lock() {
            return Ok(turn);
        }
        use std::sync::atomic::Ordering::SeqCst;
        self.waiting_for_incident.fetch_add(1, SeqCst);
        let turn = tokio::time::timeout_at(deadline, lock.lock()).await;
        self.waiting_for_incident.fetch_sub(1, SeqCst);
        turn.map_err(|_| LogError::Unavailable {
            backend: self.log.backend_name(),
            reason: "the incident's previous commands did not finish in time".into(),
        })
    }

    /// Commands now waiting for their incident's previous command.
    pub fn waiting_for_incident(&self) -> u64 {
        self.waiting_for_incident
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How many appends group commit made, and how many events they held.
    pub fn group_commit_stats(&self) -> super::group_commit::GroupCommitStats {
        self.group_commit.stats()
    }

    /// `work`, unless `deadline` passes first: the write model's lock, or
    /// the log it reads, may be held up by a dependency that stopped
    /// answering, and a command waits for nothing past its deadline.
    async fn in_time<T>(
        &self,
        deadline: Instant,
        what: &str,
        work: impl Future<Output = T>,
    ) -> Result<T, LogError> {
        tokio::time::timeout_at(deadline, work)
            .await
            .map_err(|_| LogError::Unavailable {
                backend: self.log.backend_name(),
                reason: format!("{what} did not finish before the command's deadline"),
            })
    }

    fn confirmation(&self, event: &Event, incident: Uuid, claim: Claim) -> Confirmation {
        if let Some(offset) = self.write_model.accepted_offset(event.event_id) {
            return Confirmation::Accepted(offset);
        }
        // Whether it can never be accepted any more: its version is taken,
        // or (a commuting comment) its incident was deleted before it.
        let lost = self
            .write_model
            .incident(incident)
            .is_some_and(|current| match claim {
                Claim::Version(version) => current.version >= version,
                Claim::Commutes => current.deleted,
            });
        if lost {
            Confirmation::Lost
        } else {
            Confirmation::NotYet
        }
    }

    /// Registers `(user, key)` as in flight here, first waiting for an
    /// earlier request with the same key to finish (its outcome is then
    /// found in the write model).
    async fn claim_key(
        &self,
        user: Uuid,
        key: &IdempotencyKey,
        deadline: Instant,
    ) -> Result<KeyClaim<'_>, CommandError> {
        let id = (user, key.clone());
        loop {
            let running = {
                let mut in_flight = self.in_flight.lock().expect("never poisoned");
                match in_flight.get(&id) {
                    Some(running) => running.clone(),
                    None => {
                        in_flight.insert(id.clone(), Arc::new(Notify::new()));
                        return Ok(KeyClaim { handler: self, id });
                    }
                }
            };
            let finished = running.notified();
            // The first may have finished between the check and now.
            if !self
                .in_flight
                .lock()
                .expect("never poisoned")
                .get(&id)
                .is_some_and(|current| Arc::ptr_eq(current, &running))
            {
                continue;
            }
            if tokio::time::timeout_at(deadline, finished).await.is_err() {
                return Err(CommandError::KeyInFlight);
            }
        }
    }
}

/// Removes its key from the in-flight table when the command ends, however
/// it ends, and wakes whoever waits for it.
struct KeyClaim<'a> {
    handler: &'a CommandHandler,
    id: (Uuid, IdempotencyKey),
}

impl Drop for KeyClaim<'_> {
    fn drop(&mut self) {
        let removed = self
            .handler
            .in_flight
            .lock()
            .expect("never poisoned")
            .remove(&self.id);
        if let Some(notify) = removed {
            notify.notify_waiters();
        }
    }
}

/// `sha256:<hex>` of the command and the incident it targets: what makes
/// two requests with one key "the same request". Fingerprints are kept on
/// the log, so these bytes must never change: the compact JSON object
/// `{"command":<IncidentCommand::canonical>,"incident":"<id>"}`, keys in
/// that (sorted) order. It is written straight into the hash, without a
/// JSON value or a string in between: this runs for every keyed command.
pub fn fingerprint(incident: Uuid, command: &IncidentCommand) -> String {
    /// Its fields in the order `serde_json::Map` sorts keys, as the
    /// fingerprint was first computed from a `json!` object.
    #[derive(serde::Serialize)]
    struct Fingerprinted {
        command: serde_json::Value,
        incident: Uuid,
    }
    let mut hasher = Sha256::new();
    let fingerprinted = Fingerprinted {
        command: command.canonical(),
        incident,
    };
    serde_json::to_writer(&mut hasher, &fingerprinted)
        .expect("a JSON value and an id serialize, and hashing cannot fail");
    const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut fingerprint = String::with_capacity("sha256:".len() + 64);
    fingerprint.push_str("sha256:");
    for byte in hasher.finalize() {
        fingerprint.push(char::from(HEX_DIGITS[usize::from(byte >> 4)]));
        fingerprint.push(char::from(HEX_DIGITS[usize::from(byte & 0x0f)]));
    }
    fingerprint
}

fn stripe_of(id: Uuid) -> usize {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut hasher);
    (hasher.finish() % LOCK_STRIPES as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Location, Severity};
    use crate::incident::{CommentBody, Description, IncidentTitle, Resolution};

    /// How fingerprints were first computed: the fingerprints already on
    /// the log were made this way, so the faster one must agree byte for
    /// byte.
    fn fingerprint_as_first_computed(incident: Uuid, command: &IncidentCommand) -> String {
        let canonical = serde_json::json!({ "incident": incident, "command": command.canonical() });
        let digest = Sha256::digest(canonical.to_string().as_bytes());
        let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
        format!("sha256:{hex}")
    }

    #[test]
    fn fingerprints_are_the_bytes_already_on_the_log() {
        let incident = Uuid::parse_str("01a2325a-30e3-7184-9d12-077512f14f3c").unwrap();
        let commands = [
            IncidentCommand::Report {
                id: incident,
                title: IncidentTitle::parse("Troll in the \"dungeon\"").unwrap(),
                description: Description::parse("Thought you ought to know…").unwrap(),
                severity: Severity::Critical,
                location: Location::GreatHall,
            },
            IncidentCommand::AddComment {
                comment_id: Uuid::from_u128(7),
                body: CommentBody::parse("Mischief managed").unwrap(),
            },
            IncidentCommand::Resolve {
                resolution: Resolution::parse("Knocked out with its own club").unwrap(),
            },
            IncidentCommand::ChangeSeverity {
                severity: Severity::Low,
            },
            IncidentCommand::Delete,
        ];
        for command in &commands {
            assert_eq!(
                fingerprint(incident, command),
                fingerprint_as_first_computed(incident, command),
                "{command:?}"
            );
        }
        // One pinned outright, so the reference above cannot drift with it.
        assert_eq!(
            fingerprint(incident, &IncidentCommand::Delete),
            "sha256:ba550b3892828b89d42fe7866a162d36dd8538caaf4dc7409d6453698f9b9f30"
        );
    }
}
