//! Rebuilding a projection: replay the log from offset 0 into fresh tables
//! while the old ones keep answering queries, then switch over atomically.
//!
//! 1. Create a schema `rebuild_<projector>` with empty copies of the
//!    projector's tables and of the bookkeeping tables (offsets, dead
//!    letters).
//! 2. Run the projector there (its transactions search that schema first)
//!    until it has caught up with the log, reporting progress.
//! 3. In one transaction: lock the live projector's offset row (which
//!    pauses the live runner) and read where it stands, X; step the rebuild
//!    on until it, too, has applied everything before X — so the offset a
//!    reader can observe never goes back, and a write a reader saw applied
//!    (`minOffset`) is in the new tables; block writes to the live tables
//!    (readers go on), carry over state the log cannot recreate (which
//!    notifications were read), swap the tables by renaming them (O(1),
//!    whatever their size), and take over the rebuilt offset and dead
//!    letters. The live runner then continues from that offset on the new
//!    tables.
//!
//! One rebuild of a projection at a time, across every instance on the
//! database: a rebuild holds [`RebuildClaim`], a PostgreSQL advisory lock,
//! from start to switch-over.
//!
//! Side effects are never repeated: projectors write rows with ids derived
//! from event ids, and nothing outside PostgreSQL is touched.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use marauders_core::log::EventLog;
use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};
use tokio::sync::watch;

use crate::runtime::{ProjectionError, Projector, ProjectorRunner, StepOutcome};

/// Tables every projector shares, keyed by projector name.
const BOOKKEEPING_TABLES: [&str; 2] = ["projector_offsets", "dead_letters"];

/// Progress of a rebuild, readable while it runs.
#[derive(Debug)]
pub struct RebuildProgress {
    pub applied_offset: AtomicU64,
    pub log_end: AtomicU64,
    pub started: Instant,
    /// A test's hold on the switch-over (inert unless armed).
    pub hold: Arc<SwitchHold>,
}

impl Default for RebuildProgress {
    fn default() -> Self {
        RebuildProgress::held_by(Arc::default())
    }
}

/// How far a rebuild has come, at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RebuildEstimate {
    pub applied_offset: u64,
    pub log_end: u64,
    /// Offsets replayed per second since the start.
    pub events_per_second: f64,
    /// At that pace, until it reaches the log end as it is now; `None`
    /// before there is a pace to go by.
    pub seconds_left: Option<f64>,
}

impl RebuildProgress {
    pub fn held_by(hold: Arc<SwitchHold>) -> Self {
        RebuildProgress {
            applied_offset: AtomicU64::new(0),
            log_end: AtomicU64::new(0),
            started: Instant::now(),
            hold,
        }
    }

    pub fn estimate(&self) -> RebuildEstimate {
        let applied_offset = self.applied_offset.load(Ordering::Relaxed);
        let log_end = self.log_end.load(Ordering::Relaxed);
        let elapsed = self.started.elapsed().as_secs_f64();
        let events_per_second = if elapsed > 0.0 {
            applied_offset as f64 / elapsed
        } else {
            0.0
        };
        let seconds_left = (events_per_second > 0.0)
            .then(|| log_end.saturating_sub(applied_offset) as f64 / events_per_second);
        RebuildEstimate {
            applied_offset,
            log_end,
            events_per_second,
            seconds_left,
        }
    }
}

/// Lets a test hold rebuilds just before their switch-over — the window in
/// which the live projector runs ahead of the rebuild — and release them.
#[derive(Debug, Default)]
pub struct SwitchHold {
    armed: watch::Sender<bool>,
    /// Rebuilds waiting at the switch-over.
    waiting: watch::Sender<u32>,
}

impl SwitchHold {
    pub fn hold(&self) {
        self.armed.send_replace(true);
    }

    pub fn release(&self) {
        self.armed.send_replace(false);
    }

    /// Until `count` rebuilds are waiting at the switch-over.
    pub async fn wait_until_held(&self, count: u32) {
        let mut waiting = self.waiting.subscribe();
        let _ = waiting.wait_for(|waiting| *waiting >= count).await;
    }

    async fn pass(&self) {
        let mut armed = self.armed.subscribe();
        if !*armed.borrow_and_update() {
            return;
        }
        self.waiting.send_modify(|waiting| *waiting += 1);
        let _ = armed.wait_for(|armed| !armed).await;
        self.waiting.send_modify(|waiting| *waiting -= 1);
    }
}

/// The right to rebuild one projection: a session-level advisory lock on a
/// connection of its own, held until the rebuild ends (or its connection
/// does: a crashed instance's claim goes with it). A claim dropped without
/// [`RebuildClaim::release`] (a rebuild task that panicked) closes its
/// connection rather than hand it back to the pool still locked, which
/// would refuse every later rebuild of the projection.
pub struct RebuildClaim {
    connection: PoolConnection<Postgres>,
    key: i64,
    unlocked: bool,
}

impl Drop for RebuildClaim {
    fn drop(&mut self) {
        if !self.unlocked {
            self.connection.close_on_drop();
        }
    }
}

