//! Account operations. Each is one PostgreSQL transaction that makes the
//! change and records its `auth-events` event in the outbox, so the event
//! exists exactly when the change does.

use chrono::Utc;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::passwords::HashingError;
use super::tokens::{JwtKeys, REFRESH_GRACE, RefreshToken, SESSION_TTL};
use super::values::{DisplayName, Email};
use crate::domain::Role;
use crate::events::{
    AuthAction, AuthLockedOut, Event, EventPayload, RevocationReason, SessionRevoked,
    ThrottleScope, TokenRefreshed, UserLoggedIn, UserLoggedOut, UserRegistered, UserRoleChanged,
};
use crate::outbox::insert_outbox_event;

/// A user as the API shows it: no secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    pub id: Uuid,
    #[schema(format = Email)]
    pub email: String,
    pub display_name: String,
    #[sqlx(try_from = "String")]
    #[schema(value_type = Role)]
    pub role: RoleColumn,
}

/// `Role` as stored in the `role` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct RoleColumn(pub Role);

impl TryFrom<String> for RoleColumn {
    type Error = crate::domain::UnknownValue;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse().map(RoleColumn)
    }
}

impl Account {
    pub fn role(&self) -> Role {
        self.role.0
    }
}

/// What a successful register, login or refresh hands the client.
#[derive(Debug, Clone)]
pub struct SessionTokens {
    pub session_id: Uuid,
    pub access_token: String,
    pub refresh_token: RefreshToken,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("an account with this email already exists")]
    EmailTaken,
    /// One message for an unknown email and a wrong password, so the
    /// answer does not reveal which emails have accounts.
    #[error("invalid email or password")]
    InvalidCredentials,
    #[error("the refresh token is invalid, expired or revoked")]
    InvalidRefreshToken,
    /// An already rotated token came back: it leaked, so its session ends.
    #[error("the refresh token was already used; the session has been revoked")]
    RefreshTokenReused,
    #[error("no user with email {0}")]
    UnknownEmail(String),
    #[error("the user no longer exists")]
    UnknownUser,
    #[error(transparent)]
    Hashing(#[from] HashingError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Creates a STUDENT account and its first session.
pub async fn register(
    pool: &PgPool,
    keys: &JwtKeys,
    email: &Email,
    display_name: &DisplayName,
    password_hash: &str,
) -> Result<(Account, SessionTokens), IdentityError> {
    let mut tx = pool.begin().await?;
    let account: Account = sqlx::query_as(
        "INSERT INTO users (id, email, display_name, password_hash) VALUES ($1, $2, $3, $4)
         RETURNING id, email, display_name, role",
    )
    .bind(Uuid::now_v7())
    .bind(email.as_str())
    .bind(display_name.as_str())
    .bind(password_hash)
    .fetch_one(&mut *tx)
    .await
    .map_err(|error| match &error {
        sqlx::Error::Database(db) if db.constraint() == Some("users_email_unique") => {
            IdentityError::EmailTaken
        }
        _ => IdentityError::Database(error),
    })?;
    let tokens = open_session(&mut tx, keys, &account).await?;
    let event = UserRegistered {
        user_id: account.id,
        email: account.email.clone(),
    };
    record(&mut tx, event.into(), Some(account.id)).await?;
    tx.commit().await?;
    Ok((account, tokens))
}

/// The account and password hash for an email, if there is one.
pub async fn find_credentials(
    pool: &PgPool,
    email: &str,
) -> Result<Option<(Account, String)>, IdentityError> {
    let row: Option<(Uuid, String, String, String, String)> = sqlx::query_as(
        "SELECT id, email, display_name, role, password_hash FROM users WHERE lower(email) = lower($1)",
    )
    .bind(email.trim())
    .fetch_optional(pool)
    .await?;
    row.map(|(id, email, display_name, role, hash)| {
        let role = RoleColumn::try_from(role)
            .map_err(|error| anyhow::anyhow!("corrupt role column: {error}"))?;
        Ok((
            Account {
                id,
                email,
                display_name,
                role,
            },
            hash,
        ))
    })
    .transpose()
}

/// Opens a session for an authenticated account (a login).
pub async fn log_in(
    pool: &PgPool,
    keys: &JwtKeys,
    account: &Account,
    ip: &str,
) -> Result<SessionTokens, IdentityError> {
    let mut tx = pool.begin().await?;
    let tokens = open_session(&mut tx, keys, account).await?;
    let event = UserLoggedIn {
        user_id: account.id,
        ip: ip.to_owned(),
    };
    record(&mut tx, event.into(), Some(account.id)).await?;
    tx.commit().await?;
    Ok(tokens)
}

/// Exchanges a refresh token for a new pair. Each token works once, plus a
/// grace period ([`REFRESH_GRACE`]): presented again within it — two tabs
/// refreshing at once — it gets the same successor again, so both keep a
/// working token. After it, a second use revokes the whole session, and the
/// revocation is recorded (`session.revoked`, from `ip`).
pub async fn refresh(
    pool: &PgPool,
    keys: &JwtKeys,
    presented: &RefreshToken,
    ip: &str,
) -> Result<(Account, SessionTokens), IdentityError> {
    let mut tx = pool.begin().await?;
    // The row locks make concurrent exchanges of one token take turns: the
    // second sees the first's rotation (and its time) when it gets the lock.
    let row: Option<(Uuid, Uuid, bool, bool, bool)> = sqlx::query_as(
        "SELECT s.id, s.user_id, (s.revoked_at IS NULL AND s.expires_at > now()),
                t.rotated_at IS NOT NULL,
                COALESCE(t.rotated_at > now() - make_interval(secs => $2), false)
           FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id
          WHERE t.token_hash = $1
          FOR UPDATE OF t, s",
    )
    .bind(presented.hash())
    .bind(REFRESH_GRACE.as_secs_f64())
    .fetch_optional(&mut *tx)
    .await?;
    let Some((session_id, user_id, session_alive, rotated, within_grace)) = row else {
        return Err(IdentityError::InvalidRefreshToken);
    };
    if !session_alive {
        return Err(IdentityError::InvalidRefreshToken);
    }
    let successor = keys.successor_of(presented);
    match (rotated, within_grace) {
        (false, _) => {
            sqlx::query("UPDATE refresh_tokens SET rotated_at = now() WHERE token_hash = $1")
                .bind(presented.hash())
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO refresh_tokens (token_hash, session_id) VALUES ($1, $2)")
                .bind(successor.hash())
                .bind(session_id)
                .execute(&mut *tx)
                .await?;
        }
        // Exchanged a moment ago: its successor is already stored.
        (true, true) => {}
        (true, false) => {
            sqlx::query(
                "UPDATE sessions SET revoked_at = now(), revoked_reason = 'refresh token reused' WHERE id = $1",
            )
            .bind(session_id)
            .execute(&mut *tx)
            .await?;
            let revoked = SessionRevoked {
                user_id,
                session_id,
                reason: RevocationReason::RefreshTokenReused,
                ip: ip.to_owned(),
            };
            record(&mut tx, revoked.into(), Some(user_id)).await?;
            tx.commit().await?;
            tracing::warn!(%session_id, "a rotated refresh token was presented again; session revoked");
            return Err(IdentityError::RefreshTokenReused);
        }
    }
    let account: Account =
        sqlx::query_as("SELECT id, email, display_name, role FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_one(&mut *tx)
            .await?;
    record(
        &mut tx,
        TokenRefreshed {
            user_id: account.id,
        }
        .into(),
        Some(account.id),
    )
    .await?;
    tx.commit().await?;
    let tokens = SessionTokens {
        session_id,
        access_token: keys.issue_access_token(account.id, account.role(), session_id),
        refresh_token: successor,
    };
    Ok((account, tokens))
}

/// What a lockout was aimed at: an email (login, registration) or a
/// refresh token.
#[derive(Debug, Clone, Copy)]
pub enum LockoutTarget<'a> {
    Email(&'a str),
    RefreshToken(&'a RefreshToken),
}

/// Records the start of a lockout (`auth.locked_out`) with the account it
/// protects, if there is one — looked up the same way whether or not there
/// is, so a lockout costs the same for an unknown email as for a known one.
pub async fn record_lockout(
    pool: &PgPool,
    action: AuthAction,
    scope: ThrottleScope,
    ip: &str,
    target: LockoutTarget<'_>,
    retry_after_seconds: u64,
) -> Result<(), IdentityError> {
    let (email, user_id) = match (scope, target) {
        (ThrottleScope::Address, _) => (None, None),
        (ThrottleScope::AccountAndAddress, LockoutTarget::Email(raw)) => {
            let email = Email::parse(raw).ok();
            let user_id = match &email {
                Some(email) => {
                    sqlx::query_scalar("SELECT id FROM users WHERE lower(email) = lower($1)")
                        .bind(email.as_str())
                        .fetch_optional(pool)
                        .await?
                }
                None => None,
            };
            (email.map(|email| email.as_str().to_owned()), user_id)
        }
        (ThrottleScope::AccountAndAddress, LockoutTarget::RefreshToken(token)) => {
            let user_id = sqlx::query_scalar(
                "SELECT s.user_id FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id
                  WHERE t.token_hash = $1",
            )
            .bind(token.hash())
            .fetch_optional(pool)
            .await?;
            (None, user_id)
        }
    };
    let lockout = AuthLockedOut {
        action,
        scope,
        ip: ip.to_owned(),
        email,
        user_id,
        retry_after_seconds,
    };
    let mut tx = pool.begin().await?;
    // No user caused it (the envelope's userId); `data.userId` names the
    // account it protects.
    record(&mut tx, lockout.into(), None).await?;
    tx.commit().await?;
    Ok(())
}

/// Ends a session. Ending one that already ended changes nothing and
/// records nothing.
pub async fn log_out(pool: &PgPool, user_id: Uuid, session_id: Uuid) -> Result<(), IdentityError> {
    let mut tx = pool.begin().await?;
    let ended = sqlx::query(
        "UPDATE sessions SET revoked_at = now(), revoked_reason = 'logout'
          WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
    )
    .bind(session_id)
    .bind(user_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if ended == 1 {
        record(&mut tx, UserLoggedOut { user_id }.into(), Some(user_id)).await?;
    }
    tx.commit().await?;
    Ok(())
}

pub async fn find_account(pool: &PgPool, user_id: Uuid) -> Result<Account, IdentityError> {
    sqlx::query_as("SELECT id, email, display_name, role FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(pool)
        .await?
        .ok_or(IdentityError::UnknownUser)
}

/// Grants `role` to the user with `email` (the `user promote` command).
/// Returns the account and its previous role; no event when nothing changed.
pub async fn change_role(
    pool: &PgPool,
    email: &str,
    role: Role,
) -> Result<(Account, Role), IdentityError> {
    let mut tx = pool.begin().await?;
    let current: Option<Account> = sqlx::query_as(
        "SELECT id, email, display_name, role FROM users WHERE lower(email) = lower($1) FOR UPDATE",
    )
    .bind(email.trim())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(mut account) = current else {
        return Err(IdentityError::UnknownEmail(email.trim().to_owned()));
    };
    let old_role = account.role();
    if old_role != role {
        sqlx::query("UPDATE users SET role = $1, updated_at = now() WHERE id = $2")
            .bind(role.as_str())
            .bind(account.id)
            .execute(&mut *tx)
            .await?;
        let event = UserRoleChanged {
            user_id: account.id,
            old_role,
            new_role: role,
        };
        // Made from the command line: no user caused it.
        record(&mut tx, event.into(), None).await?;
        account.role = RoleColumn(role);
    }
    tx.commit().await?;
    Ok((account, old_role))
}

async fn open_session(
    tx: &mut PgConnection,
    keys: &JwtKeys,
    account: &Account,
) -> Result<SessionTokens, IdentityError> {
    let session_id = Uuid::now_v7();
    let expires_at = Utc::now() + SESSION_TTL;
    sqlx::query("INSERT INTO sessions (id, user_id, expires_at) VALUES ($1, $2, $3)")
        .bind(session_id)
        .bind(account.id)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
    let refresh_token = issue_refresh_token(tx, session_id).await?;
    Ok(SessionTokens {
        session_id,
        access_token: keys.issue_access_token(account.id, account.role(), session_id),
        refresh_token,
    })
}

async fn issue_refresh_token(
    tx: &mut PgConnection,
    session_id: Uuid,
) -> Result<RefreshToken, IdentityError> {
    let token = RefreshToken::generate();
    sqlx::query("INSERT INTO refresh_tokens (token_hash, session_id) VALUES ($1, $2)")
        .bind(token.hash())
        .bind(session_id)
        .execute(&mut *tx)
        .await?;
    Ok(token)
}

async fn record(
    tx: &mut PgConnection,
    payload: EventPayload,
    user_id: Option<Uuid>,
) -> Result<(), IdentityError> {
    insert_outbox_event(tx, &Event::new(payload, user_id)).await?;
    Ok(())
}
