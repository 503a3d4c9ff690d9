//! The vocabulary of the incident domain.
//!
//! These enums are the only way a severity, status, location or role exists
//! in the program: input is parsed into them once (at the HTTP edge or when an
//! event is decoded) and everything after that can rely on them.

mod values;

pub use values::{IncidentStatus, Location, Role, Severity, UnknownValue};
