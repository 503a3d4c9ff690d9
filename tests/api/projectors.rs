//! The projector runtime against the real log and database: each event
//! applied once, garbage dead-lettered, progress kept across restarts, a new
//! projector seeing the whole log, status and metrics — and the read model
//! agreeing with the write side, also under races and random histories.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use marauders_map::domain::{Location, Role, Severity};
use marauders_map::events::Event;
use marauders_map::incident::{
    Actor, CommentBody, Description, IncidentChanges, IncidentCommand, IncidentFold, IncidentTitle,
    Resolution, decide,
};
use marauders_map::log::{EventLog, LogMessage, Topic};
use marauders_projections::{
    ADVANCED_CHANNEL, AppliedWatch, ProjectionError, Projector, ProjectorRunner, READ_MODEL,
    ReadModelProjector, RebuildClaim, RebuildProgress, RebuildReport, StepOutcome, SwitchHold,
    rebuild_projection, stored_offset,
};
use marauders_testkit::events::{incident_created, user_logged_out};
use marauders_testkit::{
    EVENTUALLY, ReportIncident, TestApp, TestBackend, TestDatabase, TestUser, eventually,
};
use proptest::prelude::*;
use serde_json::Value;
use uuid::Uuid;

/// The embedded log of a fresh database, and the database.
async fn embedded_log() -> (TestDatabase, EventLog) {
    let backend = TestBackend::postgres().await;
    let log = backend.open_log().await;
    let TestBackend::Postgres(database) = backend else {
        unreachable!("a postgres backend")
    };
    (database, log)
}

fn created(n: u32) -> Event {
    incident_created(Uuid::now_v7(), Uuid::now_v7(), &format!("Incident {n}"))
}

fn garbage() -> LogMessage {
    LogMessage {
        id: Uuid::now_v7(),
        payload: Bytes::from_static(b"{\"eventType\": 7}"),
    }
}

