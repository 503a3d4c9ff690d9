//! Rebuilding projections from offset 0: the result is identical to the
//! incrementally built one, read marks survive, nobody is notified twice,
//! and only professors may do it.

mod common;

use std::time::{Duration, Instant};

use common::{TestApp, spawn_app};
use marauders_map::domain::Role;
use reqwest::Method;
use serde_json::{Value, json};

async fn table(app: &TestApp, sql: &str) -> Vec<String> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_all(&app.database.pool)
        .await
        .unwrap()
}

async fn snapshot(app: &TestApp) -> [Vec<String>; 4] {
    [
        table(
            app,
            "SELECT row_to_json(r)::text FROM read_incidents r ORDER BY id",
        )
        .await,
        table(
            app,
            "SELECT row_to_json(c)::text FROM read_comments c ORDER BY id",
        )
        .await,
        table(
            app,
            "SELECT row_to_json(n)::text FROM notifications n ORDER BY id",
        )
        .await,
        table(
            app,
            "SELECT row_to_json(a)::text FROM audit_log a ORDER BY log_offset",
        )
        .await,
    ]
}

async fn wait_until_caught_up(app: &TestApp, token: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, list) = app.get_as("/api/admin/projections", token).await;
        assert_eq!(status, 200, "{list}");
        let done = list
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["state"] == "running" && p["lag"] == 0);
        if done {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "projections did not settle: {list}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_reproduces_every_projection_exactly_and_keeps_read_marks() {
    let app = spawn_app().await;
    let (_, reporter) = app
        .user_with_role("oliver@hogwarts.edu", Role::Student)
        .await;
    let (_, professor) = app
        .user_with_role("dumbledore@hogwarts.edu", Role::Professor)
        .await;
    for n in 0..3 {
        let body = json!({"title": format!("Bludger {n}"), "severity": "MEDIUM", "location": "QUIDDITCH_PITCH"});
        let (_, incident, _) = app
            .command(Method::POST, "/api/incidents", &reporter, Some(body))
            .await;
        let id = incident["id"].as_str().unwrap();
        app.command(
            Method::POST,
            &format!("/api/incidents/{id}/comments"),
            &professor,
            Some(json!({"body": "Careful"})),
        )
        .await;
        app.command(
            Method::PATCH,
            &format!("/api/incidents/{id}/severity"),
            &reporter,
            Some(json!({"severity": "CRITICAL"})),
        )
        .await;
    }
    let list = wait_until_caught_up(&app, &professor).await;
    assert_eq!(list.as_array().unwrap().len(), 3);
    let (_, mine) = app.get_as("/api/notifications", &reporter).await;
    let read_one = mine["items"][0]["id"].as_str().unwrap().to_owned();
    app.command(
        Method::PATCH,
        &format!("/api/notifications/{read_one}/read"),
        &reporter,
        None,
    )
    .await;
    let before = snapshot(&app).await;
    assert!(
        before.iter().all(|rows| !rows.is_empty()),
        "every projection has rows"
    );

    for name in ["read-model", "notifications", "audit"] {
        let (status, body, _) = app
            .command(
                Method::POST,
                &format!("/api/admin/projections/{name}/rebuild"),
                &professor,
                None,
            )
            .await;
        assert_eq!(status, 202, "{body}");
        wait_until_caught_up(&app, &professor).await;
    }

    assert_eq!(
        snapshot(&app).await,
        before,
        "identical to the incrementally built projections"
    );
    let (_, after) = app
        .get_as("/api/notifications?unread=true", &reporter)
        .await;
    assert_eq!(
        after["unreadCount"],
        mine["unreadCount"].as_i64().unwrap() - 1,
        "the read mark survived"
    );
    app.stop().await;
}

#[tokio::test]
async fn only_professors_rebuild_and_only_known_projections() {
    let app = spawn_app().await;
    let (_, prefect) = app
        .user_with_role("oliver.w@hogwarts.edu", Role::Prefect)
        .await;
    let (_, professor) = app
        .user_with_role("hooch@hogwarts.edu", Role::Professor)
        .await;
    let (status, _, _) = app
        .command(
            Method::POST,
            "/api/admin/projections/read-model/rebuild",
            &prefect,
            None,
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = app.get_as("/api/admin/projections", &prefect).await;
    assert_eq!(status, 403);
    let (status, body, _) = app
        .command(
            Method::POST,
            "/api/admin/projections/horcruxes/rebuild",
            &professor,
            None,
        )
        .await;
    assert_eq!(status, 404, "{body}");
    app.stop().await;
}

#[tokio::test]
async fn the_command_line_lists_and_rebuilds_projections() {
    let app = spawn_app().await;
    let (_, token) = app
        .user_with_role("binns@hogwarts.edu", Role::Professor)
        .await;
    let body = json!({"title": "Ghost in the classroom", "severity": "LOW", "location": "LIBRARY"});
    app.command(Method::POST, "/api/incidents", &token, Some(body))
        .await;
    wait_until_caught_up(&app, &token).await;
    let before = snapshot(&app).await;
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_marauders-map"))
            .args(args)
            .env("DATABASE_URL", &app.database.url)
            .env("RUST_LOG", "warn")
            .output()
            .expect("the binary runs")
    };

    let listed = run(&["projections"]);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        text.lines()
            .any(|line| line.starts_with("read-model") && line.contains("incident-events")),
        "{text}"
    );
    let rebuilt = run(&["projection", "rebuild", "read-model"]);
    assert!(
        rebuilt.status.success(),
        "{}",
        String::from_utf8_lossy(&rebuilt.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&rebuilt.stdout).trim(),
        "read-model rebuilt: 1 events replayed, now at offset 1"
    );
    assert_eq!(snapshot(&app).await, before);
    let unknown = run(&["projection", "rebuild", "quidditch"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no projection named 'quidditch'"));
    app.stop().await;
}

#[tokio::test]
async fn metrics_show_projector_lag_dead_letters_outbox_and_requests() {
    let app = spawn_app().await;
    let (_, token) = app
        .user_with_role("pomfrey@hogwarts.edu", Role::Professor)
        .await;
    let body = json!({"title": "Broken arm", "severity": "HIGH", "location": "HOSPITAL_WING"});
    let (_, incident, offset) = app
        .command(Method::POST, "/api/incidents", &token, Some(body))
        .await;
    let id = incident["id"].as_str().unwrap();
    let path = format!("/api/incidents/{id}?minOffset={}", offset.unwrap());
    let (status, _) = app.get_as(&path, &token).await;
    assert_eq!(status, 200);
    wait_until_caught_up(&app, &token).await;

    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
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
