//! The seed's consumer tests (`event-consuming.test.js`) against the real
//! embedded log: a consumer tracks its own offset and resumes after a
//! restart, skips what it cannot decode without crashing, never advances
//! past an event its handler failed on, and stops cleanly on shutdown.

use std::time::Duration;

use bytes::Bytes;
use marauders_map::events::Event;
use marauders_map::log::{ConsumerName, EventLog, LogMessage, Topic};
use marauders_projections::{ConsumerError, EventHandler, LogConsumer, PollOutcome};
use marauders_testkit::TestBackend;
use marauders_testkit::events::user_logged_out;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Records what it was given; fails at one chosen offset, once.
#[derive(Default)]
struct Recorder {
    seen: Vec<(u64, Uuid)>,
    fail_once_at: Option<u64>,
}

impl EventHandler for Recorder {
    type Error = String;

    async fn handle(&mut self, offset: u64, event: &Event) -> Result<(), String> {
        if self.fail_once_at == Some(offset) {
            self.fail_once_at = None;
            return Err("the owlery is on fire".into());
        }
        self.seen.push((offset, event.event_id));
        Ok(())
    }
}

async fn append_events(log: &EventLog, count: usize) -> Vec<Event> {
    let events: Vec<Event> = (0..count).map(|_| user_logged_out()).collect();
    let messages: Vec<LogMessage> = events.iter().map(Event::to_log_message).collect();
    log.append(Topic::AuthEvents, &messages).await.unwrap();
    events
}

fn consumer(log: &EventLog) -> LogConsumer {
    LogConsumer::new(
        log.clone(),
        ConsumerName::parse("audit-test").unwrap(),
        Topic::AuthEvents,
    )
}

#[tokio::test]
async fn should_track_consumer_offset_after_processing() {
    let backend = TestBackend::postgres().await;
    let log = backend.open_log().await;
    let events = append_events(&log, 3).await;
    let mut handler = Recorder::default();

    let outcome = consumer(&log).poll_once(&mut handler).await.unwrap();

    assert_eq!(
        outcome,
        PollOutcome::Advanced {
            handled: 3,
            skipped: 0,
            next_offset: 3
        }
    );
    assert_eq!(
        handler.seen,
        vec![
            (0, events[0].event_id),
            (1, events[1].event_id),
            (2, events[2].event_id)
        ]
    );
    let name = ConsumerName::parse("audit-test").unwrap();
    assert_eq!(
        log.load_consumer_offset(&name, Topic::AuthEvents)
            .await
            .unwrap(),
        3
    );
    log.shutdown().await;
}

#[tokio::test]
async fn a_restarted_consumer_resumes_where_it_left_off() {
    let backend = TestBackend::postgres().await;
    let log = backend.open_log().await;
    append_events(&log, 3).await;
    consumer(&log)
        .poll_once(&mut Recorder::default())
        .await
        .unwrap();

    // "Restart": a new consumer with the same name resumes at 3, not 0.
    let mut restarted = consumer(&log);
    let mut after_restart = Recorder::default();
    assert_eq!(
        restarted.poll_once(&mut after_restart).await.unwrap(),
        PollOutcome::CaughtUp { next_offset: 3 }
    );
    let later = append_events(&log, 1).await;
    restarted.poll_once(&mut after_restart).await.unwrap();

    assert_eq!(after_restart.seen, vec![(3, later[0].event_id)]);
    log.shutdown().await;
}

#[tokio::test]
async fn should_handle_deserialization_errors_gracefully() {
    let backend = TestBackend::postgres().await;
    let log = backend.open_log().await;
    let good = user_logged_out();
    let mut unknown = user_logged_out().to_envelope();
    unknown.event_type = "user.apparated".into();
    let messages = [
        good.to_log_message(),
        LogMessage {
            id: Uuid::now_v7(),
            payload: Bytes::from_static(b"{not json"),
        },
        LogMessage {
            id: Uuid::now_v7(),
            payload: Bytes::from(serde_json::to_vec(&unknown).unwrap()),
        },
        LogMessage {
            id: Uuid::now_v7(),
            payload: Bytes::from_static(br#"{"eventType":"user.logged_out"}"#),
        },
    ];
    log.append(Topic::AuthEvents, &messages).await.unwrap();
    let last = append_events(&log, 1).await;
    let mut handler = Recorder::default();

    let outcome = consumer(&log).poll_once(&mut handler).await.unwrap();

    assert_eq!(
        outcome,
        PollOutcome::Advanced {
            handled: 2,
            skipped: 3,
            next_offset: 5
        }
    );
    assert_eq!(
        handler.seen,
        vec![(0, good.event_id), (4, last[0].event_id)]
    );
    log.shutdown().await;
}

#[tokio::test]
async fn a_failed_event_is_retried_not_skipped() {
    let backend = TestBackend::postgres().await;
    let log = backend.open_log().await;
    let events = append_events(&log, 3).await;
    let mut handler = Recorder {
        fail_once_at: Some(1),
        ..Recorder::default()
    };
    let mut consumer = consumer(&log);

    let error = consumer.poll_once(&mut handler).await.unwrap_err();

    assert!(
        matches!(error, ConsumerError::Handler { offset: 1, .. }),
        "{error}"
    );
    let name = ConsumerName::parse("audit-test").unwrap();
    assert_eq!(
        log.load_consumer_offset(&name, Topic::AuthEvents)
            .await
            .unwrap(),
        1,
        "progress before the failure is kept"
    );
    consumer.poll_once(&mut handler).await.unwrap();
    let offsets: Vec<u64> = handler.seen.iter().map(|(offset, _)| *offset).collect();
    assert_eq!(
        offsets,
        [0, 1, 2],
        "offset 1 handled on the retry, nothing twice"
    );
    assert_eq!(handler.seen[1].1, events[1].event_id);
    log.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_wakes_for_new_events_and_stores_its_offset_on_shutdown() {
    let backend = TestBackend::postgres().await;
    let log = backend.open_log().await;
    let shutdown = CancellationToken::new();
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    struct Forward(tokio::sync::mpsc::UnboundedSender<u64>);
    impl EventHandler for Forward {
        type Error = String;
        async fn handle(&mut self, offset: u64, _: &Event) -> Result<(), String> {
            self.0.send(offset).map_err(|e| e.to_string())
        }
    }
    let running = {
        let consumer = consumer(&log);
        let shutdown = shutdown.clone();
        tokio::spawn(async move { consumer.run(&mut Forward(seen_tx), shutdown).await })
    };

    append_events(&log, 2).await;
    for expected in [0, 1] {
        let offset = tokio::time::timeout(Duration::from_secs(10), seen_rx.recv())
            .await
            .unwrap();
        assert_eq!(offset, Some(expected));
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("stops promptly")
        .unwrap();

    let name = ConsumerName::parse("audit-test").unwrap();
    assert_eq!(
        log.load_consumer_offset(&name, Topic::AuthEvents)
            .await
            .unwrap(),
        2
    );
    log.shutdown().await;
}
