//! Identity: accounts, sessions and roles.
//!
//! The one context whose record is PostgreSQL, not the log: passwords and
//! refresh tokens are secrets that must be rotatable and deletable. Every
//! change still reaches the log (topic `auth-events`) through the outbox
//! ([`crate::outbox`]), committed in the same transaction as the change.
//!
//! - [`values`]: `Email`, `Password`, `DisplayName`, parsed once.
//! - [`passwords`]: argon2id hashing, off the async runtime, a fixed number
//!   at a time ([`PasswordHashing`]).
//! - [`throttle`]: login, registration and refresh attempts per (account,
//!   address) and per address ([`AuthThrottle`]).
//! - [`tokens`]: short-lived JWT access tokens and opaque, rotating refresh
//!   tokens; the JWT secret.
//! - [`accounts`]: register, log in, refresh, log out, change role — each
//!   one transaction with its outbox event.

pub mod accounts;
pub mod passwords;
pub mod throttle;
pub mod tokens;
pub mod values;

pub use accounts::{Account, IdentityError, SessionTokens};
pub use passwords::{HashingConfig, PasswordHashing};
pub use throttle::{AuthThrottle, ThrottleConfig};

/// What protects the credential endpoints under load and abuse: one per
/// service instance (see [`throttle`] for why not shared).
pub struct AuthLimits {
    pub throttle: AuthThrottle,
    pub hashing: PasswordHashing,
}

impl AuthLimits {
    pub fn new(throttle: ThrottleConfig, hashing: HashingConfig) -> Self {
        AuthLimits {
            throttle: AuthThrottle::new(throttle),
            hashing: PasswordHashing::new(hashing),
        }
    }
}

impl Default for AuthLimits {
    fn default() -> Self {
        AuthLimits::new(ThrottleConfig::default(), HashingConfig::default())
    }
}
