//! The service under test: the real [`Application`] on a free port, with a
//! client that speaks the domain — `register`, `user`, `report_incident`,
//! `resolve`, `comment`, `list_incidents`, `replay`, `socket`, … — and
//! answers with [`ApiResponse`]s.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use marauders_map::app::Application;
use marauders_map::commands::{Faults, WriteModel};
use marauders_map::config::{AuthLimitsConfig, Config, ServeConfig};
use marauders_map::domain::{Role, Severity};
use marauders_map::events::Event;
use marauders_map::http::deadline::Deadlines;
use marauders_map::identity::tokens::{AccessClaims, JwtKeys};
use marauders_map::incident::IncidentFold;
use marauders_map::log::breaker::BreakerSettings;
use marauders_map::log::{EventLog, LogConfig, LogRecord, MAX_READ_LIMIT, Topic};
use marauders_map::projections::SwitchHold;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::backend::{LogLocation, TestBackend};
use crate::database::TestDatabase;
use crate::iggy::{IggyServer, fresh_stream_name, service_user_url};
use crate::proxy::FreezableProxy;
use crate::requests::ReportIncident;
use crate::response::{ApiResponse, Bearer};
use crate::socket::{Refused, TestSocket};

/// The JWT secret every test app signs with, so tests can forge and expire
/// tokens on purpose ([`TestApp::act_as`]).
pub const TEST_JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123456789";

/// The password of every account the harness registers.
pub const TEST_PASSWORD: &str = "alohomora-123";

/// Where a test app looks for the web page unless told otherwise: nowhere,
/// so what `/` serves does not depend on whether `web/dist` is built.
pub fn no_web_page_dir() -> PathBuf {
    std::env::temp_dir().join("marauders-map-tests-have-no-web-page")
}

/// An account, as the harness registered (or impersonated) it.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: Uuid,
    pub email: String,
    pub role: Role,
    /// An access token carrying `role`.
    pub token: String,
    pub refresh_token: String,
    /// The `user` object the service answered with.
    pub profile: Value,
}

impl Bearer for TestUser {
    fn access_token(&self) -> &str {
        &self.token
    }
}

/// A running service with its own database (and its own Iggy stream when
/// on Iggy). Build one with [`TestApp::spawn`] or [`TestApp::builder`].
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    /// `http://127.0.0.1:<metrics port>`: the metrics listener.
    pub metrics_address: String,
    pub database: TestDatabase,
    pub client: reqwest::Client,
    /// The write side's in-memory fold, to compare with other readers.
    pub write_model: Arc<WriteModel>,
    /// The write path's fault hooks (e.g. lose the answer of an append that
    /// landed).
    pub faults: Arc<Faults>,
    /// Holds this instance's rebuilds just before their switch-over.
    pub rebuild_switch_hold: Arc<SwitchHold>,
    log_location: LogLocation,
    iggy_startup_wait: Duration,
    /// The token and session settings, which a second instance shares.
    access_token_lifetime: Duration,
    session_check_interval: Duration,
    log: OnceCell<EventLog>,
    database_proxy: Option<FreezableProxy>,
    users_registered: AtomicUsize,
    shutdown: CancellationToken,
    server: JoinHandle<anyhow::Result<()>>,
}

/// How to start a [`TestApp`]: every option in one place.
#[must_use = "a builder does nothing until spawn()"]
pub struct TestAppBuilder {
    database: DatabaseChoice,
    log: LogLocation,
    iggy_startup_wait: Duration,
    without_projectors: bool,
    web_dir: PathBuf,
    access_token_lifetime: Duration,
    session_check_interval: Duration,
    /// Iggy's per-call timeout and breaker, the request deadline and the
    /// database timeout: the service's defaults unless a test shortens them.
    iggy_request_timeout: Duration,
    breaker: BreakerSettings,
    request_deadline: Duration,
    database_timeout: Duration,
    /// Reach the database through a [`FreezableProxy`] of the app's own.
    database_behind_proxy: bool,
    auth_limits: AuthLimitsConfig,
    /// An administrator of the app's Iggy server: at spawn, it gives the
    /// app a user of its own, and the app connects as that user.
    iggy_admin_url: Option<String>,
}

enum DatabaseChoice {
    Fresh,
    Existing(TestDatabase),
    SameAs { name: String, url: String },
}

