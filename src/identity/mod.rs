//! Identity: accounts, sessions and roles.
//!
//! The one context whose record is PostgreSQL, not the log: passwords and
//! refresh tokens are secrets that must be rotatable and deletable. Every
//! change still reaches the log (topic `auth-events`) through the outbox
//! ([`crate::outbox`]), committed in the same transaction as the change.
//!
//! - [`values`]: `Email`, `Password`, `DisplayName`, parsed once.
//! - [`passwords`]: argon2id hashing, off the async runtime.
//! - [`tokens`]: short-lived JWT access tokens and opaque, rotating refresh
//!   tokens; the JWT secret.
//! - [`accounts`]: register, log in, refresh, log out, change role — each
//!   one transaction with its outbox event.

pub mod accounts;
pub mod passwords;
pub mod tokens;
pub mod values;

pub use accounts::{Account, IdentityError, SessionTokens};
