//! Tokens: a short-lived JWT to call the API, a long-lived opaque refresh
//! token to get a new one.
//!
//! Access tokens (HS256, 15 minutes unless `ACCESS_TOKEN_LIFETIME_SECS`
//! says otherwise) are checked by signature and expiry only — no database
//! read per request — so a logout or a role change reaches an access token
//! when it expires. (Socket.IO connections are the exception: the gateway
//! closes them when their token expires or their session ends,
//! `src/realtime/expiry.rs`.) Refresh tokens are 256 random
//! bits; the database keeps only their SHA-256, and each is good for one
//! exchange (rotation) — plus a few seconds' grace, so that two tabs
//! refreshing with the same token at once both stay logged in. That needs
//! both to get the *same* successor although the server never keeps a
//! token's value: the successor of a token is derived from it, an
//! HMAC-SHA256 of the token under a key derived from the JWT secret
//! ([`JwtKeys::successor_of`]). Unpredictable without the secret, and the
//! same every time it is asked for.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::domain::Role;

/// The product default lifetime of an access token.
pub const ACCESS_TOKEN_TTL: Duration = Duration::from_secs(15 * 60);
pub const SESSION_TTL: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// The shortest JWT secret accepted from `JWT_SECRET`.
pub const MIN_SECRET_BYTES: usize = 32;

/// What an access token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The user id.
    pub sub: Uuid,
    pub role: Role,
    /// The session this token was issued for (logout ends it).
    pub sid: Uuid,
    pub iat: i64,
    pub exp: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the access token has expired")]
    Expired,
    #[error("the access token is invalid")]
    Invalid,
}

/// How long after a refresh token was exchanged it may be presented again
/// and get the same successor (two tabs refreshing at once). After it, a
/// second use is a reuse: the token leaked, and its session is revoked.
pub const REFRESH_GRACE: Duration = Duration::from_secs(10);

/// The keys derived from the JWT secret: they sign and check access tokens,
/// and derive refresh tokens' successors.
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// How long the access tokens it issues are valid.
    access_token_lifetime: Duration,
    /// Keys [`JwtKeys::successor_of`]; derived from the secret for that one
    /// purpose, so it signs nothing else.
    successor_key: [u8; 32],
    /// Access tokens whose signature this process has checked, with their
    /// claims. A client sends the same token with every request for its
    /// whole lifetime, and checking it again (two base64 decodes, two JSON
    /// parses and an HMAC) was a few percent of a command's CPU. The token
    /// is the key, byte for byte, so only the exact string that verified
    /// finds its entry; expiry is still checked on every request.
    verified: std::sync::Mutex<HashMap<String, AccessClaims>>,
}

/// The most access tokens [`JwtKeys`] remembers as verified; past it the
/// memory is emptied and refilled by the next requests. A token is about
/// 300 bytes, so this bounds it to a few MiB.
const MAX_VERIFIED_TOKENS: usize = 10_000;

type HmacSha256 = Hmac<Sha256>;

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

