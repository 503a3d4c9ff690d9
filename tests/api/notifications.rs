//! Notifications and the audit log: who is told what, that a lost race
//! tells nobody, that only the owner marks a notification read, and that the
//! audit log is for professors.

use marauders_map::domain::{Role, Severity};
use marauders_map::log::Topic;
use marauders_projections::{NotificationsProjector, ProjectorRunner, ReadModelProjector};
use marauders_testkit::events::{
    comment_added, commuting_comment, incident_created, incident_deleted,
};
use marauders_testkit::{
    ApiResponse, EVENTUALLY, ReportIncident, TestApp, TestBackend, TestUser, eventually,
};
use serde_json::json;
use uuid::Uuid;

/// Polls `GET /api/<path>` as `who` until it lists `count` items
/// (projectors are asynchronous).
async fn items_eventually(app: &TestApp, who: &TestUser, path: &str, count: usize) -> ApiResponse {
    eventually(path, EVENTUALLY, || async {
        let page = app.get_as(who, path).await.assert_status(200);
        (page.items().len() >= count).then_some(page)
    })
    .await
}

/// Who took part in the basilisk's story.
struct Basilisk {
    reporter: TestUser,
    friend: TestUser,
    professors: [TestUser; 2],
    /// The offset of the last event of the story (its resolution).
    resolved_at: u64,
}

/// Harry reports the basilisk and comments on it; Ron comments too and
/// raises it to CRITICAL; Hermione, a prefect, resolves it.
async fn basilisk_story(app: &TestApp) -> Basilisk {
    let reporter = app.user_named("harry", Role::Student).await;
    let friend = app.user_named("ron", Role::Student).await;
    let prefect = app.user_named("hermione", Role::Prefect).await;
    let professors = [
        app.user_named("minerva", Role::Professor).await,
        app.user_named("severus", Role::Professor).await,
    ];
    let basilisk = app
        .reported(
            &reporter,
            ReportIncident::new("Basilisk").severity(Severity::High),
        )
        .await;
    app.comment(&reporter, basilisk.id, "mine")
        .await
        .assert_status(201);
    app.comment(&friend, basilisk.id, "scary")
        .await
        .assert_status(201);
    app.change_severity(&friend, basilisk.id, Severity::Critical)
        .await
        .assert_status(200);
    let resolved = app
        .resolve(&prefect, basilisk.id, "Sword of Gryffindor")
        .await
        .assert_status(200);
    Basilisk {
        reporter,
        friend,
        professors,
        resolved_at: resolved.event_offset(),
    }
}

#[tokio::test]
async fn a_reporter_is_told_of_comments_by_others_and_of_a_resolution_by_someone_else() {
    let app = TestApp::spawn().await;
    let story = basilisk_story(&app).await;

    // Read-your-writes: no polling needed with the command's offset.
    let mine = app
        .notifications(&story.reporter, &format!("minOffset={}", story.resolved_at))
        .await
        .assert_status(200);

    assert_eq!(
        mine.item_strings("kind"),
        ["resolved", "comment"],
        "newest first"
    );
    assert_eq!(mine.body["unreadCount"], 2);
    app.stop().await;
}

#[tokio::test]
async fn a_reporter_is_not_told_of_their_own_comment() {
    let app = TestApp::spawn().await;
    let story = basilisk_story(&app).await;

    let mine = app
        .notifications(&story.reporter, &format!("minOffset={}", story.resolved_at))
        .await;

    let comments: Vec<&str> = mine
        .items()
        .iter()
        .filter(|n| n["kind"] == "comment")
        .map(|n| n["message"].as_str().unwrap())
        .collect();
    assert_eq!(comments.len(), 1, "Ron's comment only: {}", mine.body);
    app.stop().await;
}

