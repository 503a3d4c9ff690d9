//! The write side: commands validated against the incident aggregate,
//! rebuilt from the log, and answered once the log has their event.
//!
//! - [`write_model`]: [`WriteModel`], every incident folded from
//!   `incident-events` in memory (Iggy cannot read by key), kept current by
//!   a tailer, bounded at start-up by snapshots.
//! - [`group_commit`]: [`GroupCommit`], the appender: every event decided
//!   while an append is in flight goes into the next one, so many commands
//!   share one append (one fsync).
//! - [`handler`]: [`CommandHandler`], one command → at most one event:
//!   serialize per incident, catch up, answer a retried key from its first
//!   outcome, decide, append, confirm from the log that the event was the
//!   one accepted (409 otherwise) — re-sending the identical event while an
//!   append's outcome is unknown.
//!
//! - [`faults`]: [`Faults`], what tests arm to lose an append's answer or
//!   hold appends back.
//!
//! No database write happens on this path; the command handler never waits
//! for a projector and never talks to a browser.

pub mod faults;
pub mod group_commit;
pub mod handler;
pub mod write_model;

pub use faults::Faults;
pub use group_commit::GroupCommit;
pub use handler::{CommandError, CommandHandler, CommandOutcome, CommandRequest};
pub use write_model::{AcceptedCommand, WriteModel};
