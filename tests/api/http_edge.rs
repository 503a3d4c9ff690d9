//! The service at its edge: it starts on a free port, says how it is,
//! serves the envelope schema, answers unknown routes and bad bodies with
//! the JSON error shape, and shuts down when told to — also when its log is
//! unreachable.

use std::time::{Duration, Instant};

use marauders_testkit::{TestApp, free_port};

#[tokio::test]
async fn health_reports_the_database_and_the_embedded_log() {
    let app = TestApp::spawn().await;

    let health = app.get("/health").await.assert_status(200);

    assert_eq!(health.body["status"], "ok");
    assert_eq!(health.body["database"], "up");
    assert_eq!(health.body["log"]["backend"], "postgres");
    assert_eq!(health.body["log"]["topics"]["incident-events"]["logEnd"], 0);
    let log_id = health.body["log"]["logId"]
        .as_str()
        .expect("the log's identity, as logId");
    assert!(log_id.parse::<uuid::Uuid>().is_ok(), "logId {log_id}");
    app.stop().await;
}

#[tokio::test]
async fn the_event_envelope_schema_is_served() {
    let app = TestApp::spawn().await;

    let schema = app
        .get("/schemas/event-envelope.json")
        .await
        .assert_status(200);

    assert_eq!(schema.body["title"], "EventEnvelope");
    assert_eq!(
        schema.body["properties"]["source"]["const"],
        "gryffindor-api"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_route_gets_a_json_404() {
    let app = TestApp::spawn().await;

    let answer = app
        .get("/api/no-such-thing")
        .await
        .assert_error(404, "not_found");

    assert_eq!(answer.error_message(), "no route for /api/no-such-thing");
    app.stop().await;
}

/// An Iggy URL nothing listens on, and a service that does not wait for it.
async fn app_with_an_unreachable_iggy() -> TestApp {
    TestApp::builder()
        .iggy_url(&format!("iggy://iggy:iggy@127.0.0.1:{}", free_port()))
        .iggy_startup_wait(Duration::ZERO)
        .spawn()
        .await
}

#[tokio::test]
async fn with_iggy_unreachable_health_answers_503_promptly() {
    let app = app_with_an_unreachable_iggy().await;

    let started = Instant::now();
    let health = app.get("/health").await.assert_status(503);

    assert_eq!(health.body["log"]["backend"], "iggy");
    assert_eq!(health.body["log"]["status"], "down");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered in {:?}",
        started.elapsed()
    );
    app.stop().await;
}

#[tokio::test]
async fn with_iggy_unreachable_shutdown_does_not_hang() {
    let app = app_with_an_unreachable_iggy().await;
    app.get("/health").await.assert_status(503);

    let stopped = app.stop().await;

    assert!(
        stopped.drained_in < Duration::from_secs(5),
        "shutdown took {:?}",
        stopped.drained_in
    );
}

// ---- bad bodies: the error contract --------------------------------------------

/// `POST /api/auth/register` with `Content-Type: application/json` and a
/// raw body.
async fn register_raw(
    app: &TestApp,
    body: impl Into<reqwest::Body>,
) -> marauders_testkit::ApiResponse {
    app.send(
        app.client
            .post(app.url("/api/auth/register"))
            .header("Content-Type", "application/json")
            .body(body),
    )
    .await
}

#[tokio::test]
async fn malformed_json_is_a_400_that_says_so() {
    let app = TestApp::spawn().await;

    let answer = register_raw(&app, "{\"email\": ")
        .await
        .assert_error(400, "bad_request");

    assert!(
        answer.error_message().starts_with("malformed JSON"),
        "{}",
        answer.body
    );
    app.stop().await;
}

#[tokio::test]
async fn json_of_the_wrong_types_is_a_400() {
    let app = TestApp::spawn().await;

    register_raw(&app, r#"{"email": 42, "password": [], "displayName": {}}"#)
        .await
        .assert_error(400, "bad_request");
    app.stop().await;
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_415() {
    let app = TestApp::spawn().await;

    app.send(
        app.client
            .post(app.url("/api/auth/register"))
            .header("Content-Type", "text/plain")
            .body("hello"),
    )
    .await
    .assert_error(415, "unsupported_media_type");
    app.stop().await;
}

#[tokio::test]
async fn a_body_over_64_kib_is_a_413() {
    let app = TestApp::spawn().await;
    let huge = format!(r#"{{"email": "{}"}}"#, "x".repeat(100 * 1024));

    register_raw(&app, huge)
        .await
        .assert_error(413, "payload_too_large");
    app.stop().await;
}

#[tokio::test]
async fn a_method_a_route_does_not_have_is_a_405() {
    let app = TestApp::spawn().await;

    app.send(app.client.delete(app.url("/api/auth/register")))
        .await
        .assert_error(405, "method_not_allowed");
    app.stop().await;
}
