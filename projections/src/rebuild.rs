//! Rebuilding a projection: replay the log from offset 0 into fresh tables
//! while the old ones keep answering queries, then switch over atomically.
//!
//! 1. Create a schema `rebuild_<projector>` with empty copies of the
//!    projector's tables and of the bookkeeping tables (offsets, dead
//!    letters).
//! 2. Run the projector there (its transactions search that schema first)
//!    until it has caught up with the log, reporting progress.
//! 3. In one transaction: lock the live projector's offset row (which
//!    pauses the live runner), carry over state the log cannot recreate
//!    (e.g. which notifications were read), replace the public tables with
//!    the rebuilt ones, and take over the rebuilt offset and bookkeeping.
//!    The live runner then continues from that offset on the new tables.
//!
//! Side effects are never repeated: projectors write rows with ids derived
//! from event ids, and nothing outside PostgreSQL is touched.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use marauders_core::log::EventLog;
use sqlx::PgPool;

use crate::runtime::{ProjectionError, Projector, ProjectorRunner, StepOutcome};

/// Tables every projector shares, keyed by projector name.
const BOOKKEEPING_TABLES: [&str; 2] = ["projector_offsets", "dead_letters"];

/// Progress of a rebuild, readable while it runs.
#[derive(Debug, Default)]
pub struct RebuildProgress {
    pub applied_offset: AtomicU64,
    pub log_end: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebuildReport {
    pub events: u64,
    pub next_offset: u64,
}

/// Rebuilds `projector`'s tables from offset 0 and switches over.
pub async fn rebuild_projection<P: Projector>(
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
    let next_offset = loop {
        progress
            .log_end
            .store(log.log_end(topic).await?, Ordering::Relaxed);
        match runner.poll_once().await? {
            StepOutcome::Advanced {
                next_offset,
                applied,
                dead_lettered,
            } => {
                events += (applied + dead_lettered) as u64;
                progress
                    .applied_offset
                    .store(next_offset, Ordering::Relaxed);
            }
            StepOutcome::CaughtUp { next_offset } => break next_offset,
        }
    };

    let mut tx = pool.begin().await?;
    // Pauses the live runner of this projector until we commit.
    sqlx::query("INSERT INTO public.projector_offsets (projector, topic) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(name)
        .bind(topic.name())
        .execute(&mut *tx)
        .await?;
    sqlx::query("SELECT next_offset FROM public.projector_offsets WHERE projector = $1 AND topic = $2 FOR UPDATE")
        .bind(name)
        .bind(topic.name())
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
    for table in ["dead_letters"] {
        let sql = format!(
            "DELETE FROM public.{table} WHERE projector = '{name}';
             INSERT INTO public.{table} SELECT * FROM {schema}.{table} WHERE projector = '{name}'"
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut *tx)
            .await?;
    }
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
