//! Group commit: the events of every command decided while an append is in
//! flight go to the log together, in one append — one round trip and, with
//! fsync on every append, one fsync — instead of one each.
//!
//! A command hands its event to [`GroupCommit::append`] and gets back the
//! offset its message landed at, exactly as from [`EventLog::append`]; what
//! the command does next (read the event back, learn whether the version
//! rule accepted it, re-send it while the outcome is unknown) does not
//! change. A batch fails or succeeds as one: every command in it gets the
//! same error, and treats it as its own.
//!
//! Batches never hold two events of one incident: the command handler
//! decides a command only once the previous command on its incident is
//! confirmed, so each incident has at most one event in flight.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

use super::Faults;
use crate::log::{EventLog, LogError, LogMessage, Topic};

/// The most messages one append carries: a bound on the request size, far
/// above what one round trip's worth of waiting commands adds up to.
pub const MAX_BATCH: usize = 512;

/// A message waiting for the next append, and who to tell where it landed.
struct Pending {
    message: LogMessage,
    landed: oneshot::Sender<Result<u64, LogError>>,
}

/// The appender of `incident-events`: a task that appends whatever has
/// queued up while the previous append was in flight.
#[derive(Clone)]
pub struct GroupCommit {
    queue: mpsc::UnboundedSender<Pending>,
    backend: &'static str,
    counters: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    appends: AtomicU64,
    events: AtomicU64,
    queued: AtomicU64,
}

/// How many appends were made and how many events they carried in all
/// (their ratio is the mean batch size), and how many events wait for the
/// next append (`/metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCommitStats {
    pub appends: u64,
    pub events: u64,
    pub queued: u64,
}

impl GroupCommit {
    /// Starts the appender task; it ends when the last handle is dropped,
    /// after appending what was queued.
    pub fn start(log: EventLog, faults: Arc<Faults>) -> GroupCommit {
        let (queue, pending) = mpsc::unbounded_channel();
        let backend = log.backend_name();
        let counters = Arc::new(Counters::default());
        tokio::spawn(append_batches(log, pending, counters.clone(), faults));
        GroupCommit {
            queue,
            backend,
            counters,
        }
    }

    pub fn stats(&self) -> GroupCommitStats {
        GroupCommitStats {
            appends: self.counters.appends.load(Ordering::Relaxed),
            events: self.counters.events.load(Ordering::Relaxed),
            queued: self.counters.queued.load(Ordering::Relaxed),
        }
    }

    /// Appends `message` with whatever else is waiting, and returns its
    /// offset. Dropping the future does not take the message back: once
    /// handed over it may still be appended, like a send that timed out.
    pub async fn append(&self, message: LogMessage) -> Result<u64, LogError> {
        let (landed, offset) = oneshot::channel();
        let gone = || LogError::Unavailable {
            backend: self.backend,
            reason: "the appender stopped (the service is shutting down)".into(),
        };
        self.counters.queued.fetch_add(1, Ordering::Relaxed);
        if self.queue.send(Pending { message, landed }).is_err() {
            self.counters.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(gone());
        }
        offset.await.map_err(|_| gone())?
    }
}

/// The appender's loop: one step per batch.
async fn append_batches(
    log: EventLog,
    mut pending: mpsc::UnboundedReceiver<Pending>,
    counters: Arc<Counters>,
    faults: Arc<Faults>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while pending.recv_many(&mut batch, MAX_BATCH).await > 0 {
        if faults.appends_held() {
            faults.wait_while_appends_held().await;
            // Whatever was decided while this batch was held goes with it.
            while batch.len() < MAX_BATCH
                && let Ok(next) = pending.try_recv()
            {
                batch.push(next);
            }
        }
        counters
            .queued
            .fetch_sub(batch.len() as u64, Ordering::Relaxed);
        counters.appends.fetch_add(1, Ordering::Relaxed);
        counters
            .events
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        append_batch(&log, std::mem::take(&mut batch)).await;
    }
}

/// Appends one batch and tells each command where its message landed.
async fn append_batch(log: &EventLog, batch: Vec<Pending>) {
    let (messages, waiting): (Vec<LogMessage>, Vec<_>) = batch
        .into_iter()
        .map(|pending| (pending.message, pending.landed))
        .unzip();
    match log.append(Topic::IncidentEvents, &messages).await {
        Ok(offsets) => {
            for (landed, offset) in waiting.into_iter().zip(offsets) {
                // A command that gave up waiting learns from the log instead.
                let _ = landed.send(Ok(offset));
            }
        }
        Err(error) => {
            for landed in waiting {
                let _ = landed.send(Err(error.clone()));
            }
        }
    }
}
