//! The audit log: every `auth-events` event as a row professors can filter.

use marauders_core::events::Event;
use marauders_core::log::Topic;
use sqlx::PgConnection;

use crate::runtime::Projector;

pub const AUDIT: &str = "audit";

pub struct AuditProjector;

impl Projector for AuditProjector {
    fn name(&self) -> &'static str {
        AUDIT
    }

    fn topic(&self) -> Topic {
        Topic::AuthEvents
    }

    fn tables(&self) -> &'static [&'static str] {
        &["audit_log"]
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        offset: u64,
        event: &Event,
    ) -> Result<(), sqlx::Error> {
        let envelope = event.to_envelope();
        sqlx::query(
            "INSERT INTO audit_log (log_offset, event_id, event_type, user_id, data, occurred_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(offset as i64)
        .bind(event.event_id)
        .bind(envelope.event_type)
        // The subject of the event (e.g. the promoted user), else the actor.
        .bind(
            envelope
                .data
                .get("userId")
                .and_then(|v| v.as_str())
                .and_then(|v| v.parse::<uuid::Uuid>().ok())
                .or(event.user_id),
        )
        .bind(envelope.data)
        .bind(event.timestamp)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}
