//! What only a real Iggy server can show: acknowledged appends survive
//! `kill -9`, a dead server fails requests promptly instead of hanging them,
//! the log reconnects by itself, and racing instances create the stream and
//! topics once.
//!
//! `iggy_process_*` tests start, kill and restart their own `iggy-server`, so
//! they need the binary on PATH (an `IGGY_URL` alone is not enough). All are
//! `#[ignore]`d unless a server is available (see `scripts/test`).

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{IggyServer, TestBackend};
use marauders_map::log::{EventLog, LogConfig, LogError, LogMessage, Topic};
use uuid::Uuid;

fn message(n: usize) -> LogMessage {
    LogMessage {
        id: Uuid::now_v7(),
        payload: Bytes::from(format!("acknowledged {n}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs iggy-server on PATH (scripts/test runs it when it is)"]
async fn iggy_process_acknowledged_appends_survive_kill_9() {
    let TestBackend::Iggy { mut server, stream } = TestBackend::iggy().await else {
        unreachable!()
    };
    let log = EventLog::open(LogConfig::Iggy(server.config(&stream)))
        .await
        .unwrap();
    log.wait_until_ready(Duration::from_secs(20)).await.unwrap();
    let mut acknowledged = Vec::new();
    for n in 0..50 {
        let message = message(n);
        log.append(Topic::IncidentEvents, std::slice::from_ref(&message))
            .await
            .unwrap();
        acknowledged.push(message);
    }

    server.kill_9();
    server.restart().await;

    let after = wait_for_read(&log, 50).await;
    let ids: Vec<Uuid> = after.iter().map(|record| record.id).collect();
    let expected: Vec<Uuid> = acknowledged.iter().map(|message| message.id).collect();
    assert_eq!(
        ids, expected,
        "every acknowledged append is still there, in order"
    );
    log.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs iggy-server on PATH (scripts/test runs it when it is)"]
async fn iggy_process_a_dead_server_fails_fast_and_the_log_recovers_by_itself() {
    let TestBackend::Iggy { mut server, stream } = TestBackend::iggy().await else {
        unreachable!()
    };
    let log = EventLog::open(LogConfig::Iggy(server.config(&stream)))
        .await
        .unwrap();
    log.wait_until_ready(Duration::from_secs(20)).await.unwrap();
    log.append(Topic::IncidentEvents, &[message(0)])
        .await
        .unwrap();

    server.kill_9();
    let started = Instant::now();
    let error = log
        .append(Topic::IncidentEvents, &[message(1)])
        .await
        .unwrap_err();
    assert!(matches!(error, LogError::Unavailable { .. }), "{error}");
    // A bound on "does not hang", far above the 3s request timeout.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(matches!(
        log.read(Topic::IncidentEvents, 0, 10).await,
        Err(LogError::Unavailable { .. })
    ));

    server.restart().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let offsets = loop {
        match log.append(Topic::IncidentEvents, &[message(2)]).await {
            Ok(offsets) => break offsets,
            Err(error) => {
                assert!(
                    Instant::now() < deadline,
                    "still failing 30s after the restart: {error}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_eq!(offsets, [1], "the failed append left nothing behind");
    log.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an Iggy server: put iggy-server on PATH or set IGGY_URL (scripts/test does this when it can)"]
async fn instances_starting_together_create_the_stream_and_topics_once() {
    let server = IggyServer::start().await;
    let stream = format!("marauders-map-test-{}", Uuid::new_v4().simple());
    let logs: Vec<EventLog> = futures::future::join_all(
        (0..3).map(|_| EventLog::open(LogConfig::Iggy(server.config(&stream)))),
    )
    .await
    .into_iter()
    .map(Result::unwrap)
    .collect();
    for log in &logs {
        log.wait_until_ready(Duration::from_secs(20)).await.unwrap();
    }
    let offsets = logs[2]
        .append(Topic::AuthEvents, &[message(0)])
        .await
        .unwrap();
    assert_eq!(offsets, [0]);
    assert_eq!(logs[0].log_end(Topic::AuthEvents).await.unwrap(), 1);
    for log in logs {
        log.shutdown().await;
    }
}

#[tokio::test]
async fn an_unreachable_iggy_is_reported_unavailable_not_hung() {
    // Nothing listens on this port: the log must say so promptly.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config =
        marauders_map::log::iggy::IggyConfig::new(format!("iggy://iggy:iggy@127.0.0.1:{port}"));
    let log = EventLog::open(LogConfig::Iggy(config)).await.unwrap();
    let started = Instant::now();
    let error = log
        .wait_until_ready(Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(matches!(error, LogError::Unavailable { .. }), "{error}");
    let error = log
        .append(Topic::IncidentEvents, &[message(0)])
        .await
        .unwrap_err();
    assert!(matches!(error, LogError::Unavailable { .. }), "{error}");
    assert!(
        error.to_string().contains("iggy://iggy:***@"),
        "password redacted: {error}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    log.shutdown().await;
}

async fn wait_for_read(log: &EventLog, count: usize) -> Vec<marauders_map::log::LogRecord> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match log.read(Topic::IncidentEvents, 0, 1000).await {
            Ok(records) if records.len() >= count => return records,
            Ok(records) => panic!(
                "only {} of {count} acknowledged messages survived",
                records.len()
            ),
            Err(error) => {
                assert!(
                    Instant::now() < deadline,
                    "log unreadable 30s after restart: {error}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