impl JwtKeys {
    pub fn from_secret(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        JwtKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            access_token_lifetime: ACCESS_TOKEN_TTL,
            successor_key: hmac_sha256(secret, b"marauders-map refresh token successor v1"),
            verified: std::sync::Mutex::default(),
        }
    }

    /// Issues access tokens valid for `lifetime` instead of
    /// [`ACCESS_TOKEN_TTL`] (tests and the end-to-end tests use seconds).
    pub fn with_access_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.access_token_lifetime = lifetime;
        self
    }

    /// The refresh token that replaces `token` when it is exchanged: the
    /// same for every exchange of `token`, unguessable without the secret.
    pub fn successor_of(&self, token: &RefreshToken) -> RefreshToken {
        RefreshToken(
            URL_SAFE_NO_PAD.encode(hmac_sha256(&self.successor_key, token.as_str().as_bytes())),
        )
    }

    pub fn issue_access_token(&self, user_id: Uuid, role: Role, session_id: Uuid) -> String {
        let now = chrono::Utc::now().timestamp();
        self.sign(&AccessClaims {
            sub: user_id,
            role,
            sid: session_id,
            iat: now,
            exp: now + self.access_token_lifetime.as_secs() as i64,
        })
    }

    /// Signs arbitrary claims; tests use it to make expired tokens.
    pub fn sign(&self, claims: &AccessClaims) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .expect("HS256 signing of plain claims cannot fail")
    }

    pub fn verify_access_token(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let remembered = self
            .verified
            .lock()
            .expect("never poisoned")
            .get(token)
            .cloned();
        if let Some(claims) = remembered {
            return self.unexpired(claims, jsonwebtoken::get_current_timestamp());
        }
        let claims = jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|error| match error.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        let mut verified = self.verified.lock().expect("never poisoned");
        if verified.len() >= MAX_VERIFIED_TOKENS {
            verified.clear();
        }
        verified.insert(token.to_owned(), claims.clone());
        Ok(claims)
    }

    /// `claims` of a token verified earlier, unless it has expired by
    /// `now` (seconds since the epoch): the check `jsonwebtoken` makes,
    /// with the same leeway.
    fn unexpired(&self, claims: AccessClaims, now: u64) -> Result<AccessClaims, TokenError> {
        // A token with a negative `exp` never verified, so is never here.
        let exp = u64::try_from(claims.exp).map_err(|_| TokenError::Invalid)?;
        if exp < now.saturating_sub(self.validation.leeway) {
            Err(TokenError::Expired)
        } else {
            Ok(claims)
        }
    }
}

/// An opaque refresh token as the client holds it.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken(String);

impl RefreshToken {
    pub fn generate() -> RefreshToken {
        RefreshToken(URL_SAFE_NO_PAD.encode(random_bytes::<32>()))
    }

    pub fn from_client(value: String) -> RefreshToken {
        RefreshToken(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What the database stores and looks up.
    pub fn hash(&self) -> Vec<u8> {
        Sha256::digest(self.0.as_bytes()).to_vec()
    }
}

impl std::fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshToken(***)")
    }
}