#[tokio::test]
async fn every_professor_is_told_when_an_incident_becomes_critical() {
    let app = TestApp::spawn().await;
    let story = basilisk_story(&app).await;

    for professor in &story.professors {
        let theirs = items_eventually(&app, professor, "/api/notifications", 1).await;
        assert_eq!(theirs.body["items"][0]["kind"], "critical");
        assert_eq!(
            theirs.body["items"][0]["message"],
            "\"Basilisk\" is now CRITICAL"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn someone_who_only_commented_is_told_nothing() {
    let app = TestApp::spawn().await;
    let story = basilisk_story(&app).await;

    let friends = app
        .notifications(&story.friend, &format!("minOffset={}", story.resolved_at))
        .await
        .assert_status(200);

    assert_eq!(friends.body["items"], json!([]));
    app.stop().await;
}

#[tokio::test]
async fn only_the_owner_may_mark_a_notification_read() {
    let app = TestApp::spawn().await;
    let story = basilisk_story(&app).await;
    let mine = app
        .notifications(&story.reporter, &format!("minOffset={}", story.resolved_at))
        .await;
    let newest = mine.body["items"][0]["id"].as_str().unwrap().to_owned();

    app.mark_read(&story.friend, &newest)
        .await
        .assert_error(404, "not_found");
    app.mark_read(&story.reporter, &newest)
        .await
        .assert_status(204);

    let unread = app.notifications(&story.reporter, "unread=true").await;
    assert_eq!(
        (unread.items().len(), unread.body["unreadCount"].as_i64()),
        (1, Some(1))
    );
    app.stop().await;
}

#[tokio::test]
async fn bad_notification_query_values_are_400() {
    let app = TestApp::spawn().await;
    let harry = app.user(Role::Student).await;

    for query in ["minOffset=soon", "unread=maybe"] {
        app.notifications(&harry, query).await.assert_status(400);
    }
    app.stop().await;
}

// ---- the notifications projector against the log ------------------------------

/// Two comments claiming version 2 of one incident; only the first in the
/// log counts. Returns the reporter and the winning comment's event id.
async fn a_race_of_two_comments(backend: &TestBackend) -> (Uuid, Uuid) {
    let log = backend.open_log().await;
    let (reporter, incident) = (Uuid::now_v7(), Uuid::now_v7());
    let won = comment_added(incident, Uuid::now_v7(), 2, "won");
    let lost = comment_added(incident, Uuid::now_v7(), 2, "lost");
    let events = [
        incident_created(incident, reporter, "Race").to_log_message(),
        won.to_log_message(),
        lost.to_log_message(),
    ];
    log.append(Topic::IncidentEvents, &events).await.unwrap();
    log.shutdown().await;
    (reporter, won.event_id)
}

async fn project_notifications(backend: &TestBackend) {
    let TestBackend::Postgres(database) = backend else {
        unreachable!("the projector keeps its tables in PostgreSQL")
    };
    let log = backend.open_log().await;
    ProjectorRunner::new(NotificationsProjector, log.clone(), database.pool.clone())
        .poll_once()
        .await
        .unwrap();
    log.shutdown().await;
}

#[tokio::test]
async fn a_comment_that_lost_its_race_notifies_nobody() {
    let backend = TestBackend::postgres().await;
    let (reporter, winner) = a_race_of_two_comments(&backend).await;
    let TestBackend::Postgres(database) = &backend else {
        unreachable!()
    };

    project_notifications(&backend).await;

    let notified_for: Vec<Uuid> =
        sqlx::query_scalar("SELECT event_id FROM notifications WHERE user_id = $1")
            .bind(reporter)
            .fetch_all(&database.pool)
            .await
            .unwrap();
    assert_eq!(
        notified_for,
        [winner],
        "only the comment that won version 2"
    );
}

#[tokio::test]
async fn a_comment_counts_once_however_often_it_is_on_the_log_and_never_after_a_delete() {
    let backend = TestBackend::postgres().await;
    let TestBackend::Postgres(database) = &backend else {
        unreachable!()
    };
    let log = backend.open_log().await;
    let (reporter, kept, gone) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let first = commuting_comment(kept, Uuid::now_v7(), "first");
    let second = commuting_comment(kept, Uuid::now_v7(), "second, at the same moment");
    let too_late = commuting_comment(gone, Uuid::now_v7(), "decided before the delete");
    let events = [
        incident_created(kept, reporter, "Kept"),
        incident_created(gone, reporter, "Gone"),
        first.clone(),
        second.clone(),
        // A re-sent copy of the first comment.
        first.clone(),
        incident_deleted(gone, reporter, 2),
        too_late,
    ];
    let messages: Vec<_> = events.iter().map(|event| event.to_log_message()).collect();
    log.append(Topic::IncidentEvents, &messages).await.unwrap();
    log.shutdown().await;

    project_notifications(&backend).await;

    let mut notified_for: Vec<Uuid> =
        sqlx::query_scalar("SELECT event_id FROM notifications WHERE user_id = $1")
            .bind(reporter)
            .fetch_all(&database.pool)
            .await
            .unwrap();
    notified_for.sort();
    let mut expected = vec![first.event_id, second.event_id];
    expected.sort();
    assert_eq!(
        notified_for, expected,
        "both comments once each; none on the deleted incident"
    );

    // The read model agrees: the same two comments, nothing on the other.
    let log = backend.open_log().await;
    ProjectorRunner::new(ReadModelProjector, log.clone(), database.pool.clone())
        .poll_once()
        .await
        .unwrap();
    log.shutdown().await;
    let mut comments: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM read_comments")
        .fetch_all(&database.pool)
        .await
        .unwrap();
    comments.sort();
    let mut expected = [&first, &second].map(|event| match &event.payload {
        marauders_map::events::EventPayload::CommentAdded(comment) => comment.id,
        _ => unreachable!(),
    });
    expected.sort();
    assert_eq!(comments, expected);
}

#[tokio::test]
async fn replaying_the_log_from_offset_0_notifies_nobody_twice() {
    let backend = TestBackend::postgres().await;
    a_race_of_two_comments(&backend).await;
    let TestBackend::Postgres(database) = &backend else {
        unreachable!()
    };
    project_notifications(&backend).await;

    // Replaying from offset 0 (a rebuild) recreates the same notification ids.
    sqlx::raw_sql(
        "DELETE FROM notification_incidents; UPDATE projector_offsets SET next_offset = 0",
    )
    .execute(&database.pool)
    .await
    .unwrap();
    project_notifications(&backend).await;

    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM notifications")
        .fetch_one(&database.pool)
        .await
        .unwrap();
    assert_eq!(count, 1);
}

// ---- the audit log ----------------------------------------------------------------

#[tokio::test]
async fn the_audit_log_is_for_professors_only() {
    let app = TestApp::spawn().await;
    let neville = app.user(Role::Student).await;
    let prefect = app.user(Role::Prefect).await;

    for who in [&neville, &prefect] {
        app.audit(who, "").await.assert_error(403, "forbidden");
    }
    app.stop().await;
}

#[tokio::test]
async fn the_audit_log_filters_by_user_newest_first() {
    let app = TestApp::spawn().await;
    let neville = app.user(Role::Student).await;
    let sprout = app.user(Role::Professor).await;

    let page = items_eventually(
        &app,
        &sprout,
        &format!("/api/audit?userId={}", neville.id),
        2,
    )
    .await;

    // Registered as a STUDENT already, so no role change was recorded.
    assert_eq!(
        page.item_strings("eventType"),
        ["user.logged_in", "user.registered"],
        "newest first"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_audit_log_filters_by_event_type_and_pages() {
    let app = TestApp::spawn().await;
    app.user(Role::Student).await;
    let sprout = app.user(Role::Professor).await;
    // Both users' five events (two registrations, a promotion, two logins)
    // are projected before paging through the logins.
    items_eventually(&app, &sprout, "/api/audit", 5).await;

    let logins = app
        .audit(&sprout, "eventType=user.logged_in&limit=1")
        .await
        .assert_status(200);

    assert_eq!(logins.item_strings("eventType"), ["user.logged_in"]);
    assert!(logins.body["nextBeforeOffset"].is_i64(), "{}", logins.body);
    app.stop().await;
}

#[tokio::test]
async fn bad_audit_query_values_are_400() {
    let app = TestApp::spawn().await;
    let sprout = app.user(Role::Professor).await;

    for bad in [
        "minOffset=-1",
        "eventType=incident.created",
        "userId=x",
        "limit=0",
        "beforeOffset=-1",
    ] {
        app.audit(&sprout, bad).await.assert_status(400);
    }
    app.stop().await;
}
