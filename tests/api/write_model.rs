//! The write side's memory: rebuilt from the log at start-up, bounded by
//! snapshots, and the same whatever the backend. Plus the Iggy versions of
//! the race and outage tests.

use std::time::{Duration, Instant};

use marauders_map::commands::WriteModel;
use marauders_map::domain::{Location, Role, Severity};
use marauders_map::incident::IncidentFold;
use marauders_map::log::{EventLog, LogConfig, LogMessage, Topic};
use marauders_testkit::{
    IggyServer, ReportIncident, StoppedApp, TestApp, TestUser, eventually, fresh_stream_name,
};

async fn report_and_resolve(app: &TestApp, who: &TestUser, count: usize) {
    for n in 0..count {
        let incident = app
            .reported(who, ReportIncident::new(&format!("Peeves incident #{n}")))
            .await;
        app.resolve(who, incident.id, "Bloody Baron called")
            .await
            .assert_status(200);
    }
}

/// An app that handled five reports and resolutions (ten events), stopped —
/// which saved a snapshot at offset 10; and its fold before stopping.
async fn stopped_after_ten_events() -> (StoppedApp, IncidentFold) {
    let app = TestApp::spawn().await;
    let filch = app.user(Role::Prefect).await;
    report_and_resolve(&app, &filch, 5).await;
    let before = app.write_model.fold();
    (app.stop().await, before)
}

#[tokio::test]
async fn a_restart_resumes_from_the_snapshot_and_reaches_the_same_state() {
    let (stopped, before) = stopped_after_ten_events().await;
    let log = stopped.open_log().await;

    let with_snapshot = WriteModel::new(log.clone(), stopped.database.pool.clone());
    let report = with_snapshot.rebuild(true).await.unwrap();

    assert_eq!(report.snapshot_offset, Some(10));
    assert_eq!(
        report.events_replayed, 0,
        "nothing after the snapshot to replay"
    );
    assert_eq!(with_snapshot.fold(), before);
    log.shutdown().await;
}

#[tokio::test]
async fn a_rebuild_from_scratch_reaches_the_same_state_as_the_snapshot() {
    let (stopped, before) = stopped_after_ten_events().await;
    let log = stopped.open_log().await;

    let from_scratch = WriteModel::new(log.clone(), stopped.database.pool.clone());
    let report = from_scratch.rebuild(false).await.unwrap();

    assert_eq!((report.snapshot_offset, report.events_replayed), (None, 10));
    assert_eq!(
        from_scratch.fold(),
        before,
        "the snapshot is only a shortcut"
    );
    log.shutdown().await;
}

