//! Connections that obey their token: a connection is closed when its
//! handshake's access token expires, or when the login session behind the
//! token ends (a logout, a refresh token used twice, the session's own
//! 30 days) — with `connection:closing {reason, message}` first, since a
//! Socket.IO disconnect carries no reason of its own.
//!
//! The handshake checks the token once; [`SessionWatch`] holds the
//! connection to it afterwards. One task per instance looks at every
//! connection each `SESSION_CHECK_INTERVAL_MS` (default 1 s): the token's
//! expiry in memory, the sessions in one query of the `sessions` table that
//! every instance shares. So a logout closes the session's connections on
//! every instance within about one interval, with no message between
//! instances.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use socketioxide::extract::SocketRef;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::session::Session;
use super::wire::CloseReason;
use super::{Gateway, close_connection};

/// How often the session watch looks, unless `SESSION_CHECK_INTERVAL_MS`
/// says otherwise: well within the 5 s in which a logout must reach the
/// session's connections.
pub const SESSION_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The longest one round's session lookup may take.
const SESSION_CHECK_DEADLINE: Duration = Duration::from_secs(2);

/// The login sessions among `ids` that have ended, and why. A session the
/// table does not know (a token minted by a test, say) has not ended.
pub async fn ended_sessions(
    pool: &PgPool,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, CloseReason>, sqlx::Error> {
    let rows: Vec<(Uuid, Option<String>, bool)> = sqlx::query_as(
        "SELECT id, revoked_reason, revoked_at IS NOT NULL FROM sessions
          WHERE id = ANY($1) AND (revoked_at IS NOT NULL OR expires_at <= now())",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, revoked_reason, revoked)| {
            let reason = match (revoked, revoked_reason.as_deref()) {
                (true, Some("logout")) => CloseReason::LoggedOut,
                (true, _) => CloseReason::SessionRevoked,
                (false, _) => CloseReason::SessionExpired,
            };
            (id, reason)
        })
        .collect())
}

/// Why `session` must close now (`now` in seconds since the epoch), if it
/// must. An ended session wins over an expired token: refreshing would not
/// help, the user has to log in again.
pub fn close_reason(
    session: &Session,
    now: i64,
    ended: &HashMap<Uuid, CloseReason>,
) -> Option<CloseReason> {
    if let Some(reason) = ended.get(&session.login_session) {
        return Some(*reason);
    }
    (now >= session.token_expires_at).then_some(CloseReason::TokenExpired)
}

/// Closes the connections whose token expired or whose session ended.
pub struct SessionWatch {
    gateway: Arc<Gateway>,
    interval: Duration,
}

impl SessionWatch {
    pub fn new(gateway: Arc<Gateway>, interval: Duration) -> SessionWatch {
        SessionWatch { gateway, interval }
    }

    /// Checks every connection once; returns how many it closed. When the
    /// database does not answer, only expired tokens are found this time.
    pub async fn check_once(&self) -> usize {
        let connections: Vec<(SocketRef, Arc<Session>)> = self
            .gateway
            .io
            .sockets()
            .into_iter()
            .filter_map(|socket| {
                let session = socket.extensions.get::<Arc<Session>>()?;
                Some((socket, session))
            })
            .collect();
        if connections.is_empty() {
            return 0;
        }
        let login_sessions: Vec<Uuid> = connections
            .iter()
            .map(|(_, session)| session.login_session)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        // Bounded: with the database frozen the check gives up and tries
        // again next round (tokens that expired still close: that needs no
        // database).
        let ended = tokio::time::timeout(
            SESSION_CHECK_DEADLINE,
            ended_sessions(&self.gateway.pool, &login_sessions),
        )
        .await
        .unwrap_or(Err(sqlx::Error::PoolTimedOut))
        .unwrap_or_else(|error| {
            tracing::warn!(%error, "could not check the sessions of open connections");
            HashMap::new()
        });
        let now = chrono::Utc::now().timestamp();
        let mut closed = 0;
        for (socket, session) in &connections {
            if let Some(reason) = close_reason(session, now, &ended) {
                close_connection(&self.gateway, socket, session, reason);
                closed += 1;
            }
        }
        closed
    }

    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(self.interval) => {}
            }
            self.check_once().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Role;
    use crate::identity::tokens::AccessClaims;
    use crate::realtime::session::Client;

    fn session(expires_at: i64) -> Session {
        let user = Client {
            user_id: Uuid::now_v7(),
            role: Role::Student,
            display_name: "Harry".into(),
        };
        let token = AccessClaims {
            sub: user.user_id,
            role: Role::Student,
            sid: Uuid::now_v7(),
            iat: expires_at - 900,
            exp: expires_at,
        };
        Session::new(user, &token, None, &[])
    }

    #[test]
    fn a_connection_closes_when_its_token_expires_and_not_before() {
        let harry = session(1_000);
        let nothing_ended = HashMap::new();
        assert_eq!(close_reason(&harry, 999, &nothing_ended), None);
        assert_eq!(
            close_reason(&harry, 1_000, &nothing_ended),
            Some(CloseReason::TokenExpired)
        );
    }

    #[test]
    fn an_ended_session_is_the_reason_even_once_the_token_has_expired() {
        let harry = session(1_000);
        let ended = HashMap::from([(harry.login_session, CloseReason::LoggedOut)]);
        assert_eq!(
            close_reason(&harry, 10, &ended),
            Some(CloseReason::LoggedOut)
        );
        assert_eq!(
            close_reason(&harry, 2_000, &ended),
            Some(CloseReason::LoggedOut)
        );
    }

    #[test]
    fn every_connection_gets_a_connection_id_of_its_own() {
        let (a, b) = (session(1_000), session(1_000));
        assert_ne!(a.connection_id, b.connection_id);
        assert_eq!(a.connection_id.get_version_num(), 4, "random, not derived");
    }
}
