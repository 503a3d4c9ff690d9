//! The log: an append-only, totally ordered sequence of messages per topic.
//!
//! This is the seed's model of Apache Iggy, reduced to what the service
//! needs. One stream, [`STREAM_NAME`]; three [`Topic`]s; one partition per
//! topic (so each topic is totally ordered); offsets from 0.
//!
//! [`EventLog`] is the one interface, with two backends:
//!
//! - [`iggy::IggyLog`]: Apache Iggy over TCP, the system of record in
//!   production (selected by `IGGY_URL`).
//! - [`postgres::PostgresLog`]: the same log kept in a PostgreSQL table,
//!   woken by LISTEN/NOTIFY, so the service and its tests run anywhere.
//!
//! Both pass the same conformance suite (`tests/api/log_conformance.rs`).
//!
//! The log stores bytes and message ids; it knows nothing about what the
//! bytes mean. Turning them into events is [`crate::events`]' job.

pub mod breaker;
pub mod iggy;
pub mod iggy_user;
pub mod postgres;
mod watch;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use uuid::Uuid;

pub use watch::LogEndWatch;

/// The Iggy stream that holds every topic of the service.
pub const STREAM_NAME: &str = "marauders-map";

/// The most messages one [`EventLog::read`] returns.
pub const MAX_READ_LIMIT: u32 = 10_000;

/// A topic of the stream. Events of one type always go to the same topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Everything that happens to incidents and their comments.
    IncidentEvents,
    /// Who is online and which incident rooms they are in.
    PresenceEvents,
    /// The audit trail of accounts: registrations, logins, refreshes.
    AuthEvents,
}

impl Topic {
    pub const ALL: [Topic; 3] = [
        Topic::IncidentEvents,
        Topic::PresenceEvents,
        Topic::AuthEvents,
    ];

    /// The topic's name on the log, e.g. `incident-events`.
    pub fn name(self) -> &'static str {
        match self {
            Topic::IncidentEvents => "incident-events",
            Topic::PresenceEvents => "presence-events",
            Topic::AuthEvents => "auth-events",
        }
    }

    fn index(self) -> usize {
        match self {
            Topic::IncidentEvents => 0,
            Topic::PresenceEvents => 1,
            Topic::AuthEvents => 2,
        }
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Topic {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Topic::ALL
            .into_iter()
            .find(|topic| topic.name() == name)
            .ok_or_else(|| {
                format!(
                    "unknown topic '{name}'; expected one of incident-events, presence-events, auth-events"
                )
            })
    }
}

/// In the OpenAPI document a topic is its name, one of [`Topic::ALL`].
impl utoipa::PartialSchema for Topic {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("A topic of the stream."))
            .enum_values(Some(Topic::ALL.map(Topic::name)))
            .into()
    }
}

impl utoipa::ToSchema for Topic {}

/// A message to append: an id (the event id) and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogMessage {
    pub id: Uuid,
    pub payload: Bytes,
}

/// A message read back from the log, with the offset the log gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub offset: u64,
    pub id: Uuid,
    pub payload: Bytes,
}

/// What one [`EventLog::read_page`] returns: the records, and where the
/// reader goes next.
///
/// `next_offset` is the last record's offset + 1, or `from_offset` when
/// nothing was read at the end of the log — except across a *hole*: offsets
/// the log has numbered but holds no message for. Iggy leaves one when it is
/// killed while an append is half written (the index survived, the message
/// did not; nobody was ever told that append succeeded). Reading from a hole
/// returns the records after it, and `next_offset` steps over a hole that
/// reaches the end of the log, so a cursor never waits at an offset that
/// will never be filled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPage {
    pub records: Vec<LogRecord>,
    pub next_offset: u64,
}

impl LogPage {
    /// A page of `records` read from `from_offset`, on a log without holes.
    pub fn contiguous(records: Vec<LogRecord>, from_offset: u64) -> LogPage {
        let next_offset = records
            .last()
            .map_or(from_offset, |record| record.offset + 1);
        LogPage {
            records,
            next_offset,
        }
    }
}

/// The name under which a consumer stores its offset, e.g. `read-model`.
/// 1–100 characters of `a-z`, `0-9`, `-`, `_` and `.`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConsumerName(String);

