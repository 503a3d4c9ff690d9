//! Where a test's log lives, and how to open it again — as another service
//! instance on the same storage would.

use std::time::Duration;

use marauders_map::log::{EventLog, LogConfig};
use sqlx::PgPool;

use crate::database::TestDatabase;
use crate::iggy::{IggyServer, fresh_stream_name, iggy_config};

/// The storage of a log, without a connection to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogLocation {
    /// The embedded log, in the tables of the database it is opened with.
    Embedded,
    /// A stream on an Iggy server.
    Iggy { url: String, stream: String },
}

impl LogLocation {
    /// The configuration that opens this log; the embedded one over `pool`.
    pub fn config(&self, pool: &PgPool) -> LogConfig {
        match self {
            LogLocation::Embedded => LogConfig::Postgres(pool.clone()),
            LogLocation::Iggy { url, stream } => LogConfig::Iggy(iggy_config(url, stream)),
        }
    }

    /// Opens the log and waits (up to 20 s) until it answers.
    ///
    /// # Panics
    ///
    /// When it does not.
    pub async fn open(&self, pool: &PgPool) -> EventLog {
        open_ready(self.config(pool)).await
    }
}

async fn open_ready(config: LogConfig) -> EventLog {
    let log = EventLog::open(config).await.expect("the log opens");
    log.wait_until_ready(Duration::from_secs(20))
        .await
        .expect("the log becomes ready");
    log
}

/// A log for the tests that run once per backend (the conformance suite,
/// the fixture log): the embedded one in a fresh database, or a stream of
/// its own on a real Iggy server. [`TestBackend::open_log`] opens another
/// instance on the same storage each time it is called.
pub enum TestBackend {
    Postgres(TestDatabase),
    Iggy { server: IggyServer, stream: String },
}

impl TestBackend {
    pub async fn postgres() -> TestBackend {
        TestBackend::Postgres(TestDatabase::fresh().await)
    }

    /// A real Iggy server ([`IggyServer::start`]) and a stream no other test
    /// uses.
    pub async fn iggy() -> TestBackend {
        TestBackend::Iggy {
            server: IggyServer::start().await,
            stream: fresh_stream_name(),
        }
    }

    pub fn location(&self) -> LogLocation {
        match self {
            TestBackend::Postgres(_) => LogLocation::Embedded,
            TestBackend::Iggy { server, stream } => LogLocation::Iggy {
                url: server.url.clone(),
                stream: stream.clone(),
            },
        }
    }

    pub async fn open_log(&self) -> EventLog {
        match self {
            TestBackend::Postgres(database) => {
                open_ready(LogConfig::Postgres(database.pool.clone())).await
            }
            TestBackend::Iggy { server, stream } => {
                open_ready(LogConfig::Iggy(server.config(stream))).await
            }
        }
    }
}

/// Runs each named `async fn(&TestBackend)` of the calling module once per
/// log backend: as `embedded_postgres::<name>` and as `iggy::<name>` (the
/// latter `#[ignore]`d with the standard reason unless a server exists).
#[macro_export]
macro_rules! on_both_backends {
    ($($test:ident),+ $(,)?) => {
        /// The embedded log in PostgreSQL.
        mod embedded_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let backend = $crate::TestBackend::postgres().await;
                    super::$test(&backend).await;
                }
            )+
        }

        /// A real Apache Iggy server.
        mod iggy {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs an Iggy server: put iggy-server on PATH or set IGGY_URL (scripts/test does this when it can)"]
                async fn $test() {
                    let backend = $crate::TestBackend::iggy().await;
                    super::$test(&backend).await;
                }
            )+
        }
    };
}
