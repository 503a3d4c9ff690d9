//! Notifications, from incident-events:
//!
//! - a comment on your incident → you (never the commenter themselves);
//! - your incident resolved by someone else → you;
//! - a severity raised to CRITICAL → every PROFESSOR.
//!
//! Notification ids derive from (event id, recipient), so replaying the log
//! cannot notify anyone twice.

use marauders_core::domain::Severity;
use marauders_core::events::{Event, EventPayload};
use marauders_core::incident::{Claim, incident_and_claim};
use marauders_core::log::Topic;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::runtime::Projector;

pub const NOTIFICATIONS: &str = "notifications";

pub struct NotificationsProjector;

impl Projector for NotificationsProjector {
    fn name(&self) -> &'static str {
        NOTIFICATIONS
    }

    fn topic(&self) -> Topic {
        Topic::IncidentEvents
    }

    fn tables(&self) -> &'static [&'static str] {
        &["notification_incidents", "notifications"]
    }

    fn carry_over_sql(&self) -> Option<&'static str> {
        Some(
            "UPDATE new.notifications n SET read_at = o.read_at
               FROM old.notifications o WHERE n.id = o.id AND o.read_at IS NOT NULL",
        )
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        _offset: u64,
        event: &Event,
    ) -> Result<(), sqlx::Error> {
        let Some((incident_id, claim)) = incident_and_claim(&event.payload) else {
            return Ok(());
        };
        // The version rule, as everywhere: only the event that won its
        // version counts, and a commuting comment counts while its incident
        // is here (a deleted incident's row is gone; a copy of the comment
        // notifies nobody twice, see `notify`).
        let accepted = if let Claim::Version(version) = claim
            && let EventPayload::IncidentCreated(created) = &event.payload
        {
            version == 1
                && sqlx::query(
                    "INSERT INTO notification_incidents (id, reported_by, title, version) VALUES ($1, $2, $3, 1)
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(created.id)
                .bind(created.reported_by)
                .bind(&created.title)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1
        } else if let Claim::Version(version) = claim {
            sqlx::query(
                "UPDATE notification_incidents SET version = $2 WHERE id = $1 AND version = $2 - 1",
            )
            .bind(incident_id)
            .bind(version as i64)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1
        } else {
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM notification_incidents WHERE id = $1)")
                .bind(incident_id)
                .fetch_one(&mut *tx)
                .await?
        };
        if !accepted {
            return Ok(());
        }
        if let EventPayload::IncidentDeleted(_) = &event.payload {
            // Nothing about a deleted incident notifies anyone again.
            sqlx::query("DELETE FROM notification_incidents WHERE id = $1")
                .bind(incident_id)
                .execute(&mut *tx)
                .await?;
            return Ok(());
        }
        if let EventPayload::IncidentUpdated(update) = &event.payload
            && let Some(title) = &update.title
        {
            sqlx::query("UPDATE notification_incidents SET title = $2 WHERE id = $1")
                .bind(incident_id)
                .bind(title)
                .execute(&mut *tx)
                .await?;
        }
        let (reporter, title): (Uuid, String) =
            sqlx::query_as("SELECT reported_by, title FROM notification_incidents WHERE id = $1")
                .bind(incident_id)
                .fetch_one(&mut *tx)
                .await?;
        match &event.payload {
            EventPayload::CommentAdded(comment) if comment.author_id != reporter => {
                let message = format!("New comment on \"{title}\"");
                notify(tx, event, reporter, "comment", incident_id, &message).await?;
            }
            EventPayload::IncidentResolved(resolved) if resolved.resolved_by != reporter => {
                let message = format!("\"{title}\" was resolved: {}", resolved.resolution);
                notify(tx, event, reporter, "resolved", incident_id, &message).await?;
            }
            EventPayload::SeverityEscalated(change)
                if change.new_severity == Severity::Critical
                    && change.old_severity != Severity::Critical =>
            {
                let professors: Vec<Uuid> =
                    sqlx::query_scalar("SELECT id FROM users WHERE role = 'PROFESSOR'")
                        .fetch_all(&mut *tx)
                        .await?;
                let message = format!("\"{title}\" is now CRITICAL");
                for professor in professors {
                    notify(tx, event, professor, "critical", incident_id, &message).await?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

async fn notify(
    tx: &mut PgConnection,
    event: &Event,
    user_id: Uuid,
    kind: &str,
    incident_id: Uuid,
    message: &str,
) -> Result<(), sqlx::Error> {
    let id = Uuid::new_v5(&event.event_id, user_id.as_bytes());
    sqlx::query(
        "INSERT INTO notifications (id, user_id, kind, incident_id, event_id, message, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(user_id)
    .bind(kind)
    .bind(incident_id)
    .bind(event.event_id)
    .bind(message)
    .bind(event.timestamp)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