async fn count(pool: &sqlx::PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// Rebuilds the read model under its claim, as the service does.
async fn rebuild_read_model(
    log: EventLog,
    pool: sqlx::PgPool,
    progress: Arc<RebuildProgress>,
) -> Result<RebuildReport, ProjectionError> {
    let claim = RebuildClaim::take(&pool, READ_MODEL)
        .await?
        .expect("no other rebuild of the read model runs");
    let rebuilt = rebuild_projection(&claim, ReadModelProjector, log, pool, progress).await;
    claim.release().await;
    rebuilt
}

/// A claim dropped without being released (a rebuild task that panicked)
/// does not leave its lock behind on a pooled connection: the projection
/// can be rebuilt again.
#[tokio::test]
async fn a_rebuild_claim_dropped_without_release_lets_the_next_rebuild_claim() {
    let (database, log) = embedded_log().await;
    let pool = database.pool.clone();
    let claim = RebuildClaim::take(&pool, READ_MODEL).await.unwrap();
    assert!(claim.is_some());
    assert!(RebuildClaim::is_taken(&pool, READ_MODEL).await.unwrap());
    assert!(
        RebuildClaim::take(&pool, READ_MODEL)
            .await
            .unwrap()
            .is_none(),
        "held"
    );

    drop(claim);

    marauders_testkit::eventually(
        "the dropped claim's lock ends",
        marauders_testkit::EVENTUALLY,
        || async { (!RebuildClaim::is_taken(&pool, READ_MODEL).await.unwrap()).then_some(()) },
    )
    .await;
    let again = RebuildClaim::take(&pool, READ_MODEL).await.unwrap();
    again.expect("claimed again").release().await;
    assert!(
        !RebuildClaim::is_taken(&pool, READ_MODEL).await.unwrap(),
        "released"
    );
    log.shutdown().await;
}

/// Applies everything the log holds.
async fn catch_up(runner: &ProjectorRunner<ReadModelProjector>) {
    while let StepOutcome::Advanced { .. } = runner.poll_once().await.unwrap() {}
}

/// The switch-over race, step by step: a rebuild has caught up and waits to
/// switch while the live projector applies one more report. Right after the
/// switch — before the live projector takes another step — the offset is
/// where the live projector had it, not back where the rebuild first
/// caught up, and the late report is in the new tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_that_waited_while_the_live_projector_ran_ahead_switches_without_going_back() {
    let (database, log) = embedded_log().await;
    let pool = database.pool.clone();
    log.append(Topic::IncidentEvents, &[created(0).to_log_message()])
        .await
        .unwrap();
    let live = ProjectorRunner::new(ReadModelProjector, log.clone(), pool.clone());
    catch_up(&live).await;
    let hold = Arc::new(SwitchHold::default());
    hold.hold();
    let rebuild = tokio::spawn(rebuild_read_model(
        log.clone(),
        pool.clone(),
        Arc::new(RebuildProgress::held_by(hold.clone())),
    ));
    hold.wait_until_held(1).await;

    let late_id = Uuid::now_v7();
    let late = incident_created(late_id, Uuid::now_v7(), "Reported while the rebuild waits");
    log.append(Topic::IncidentEvents, &[late.to_log_message()])
        .await
        .unwrap();
    catch_up(&live).await;
    assert_eq!(
        stored_offset(&pool, READ_MODEL, Topic::IncidentEvents)
            .await
            .unwrap(),
        2
    );
    hold.release();
    let report = rebuild.await.unwrap().unwrap();

    assert_eq!(report.next_offset, 2);
    assert_eq!(
        stored_offset(&pool, READ_MODEL, Topic::IncidentEvents)
            .await
            .unwrap(),
        2
    );
    let present: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM read_incidents WHERE id = $1)")
            .bind(late_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(
        present,
        "the report the live projector applied is in the new tables"
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM read_incidents").await, 2);
    log.shutdown().await;
}

/// A step that advances tells every listener at its commit, with the
/// projector and its new offset; a waiter for that offset is woken by it,
/// and a waiter for an offset nothing reaches gets false at its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_advances_notifies_at_commit_and_wakes_who_waits_for_it() {
    let (database, log) = embedded_log().await;
    let pool = database.pool.clone();
    let mut listener = sqlx::postgres::PgListener::connect_with(&pool)
        .await
        .unwrap();
    listener.listen(ADVANCED_CHANNEL).await.unwrap();
    let applied = AppliedWatch::new(pool.clone());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let listening = tokio::spawn(applied.clone().run(shutdown.clone()));
    let waiter = {
        let applied = applied.clone();
        tokio::spawn(async move {
            applied
                .wait_until_applied(
                    READ_MODEL,
                    Topic::IncidentEvents,
                    0,
                    Duration::from_secs(30),
                )
                .await
        })
    };

    log.append(Topic::IncidentEvents, &[created(0).to_log_message()])
        .await
        .unwrap();
    let runner = ProjectorRunner::new(ReadModelProjector, log.clone(), pool.clone());
    runner.poll_once().await.unwrap();

    let notification = tokio::time::timeout(Duration::from_secs(10), listener.recv())
        .await
        .expect("notified")
        .unwrap();
    assert_eq!(notification.payload(), "read-model 1");
    assert!(
        waiter.await.unwrap().unwrap(),
        "woken once offset 0 was applied"
    );
    assert!(
        !applied
            .wait_until_applied(
                READ_MODEL,
                Topic::IncidentEvents,
                1,
                Duration::from_millis(300)
            )
            .await
            .unwrap(),
        "offset 1 was never applied"
    );
    shutdown.cancel();
    listening.await.unwrap();
    log.shutdown().await;
}

#[tokio::test]
async fn the_projector_applies_an_event_it_sees_twice_once() {
    let (database, log) = embedded_log().await;
    let twice = created(0);
    let messages = [twice.to_log_message(), twice.to_log_message()]; // the relay re-sent it
    log.append(Topic::IncidentEvents, &messages).await.unwrap();
    let runner = ProjectorRunner::new(ReadModelProjector, log.clone(), database.pool.clone());

    let outcome = runner.poll_once().await.unwrap();

    // The copy is handed to the projector too; the version rule makes it
    // change nothing (one row below).
    assert_eq!(
        outcome,
        StepOutcome::Advanced {
            applied: 2,
            dead_lettered: 0,
            next_offset: 2
        }
    );
    assert_eq!(
        count(&database.pool, "SELECT count(*) FROM read_incidents").await,
        1
    );
    log.shutdown().await;
}

#[tokio::test]
async fn the_projector_dead_letters_what_it_cannot_decode_and_moves_on() {
    let (database, log) = embedded_log().await;
    let messages = [
        created(0).to_log_message(),
        garbage(),
        user_logged_out().to_log_message(), // not an incident event: ignored
        created(1).to_log_message(),
    ];
    log.append(Topic::IncidentEvents, &messages).await.unwrap();
    let runner = ProjectorRunner::new(ReadModelProjector, log.clone(), database.pool.clone());

    let outcome = runner.poll_once().await.unwrap();

    assert_eq!(
        outcome,
        StepOutcome::Advanced {
            applied: 3,
            dead_lettered: 1,
            next_offset: 4
        }
    );
    let dead: (i64, String) =
        sqlx::query_as("SELECT log_offset, error FROM dead_letters WHERE projector = 'read-model'")
            .fetch_one(&database.pool)
            .await
            .unwrap();
    assert_eq!(dead.0, 1);
    assert!(dead.1.contains("not a JSON event envelope"), "{}", dead.1);
    assert_eq!(
        count(&database.pool, "SELECT count(*) FROM read_incidents").await,
        2
    );
    log.shutdown().await;
}

