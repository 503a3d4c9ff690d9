//! The read model: queries answer from it, read-your-writes through
//! `minOffset`, and its projector survives duplicates, garbage and restarts
//! without losing or double-applying an event — agreeing with the write side.

mod common;

use bytes::Bytes;
use common::{TestApp, spawn_app};
use marauders_map::domain::Role;
use marauders_map::events::{Event, EventPayload, UserLoggedOut};
use marauders_map::incident::IncidentFold;
use marauders_map::log::{EventLog, LogConfig, LogMessage, Topic};
use marauders_projections::{
    ProjectorRunner, READ_MODEL, ReadModelProjector, StepOutcome, stored_offset,
};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

async fn report(app: &TestApp, token: &str, title: &str, severity: &str) -> (Value, u64) {
    let body = json!({"title": title, "severity": severity, "location": "GREAT_HALL"});
    let (status, incident, offset) = app
        .command(Method::POST, "/api/incidents", token, Some(body))
        .await;
    assert_eq!(status, 201, "{incident}");
    (incident, offset.unwrap())
}

#[tokio::test]
async fn queries_read_their_own_writes_newest_first_with_filters_and_pages() {
    let app = spawn_app().await;
    let (_, token) = app
        .user_with_role("hagrid@hogwarts.edu", Role::Prefect)
        .await;
    let mut ids = Vec::new();
    let mut last_offset = 0;
    for n in 0..5 {
        let severity = if n % 2 == 0 { "CRITICAL" } else { "LOW" };
        let (incident, offset) =
            report(&app, &token, &format!("Blast-Ended Skrewt #{n}"), severity).await;
        ids.push(incident["id"].as_str().unwrap().to_owned());
        last_offset = offset;
    }

    let (status, one) = app
        .get_as(
            &format!("/api/incidents/{}?minOffset={last_offset}", ids[4]),
            &token,
        )
        .await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["title"], "Blast-Ended Skrewt #4");

    let (_, page) = app
        .get_as(
            &format!("/api/incidents?limit=2&minOffset={last_offset}"),
            &token,
        )
        .await;
    let titles = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["title"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        titles(&page),
        ["Blast-Ended Skrewt #4", "Blast-Ended Skrewt #3"]
    );
    let cursor = page["nextCursor"].as_str().unwrap().to_owned();
    let (_, page) = app
        .get_as(&format!("/api/incidents?limit=2&cursor={cursor}"), &token)
        .await;
    assert_eq!(
        titles(&page),
        ["Blast-Ended Skrewt #2", "Blast-Ended Skrewt #1"]
    );
    let (_, critical) = app.get_as("/api/incidents?severity=CRITICAL", &token).await;
    assert_eq!(
        titles(&critical),
        [
            "Blast-Ended Skrewt #4",
            "Blast-Ended Skrewt #2",
            "Blast-Ended Skrewt #0"
        ]
    );
    assert_eq!(critical["nextCursor"], Value::Null);

    // Comments, oldest first; a deleted incident disappears.
    let path = format!("/api/incidents/{}/comments", ids[0]);
    app.command(Method::POST, &path, &token, Some(json!({"body": "first"})))
        .await;
    let (_, _, offset) = app
        .command(Method::POST, &path, &token, Some(json!({"body": "second"})))
        .await;
    let (_, comments) = app
        .get_as(&format!("{path}?minOffset={}", offset.unwrap()), &token)
        .await;
    let bodies: Vec<&str> = comments["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["first", "second"]);
    let (_, _, offset) = app
        .command(
            Method::DELETE,
            &format!("/api/incidents/{}", ids[0]),
            &token,
            None,
        )
        .await;
    let (status, _) = app
        .get_as(
            &format!("/api/incidents/{}?minOffset={}", ids[0], offset.unwrap()),
            &token,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = app.get_as(&path, &token).await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[tokio::test]
async fn bad_query_values_and_an_offset_past_the_log_end_are_400() {
    let app = spawn_app().await;
    let (_, token) = app
        .user_with_role("trelawney@hogwarts.edu", Role::Student)
        .await;
    for query in [
        "status=DONE",
        "severity=meh",
        "location=AZKABAN",
        "limit=0",
        "limit=101",
        "limit=x",
        "cursor=nope",
        "minOffset=-3",
    ] {
        let (status, body) = app.get_as(&format!("/api/incidents?{query}"), &token).await;
        assert_eq!(status, 400, "{query}: {body}");
    }
    let (status, _) = app.get_as("/api/incidents/not-a-uuid", &token).await;
    assert_eq!(status, 404);
    // No command returned an offset the log has not reached: refused at
    // once rather than held for the two-second wait.
    let started = std::time::Instant::now();
    let (status, body) = app.get_as("/api/incidents?minOffset=1000000", &token).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["fields"]["minOffset"].is_string(), "{body}");
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    let (status, _) = app.get("/api/incidents").await;
    assert_eq!(status, 401);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_model_and_the_write_side_agree_after_racing_commands() {
    let first = spawn_app().await;
    let second = common::spawn_app_on(common::clone_database(&first.database).await, None, 0).await;
    let (_, token) = first
        .user_with_role("krum@hogwarts.edu", Role::Prefect)
        .await;
    let mut last = 0;
    for n in 0..4 {
        let (incident, _) = report(&first, &token, &format!("Race {n}"), "MEDIUM").await;
        let id = incident["id"].as_str().unwrap();
        let (severity_path, resolve_path) = (
            format!("/api/incidents/{id}/severity"),
            format!("/api/incidents/{id}/resolve"),
        );
        let (a, b) = tokio::join!(
            first.command(
                Method::PATCH,
                &severity_path,
                &token,
                Some(json!({"severity": "HIGH"}))
            ),
            second.command(
                Method::PATCH,
                &resolve_path,
                &token,
                Some(json!({"resolution": "done"}))
            ),
        );
        last = last.max(a.2.unwrap_or(0)).max(b.2.unwrap_or(0));
    }
    let (_, page) = first
        .get_as(
            &format!("/api/incidents?minOffset={last}&limit=100"),
            &token,
        )
        .await;
    first.write_model.sync().await.unwrap();
    let fold: IncidentFold = first.write_model.fold().await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), fold.len());
    for item in items {
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
async fn the_projector_skips_duplicates_dead_letters_garbage_and_resumes_after_a_restart() {
    let database = common::fresh_database().await;
    let log = EventLog::open(LogConfig::Postgres(database.pool.clone()))
        .await
        .unwrap();
    let pool = database.pool.clone();
    let logout = Event::new(
        EventPayload::UserLoggedOut(UserLoggedOut {
            user_id: Uuid::now_v7(),
        }),
        None,
    );
    let mut messages: Vec<LogMessage> = Vec::new();
    let created =
        |n: u32| common::incident_created(Uuid::now_v7(), Uuid::now_v7(), &format!("Incident {n}"));
    let (first, second, third) = (created(0), created(1), created(2));
    messages.push(first.to_log_message());
    messages.push(second.to_log_message());
    messages.push(second.to_log_message()); // the relay re-sent it
    messages.push(LogMessage {
        id: Uuid::now_v7(),
        payload: Bytes::from_static(b"{\"eventType\": 7}"),
    });
    messages.push(logout.to_log_message()); // not an incident event: ignored
    log.append(Topic::IncidentEvents, &messages).await.unwrap();

    let runner =
        ProjectorRunner::new(ReadModelProjector, log.clone(), pool.clone()).with_batch_size(3);
    assert_eq!(
        runner.poll_once().await.unwrap(),
        StepOutcome::Advanced {
            applied: 2,
            duplicates: 1,
            dead_lettered: 0,
            next_offset: 3
        }
    );
    // "Crash" and restart: a new runner resumes at 3, not 0.
    let restarted = ProjectorRunner::new(ReadModelProjector, log.clone(), pool.clone());
    assert_eq!(
        restarted.poll_once().await.unwrap(),
        StepOutcome::Advanced {
            applied: 1,
            duplicates: 0,
            dead_lettered: 1,
            next_offset: 5
        }
    );
    log.append(Topic::IncidentEvents, &[third.to_log_message()])
        .await
        .unwrap();
    restarted.poll_once().await.unwrap();
    assert_eq!(
        restarted.poll_once().await.unwrap(),
        StepOutcome::CaughtUp { next_offset: 6 }
    );

    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM read_incidents")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 3);
    let dead: (i64, String) =
        sqlx::query_as("SELECT log_offset, error FROM dead_letters WHERE projector = 'read-model'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(dead.0, 3);
    assert!(dead.1.contains("not a JSON event envelope"), "{}", dead.1);
    assert_eq!(
        stored_offset(&pool, READ_MODEL, Topic::IncidentEvents)
            .await
            .unwrap(),
        6
    );
    log.shutdown().await;
}

/// A projector the service has never heard of: registering it changes
/// nothing upstream, and it sees every past and future event.
struct EventCounter;

impl marauders_projections::Projector for EventCounter {
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
    let app = spawn_app().await;
    let (_, token) = app
        .user_with_role("lockhart@hogwarts.edu", Role::Student)
        .await;
    for n in 0..3 {
        report(&app, &token, &format!("Pixies {n}"), "LOW").await;
    }
    sqlx::query(
        "CREATE TABLE test_counted_events (log_offset BIGINT PRIMARY KEY, event_id UUID NOT NULL)",
    )
    .execute(&app.database.pool)
    .await
    .unwrap();
    let log = EventLog::open(LogConfig::Postgres(app.database.pool.clone()))
        .await
        .unwrap();
    let runner = ProjectorRunner::new(EventCounter, log.clone(), app.database.pool.clone());
    runner.poll_once().await.unwrap();
    report(&app, &token, "Pixies, again", "LOW").await;
    runner.poll_once().await.unwrap();

    let offsets: Vec<i64> =
        sqlx::query_scalar("SELECT log_offset FROM test_counted_events ORDER BY log_offset")
            .fetch_all(&app.database.pool)
            .await
            .unwrap();
    assert_eq!(offsets, [0, 1, 2, 3]);
    log.shutdown().await;
    app.stop().await;
}

#[tokio::test]
async fn a_query_waiting_for_a_projector_that_does_not_run_is_503() {
    let database = common::fresh_database().await;
    let app = common::spawn_app_on_with(database, None, 0, true).await;
    let (_, token) = app
        .user_with_role("binns@hogwarts.edu", Role::Student)
        .await;
    let (incident, offset) = report(&app, &token, "A ghost in class", "LOW").await;

    let id = incident["id"].as_str().unwrap();
    let (status, body) = app
        .get_as(&format!("/api/incidents/{id}?minOffset={offset}"), &token)
        .await;

    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    app.stop().await;
}

#[tokio::test]
async fn projections_not_run_by_anyone_are_reported_stopped() {
    let database = common::fresh_database().await;
    let app = common::spawn_app_on_with(database, None, 0, true).await;
    let (_, professor) = app
        .user_with_role("umbridge@hogwarts.edu", Role::Professor)
        .await;
    report(&app, &professor, "Decree 24", "MEDIUM").await;

    let (status, list) = app.get_as("/api/admin/projections", &professor).await;
    assert_eq!(status, 200, "{list}");
    let read_model = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "read-model")
        .unwrap();
    assert_eq!(read_model["state"], "stopped");
    assert_eq!(
        (
            read_model["storedOffset"].as_u64(),
            read_model["lag"].as_u64()
        ),
        (Some(0), Some(1))
    );

    // `marauders-map project read-model` would do this in another process.
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(marauders_map::app::run_projector(
        "read-model",
        EventLog::open(LogConfig::Postgres(app.database.pool.clone()))
            .await
            .unwrap(),
        app.database.pool.clone(),
        shutdown.clone(),
    ));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, list) = app.get_as("/api/admin/projections", &professor).await;
        let read_model = list
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "read-model")
            .unwrap()
            .clone();
        if read_model["state"] == "running" && read_model["lag"] == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{read_model}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    running.await.unwrap().unwrap();
    app.stop().await;
}
