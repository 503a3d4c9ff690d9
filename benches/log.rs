//! `scripts/bench` (or `cargo bench --bench log` with TEST_DATABASE_URL set):
//! latency of the log's operations on each available backend, as a table.
//!
//! A measurement, not a test: nothing here asserts a time. Compare numbers
//! within one run (this is a shared, noisy machine); absolute values move.

use std::time::{Duration, Instant};

use bytes::Bytes;
use marauders_map::domain::{IncidentStatus, Location, Severity};
use marauders_map::events::{Event, EventPayload, IncidentCreated};
use marauders_map::log::{LogMessage, Topic};
use marauders_testkit::bench::{Row, print_table};
use marauders_testkit::{IggyServer, TestBackend, iggy_available};
use uuid::Uuid;

const SINGLE_APPENDS: usize = 300;
const BATCH_APPENDS: usize = 30;
const BATCH_SIZE: usize = 100;
const READS: usize = 200;
const WAKE_UPS: usize = 200;

#[tokio::main]
async fn main() {
    run().await;
}

async fn run() {
    let mut rows = Vec::new();
    let postgres = TestBackend::postgres().await;
    rows.extend(measure("embedded (PostgreSQL)", &postgres).await);

    if iggy_available() {
        let durable = TestBackend::Iggy {
            server: IggyServer::start_with(true).await,
            stream: "bench-fsync".into(),
        };
        rows.extend(measure("iggy, fsync every append", &durable).await);
        drop(durable);
        let buffered = TestBackend::Iggy {
            server: IggyServer::start_with(false).await,
            stream: "bench-buffered".into(),
        };
        rows.extend(measure("iggy, server defaults", &buffered).await);
    } else {
        eprintln!("Iggy: skipped — no iggy-server on PATH and IGGY_URL is unset");
    }
    print_table(&rows);
}

async fn measure(backend: &'static str, storage: &TestBackend) -> Vec<Row> {
    let log = storage.open_log().await;
    let other_instance = storage.open_log().await;
    let mut rows = Vec::new();

    let mut samples = Vec::new();
    for _ in 0..SINGLE_APPENDS {
        let message = incident_created();
        let started = Instant::now();
        log.append(Topic::IncidentEvents, &[message]).await.unwrap();
        samples.push(started.elapsed());
    }
    rows.push(Row {
        backend,
        metric: "append 1 event".into(),
        samples,
    });

    let mut samples = Vec::new();
    for _ in 0..BATCH_APPENDS {
        let batch: Vec<LogMessage> = (0..BATCH_SIZE).map(|_| incident_created()).collect();
        let started = Instant::now();
        log.append(Topic::IncidentEvents, &batch).await.unwrap();
        samples.push(started.elapsed());
    }
    rows.push(Row {
        backend,
        metric: format!("append batch of {BATCH_SIZE}"),
        samples,
    });

    let end = log.log_end(Topic::IncidentEvents).await.unwrap();
    let mut samples = Vec::new();
    for n in 0..READS as u64 {
        let from = (n * 37) % (end - 100);
        let started = Instant::now();
        let records = log.read(Topic::IncidentEvents, from, 100).await.unwrap();
        samples.push(started.elapsed());
        assert_eq!(records.len(), 100);
    }
    rows.push(Row {
        backend,
        metric: "read 100 events".into(),
        samples,
    });

    // Another instance waits; we time from just before the append call to
    // the moment the waiter is woken.
    let mut samples = Vec::new();
    for _ in 0..WAKE_UPS {
        let known = other_instance.log_end(Topic::PresenceEvents).await.unwrap();
        let waiter = {
            let other = other_instance.clone();
            tokio::spawn(async move {
                other
                    .wait_for_new_events(Topic::PresenceEvents, known, Duration::from_secs(5))
                    .await;
                Instant::now()
            })
        };
        tokio::time::sleep(Duration::from_millis(2)).await;
        let started = Instant::now();
        log.append(Topic::PresenceEvents, &[plain_message()])
            .await
            .unwrap();
        let woken = waiter.await.unwrap();
        samples.push(woken.saturating_duration_since(started));
    }
    rows.push(Row {
        backend,
        metric: "append → other instance wakes".into(),
        samples,
    });

    log.shutdown().await;
    other_instance.shutdown().await;
    rows
}

fn incident_created() -> LogMessage {
    let now = chrono::Utc::now();
    Event::new(
        EventPayload::IncidentCreated(IncidentCreated {
            id: Uuid::now_v7(),
            title: "Troll in the dungeon".into(),
            description: Some("Thought you ought to know".into()),
            severity: Severity::Critical,
            location: Location::Dungeons,
            status: IncidentStatus::Open,
            reported_by: Uuid::now_v7(),
            assigned_to: None,
            resolved_by: None,
            resolution: None,
            created_at: now,
            updated_at: now,
            resolved_at: None,
            version: 1,
        }),
        None,
    )
    .to_log_message()
}

fn plain_message() -> LogMessage {
    LogMessage {
        id: Uuid::now_v7(),
        payload: Bytes::from_static(b"{\"ping\":true}"),
    }
}