#[tokio::test]
async fn a_restarted_projector_resumes_at_its_stored_offset() {
    let (database, log) = embedded_log().await;
    let first: Vec<LogMessage> = (0..3).map(|n| created(n).to_log_message()).collect();
    log.append(Topic::IncidentEvents, &first).await.unwrap();
    let runner = ProjectorRunner::new(ReadModelProjector, log.clone(), database.pool.clone())
        .with_batch_size(2);
    runner.poll_once().await.unwrap();

    // "Crash" and restart: a new runner resumes at 2, not 0.
    let restarted = ProjectorRunner::new(ReadModelProjector, log.clone(), database.pool.clone());
    assert_eq!(
        restarted.poll_once().await.unwrap(),
        StepOutcome::Advanced {
            applied: 1,
            dead_lettered: 0,
            next_offset: 3
        }
    );
    log.append(Topic::IncidentEvents, &[created(3).to_log_message()])
        .await
        .unwrap();
    restarted.poll_once().await.unwrap();

    assert_eq!(
        restarted.poll_once().await.unwrap(),
        StepOutcome::CaughtUp { next_offset: 4 }
    );
    assert_eq!(
        count(&database.pool, "SELECT count(*) FROM read_incidents").await,
        4
    );
    assert_eq!(
        stored_offset(&database.pool, READ_MODEL, Topic::IncidentEvents)
            .await
            .unwrap(),
        4
    );
    log.shutdown().await;
}

/// A projector the service has never heard of: registering it changes
/// nothing upstream, and it sees every past and future event.
struct EventCounter;

impl Projector for EventCounter {
    fn name(&self) -> &'static str {
        "test-counter"
    }

    fn topic(&self) -> Topic {
        Topic::IncidentEvents
    }

    fn tables(&self) -> &'static [&'static str] {
        &["test_counted_events"]
    }

    async fn apply(
        &self,
        tx: &mut sqlx::PgConnection,
        offset: u64,
        event: &Event,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO test_counted_events (log_offset, event_id) VALUES ($1, $2)")
            .bind(offset as i64)
            .bind(event.event_id)
            .execute(&mut *tx)
            .await
            .map(|_| ())
    }
}

#[tokio::test]
async fn a_new_projector_sees_every_past_and_future_event() {
    let app = TestApp::spawn().await;
    let lockhart = app.user(Role::Student).await;
    for n in 0..3 {
        app.reported(&lockhart, ReportIncident::new(&format!("Pixies {n}")))
            .await;
    }
    sqlx::query(
        "CREATE TABLE test_counted_events (log_offset BIGINT PRIMARY KEY, event_id UUID NOT NULL)",
    )
    .execute(&app.database.pool)
    .await
    .unwrap();
    let runner = ProjectorRunner::new(
        EventCounter,
        app.log().await.clone(),
        app.database.pool.clone(),
    );

    runner.poll_once().await.unwrap();
    app.reported(&lockhart, ReportIncident::new("Pixies, again"))
        .await;
    runner.poll_once().await.unwrap();

    let offsets: Vec<i64> =
        sqlx::query_scalar("SELECT log_offset FROM test_counted_events ORDER BY log_offset")
            .fetch_all(&app.database.pool)
            .await
            .unwrap();
    assert_eq!(offsets, [0, 1, 2, 3]);
    app.stop().await;
}

/// The read model's entry in `GET /api/admin/projections`.
async fn read_model_status(app: &TestApp, professor: &TestUser) -> Value {
    let list = app.projections(professor).await.assert_status(200);
    list.body
        .as_array()
        .unwrap()
        .iter()
        .find(|projection| projection["name"] == "read-model")
        .cloned()
        .unwrap_or_else(|| panic!("no read-model in {}", list.body))
}

#[tokio::test]
async fn projections_not_run_by_anyone_are_reported_stopped() {
    let app = TestApp::builder().without_projectors().spawn().await;
    let umbridge = app.user(Role::Professor).await;
    app.reported(&umbridge, ReportIncident::new("Decree 24"))
        .await;

    let read_model = read_model_status(&app, &umbridge).await;

    assert_eq!(read_model["state"], "stopped");
    assert_eq!(
        (
            read_model["storedOffset"].as_u64(),
            read_model["lag"].as_u64()
        ),
        (Some(0), Some(1))
    );
    app.stop().await;
}