impl ConsumerName {
    pub fn parse(name: &str) -> Result<Self, LogError> {
        let valid_char =
            |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c);
        if name.is_empty() || name.len() > 100 || !name.chars().all(valid_char) {
            return Err(LogError::InvalidRequest(format!(
                "consumer name '{name}' must be 1-100 characters of a-z, 0-9, '-', '_' and '.'"
            )));
        }
        Ok(ConsumerName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConsumerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The identity of one log: created with it, stored in it, the same for
/// every instance that opens it, and kept when the log is copied to another
/// backend (`marauders-map log migrate`).
///
/// Offsets mean something only on the log they were read from. Whatever
/// keeps a position on the log — the write model's snapshot, each
/// projector's offset — records the log id beside it, so that a database
/// pointed at another log is noticed instead of silently serving state that
/// belongs elsewhere. Where it lives: the embedded log keeps it in
/// `event_log_identity` (created by its migration); Iggy in a topic of its
/// own, `log-identity`, whose first message holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct LogId(pub Uuid);

impl fmt::Display for LogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Why a log operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LogError {
    /// The backend cannot be reached or did not answer in time (the API
    /// answers 503).
    ///
    /// For reads this means nothing more. For an **append** it means the
    /// outcome is *unknown*: the batch may not have been appended, may have
    /// been appended with the acknowledgement lost, or may still land later
    /// — with Iggy a request that timed out keeps running in the SDK's own
    /// task and cannot be cancelled. A caller must find out from the log
    /// itself (and may re-send the *identical* messages, which readers then
    /// see as copies) rather than treat it as "not appended".
    #[error("the event log ({backend}) is unavailable: {reason}")]
    Unavailable {
        backend: &'static str,
        reason: String,
    },
    /// The request never reached the backend: no connection could be made
    /// (or the log is not ready yet), so for an append, certainly nothing
    /// was appended. (The API answers 503.)
    #[error("the event log ({backend}) cannot be reached: {reason}")]
    Unreachable {
        backend: &'static str,
        reason: String,
    },
    /// The log contradicts itself: it reports an end it cannot be read up
    /// to (a server that lost acknowledged messages, or a topic that was
    /// truncated). Retrying will not help; an operator must look.
    #[error("the event log ({backend}) is inconsistent: {reason}")]
    Inconsistent {
        backend: &'static str,
        reason: String,
    },
    /// The request itself is invalid (empty payload, zero limit, …).
    #[error("invalid log request: {0}")]
    InvalidRequest(String),
    /// The backend answered with an error that retrying will not fix.
    #[error("the event log ({backend}) failed: {reason}")]
    Failed {
        backend: &'static str,
        reason: String,
    },
}

impl LogError {
    /// Whether the backend could not be reached or did not answer (either
    /// way, a 503 for the caller): [`LogError::Unavailable`] or
    /// [`LogError::Unreachable`].
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            LogError::Unavailable { .. } | LogError::Unreachable { .. }
        )
    }
}

/// Which backend to open, and how.
#[derive(Debug, Clone)]
pub enum LogConfig {
    /// The embedded log, in the service's own PostgreSQL database.
    Postgres(sqlx::PgPool),
    /// Apache Iggy.
    Iggy(iggy::IggyConfig),
}

/// The log, whichever backend holds it. Cheap to clone: clones share the
/// connections and the wake-up machinery.
#[derive(Clone)]
pub enum EventLog {
    Postgres(postgres::PostgresLog),
    Iggy(iggy::IggyLog),
}

impl EventLog {
    /// Opens the configured backend. For Iggy this returns at once and
    /// connects in the background (see [`EventLog::wait_until_ready`]); until
    /// then operations fail with [`LogError::Unavailable`].
    pub async fn open(config: LogConfig) -> Result<EventLog, LogError> {
        Ok(match config {
            LogConfig::Postgres(pool) => {
                EventLog::Postgres(postgres::PostgresLog::open(pool).await?)
            }
            LogConfig::Iggy(config) => EventLog::Iggy(iggy::IggyLog::open(config)),
        })
    }

