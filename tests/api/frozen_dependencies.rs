//! A dependency that stops answering: every request that needs it is
//! answered 503 with `Retry-After` within the deadline, requests that do not
//! need it keep succeeding, and after the thaw the service resumes without
//! a restart — a command retried with its key then takes effect once.
//!
//! Frozen with [`FreezableProxy`] (it accepts connections and forwards
//! nothing, as a stopped server looks from the client), so that only the
//! test's own dependency freezes; and once with a real iggy-server stopped
//! by SIGSTOP. The deadlines are the test's own, short ones; the assertion
//! allows a wide margin (the product default is 5 s).

use std::time::{Duration, Instant};

use futures::future::join_all;
use marauders_map::domain::Role;
use marauders_map::events::EventPayload;
use marauders_map::incident::{FoldOutcome, IncidentFold};
use marauders_map::log::Topic;
use marauders_map::log::breaker::BreakerSettings;
use marauders_testkit::{
    ApiResponse, EVENTUALLY, FreezableProxy, IggyServer, ReportIncident, TEST_PASSWORD, TestApp,
    TestAppBuilder, TestUser, eventually, fresh_stream_name,
};

const IGGY_CALL: Duration = Duration::from_millis(300);
const REQUEST_DEADLINE: Duration = Duration::from_millis(1_000);
/// The wide margin over the deadlines above in which every answer must come.
const ANSWERED_WITHIN: Duration = Duration::from_secs(5);
const CONCURRENT: usize = 20;

fn quick_breaker() -> BreakerSettings {
    BreakerSettings {
        base_backoff: Duration::from_millis(200),
        max_backoff: Duration::from_secs(1),
    }
}

const DATABASE_TIMEOUT: Duration = Duration::from_millis(300);

/// Requests that need the frozen dependency, one after another: each 503
/// with Retry-After, in time.
async fn each_gets_503_in_time(app: &TestApp, harry: &TestUser, paths: &[&str]) {
    for path in paths {
        let started = Instant::now();
        let response = app.get_as(harry, path).await;
        assert_unavailable_with_retry_after(&response);
        assert!(
            started.elapsed() < ANSWERED_WITHIN,
            "{path} took {:?}",
            started.elapsed()
        );
    }
}

/// The app reaching its database through a proxy of its own, with the
/// test's short deadlines.
async fn with_a_freezable_database(builder: TestAppBuilder) -> TestApp {
    builder
        .database_behind_proxy()
        .deadlines(IGGY_CALL, REQUEST_DEADLINE, quick_breaker())
        .database_timeout(DATABASE_TIMEOUT)
        .spawn()
        .await
}

/// The app on a stream of its own on the Iggy server whose administrator's
/// URL is `admin_url` (through a proxy or not), as a user of its own.
async fn app_on_iggy_at(admin_url: &str) -> TestApp {
    TestApp::builder()
        .iggy_stream(admin_url, &fresh_stream_name())
        .deadlines(IGGY_CALL, REQUEST_DEADLINE, quick_breaker())
        .spawn()
        .await
}

fn assert_unavailable_with_retry_after(response: &ApiResponse) {
    assert_eq!(
        response.status.as_u16(),
        503,
        "{}: {}",
        response.request,
        response.body
    );
    assert!(
        response.headers.contains_key("retry-after"),
        "{} answered 503 without Retry-After",
        response.request
    );
    assert!(
        response.body["error"]["code"].is_string(),
        "{}: a JSON error, got {}",
        response.request,
        response.body
    );
}

/// 20 commands and 20 queries with `minOffset`, at once, while a dependency
/// they need is frozen: all 503 with Retry-After, in time. Returns the keys the commands
/// used, with their titles.
async fn commands_and_read_your_writes_get_503_in_time(
    app: &TestApp,
    harry: &TestUser,
    unapplied_offset: u64,
) -> Vec<(String, String)> {
    let keyed: Vec<(String, String)> = (0..CONCURRENT)
        .map(|n| (format!("frozen-{n}"), format!("Reported while frozen {n}")))
        .collect();
    let started = Instant::now();
    let commands =
        join_all(keyed.iter().map(|(key, title)| {
            app.report_incident_with_key(harry, ReportIncident::new(title), key)
        }));
    let unapplied = format!("/api/incidents?minOffset={unapplied_offset}");
    let read_your_writes = join_all((0..CONCURRENT).map(|_| app.get_as(harry, &unapplied)));
    let (commands, queries) = tokio::join!(commands, read_your_writes);
    let slowest = started.elapsed();
    eprintln!(
        "{} requests while frozen: all answered, the slowest after {slowest:?}",
        2 * CONCURRENT
    );
    for response in commands.iter().chain(&queries) {
        assert_unavailable_with_retry_after(response);
    }
    assert!(
        slowest < ANSWERED_WITHIN,
        "the slowest of {} requests took {slowest:?}",
        2 * CONCURRENT
    );
    keyed
}

