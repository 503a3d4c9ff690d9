//! The write side's memory: rebuilt from the log at start-up, bounded by
//! snapshots, and the same whatever the backend. Plus the Iggy versions of
//! the race and outage tests.

mod common;

use std::time::{Duration, Instant};

use common::{TestApp, TestBackend, spawn_app};
use marauders_map::commands::WriteModel;
use marauders_map::domain::Role;
use marauders_map::log::{EventLog, LogConfig};
use reqwest::Method;
use serde_json::json;

async fn report_and_resolve(app: &TestApp, token: &str, count: usize) {
    for n in 0..count {
        let body = json!({"title": format!("Peeves incident #{n}"), "severity": "LOW", "location": "LIBRARY"});
        let (status, created, _) = app
            .command(Method::POST, "/api/incidents", token, Some(body))
            .await;
        assert_eq!(status, 201, "{created}");
        let path = format!("/api/incidents/{}/resolve", created["id"].as_str().unwrap());
        let (status, _, _) = app
            .command(
                Method::PATCH,
                &path,
                token,
                Some(json!({"resolution": "Bloody Baron called"})),
            )
            .await;
        assert_eq!(status, 200);
    }
}

#[tokio::test]
async fn a_restart_resumes_from_the_snapshot_and_reaches_the_same_state() {
    let app = spawn_app().await;
    let (_, token) = app
        .user_with_role("filch@hogwarts.edu", Role::Prefect)
        .await;
    report_and_resolve(&app, &token, 5).await;
    let before = app.write_model.fold().await;
    let (database, _) = app.stop().await; // saves a snapshot at offset 10

    let log = EventLog::open(LogConfig::Postgres(database.pool.clone()))
        .await
        .unwrap();
    let with_snapshot = WriteModel::new(log.clone(), database.pool.clone());
    let report = with_snapshot.rebuild(true).await.unwrap();
    assert_eq!(report.snapshot_offset, Some(10));
    assert_eq!(
        report.events_replayed, 0,
        "nothing after the snapshot to replay"
    );
    assert_eq!(with_snapshot.fold().await, before);

    let from_scratch = WriteModel::new(log.clone(), database.pool.clone());
    let report = from_scratch.rebuild(false).await.unwrap();
    assert_eq!((report.snapshot_offset, report.events_replayed), (None, 10));
    assert_eq!(
        from_scratch.fold().await,
        before,
        "the snapshot is only a shortcut"
    );
    log.shutdown().await;
}

#[tokio::test]
async fn a_snapshot_beyond_the_log_is_ignored() {
    let app = spawn_app().await;
    let (_, token) = app
        .user_with_role("argus@hogwarts.edu", Role::Prefect)
        .await;
    report_and_resolve(&app, &token, 1).await;
    let (database, _) = app.stop().await;
    // Pretend the snapshot was taken against a longer (another) log.
    sqlx::query("UPDATE write_model_snapshots SET next_offset = 1000")
        .execute(&database.pool)
        .await
        .unwrap();

    let log = EventLog::open(LogConfig::Postgres(database.pool.clone()))
        .await
        .unwrap();
    let model = WriteModel::new(log.clone(), database.pool.clone());
    let report = model.rebuild(true).await.unwrap();
    assert_eq!(
        (
            report.snapshot_offset,
            report.events_replayed,
            report.incidents
        ),
        (None, 2, 1)
    );
    log.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an Iggy server: put iggy-server on PATH or set IGGY_URL (scripts/test does this when it can)"]
async fn with_iggy_two_instances_racing_agree_on_one_winner() {
    let TestBackend::Iggy { server, stream } = TestBackend::iggy().await else {
        unreachable!()
    };
    let _ = stream;
    let first = common::spawn_app_with_iggy(Some(server.url.clone())).await;
    let second = common::spawn_app_on(
        common::clone_database(&first.database).await,
        Some(server.url.clone()),
        10,
    )
    .await;
    let (_, token) = first
        .user_with_role("fleur@hogwarts.edu", Role::Prefect)
        .await;
    for n in 0..5 {
        let body = json!({"title": format!("Dragon #{n}"), "severity": "CRITICAL", "location": "FORBIDDEN_FOREST"});
        let (status, created, _) = first
            .command(Method::POST, "/api/incidents", &token, Some(body))
            .await;
        assert_eq!(status, 201, "{created}");
        let path = format!("/api/incidents/{}/resolve", created["id"].as_str().unwrap());
        let (a, b) = tokio::join!(
            first.command(
                Method::PATCH,
                &path,
                &token,
                Some(json!({"resolution": "Aguamenti"}))
            ),
            second.command(
                Method::PATCH,
                &path,
                &token,
                Some(json!({"resolution": "Glacius"}))
            ),
        );
        let mut statuses = [a.0, b.0];
        statuses.sort();
        assert_eq!(statuses, [200, 409]);
    }
    first.write_model.sync().await.unwrap();
    second.write_model.sync().await.unwrap();
    assert_eq!(
        first.write_model.fold().await,
        second.write_model.fold().await
    );
    second.stop().await;
    first.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs iggy-server on PATH (scripts/test runs it when it is)"]
async fn iggy_process_commands_answer_503_while_iggy_is_down_and_work_after() {
    let TestBackend::Iggy { mut server, .. } = TestBackend::iggy().await else {
        unreachable!()
    };
    let app = common::spawn_app_with_iggy(Some(server.url.clone())).await;
    let (_, token) = app.user_with_role("cho@hogwarts.edu", Role::Student).await;
    let body = json!({"title": "Dementors", "severity": "CRITICAL", "location": "HOGSMEADE"});

    server.kill_9();
    let started = Instant::now();
    let (status, error, _) = app
        .command(Method::POST, "/api/incidents", &token, Some(body.clone()))
        .await;
    assert_eq!(status, 503, "{error}");
    assert_eq!(error["error"]["code"], "unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answered in {:?}",
        started.elapsed()
    );

    server.restart().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _, _) = app
            .command(Method::POST, "/api/incidents", &token, Some(body.clone()))
            .await;
        if status == 201 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {status} 30s after Iggy came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.stop().await;
}
