//! The read side of The Marauder's Map: consumers of the log, each at its
//! own offset, none known to the write side. Adding one changes nothing
//! upstream.
//!
//! # Layout
//!
//! - [`consumer`]: [`LogConsumer`], the smallest complete consumer — read a
//!   topic from the offset it stored, hand each decoded event to an
//!   [`EventHandler`], store the new offset — as a single step
//!   ([`LogConsumer::poll_once`]) that tests drive, plus a loop
//!   ([`LogConsumer::run`]) that waits for new events and stops on shutdown.

pub mod consumer;

pub use consumer::{ConsumerError, EventHandler, LogConsumer, PollOutcome};
