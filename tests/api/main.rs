//! The integration tests of The Marauder's Map: one binary, one module per
//! area, all against the real thing — a PostgreSQL database per test, the
//! service on a free port, a real Socket.IO client, and a real Apache Iggy
//! server where one is available. The harness is the `marauders-testkit`
//! crate (`testkit/`), shared with the benches.
//!
//! `tests/README.md` says how to add a test: which module, the `TestApp`
//! methods, given/when/then for the aggregate (in `core/tests/`), and the
//! Iggy `#[ignore]` convention.

mod auth_limits;
mod fixture_log;
mod frozen_dependencies;
mod group_commit;
mod http_edge;
mod idempotency;
mod identity;
mod iggy_server;
mod iggy_user;
mod incidents;
mod log_conformance;
mod log_consumer;
mod log_identity;
mod notifications;
mod openapi;
mod presence;
mod projectors;
mod queries;
mod realtime;
mod rebuild;
mod replay;
mod socket_sessions;
mod web_page;
mod write_model;
