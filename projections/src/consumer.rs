//! A consumer of one topic that keeps its offset on the log
//! ([`EventLog::store_consumer_offset`]): at-least-once delivery to its
//! handler, in offset order, resuming where it stopped.
//!
//! The offset is stored after each batch is handled, so a crash in between
//! hands the end of that batch to the handler again on restart; handlers
//! make that harmless by ignoring an `eventId` they have seen.

use std::fmt::Display;
use std::time::Duration;

use marauders_core::events::Event;
use marauders_core::log::{ConsumerName, EventLog, LogError, Topic};
use tokio_util::sync::CancellationToken;

/// Reacts to events, one at a time, in offset order.
pub trait EventHandler: Send {
    /// Why an event could not be handled; the consumer stops before it and
    /// retries it on the next step.
    type Error: Display + Send;

    fn handle(
        &mut self,
        offset: u64,
        event: &Event,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// What one [`LogConsumer::poll_once`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollOutcome {
    /// Read a batch: `handled` events went to the handler, `skipped` could
    /// not be decoded and were logged and passed over.
    Advanced {
        handled: usize,
        skipped: usize,
        next_offset: u64,
    },
    /// Nothing at `next_offset` yet.
    CaughtUp { next_offset: u64 },
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError<E: Display> {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("the handler failed at offset {offset}: {error}")]
    Handler { offset: u64, error: E },
}

pub struct LogConsumer {
    log: EventLog,
    name: ConsumerName,
    topic: Topic,
    batch_size: u32,
    /// Where the next step reads from; loaded from the log on the first step.
    next_offset: Option<u64>,
}

impl LogConsumer {
    pub fn new(log: EventLog, name: ConsumerName, topic: Topic) -> Self {
        LogConsumer {
            log,
            name,
            topic,
            batch_size: 100,
            next_offset: None,
        }
    }

    pub fn with_batch_size(mut self, batch_size: u32) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// Starts from `offset` instead of the stored offset (0 = replay all).
    pub fn starting_at(mut self, offset: u64) -> Self {
        self.next_offset = Some(offset);
        self
    }

    /// One step: read a batch from the current offset, hand each event to
    /// `handler`, store the offset after the last one.
    pub async fn poll_once<H: EventHandler>(
        &mut self,
        handler: &mut H,
    ) -> Result<PollOutcome, ConsumerError<H::Error>> {
        let from = match self.next_offset {
            Some(offset) => offset,
            None => {
                self.log
                    .load_consumer_offset(&self.name, self.topic)
                    .await?
            }
        };
        self.next_offset = Some(from);
        let page = self
            .log
            .read_page(self.topic, from, self.batch_size)
            .await?;
        if page.next_offset == from {
            return Ok(PollOutcome::CaughtUp { next_offset: from });
        }
        let (mut handled, mut skipped, mut next_offset) = (0, 0, from);
        for record in &page.records {
            match Event::decode(&record.payload) {
                Ok(event) => {
                    tracing::debug!(consumer = %self.name, topic = %self.topic, offset = record.offset,
                        event_type = %event.event_type(), "handling event");
                    if let Err(error) = handler.handle(record.offset, &event).await {
                        // Keep what was done; retry this event next time.
                        self.commit(next_offset).await?;
                        return Err(ConsumerError::Handler {
                            offset: record.offset,
                            error,
                        });
                    }
                    handled += 1;
                }
                Err(error) => {
                    tracing::warn!(consumer = %self.name, topic = %self.topic, offset = record.offset,
                        %error, "skipping a message that is not a valid event");
                    skipped += 1;
                }
            }
            next_offset = record.offset + 1;
        }
        // Past the last record, or past a hole that has none.
        let next_offset = page.next_offset;
        self.commit(next_offset).await?;
        Ok(PollOutcome::Advanced {
            handled,
            skipped,
            next_offset,
        })
    }

    /// Steps until `shutdown` fires: straight on while there is a backlog,
    /// asleep until the log grows when caught up, retrying after a second
    /// when the log or the handler fails. A batch in progress is finished
    /// and its offset stored before it returns.
    pub async fn run<H: EventHandler>(mut self, handler: &mut H, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            match self.poll_once(handler).await {
                Ok(PollOutcome::Advanced { .. }) => {}
                Ok(PollOutcome::CaughtUp { next_offset }) => {
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = self.log.wait_for_new_events(self.topic, next_offset, Duration::from_secs(30)) => {}
                    }
                }
                Err(error) => {
                    tracing::warn!(consumer = %self.name, topic = %self.topic, %error, "consumer step failed; retrying in 1s");
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
        tracing::info!(consumer = %self.name, topic = %self.topic, next_offset = ?self.next_offset, "consumer stopped");
    }

    async fn commit(&mut self, next_offset: u64) -> Result<(), LogError> {
        self.log
            .store_consumer_offset(&self.name, self.topic, next_offset)
            .await?;
        self.next_offset = Some(next_offset);
        Ok(())
    }
}