impl TestAppBuilder {
    /// On this (migrated) database instead of a fresh one: a restart, or a
    /// database the test prepared. After [`TestAppBuilder::on`], it wins.
    pub fn database(mut self, database: TestDatabase) -> Self {
        self.database = DatabaseChoice::Existing(database);
        self
    }

    /// Apache Iggy as the log, on a stream of this app's own, with a user
    /// of its own as in production (see [`service_user_url`]).
    pub fn iggy(mut self, server: &IggyServer) -> Self {
        self = self.iggy_url(&server.url);
        self.iggy_admin_url = Some(server.url.clone());
        self
    }

    /// Iggy at `url` as the log (reachable or not), on a stream of this
    /// app's own, connecting with the credentials in `url` as they are
    /// (the service refuses the root user's).
    pub fn iggy_url(mut self, url: &str) -> Self {
        self.iggy_admin_url = None;
        self.log = LogLocation::Iggy {
            url: url.to_owned(),
            stream: fresh_stream_name(),
        };
        self
    }

    /// Iggy at `admin_url` (an administrator's, such as
    /// [`IggyServer::url`]) as the log, on the given stream (one a test set
    /// up, or where `log migrate` copied a log); the app connects as a user
    /// of its own, as with [`TestAppBuilder::iggy`].
    pub fn iggy_stream(mut self, admin_url: &str, stream: &str) -> Self {
        self.log = LogLocation::Iggy {
            url: admin_url.to_owned(),
            stream: stream.to_owned(),
        };
        self.iggy_admin_url = Some(admin_url.to_owned());
        self
    }

    /// On the log of `backend`, which the test may already have written
    /// to: the embedded log in its database, or its Iggy stream (with a
    /// fresh database).
    pub fn on(mut self, backend: &TestBackend) -> Self {
        if let TestBackend::Postgres(database) = backend {
            self.database = DatabaseChoice::SameAs {
                name: database.name.clone(),
                url: database.url.clone(),
            };
        }
        self.log = backend.location();
        if let TestBackend::Iggy { server, .. } = backend {
            self.iggy_admin_url = Some(server.url.clone());
        }
        self
    }

    /// How long start-up waits for Iggy before serving anyway (default
    /// 10 s, as `serve`).
    pub fn iggy_startup_wait(mut self, wait: Duration) -> Self {
        self.iggy_startup_wait = wait;
        self
    }

    /// As `serve --without-projectors`: the projectors run elsewhere (or,
    /// in a test, step by step).
    pub fn without_projectors(mut self) -> Self {
        self.without_projectors = true;
        self
    }

    /// Shorter deadlines for a test of a dependency that stops answering:
    /// each call to Iggy, and each request all told (the defaults are 2 s
    /// and 4.5 s), and the breaker's backoff.
    pub fn deadlines(
        mut self,
        iggy_request_timeout: Duration,
        request_deadline: Duration,
        breaker: BreakerSettings,
    ) -> Self {
        self.iggy_request_timeout = iggy_request_timeout;
        self.request_deadline = request_deadline;
        self.breaker = breaker;
        self
    }

    /// A longer request deadline (the default is 4.5 s), for a test whose
    /// requests are slow on purpose and must not be cut short.
    pub fn request_deadline(mut self, request_deadline: Duration) -> Self {
        self.request_deadline = request_deadline;
        self
    }

    /// How long a database connection is waited for (and a returned one
    /// may take to answer a ping); the default is 2 s.
    pub fn database_timeout(mut self, timeout: Duration) -> Self {
        self.database_timeout = timeout;
        self
    }

    /// The service reaches its database through a proxy the test can
    /// freeze ([`TestApp::database_proxy`]); the test's own pool does not.
    pub fn database_behind_proxy(mut self) -> Self {
        self.database_behind_proxy = true;
        self
    }

    /// Serves the web page from `web_dir`.
    pub fn web_dir(mut self, web_dir: PathBuf) -> Self {
        self.web_dir = web_dir;
        self
    }

