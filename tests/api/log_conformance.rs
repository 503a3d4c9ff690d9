//! One conformance suite, run against both log backends: the embedded log in
//! PostgreSQL and a real Apache Iggy server. Every behaviour the rest of the
//! service relies on is pinned here, so a backend that passes is a drop-in.
//!
//! The Iggy half is `#[ignore]`d unless a server is available (see
//! `scripts/test`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use marauders_map::domain::Severity;
use marauders_map::events::{Event, EventPayload, SeverityEscalated, UserLoggedIn};
use marauders_map::log::{ConsumerName, EventLog, LogError, LogMessage, MAX_READ_LIMIT, Topic};
use marauders_testkit::TestBackend;
use uuid::Uuid;

fn message(text: &str) -> LogMessage {
    LogMessage {
        id: Uuid::now_v7(),
        payload: Bytes::from(text.to_owned()),
    }
}

fn payload_text(payload: &Bytes) -> String {
    String::from_utf8(payload.to_vec()).unwrap()
}

async fn append_numbered(log: &EventLog, topic: Topic, count: usize) -> Vec<LogMessage> {
    let messages: Vec<LogMessage> = (0..count)
        .map(|n| message(&format!("message {n}")))
        .collect();
    for message in &messages {
        log.append(topic, std::slice::from_ref(message))
            .await
            .unwrap();
    }
    messages
}

async fn appends_and_reads_back_in_order(backend: &TestBackend) {
    let log = backend.open_log().await;
    let batch: Vec<LogMessage> = ["owl 1", "owl 2", "owl 3", "owl 4", "owl 5"]
        .map(message)
        .into();

    let offsets = log.append(Topic::IncidentEvents, &batch).await.unwrap();

    assert_eq!(offsets, [0, 1, 2, 3, 4]);
    let records = log.read(Topic::IncidentEvents, 0, 100).await.unwrap();
    assert_eq!(records.len(), 5);
    for (n, (record, sent)) in records.iter().zip(&batch).enumerate() {
        assert_eq!(record.offset, n as u64);
        assert_eq!(record.id, sent.id);
        assert_eq!(record.payload, sent.payload);
    }
    // A log, not a queue: reading again gives the same messages.
    assert_eq!(
        log.read(Topic::IncidentEvents, 0, 100).await.unwrap(),
        records
    );
    log.shutdown().await;
}

/// The seed's replay cases: 10 events; a client at 5 asks from 6 and gets
/// 6, 7, 8, 9 in order; a client at 9 gets nothing.
async fn reads_from_any_offset(backend: &TestBackend) {
    let log = backend.open_log().await;
    append_numbered(&log, Topic::IncidentEvents, 10).await;

    let from_six = log.read(Topic::IncidentEvents, 6, 100).await.unwrap();
    let offsets: Vec<u64> = from_six.iter().map(|record| record.offset).collect();
    assert_eq!(offsets, [6, 7, 8, 9]);
    assert_eq!(payload_text(&from_six[0].payload), "message 6");

    assert!(
        log.read(Topic::IncidentEvents, 10, 100)
            .await
            .unwrap()
            .is_empty()
    );
    log.shutdown().await;
}