#[tokio::test]
async fn a_snapshot_beyond_the_log_is_ignored() {
    let app = TestApp::spawn().await;
    let argus = app.user(Role::Prefect).await;
    report_and_resolve(&app, &argus, 1).await;
    let stopped = app.stop().await;
    // Pretend the snapshot was taken against a longer (another) log.
    sqlx::query("UPDATE write_model_snapshots SET next_offset = 1000")
        .execute(&stopped.database.pool)
        .await
        .unwrap();
    let log = stopped.open_log().await;

    let model = WriteModel::new(log.clone(), stopped.database.pool.clone());
    let report = model.rebuild(true).await.unwrap();

    assert_eq!(
        (
            report.snapshot_offset,
            report.events_replayed,
            report.incidents
        ),
        (None, 2, 1)
    );
    log.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an Iggy server: put iggy-server on PATH or set IGGY_URL (scripts/test does this when it can)"]
async fn with_iggy_two_instances_racing_agree_on_one_winner() {
    let server = IggyServer::start().await;
    let first = TestApp::builder().iggy(&server).spawn().await;
    let second = first.second_instance().await;
    let fleur = first.user(Role::Prefect).await;
    for n in 0..5 {
        let dragon = first
            .reported(
                &fleur,
                ReportIncident::new(&format!("Dragon #{n}"))
                    .severity(Severity::Critical)
                    .location(Location::ForbiddenForest),
            )
            .await;
        let (a, b) = tokio::join!(
            first.resolve(&fleur, dragon.id, "Aguamenti"),
            second.resolve(&fleur, dragon.id, "Glacius"),
        );
        let mut statuses = [a.status.as_u16(), b.status.as_u16()];
        statuses.sort();
        assert_eq!(statuses, [200, 409]);
    }
    first.write_model.sync().await.unwrap();
    second.write_model.sync().await.unwrap();
    assert_eq!(first.write_model.fold(), second.write_model.fold());
    second.stop().await;
    first.stop().await;
}

fn dementors() -> ReportIncident {
    ReportIncident::new("Dementors")
        .severity(Severity::Critical)
        .location(Location::Hogsmeade)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs iggy-server on PATH (scripts/test runs it when it is)"]
async fn iggy_process_commands_answer_503_promptly_while_iggy_is_down() {
    let mut server = IggyServer::start().await;
    let app = TestApp::builder().iggy(&server).spawn().await;
    let cho = app.user(Role::Student).await;

    server.kill_9();
    let started = Instant::now();
    app.report_incident(&cho, dementors())
        .await
        .assert_error(503, "unavailable");

    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answered in {:?}",
        started.elapsed()
    );
    server.restart().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs iggy-server on PATH (scripts/test runs it when it is)"]
async fn iggy_process_commands_work_again_after_iggy_restarts() {
    let mut server = IggyServer::start().await;
    let app = TestApp::builder().iggy(&server).spawn().await;
    let cho = app.user(Role::Student).await;
    server.kill_9();
    app.report_incident(&cho, dementors())
        .await
        .assert_status(503);

    server.restart().await;

    eventually(
        "commands work again after Iggy came back",
        Duration::from_secs(30),
        || async { (app.report_incident(&cho, dementors()).await.status == 201).then_some(()) },
    )
    .await;
    app.stop().await;
}

/// A crash mid-append leaves offsets without messages on Iggy (see
/// `iggy_process_readers_step_over_a_hole_left_by_a_crash_mid_append`). A
/// service that starts on such a log folds past the hole: commands and
/// queries work, a retried command takes effect once, and the write model
/// reports no problem.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs iggy-server on PATH (scripts/test runs it when it is)"]
async fn iggy_process_a_service_on_a_log_with_a_hole_serves_commands() {
    let mut server = IggyServer::start().await;
    let stream = fresh_stream_name();
    let before = TestApp::builder()
        .iggy_stream(&server.url, &stream)
        .spawn()
        .await;
    let cho = before.user(Role::Student).await;
    for _ in 0..3 {
        before.reported(&cho, dementors()).await;
    }
    before.stop().await;
    // Two appends in flight when Iggy is killed: numbered, never written.
    let log = EventLog::open(LogConfig::Iggy(server.config(&stream)))
        .await
        .unwrap();
    log.wait_until_ready(Duration::from_secs(20)).await.unwrap();
    let in_flight: Vec<LogMessage> = (0..2)
        .map(|n| LogMessage {
            id: uuid::Uuid::now_v7(),
            payload: format!("cut short {n}").into(),
        })
        .collect();
    log.append(Topic::IncidentEvents, &in_flight).await.unwrap();
    log.shutdown().await;
    server.kill_9();
    server.tear_last_appends(5, 2);
    server.restart().await;

    let after = TestApp::builder()
        .iggy_stream(&server.url, &stream)
        .spawn()
        .await;
    let hannah = after.user(Role::Student).await;
    // The first append after such a crash may land where it cannot be read:
    // then the answer is "outcome unknown" (503), and the client's retry
    // with the same key takes effect — once.
    let mut answer = after
        .report_incident_with_key(&hannah, dementors(), "after-the-crash")
        .await;
    if answer.status == 503 {
        answer = after
            .report_incident_with_key(&hannah, dementors(), "after-the-crash")
            .await;
    }
    let offset = answer.assert_status(201).event_offset();

    let listed = after
        .list_incidents(&hannah, &format!("minOffset={offset}"))
        .await
        .assert_status(200);
    assert_eq!(
        listed.items().len(),
        4,
        "three from before the crash and one after"
    );
    let end = after
        .log()
        .await
        .log_end(Topic::IncidentEvents)
        .await
        .unwrap();
    let health = after.get("/health").await.assert_status(200);
    assert_eq!(
        health.body["writeModel"]["nextOffset"], end,
        "{}",
        health.body
    );
    assert_eq!(
        health.body["writeModel"]["problem"],
        serde_json::Value::Null,
        "{}",
        health.body
    );
    after.stop().await;
}