    /// Access tokens valid this long (whole seconds, at least one; default
    /// 15 minutes, as `serve`).
    pub fn access_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.access_token_lifetime = lifetime;
        self
    }

    /// How often the gateway checks its connections' tokens and sessions
    /// (default 1 s, as `serve`).
    pub fn session_check_interval(mut self, interval: Duration) -> Self {
        self.session_check_interval = interval;
        self
    }

    /// Throttling and hashing limits other than the defaults `serve` has.
    pub fn auth_limits(mut self, limits: AuthLimitsConfig) -> Self {
        self.auth_limits = limits;
        self
    }

    /// Builds the real [`Application`] on port 0 and runs it in the
    /// background until [`TestApp::stop`].
    pub async fn spawn(mut self) -> TestApp {
        show_logs_if_asked();
        if let (Some(admin_url), LogLocation::Iggy { stream, .. }) =
            (self.iggy_admin_url.take(), self.log.clone())
        {
            let url = service_user_url(&admin_url, &stream).await;
            self.log = LogLocation::Iggy { url, stream };
        }
        let database = match self.database {
            DatabaseChoice::Fresh => TestDatabase::fresh().await,
            DatabaseChoice::Existing(database) => database,
            DatabaseChoice::SameAs { name, url } => TestDatabase::connect(name, url).await,
        };
        let config = Config {
            database_url: database.url.clone(),
            iggy_url: None,
            iggy_stream: marauders_map::log::STREAM_NAME.into(),
            data_dir: std::env::temp_dir(),
            jwt_secret: Some(TEST_JWT_SECRET.into()),
            iggy_request_timeout_ms: millis(self.iggy_request_timeout),
            database_timeout_ms: millis(self.database_timeout),
            breaker_backoff_ms: millis(self.breaker.base_backoff),
            breaker_max_backoff_ms: millis(self.breaker.max_backoff),
            log_level: "info".into(),
        };
        let serve = ServeConfig {
            port: 0,
            host: "127.0.0.1".parse().expect("an IP address"),
            iggy_startup_wait_secs: self.iggy_startup_wait.as_secs(),
            without_projectors: self.without_projectors,
            request_deadline_ms: millis(self.request_deadline),
            web_dir: self.web_dir,
            access_token_lifetime_secs: self.access_token_lifetime.as_secs().max(1),
            session_check_interval_ms: self.session_check_interval.as_millis() as u64,
            metrics_address: "127.0.0.1:0".parse().expect("a socket address"),
            auth_limits: self.auth_limits,
        };
        // The service gets a pool of its own, as in production: stopping it
        // closes that pool, not the test's.
        let database_proxy = if self.database_behind_proxy {
            let upstream = host_and_port(&database.url);
            let proxy = FreezableProxy::start(&upstream).await;
            Some((proxy.url_for(&database.url, &upstream), proxy))
        } else {
            None
        };
        let service_database_url = database_proxy
            .as_ref()
            .map_or(database.url.clone(), |(url, _)| url.clone());
        let pool = marauders_map::database::connect(&service_database_url, self.database_timeout)
            .await
            .expect("the service connects to its database");
        let mut log_config = self.log.config(&pool);
        if let LogConfig::Iggy(iggy) = &mut log_config {
            iggy.request_timeout = self.iggy_request_timeout;
            iggy.breaker = self.breaker;
            // As `serve` (`Config::log_config`): never as root.
            iggy.refuse_root_user = true;
        }
        let log = EventLog::open(log_config)
            .await
            .expect("the service opens its log");
        let application = Application::build_on(&config, &serve, pool, log)
            .await
            .expect("the service builds");
        let address = format!("http://127.0.0.1:{}", application.port());
        let metrics_address = format!("http://127.0.0.1:{}", application.metrics_port());
        let write_model = application.write_model();
        let faults = application.faults();
        let rebuild_switch_hold = application.rebuild_switch_hold();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(application.run_until_stopped(shutdown.clone()));
        TestApp {
            address,
            metrics_address,
            database,
            client: reqwest::Client::new(),
            write_model,
            faults,
            rebuild_switch_hold,
            log_location: self.log,
            iggy_startup_wait: self.iggy_startup_wait,
            access_token_lifetime: self.access_token_lifetime,
            session_check_interval: self.session_check_interval,
            log: OnceCell::new(),
            database_proxy: database_proxy.map(|(_, proxy)| proxy),
            users_registered: AtomicUsize::new(0),
            shutdown,
            server,
        }
    }
}

/// A stopped [`TestApp`]: its database, its log's location, and how long
/// the drain took.
pub struct StoppedApp {
    pub database: TestDatabase,
    pub log_location: LogLocation,
    pub drained_in: Duration,
}

