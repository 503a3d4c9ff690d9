//! The log in Apache Iggy: the system of record in production.
//!
//! Mapping: our stream is an Iggy stream (default `marauders-map`), each
//! [`Topic`] an Iggy topic with one partition (id 0), each [`LogMessage`] an
//! Iggy message whose id is the event's UUID. Consumer offsets are Iggy's own
//! consumer offsets.
//!
//! Four things Iggy does not do for us, and how this module does them:
//!
//! - **Offsets of an append.** `send_messages` acknowledges without saying
//!   where the messages landed, and another instance may append at the same
//!   moment. We read the partition back from the last log end we knew and
//!   find our message ids.
//! - **Never hang.** With the SDK's default unlimited reconnection a call
//!   blocks for as long as the server is down. We connect with
//!   `reconnection_retries=0`; every call has one deadline covering the wait
//!   for a connection, connecting and the request; one connect attempt at a
//!   time, shared by all who wait for it; a [`Breaker`] remembers a server
//!   found down so callers fail at once, and lets one probe through after a
//!   backoff. A call that ran out of time tears its connection down only if
//!   the connection fails a ping. Bulk reads, confirmations and the tailer
//!   have connections of their own, so a slow page never delays an append's
//!   confirmation.
//! - **Reading across a crash.** A `kill -9` mid-append leaves numbered
//!   offsets that cannot be read, and a poll that reaches one returns
//!   nothing. `read_page` shortens such a read, probes past the
//!   hole and remembers it (see [`LogPage`]).
//! - **Waking readers.** Iggy has no push. One tailer task per process asks
//!   the server for the log end of the topics somebody is waiting on, every
//!   `tail_interval` (5 ms by default), and advances the shared
//!   [`LogEndWatch`]; this process's own appends advance it at once.
//!
//! Durability is the server's business: run it with
//! `IGGY_SYSTEM_PARTITION_MESSAGES_REQUIRED_TO_SAVE=1` and
//! `IGGY_SYSTEM_PARTITION_ENFORCE_FSYNC=true` so an acknowledged append is on
//! disk (see ARCHITECTURE.md for the cost).

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use iggy::prelude::{
    Client, CompressionAlgorithm, Consumer, ConsumerOffsetClient, Identifier, IggyClient,
    IggyError, IggyExpiry, IggyMessage, MaxTopicSize, MessageClient, Partitioning, PollingStrategy,
    StreamClient, SystemClient, TopicClient,
};
use tokio::sync::{Mutex, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::breaker::{Breaker, BreakerReport, BreakerSettings, Epoch, ProbeInFlight};
use super::iggy_user::ROOT_USER_ID;
use super::{
    ConsumerName, LogEndWatch, LogError, LogId, LogMessage, LogPage, LogRecord, MAX_READ_LIMIT,
    STREAM_NAME, Topic,
};

pub const BACKEND: &str = "iggy";

/// The only partition of every topic.
const PARTITION: u32 = 0;

/// The topic beside the three event topics whose first message is the
/// log's identity, `{"logId": "<uuid>"}` (see [`LogId`]).
const IDENTITY_TOPIC: &str = "log-identity";

/// How to reach Iggy.
#[derive(Debug, Clone)]
pub struct IggyConfig {
    /// `iggy://user:password@host:port`, as in `IGGY_URL`. Credentials in
    /// the URL make the SDK log in on every (re)connect.
    pub url: String,
    /// The stream to use; [`STREAM_NAME`] except in tests, which use a
    /// fresh stream each so they can share one server.
    pub stream: String,
    /// The longest any single call to the server may take, all told:
    /// waiting for a connection, connecting, and the request.
    pub request_timeout: Duration,
    /// When calls fail at once after Iggy was found down, and for how long.
    pub breaker: BreakerSettings,
    /// How often the tailer asks for new messages while a reader waits.
    pub tail_interval: Duration,
    /// The identity to give the log if this process is the one that creates
    /// it; `None` makes a fresh one. `log migrate` passes the source log's,
    /// so the copy is the same log to everyone who kept offsets on it.
    pub identity_for_new_log: Option<LogId>,
    /// Refuse to use the log when logged in as Iggy's root user: the
    /// service sets it, so it only ever runs with a user of its own and the
    /// least permissions ([`super::iggy_user`]). Tools and examples that
    /// administer the server leave it off.
    pub refuse_root_user: bool,
}

impl IggyConfig {
    pub fn new(url: impl Into<String>) -> Self {
        IggyConfig {
            url: url.into(),
            stream: STREAM_NAME.to_owned(),
            request_timeout: Duration::from_secs(3),
            breaker: BreakerSettings::default(),
            tail_interval: Duration::from_millis(5),
            identity_for_new_log: None,
            refuse_root_user: false,
        }
    }

    /// The configuration of the service itself: as [`IggyConfig::new`],
    /// and never as the root user.
    pub fn for_service(url: impl Into<String>) -> Self {
        IggyConfig {
            refuse_root_user: true,
            ..IggyConfig::new(url)
        }
    }

    /// The URL with `reconnection_retries=0` added (unless the user set it),
    /// so a dead connection fails fast and we reconnect ourselves.
    pub(super) fn connection_string(&self) -> String {
        if self.url.contains("reconnection_retries") {
            return self.url.clone();
        }
        let separator = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{separator}reconnection_retries=0", self.url)
    }
}

/// The holes this process has found (see [`LogPage`]), so each is probed
/// for once: a hole never fills, and every reader that starts before it
/// would otherwise probe it again.
#[derive(Default)]
struct Holes(std::sync::Mutex<[Vec<Range<u64>>; 3]>);

impl Holes {
    /// Where to read instead of `from`: past the hole it falls in, if any.
    fn step_over(&self, topic: Topic, from: u64) -> u64 {
        let holes = self.0.lock().expect("the hole list is never poisoned");
        holes[topic.index()]
            .iter()
            .find(|hole| hole.contains(&from))
            .map_or(from, |hole| hole.end)
    }

    /// `limit`, shortened so a read from `from` stops before the next hole
    /// (a poll that reaches into one returns nothing).
    fn limit_before(&self, topic: Topic, from: u64, limit: u32) -> u32 {
        let holes = self.0.lock().expect("the hole list is never poisoned");
        holes[topic.index()]
            .iter()
            .filter(|hole| hole.start > from)
            .map(|hole| hole.start - from)
            .min()
            .map_or(limit, |room| {
                limit.min(u32::try_from(room).unwrap_or(u32::MAX))
            })
    }

    fn record(&self, topic: Topic, hole: Range<u64>) {
        tracing::warn!(%topic, from = hole.start, to = hole.end,
            "the log has a hole: offsets numbered without a message (an append cut short by a crash); readers step over it");
        let mut holes = self.0.lock().expect("the hole list is never poisoned");
        holes[topic.index()].push(hole);
    }
}

#[derive(Clone)]
pub struct IggyLog {
    inner: Arc<Inner>,
}

struct Inner {
    config: IggyConfig,
    stream_id: Identifier,
    topic_ids: [Identifier; 3],
    identity_topic_id: Identifier,
    /// Read (or created) while getting ready; set once.
    log_id: OnceLock<LogId>,
    /// One connection per role: Iggy answers one request at a time per
    /// connection, so a bulk read (catch-up, a replay page, a projector's
    /// batch) must not delay an append or its confirmation.
    appender: Arc<Connection>,
    /// Latency-critical reads: log ends and the read-back that confirms an
    /// append.
    confirmer: Arc<Connection>,
    /// Bulk reads and consumer offsets.
    reader: Arc<Connection>,
    tailer: Arc<Connection>,
    /// Iggy as one dependency: once a connection finds it down, every call
    /// fails at once until a probe finds it back.
    breaker: Arc<Breaker>,
    watch: LogEndWatch,
    holes: Holes,
    /// Set once connected with the stream and topics in place.
    ready: AtomicBool,
    ready_changed: Notify,
    stop: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl IggyLog {
    /// Returns at once; connecting, creating the stream and topics, and
    /// tailing happen in background tasks.
    pub fn open(config: IggyConfig) -> IggyLog {
        let named = |name: &str| {
            Identifier::named(name).expect("stream and topic names are valid identifiers")
        };
        let connection_string = config.connection_string();
        let inner = Arc::new(Inner {
            stream_id: named(&config.stream),
            topic_ids: Topic::ALL.map(|topic| named(topic.name())),
            identity_topic_id: named(IDENTITY_TOPIC),
            log_id: OnceLock::new(),
            appender: Connection::new("appender", &connection_string),
            confirmer: Connection::new("confirmer", &connection_string),
            reader: Connection::new("reader", &connection_string),
            tailer: Connection::new("tailer", &connection_string),
            breaker: Arc::new(Breaker::new(config.breaker)),
            config,
            watch: LogEndWatch::default(),
            holes: Holes::default(),
            ready: AtomicBool::new(false),
            ready_changed: Notify::new(),
            stop: CancellationToken::new(),
            tasks: Mutex::new(Vec::new()),
        });
        let log = IggyLog { inner };
        let setup = tokio::spawn(log.clone().prepare_stream_until_ready());
        let tailer = tokio::spawn(log.clone().tail_log_ends());
        // `try_lock` cannot fail: nobody else has seen `log` yet.
        if let Ok(mut tasks) = log.inner.tasks.try_lock() {
            tasks.extend([setup, tailer]);
        }
        log
    }

    pub(super) fn watch(&self) -> &LogEndWatch {
        &self.inner.watch
    }

    pub(super) async fn wait_until_ready(&self, max_wait: Duration) -> Result<(), LogError> {
        let became_ready = async {
            loop {
                let notified = self.inner.ready_changed.notified();
                if self.inner.ready.load(Ordering::Acquire) {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(max_wait, became_ready)
            .await
            .map_err(|_| {
                unavailable(format!(
                    "not connected to Iggy at {} after {max_wait:?}",
                    self.redacted_url()
                ))
            })
    }

    /// Connects and creates the stream and topics if they are missing,
    /// retrying every second until it works or the log shuts down.
    async fn prepare_stream_until_ready(self) {
        loop {
            match self.create_stream_and_topics().await {
                Ok(()) => {
                    self.inner.ready.store(true, Ordering::Release);
                    self.inner.ready_changed.notify_waiters();
                    tracing::info!(stream = %self.inner.config.stream, url = %self.redacted_url(), "Iggy log ready");
                    return;
                }
                Err(error) => tracing::warn!(%error, "Iggy not ready yet; retrying in 1s"),
            }
            tokio::select! {
                _ = self.inner.stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Idempotent, and safe when several instances start at once: "already
    /// exists" from a racing instance counts as success.
    async fn create_stream_and_topics(&self) -> Result<(), LogError> {
        if self.inner.config.refuse_root_user {
            self.refuse_the_root_user().await?;
        }
        let stream = self.inner.config.stream.clone();
        let existing = self
            .call(&self.inner.appender, "get stream", async |client| {
                client.get_stream(&self.inner.stream_id).await
            })
            .await?;
        if existing.is_none() {
            let created = self
                .call(
                    &self.inner.appender,
                    "create stream",
                    async |client| match client.create_stream(&stream).await {
                        Ok(_) | Err(IggyError::StreamNameAlreadyExists(_)) => Ok(()),
                        Err(error) => Err(error),
                    },
                )
                .await;
            created?;
        }
        let topics = Topic::ALL
            .iter()
            .map(|topic| (topic.name(), &self.inner.topic_ids[topic.index()]))
            .chain([(IDENTITY_TOPIC, &self.inner.identity_topic_id)]);
        for (topic_name, topic_id) in topics {
            let existing = self
                .call(&self.inner.appender, "get topic", async |client| {
                    client.get_topic(&self.inner.stream_id, topic_id).await
                })
                .await?;
            if existing.is_some() {
                continue;
            }
            self.call(&self.inner.appender, "create topic", async |client| {
                let created = client
                    .create_topic(
                        &self.inner.stream_id,
                        topic_name,
                        1,
                        CompressionAlgorithm::None,
                        None,
                        IggyExpiry::NeverExpire,
                        MaxTopicSize::ServerDefault,
                    )
                    .await;
                match created {
                    Ok(_) | Err(IggyError::TopicNameAlreadyExists(..)) => Ok(()),
                    Err(error) => Err(error),
                }
            })
            .await?;
        }
        let log_id = self.read_or_create_identity().await?;
        // Racing instances all read the same first message, so they agree.
        let _ = self.inner.log_id.set(log_id);
        Ok(())
    }

    /// The identity in the first message of [`IDENTITY_TOPIC`], appending
    /// one first if the topic is empty. Two instances creating the log at
    /// once may both append; the first message is the identity for all.
    async fn read_or_create_identity(&self) -> Result<LogId, LogError> {
        let topic_id = &self.inner.identity_topic_id;
        if let Some(id) = self.read_identity(topic_id).await? {
            return Ok(id);
        }
        let fresh = self
            .inner
            .config
            .identity_for_new_log
            .unwrap_or(LogId(Uuid::new_v4()));
        let payload = serde_json::to_vec(&serde_json::json!({ "logId": fresh }))
            .expect("a JSON object serializes");
        let mut message = vec![
            IggyMessage::builder()
                .id(fresh.0.as_u128())
                .payload(payload.into())
                .build()
                .map_err(|error| LogError::InvalidRequest(error.to_string()))?,
        ];
        self.call(
            &self.inner.appender,
            "create log identity",
            async |client| {
                client
                    .send_messages(
                        &self.inner.stream_id,
                        topic_id,
                        &Partitioning::partition_id(PARTITION),
                        &mut message,
                    )
                    .await
            },
        )
        .await?;
        self.read_identity(topic_id)
            .await?
            .ok_or_else(|| LogError::Inconsistent {
                backend: BACKEND,
                reason: format!("{IDENTITY_TOPIC} is empty right after its identity was appended"),
            })
    }

    async fn read_identity(&self, topic_id: &Identifier) -> Result<Option<LogId>, LogError> {
        let first = self.poll(&self.inner.reader, topic_id, 0, 1).await?;
        let Some(record) = first.first() else {
            return Ok(None);
        };
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Identity {
            log_id: LogId,
        }
        serde_json::from_slice::<Identity>(&record.payload)
            .map(|identity| Some(identity.log_id))
            .map_err(|error| LogError::Inconsistent {
                backend: BACKEND,
                reason: format!("{IDENTITY_TOPIC} does not start with a log identity: {error}"),
            })
    }

    pub(super) fn log_id(&self) -> Result<LogId, LogError> {
        self.inner.log_id.get().copied().ok_or_else(|| {
            unavailable(format!(
                "still connecting to Iggy at {}",
                self.redacted_url()
            ))
        })
    }

    /// Fails while logged in as the root user, so a misconfigured service
    /// never becomes ready (its health says why) instead of running with
    /// every permission.
    async fn refuse_the_root_user(&self) -> Result<(), LogError> {
        let me = self
            .call(&self.inner.appender, "get me", async |client| {
                client.get_me().await
            })
            .await?;
        if me.user_id == Some(ROOT_USER_ID) {
            return Err(LogError::Failed {
                backend: BACKEND,
                reason: format!(
                    "{} logs in as Iggy's root user; the service needs a user of its own with \
                     only the permissions it uses: run `marauders-map iggy setup` (see README, \
                     \"Security\")",
                    self.redacted_url()
                ),
            });
        }
        Ok(())
    }

    pub(super) async fn append(
        &self,
        topic: Topic,
        messages: &[LogMessage],
    ) -> Result<Vec<u64>, LogError> {
        self.ensure_ready()?;
        // Our messages land at or after the end we last saw: a lower bound
        // from which to find them again.
        let known_end = self.inner.watch.current(topic);
        let mut batch = messages
            .iter()
            .map(|message| {
                IggyMessage::builder()
                    .id(message.id.as_u128())
                    .payload(message.payload.clone())
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| LogError::InvalidRequest(error.to_string()))?;
        let topic_id = &self.inner.topic_ids[topic.index()];
        self.call(&self.inner.appender, "append", async |client| {
            client
                .send_messages(
                    &self.inner.stream_id,
                    topic_id,
                    &Partitioning::partition_id(PARTITION),
                    &mut batch,
                )
                .await
        })
        .await?;
        // Acknowledged: the log now reaches at least this far. Readers need
        // to know, or they would take a hole in front of our messages for
        // the end of the log (see `read_page`).
        self.inner
            .watch
            .advance(topic, known_end + messages.len() as u64);
        let ids: Vec<Uuid> = messages.iter().map(|message| message.id).collect();
        self.find_offsets_of(topic, &ids, known_end).await
    }

    /// Reads forward from `from` until every id in `ids` is found; returns
    /// their offsets in the order of `ids`.
    async fn find_offsets_of(
        &self,
        topic: Topic,
        ids: &[Uuid],
        mut from: u64,
    ) -> Result<Vec<u64>, LogError> {
        let mut offsets: Vec<Option<u64>> = vec![None; ids.len()];
        let mut fell_back = false;
        loop {
            let page = self
                .read_page_via(&self.inner.confirmer, topic, from, MAX_READ_LIMIT.min(1000))
                .await?;
            let records = page.records;
            if records.is_empty() && page.next_offset > from {
                from = page.next_offset;
                continue;
            }
            if records.is_empty() {
                // Not there though the server acknowledged it: our lower
                // bound was wrong (the server lost messages it had
                // acknowledged before, so its log end went back). Look once
                // more from a window before the current end.
                if fell_back {
                    // Acknowledged, yet not where it should be: the outcome
                    // is unknown, not a failure (see `LogError::Unavailable`).
                    return Err(unavailable(
                        "appended messages were acknowledged but cannot be found on the log".into(),
                    ));
                }
                fell_back = true;
                from = self
                    .log_end(topic)
                    .await?
                    .saturating_sub(u64::from(MAX_READ_LIMIT));
                continue;
            }
            for record in &records {
                // A batch may hold one id more than once (a re-sent
                // message): each copy takes the next position still open.
                if let Some(position) = ids
                    .iter()
                    .zip(&offsets)
                    .position(|(id, offset)| *id == record.id && offset.is_none())
                {
                    offsets[position] = Some(record.offset);
                }
            }
            if offsets.iter().all(Option::is_some) {
                return Ok(offsets.into_iter().flatten().collect());
            }
            from = page.next_offset;
        }
    }

    pub(super) async fn read_page(
        &self,
        topic: Topic,
        from_offset: u64,
        limit: u32,
    ) -> Result<LogPage, LogError> {
        self.ensure_ready()?;
        self.read_page_via(&self.inner.reader, topic, from_offset, limit)
            .await
    }

    /// [`IggyLog::read_page`] on the given connection (appends confirm on
    /// their own, apart from bulk reads).
    async fn read_page_via(
        &self,
        connection: &Arc<Connection>,
        topic: Topic,
        from_offset: u64,
        limit: u32,
    ) -> Result<LogPage, LogError> {
        let topic_id = &self.inner.topic_ids[topic.index()];
        let from = self.inner.holes.step_over(topic, from_offset);
        let limit = self.inner.holes.limit_before(topic, from, limit);
        let records = self.poll(connection, topic_id, from, limit).await?;
        if !records.is_empty() || from >= self.inner.watch.current(topic) {
            return Ok(LogPage::contiguous(records, from));
        }
        // Nothing at `from`, yet the log reached past it. Either it was
        // appended just now, or there is a hole (see `LogPage`) at or after
        // `from`: after a crash Iggy takes a segment's end from its index, so
        // offsets whose bytes never reached the file stay numbered, and a
        // poll whose range meets them returns nothing at all.
        let end = self.log_end_via(connection, topic).await?;
        let records = self.poll(connection, topic_id, from, limit).await?;
        if !records.is_empty() || from >= end {
            return Ok(LogPage::contiguous(records, from));
        }
        // Whatever is below `end` was readable before we asked for `end`
        // (the server counts a message only once it can be read), so this
        // is a hole, not a race. Read up to it (the full `limit` was just
        // tried), or find where it ends.
        let records = match limit / 2 {
            0 => Vec::new(),
            shorter => {
                self.readable_prefix(connection, topic_id, from, shorter)
                    .await?
            }
        };
        if !records.is_empty() {
            return Ok(LogPage::contiguous(records, from));
        }
        for probe in from + 1..end {
            if self.poll(connection, topic_id, probe, 1).await?.is_empty() {
                continue;
            }
            self.inner.holes.record(topic, from..probe);
            let records = self
                .readable_prefix(connection, topic_id, probe, limit)
                .await?;
            return Ok(LogPage::contiguous(records, probe));
        }
        self.inner.holes.record(topic, from..end);
        Ok(LogPage {
            records: Vec::new(),
            next_offset: end,
        })
    }

    /// The longest run from `from` that polls without meeting a hole:
    /// halving `limit` until the server returns something (empty if `from`
    /// itself is in a hole).
    async fn readable_prefix(
        &self,
        connection: &Arc<Connection>,
        topic_id: &Identifier,
        from: u64,
        mut limit: u32,
    ) -> Result<Vec<LogRecord>, LogError> {
        loop {
            let records = self.poll(connection, topic_id, from, limit).await?;
            if !records.is_empty() || limit == 1 {
                return Ok(records);
            }
            limit = (limit / 2).max(1);
        }
    }

    async fn poll(
        &self,
        connection: &Arc<Connection>,
        topic_id: &Identifier,
        from_offset: u64,
        limit: u32,
    ) -> Result<Vec<LogRecord>, LogError> {
        // Polling with auto-commit off stores nothing, so one fixed consumer
        // identity serves every read.
        let consumer = Consumer::new(Identifier::numeric(1).expect("1 is a valid id"));
        let polled = self
            .call(connection, "read", async |client| {
                let result = client
                    .poll_messages(
                        &self.inner.stream_id,
                        topic_id,
                        Some(PARTITION),
                        &consumer,
                        &PollingStrategy::offset(from_offset),
                        limit,
                        false,
                    )
                    .await;
                match result {
                    Ok(polled) => Ok(polled.messages),
                    // Asking beyond the end is not an error in our model.
                    Err(IggyError::InvalidOffset(_)) => Ok(Vec::new()),
                    Err(error) => Err(error),
                }
            })
            .await?;
        Ok(polled
            .into_iter()
            .filter(|message| message.header.offset >= from_offset)
            .map(|message| LogRecord {
                offset: message.header.offset,
                id: Uuid::from_u128(message.header.id),
                payload: message.payload,
            })
            .collect())
    }

    pub(super) async fn log_end(&self, topic: Topic) -> Result<u64, LogError> {
        self.ensure_ready()?;
        self.log_end_via(&self.inner.confirmer, topic).await
    }

    async fn log_end_via(
        &self,
        connection: &Arc<Connection>,
        topic: Topic,
    ) -> Result<u64, LogError> {
        let topic_id = &self.inner.topic_ids[topic.index()];
        let details = self
            .call(connection, "log end", async |client| {
                client.get_topic(&self.inner.stream_id, topic_id).await
            })
            .await?
            .ok_or_else(|| LogError::Failed {
                backend: BACKEND,
                reason: format!("topic {topic} does not exist on the server"),
            })?;
        let partition = details
            .partitions
            .iter()
            .find(|p| p.id == PARTITION)
            .ok_or_else(|| LogError::Failed {
                backend: BACKEND,
                reason: format!("topic {topic} has no partition {PARTITION}"),
            })?;
        // `current_offset` is the last message's offset, and 0 for an empty
        // partition too; the message count tells the two apart.
        Ok(
            if partition.messages_count == 0 && partition.current_offset == 0 {
                0
            } else {
                partition.current_offset + 1
            },
        )
    }

    pub(super) async fn store_consumer_offset(
        &self,
        consumer: &ConsumerName,
        topic: Topic,
        next_offset: u64,
    ) -> Result<(), LogError> {
        self.ensure_ready()?;
        let iggy_consumer = named_consumer(consumer)?;
        let topic_id = &self.inner.topic_ids[topic.index()];
        // Iggy stores the last processed offset; we speak of the next one to
        // read. "Nothing processed" (0) is the absence of a stored offset.
        self.call(
            &self.inner.reader,
            "store consumer offset",
            async |client| match next_offset {
                0 => match client
                    .delete_consumer_offset(
                        &iggy_consumer,
                        &self.inner.stream_id,
                        topic_id,
                        Some(PARTITION),
                    )
                    .await
                {
                    Err(error) if is_connection_error(&error) => Err(error),
                    _ => Ok(()),
                },
                next => {
                    client
                        .store_consumer_offset(
                            &iggy_consumer,
                            &self.inner.stream_id,
                            topic_id,
                            Some(PARTITION),
                            next - 1,
                        )
                        .await
                }
            },
        )
        .await
    }

    pub(super) async fn load_consumer_offset(
        &self,
        consumer: &ConsumerName,
        topic: Topic,
    ) -> Result<u64, LogError> {
        self.ensure_ready()?;
        let iggy_consumer = named_consumer(consumer)?;
        let topic_id = &self.inner.topic_ids[topic.index()];
        self.call(
            &self.inner.reader,
            "load consumer offset",
            async |client| match client
                .get_consumer_offset(
                    &iggy_consumer,
                    &self.inner.stream_id,
                    topic_id,
                    Some(PARTITION),
                )
                .await
            {
                Ok(info) => Ok(info.map_or(0, |info| info.stored_offset + 1)),
                Err(IggyError::ConsumerOffsetNotFound(_)) => Ok(0),
                Err(error) => Err(error),
            },
        )
        .await
    }

    /// The tailer: while somebody waits on a topic, ask the server for its
    /// log end every `tail_interval`.
    async fn tail_log_ends(self) {
        let interval = self.inner.config.tail_interval;
        loop {
            let mut pause = interval;
            if self.inner.ready.load(Ordering::Acquire) {
                for topic in Topic::ALL {
                    if self.inner.watch.waiting_readers(topic) == 0 {
                        continue;
                    }
                    match self.log_end_via(&self.inner.tailer, topic).await {
                        Ok(end) => self.inner.watch.advance(topic, end),
                        Err(error) => {
                            tracing::debug!(%error, %topic, "tailer could not read the log end");
                            pause = Duration::from_secs(1);
                        }
                    }
                }
            } else {
                pause = Duration::from_millis(100);
            }
            tokio::select! {
                _ = self.inner.stop.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    pub(super) async fn shutdown(&self) {
        self.inner.stop.cancel();
        let tasks = std::mem::take(&mut *self.inner.tasks.lock().await);
        for task in tasks {
            let _ = task.await;
        }
        for connection in self.connections() {
            connection.close().await;
        }
    }

    fn ensure_ready(&self) -> Result<(), LogError> {
        if self.inner.ready.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(unreachable(format!(
                "still connecting to Iggy at {}",
                self.redacted_url()
            )))
        }
    }

    fn connections(&self) -> [&Arc<Connection>; 4] {
        let inner = &self.inner;
        [
            &inner.appender,
            &inner.confirmer,
            &inner.reader,
            &inner.tailer,
        ]
    }

    /// Iggy's circuit breaker, for `/health` and `/metrics`.
    pub(super) fn breaker(&self) -> BreakerReport {
        self.inner.breaker.report()
    }

    /// Runs one request on `connection` within one deadline that covers
    /// waiting for the connection, connecting and the request.
    ///
    /// - The breaker open (Iggy was found down): refused at once,
    ///   [`LogError::Unreachable`] — nothing was sent.
    /// - No connection by the deadline: `Unreachable` too.
    /// - A connection error: the client is thrown away and the breaker
    ///   opens; [`LogError::Unavailable`], since the request may have gone.
    /// - The deadline passed with the request out: `Unavailable`, and the
    ///   connection is pinged in the background. Only a connection that does
    ///   not answer the ping is torn down (opening the breaker): a slow call
    ///   must not break the connection for everyone queued behind it.
    async fn call<T>(
        &self,
        connection: &Arc<Connection>,
        what: &str,
        request: impl AsyncFnOnce(&IggyClient) -> Result<T, IggyError>,
    ) -> Result<T, LogError> {
        let timeout = self.inner.config.request_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let breaker = &self.inner.breaker;
        let epoch = breaker.epoch();
        let admitted = breaker.admit().map_err(|refused| {
            unreachable(format!(
                "{what}: Iggy is down ({}); the next try is in {} ms",
                refused.reason,
                refused.retry_in.as_millis()
            ))
        })?;
        let mut probe = ProbeInFlight {
            breaker,
            armed: admitted.probe,
        };
        let result = self
            .call_admitted(connection, what, request, deadline, epoch)
            .await;
        probe.armed = false;
        result
    }

    async fn call_admitted<T>(
        &self,
        connection: &Arc<Connection>,
        what: &str,
        request: impl AsyncFnOnce(&IggyClient) -> Result<T, IggyError>,
        deadline: tokio::time::Instant,
        epoch: Epoch,
    ) -> Result<T, LogError> {
        let timeout = self.inner.config.request_timeout;
        let breaker = &self.inner.breaker;
        let connect_timeout = timeout.max(MIN_CONNECT_TIMEOUT);
        let client = connection
            .client(deadline, connect_timeout, breaker)
            .await?;
        match tokio::time::timeout_at(deadline, request(&client)).await {
            Ok(Ok(value)) => {
                breaker.succeeded();
                Ok(value)
            }
            Ok(Err(error)) if is_connection_error(&error) => {
                connection.discard(&client);
                breaker.failed(
                    epoch,
                    format!("{what} on the {} connection: {error}", connection.role),
                );
                Err(unavailable(format!("{what}: {error}")))
            }
            Ok(Err(error)) => {
                // An answer, if a refusal: Iggy is up.
                breaker.succeeded();
                Err(LogError::Failed {
                    backend: BACKEND,
                    reason: format!("{what}: {error}"),
                })
            }
            Err(_) => {
                connection.check_liveness(&client, timeout, breaker);
                Err(unavailable(format!("{what}: no answer within {timeout:?}")))
            }
        }
    }

    /// The URL without its password, for logs and error messages.
    fn redacted_url(&self) -> String {
        redact_password(&self.inner.config.url)
    }
}

/// The least time a connect attempt gets, however short a call's deadline:
/// connecting is TCP, a login (which Iggy checks with Argon2) and more, and
/// at a thaw every held-back login arrives at once. Callers still wait only
/// until their own deadline; the attempt runs on its own task.
const MIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One TCP connection to Iggy, made on first use and remade after a failure.
///
/// One connect attempt at a time: it runs on a task of its own (so it ends,
/// and reports to the breaker, even when every caller waiting for it has
/// given up), and everyone who needs the connection meanwhile waits for that
/// same attempt, each until their own deadline.
struct Connection {
    role: &'static str,
    connection_string: String,
    slot: std::sync::Mutex<Slot>,
    /// A liveness ping is out on the current client.
    pinging: AtomicBool,
}

type ConnectAttempt = Shared<BoxFuture<'static, Result<Arc<IggyClient>, String>>>;

enum Slot {
    Empty,
    Connecting(ConnectAttempt),
    Connected(Arc<IggyClient>),
}

impl Connection {
    fn new(role: &'static str, connection_string: &str) -> Arc<Self> {
        Arc::new(Connection {
            role,
            connection_string: connection_string.to_owned(),
            slot: std::sync::Mutex::new(Slot::Empty),
            pinging: AtomicBool::new(false),
        })
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The connected client, connecting first if needed (or joining the
    /// attempt under way), by `deadline`. Failing here sent nothing:
    /// [`LogError::Unreachable`].
    async fn client(
        self: &Arc<Self>,
        deadline: tokio::time::Instant,
        connect_timeout: Duration,
        breaker: &Arc<Breaker>,
    ) -> Result<Arc<IggyClient>, LogError> {
        let attempt = {
            let mut slot = self.slot();
            match &*slot {
                Slot::Connected(client) => return Ok(client.clone()),
                Slot::Connecting(attempt) => attempt.clone(),
                Slot::Empty => {
                    let attempt = self.start_connecting(connect_timeout, breaker.clone());
                    *slot = Slot::Connecting(attempt.clone());
                    attempt
                }
            }
        };
        match tokio::time::timeout_at(deadline, attempt).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(reason)) => Err(unreachable(reason)),
            Err(_) => Err(unreachable(format!(
                "no connection to Iggy ({}) by the request's deadline",
                self.role
            ))),
        }
    }

    /// Starts one connect attempt on its own task; its outcome fills the
    /// slot and tells the breaker.
    fn start_connecting(
        self: &Arc<Self>,
        timeout: Duration,
        breaker: Arc<Breaker>,
    ) -> ConnectAttempt {
        let connection_string = self.connection_string.clone();
        let role = self.role;
        let epoch = breaker.epoch();
        let attempt: ConnectAttempt = async move {
            let client = IggyClient::from_connection_string(&connection_string)
                .map_err(|error| format!("invalid IGGY_URL: {error}"))?;
            let failure = match tokio::time::timeout(timeout, client.connect()).await {
                Ok(Ok(())) => return Ok(Arc::new(client)),
                Ok(Err(error)) => format!("cannot connect ({role}): {error}"),
                Err(_) => format!("no connection ({role}) within {timeout:?}"),
            };
            shut_down_in_background(Arc::new(client));
            Err(failure)
        }
        .boxed()
        .shared();
        let this = self.clone();
        let outcome = attempt.clone();
        tokio::spawn(async move {
            let result = outcome.await;
            let mut slot = this.slot();
            // Only this attempt's own slot: a close may have emptied it.
            if !matches!(&*slot, Slot::Connecting(_)) {
                if let Ok(client) = result {
                    shut_down_in_background(client);
                }
                return;
            }
            match result {
                Ok(client) => {
                    *slot = Slot::Connected(client);
                    breaker.succeeded();
                }
                Err(reason) => {
                    *slot = Slot::Empty;
                    breaker.failed(epoch, reason);
                }
            }
        });
        attempt
    }

    /// Throws `failed` away if it is still the current client.
    fn discard(&self, failed: &Arc<IggyClient>) {
        let mut slot = self.slot();
        if let Slot::Connected(current) = &*slot
            && Arc::ptr_eq(current, failed)
        {
            shut_down_in_background(current.clone());
            *slot = Slot::Empty;
        }
    }

    /// After a request let its deadline pass: is the connection alive? A
    /// ping queues behind whatever the server is still working on; an
    /// answer within `timeout` means busy, not broken. No answer tears the
    /// connection down and opens the breaker. One ping at a time.
    fn check_liveness(
        self: &Arc<Self>,
        client: &Arc<IggyClient>,
        timeout: Duration,
        breaker: &Arc<Breaker>,
    ) {
        if self.pinging.swap(true, Ordering::AcqRel) {
            return;
        }
        let (this, client, breaker) = (self.clone(), client.clone(), breaker.clone());
        let epoch = breaker.epoch();
        tokio::spawn(async move {
            match tokio::time::timeout(timeout, client.ping()).await {
                Ok(Ok(())) => breaker.succeeded(),
                Ok(Err(error)) => {
                    this.discard(&client);
                    breaker.failed(
                        epoch,
                        format!("the {} connection failed a ping: {error}", this.role),
                    );
                }
                Err(_) => {
                    this.discard(&client);
                    breaker.failed(
                        epoch,
                        format!(
                            "Iggy stopped answering: no answer to a ping on the {} connection within {timeout:?}",
                            this.role
                        ),
                    );
                }
            }
            this.pinging.store(false, Ordering::Release);
        });
    }

    async fn close(&self) {
        let client = match std::mem::replace(&mut *self.slot(), Slot::Empty) {
            Slot::Connected(client) => client,
            Slot::Empty | Slot::Connecting(_) => return,
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), client.shutdown()).await;
    }
}

/// Stops a client's heartbeat without making the caller wait for it.
fn shut_down_in_background(client: Arc<IggyClient>) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(1), client.shutdown()).await;
    });
}

fn named_consumer(consumer: &ConsumerName) -> Result<Consumer, LogError> {
    Identifier::named(consumer.as_str())
        .map(Consumer::new)
        .map_err(|error| LogError::InvalidRequest(format!("consumer name '{consumer}': {error}")))
}

/// Errors after which the connection cannot be trusted.
fn is_connection_error(error: &IggyError) -> bool {
    matches!(
        error,
        IggyError::Disconnected
            | IggyError::NotConnected
            | IggyError::CannotEstablishConnection
            | IggyError::ConnectionClosed
            | IggyError::StaleClient
            | IggyError::TcpError
            | IggyError::EmptyResponse
            | IggyError::ClientShutdown
            | IggyError::Unauthenticated
            | IggyError::IoError(_)
    )
}

fn unavailable(reason: String) -> LogError {
    LogError::Unavailable {
        backend: BACKEND,
        reason,
    }
}

fn unreachable(reason: String) -> LogError {
    LogError::Unreachable {
        backend: BACKEND,
        reason,
    }
}

/// `url` without its password, for logs, errors and what the CLI prints.
pub fn redact_password(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(
            redact_password("iggy://iggy:secret@127.0.0.1:8090"),
            "iggy://iggy:***@127.0.0.1:8090"
        );
        assert_eq!(
            redact_password("iggy://127.0.0.1:8090"),
            "iggy://127.0.0.1:8090"
        );
    }

    #[test]
    fn reconnection_is_ours_unless_the_url_says_otherwise() {
        let config = IggyConfig::new("iggy://iggy:iggy@localhost:8090");
        assert_eq!(
            config.connection_string(),
            "iggy://iggy:iggy@localhost:8090?reconnection_retries=0"
        );
        let config = IggyConfig::new("iggy://iggy:iggy@localhost:8090?nodelay=true");
        assert!(
            config
                .connection_string()
                .ends_with("?nodelay=true&reconnection_retries=0")
        );
        let config = IggyConfig::new("iggy://iggy:iggy@localhost:8090?reconnection_retries=5");
        assert_eq!(config.connection_string(), config.url);
    }

    /// A probe whose caller gave up (its future dropped mid-call) must not
    /// leave the breaker waiting for a verdict forever.
    #[test]
    fn a_probe_dropped_before_its_verdict_lets_the_next_caller_probe() {
        let breaker = Breaker::new(BreakerSettings {
            base_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(10),
        });
        breaker.failed(breaker.epoch(), "down");
        std::thread::sleep(Duration::from_millis(15));
        let admitted = breaker.admit().expect("the backoff has passed");
        assert!(admitted.probe);
        drop(ProbeInFlight {
            breaker: &breaker,
            armed: admitted.probe,
        });
        assert!(
            breaker.admit().is_ok_and(|next| next.probe),
            "the next caller probes"
        );
        // A probe that finished disarms its guard: no second probe.
        let finished = ProbeInFlight {
            breaker: &breaker,
            armed: false,
        };
        drop(finished);
        assert!(breaker.admit().is_err(), "the probe out is still the one");
    }
}
