//! The shared kernel of The Marauder's Map: what the write side (the
//! `marauders-map` crate) and the read side (the `marauders-projections`
//! crate) must agree on, and nothing else.
//!
//! # Layout
//!
//! - [`domain`]: the vocabulary of Hogwarts incidents — severities, statuses,
//!   locations, roles — as types that cannot hold an invalid value.
//! - [`events`]: the event envelope `{eventId, eventType, timestamp, source,
//!   userId, data}` and the typed catalog of every event on the log
//!   ([`events::EventPayload`]), with decoding that fails with a clear error,
//!   never a panic.
//! - [`incident`]: the Incident aggregate as pure functions — `decide`
//!   (command → event or rejection) and `evolve` (state + event → state) —
//!   and [`incident::IncidentFold`], the one fold with the version rule
//!   that the write side and every projector share. Each rule that can
//!   refuse a command is named: [`incident::Rejection`] and
//!   [`incident::Rule`].
//! - [`idempotency`]: `Idempotency-Key`s, and the incident, comment and
//!   event ids derived from them so that a retried command is recognised.
//! - [`log`]: the append-only log — stream `marauders-map`, topics
//!   `incident-events`, `presence-events`, `auth-events` — behind one
//!   interface ([`log::EventLog`]) with two backends: Apache Iggy
//!   ([`log::iggy`], the system of record in production) and an embedded log
//!   kept in PostgreSQL ([`log::postgres`], so everything runs without an
//!   Iggy server).
//! - [`testing`]: given / when / then for the aggregate's rules
//!   (`given(events).when(command, actor).then(event)`), used by
//!   `core/tests/incident_rules.rs`; pure, like everything it tests.
//!
//! Dependencies point one way: `incident` → `events` → `domain`, and `events`
//! → `log` only for topic names; `log` knows nothing of events beyond raw
//! bytes and message ids, and `domain` depends on nothing.

pub mod domain;
pub mod events;
pub mod idempotency;
pub mod incident;
pub mod log;
pub mod testing;