    /// `"postgres"` or `"iggy"`.
    pub fn backend_name(&self) -> &'static str {
        match self {
            EventLog::Postgres(_) => postgres::BACKEND,
            EventLog::Iggy(_) => iggy::BACKEND,
        }
    }

    /// The identity of this log (see [`LogId`]). Iggy's is read once the
    /// log is ready; until then this fails with [`LogError::Unavailable`].
    #[allow(clippy::unused_async)] // async like every other operation; Iggy may learn it late
    pub async fn log_id(&self) -> Result<LogId, LogError> {
        match self {
            EventLog::Postgres(log) => Ok(log.log_id()),
            EventLog::Iggy(log) => log.log_id(),
        }
    }

    /// The identity if already known, without waiting or failing: for
    /// checks that must not depend on the log being reachable right now.
    pub fn known_log_id(&self) -> Option<LogId> {
        match self {
            EventLog::Postgres(log) => Some(log.log_id()),
            EventLog::Iggy(log) => log.log_id().ok(),
        }
    }

    /// Waits until the backend is connected and the stream and topics exist.
    /// The log server's circuit breaker, when the log is a server of its
    /// own (Iggy). The embedded log is PostgreSQL, whose health is the
    /// database's (see `/health`).
    pub fn breaker(&self) -> Option<breaker::BreakerReport> {
        match self {
            EventLog::Iggy(log) => Some(log.breaker()),
            EventLog::Postgres(_) => None,
        }
    }

    pub async fn wait_until_ready(&self, max_wait: Duration) -> Result<(), LogError> {
        match self {
            EventLog::Postgres(_) => Ok(()),
            EventLog::Iggy(log) => log.wait_until_ready(max_wait).await,
        }
    }

    /// Appends `messages` to `topic`, in order, as one batch. Returns the
    /// offset each message got, in the same order — only once the backend has
    /// acknowledged (and, as configured, persisted) the whole batch.
    pub async fn append(
        &self,
        topic: Topic,
        messages: &[LogMessage],
    ) -> Result<Vec<u64>, LogError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        if messages.iter().any(|message| message.payload.is_empty()) {
            return Err(LogError::InvalidRequest(
                "a message payload cannot be empty".into(),
            ));
        }
        let offsets = match self {
            EventLog::Postgres(log) => log.append(topic, messages).await?,
            EventLog::Iggy(log) => log.append(topic, messages).await?,
        };
        if let Some(last) = offsets.last() {
            self.watch().advance(topic, last + 1);
        }
        Ok(offsets)
    }

    /// Reads up to `limit` messages with offset ≥ `from_offset`, in offset
    /// order. Past the end of the log the result is empty. A reader that
    /// keeps a position uses [`EventLog::read_page`] instead.
    pub async fn read(
        &self,
        topic: Topic,
        from_offset: u64,
        limit: u32,
    ) -> Result<Vec<LogRecord>, LogError> {
        Ok(self.read_page(topic, from_offset, limit).await?.records)
    }

    /// Like [`EventLog::read`], and says where to read next (see
    /// [`LogPage`]): the one way to walk the log that steps over holes.
    pub async fn read_page(
        &self,
        topic: Topic,
        from_offset: u64,
        limit: u32,
    ) -> Result<LogPage, LogError> {
        if limit == 0 || limit > MAX_READ_LIMIT {
            return Err(LogError::InvalidRequest(format!(
                "read limit must be between 1 and {MAX_READ_LIMIT}, got {limit}"
            )));
        }
        match self {
            EventLog::Postgres(log) => Ok(LogPage::contiguous(
                log.read(topic, from_offset, limit).await?,
                from_offset,
            )),
            EventLog::Iggy(log) => log.read_page(topic, from_offset, limit).await,
        }
    }

    /// The offset the next appended message will get: 0 for an empty topic,
    /// otherwise the last message's offset + 1.
    pub async fn log_end(&self, topic: Topic) -> Result<u64, LogError> {
        let end = match self {
            EventLog::Postgres(log) => log.log_end(topic).await?,
            EventLog::Iggy(log) => log.log_end(topic).await?,
        };
        self.watch().advance(topic, end);
        Ok(end)
    }

    /// Stores where `consumer` should resume reading `topic`: the offset of
    /// the next message it has not processed yet (after processing offsets 0,
    /// 1 and 2, store 3).
    pub async fn store_consumer_offset(
        &self,
        consumer: &ConsumerName,
        topic: Topic,
        next_offset: u64,
    ) -> Result<(), LogError> {
        match self {
            EventLog::Postgres(log) => {
                log.store_consumer_offset(consumer, topic, next_offset)
                    .await
            }
            EventLog::Iggy(log) => {
                log.store_consumer_offset(consumer, topic, next_offset)
                    .await
            }
        }
    }

    /// Where `consumer` resumes reading `topic`: the offset it last stored,
    /// or 0 if it never stored one.
    pub async fn load_consumer_offset(
        &self,
        consumer: &ConsumerName,
        topic: Topic,
    ) -> Result<u64, LogError> {
        match self {
            EventLog::Postgres(log) => log.load_consumer_offset(consumer, topic).await,
            EventLog::Iggy(log) => log.load_consumer_offset(consumer, topic).await,
        }
    }

    /// Waits until `topic`'s log end is beyond `known_end`, or `max_wait`
    /// passes, and returns the log end as last seen. Does not poll in a loop
    /// per caller: the PostgreSQL backend is woken by NOTIFY, the Iggy backend
    /// by one shared tailer (see [`iggy`]), and both by this process's own
    /// appends.
    pub async fn wait_for_new_events(
        &self,
        topic: Topic,
        known_end: u64,
        max_wait: Duration,
    ) -> u64 {
        self.watch().wait_beyond(topic, known_end, max_wait).await
    }

    fn watch(&self) -> &LogEndWatch {
        match self {
            EventLog::Postgres(log) => log.watch(),
            EventLog::Iggy(log) => log.watch(),
        }
    }

    /// Stops background tasks (listener, tailer) and closes connections.
    pub async fn shutdown(&self) {
        match self {
            EventLog::Postgres(log) => log.shutdown().await,
            EventLog::Iggy(log) => log.shutdown().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_have_the_seeds_names() {
        let names: Vec<&str> = Topic::ALL.iter().map(|t| t.name()).collect();
        assert_eq!(names, ["incident-events", "presence-events", "auth-events"]);
        assert_eq!("auth-events".parse::<Topic>(), Ok(Topic::AuthEvents));
        assert!("notification-events".parse::<Topic>().is_err());
    }

    #[test]
    fn consumer_names_are_restricted_to_a_safe_alphabet() {
        assert!(ConsumerName::parse("read-model").is_ok());
        assert!(ConsumerName::parse("").is_err());
        assert!(ConsumerName::parse("Read Model").is_err());
        assert!(ConsumerName::parse(&"x".repeat(101)).is_err());
    }
}
