//! # The Marauder's Map
//!
//! A real-time incident service for Hogwarts, event-sourced: every change is
//! an event appended to a log (Apache Iggy in production, an embedded log in
//! PostgreSQL otherwise), and everything else is built by reading that log.
//!
//! # Layout
//!
//! The shared kernel lives in the `marauders-core` crate (`core/`) and is
//! re-exported here:
//!
//! - [`domain`]: severities, statuses, locations, roles.
//! - [`events`]: the envelope and the typed catalog of all event types.
//! - [`idempotency`]: idempotency keys and the ids derived from them.
//! - [`incident`]: the aggregate (decide/evolve) and the version rule.
//! - [`log`]: the log interface and its two backends (Iggy, PostgreSQL).
//!
//! This crate is the service around it:
//!
//! - [`config`]: configuration from flags and environment (`DATABASE_URL`,
//!   `PORT`, `IGGY_URL`, data directory, log level).
//! - [`database`]: the PostgreSQL pool, its circuit breaker and the
//!   migrations in `migrations/`.
//! - [`app`]: [`app::Application`] wires the pieces, binds the port and runs
//!   until a shutdown signal, then drains and closes everything in order.
//! - [`http`]: the axum router, the JSON error type, health and schemas,
//!   and the OpenAPI document generated from the handlers.
//! - [`identity`]: accounts, sessions, JWTs and roles — kept in PostgreSQL
//!   because they are secrets, and told to the log through the outbox.
//! - [`log_migration`]: `log migrate`, copying the embedded log into an
//!   empty Iggy stream as the same log (offsets, ids and identity kept).
//! - [`outbox`]: the transactional outbox and the relay that appends its
//!   rows to the log in commit order.
//! - [`projections`]: the projections the service runs, their status, and
//!   rebuilds.
//! - [`realtime`]: the Socket.IO gateway at `/socket.io` — a broadcaster
//!   projector of the log with replay on reconnect, presence, typing.
//! - [`shutdown`]: turning SIGINT/SIGTERM into one cancellation token.
//!
//! The projectors (readers of the log, each with its own offset) live in the
//! `marauders-projections` crate (`projections/`).
//!
//! `src/main.rs` is the thin `marauders-map` binary: `serve` (default) and
//! `migrate`.
//!
//! Its integration tests are one binary, `tests/api/` (a module per area),
//! on the harness in the dev-only `marauders-testkit` crate (`testkit/`),
//! which the benches share; the aggregate's rules are specified in
//! `core/tests/incident_rules.rs`. `tests/README.md` says how to add one.

pub use marauders_core::{domain, events, idempotency, incident, log};

pub mod app;
pub mod commands;
pub mod config;
pub mod database;
pub mod http;
pub mod identity;
pub mod log_migration;
pub mod outbox;
pub mod projections;
pub mod realtime;
pub mod shutdown;
