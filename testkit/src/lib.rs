//! # The test harness of The Marauder's Map
//!
//! Shared by the one integration-test binary (`tests/api/`) and the benches
//! (`benches/`). Nothing here is mocked: a real PostgreSQL (a fresh database
//! per test, from `TEST_DATABASE_URL`, which `scripts/test` sets), a real
//! Apache Iggy server where one is available, the real service on a free
//! port, a real Socket.IO client.
//!
//! # Layout
//!
//! - [`database`]: [`TestDatabase::fresh`], a migrated database of the
//!   test's own.
//! - [`iggy`]: [`IggyServer`] (`start`, `kill_9`, `restart`), the
//!   `#[ignore]` reasons of the tests that need one.
//! - [`backend`]: [`TestBackend`] (postgres | iggy) for tests that run once
//!   per log backend, with [`TestBackend::open_log`].
//! - [`app`]: [`TestApp`], the service with a client that speaks the
//!   domain (`app.user(Role::Prefect)`, `app.report_incident(&harry, …)`,
//!   `app.resolve(…)`, `app.log()`, `app.socket(&harry)`,
//!   `app.second_instance()`, `app.stop()`), built by one
//!   [`TestApp::builder`].
//! - [`response`]: [`ApiResponse`], what a request answered
//!   (`status`, `body`, `offset`, `headers`), with assertions that print
//!   the body when they fail.
//! - [`requests`]: request bodies with valid defaults ([`ReportIncident`]).
//! - [`socket`]: [`TestSocket`], the Socket.IO client.
//! - [`polling`]: [`PollingSocket`], the protocol by hand over HTTP
//!   long-polling, for tests that need the transport's ids.
//! - [`events`]: events as today's code writes them, for writing the log
//!   directly.
//! - [`wait`]: [`eventually`], for conditions reached asynchronously.
//! - [`bench`]: the benches' result tables.
//! - [`cpu`]: CPU time of processes (a service, PostgreSQL's), from
//!   `/proc`, for the benches.
//!
//! `tests/README.md` says how to add a test.

pub mod app;
pub mod backend;
pub mod bench;
pub mod cpu;
pub mod database;
pub mod events;
pub mod iggy;
pub mod polling;
pub mod proxy;
pub mod requests;
pub mod response;
pub mod socket;
pub mod wait;

pub use app::{
    Reported, StoppedApp, TEST_JWT_SECRET, TEST_PASSWORD, TestApp, TestAppBuilder, TestUser,
    no_web_page_dir,
};
pub use backend::{LogLocation, TestBackend};
pub use database::TestDatabase;
pub use iggy::{
    IGGY_IGNORE_REASON, IGGY_PROCESS_IGNORE_REASON, IggyServer, free_port, fresh_stream_name,
    iggy_available, iggy_server_program, service_user_url, with_credentials,
};
pub use polling::PollingSocket;
pub use proxy::FreezableProxy;
pub use requests::ReportIncident;
pub use response::{ApiResponse, Bearer};
pub use socket::{Refused, TestSocket, incident_events};
pub use wait::{EVENTUALLY, eventually};
