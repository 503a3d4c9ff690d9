//! Test harness shared by the integration tests: a fresh PostgreSQL database
//! per test, and a real Iggy server per test where one is available.
//!
//! Nothing here is mocked. PostgreSQL comes from `TEST_DATABASE_URL` (an
//! admin URL; `scripts/test` starts a private instance and sets it). Iggy
//! comes from `IGGY_URL` or an `iggy-server` binary on PATH; tests that need
//! it are `#[ignore]`d with the reason, and `scripts/test` un-ignores them
//! when a server exists.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod socket;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use marauders_map::log::iggy::IggyConfig;
use marauders_map::log::{EventLog, LogConfig};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};
use uuid::Uuid;

pub const IGGY_IGNORE_REASON: &str = "needs an Iggy server: put iggy-server on PATH or set IGGY_URL (scripts/test does this when it can)";

/// A database of its own for one test, migrated.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
}

pub async fn fresh_database() -> TestDatabase {
    let admin_url = std::env::var("TEST_DATABASE_URL").expect(
        "TEST_DATABASE_URL is not set: run the tests with scripts/test, which starts a private PostgreSQL",
    );
    let admin = PgConnectOptions::from_str(&admin_url).expect("TEST_DATABASE_URL is a valid URL");
    let name = format!("mm_test_{}", Uuid::new_v4().simple());
    let mut connection = sqlx::PgConnection::connect_with(&admin)
        .await
        .expect("Failed to connect to the test PostgreSQL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut connection)
        .await
        .expect("Failed to create a test database");
    let _ = connection.close().await;
    let options = admin.database(&name);
    let url = options.to_url_lossy().to_string();
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .expect("Failed to connect to the test database");
    marauders_map::database::run_migrations(&pool)
        .await
        .expect("Failed to migrate the test database");
    TestDatabase { name, url, pool }
}

/// A second handle on the same database, for a second service instance.
pub async fn clone_database(database: &TestDatabase) -> TestDatabase {
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect(&database.url)
        .await
        .expect("Failed to connect to the test database again");
    TestDatabase {
        name: database.name.clone(),
        url: database.url.clone(),
        pool,
    }
}

/// Where a test's log lives; [`TestBackend::open_log`] opens another
/// instance on the same storage, as a second service instance would.
pub enum TestBackend {
    Postgres(TestDatabase),
    Iggy { server: IggyServer, stream: String },
}

impl TestBackend {
    pub async fn postgres() -> TestBackend {
        TestBackend::Postgres(fresh_database().await)
    }

    /// A real Iggy server and a stream no other test uses.
    pub async fn iggy() -> TestBackend {
        TestBackend::Iggy {
            server: IggyServer::start().await,
            stream: format!("marauders-map-test-{}", Uuid::new_v4().simple()),
        }
    }

    pub async fn open_log(&self) -> EventLog {
        match self {
            TestBackend::Postgres(database) => {
                EventLog::open(LogConfig::Postgres(database.pool.clone()))
                    .await
                    .expect("the embedded log opens")
            }
            TestBackend::Iggy { server, stream } => {
                let log = EventLog::open(LogConfig::Iggy(server.config(stream)))
                    .await
                    .unwrap();
                log.wait_until_ready(Duration::from_secs(20))
                    .await
                    .expect("the Iggy log becomes ready");
                log
            }
        }
    }
}

/// A real Iggy server for one test: the one at `IGGY_URL`, or a fresh
/// `iggy-server` process on a free port with its own data directory,
/// configured to persist and fsync every append (as in production).
pub struct IggyServer {
    pub url: String,
    process: Option<IggyProcess>,
}

struct IggyProcess {
    child: Child,
    data_dir: PathBuf,
    port: u16,
}

impl IggyServer {
    pub async fn start() -> IggyServer {
        Self::start_with(true).await
    }

    /// `fsync_every_append = false` runs the server with Iggy's defaults
    /// (buffered appends), for the benchmark's comparison.
    pub async fn start_with(fsync_every_append: bool) -> IggyServer {
        if let Ok(url) = std::env::var("IGGY_URL")
            && !url.trim().is_empty()
        {
            return IggyServer {
                url: url.trim().to_owned(),
                process: None,
            };
        }
        let data_dir =
            std::env::temp_dir().join(format!("marauders-iggy-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&data_dir).expect("create the Iggy data directory");
        let port = free_port();
        let child = spawn_iggy_server(&data_dir, port, fsync_every_append);
        let mut server = IggyServer {
            url: format!("iggy://iggy:iggy@127.0.0.1:{port}"),
            process: Some(IggyProcess {
                child,
                data_dir,
                port,
            }),
        };
        server.wait_until_listening().await;
        server
    }

    pub fn is_local_process(&self) -> bool {
        self.process.is_some()
    }

    pub fn config(&self, stream: &str) -> IggyConfig {
        let mut config = IggyConfig::new(&self.url);
        config.stream = stream.to_owned();
        config
    }

    /// `kill -9`: no chance to flush anything.
    pub fn kill_9(&mut self) {
        let process = self
            .process
            .as_mut()
            .expect("kill_9 needs a local iggy-server process");
        let _ = process.child.kill();
        let _ = process.child.wait();
    }

    /// Starts the server again on the same port and data directory.
    pub async fn restart(&mut self) {
        let process = self
            .process
            .as_mut()
            .expect("restart needs a local iggy-server process");
        process.child = spawn_iggy_server(&process.data_dir, process.port, true);
        self.wait_until_listening().await;
    }

    async fn wait_until_listening(&mut self) {
        let Some(process) = self.process.as_mut() else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!(
                    "iggy-server exited with {status} during start-up; see {}",
                    process.data_dir.join("server.log").display()
                );
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", process.port))
                .await
                .is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "iggy-server did not listen within 60s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for IggyServer {
    fn drop(&mut self) {
        if let Some(process) = self.process.as_mut() {
            let _ = process.child.kill();
            let _ = process.child.wait();
            let _ = std::fs::remove_dir_all(&process.data_dir);
        }
    }
}

fn spawn_iggy_server(data_dir: &std::path::Path, port: u16, fsync_every_append: bool) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data_dir.join("server.log"))
        .expect("open the Iggy server log");
    let mut command = Command::new("iggy-server");
    command
        .current_dir(data_dir)
        .env("IGGY_ROOT_USERNAME", "iggy")
        .env("IGGY_ROOT_PASSWORD", "iggy")
        .env("IGGY_SYSTEM_PATH", data_dir.join("data"))
        .env("IGGY_TCP_ADDRESS", format!("127.0.0.1:{port}"))
        .env("IGGY_HTTP_ENABLED", "false")
        .env("IGGY_QUIC_ENABLED", "false")
        .env("IGGY_WEBSOCKET_ENABLED", "false")
        .env("IGGY_SYSTEM_SHARDING_CPU_ALLOCATION", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone the log handle"))
        .stderr(log);
    if fsync_every_append {
        command
            .env("IGGY_SYSTEM_PARTITION_MESSAGES_REQUIRED_TO_SAVE", "1")
            .env("IGGY_SYSTEM_PARTITION_ENFORCE_FSYNC", "true");
    }
    command.spawn().expect(
        "iggy-server is not on PATH (these tests are #[ignore]d unless it is, or IGGY_URL is set)",
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("find a free port")
}

/// The JWT secret every test app signs with, so tests can forge and expire
/// tokens on purpose.
pub const TEST_JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123456789";

/// A running service on a free port, with its own database; a client with a
/// method per kind of call.
pub struct TestApp {
    pub address: String,
    pub database: TestDatabase,
    pub client: reqwest::Client,
    pub write_model: std::sync::Arc<marauders_map::commands::WriteModel>,
    shutdown: tokio_util::sync::CancellationToken,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with_iggy(None).await
}

/// With Iggy as the log; waits up to 10s for it at start-up, as `serve`
/// does.
pub async fn spawn_app_with_iggy(iggy_url: Option<String>) -> TestApp {
    spawn_app_on(fresh_database().await, iggy_url, 10).await
}

/// Starts the service on an existing database (a second instance, or a
/// restart).
pub async fn spawn_app_on(
    database: TestDatabase,
    iggy_url: Option<String>,
    iggy_startup_wait_secs: u64,
) -> TestApp {
    spawn_app_on_with(database, iggy_url, iggy_startup_wait_secs, false).await
}

/// As [`spawn_app_on`], optionally as `serve --without-projectors`.
pub async fn spawn_app_on_with(
    database: TestDatabase,
    iggy_url: Option<String>,
    iggy_startup_wait_secs: u64,
    without_projectors: bool,
) -> TestApp {
    use marauders_map::app::Application;
    use marauders_map::config::{Config, ServeConfig};
    let config = Config {
        database_url: database.url.clone(),
        iggy_url,
        data_dir: std::env::temp_dir(),
        jwt_secret: Some(TEST_JWT_SECRET.into()),
        log_level: "info".into(),
    };
    let serve = ServeConfig {
        port: 0,
        host: "127.0.0.1".parse().unwrap(),
        iggy_startup_wait_secs,
        without_projectors,
    };
    let application = Application::build(&config, &serve)
        .await
        .expect("the service builds");
    let address = format!("http://127.0.0.1:{}", application.port());
    let write_model = application.write_model();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(application.run_until_stopped(shutdown.clone()));
    TestApp {
        address,
        database,
        client: reqwest::Client::new(),
        write_model,
        shutdown,
        server,
    }
}

impl TestApp {
    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        self.send(self.client.get(self.url(path))).await
    }

    pub async fn get_as(&self, path: &str, access_token: &str) -> (u16, serde_json::Value) {
        self.send(self.client.get(self.url(path)).bearer_auth(access_token))
            .await
    }

    pub async fn post_json(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.send(self.client.post(self.url(path)).json(&body))
            .await
    }

    pub async fn post_as(
        &self,
        path: &str,
        access_token: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        self.send(
            self.client
                .post(self.url(path))
                .bearer_auth(access_token)
                .json(&body),
        )
        .await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Sends a request; the body as JSON, or `null` when empty.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> (u16, serde_json::Value) {
        let response = request.send().await.expect("the request is sent");
        let status = response.status().as_u16();
        let bytes = response.bytes().await.expect("the body is read");
        let body = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                panic!(
                    "status {status}: not JSON: {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        (status, body)
    }

    /// Registers a user; returns the whole 201 body.
    pub async fn register(&self, email: &str, display_name: &str) -> serde_json::Value {
        let (status, body) = self
            .post_json(
                "/api/auth/register",
                serde_json::json!({"email": email, "password": "alohomora-123", "displayName": display_name}),
            )
            .await;
        assert_eq!(status, 201, "register {email}: {body}");
        body
    }

    /// Registers a user and gives them `role`; returns their access token
    /// (issued after the role change, so it carries it).
    pub async fn user_with_role(
        &self,
        email: &str,
        role: marauders_map::domain::Role,
    ) -> (uuid::Uuid, String) {
        let registered = self.register(email, email).await;
        marauders_map::identity::accounts::change_role(&self.database.pool, email, role)
            .await
            .expect("the role changes");
        let (status, body) = self
            .post_json(
                "/api/auth/login",
                serde_json::json!({"email": email, "password": "alohomora-123"}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let id = uuid::Uuid::parse_str(registered["user"]["id"].as_str().unwrap()).unwrap();
        (id, body["accessToken"].as_str().unwrap().to_owned())
    }

    /// Sends a request with a bearer token and a JSON body; returns status,
    /// body and the `Event-Offset` header.
    pub async fn command(
        &self,
        method: reqwest::Method,
        path: &str,
        access_token: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value, Option<u64>) {
        let mut request = self
            .client
            .request(method, self.url(path))
            .bearer_auth(access_token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the request is sent");
        let status = response.status().as_u16();
        let offset = response.headers().get("Event-Offset").map(|value| {
            value
                .to_str()
                .unwrap()
                .parse()
                .expect("Event-Offset is a number")
        });
        let bytes = response.bytes().await.unwrap();
        let body = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, body, offset)
    }

    /// Cancels the token, waits for the drain, returns the database and how
    /// long the drain took.
    pub async fn stop(self) -> (TestDatabase, Duration) {
        let started = Instant::now();
        self.shutdown.cancel();
        self.server
            .await
            .unwrap()
            .expect("the service stops cleanly");
        (self.database, started.elapsed())
    }
}

/// An `incident.created` event (version 1) as the write side would append
/// it, for tests and benches that write the log directly.
pub fn incident_created(id: Uuid, reported_by: Uuid, title: &str) -> marauders_map::events::Event {
    use marauders_map::domain::{IncidentStatus, Location, Severity};
    use marauders_map::events::{Event, EventPayload, IncidentCreated};
    let now = chrono::Utc::now();
    Event::new(
        EventPayload::IncidentCreated(IncidentCreated {
            id,
            title: title.to_owned(),
            description: None,
            severity: Severity::Low,
            location: Location::Library,
            status: IncidentStatus::Open,
            reported_by,
            assigned_to: None,
            resolved_by: None,
            resolution: None,
            created_at: now,
            updated_at: now,
            resolved_at: None,
            version: 1,
        }),
        None,
    )
}
