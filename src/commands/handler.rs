//! Executing one command: the write path.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use chrono::{SubsecRound, Utc};
use tokio::sync::Mutex;
use uuid::Uuid;

use super::WriteModel;
use crate::events::Event;
use crate::incident::{Actor, Incident, IncidentCommand, Rejection, decide, incident_and_version};
use crate::log::{EventLog, LogError, Topic};

/// Commands on one incident run one at a time in this instance; this many
/// locks, picked by hashing the id, bound the memory that takes.
const LOCK_STRIPES: usize = 64;

pub struct CommandHandler {
    log: EventLog,
    write_model: Arc<WriteModel>,
    locks: Vec<Mutex<()>>,
}

/// What a command did.
#[derive(Debug, Clone)]
pub enum CommandOutcome {
    /// The event was appended at `offset` and accepted.
    Applied {
        incident: Incident,
        /// Boxed: an event is much larger than the other variant.
        event: Box<Event>,
        offset: u64,
    },
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
    #[error(transparent)]
    Log(#[from] LogError),
}

impl CommandHandler {
    pub fn new(log: EventLog, write_model: Arc<WriteModel>) -> Self {
        CommandHandler {
            log,
            write_model,
            locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }

    /// Serialize per incident → catch up with the log → decide → append →
    /// fold up to our event → answer only if our event is the one the fold
    /// accepted for its version.
    pub async fn execute(
        &self,
        incident_id: Uuid,
        command: IncidentCommand,
        actor: Actor,
    ) -> Result<CommandOutcome, CommandError> {
        let _turn = self.locks[stripe_of(incident_id)].lock().await;
        self.write_model.sync().await?;
        let current = self.write_model.incident(incident_id).await;
        let now = Utc::now().trunc_subsecs(6);
        let Some(payload) = decide(current.as_ref(), command, actor, now)? else {
            let incident = current.ok_or(Rejection::NotFound)?;
            let offset = self.write_model.last_offset_of(incident_id).await;
            return Ok(CommandOutcome::Unchanged { incident, offset });
        };
        let (_, version) = incident_and_version(&payload).expect("decide emits incident events");
        let event = Event::new(payload, Some(actor.user_id));
        let offsets = self
            .log
            .append(Topic::IncidentEvents, &[event.to_log_message()])
            .await?;
        let offset = offsets[0];
        self.write_model.catch_up_to(offset + 1).await?;
        if !self
            .write_model
            .was_accepted(incident_id, version, event.event_id)
            .await
        {
            return Err(CommandError::LostRace);
        }
        let incident = self
            .write_model
            .incident(incident_id)
            .await
            .ok_or(Rejection::NotFound)?;
        Ok(CommandOutcome::Applied {
            incident,
            event: Box::new(event),
            offset,
        })
    }
}

fn stripe_of(id: Uuid) -> usize {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut hasher);
    (hasher.finish() % LOCK_STRIPES as u64) as usize
}