async fn reading_past_the_end_returns_nothing(backend: &TestBackend) {
    let log = backend.open_log().await;
    assert!(
        log.read(Topic::AuthEvents, 0, 10).await.unwrap().is_empty(),
        "empty topic"
    );
    append_numbered(&log, Topic::AuthEvents, 2).await;
    assert!(log.read(Topic::AuthEvents, 2, 10).await.unwrap().is_empty());
    assert!(
        log.read(Topic::AuthEvents, 1_000_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        log.read(Topic::AuthEvents, u64::MAX, 10)
            .await
            .unwrap()
            .is_empty()
    );
    log.shutdown().await;
}

/// A page says where to read next: past its last record, or where it was
/// asked to start when it is at the end (a cursor then waits there).
async fn a_page_says_where_to_read_next(backend: &TestBackend) {
    let log = backend.open_log().await;
    let empty = log.read_page(Topic::AuthEvents, 0, 10).await.unwrap();
    assert_eq!((empty.records.len(), empty.next_offset), (0, 0));
    append_numbered(&log, Topic::AuthEvents, 5).await;

    let first = log.read_page(Topic::AuthEvents, 0, 3).await.unwrap();
    assert_eq!(first.records.len(), 3);
    assert_eq!(first.next_offset, 3);
    let rest = log.read_page(Topic::AuthEvents, 3, 10).await.unwrap();
    assert_eq!(rest.records.len(), 2);
    assert_eq!(rest.next_offset, 5);
    let at_the_end = log.read_page(Topic::AuthEvents, 5, 10).await.unwrap();
    assert!(at_the_end.records.is_empty());
    assert_eq!(at_the_end.next_offset, 5);
    log.shutdown().await;
}

async fn read_limits_cap_the_batch(backend: &TestBackend) {
    let log = backend.open_log().await;
    append_numbered(&log, Topic::PresenceEvents, 7).await;

    let first_three = log.read(Topic::PresenceEvents, 0, 3).await.unwrap();
    assert_eq!(
        first_three.iter().map(|r| r.offset).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    let rest = log.read(Topic::PresenceEvents, 3, 3).await.unwrap();
    assert_eq!(rest.iter().map(|r| r.offset).collect::<Vec<_>>(), [3, 4, 5]);

    for bad_limit in [0, MAX_READ_LIMIT + 1] {
        let error = log
            .read(Topic::PresenceEvents, 0, bad_limit)
            .await
            .unwrap_err();
        assert!(
            matches!(error, LogError::InvalidRequest(_)),
            "limit {bad_limit}: {error}"
        );
    }
    log.shutdown().await;
}

async fn log_end_counts_each_topic_separately(backend: &TestBackend) {
    let log = backend.open_log().await;
    for topic in Topic::ALL {
        assert_eq!(log.log_end(topic).await.unwrap(), 0, "{topic} starts empty");
    }
    append_numbered(&log, Topic::IncidentEvents, 3).await;
    log.append(Topic::AuthEvents, &[message("a"), message("b")])
        .await
        .unwrap();

    assert_eq!(log.log_end(Topic::IncidentEvents).await.unwrap(), 3);
    assert_eq!(log.log_end(Topic::AuthEvents).await.unwrap(), 2);
    assert_eq!(log.log_end(Topic::PresenceEvents).await.unwrap(), 0);
    log.shutdown().await;
}

/// The seed's consumer test: processed 0, 1, 2 → after a restart, resume at 3.
async fn consumer_offsets_are_kept_per_consumer_and_topic(backend: &TestBackend) {
    let log = backend.open_log().await;
    append_numbered(&log, Topic::IncidentEvents, 5).await;
    let broadcaster = ConsumerName::parse("broadcaster").unwrap();
    let analytics = ConsumerName::parse("analytics").unwrap();

    assert_eq!(
        log.load_consumer_offset(&broadcaster, Topic::IncidentEvents)
            .await
            .unwrap(),
        0
    );
    log.store_consumer_offset(&broadcaster, Topic::IncidentEvents, 3)
        .await
        .unwrap();
    log.shutdown().await;

    let restarted = backend.open_log().await;
    assert_eq!(
        restarted
            .load_consumer_offset(&broadcaster, Topic::IncidentEvents)
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        restarted
            .load_consumer_offset(&analytics, Topic::IncidentEvents)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        restarted
            .load_consumer_offset(&broadcaster, Topic::AuthEvents)
            .await
            .unwrap(),
        0
    );

    restarted
        .store_consumer_offset(&broadcaster, Topic::IncidentEvents, 5)
        .await
        .unwrap();
    assert_eq!(
        restarted
            .load_consumer_offset(&broadcaster, Topic::IncidentEvents)
            .await
            .unwrap(),
        5
    );
    // Rewinding to 0 is how a consumer replays everything.
    restarted
        .store_consumer_offset(&broadcaster, Topic::IncidentEvents, 0)
        .await
        .unwrap();
    assert_eq!(
        restarted
            .load_consumer_offset(&broadcaster, Topic::IncidentEvents)
            .await
            .unwrap(),
        0
    );
    restarted.shutdown().await;
}

/// Four appenders over two instances: every message lands exactly once, the
/// offsets each append returned are where the message really is, and each
/// appender's messages keep their order.
async fn concurrent_appenders_share_one_total_order(backend: &TestBackend) {
    let instances = [backend.open_log().await, backend.open_log().await];
    let mut appenders = Vec::new();
    for appender in 0..4 {
        let log = instances[appender % 2].clone();
        appenders.push(tokio::spawn(async move {
            let mut placed = Vec::new();
            for n in 0..15 {
                let batch: Vec<LogMessage> = (0..=(n % 3))
                    .map(|k| message(&format!("appender {appender} batch {n} item {k}")))
                    .collect();
                let offsets = log.append(Topic::IncidentEvents, &batch).await.unwrap();
                assert_eq!(offsets.len(), batch.len());
                assert!(
                    offsets.windows(2).all(|pair| pair[1] == pair[0] + 1),
                    "a batch is contiguous"
                );
                placed.extend(batch.into_iter().map(|m| m.id).zip(offsets));
            }
            placed
        }));
    }
    let mut placed: HashMap<Uuid, u64> = HashMap::new();
    let mut order_per_appender = Vec::new();
    for appender in appenders {
        let appended = appender.await.unwrap();
        order_per_appender.push(
            appended
                .iter()
                .map(|(_, offset)| *offset)
                .collect::<Vec<_>>(),
        );
        placed.extend(appended);
    }

    let records = instances[0]
        .read(Topic::IncidentEvents, 0, MAX_READ_LIMIT)
        .await
        .unwrap();
    assert_eq!(records.len(), placed.len(), "every message exactly once");
    assert!(
        records
            .windows(2)
            .all(|pair| pair[0].offset < pair[1].offset),
        "one total order"
    );
    for record in &records {
        assert_eq!(
            placed.get(&record.id),
            Some(&record.offset),
            "append reported where it landed"
        );
    }
    for offsets in order_per_appender {
        assert!(
            offsets.windows(2).all(|pair| pair[0] < pair[1]),
            "an appender's order is kept"
        );
    }
    for log in instances {
        log.shutdown().await;
    }
}

async fn a_waiting_reader_wakes_on_an_append(backend: &TestBackend) {
    let log = backend.open_log().await;
    let end = log.log_end(Topic::IncidentEvents).await.unwrap();
    let waiter = {
        let log = log.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let new_end = log
                .wait_for_new_events(Topic::IncidentEvents, end, Duration::from_secs(10))
                .await;
            (new_end, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    log.append(Topic::IncidentEvents, &[message("wake up")])
        .await
        .unwrap();

    let (new_end, waited) = waiter.await.unwrap();
    assert_eq!(
        new_end,
        end + 1,
        "woken by the append, not by the 10s timeout (waited {waited:?})"
    );
    log.shutdown().await;
}

/// The other instance learns of the append only through the backend
/// (NOTIFY, or the Iggy tailer), as a second service instance would.
async fn a_reader_in_another_instance_wakes_on_an_append(backend: &TestBackend) {
    let writer = backend.open_log().await;
    let reader = backend.open_log().await;
    let end = reader.log_end(Topic::PresenceEvents).await.unwrap();
    let waiter = {
        let reader = reader.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let new_end = reader
                .wait_for_new_events(Topic::PresenceEvents, end, Duration::from_secs(10))
                .await;
            (new_end, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let appended_at = Instant::now();
    writer
        .append(Topic::PresenceEvents, &[message("hello from elsewhere")])
        .await
        .unwrap();

    let (new_end, _) = waiter.await.unwrap();
    let latency = appended_at.elapsed();
    assert_eq!(new_end, end + 1, "woken by the other instance's append");
    eprintln!("cross-instance wake-up after {latency:?}");
    let records = reader.read(Topic::PresenceEvents, end, 10).await.unwrap();
    assert_eq!(payload_text(&records[0].payload), "hello from elsewhere");
    writer.shutdown().await;
    reader.shutdown().await;
}

async fn an_empty_payload_is_rejected_and_nothing_is_appended(backend: &TestBackend) {
    let log = backend.open_log().await;
    let empty = LogMessage {
        id: Uuid::now_v7(),
        payload: Bytes::new(),
    };
    let error = log
        .append(Topic::IncidentEvents, &[message("fine"), empty])
        .await
        .unwrap_err();
    assert!(matches!(error, LogError::InvalidRequest(_)), "{error}");
    assert_eq!(
        log.log_end(Topic::IncidentEvents).await.unwrap(),
        0,
        "the whole batch is refused"
    );
    assert_eq!(
        log.append(Topic::IncidentEvents, &[]).await.unwrap(),
        Vec::<u64>::new()
    );
    log.shutdown().await;
}

async fn events_survive_the_log_byte_for_byte(backend: &TestBackend) {
    let log = backend.open_log().await;
    let user = Uuid::now_v7();
    let events = [
        Event::new(
            EventPayload::SeverityEscalated(SeverityEscalated {
                incident_id: Uuid::now_v7(),
                version: 2,
                old_severity: Severity::Medium,
                new_severity: Severity::Critical,
            }),
            Some(user),
        ),
        Event::new(
            EventPayload::UserLoggedIn(UserLoggedIn {
                user_id: user,
                ip: "127.0.0.1".into(),
            }),
            Some(user),
        ),
    ];
    for event in &events {
        log.append(event.topic(), &[event.to_log_message()])
            .await
            .unwrap();
    }
    let incident = log.read(Topic::IncidentEvents, 0, 10).await.unwrap();
    let auth = log.read(Topic::AuthEvents, 0, 10).await.unwrap();
    assert_eq!(Event::decode(&incident[0].payload).unwrap(), events[0]);
    assert_eq!(Event::decode(&auth[0].payload).unwrap(), events[1]);
    assert_eq!(
        incident[0].id, events[0].event_id,
        "the message id is the event id"
    );
    log.shutdown().await;
}

/// The log stores bytes and ids and does not judge them: a batch may hold
/// the same message twice (a producer re-sending), and each copy gets an
/// offset of its own. Consumers deduplicate by event id.
async fn a_batch_may_hold_the_same_message_twice(backend: &TestBackend) {
    let log = backend.open_log().await;
    let (first, again) = (message("first"), message("again"));
    let batch = [first.clone(), again.clone(), first.clone()];

    let offsets = log.append(Topic::IncidentEvents, &batch).await.unwrap();

    assert_eq!(offsets, [0, 1, 2]);
    let ids: Vec<Uuid> = log
        .read(Topic::IncidentEvents, 0, 10)
        .await
        .unwrap()
        .iter()
        .map(|record| record.id)
        .collect();
    assert_eq!(ids, [first.id, again.id, first.id]);
    log.shutdown().await;
}

marauders_testkit::on_both_backends!(
    appends_and_reads_back_in_order,
    reads_from_any_offset,
    reading_past_the_end_returns_nothing,
    a_page_says_where_to_read_next,
    read_limits_cap_the_batch,
    log_end_counts_each_topic_separately,
    consumer_offsets_are_kept_per_consumer_and_topic,
    concurrent_appenders_share_one_total_order,
    a_waiting_reader_wakes_on_an_append,
    a_reader_in_another_instance_wakes_on_an_append,
    an_empty_payload_is_rejected_and_nothing_is_appended,
    events_survive_the_log_byte_for_byte,
    a_batch_may_hold_the_same_message_twice,
);
