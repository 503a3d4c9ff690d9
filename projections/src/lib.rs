//! The read side of The Marauder's Map: consumers of the log, each at its
//! own offset, none known to the write side. Adding one changes nothing
//! upstream.
//!
//! # Layout
//!
//! - [`runtime`]: [`Projector`] (a name, a topic, a handler that changes
//!   tables) and [`ProjectorRunner`], which applies a batch and stores the
//!   offset in one PostgreSQL transaction — `poll_once` for tests, `run`
//!   for the service. Copies of an event change nothing (the version rule,
//!   or rows keyed by event id); undecodable messages go to `dead_letters`;
//!   an offset stored on another log stops the projector.
//! - [`applied`]: [`AppliedWatch`], read-your-writes woken by the
//!   projectors' notifications rather than polling.
//! - [`read_model`]: the projector behind the incident queries.
//! - [`notifications`]: comments, resolutions and CRITICAL escalations
//!   turned into notifications for the people concerned.
//! - [`audit`]: `auth-events` as a filterable audit log.
//! - [`rebuild`]: replaying a projection from offset 0 into fresh tables
//!   and switching over atomically while queries keep answering, one
//!   rebuild of a projection at a time across instances.
//! - [`registry`]: [`Projection`], the closed list of every projection.
//! - [`consumer`]: [`LogConsumer`], the lighter consumer whose offset lives
//!   on the log itself (used by the taste-test example).

pub mod applied;
pub mod audit;
pub mod consumer;
pub mod notifications;
pub mod read_model;
pub mod rebuild;
pub mod registry;
pub mod runtime;

pub use applied::{ADVANCED_CHANNEL, AppliedWatch};
pub use audit::{AUDIT, AuditProjector};
pub use consumer::{ConsumerError, EventHandler, LogConsumer, PollOutcome};
pub use notifications::{NOTIFICATIONS, NotificationsProjector};
pub use read_model::{READ_MODEL, ReadModelProjector};
pub use rebuild::{
    RebuildClaim, RebuildEstimate, RebuildProgress, RebuildReport, SwitchHold, rebuild_projection,
};
pub use registry::{Projection, ProjectorVisitor, UnknownProjection};
pub use runtime::{
    HEARTBEAT_INTERVAL, ProjectionError, ProjectionPosition, Projector, ProjectorRunner,
    StepOutcome, projection_position, stored_offset,
};
