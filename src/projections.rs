//! The service's view of its projections: which exist, how far each has
//! read, and rebuilding one in the background while the others run.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use marauders_projections::{
    AUDIT, AuditProjector, HEARTBEAT_INTERVAL, NOTIFICATIONS, NotificationsProjector,
    ProjectionError, READ_MODEL, ReadModelProjector, RebuildProgress, RebuildReport,
    projection_position, rebuild_projection,
};
use serde::Serialize;
use sqlx::PgPool;

use crate::log::{EventLog, LogError, Topic};

/// Every projection the service runs, by its public name.
pub const PROJECTIONS: [(&str, Topic); 3] = [
    (READ_MODEL, Topic::IncidentEvents),
    (NOTIFICATIONS, Topic::IncidentEvents),
    (AUDIT, Topic::AuthEvents),
];

#[derive(Debug, thiserror::Error)]
pub enum ProjectionsError {
    #[error("no projection named '{0}'; expected one of read-model, notifications, audit")]
    Unknown(String),
    #[error("projection '{0}' is already being rebuilt")]
    AlreadyRebuilding(&'static str),
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectionStatus {
    pub name: &'static str,
    pub topic: &'static str,
    pub stored_offset: u64,
    pub log_end: u64,
    pub lag: u64,
    /// `rebuilding` while a rebuild is under way; `wrong-log` when its
    /// offset was stored on another log (it refuses to run, and its queries
    /// answer 503, until rebuilt); `running` when some process (this one, or
    /// `marauders-map project <name>`) has advanced it or reported in within
    /// the last three heartbeats; `stopped` otherwise.
    pub state: &'static str,
    /// What an operator must do, when something is wrong.
    pub problem: Option<String>,
    pub dead_letters: i64,
    /// While rebuilding: how far the replay has come.
    pub rebuild: Option<RebuildStatus>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RebuildStatus {
    pub applied_offset: u64,
    pub log_end: u64,
}

/// The longest a rebuild may take before it is abandoned.
pub const REBUILD_DEADLINE: Duration = Duration::from_secs(60 * 60);

pub struct Projections {
    log: EventLog,
    pool: PgPool,
    rebuilding: Mutex<HashMap<&'static str, Arc<RebuildProgress>>>,
}

impl Projections {
    pub fn new(log: EventLog, pool: PgPool) -> Self {
        Projections {
            log,
            pool,
            rebuilding: Mutex::new(HashMap::new()),
        }
    }

    pub fn find(name: &str) -> Result<&'static str, ProjectionsError> {
        PROJECTIONS
            .iter()
            .map(|(known, _)| *known)
            .find(|known| *known == name)
            .ok_or_else(|| ProjectionsError::Unknown(name.to_owned()))
    }

    /// Rebuilds `name` now (the `projection rebuild` command).
    pub async fn rebuild_now(
        &self,
        name: &str,
        progress: Arc<RebuildProgress>,
    ) -> Result<RebuildReport, ProjectionsError> {
        let (log, pool) = (self.log.clone(), self.pool.clone());
        Ok(match Self::find(name)? {
            READ_MODEL => rebuild_projection(ReadModelProjector, log, pool, progress).await?,
            NOTIFICATIONS => {
                rebuild_projection(NotificationsProjector, log, pool, progress).await?
            }
            _ => rebuild_projection(AuditProjector, log, pool, progress).await?,
        })
    }

    /// Starts a rebuild in the background, bounded by [`REBUILD_DEADLINE`]; its progress shows in
    /// [`Projections::status`] until it finishes.
    pub fn start_rebuild(self: &Arc<Self>, name: &str) -> Result<(), ProjectionsError> {
        let name = Self::find(name)?;
        let progress = Arc::new(RebuildProgress::default());
        {
            let mut rebuilding = self
                .rebuilding
                .lock()
                .expect("the rebuild registry is never poisoned");
            if rebuilding.contains_key(name) {
                return Err(ProjectionsError::AlreadyRebuilding(name));
            }
            rebuilding.insert(name, progress.clone());
        }
        let projections = self.clone();
        tokio::spawn(async move {
            // A long job with a deadline of its own, not a request's: a
            // rebuild that stops moving (a frozen database) is abandoned
            // rather than held forever.
            match tokio::time::timeout(REBUILD_DEADLINE, projections.rebuild_now(name, progress))
                .await
            {
                Ok(Ok(report)) => tracing::info!(
                    projection = name,
                    events = report.events,
                    "projection rebuilt"
                ),
                Ok(Err(error)) => {
                    tracing::error!(projection = name, %error, "projection rebuild failed")
                }
                Err(_) => tracing::error!(
                    projection = name,
                    "projection rebuild did not finish within {REBUILD_DEADLINE:?}; abandoned"
                ),
            }
            projections
                .rebuilding
                .lock()
                .expect("the rebuild registry is never poisoned")
                .remove(name);
        });
        Ok(())
    }

    pub async fn status(&self) -> Result<Vec<ProjectionStatus>, ProjectionsError> {
        let mut statuses = Vec::new();
        let log_id = self.log.known_log_id();
        for (name, topic) in PROJECTIONS {
            let position = projection_position(&self.pool, name, topic).await?;
            let stored = position.next_offset;
            let wrong_log = log_id.filter(|log_id| !position.belongs_to(*log_id));
            let alive: bool = sqlx::query_scalar(
                "SELECT COALESCE(bool_or(updated_at > now() - $3 * interval '1 second'), false)
                   FROM projector_offsets WHERE projector = $1 AND topic = $2",
            )
            .bind(name)
            .bind(topic.name())
            .bind(3.0 * HEARTBEAT_INTERVAL.as_secs_f64())
            .fetch_one(&self.pool)
            .await?;
            let log_end = self.log.log_end(topic).await?;
            let dead_letters: i64 =
                sqlx::query_scalar("SELECT count(*) FROM dead_letters WHERE projector = $1")
                    .bind(name)
                    .fetch_one(&self.pool)
                    .await?;
            let rebuild = self
                .rebuilding
                .lock()
                .expect("the rebuild registry is never poisoned")
                .get(name)
                .map(|p| RebuildStatus {
                    applied_offset: p.applied_offset.load(Ordering::Relaxed),
                    log_end: p.log_end.load(Ordering::Relaxed),
                });
            statuses.push(ProjectionStatus {
                name,
                topic: topic.name(),
                stored_offset: stored,
                log_end,
                lag: log_end.saturating_sub(stored),
                state: match (rebuild.is_some(), wrong_log.is_some(), alive) {
                    (true, _, _) => "rebuilding",
                    (false, true, _) => "wrong-log",
                    (false, false, true) => "running",
                    (false, false, false) => "stopped",
                },
                problem: wrong_log.map(|log_id| {
                    format!(
                        "built from log {}, but the log is {log_id}: rebuild it (POST /api/admin/projections/{name}/rebuild)",
                        position.log_id.map_or_else(String::new, |id| id.to_string())
                    )
                }),
                dead_letters,
                rebuild,
            });
        }
        Ok(statuses)
    }
}
