//! Test harness shared by the integration tests: a fresh PostgreSQL database
//! per test, and a real Iggy server per test where one is available.
//!
//! Nothing here is mocked. PostgreSQL comes from `TEST_DATABASE_URL` (an
//! admin URL; `scripts/test` starts a private instance and sets it). Iggy
//! comes from `IGGY_URL` or an `iggy-server` binary on PATH; tests that need
//! it are `#[ignore]`d with the reason, and `scripts/test` un-ignores them
//! when a server exists.
#![allow(dead_code)] // each test binary uses a different part of the harness

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
