//! Notifications and the audit log: who is told what, that a lost race
//! tells nobody, that only the owner marks a notification read, and that the
//! audit log is for professors.

mod common;

use std::time::{Duration, Instant};

use common::{TestApp, spawn_app};
use marauders_map::domain::Role;
use marauders_map::events::{CommentAdded, Event, EventPayload};
use marauders_map::log::{EventLog, LogConfig, Topic};
use marauders_projections::{NotificationsProjector, ProjectorRunner};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

/// Polls `path` until `count` items are there (projectors are asynchronous).
async fn items_eventually(app: &TestApp, path: &str, token: &str, count: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = app.get_as(path, token).await;
        assert_eq!(status, 200, "{body}");
        if body["items"].as_array().unwrap().len() >= count {
            return body;
        }
        assert!(Instant::now() < deadline, "{path}: still {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_right_people_are_notified_and_only_owners_mark_them_read() {
    let app = spawn_app().await;
    let (_, reporter) = app
        .user_with_role("harry@hogwarts.edu", Role::Student)
        .await;
    let (_, friend) = app.user_with_role("ron@hogwarts.edu", Role::Student).await;
    let (_, prefect) = app
        .user_with_role("hermione@hogwarts.edu", Role::Prefect)
        .await;
    let (_, mcgonagall) = app
        .user_with_role("minerva@hogwarts.edu", Role::Professor)
        .await;
    let (_, snape) = app
        .user_with_role("severus@hogwarts.edu", Role::Professor)
        .await;
    let body = json!({"title": "Basilisk", "severity": "HIGH", "location": "DUNGEONS"});
    let (_, incident, _) = app
        .command(Method::POST, "/api/incidents", &reporter, Some(body))
        .await;
    let id = incident["id"].as_str().unwrap();

    app.command(
        Method::POST,
        &format!("/api/incidents/{id}/comments"),
        &reporter,
        Some(json!({"body": "mine"})),
    )
    .await;
    app.command(
        Method::POST,
        &format!("/api/incidents/{id}/comments"),
        &friend,
        Some(json!({"body": "scary"})),
    )
    .await;
    app.command(
        Method::PATCH,
        &format!("/api/incidents/{id}/severity"),
        &friend,
        Some(json!({"severity": "CRITICAL"})),
    )
    .await;
    let (_, _, resolved_at) = app
        .command(
            Method::PATCH,
            &format!("/api/incidents/{id}/resolve"),
            &prefect,
            Some(json!({"resolution": "Sword of Gryffindor"})),
        )
        .await;

    // Read-your-writes: no polling needed with the command's offset.
    let path = format!("/api/notifications?minOffset={}", resolved_at.unwrap());
    let (status, mine) = app.get_as(&path, &reporter).await;
    assert_eq!(status, 200, "{mine}");
    let (status, _) = app
        .get_as("/api/notifications?minOffset=soon", &reporter)
        .await;
    assert_eq!(status, 400);
    let kinds: Vec<&str> = mine["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["resolved", "comment"],
        "newest first; not for my own comment"
    );
    assert_eq!(mine["unreadCount"], 2);
    for professor in [&mcgonagall, &snape] {
        let theirs = items_eventually(&app, "/api/notifications", professor, 1).await;
        assert_eq!(theirs["items"][0]["kind"], "critical");
        assert_eq!(
            theirs["items"][0]["message"],
            "\"Basilisk\" is now CRITICAL"
        );
    }
    let (_, friends) = app.get_as("/api/notifications", &friend).await;
    assert_eq!(friends["items"], json!([]));

    let first = mine["items"][0]["id"].as_str().unwrap();
    let (status, _, _) = app
        .command(
            Method::PATCH,
            &format!("/api/notifications/{first}/read"),
            &friend,
            None,
        )
        .await;
    assert_eq!(status, 404, "not the owner");
    let (status, _, _) = app
        .command(
            Method::PATCH,
            &format!("/api/notifications/{first}/read"),
            &reporter,
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (_, unread) = app
        .get_as("/api/notifications?unread=true", &reporter)
        .await;
    assert_eq!(
        (
            unread["items"].as_array().unwrap().len(),
            unread["unreadCount"].as_i64()
        ),
        (1, Some(1))
    );
    let (status, _) = app
        .get_as("/api/notifications?unread=maybe", &reporter)
        .await;
    assert_eq!(status, 400);
    app.stop().await;
}

#[tokio::test]
async fn a_comment_that_lost_its_race_notifies_nobody_and_replays_notify_once() {
    let database = common::fresh_database().await;
    let log = EventLog::open(LogConfig::Postgres(database.pool.clone()))
        .await
        .unwrap();
    let (reporter, incident) = (Uuid::now_v7(), Uuid::now_v7());
    let now = chrono::Utc::now();
    let comment = |body: &str| {
        let payload = EventPayload::CommentAdded(CommentAdded {
            id: Uuid::now_v7(),
            incident_id: incident,
            author_id: Uuid::now_v7(),
            body: body.into(),
            created_at: now,
            version: 2,
        });
        Event::new(payload, None).to_log_message()
    };
    let created = common::incident_created(incident, reporter, "Race");

    let events = [created.to_log_message(), comment("won"), comment("lost")];
    log.append(Topic::IncidentEvents, &events).await.unwrap();

    ProjectorRunner::new(NotificationsProjector, log.clone(), database.pool.clone())
        .poll_once()
        .await
        .unwrap();
    let messages: Vec<Uuid> =
        sqlx::query_scalar("SELECT event_id FROM notifications WHERE user_id = $1")
            .bind(reporter)
            .fetch_all(&database.pool)
            .await
            .unwrap();
    assert_eq!(
        messages,
        [events[1].id],
        "only the comment that won version 2"
    );

    // Replaying from offset 0 (a rebuild) recreates the same notification ids.
    sqlx::raw_sql("DELETE FROM projector_applied_events; DELETE FROM notification_incidents; UPDATE projector_offsets SET next_offset = 0")
        .execute(&database.pool)
        .await
        .unwrap();
    ProjectorRunner::new(NotificationsProjector, log.clone(), database.pool.clone())
        .poll_once()
        .await
        .unwrap();
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM notifications")
        .fetch_one(&database.pool)
        .await
        .unwrap();
    assert_eq!(count, 1, "nobody is notified twice");
    log.shutdown().await;
}

#[tokio::test]
async fn the_audit_log_is_for_professors_and_filters_by_user_and_type() {
    let app = spawn_app().await;
    let (student_id, student) = app
        .user_with_role("neville@hogwarts.edu", Role::Student)
        .await;
    let (_, professor) = app
        .user_with_role("sprout@hogwarts.edu", Role::Professor)
        .await;

    let (status, body) = app.get_as("/api/audit", &student).await;
    assert_eq!(status, 403, "{body}");
    let path = format!("/api/audit?userId={student_id}");
    let page = items_eventually(&app, &path, &professor, 2).await;
    let types: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["eventType"].as_str().unwrap())
        .collect();
    // Registered as a STUDENT already, so no role change was recorded.
    assert_eq!(types, ["user.logged_in", "user.registered"], "newest first");
    // Both users' five events (two registrations, a promotion, two logins)
    // are projected before paging through the logins.
    items_eventually(&app, "/api/audit", &professor, 5).await;
    let (_, logins) = app
        .get_as("/api/audit?eventType=user.logged_in&limit=1", &professor)
        .await;
    assert_eq!(logins["items"].as_array().unwrap().len(), 1);
    assert!(logins["nextBeforeOffset"].is_i64());
    for bad in [
        "minOffset=-1",
        "eventType=incident.created",
        "userId=x",
        "limit=0",
        "beforeOffset=-1",
    ] {
        let (status, _) = app.get_as(&format!("/api/audit?{bad}"), &professor).await;
        assert_eq!(status, 400, "{bad}");
    }
    app.stop().await;
}
