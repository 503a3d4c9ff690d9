//! The service as a whole: it starts on a free port, says how it is, serves
//! the envelope schema, answers unknown routes with the JSON error shape,
//! and shuts down when told to — also when its log is unreachable.

mod common;

use std::time::{Duration, Instant};

use marauders_map::app::Application;
use marauders_map::config::{Config, ServeConfig};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

struct TestApp {
    address: String,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
    _database: common::TestDatabase,
}

async fn spawn_app(iggy_url: Option<String>) -> TestApp {
    let database = common::fresh_database().await;
    let config = Config {
        database_url: database.url.clone(),
        iggy_url,
        data_dir: std::env::temp_dir(),
        log_level: "info".into(),
    };
    let serve = ServeConfig {
        port: 0,
        host: "127.0.0.1".parse().unwrap(),
        iggy_startup_wait_secs: 0,
    };
    let application = Application::build(&config, &serve)
        .await
        .expect("the service builds");
    let address = format!("http://127.0.0.1:{}", application.port());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(application.run_until_stopped(shutdown.clone()));
    TestApp {
        address,
        shutdown,
        server,
        _database: database,
    }
}

impl TestApp {
    async fn get(&self, path: &str) -> (u16, Value) {
        let response = reqwest::get(format!("{}{path}", self.address))
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// Cancels the token and returns how long the drain took.
    async fn stop(self) -> Duration {
        let started = Instant::now();
        self.shutdown.cancel();
        self.server
            .await
            .unwrap()
            .expect("the service stops cleanly");
        started.elapsed()
    }
}

#[tokio::test]
async fn health_reports_the_database_and_the_embedded_log() {
    let app = spawn_app(None).await;

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
    let app = spawn_app(None).await;

    let (status, schema) = app.get("/api/schemas/event-envelope.json").await;

    assert_eq!(status, 200);
    assert_eq!(schema["title"], "EventEnvelope");
    assert_eq!(schema["properties"]["source"]["const"], "gryffindor-api");
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_route_gets_a_json_404() {
    let app = spawn_app(None).await;

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
    let app = spawn_app(Some(format!("iggy://iggy:iggy@127.0.0.1:{port}"))).await;

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
    let drain = app.stop().await;
    assert!(drain < Duration::from_secs(5), "shutdown took {drain:?}");
}
