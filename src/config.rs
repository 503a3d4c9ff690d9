//! Configuration: flags, each with an environment variable of the same
//! meaning. Parsed once at start-up into [`Config`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::http::deadline::Deadlines;
use crate::identity::tokens::ACCESS_TOKEN_TTL;
use crate::identity::{HashingConfig, ThrottleConfig};
use crate::log::LogConfig;
use crate::log::breaker::BreakerSettings;
use crate::log::iggy::IggyConfig;
use crate::realtime::expiry::SESSION_CHECK_INTERVAL;

/// Settings shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// PostgreSQL connection URL (the read model, accounts, and the embedded
    /// log when `IGGY_URL` is unset). Given before the subcommand when passed
    /// as a flag (clap cannot make a required flag global).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,

    /// Apache Iggy connection URL, e.g.
    /// `iggy://marauders-map:secret@127.0.0.1:8090`: the service's own user,
    /// never root (`iggy setup` creates it). When set, Iggy is the log; when
    /// unset, the embedded log in PostgreSQL is.
    #[arg(long, global = true, env = "IGGY_URL")]
    pub iggy_url: Option<String>,

    /// The Iggy stream that holds the topics (one per deployment sharing a
    /// server).
    #[arg(long, global = true, env = "IGGY_STREAM", default_value = crate::log::STREAM_NAME)]
    pub iggy_stream: String,

    /// Directory for state the service keeps on disk.
    #[arg(
        long,
        global = true,
        env = "MARAUDERS_DATA_DIR",
        default_value = ".data"
    )]
    pub data_dir: PathBuf,

    /// Secret for signing access tokens (at least 32 bytes). When unset, one
    /// is generated on first start and kept in `<data-dir>/jwt-secret`.
    #[arg(long, global = true, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// The longest one call to Iggy may take, all told: waiting for a
    /// connection, connecting, and the request.
    #[arg(
        long,
        global = true,
        env = "IGGY_REQUEST_TIMEOUT_MS",
        default_value_t = 2_000
    )]
    pub iggy_request_timeout_ms: u64,

    /// The longest a PostgreSQL connection is waited for, and the longest a
    /// connection handed back after an interrupted query may take to answer
    /// a ping before it is closed instead of reused.
    #[arg(
        long,
        global = true,
        env = "DATABASE_TIMEOUT_MS",
        default_value_t = Deadlines::DEFAULT_DATABASE_MS
    )]
    pub database_timeout_ms: u64,

    /// Once Iggy is found down, calls fail at once for this long before one
    /// probe may try again; the wait doubles with each failed probe.
    #[arg(long, global = true, env = "BREAKER_BACKOFF_MS", default_value_t = 500)]
    pub breaker_backoff_ms: u64,

    /// The longest wait between probes of a dependency that is down.
    #[arg(
        long,
        global = true,
        env = "BREAKER_MAX_BACKOFF_MS",
        default_value_t = 5_000
    )]
    pub breaker_max_backoff_ms: u64,

    /// Log filter in `tracing` syntax, e.g. `info` or
    /// `marauders_map=debug,info`.
    #[arg(long, global = true, env = "RUST_LOG", default_value = "info")]
    pub log_level: String,
}

/// Settings of `serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Port for HTTP and Socket.IO; 0 picks a free one.
    #[arg(long, global = true, env = "PORT", default_value_t = 4000)]
    pub port: u16,

    /// Address to bind.
    #[arg(long, global = true, env = "HOST", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub host: IpAddr,

    /// How long to wait for Iggy at start-up before serving anyway (requests
    /// that need the log answer 503 until it is reachable).
    #[arg(
        long,
        global = true,
        env = "IGGY_STARTUP_WAIT_SECS",
        default_value_t = 10
    )]
    pub iggy_startup_wait_secs: u64,

    /// The longest a request may take before it is answered 503 with
    /// `Retry-After`: a command waiting for its incident, appending and
    /// confirming; a query waiting for the database or the read model.
    /// Kept below 5 s, the promise that no request waits longer on a
    /// dependency that is down.
    #[arg(
        long,
        global = true,
        env = "REQUEST_DEADLINE_MS",
        default_value_t = Deadlines::DEFAULT_REQUEST_MS
    )]
    pub request_deadline_ms: u64,

    /// Serve without running the projectors in this process (run them with
    /// `marauders-map project <name>` instead).
    #[arg(long, global = true, env = "WITHOUT_PROJECTORS")]
    pub without_projectors: bool,

    /// The built web page (`npm run build` in `web/`), served at `/`.
    /// Relative paths are taken from the working directory.
    #[arg(long, global = true, env = "WEB_DIR", default_value = "web/dist")]
    pub web_dir: PathBuf,

    /// How long an access token is valid, in seconds. A Socket.IO
    /// connection is closed when its token expires (the page refreshes and
    /// reconnects); short lifetimes are for tests.
    #[arg(
        long,
        global = true,
        env = "ACCESS_TOKEN_LIFETIME_SECS",
        default_value_t = ACCESS_TOKEN_TTL.as_secs(),
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub access_token_lifetime_secs: u64,

    /// How often, in milliseconds, the gateway checks its connections'
    /// tokens and sessions: an expired token or an ended session (logout,
    /// a revoked refresh token) closes a connection within about this long.
    #[arg(
        long,
        global = true,
        env = "SESSION_CHECK_INTERVAL_MS",
        default_value_t = SESSION_CHECK_INTERVAL.as_millis() as u64,
        value_parser = clap::value_parser!(u64).range(10..)
    )]
    pub session_check_interval_ms: u64,

    /// Where `GET /metrics` is served: a listener of its own, on loopback
    /// unless told otherwise, so the public port does not expose it.
    #[arg(
        long,
        global = true,
        env = "METRICS_ADDRESS",
        default_value_t = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9464)
    )]
    pub metrics_address: SocketAddr,

    #[command(flatten)]
    pub auth_limits: AuthLimitsConfig,
}

