//! Queries answer from the read model: read-your-writes through
//! `minOffset`, newest first, filters, keyset pages, comments, and the 400s,
//! 404s and 503 around them.

use std::time::{Duration, Instant};

use marauders_map::domain::{Location, Role, Severity};
use marauders_testkit::{ApiResponse, ReportIncident, TestApp, TestUser};
use serde_json::Value;
use uuid::Uuid;

/// Hagrid, a prefect, reports five skrewts, alternately CRITICAL and LOW;
/// their ids in order, and the offset of the last.
async fn five_skrewts(app: &TestApp) -> (TestUser, Vec<Uuid>, u64) {
    let hagrid = app.user_named("hagrid", Role::Prefect).await;
    let mut ids = Vec::new();
    let mut last_offset = 0;
    for n in 0..5 {
        let severity = if n % 2 == 0 {
            Severity::Critical
        } else {
            Severity::Low
        };
        let report = ReportIncident::new(&format!("Blast-Ended Skrewt #{n}"))
            .severity(severity)
            .location(Location::GreatHall);
        let incident = app.reported(&hagrid, report).await;
        ids.push(incident.id);
        last_offset = incident.offset;
    }
    (hagrid, ids, last_offset)
}

fn titles(page: &ApiResponse) -> Vec<&str> {
    page.item_strings("title")
}

#[tokio::test]
async fn a_query_with_min_offset_reads_the_commands_own_write() {
    let app = TestApp::spawn().await;
    let (hagrid, ids, last_offset) = five_skrewts(&app).await;

    let one = app
        .get_incident_as_of(&hagrid, ids[4], last_offset)
        .await
        .assert_status(200);

    assert_eq!(one.body["title"], "Blast-Ended Skrewt #4");
    app.stop().await;
}

#[tokio::test]
async fn incidents_are_listed_newest_first_in_keyset_pages() {
    let app = TestApp::spawn().await;
    let (hagrid, _, last_offset) = five_skrewts(&app).await;

    let first = app
        .list_incidents(&hagrid, &format!("limit=2&minOffset={last_offset}"))
        .await
        .assert_status(200);
    let cursor = first.body["nextCursor"].as_str().unwrap().to_owned();
    let second = app
        .list_incidents(&hagrid, &format!("limit=2&cursor={cursor}"))
        .await;

    assert_eq!(
        titles(&first),
        ["Blast-Ended Skrewt #4", "Blast-Ended Skrewt #3"]
    );
    assert_eq!(
        titles(&second),
        ["Blast-Ended Skrewt #2", "Blast-Ended Skrewt #1"]
    );
    app.stop().await;
}

#[tokio::test]
async fn incidents_are_filtered_by_severity() {
    let app = TestApp::spawn().await;
    let (hagrid, _, last_offset) = five_skrewts(&app).await;

    let critical = app
        .list_incidents(
            &hagrid,
            &format!("severity=CRITICAL&minOffset={last_offset}"),
        )
        .await
        .assert_status(200);

    assert_eq!(
        titles(&critical),
        [
            "Blast-Ended Skrewt #4",
            "Blast-Ended Skrewt #2",
            "Blast-Ended Skrewt #0"
        ]
    );
    assert_eq!(critical.body["nextCursor"], Value::Null, "the last page");
    app.stop().await;
}

#[tokio::test]
async fn comments_are_listed_oldest_first() {
    let app = TestApp::spawn().await;
    let (hagrid, ids, _) = five_skrewts(&app).await;
    app.comment(&hagrid, ids[0], "first")
        .await
        .assert_status(201);
    let second = app
        .comment(&hagrid, ids[0], "second")
        .await
        .assert_status(201);

    let comments = app
        .comments(
            &hagrid,
            ids[0],
            &format!("minOffset={}", second.event_offset()),
        )
        .await
        .assert_status(200);

    assert_eq!(comments.item_strings("body"), ["first", "second"]);
    app.stop().await;
}

#[tokio::test]
async fn a_deleted_incident_and_its_comments_are_404() {
    let app = TestApp::spawn().await;
    let (hagrid, ids, _) = five_skrewts(&app).await;
    app.comment(&hagrid, ids[0], "first")
        .await
        .assert_status(201);

    let deleted = app.delete(&hagrid, ids[0]).await.assert_status(204);

    app.get_incident_as_of(&hagrid, ids[0], deleted.event_offset())
        .await
        .assert_error(404, "not_found");
    app.comments(&hagrid, ids[0], "")
        .await
        .assert_error(404, "not_found");
    app.stop().await;
}

#[tokio::test]
async fn bad_query_values_are_400() {
    let app = TestApp::spawn().await;
    let trelawney = app.user(Role::Student).await;

    for query in [
        "status=DONE",
        "severity=meh",
        "location=AZKABAN",
        "limit=0",
        "limit=101",
        "limit=x",
        "cursor=nope",
        "minOffset=-3",
    ] {
        app.list_incidents(&trelawney, query)
            .await
            .assert_status(400);
    }
    app.stop().await;
}

#[tokio::test]
async fn an_incident_id_that_is_not_a_uuid_is_404() {
    let app = TestApp::spawn().await;
    let trelawney = app.user(Role::Student).await;

    app.get_incident(&trelawney, "not-a-uuid")
        .await
        .assert_error(404, "not_found");
    app.stop().await;
}

#[tokio::test]
async fn a_min_offset_the_log_has_not_reached_is_400_at_once() {
    let app = TestApp::spawn().await;
    let trelawney = app.user(Role::Student).await;

    // No command returned this offset: refused at once rather than held
    // for the two-second wait.
    let started = Instant::now();
    let answer = app
        .list_incidents(&trelawney, "minOffset=1000000")
        .await
        .assert_status(400);

    assert!(answer.field_error("minOffset").is_some(), "{}", answer.body);
    assert!(started.elapsed() < Duration::from_secs(1));
    app.stop().await;
}

#[tokio::test]
async fn queries_need_an_access_token() {
    let app = TestApp::spawn().await;

    app.get("/api/incidents").await.assert_status(401);
    app.stop().await;
}

#[tokio::test]
async fn a_query_waiting_for_a_projector_that_does_not_run_is_503() {
    let app = TestApp::builder()
        .iggy_startup_wait(Duration::ZERO)
        .without_projectors()
        .spawn()
        .await;
    let binns = app.user(Role::Student).await;
    let ghost = app
        .reported(&binns, ReportIncident::new("A ghost in class"))
        .await;

    app.get_incident_as_of(&binns, ghost.id, ghost.offset)
        .await
        .assert_error(503, "unavailable");
    app.stop().await;
}
