//! The read model: `read_incidents` and `read_comments`, the tables the
//! queries are served from.
//!
//! Every incident event is applied with the write side's version rule, in
//! SQL: an `UPDATE … WHERE version = $version - 1` touches no row when the
//! event lost a race (or was already applied), exactly as
//! `IncidentFold::apply` voids it — so the read model and the write side
//! agree on every incident.

use marauders_core::events::{Event, EventPayload};
use marauders_core::log::Topic;
use sqlx::PgConnection;

use crate::runtime::Projector;

pub const READ_MODEL: &str = "read-model";

pub struct ReadModelProjector;

impl Projector for ReadModelProjector {
    fn name(&self) -> &'static str {
        READ_MODEL
    }

    fn topic(&self) -> Topic {
        Topic::IncidentEvents
    }

    fn tables(&self) -> &'static [&'static str] {
        &["read_incidents", "read_comments"]
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        offset: u64,
        event: &Event,
    ) -> Result<(), sqlx::Error> {
        let at = event.timestamp;
        match &event.payload {
            EventPayload::IncidentCreated(created) if created.version == 1 => {
                sqlx::query(
                    "INSERT INTO read_incidents (id, title, description, severity, location, status, reported_by,
                         assigned_to, resolved_by, resolution, created_at, updated_at, resolved_at, version,
                         created_offset)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 1, $14)
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(created.id)
                .bind(&created.title)
                .bind(&created.description)
                .bind(created.severity.as_str())
                .bind(created.location.as_str())
                .bind(created.status.as_str())
                .bind(created.reported_by)
                .bind(created.assigned_to)
                .bind(created.resolved_by)
                .bind(&created.resolution)
                .bind(created.created_at)
                .bind(created.updated_at)
                .bind(created.resolved_at)
                .bind(offset as i64)
                .execute(&mut *tx)
                .await?;
            }
            EventPayload::IncidentUpdated(update) => {
                sqlx::query(
                    "UPDATE read_incidents SET
                         title = COALESCE($3, title),
                         description = CASE WHEN $4 THEN $5 ELSE description END,
                         location = COALESCE($6, location),
                         status = COALESCE($7, status),
                         assigned_to = CASE WHEN $8 THEN $9 ELSE assigned_to END,
                         updated_at = $10,
                         version = $2
                     WHERE id = $1 AND version = $2 - 1",
                )
                .bind(update.id)
                .bind(update.version as i64)
                .bind(&update.title)
                // Present (a new text, or null: cleared) or absent (unchanged).
                .bind(update.description.is_some())
                .bind(update.description.as_ref().and_then(Option::as_deref))
                .bind(update.location.map(|l| l.as_str()))
                .bind(update.status.map(|s| s.as_str()))
                .bind(update.assigned_to.is_some())
                .bind(update.assigned_to.flatten())
                .bind(at)
                .execute(&mut *tx)
                .await?;
            }
            EventPayload::IncidentResolved(resolved) => {
                sqlx::query(
                    "UPDATE read_incidents SET status = 'RESOLVED', resolved_by = $3, resolution = $4,
                         resolved_at = $5, updated_at = $5, version = $2
                     WHERE id = $1 AND version = $2 - 1",
                )
                .bind(resolved.id)
                .bind(resolved.version as i64)
                .bind(resolved.resolved_by)
                .bind(&resolved.resolution)
                .bind(at)
                .execute(&mut *tx)
                .await?;
            }
            EventPayload::IncidentDeleted(deleted) => {
                sqlx::query(
                    "UPDATE read_incidents SET deleted = true, updated_at = $3, version = $2
                     WHERE id = $1 AND version = $2 - 1",
                )
                .bind(deleted.id)
                .bind(deleted.version as i64)
                .bind(at)
                .execute(&mut *tx)
                .await?;
            }
            EventPayload::SeverityEscalated(change) => {
                sqlx::query(
                    "UPDATE read_incidents SET severity = $3, updated_at = $4, version = $2
                     WHERE id = $1 AND version = $2 - 1",
                )
                .bind(change.incident_id)
                .bind(change.version as i64)
                .bind(change.new_severity.as_str())
                .bind(at)
                .execute(&mut *tx)
                .await?;
            }
            EventPayload::CommentAdded(comment) => {
                // A comment with a version (written before comments
                // commuted) exists only if it won its version; one without
                // exists if its incident does and is not deleted. A copy of
                // either finds its id taken.
                sqlx::query(
                    "WITH versioned AS (
                         UPDATE read_incidents SET version = $2 WHERE id = $1 AND version = $2 - 1 RETURNING id
                     ), accepted AS (
                         SELECT id FROM versioned
                         UNION ALL
                         SELECT id FROM read_incidents WHERE $2::bigint IS NULL AND id = $1 AND NOT deleted
                     )
                     INSERT INTO read_comments (id, incident_id, author_id, body, created_at, log_offset)
                     SELECT $3, id, $4, $5, $6, $7 FROM accepted
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(comment.incident_id)
                .bind(comment.version.map(|version| version as i64))
                .bind(comment.id)
                .bind(comment.author_id)
                .bind(&comment.body)
                .bind(comment.created_at)
                .bind(offset as i64)
                .execute(&mut *tx)
                .await?;
            }
            _ => {}
        }
        Ok(())
    }
}