impl ServeConfig {
    pub fn iggy_startup_wait(&self) -> Duration {
        Duration::from_secs(self.iggy_startup_wait_secs)
    }

    pub fn access_token_lifetime(&self) -> Duration {
        Duration::from_secs(self.access_token_lifetime_secs)
    }

    pub fn session_check_interval(&self) -> Duration {
        Duration::from_millis(self.session_check_interval_ms)
    }

    pub fn request_deadline(&self) -> Duration {
        Duration::from_millis(self.request_deadline_ms)
    }
}

/// Limits on the credential endpoints (login, registration, refresh):
/// throttling and password hashing. See `src/identity/throttle.rs` and
/// `src/identity/passwords.rs`.
#[derive(Debug, Clone, Args)]
pub struct AuthLimitsConfig {
    /// Attempts per minute (and at once) for one account — an email, or a
    /// refresh token — from one client address, per endpoint; 429 beyond.
    #[arg(
        long,
        global = true,
        env = "AUTH_THROTTLE_PER_ACCOUNT_AND_ADDRESS",
        default_value_t = ThrottleConfig::default().per_account_and_address_per_minute
    )]
    pub auth_throttle_per_account_and_address: NonZeroU32,

    /// Attempts per minute (and at once) from one client address, whatever
    /// the account, per endpoint; 429 beyond.
    #[arg(
        long,
        global = true,
        env = "AUTH_THROTTLE_PER_ADDRESS",
        default_value_t = ThrottleConfig::default().per_address_per_minute
    )]
    pub auth_throttle_per_address: NonZeroU32,

    /// Argon2 computations at once (default: half the cores, at least 1).
    #[arg(long, global = true, env = "PASSWORD_HASH_WORKERS")]
    pub password_hash_workers: Option<NonZeroUsize>,

    /// Logins and registrations that may wait for a hashing worker; past
    /// them, 503 at once.
    #[arg(
        long,
        global = true,
        env = "PASSWORD_HASH_QUEUE",
        default_value_t = HashingConfig::DEFAULT_QUEUE
    )]
    pub password_hash_queue: usize,
}

impl Default for AuthLimitsConfig {
    fn default() -> Self {
        let throttle = ThrottleConfig::default();
        AuthLimitsConfig {
            auth_throttle_per_account_and_address: throttle.per_account_and_address_per_minute,
            auth_throttle_per_address: throttle.per_address_per_minute,
            password_hash_workers: None,
            password_hash_queue: HashingConfig::DEFAULT_QUEUE,
        }
    }
}

impl AuthLimitsConfig {
    pub fn throttle(&self) -> ThrottleConfig {
        ThrottleConfig {
            per_account_and_address_per_minute: self.auth_throttle_per_account_and_address,
            per_address_per_minute: self.auth_throttle_per_address,
        }
    }

    pub fn hashing(&self) -> HashingConfig {
        HashingConfig {
            workers: self
                .password_hash_workers
                .unwrap_or_else(HashingConfig::default_workers),
            queue: self.password_hash_queue,
        }
    }
}

impl Config {
    pub fn database_timeout(&self) -> Duration {
        Duration::from_millis(self.database_timeout_ms)
    }

    pub fn breaker(&self) -> BreakerSettings {
        BreakerSettings {
            base_backoff: Duration::from_millis(self.breaker_backoff_ms),
            max_backoff: Duration::from_millis(self.breaker_max_backoff_ms),
        }
    }

    /// Which log backend to open, over the given pool for the embedded one.
    pub fn log_config(&self, pool: &sqlx::PgPool) -> LogConfig {
        match &self.iggy_url {
            Some(url) if !url.trim().is_empty() => {
                let mut iggy = IggyConfig::for_service(url.trim());
                iggy.stream = self.iggy_stream.clone();
                iggy.request_timeout = Duration::from_millis(self.iggy_request_timeout_ms);
                iggy.breaker = self.breaker();
                LogConfig::Iggy(iggy)
            }
            _ => LogConfig::Postgres(pool.clone()),
        }
    }
}
