//! One identity per log: state kept on a database refuses to be used with
//! another log, visibly — and a log moved with `log migrate` is still the
//! same log.

use marauders_map::domain::Role;
use marauders_map::log::{EventLog, LogConfig, Topic};
use marauders_map::log_migration::migrate_embedded_log_to_iggy;
use marauders_testkit::{
    EVENTUALLY, IggyServer, ReportIncident, TestApp, TestDatabase, eventually,
};

/// Reports an incident and waits for the read model to have it.
async fn an_incident_the_read_model_has(app: &TestApp) -> (marauders_testkit::TestUser, String) {
    let professor = app.user(Role::Professor).await;
    let troll = app.reported(&professor, ReportIncident::new("Troll")).await;
    app.get_incident_as_of(&professor, troll.id, troll.offset)
        .await
        .assert_status(200);
    (professor, troll.id.to_string())
}

/// What a database served by one log looks like when started on another:
/// every projector's offset names the first log.
async fn pretend_the_projections_came_from_another_log(database: &TestDatabase) {
    sqlx::query("UPDATE projector_offsets SET log_id = gen_random_uuid()")
        .execute(&database.pool)
        .await
        .unwrap();
}

async fn assert_refused_visibly(
    app: &TestApp,
    professor: &marauders_testkit::TestUser,
    incident: &str,
) {
    let health = app.get("/health").await.assert_status(503);
    assert!(
        health.body["projectionProblems"]["read-model"]
            .as_str()
            .is_some_and(|problem| problem.contains("rebuild")),
        "{}",
        health.body
    );
    // Never a stale 404: the read model is not this log's.
    app.get_incident(professor, incident)
        .await
        .assert_error(503, "unavailable");
    let fresh = app
        .reported(professor, ReportIncident::new("Basilisk"))
        .await;
    app.get_incident(professor, fresh.id)
        .await
        .assert_error(503, "unavailable");
    app.list_incidents(professor, "")
        .await
        .assert_error(503, "unavailable");
    let statuses = app.projections(professor).await.assert_status(200);
    let read_model = statuses
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|status| status["name"] == "read-model")
        .unwrap()
        .clone();
    assert_eq!(read_model["state"], "wrong-log", "{read_model}");
}

#[tokio::test]
async fn projections_of_another_log_are_refused_with_a_503_never_a_stale_404() {
    let app = TestApp::spawn().await;
    let (professor, incident) = an_incident_the_read_model_has(&app).await;
    let stopped = app.stop().await;
    pretend_the_projections_came_from_another_log(&stopped.database).await;

    let app = stopped.restart().await;

    assert_refused_visibly(&app, &professor, &incident).await;
    app.stop().await;
}

#[tokio::test]
async fn rebuilding_a_projection_of_another_log_makes_it_this_logs() {
    let app = TestApp::spawn().await;
    let (professor, incident) = an_incident_the_read_model_has(&app).await;
    let stopped = app.stop().await;
    pretend_the_projections_came_from_another_log(&stopped.database).await;
    let app = stopped.restart().await;

    app.rebuild_projection(&professor, "read-model")
        .await
        .assert_status(202);

    eventually("the rebuilt read model answers", EVENTUALLY, || async {
        (app.get_incident(&professor, &incident).await.status == 200).then_some(())
    })
    .await;
    app.stop().await;
}

#[tokio::test]
#[ignore = "needs an Iggy server: put iggy-server on PATH or set IGGY_URL (scripts/test does this when it can)"]
async fn a_database_first_served_with_iggy_is_refused_on_the_embedded_log() {
    let server = IggyServer::start().await;
    let app = TestApp::builder().iggy(&server).spawn().await;
    let (professor, incident) = an_incident_the_read_model_has(&app).await;
    let stopped = app.stop().await;

    let app = TestApp::builder().database(stopped.database).spawn().await;

    assert_refused_visibly(&app, &professor, &incident).await;
    app.stop().await;
}

#[tokio::test]
async fn a_log_that_reports_more_than_it_holds_is_reported_as_inconsistent() {
    let app = TestApp::spawn().await;
    let harry = app.user(Role::Student).await;
    app.reported(&harry, ReportIncident::new("Troll")).await;
    // A truncated log: its head says five more events than it has.
    sqlx::query(
        "UPDATE event_log_heads SET next_offset = next_offset + 5 WHERE topic = 'incident-events'",
    )
    .execute(&app.database.pool)
    .await
    .unwrap();

    app.report_incident(&harry, ReportIncident::new("Basilisk"))
        .await
        .assert_error(503, "unavailable");
    let health = app.get("/health").await.assert_status(503);
    assert!(
        health.body["writeModel"]["problem"]
            .as_str()
            .is_some_and(|problem| problem.contains("inconsistent")),
        "{}",
        health.body
    );
    app.stop().await;
}

