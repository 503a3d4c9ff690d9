//! What only a real Iggy server can show: acknowledged appends survive
//! `kill -9`, a dead server fails requests promptly instead of hanging them,
//! the log reconnects by itself, and racing instances create the stream and
//! topics once.
//!
//! `iggy_process_*` tests start, kill and restart their own `iggy-server`, so
//! they need the binary on PATH (an `IGGY_URL` alone is not enough). All are
//! `#[ignore]`d unless a server is available (see `scripts/test`).

use std::time::{Duration, Instant};

use bytes::Bytes;
use marauders_map::log::iggy::IggyConfig;
use marauders_map::log::{EventLog, LogConfig, LogMessage, LogRecord, Topic};
use marauders_testkit::{
    IGGY_IGNORE_REASON, IGGY_PROCESS_IGNORE_REASON, IggyServer, TestBackend, eventually, free_port,
};
use uuid::Uuid;

fn message(n: usize) -> LogMessage {
    LogMessage {
        id: Uuid::now_v7(),
        payload: Bytes::from(format!("acknowledged {n}")),
    }
}

/// A local server, a stream of its own, and the log on it.
async fn local_server_and_log() -> (IggyServer, EventLog) {
    let TestBackend::Iggy { server, stream } = TestBackend::iggy().await else {
        unreachable!("TestBackend::iggy is an Iggy backend")
    };
    let log = EventLog::open(LogConfig::Iggy(server.config(&stream)))
        .await
        .unwrap();
    log.wait_until_ready(Duration::from_secs(20)).await.unwrap();
    (server, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs iggy-server on PATH (scripts/test runs it when it is)"]
async fn iggy_process_acknowledged_appends_survive_kill_9() {
    let (mut server, log) = local_server_and_log().await;
    let mut acknowledged = Vec::new();
    for n in 0..50 {
        let message = message(n);
        log.append(Topic::IncidentEvents, std::slice::from_ref(&message))
            .await
            .unwrap();
        acknowledged.push(message.id);
    }

    server.kill_9();
    server.restart().await;

    let after = wait_for_read(&log, 50).await;
    let ids: Vec<Uuid> = after.iter().map(|record| record.id).collect();
    assert_eq!(
        ids, acknowledged,
        "every acknowledged append is still there, in order"
    );
    log.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs iggy-server on PATH (scripts/test runs it when it is)"]
async fn iggy_process_a_dead_server_fails_appends_and_reads_fast() {
    let (mut server, log) = local_server_and_log().await;
    log.append(Topic::IncidentEvents, &[message(0)])
        .await
        .unwrap();

    server.kill_9();
    let started = Instant::now();
    let error = log
        .append(Topic::IncidentEvents, &[message(1)])
        .await
        .unwrap_err();

    assert!(error.is_unavailable(), "{error}");
    // A bound on "does not hang", far above the 3s request timeout.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        log.read(Topic::IncidentEvents, 0, 10)
            .await
            .is_err_and(|error| error.is_unavailable())
    );
    log.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs iggy-server on PATH (scripts/test runs it when it is)"]
async fn iggy_process_the_log_recovers_by_itself_after_a_restart() {
    let (mut server, log) = local_server_and_log().await;
    log.append(Topic::IncidentEvents, &[message(0)])
        .await
        .unwrap();
    server.kill_9();
    log.append(Topic::IncidentEvents, &[message(1)])
        .await
        .unwrap_err();

    server.restart().await;

    let offsets = eventually(
        "appends work again after the restart",
        Duration::from_secs(30),
        || async { log.append(Topic::IncidentEvents, &[message(2)]).await.ok() },
    )
    .await;
    assert_eq!(offsets, [1], "the failed append left nothing behind");
    log.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an Iggy server: put iggy-server on PATH or set IGGY_URL (scripts/test does this when it can)"]
async fn instances_starting_together_create_the_stream_and_topics_once() {
    let TestBackend::Iggy { server, stream } = TestBackend::iggy().await else {
        unreachable!("TestBackend::iggy is an Iggy backend")
    };
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

/// A log configured for an Iggy server that is not there.
async fn log_of_an_unreachable_iggy() -> EventLog {
    let config = IggyConfig::new(format!("iggy://iggy:iggy@127.0.0.1:{}", free_port()));
    EventLog::open(LogConfig::Iggy(config)).await.unwrap()
}

#[tokio::test]
async fn an_unreachable_iggy_is_reported_unavailable_not_hung() {
    let log = log_of_an_unreachable_iggy().await;

    let started = Instant::now();
    let not_ready = log
        .wait_until_ready(Duration::from_millis(500))
        .await
        .unwrap_err();
    let not_appended = log
        .append(Topic::IncidentEvents, &[message(0)])
        .await
        .unwrap_err();

    assert!(not_ready.is_unavailable(), "{not_ready}");
    assert!(not_appended.is_unavailable(), "{not_appended}");
    assert!(started.elapsed() < Duration::from_secs(5));
    log.shutdown().await;
}

#[tokio::test]
async fn an_unavailable_iggy_error_does_not_show_the_password() {
    let log = log_of_an_unreachable_iggy().await;

    let error = log
        .append(Topic::IncidentEvents, &[message(0)])
        .await
        .unwrap_err();

    assert!(
        error.to_string().contains("iggy://iggy:***@"),
        "password redacted: {error}"
    );
    log.shutdown().await;
}

/// What `kill -9` leaves when it strikes mid-append, between Iggy's write of
/// a batch's messages and of their index entries: the restarted server ends
/// the log at the last indexed message (3), and the first message appended
/// after it lands at an offset that can never be read — a *hole* — while
/// later ones read normally. Readers step over the hole, at the tail and
/// once messages follow; the append that fell into it is answered "outcome
/// unknown", as any append that cannot be found, and the next lands after
/// it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs iggy-server on PATH (scripts/test runs it when it is)"]
async fn iggy_process_readers_step_over_a_hole_left_by_a_crash_mid_append() {
    let (mut server, log) = local_server_and_log().await;
    let written: Vec<LogMessage> = (0..5).map(message).collect();
    for message in &written {
        log.append(Topic::IncidentEvents, std::slice::from_ref(message))
            .await
            .unwrap();
    }
    server.kill_9();
    server.tear_last_appends(5, 2);
    server.restart().await;

    let first = eventually(
        "the log answers after the restart",
        Duration::from_secs(30),
        || async { log.read_page(Topic::IncidentEvents, 0, 100).await.ok() },
    )
    .await;
    assert_eq!(offsets(&first.records), [0, 1, 2]);
    assert_eq!(first.next_offset, 3);
    assert_eq!(log.log_end(Topic::IncidentEvents).await.unwrap(), 3);

    let into_the_hole = message(5);
    let unknown = log
        .append(Topic::IncidentEvents, std::slice::from_ref(&into_the_hole))
        .await
        .unwrap_err();
    assert!(unknown.is_unavailable(), "{unknown}");
    assert_eq!(log.log_end(Topic::IncidentEvents).await.unwrap(), 4);
    let tail = log.read_page(Topic::IncidentEvents, 3, 100).await.unwrap();
    assert!(tail.records.is_empty());
    assert_eq!(tail.next_offset, 4, "a hole at the end is stepped over");

    let after = message(6);
    let appended = log
        .append(Topic::IncidentEvents, std::slice::from_ref(&after))
        .await
        .unwrap();
    assert_eq!(appended, [4]);
    let page = log.read_page(Topic::IncidentEvents, 3, 100).await.unwrap();
    assert_eq!(offsets(&page.records), [4], "a hole is stepped over");
    assert_eq!(page.next_offset, 5);
    let mut ids = Vec::new();
    let mut from = 0;
    while from < 5 {
        let page = log
            .read_page(Topic::IncidentEvents, from, 100)
            .await
            .unwrap();
        ids.extend(page.records.iter().map(|record| record.id));
        from = page.next_offset;
    }
    assert_eq!(ids, [written[0].id, written[1].id, written[2].id, after.id]);
    log.shutdown().await;
}

fn offsets(records: &[LogRecord]) -> Vec<u64> {
    records.iter().map(|record| record.offset).collect()
}

async fn wait_for_read(log: &EventLog, count: usize) -> Vec<LogRecord> {
    let records = eventually(
        "the log is readable after the restart",
        Duration::from_secs(30),
        || async { log.read(Topic::IncidentEvents, 0, 1000).await.ok() },
    )
    .await;
    assert!(
        records.len() >= count,
        "only {} of {count} acknowledged messages survived",
        records.len()
    );
    records
}

/// `scripts/test` runs the Iggy tests with `--include-ignored` when a server
/// is available, and skips `iggy_process_*` when only `IGGY_URL` is: so
/// every ignored test must say which Iggy it needs, in the harness's words,
/// and the name must match. (An attribute takes only a literal, so each
/// test spells the reason out.)
#[test]
fn every_ignored_test_gives_a_standard_iggy_reason_that_matches_its_name() {
    let directory = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api");
    let mut checked = 0;
    for entry in std::fs::read_dir(&directory).unwrap() {
        let path = entry.unwrap().path();
        let source = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = source.lines().collect();
        for (n, line) in lines.iter().enumerate() {
            let Some(reason) = line.trim().strip_prefix("#[ignore") else {
                continue;
            };
            let test_name = lines[n..]
                .iter()
                .find_map(|line| line.trim().strip_prefix("async fn "))
                .and_then(|rest| rest.split('(').next())
                .unwrap_or_else(|| panic!("{}:{}: no test after #[ignore]", path.display(), n + 1));
            let expected = if test_name.starts_with("iggy_process_") {
                IGGY_PROCESS_IGNORE_REASON
            } else {
                IGGY_IGNORE_REASON
            };
            assert_eq!(
                reason,
                format!(" = \"{expected}\"]"),
                "{}:{}: {test_name}",
                path.display(),
                n + 1
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "found only {checked} ignored tests");
}