impl StoppedApp {
    /// Starts the service again on the same database and log.
    pub async fn restart(self) -> TestApp {
        let mut builder = TestApp::builder().database(self.database);
        builder.log = self.log_location;
        builder.spawn().await
    }

    /// Opens the log the app used, as a later process would.
    pub async fn open_log(&self) -> EventLog {
        self.log_location.open(&self.database.pool).await
    }
}

impl TestApp {
    /// The service on a fresh database with the embedded log.
    pub async fn spawn() -> TestApp {
        TestApp::builder().spawn().await
    }

    pub fn builder() -> TestAppBuilder {
        TestAppBuilder {
            database: DatabaseChoice::Fresh,
            log: LogLocation::Embedded,
            iggy_startup_wait: Duration::from_secs(10),
            without_projectors: false,
            web_dir: no_web_page_dir(),
            access_token_lifetime: marauders_map::identity::tokens::ACCESS_TOKEN_TTL,
            session_check_interval: marauders_map::realtime::expiry::SESSION_CHECK_INTERVAL,
            iggy_request_timeout: Duration::from_secs(2),
            breaker: BreakerSettings::default(),
            request_deadline: Deadlines::default().request,
            database_timeout: Deadlines::default().database,
            database_behind_proxy: false,
            auth_limits: AuthLimitsConfig::default(),
            iggy_admin_url: None,
        }
    }

    /// Another instance of the service on the same database and log (and
    /// the same token and session settings), sharing nothing else with
    /// this one.
    pub async fn second_instance(&self) -> TestApp {
        let mut builder = TestApp::builder()
            .iggy_startup_wait(self.iggy_startup_wait)
            .access_token_lifetime(self.access_token_lifetime)
            .session_check_interval(self.session_check_interval);
        builder.database = DatabaseChoice::SameAs {
            name: self.database.name.clone(),
            url: self.database.url.clone(),
        };
        builder.log = self.log_location.clone();
        builder.spawn().await
    }

    /// Cancels the shutdown token and waits for the drain.
    ///
    /// # Panics
    ///
    /// If the service does not stop cleanly.
    pub async fn stop(self) -> StoppedApp {
        if let Some(log) = self.log.get() {
            log.shutdown().await;
        }
        let started = Instant::now();
        self.shutdown.cancel();
        self.server
            .await
            .expect("the service task does not panic")
            .expect("the service stops cleanly");
        StoppedApp {
            database: self.database,
            log_location: self.log_location,
            drained_in: started.elapsed(),
        }
    }

    /// Asserts that this instance's write model, caught up with the log,
    /// folds to `truth` (the fold of the whole log, say).
    pub async fn assert_write_model_agrees(&self, truth: &IncidentFold, instance: &str) {
        self.write_model
            .sync()
            .await
            .expect("the write model catches up");
        assert_eq!(
            &self.write_model.fold(),
            truth,
            "{instance}'s write model agrees with the log"
        );
    }

    /// The Iggy stream this app's log is on (`None` on the embedded log).
    pub fn iggy_stream(&self) -> Option<&str> {
        match &self.log_location {
            LogLocation::Iggy { stream, .. } => Some(stream),
            LogLocation::Embedded => None,
        }
    }

    // ---- the log ------------------------------------------------------------

    /// The app's log, opened by the test as another process would (once;
    /// [`TestApp::stop`] closes it).
    /// The proxy between the service and its database.
    ///
    /// # Panics
    ///
    /// Unless built with [`TestAppBuilder::database_behind_proxy`].
    pub fn database_proxy(&self) -> &FreezableProxy {
        self.database_proxy
            .as_ref()
            .expect("built with database_behind_proxy()")
    }

    pub async fn log(&self) -> &EventLog {
        self.log
            .get_or_init(|| self.log_location.open(&self.database.pool))
            .await
    }

    /// Every record of `topic`, from offset 0.
    pub async fn records(&self, topic: Topic) -> Vec<LogRecord> {
        let log = self.log().await;
        let (mut records, mut from) = (Vec::new(), 0);
        loop {
            let page = log
                .read_page(topic, from, MAX_READ_LIMIT)
                .await
                .expect("the log reads");
            if page.next_offset == from {
                return records;
            }
            from = page.next_offset;
            records.extend(page.records);
        }
    }