#[tokio::test]
async fn a_projector_run_by_another_process_is_reported_running_and_catches_up() {
    let app = TestApp::builder().without_projectors().spawn().await;
    let umbridge = app.user(Role::Professor).await;
    app.reported(&umbridge, ReportIncident::new("Decree 24"))
        .await;

    // `marauders-map project read-model` would do this in another process.
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(marauders_map::app::run_projector(
        "read-model",
        app.log().await.clone(),
        app.database.pool.clone(),
        shutdown.clone(),
    ));

    eventually("the read model runs and catches up", EVENTUALLY, || async {
        let read_model = read_model_status(&app, &umbridge).await;
        (read_model["state"] == "running" && read_model["lag"] == 0).then_some(())
    })
    .await;
    shutdown.cancel();
    running.await.unwrap().unwrap();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_model_and_the_write_side_agree_after_racing_commands() {
    let first = TestApp::spawn().await;
    let second = first.second_instance().await;
    let krum = first.user(Role::Prefect).await;
    let mut last = 0;
    for n in 0..4 {
        let incident = first
            .reported(&krum, ReportIncident::new(&format!("Race {n}")))
            .await;
        let (a, b) = tokio::join!(
            first.change_severity(&krum, incident.id, Severity::High),
            second.resolve(&krum, incident.id, "done"),
        );
        last = last.max(a.offset.unwrap_or(0)).max(b.offset.unwrap_or(0));
    }

    let page = first
        .list_incidents(&krum, &format!("minOffset={last}&limit=100"))
        .await
        .assert_status(200);
    first.write_model.sync().await.unwrap();
    let fold: IncidentFold = first.write_model.fold();

    assert_eq!(page.items().len(), fold.len());
    for item in page.items() {
        let incident = fold
            .get(Uuid::parse_str(item["id"].as_str().unwrap()).unwrap())
            .unwrap();
        assert_eq!(item["status"], incident.status.as_str());
        assert_eq!(item["severity"], incident.severity.as_str());
        assert_eq!(item["version"], incident.version);
        assert_eq!(item["resolution"].as_str(), incident.resolution.as_deref());
    }
    second.stop().await;
    first.stop().await;
}

#[tokio::test]
async fn metrics_show_projector_lag_dead_letters_outbox_and_requests() {
    let app = TestApp::spawn().await;
    let pomfrey = app.user(Role::Professor).await;
    let arm = app
        .reported(
            &pomfrey,
            ReportIncident::new("Broken arm")
                .severity(Severity::High)
                .location(Location::HospitalWing),
        )
        .await;
    app.get_incident_as_of(&pomfrey, arm.id, arm.offset)
        .await
        .assert_status(200);
    crate::rebuild::wait_until_caught_up(&app, &pomfrey).await;

    let text = app.metrics().await;
    for expected in [
        "marauders_projector_offset{projector=\"read-model\",topic=\"incident-events\"} 1",
        "marauders_projector_lag_events{projector=\"read-model\"} 0",
        "marauders_projector_lag_seconds{projector=\"audit\"} 0",
        "marauders_dead_letters{projector=\"notifications\"} 0",
        "marauders_outbox_backlog ",
        "marauders_http_requests_total{method=\"POST\",route=\"/api/incidents\",status=\"201\"} 1",
        "marauders_http_request_duration_seconds_count{method=\"GET\",route=\"/api/incidents/{id}\",status=\"200\"}",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    app.stop().await;
}

// ---- property: incremental projection = rebuild = the write side's fold ---------

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
            _ => IncidentCommand::Update(IncidentChanges {
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

    /// Random histories (valid command sequences, with re-sent duplicates
    /// and garbage mixed in), projected in random batch sizes with a
    /// "restart" before every step, give exactly the read model a rebuild
    /// from offset 0 gives — and the same incidents as the write side's
    /// fold.
    #[test]
    fn incremental_projection_with_restarts_equals_a_rebuild_and_the_fold(
        steps in history(),
        batch_sizes in proptest::collection::vec(1..7u32, 1..10),
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async {
            let (messages, fold) = messages_for(&steps);
            let (database, log) = embedded_log().await;
            let pool = database.pool.clone();
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

            rebuild_read_model(log.clone(), pool.clone(), Arc::new(RebuildProgress::default()))
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
