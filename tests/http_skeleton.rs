//! The service as a whole: it starts on a free port, says how it is, serves
//! the envelope schema, answers unknown routes with the JSON error shape,
//! and shuts down when told to — also when its log is unreachable.

mod common;

use std::time::{Duration, Instant};

use common::spawn_app;

#[tokio::test]
async fn health_reports_the_database_and_the_embedded_log() {
    let app = spawn_app().await;

    let (status, body) = app.get("/health").await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["database"], "up");
    assert_eq!(body["log"]["backend"], "postgres");
    assert_eq!(body["log"]["topics"]["incident-events"]["logEnd"], 0);
    app.stop().await;
}

#[tokio::test]
async fn the_event_envelope_schema_is_served() {
    let app = spawn_app().await;

    let (status, schema) = app.get("/schemas/event-envelope.json").await;

    assert_eq!(status, 200);
    assert_eq!(schema["title"], "EventEnvelope");
    assert_eq!(schema["properties"]["source"]["const"], "gryffindor-api");
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_route_gets_a_json_404() {
    let app = spawn_app().await;

    let (status, body) = app.get("/api/no-such-thing").await;

    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
    assert_eq!(body["error"]["message"], "no route for /api/no-such-thing");
    app.stop().await;
}

#[tokio::test]
async fn with_iggy_unreachable_health_is_503_and_shutdown_does_not_hang() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let iggy_url = format!("iggy://iggy:iggy@127.0.0.1:{port}");
    let app = common::spawn_app_on(common::fresh_database().await, Some(iggy_url), 0).await;

    let started = Instant::now();
    let (status, body) = app.get("/health").await;

    assert_eq!(status, 503, "{body}");
    assert_eq!(body["log"]["backend"], "iggy");
    assert_eq!(body["log"]["status"], "down");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered in {:?}",
        started.elapsed()
    );
    let (_, drain) = app.stop().await;
    assert!(drain < Duration::from_secs(5), "shutdown took {drain:?}");
}