    /// Every event of `topic`, decoded.
    ///
    /// # Panics
    ///
    /// On a record that is not a valid event.
    pub async fn events(&self, topic: Topic) -> Vec<Event> {
        self.records(topic)
            .await
            .iter()
            .map(|record| {
                Event::decode(&record.payload)
                    .unwrap_or_else(|error| panic!("{topic} at {}: {error}", record.offset))
            })
            .collect()
    }

    /// The incident event at `offset`.
    pub async fn event_at(&self, offset: u64) -> Event {
        let records = self
            .log()
            .await
            .read(Topic::IncidentEvents, offset, 1)
            .await
            .expect("the log reads");
        let record = records
            .first()
            .filter(|record| record.offset == offset)
            .unwrap_or_else(|| panic!("no incident event at offset {offset}"));
        Event::decode(&record.payload).expect("a valid event")
    }

    /// The end of `topic` (the offset its next event gets).
    pub async fn log_end(&self, topic: Topic) -> u64 {
        self.log()
            .await
            .log_end(topic)
            .await
            .expect("the log answers")
    }

    // ---- raw requests -------------------------------------------------------

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Makes every refresh token already exchanged look exchanged a minute
    /// ago — past the refresh grace period — as time would: presented
    /// again, it is then a reuse, not a second tab.
    pub async fn let_the_refresh_grace_pass(&self) {
        sqlx::query(
            "UPDATE refresh_tokens SET rotated_at = rotated_at - interval '1 minute'
              WHERE rotated_at IS NOT NULL",
        )
        .execute(&self.database.pool)
        .await
        .expect("refresh tokens can be aged");
    }