/// The JWT secret: `JWT_SECRET` when set (at least 32 bytes), otherwise the
/// one kept in `<data_dir>/jwt-secret`, generated on first start. There is
/// no built-in default: a known secret would let anyone mint tokens.
pub fn load_or_create_jwt_secret(
    configured: Option<&str>,
    data_dir: &Path,
) -> anyhow::Result<Vec<u8>> {
    if let Some(secret) = configured.filter(|secret| !secret.is_empty()) {
        anyhow::ensure!(
            secret.len() >= MIN_SECRET_BYTES,
            "JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes long"
        );
        return Ok(secret.as_bytes().to_vec());
    }
    let path = data_dir.join("jwt-secret");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim();
        anyhow::ensure!(
            existing.len() >= MIN_SECRET_BYTES,
            "{} is too short; delete it to regenerate",
            path.display()
        );
        return Ok(existing.as_bytes().to_vec());
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("Failed to create {}", data_dir.display()))?;
    let secret = URL_SAFE_NO_PAD.encode(random_bytes::<48>());
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(&path) {
        Ok(mut file) => {
            file.write_all(secret.as_bytes())
                .with_context(|| format!("Failed to write {}", path.display()))?;
            tracing::info!(path = %path.display(), "generated a new JWT secret");
            Ok(secret.into_bytes())
        }
        // Another instance created it first: use theirs.
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            load_or_create_jwt_secret(None, data_dir)
        }
        Err(error) => Err(error).with_context(|| format!("Failed to create {}", path.display())),
    }
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the operating system provides randomness");
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_verifies_with_its_keys_and_not_with_others() {
        let keys = JwtKeys::from_secret(&[7; 32]);
        let (user, session) = (Uuid::now_v7(), Uuid::now_v7());
        let token = keys.issue_access_token(user, Role::Prefect, session);
        let claims = keys.verify_access_token(&token).unwrap();
        assert_eq!(
            (claims.sub, claims.role, claims.sid),
            (user, Role::Prefect, session)
        );

        let forger = JwtKeys::from_secret(&[8; 32]);
        assert_eq!(forger.verify_access_token(&token), Err(TokenError::Invalid));
        assert_eq!(
            keys.verify_access_token("not.a.jwt"),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn a_remembered_token_still_expires_and_other_strings_are_checked_afresh() {
        let keys = JwtKeys::from_secret(&[7; 32]);
        let token = keys.issue_access_token(Uuid::now_v7(), Role::Student, Uuid::now_v7());
        let first = keys.verify_access_token(&token).unwrap();
        assert_eq!(keys.verify_access_token(&token), Ok(first.clone()));

        // Expired once `exp` is more than the leeway behind, as jsonwebtoken
        // has it.
        let exp = first.exp as u64;
        let leeway = keys.validation.leeway;
        assert_eq!(
            keys.unexpired(first.clone(), exp + leeway),
            Ok(first.clone())
        );
        assert_eq!(
            keys.unexpired(first, exp + leeway + 1),
            Err(TokenError::Expired)
        );

        // A tampered copy of a remembered token is not found, and fails.
        let at = token.len() - 10; // within the signature
        let swapped = if &token[at..=at] == "A" { "B" } else { "A" };
        let tampered = format!("{}{swapped}{}", &token[..at], &token[at + 1..]);
        assert_eq!(
            keys.verify_access_token(&tampered),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn a_token_lives_as_long_as_configured() {
        let lifetime_of = |keys: &JwtKeys| {
            let token = keys.issue_access_token(Uuid::now_v7(), Role::Student, Uuid::now_v7());
            let claims = keys.verify_access_token(&token).unwrap();
            claims.exp - claims.iat
        };
        let keys = JwtKeys::from_secret(&[7; 32]);
        assert_eq!(lifetime_of(&keys), 15 * 60);

        let keys = keys.with_access_token_lifetime(Duration::from_secs(3));
        assert_eq!(lifetime_of(&keys), 3);
    }

    #[test]
    fn an_expired_token_is_refused_as_expired() {
        let keys = JwtKeys::from_secret(&[7; 32]);
        let now = chrono::Utc::now().timestamp();
        let token = keys.sign(&AccessClaims {
            sub: Uuid::now_v7(),
            role: Role::Student,
            sid: Uuid::now_v7(),
            iat: now - 3600,
            exp: now - 60,
        });
        assert_eq!(keys.verify_access_token(&token), Err(TokenError::Expired));
    }

    #[test]
    fn refresh_tokens_are_random_and_stored_hashed() {
        let (a, b) = (RefreshToken::generate(), RefreshToken::generate());
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 43, "256 bits in unpadded base64url");
        assert_eq!(a.hash().len(), 32);
        assert_ne!(a.hash(), a.as_str().as_bytes());
    }

    #[test]
    fn a_successor_is_the_same_each_time_and_depends_on_the_token_and_the_secret() {
        let keys = JwtKeys::from_secret(&[7; 32]);
        let token = RefreshToken::generate();
        let successor = keys.successor_of(&token);
        assert_eq!(keys.successor_of(&token), successor);
        assert_eq!(successor.as_str().len(), 43, "256 bits, like a fresh token");
        assert_ne!(successor, token);
        assert_ne!(keys.successor_of(&RefreshToken::generate()), successor);
        assert_ne!(
            JwtKeys::from_secret(&[8; 32]).successor_of(&token),
            successor
        );
    }

    #[test]
    fn the_secret_is_generated_once_and_kept() {
        let dir = std::env::temp_dir().join(format!("mm-secret-{}", Uuid::new_v4().simple()));
        let first = load_or_create_jwt_secret(None, &dir).unwrap();
        let second = load_or_create_jwt_secret(None, &dir).unwrap();
        assert_eq!(first, second);
        assert!(first.len() >= MIN_SECRET_BYTES);
        assert!(load_or_create_jwt_secret(Some("short"), &dir).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