impl RebuildClaim {
    /// The claim on `projection`, or `None` while a rebuild of it runs
    /// anywhere on this database.
    pub async fn take(
        pool: &PgPool,
        projection: &str,
    ) -> Result<Option<RebuildClaim>, sqlx::Error> {
        let mut connection = pool.acquire().await?;
        let key = rebuild_lock_key(projection);
        let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut *connection)
            .await?;
        Ok(taken.then_some(RebuildClaim {
            connection,
            key,
            unlocked: false,
        }))
    }

    /// Whether a rebuild of `projection` runs anywhere on this database.
    pub async fn is_taken(pool: &PgPool, projection: &str) -> Result<bool, sqlx::Error> {
        let key = rebuild_lock_key(projection);
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                 AND classid::bigint = ($1 >> 32) & 4294967295 AND objid::bigint = $1 & 4294967295
                 AND objsubid = 1)",
        )
        .bind(key)
        .fetch_one(pool)
        .await
    }

    /// Lets the next rebuild of this projection start. A connection that
    /// cannot unlock is closed (on drop), which unlocks.
    pub async fn release(mut self) {
        self.unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(self.key)
            .execute(&mut *self.connection)
            .await
            .is_ok();
    }
}

/// One advisory-lock key per projection name.
fn rebuild_lock_key(projection: &str) -> i64 {
    // FNV-1a: stable across builds and processes, unlike `Hash`.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in format!("marauders-map rebuild {projection}").bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebuildReport {
    pub events: u64,
    pub next_offset: u64,
}

/// Rebuilds `projector`'s tables from offset 0 and switches over, under
/// `claim`: the proof that no other rebuild of it runs (take it with
/// [`RebuildClaim::take`], release it after).
pub async fn rebuild_projection<P: Projector>(
    _claim: &RebuildClaim,
    projector: P,
    log: EventLog,
    pool: PgPool,
    progress: Arc<RebuildProgress>,
) -> Result<RebuildReport, ProjectionError> {
    let (name, topic) = (projector.name(), projector.topic());
    let schema = format!("rebuild_{}", name.replace(['-', '.'], "_"));
    let tables: Vec<&str> = projector
        .tables()
        .iter()
        .copied()
        .chain(BOOKKEEPING_TABLES)
        .collect();
    let mut setup = format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};");
    for table in &tables {
        setup.push_str(&format!(
            "CREATE TABLE {schema}.{table} (LIKE public.{table} INCLUDING ALL);"
        ));
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(setup))
        .execute(&pool)
        .await?;

    let carry_over = projector.carry_over_sql();
    let runner = ProjectorRunner::new(projector, log.clone(), pool.clone()).in_schema(&schema);
    let mut events = 0;
    // Most of the log, while the live projector runs on.
    let mut next_offset = loop {
        progress
            .log_end
            .store(log.log_end(topic).await?, Ordering::Relaxed);
        if let StepOutcome::CaughtUp { next_offset } = step(&runner, &progress, &mut events).await?
        {
            break next_offset;
        }
    };
    progress.hold.pass().await;

    let mut tx = pool.begin().await?;
    // Pauses the live runner of this projector until we commit.
    sqlx::query("INSERT INTO public.projector_offsets (projector, topic) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(name)
        .bind(topic.name())
        .execute(&mut *tx)
        .await?;
    let live: i64 = sqlx::query_scalar("SELECT next_offset FROM public.projector_offsets WHERE projector = $1 AND topic = $2 FOR UPDATE")
        .bind(name)
        .bind(topic.name())
        .fetch_one(&mut *tx)
        .await?;
    let live = live as u64;
    // The live projector may have run ahead while we caught up: catch up
    // with it too, so that the switch never moves the offset back.
    while next_offset < live {
        match step(&runner, &progress, &mut events).await? {
            StepOutcome::Advanced {
                next_offset: reached,
                ..
            } => next_offset = reached,
            StepOutcome::CaughtUp { .. } => {
                return Err(ProjectionError::Inconsistent(format!(
                    "the rebuild of {name} caught up with the log at {next_offset}, but the live projector is at {live}"
                )));
            }
        }
    }
    // Readers go on; writers (read marks) wait for the switch, and then
    // write to the new tables.
    let mut switch = String::new();
    for table in runner.projector().tables() {
        switch.push_str(&format!("LOCK TABLE public.{table} IN SHARE MODE;"));
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(switch))
        .execute(&mut *tx)
        .await?;
    if let Some(sql) = carry_over {
        let sql = sql
            .replace("new.", &format!("{schema}."))
            .replace("old.", "public.");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut *tx)
            .await?;
    }
    let mut switch = String::new();
    for table in runner.projector().tables() {
        switch.push_str(&format!(
            "DROP TABLE public.{table}; ALTER TABLE {schema}.{table} SET SCHEMA public;"
        ));
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(switch))
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DELETE FROM public.dead_letters WHERE projector = '{name}';
         INSERT INTO public.dead_letters SELECT * FROM {schema}.dead_letters WHERE projector = '{name}'"
    )))
    .execute(&mut *tx)
    .await?;
    // The rebuilt offset belongs to the log it was read from: a projection
    // that belonged to another log is now this one's.
    sqlx::query("UPDATE public.projector_offsets SET next_offset = $3, log_id = $4, updated_at = now() WHERE projector = $1 AND topic = $2")
        .bind(name)
        .bind(topic.name())
        .bind(next_offset as i64)
        .bind(log.log_id().await?.0)
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(RebuildReport {
        events,
        next_offset,
    })
}

/// One batch of the rebuild, its progress recorded.
async fn step<P: Projector>(
    runner: &ProjectorRunner<P>,
    progress: &RebuildProgress,
    events: &mut u64,
) -> Result<StepOutcome, ProjectionError> {
    let outcome = runner.poll_once().await?;
    let next_offset = match outcome {
        StepOutcome::Advanced {
            next_offset,
            applied,
            dead_lettered,
        } => {
            *events += (applied + dead_lettered) as u64;
            next_offset
        }
        StepOutcome::CaughtUp { next_offset } => next_offset,
    };
    progress
        .applied_offset
        .store(next_offset, Ordering::Relaxed);
    Ok(outcome)
}
