//! Property test against real PostgreSQL: random histories (valid command
//! sequences, with re-sent duplicates and garbage mixed in), projected in
//! random batch sizes with a "restart" after every step, give exactly the
//! read model a rebuild from offset 0 gives — and the same incidents as the
//! write side's fold.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use marauders_map::domain::{Location, Role, Severity};
use marauders_map::events::Event;
use marauders_map::incident::{
    Actor, CommentBody, Description, IncidentCommand, IncidentFold, IncidentTitle, Resolution,
    decide,
};
use marauders_map::log::{EventLog, LogConfig, LogMessage, Topic};
use marauders_projections::{
    ProjectorRunner, ReadModelProjector, RebuildProgress, StepOutcome, rebuild_projection,
};
use proptest::prelude::*;
use uuid::Uuid;

const ROLES: [Role; 3] = [Role::Student, Role::Prefect, Role::Professor];

#[derive(Debug, Clone)]
enum Noise {
    None,
    Duplicate,
    Garbage,
}

fn history() -> impl Strategy<Value = Vec<(usize, usize, u8, u8, Noise)>> {
    let noise =
        prop_oneof![6 => Just(Noise::None), 1 => Just(Noise::Duplicate), 1 => Just(Noise::Garbage)];
    proptest::collection::vec((0..3usize, 0..3usize, 0..6u8, 0..4u8, noise), 1..40)
}

/// Turns the generated steps into the messages a write side would have
/// appended (plus noise), and the fold it would hold.
fn messages_for(steps: &[(usize, usize, u8, u8, Noise)]) -> (Vec<LogMessage>, IncidentFold) {
    let users: Vec<Uuid> = (0..3).map(|n| Uuid::from_u128(0x100 + n)).collect();
    let incidents: Vec<Uuid> = (0..3).map(|n| Uuid::from_u128(0x200 + n)).collect();
    let (mut fold, mut messages) = (IncidentFold::default(), Vec::new());
    for (n, (user, incident, command, value, noise)) in steps.iter().enumerate() {
        let actor = Actor {
            user_id: users[*user],
            role: ROLES[*user],
        };
        let id = incidents[*incident];
        let command = match command {
            0 => IncidentCommand::Report {
                id,
                title: IncidentTitle::parse(&format!("Incident {n}")).unwrap(),
                description: Description::parse("").unwrap(),
                severity: Severity::ALL[*value as usize],
                location: Location::ALL[*value as usize],
            },
            1 => IncidentCommand::ChangeSeverity {
                severity: Severity::ALL[*value as usize],
            },
            2 => IncidentCommand::Resolve {
                resolution: Resolution::parse("done").unwrap(),
            },
            3 => IncidentCommand::AddComment {
                comment_id: Uuid::from_u128(0x300 + n as u128),
                body: CommentBody::parse(&format!("comment {n}")).unwrap(),
            },
            4 => IncidentCommand::Delete,
            _ => IncidentCommand::Update(marauders_map::incident::IncidentChanges {
                title: Some(IncidentTitle::parse(&format!("Renamed {value}")).unwrap()),
                ..Default::default()
            }),
        };
        let Ok(Some(payload)) = decide(fold.get(id), command, actor, chrono::Utc::now()) else {
            continue;
        };
        let event = Event::new(payload, Some(actor.user_id));
        fold.apply(&event);
        messages.push(event.to_log_message());
        match noise {
            Noise::None => {}
            Noise::Duplicate => messages.push(event.to_log_message()),
            Noise::Garbage => messages.push(LogMessage {
                id: Uuid::now_v7(),
                payload: Bytes::from_static(b"{\"eventType\":"),
            }),
        }
    }
    (messages, fold)
}

async fn read_model_rows(pool: &sqlx::PgPool) -> Vec<String> {
    let mut rows: Vec<String> =
        sqlx::query_scalar("SELECT row_to_json(r)::text FROM read_incidents r ORDER BY id")
            .fetch_all(pool)
            .await
            .unwrap();
    let comments: Vec<String> =
        sqlx::query_scalar("SELECT row_to_json(c)::text FROM read_comments c ORDER BY id")
            .fetch_all(pool)
            .await
            .unwrap();
    rows.extend(comments);
    rows
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn incremental_projection_with_restarts_equals_a_rebuild_and_the_fold(
        steps in history(),
        batch_sizes in proptest::collection::vec(1..7u32, 1..10),
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async {
            let (messages, fold) = messages_for(&steps);
            let database = common::fresh_database().await;
            let pool = database.pool.clone();
            let log = EventLog::open(LogConfig::Postgres(pool.clone())).await.unwrap();
            if !messages.is_empty() {
                log.append(Topic::IncidentEvents, &messages).await.unwrap();
            }

            // Incrementally, restarting (a fresh runner) before every step.
            let mut step = 0;
            loop {
                let batch = batch_sizes[step % batch_sizes.len()];
                let runner = ProjectorRunner::new(ReadModelProjector, log.clone(), pool.clone()).with_batch_size(batch);
                if let StepOutcome::CaughtUp { next_offset } = runner.poll_once().await.unwrap() {
                    assert_eq!(next_offset, messages.len() as u64);
                    break;
                }
                step += 1;
            }
            let incremental = read_model_rows(&pool).await;

            rebuild_projection(ReadModelProjector, log.clone(), pool.clone(), Arc::new(RebuildProgress::default()))
                .await
                .unwrap();
            assert_eq!(read_model_rows(&pool).await, incremental, "a rebuild gives the same read model");

            let rows: Vec<(Uuid, i64, String, String, bool)> =
                sqlx::query_as("SELECT id, version, status, severity, deleted FROM read_incidents ORDER BY id")
                    .fetch_all(&pool)
                    .await
                    .unwrap();
            assert_eq!(rows.len(), fold.len());
            for (id, version, status, severity, deleted) in rows {
                let incident = fold.get(id).unwrap();
                assert_eq!(
                    (version as u64, status.as_str(), severity.as_str(), deleted),
                    (incident.version, incident.status.as_str(), incident.severity.as_str(), incident.deleted),
                    "the read model agrees with the write side's fold"
                );
            }
            log.shutdown().await;
        });
    }
}