/// A populated embedded log, served and then stopped.
async fn a_stopped_service_with_history() -> (
    marauders_testkit::StoppedApp,
    marauders_testkit::TestUser,
    Vec<String>,
) {
    let app = TestApp::spawn().await;
    let professor = app.user(Role::Professor).await;
    let mut incidents = Vec::new();
    let mut last = 0;
    for n in 0..3 {
        let reported = app
            .reported(&professor, ReportIncident::new(&format!("Incident {n}")))
            .await;
        last = app
            .comment(&professor, reported.id, "Seen")
            .await
            .assert_status(201)
            .event_offset();
        incidents.push(reported.id.to_string());
    }
    app.get_incident_as_of(&professor, &incidents[2], last)
        .await
        .assert_status(200);
    (app.stop().await, professor, incidents)
}

#[tokio::test]
#[ignore = "needs an Iggy server: put iggy-server on PATH or set IGGY_URL (scripts/test does this when it can)"]
async fn log_migrate_copies_the_embedded_log_to_iggy_as_the_same_log() {
    let server = IggyServer::start().await;
    let stream = format!("migrated-{}", uuid::Uuid::new_v4().simple());
    let (stopped, professor, incidents) = a_stopped_service_with_history().await;
    let source = EventLog::open(LogConfig::Postgres(stopped.database.pool.clone()))
        .await
        .unwrap();
    let (log_id, ends) = (
        source.log_id().await.unwrap(),
        [
            source.log_end(Topic::IncidentEvents).await.unwrap(),
            source.log_end(Topic::PresenceEvents).await.unwrap(),
            source.log_end(Topic::AuthEvents).await.unwrap(),
        ],
    );
    source.shutdown().await;

    let report = migrate_embedded_log_to_iggy(
        &stopped.database.url,
        &stopped.database.pool,
        server.config(&stream),
    )
    .await
    .unwrap();

    assert_eq!(report.log_id, log_id);
    let copied: Vec<u64> = report.copied.iter().map(|(_, count)| *count).collect();
    assert_eq!(copied, ends);
    // The same database on the copy: no rebuild, the projections go on.
    let app = TestApp::builder()
        .database(stopped.database)
        .iggy_stream(&server.url, &stream)
        .spawn()
        .await;
    assert_eq!(app.log().await.log_id().await.unwrap(), log_id);
    app.get("/health").await.assert_status(200);
    for incident in &incidents {
        app.get_incident(&professor, incident)
            .await
            .assert_status(200);
    }
    let after = app
        .reported(&professor, ReportIncident::new("After the move"))
        .await;
    assert_eq!(
        after.offset, ends[0],
        "the copy continues at the same offsets"
    );
    app.get_incident_as_of(&professor, after.id, after.offset)
        .await
        .assert_status(200);
    app.stop().await;
}

#[tokio::test]
#[ignore = "needs an Iggy server: put iggy-server on PATH or set IGGY_URL (scripts/test does this when it can)"]
async fn log_migrate_refuses_a_stream_that_is_not_empty() {
    let server = IggyServer::start().await;
    let occupied = TestApp::builder().iggy(&server).spawn().await;
    let harry = occupied.user(Role::Student).await;
    occupied
        .reported(&harry, ReportIncident::new("Already here"))
        .await;
    let stream = occupied
        .iggy_stream()
        .expect("an app on Iggy has a stream of its own")
        .to_owned();
    occupied.stop().await;
    let (stopped, _, _) = a_stopped_service_with_history().await;

    let refused = migrate_embedded_log_to_iggy(
        &stopped.database.url,
        &stopped.database.pool,
        server.config(&stream),
    )
    .await
    .unwrap_err();

    assert!(
        refused
            .to_string()
            .contains("stream that does not exist yet"),
        "{refused}"
    );
}

#[tokio::test]
async fn log_migrate_refuses_while_the_service_runs() {
    let app = TestApp::spawn().await;

    let refused = migrate_embedded_log_to_iggy(
        &app.database.url,
        &app.database.pool,
        marauders_map::log::iggy::IggyConfig::new("iggy://iggy:iggy@127.0.0.1:1"),
    )
    .await
    .unwrap_err();

    assert!(refused.to_string().contains("is running"), "{refused}");
    app.stop().await;
}