    /// Sends any request and reads the answer.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> ApiResponse {
        self.send_via(&self.client, request).await
    }

    /// Sends a request built for `client` (e.g. one from
    /// [`TestApp::client_from`]) and reads the answer.
    pub async fn send_via(
        &self,
        client: &reqwest::Client,
        request: reqwest::RequestBuilder,
    ) -> ApiResponse {
        let request = request.build().expect("a well-formed request");
        let label = format!("{} {}", request.method(), request.url().path());
        let response = client
            .execute(request)
            .await
            .unwrap_or_else(|error| panic!("{label}: {error}"));
        ApiResponse::read(label, response).await
    }

    /// A client whose connections come from `address`, e.g. `127.0.0.2`:
    /// Linux routes all of 127.0.0.0/8 to loopback, so the service sees
    /// another client address — the real peer address it throttles by,
    /// not a header anyone could set.
    pub fn client_from(&self, address: &str) -> reqwest::Client {
        let address: std::net::IpAddr = address.parse().expect("an IP address");
        reqwest::Client::builder()
            .local_address(address)
            .build()
            .expect("a client")
    }

    /// `POST /api/auth/login` from `client` (see [`TestApp::client_from`]).
    pub async fn login_via(
        &self,
        client: &reqwest::Client,
        email: &str,
        password: &str,
    ) -> ApiResponse {
        let request = client
            .post(self.url("/api/auth/login"))
            .json(&json!({"email": email, "password": password}));
        self.send_via(client, request).await
    }

    /// `GET /metrics` from the metrics listener, as text.
    pub async fn metrics(&self) -> String {
        let response = self
            .client
            .get(format!("{}/metrics", self.metrics_address))
            .send()
            .await
            .expect("the metrics listener answers");
        assert_eq!(response.status(), 200, "GET /metrics");
        response.text().await.expect("the metrics are text")
    }

    /// One value of the metrics, e.g.
    /// `metric("marauders_password_hashing_queued")`.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|line| {
                let (name, value) = line.rsplit_once(' ')?;
                (name == series).then(|| value.parse().ok())?
            })
            .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        who: Option<&str>,
        body: Option<Value>,
    ) -> ApiResponse {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = who {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.send(request).await
    }

    /// `GET path` without a token.
    pub async fn get(&self, path: &str) -> ApiResponse {
        self.call(Method::GET, path, None, None).await
    }

    /// `POST path` with a JSON body, without a token.
    pub async fn post(&self, path: &str, body: Value) -> ApiResponse {
        self.call(Method::POST, path, None, Some(body)).await
    }

    pub async fn get_as(&self, who: &(impl Bearer + ?Sized), path: &str) -> ApiResponse {
        self.call(Method::GET, path, Some(who.access_token()), None)
            .await
    }

    /// Any method, as `who`, with an optional JSON body.
    pub async fn request_as(
        &self,
        method: Method,
        who: &(impl Bearer + ?Sized),
        path: &str,
        body: Option<Value>,
    ) -> ApiResponse {
        self.call(method, path, Some(who.access_token()), body)
            .await
    }

    /// Any method, as `who`, with an optional JSON body and an
    /// `Idempotency-Key` header (the raw header value, so a test can send a
    /// malformed one).
    pub async fn request_with_key(
        &self,
        method: Method,
        who: &(impl Bearer + ?Sized),
        path: &str,
        body: Option<Value>,
        key: &str,
    ) -> ApiResponse {
        let mut request = self
            .client
            .request(method, self.url(path))
            .bearer_auth(who.access_token())
            .header("Idempotency-Key", key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.send(request).await
    }

    /// `POST /api/incidents` with an `Idempotency-Key`.
    pub async fn report_incident_with_key(
        &self,
        who: &(impl Bearer + ?Sized),
        report: impl Into<Value>,
        key: &str,
    ) -> ApiResponse {
        self.request_with_key(
            Method::POST,
            who,
            "/api/incidents",
            Some(report.into()),
            key,
        )
        .await
    }

    // ---- accounts -----------------------------------------------------------

    /// Registers `email` (password [`TEST_PASSWORD`]); the account is a
    /// STUDENT.
    ///
    /// # Panics
    ///
    /// Unless the service answers 201.
    pub async fn register(&self, email: &str, display_name: &str) -> TestUser {
        let registered = self
            .post(
                "/api/auth/register",
                json!({"email": email, "password": TEST_PASSWORD, "displayName": display_name}),
            )
            .await
            .assert_status(201);
        self.users_registered.fetch_add(1, Ordering::Relaxed);
        user_from(&registered.body)
    }

    /// `POST /api/auth/login`.
    pub async fn login(&self, email: &str, password: &str) -> ApiResponse {
        self.post(
            "/api/auth/login",
            json!({"email": email, "password": password}),
        )
        .await
    }

    /// `POST /api/auth/refresh`.
    pub async fn refresh(&self, refresh_token: &str) -> ApiResponse {
        self.post(
            "/api/auth/refresh",
            json!({ "refreshToken": refresh_token }),
        )
        .await
    }

    /// `POST /api/auth/logout`.
    pub async fn logout(&self, who: &(impl Bearer + ?Sized)) -> ApiResponse {
        self.request_as(Method::POST, who, "/api/auth/logout", Some(json!({})))
            .await
    }

    /// `GET /api/auth/me`.
    pub async fn me(&self, who: &(impl Bearer + ?Sized)) -> ApiResponse {
        self.get_as(who, "/api/auth/me").await
    }

    /// A new account with `role`: registered, given the role (as
    /// `user promote` would), and logged in again so its token carries it.
    /// Its email is `<role><n>@hogwarts.edu`.
    pub async fn user(&self, role: Role) -> TestUser {
        let n = self.users_registered.load(Ordering::Relaxed) + 1;
        let name = format!("{}{n}", role.as_str().to_lowercase());
        self.user_named(&name, role).await
    }

    /// As [`TestApp::user`], as `<name>@hogwarts.edu` with display name
    /// `name`.
    pub async fn user_named(&self, name: &str, role: Role) -> TestUser {
        let email = format!("{name}@hogwarts.edu");
        self.register(&email, name).await;
        marauders_map::identity::accounts::change_role(&self.database.pool, &email, role)
            .await
            .expect("the role changes");
        let logged_in = self.login(&email, TEST_PASSWORD).await.assert_status(200);
        user_from(&logged_in.body)
    }

    /// A user the service never registered (an account from a fixture, say):
    /// a valid access token for `id` with `role`, signed with
    /// [`TEST_JWT_SECRET`]. Requests are checked by signature and expiry
    /// alone, so it is accepted; a socket handshake also needs the account.
    pub fn act_as(&self, id: Uuid, role: Role) -> TestUser {
        let now = chrono::Utc::now().timestamp();
        let token = JwtKeys::from_secret(TEST_JWT_SECRET.as_bytes()).sign(&AccessClaims {
            sub: id,
            role,
            sid: Uuid::now_v7(),
            iat: now,
            exp: now + 600,
        });
        TestUser {
            id,
            email: String::new(),
            role,
            token,
            refresh_token: String::new(),
            profile: json!({"id": id, "role": role}),
        }
    }

    // ---- incident commands --------------------------------------------------

    /// `POST /api/incidents`: a [`ReportIncident`], or any JSON (to send
    /// something invalid).
    pub async fn report_incident(
        &self,
        who: &(impl Bearer + ?Sized),
        report: impl Into<Value>,
    ) -> ApiResponse {
        self.request_as(Method::POST, who, "/api/incidents", Some(report.into()))
            .await
    }

    /// Reports an incident and returns its id and event offset.
    ///
    /// # Panics
    ///
    /// Unless the service answers 201.
    pub async fn reported(&self, who: &(impl Bearer + ?Sized), report: ReportIncident) -> Reported {
        let response = self.report_incident(who, report).await.assert_status(201);
        Reported {
            id: response.id(),
            offset: response.event_offset(),
            body: response.body,
        }
    }

    /// `PUT /api/incidents/{id}` with `changes` (`{title?, description?,
    /// location?, status?, assignedTo?}`).
    pub async fn update(
        &self,
        who: &(impl Bearer + ?Sized),
        id: impl std::fmt::Display,
        changes: Value,
    ) -> ApiResponse {
        self.request_as(
            Method::PUT,
            who,
            &format!("/api/incidents/{id}"),
            Some(changes),
        )
        .await
    }

    /// `PATCH /api/incidents/{id}/resolve`.
    pub async fn resolve(
        &self,
        who: &(impl Bearer + ?Sized),
        id: impl std::fmt::Display,
        resolution: &str,
    ) -> ApiResponse {
        self.request_as(
            Method::PATCH,
            who,
            &format!("/api/incidents/{id}/resolve"),
            Some(json!({ "resolution": resolution })),
        )
        .await
    }

    /// `PATCH /api/incidents/{id}/severity`.
    pub async fn change_severity(
        &self,
        who: &(impl Bearer + ?Sized),
        id: impl std::fmt::Display,
        severity: Severity,
    ) -> ApiResponse {
        self.request_as(
            Method::PATCH,
            who,
            &format!("/api/incidents/{id}/severity"),
            Some(json!({ "severity": severity })),
        )
        .await
    }

    /// `DELETE /api/incidents/{id}`.
    pub async fn delete(
        &self,
        who: &(impl Bearer + ?Sized),
        id: impl std::fmt::Display,
    ) -> ApiResponse {
        self.request_as(Method::DELETE, who, &format!("/api/incidents/{id}"), None)
            .await
    }

    /// `POST /api/incidents/{id}/comments`.
    pub async fn comment(
        &self,
        who: &(impl Bearer + ?Sized),
        id: impl std::fmt::Display,
        body: &str,
    ) -> ApiResponse {
        self.request_as(
            Method::POST,
            who,
            &format!("/api/incidents/{id}/comments"),
            Some(json!({ "body": body })),
        )
        .await
    }

    // ---- queries --------------------------------------------------------------

    /// `GET /api/incidents/{id}`.
    pub async fn get_incident(
        &self,
        who: &(impl Bearer + ?Sized),
        id: impl std::fmt::Display,
    ) -> ApiResponse {
        self.get_as(who, &format!("/api/incidents/{id}")).await
    }

    /// `GET /api/incidents/{id}?minOffset=…`: read your own write.
    pub async fn get_incident_as_of(
        &self,
        who: &(impl Bearer + ?Sized),
        id: impl std::fmt::Display,
        offset: u64,
    ) -> ApiResponse {
        self.get_as(who, &format!("/api/incidents/{id}?minOffset={offset}"))
            .await
    }

    /// `GET /api/incidents?<query>`, e.g. `"severity=CRITICAL&limit=2"`.
    pub async fn list_incidents(&self, who: &(impl Bearer + ?Sized), query: &str) -> ApiResponse {
        self.get_as(who, &format!("/api/incidents?{query}")).await
    }

    /// `GET /api/incidents/{id}/comments?<query>`.
    pub async fn comments(
        &self,
        who: &(impl Bearer + ?Sized),
        id: impl std::fmt::Display,
        query: &str,
    ) -> ApiResponse {
        self.get_as(who, &format!("/api/incidents/{id}/comments?{query}"))
            .await
    }

    /// `GET /api/notifications?<query>`.
    pub async fn notifications(&self, who: &(impl Bearer + ?Sized), query: &str) -> ApiResponse {
        self.get_as(who, &format!("/api/notifications?{query}"))
            .await
    }

    /// `PATCH /api/notifications/{id}/read`.
    pub async fn mark_read(
        &self,
        who: &(impl Bearer + ?Sized),
        id: impl std::fmt::Display,
    ) -> ApiResponse {
        self.request_as(
            Method::PATCH,
            who,
            &format!("/api/notifications/{id}/read"),
            None,
        )
        .await
    }

    /// `GET /api/audit?<query>`.
    pub async fn audit(&self, who: &(impl Bearer + ?Sized), query: &str) -> ApiResponse {
        self.get_as(who, &format!("/api/audit?{query}")).await
    }

    /// `GET /api/events/replay?<query>`, e.g.
    /// `"topic=presence-events&fromOffset=6"`.
    pub async fn replay(&self, who: &(impl Bearer + ?Sized), query: &str) -> ApiResponse {
        self.get_as(who, &format!("/api/events/replay?{query}"))
            .await
    }

    /// `GET /api/admin/projections`.
    pub async fn projections(&self, who: &(impl Bearer + ?Sized)) -> ApiResponse {
        self.get_as(who, "/api/admin/projections").await
    }

    /// `POST /api/admin/projections/{name}/rebuild`.
    pub async fn rebuild_projection(
        &self,
        who: &(impl Bearer + ?Sized),
        name: &str,
    ) -> ApiResponse {
        self.request_as(
            Method::POST,
            who,
            &format!("/api/admin/projections/{name}/rebuild"),
            None,
        )
        .await
    }

    // ---- real time ------------------------------------------------------------

    /// A live Socket.IO connection as `who`, past its (empty) replay: the
    /// `replay:complete` that starts every connection is already read.
    ///
    /// # Panics
    ///
    /// If the handshake is refused or the first event is something else.
    pub async fn socket(&self, who: &(impl Bearer + ?Sized)) -> TestSocket {
        let mut socket = self
            .connect_socket(json!({ "token": who.access_token() }))
            .await
            .expect("the connection is accepted");
        let (name, payload) = socket.next().await;
        assert_eq!(name, "replay:complete", "{payload}");
        socket
    }

    /// Connects with this handshake `auth` (`{token, lastOffset?,
    /// rooms?}`); the first event (`replay:complete` or
    /// `replay:incomplete`) is left for the test to read.
    pub async fn connect_socket(&self, auth: Value) -> Result<TestSocket, Refused> {
        crate::socket::connect(&self.address, auth).await
    }
}

/// The service's logs, shown only when `TEST_LOG` is set (to a `tracing`
/// filter, e.g. `TEST_LOG=debug`), as zero-to-production does: a failing
/// test's output is then the service's story.
fn show_logs_if_asked() {
    if let Ok(filter) = std::env::var("TEST_LOG") {
        let filter = tracing_subscriber::EnvFilter::try_new(&filter)
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        // Another test of this process may have installed it already.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    }
}

/// An incident the harness reported.
#[derive(Debug, Clone)]
pub struct Reported {
    pub id: Uuid,
    /// Its `incident.created` offset.
    pub offset: u64,
    /// The incident as the command answered.
    pub body: Value,
}

fn user_from(body: &Value) -> TestUser {
    let user = &body["user"];
    let token = |name: &str| {
        body[name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} in {body}"))
            .to_owned()
    };
    TestUser {
        id: user["id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("no user id in {body}")),
        email: user["email"].as_str().unwrap_or_default().to_owned(),
        role: serde_json::from_value(user["role"].clone()).expect("a role"),
        token: token("accessToken"),
        refresh_token: token("refreshToken"),
        profile: user.clone(),
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// `host:port` of a `postgres://user@host:port/name` URL.
fn host_and_port(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let after_user = after_scheme
        .rsplit_once('@')
        .map_or(after_scheme, |(_, rest)| rest);
    after_user
        .split(['/', '?'])
        .next()
        .unwrap_or(after_user)
        .to_owned()
}
