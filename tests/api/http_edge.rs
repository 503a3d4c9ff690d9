//! The service at its edge: it starts on a free port, says how it is,
//! serves the envelope schema, answers unknown routes and bad bodies with
//! the JSON error shape — an oversized one readably — keeps its metrics
//! off the public port, sends security headers, and shuts down when told
//! to — also when its log is unreachable.

use std::time::{Duration, Instant};

use marauders_map::domain::Role;
use marauders_testkit::{ReportIncident, TestApp, free_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
async fn a_json_array_is_not_a_body_even_where_serde_would_take_it_field_by_field() {
    let app = TestApp::spawn().await;
    let harry = app.user(Role::Student).await;
    let troll = app.reported(&harry, ReportIncident::new("Troll")).await;

    let answer = app
        .send(
            app.client
                .put(app.url(&format!("/api/incidents/{}", troll.id)))
                .bearer_auth(&harry.token)
                .header("Content-Type", "application/json")
                .body("[null, null]"),
        )
        .await
        .assert_error(400, "bad_request");

    assert_eq!(
        answer.error_message(),
        "the body must be a JSON object, not an array"
    );
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

// ---- oversized bodies: a 413 the client can read ------------------------------

/// A JSON incident report of about `bytes` bytes.
fn report_of_size(bytes: usize) -> String {
    format!(
        r#"{{"title": "Troll", "severity": "LOW", "location": "LIBRARY", "description": "{}"}}"#,
        "x".repeat(bytes)
    )
}

#[tokio::test]
async fn a_5_mb_body_sent_whole_without_expect_gets_a_413_the_client_reads() {
    let app = TestApp::spawn().await;
    let harry = app.user(Role::Student).await;
    let body = report_of_size(5 * 1024 * 1024);

    // reqwest sends the whole body at once, as Node's fetch does: no
    // `Expect: 100-continue`. Each attempt must read the JSON 413, not a
    // reset connection.
    for _ in 0..3 {
        let answer = app
            .send(
                app.client
                    .post(app.url("/api/incidents"))
                    .bearer_auth(&harry.token)
                    .header("Content-Type", "application/json")
                    .body(body.clone()),
            )
            .await
            .assert_error(413, "payload_too_large");
        assert_eq!(
            answer.error_message(),
            "the request body is over the limit of 64 KiB"
        );
    }
    // ...and the service goes on serving that client.
    app.get("/health").await.assert_status(200);
    app.stop().await;
}

/// The head of a raw HTTP/1.1 request to `app` that the test writes itself.
async fn raw_connection(app: &TestApp) -> tokio::net::TcpStream {
    let address = app.address.trim_start_matches("http://");
    tokio::net::TcpStream::connect(address).await.unwrap()
}

/// Reads what the server sends until it has a whole response head and
/// `min_body` bytes after it (or closes).
async fn read_response(stream: &mut tokio::net::TcpStream, min_body: usize) -> String {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&received).into_owned();
        if let Some((_, body)) = text.split_once("\r\n\r\n")
            && body.len() >= min_body
        {
            return text;
        }
        let read = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buffer))
            .await
            .expect("the server answers")
            .unwrap();
        if read == 0 {
            return text;
        }
        received.extend_from_slice(&buffer[..read]);
    }
}

#[tokio::test]
async fn a_client_waiting_for_100_continue_gets_the_413_before_sending_its_body() {
    let app = TestApp::spawn().await;
    let mut stream = raw_connection(&app).await;

    stream
        .write_all(
            b"POST /api/auth/register HTTP/1.1\r\nHost: localhost\r\n\
              Content-Type: application/json\r\nContent-Length: 5000000\r\n\
              Expect: 100-continue\r\n\r\n",
        )
        .await
        .unwrap();
    let response = read_response(&mut stream, 1).await;

    assert!(
        response.starts_with("HTTP/1.1 413"),
        "no 100 Continue, a 413 at once: {response}"
    );
    assert!(response.contains("payload_too_large"), "{response}");
    app.stop().await;
}

#[tokio::test]
async fn an_oversized_chunked_body_gets_the_413_too() {
    let app = TestApp::spawn().await;
    let mut stream = raw_connection(&app).await;
    let chunk = "x".repeat(16 * 1024);

    let mut request = String::from(
        "POST /api/auth/register HTTP/1.1\r\nHost: localhost\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    for _ in 0..10 {
        request.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    request.push_str("0\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let response = read_response(&mut stream, 1).await;

    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("payload_too_large"), "{response}");
    app.stop().await;
}

#[tokio::test]
async fn a_small_chunked_body_is_read_as_usual() {
    let app = TestApp::spawn().await;
    let mut stream = raw_connection(&app).await;
    let body =
        r#"{"email": "harry@hogwarts.edu", "password": "alohomora-123", "displayName": "Harry"}"#;

    let request = format!(
        "POST /api/auth/register HTTP/1.1\r\nHost: localhost\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n\
         {:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let response = read_response(&mut stream, 1).await;

    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    app.stop().await;
}

// ---- metrics and headers ------------------------------------------------------

#[tokio::test]
async fn metrics_are_served_on_their_own_listener_not_on_the_public_port() {
    let app = TestApp::spawn().await;

    app.get("/metrics").await.assert_error(404, "not_found");
    let metrics = app.metrics().await;

    assert!(metrics.contains("marauders_outbox_backlog"), "{metrics}");
    assert!(
        metrics.contains("marauders_metrics_complete 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"marauders_breaker_state{dependency="database",state="closed"} 1"#),
        "{metrics}"
    );
    assert_ne!(app.metrics_address, app.address);
    app.stop().await;
}

#[tokio::test]
async fn api_answers_carry_the_security_headers_errors_included() {
    let app = TestApp::spawn().await;

    for answer in [
        app.get("/health").await,
        app.get("/api/no-such-thing").await,
        app.get("/api/openapi.json").await,
    ] {
        let header = |name: &str| {
            answer.headers[name]
                .to_str()
                .unwrap_or_else(|_| panic!("{}: {name}", answer.request))
                .to_owned()
        };
        assert!(header("content-security-policy").contains("frame-ancestors 'none'"));
        assert_eq!(header("x-content-type-options"), "nosniff");
        assert_eq!(header("referrer-policy"), "no-referrer");
    }
    app.stop().await;
}
