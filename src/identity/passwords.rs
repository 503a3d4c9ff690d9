//! argon2id password hashing. Hashing takes tens of milliseconds of CPU on
//! purpose, so it runs on the blocking pool, never on the async runtime.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Argon2, PasswordHash};

use super::values::Password;

/// Hashes `password` into a PHC string (algorithm, parameters, salt, hash).
pub async fn hash_password(password: Password) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.expose().as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|error| anyhow::anyhow!("Failed to hash a password: {error}"))
    })
    .await?
}

/// Checks `candidate` against a stored hash. With no stored hash (unknown
/// email) it checks against a dummy hash, so both failures take the same
/// time and cannot be told apart by timing.
pub async fn verify_password(
    candidate: String,
    stored_hash: Option<String>,
) -> anyhow::Result<bool> {
    tokio::task::spawn_blocking(move || {
        let known_user = stored_hash.is_some();
        let stored = stored_hash.unwrap_or_else(|| dummy_hash().to_owned());
        let parsed = PasswordHash::new(&stored)
            .map_err(|error| anyhow::anyhow!("Stored password hash is invalid: {error}"))?;
        let matches = Argon2::default()
            .verify_password(candidate.as_bytes(), &parsed)
            .is_ok();
        Ok(known_user && matches)
    })
    .await?
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        Argon2::default()
            .hash_password(b"not anybody's password")
            .map(|hash| hash.to_string())
            .expect("hashing a constant succeeds")
    })
}
