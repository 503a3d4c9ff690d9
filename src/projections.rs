//! The service's view of its projections: which exist, how far each has
//! read, and rebuilding one in the background while the others run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use marauders_projections::{
    HEARTBEAT_INTERVAL, Projection, ProjectionError, Projector, ProjectorVisitor, RebuildClaim,
    RebuildProgress, RebuildReport, UnknownProjection, projection_position, rebuild_projection,
};
use serde::Serialize;
use sqlx::PgPool;

pub use marauders_projections::SwitchHold;

use crate::log::{EventLog, LogError};

#[derive(Debug, thiserror::Error)]
pub enum ProjectionsError {
    #[error(transparent)]
    Unknown(#[from] UnknownProjection),
    /// Here or on another instance on the same database.
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

/// While rebuilding (on this instance: another one's rebuild shows only
/// as the state `rebuilding`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RebuildStatus {
    /// The next offset the replay will apply.
    pub applied_offset: u64,
    /// The log's end when last looked at.
    pub log_end: u64,
    /// Offsets replayed per second since the rebuild started.
    pub events_per_second: f64,
    /// Until the replay reaches `logEnd` at that pace; absent before there
    /// is a pace to go by.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub seconds_left: Option<f64>,
}

/// The longest a rebuild may take before it is abandoned.
pub const REBUILD_DEADLINE: Duration = Duration::from_secs(60 * 60);

pub struct Projections {
    log: EventLog,
    pool: PgPool,
    /// The rebuilds this instance runs, and how far each has come.
    rebuilding: Mutex<HashMap<Projection, Arc<RebuildProgress>>>,
    /// A test's hold on the switch-over of every rebuild started here.
    switch_hold: Arc<SwitchHold>,
}

impl Projections {
    pub fn new(log: EventLog, pool: PgPool) -> Self {
        Projections {
            log,
            pool,
            rebuilding: Mutex::new(HashMap::new()),
            switch_hold: Arc::default(),
        }
    }

    pub fn find(name: &str) -> Result<Projection, ProjectionsError> {
        Ok(Projection::find(name)?)
    }

    /// Holds this instance's rebuilds just before their switch-over, for a
    /// test of what happens meanwhile.
    pub fn switch_hold(&self) -> Arc<SwitchHold> {
        self.switch_hold.clone()
    }

    /// Rebuilds `projection` now (the `projection rebuild` command), unless
    /// it is being rebuilt already.
    pub async fn rebuild_now(
        &self,
        projection: Projection,
        progress: Arc<RebuildProgress>,
    ) -> Result<RebuildReport, ProjectionsError> {
        let claim = self.claim(projection).await?;
        let rebuilt = self.rebuild_claimed(&claim, projection, progress).await;
        claim.release().await;
        rebuilt
    }

    async fn claim(&self, projection: Projection) -> Result<RebuildClaim, ProjectionsError> {
        RebuildClaim::take(&self.pool, projection.name())
            .await?
            .ok_or(ProjectionsError::AlreadyRebuilding(projection.name()))
    }

    async fn rebuild_claimed(
        &self,
        claim: &RebuildClaim,
        projection: Projection,
        progress: Arc<RebuildProgress>,
    ) -> Result<RebuildReport, ProjectionsError> {
        let rebuild = Rebuild {
            claim,
            log: self.log.clone(),
            pool: self.pool.clone(),
            progress,
        };
        Ok(projection.visit(rebuild).await?)
    }

    /// Starts a rebuild in the background, bounded by [`REBUILD_DEADLINE`],
    /// once it holds the projection's claim (so a second request, here or
    /// on another instance, is refused at once); its progress shows in
    /// [`Projections::status`] until it finishes.
    pub async fn start_rebuild(
        self: &Arc<Self>,
        projection: Projection,
    ) -> Result<(), ProjectionsError> {
        let claim = self.claim(projection).await?;
        let progress = Arc::new(RebuildProgress::held_by(self.switch_hold.clone()));
        self.rebuilding
            .lock()
            .expect("the rebuild registry is never poisoned")
            .insert(projection, progress.clone());
        let projections = self.clone();
        tokio::spawn(async move {
            // A long job with a deadline of its own, not a request's: a
            // rebuild that stops moving (a frozen database) is abandoned
            // rather than held forever.
            let rebuilt = tokio::time::timeout(
                REBUILD_DEADLINE,
                projections.rebuild_claimed(&claim, projection, progress),
            )
            .await;
            match rebuilt {
                Ok(Ok(report)) => tracing::info!(
                    %projection,
                    events = report.events,
                    "projection rebuilt"
                ),
                Ok(Err(error)) => {
                    tracing::error!(%projection, %error, "projection rebuild failed")
                }
                Err(_) => tracing::error!(
                    %projection,
                    "projection rebuild did not finish within {REBUILD_DEADLINE:?}; abandoned"
                ),
            }
            claim.release().await;
            projections
                .rebuilding
                .lock()
                .expect("the rebuild registry is never poisoned")
                .remove(&projection);
        });
        Ok(())
    }

    pub async fn status(&self) -> Result<Vec<ProjectionStatus>, ProjectionsError> {
        let mut statuses = Vec::new();
        let log_id = self.log.known_log_id();
        for projection in Projection::ALL {
            let (name, topic) = (projection.name(), projection.topic());
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
                .get(&projection)
                .map(|progress| {
                    let estimate = progress.estimate();
                    RebuildStatus {
                        applied_offset: estimate.applied_offset,
                        log_end: estimate.log_end,
                        events_per_second: estimate.events_per_second,
                        seconds_left: estimate.seconds_left,
                    }
                });
            let rebuilding_elsewhere =
                rebuild.is_none() && RebuildClaim::is_taken(&self.pool, name).await?;
            statuses.push(ProjectionStatus {
                name,
                topic: topic.name(),
                stored_offset: stored,
                log_end,
                lag: log_end.saturating_sub(stored),
                state: match (
                    rebuild.is_some() || rebuilding_elsewhere,
                    wrong_log.is_some(),
                    alive,
                ) {
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

/// A rebuild of whichever projector, under a claim.
struct Rebuild<'a> {
    claim: &'a RebuildClaim,
    log: EventLog,
    pool: PgPool,
    progress: Arc<RebuildProgress>,
}

impl<'a> ProjectorVisitor for Rebuild<'a> {
    type Output = BoxFuture<'a, Result<RebuildReport, ProjectionError>>;

    fn visit<P: Projector + 'static>(self, projector: P) -> Self::Output {
        Box::pin(rebuild_projection(
            self.claim,
            projector,
            self.log,
            self.pool,
            self.progress,
        ))
    }
}