async fn accepted_reports_titled(app: &TestApp, title: &str) -> usize {
    let mut fold = IncidentFold::default();
    app.events(Topic::IncidentEvents)
        .await
        .iter()
        .filter(|event| fold.apply(event) == FoldOutcome::Applied)
        .filter(|event| matches!(&event.payload, EventPayload::IncidentCreated(created) if created.title == title))
        .count()
}

/// After the thaw, without a restart: the first frozen command retried with
/// its key succeeds (or replays the original, if that landed late), and it
/// took effect exactly once.
async fn a_retry_after_the_thaw_takes_effect_once(
    app: &TestApp,
    harry: &TestUser,
    (key, title): &(String, String),
) {
    eventually("a command succeeds after the thaw", EVENTUALLY, || async {
        let retry = app
            .report_incident_with_key(harry, ReportIncident::new(title), key)
            .await;
        (retry.status.as_u16() == 201).then_some(())
    })
    .await;
    assert_eq!(accepted_reports_titled(app, title).await, 1);
}

#[tokio::test]
#[ignore = "needs an Iggy server: put iggy-server on PATH or set IGGY_URL (scripts/test does this when it can)"]
async fn a_frozen_iggy_gets_503_in_time_while_plain_queries_keep_working_and_thawing_needs_no_restart()
 {
    let server = IggyServer::start().await;
    let proxy = FreezableProxy::start(&server.address()).await;
    let app = app_on_iggy_at(&proxy.url_for(&server.url, &server.address())).await;
    let harry = app.user(Role::Student).await;
    let before = app
        .report_incident(&harry, ReportIncident::new("Reported before the freeze"))
        .await
        .assert_status(201);
    let (id, offset) = (
        before.body["id"].as_str().unwrap().to_owned(),
        before.offset.unwrap(),
    );
    app.get_as(&harry, &format!("/api/incidents/{id}?minOffset={offset}"))
        .await
        .assert_status(200);

    proxy.freeze();
    let keyed = commands_and_read_your_writes_get_503_in_time(&app, &harry, offset + 1).await;
    // The read model is PostgreSQL's: reads that need no log keep working.
    app.get_as(&harry, "/api/incidents")
        .await
        .assert_status(200);
    app.get_as(&harry, &format!("/api/incidents/{id}"))
        .await
        .assert_status(200);
    // Health says why.
    let health = app.get("/health").await.assert_status(503);
    assert_eq!(health.body["log"]["status"], "down");
    let breaker = health.body["log"]["breaker"]["state"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        breaker == "open" || breaker == "half-open",
        "breaker {breaker}"
    );

    proxy.thaw();
    a_retry_after_the_thaw_takes_effect_once(&app, &harry, &keyed[0]).await;
    let health = app.get("/health").await.assert_status(200);
    assert_eq!(health.body["log"]["breaker"]["state"], "closed");
    app.stop().await;
}

#[tokio::test]
#[ignore = "needs iggy-server on PATH (scripts/test runs it when it is)"]
async fn iggy_process_stopped_with_sigstop_gets_503_in_time_and_sigcont_needs_no_restart() {
    let server = IggyServer::start().await;
    let app = app_on_iggy_at(&server.url).await;
    let harry = app.user(Role::Student).await;
    let before = app
        .report_incident(&harry, ReportIncident::new("Reported before SIGSTOP"))
        .await
        .assert_status(201);

    server.freeze();
    let keyed =
        commands_and_read_your_writes_get_503_in_time(&app, &harry, before.offset.unwrap() + 1)
            .await;
    app.get_as(&harry, "/api/incidents")
        .await
        .assert_status(200);

    server.thaw();
    a_retry_after_the_thaw_takes_effect_once(&app, &harry, &keyed[0]).await;
    app.stop().await;
}

/// PostgreSQL frozen under the embedded log: every request needs it —
/// commands (the log is in it), queries, logins, Socket.IO handshakes —
/// and each is answered 503 (or refused) in time; what needs no database (the API document, the event schema)
/// keeps answering. After the thaw the pool recovers by itself: connections
/// that were stuck are closed, not reused.
#[tokio::test]
async fn a_frozen_database_gets_503_in_time_and_thawing_needs_no_restart() {
    let app = with_a_freezable_database(TestApp::builder()).await;
    let harry = app.user(Role::Student).await;
    let before = app
        .report_incident(&harry, ReportIncident::new("Reported before the freeze"))
        .await
        .assert_status(201);
    let id = before.body["id"].as_str().unwrap().to_owned();

    app.database_proxy().freeze();
    let keyed =
        commands_and_read_your_writes_get_503_in_time(&app, &harry, before.offset.unwrap() + 1)
            .await;
    each_gets_503_in_time(
        &app,
        &harry,
        &[
            "/api/incidents",
            &format!("/api/incidents/{id}"),
            "/api/notifications",
        ],
    )
    .await;
    the_database_breaker_opens(&app).await;
    let refused = app.get_as(&harry, "/api/incidents").await;
    assert_unavailable_with_retry_after(&refused);
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("the database is down")),
        "refused at once while the breaker is open: {}",
        refused.body
    );
    let started = Instant::now();
    let login = app.login(&harry.email, TEST_PASSWORD).await;
    assert_unavailable_with_retry_after(&login);
    assert!(started.elapsed() < ANSWERED_WITHIN);
    let started = Instant::now();
    let refused = marauders_testkit::socket::connect(
        &app.address,
        serde_json::json!({ "token": harry.token }),
    )
    .await
    .err()
    .expect("a handshake that needs the database is refused");
    assert!(
        refused.0.contains("cannot check accounts"),
        "refused with {}",
        refused.0
    );
    assert!(started.elapsed() < ANSWERED_WITHIN);
    let health = app.get("/health").await.assert_status(503);
    assert_eq!(health.body["database"], "down", "{}", health.body);
    app.get("/api/openapi.json").await.assert_status(200);
    app.get("/schemas/event-envelope.json")
        .await
        .assert_status(200);

    app.database_proxy().thaw();
    a_retry_after_the_thaw_takes_effect_once(&app, &harry, &keyed[0]).await;
    // The projector may have been caught by the freeze mid-step: it
    // resumes in its own time, and a read with `minOffset` waits for it.
    let read_before = format!("/api/incidents/{id}?minOffset={}", before.offset.unwrap());
    eventually(
        "the read model resumes after the thaw",
        EVENTUALLY,
        || async {
            let response = app.get_as(&harry, &read_before).await;
            (response.status.as_u16() == 200).then_some(())
        },
    )
    .await;
    let health = app.get("/health").await.assert_status(200);
    assert_eq!(
        health.body["databaseBreaker"]["state"], "closed",
        "{}",
        health.body
    );
    app.stop().await;
}

/// Once requests that needed the frozen database have failed, its breaker
/// finds it down: `/health` and `/metrics` say so.
async fn the_database_breaker_opens(app: &TestApp) {
    eventually("the database's breaker opens", EVENTUALLY, || async {
        let health = app.get("/health").await;
        (health.body["databaseBreaker"]["state"] != "closed").then_some(())
    })
    .await;
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"marauders_breaker_state{dependency="database",state="closed"} 0"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("marauders_metrics_complete 0"),
        "what the database holds is missing, and said to be: {metrics}"
    );
}

/// PostgreSQL frozen while Iggy holds the log: commands need only the log
/// and the write model, so they keep succeeding; queries of the read model
/// get 503 in time. After the thaw the read model catches up with what was
/// reported meanwhile.
#[tokio::test]
#[ignore = "needs an Iggy server: put iggy-server on PATH or set IGGY_URL (scripts/test does this when it can)"]
async fn a_frozen_database_on_iggy_fails_queries_in_time_while_commands_keep_working() {
    let server = IggyServer::start().await;
    let app = with_a_freezable_database(TestApp::builder().iggy(&server)).await;
    let harry = app.user(Role::Student).await;

    app.database_proxy().freeze();
    let during = app
        .report_incident(
            &harry,
            ReportIncident::new("Reported while the database is frozen"),
        )
        .await
        .assert_status(201);
    each_gets_503_in_time(&app, &harry, &["/api/incidents"]).await;
    the_database_breaker_opens(&app).await;
    // The breaker guards what needs the database, and nothing else.
    app.report_incident(
        &harry,
        ReportIncident::new("Reported while the database's breaker is open"),
    )
    .await
    .assert_status(201);

    app.database_proxy().thaw();
    let (id, offset) = (
        during.body["id"].as_str().unwrap().to_owned(),
        during.offset.unwrap(),
    );
    eventually(
        "the read model catches up after the thaw",
        EVENTUALLY,
        || async {
            let response = app
                .get_as(&harry, &format!("/api/incidents/{id}?minOffset={offset}"))
                .await;
            (response.status.as_u16() == 200).then_some(())
        },
    )
    .await;
    app.stop().await;
}
