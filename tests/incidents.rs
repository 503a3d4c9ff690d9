//! The write side over HTTP, against a real service, database and log:
//! every command's happy path and rejections, the events it appends (and
//! that a rejected one appends nothing), and races between conflicting
//! commands — in one instance and across two.

mod common;

use common::{TestApp, spawn_app};
use marauders_map::domain::Role;
use marauders_map::events::{Event, EventPayload};
use marauders_map::incident::IncidentFold;
use marauders_map::log::{EventLog, LogConfig, Topic};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

async fn log_of(app: &TestApp) -> EventLog {
    EventLog::open(LogConfig::Postgres(app.database.pool.clone()))
        .await
        .unwrap()
}

async fn event_at(log: &EventLog, offset: u64) -> Event {
    let records = log.read(Topic::IncidentEvents, offset, 1).await.unwrap();
    assert_eq!(records[0].offset, offset);
    Event::decode(&records[0].payload).unwrap()
}

fn troll() -> Value {
    json!({"title": "Troll in the dungeon", "description": "Thought you ought to know", "severity": "HIGH", "location": "DUNGEONS"})
}

async fn report(app: &TestApp, token: &str) -> (String, Value) {
    let (status, body, _) = app
        .command(Method::POST, "/api/incidents", token, Some(troll()))
        .await;
    assert_eq!(status, 201, "{body}");
    (body["id"].as_str().unwrap().to_owned(), body)
}

#[tokio::test]
async fn reporting_appends_incident_created_and_answers_with_the_incident_and_its_offset() {
    let app = spawn_app().await;
    let log = log_of(&app).await;
    let (harry, token) = app
        .user_with_role("harry@hogwarts.edu", Role::Student)
        .await;

    let (status, body, offset) = app
        .command(Method::POST, "/api/incidents", &token, Some(troll()))
        .await;

    assert_eq!(status, 201, "{body}");
    assert_eq!(body["title"], "Troll in the dungeon");
    assert_eq!(body["severity"], "HIGH");
    assert_eq!(body["location"], "DUNGEONS");
    assert_eq!(body["status"], "OPEN");
    assert_eq!(body["reportedBy"], harry.to_string());
    for field in ["assignedTo", "resolvedBy", "resolution", "resolvedAt"] {
        assert_eq!(body[field], Value::Null, "{field}");
    }
    let offset = offset.expect("an Event-Offset header");
    let event = event_at(&log, offset).await;
    assert_eq!(event.user_id, Some(harry));
    let EventPayload::IncidentCreated(created) = event.payload else {
        panic!("{event:?}")
    };
    assert_eq!(created.id.to_string(), body["id"].as_str().unwrap());
    assert_eq!(created.version, 1);
    assert_eq!(
        created.description.as_deref(),
        Some("Thought you ought to know")
    );
    app.stop().await;
}

#[tokio::test]
async fn invalid_reports_name_each_field_and_append_nothing() {
    let app = spawn_app().await;
    let log = log_of(&app).await;
    let (_, token) = app.user_with_role("ron@hogwarts.edu", Role::Student).await;

    let (status, body, _) = app
        .command(
            Method::POST,
            "/api/incidents",
            &token,
            Some(json!({"title": " ", "severity": "APOCALYPTIC", "location": "MORDOR"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let fields = &body["error"]["fields"];
    assert_eq!(fields["title"], "title must not be empty");
    assert_eq!(
        fields["severity"],
        "'APOCALYPTIC' is not a valid severity; expected one of LOW, MEDIUM, HIGH, CRITICAL"
    );
    assert!(
        fields["location"]
            .as_str()
            .unwrap()
            .starts_with("'MORDOR' is not a valid location")
    );

    let (status, body, _) = app
        .command(Method::POST, "/api/incidents", &token, Some(json!({})))
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["fields"]["severity"], "severity is required");
    let long_title = json!({"title": "x".repeat(201), "severity": "LOW", "location": "LIBRARY"});
    let (status, body, _) = app
        .command(Method::POST, "/api/incidents", &token, Some(long_title))
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["fields"]["title"],
        "title must be at most 200 characters"
    );
    // A NUL would stall every projector (PostgreSQL text cannot hold it).
    let nul = json!({"title": "Troll\u{0}", "description": "a\u{0}b", "severity": "LOW", "location": "LIBRARY"});
    let (status, body, _) = app
        .command(Method::POST, "/api/incidents", &token, Some(nul))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error"]["fields"]["title"],
        "title must not contain control characters"
    );
    assert_eq!(
        body["error"]["fields"]["description"],
        "description must not contain control characters"
    );

    let (status, _) = app.post_json("/api/incidents", troll()).await;
    assert_eq!(status, 401, "commands need an access token");
    assert_eq!(
        log.log_end(Topic::IncidentEvents).await.unwrap(),
        0,
        "nothing appended"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_update_carries_only_the_changed_fields_and_follows_the_rules() {
    let app = spawn_app().await;
    let log = log_of(&app).await;
    let (_, reporter) = app
        .user_with_role("hermione@hogwarts.edu", Role::Student)
        .await;
    let (_, stranger) = app
        .user_with_role("crabbe@hogwarts.edu", Role::Student)
        .await;
    let (snape, prefect) = app
        .user_with_role("percy@hogwarts.edu", Role::Prefect)
        .await;
    let (id, _) = report(&app, &reporter).await;
    let path = format!("/api/incidents/{id}");

    let (status, body, offset) = app
        .command(
            Method::PUT,
            &path,
            &reporter,
            Some(json!({"title": "Troll in the girls' bathroom", "location": "DUNGEONS"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["title"], "Troll in the girls' bathroom");
    let event = event_at(&log, offset.unwrap()).await;
    let data = event.to_envelope().data;
    assert_eq!(
        data,
        json!({"id": id, "version": 2, "title": "Troll in the girls' bathroom"}),
        "location did not change"
    );

    let (status, body, _) = app
        .command(
            Method::PUT,
            &path,
            &stranger,
            Some(json!({"title": "mine now"})),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, body, _) = app
        .command(
            Method::PUT,
            &path,
            &prefect,
            Some(json!({"status": "INVESTIGATING", "assignedTo": snape.to_string()})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["assignedTo"], snape.to_string());
    let (status, body, _) = app
        .command(
            Method::PUT,
            &path,
            &prefect,
            Some(json!({"assignedTo": null})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["assignedTo"], Value::Null);

    let end = log.log_end(Topic::IncidentEvents).await.unwrap();
    let (status, _, offset) = app
        .command(
            Method::PUT,
            &path,
            &reporter,
            Some(json!({"status": "INVESTIGATING"})),
        )
        .await;
    assert_eq!(
        (status, offset),
        (200, Some(end - 1)),
        "no change: no event, the latest offset"
    );
    let (status, body, _) = app
        .command(
            Method::PUT,
            &path,
            &reporter,
            Some(json!({"status": "RESOLVED"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, _, _) = app
        .command(Method::PUT, &path, &reporter, Some(json!({})))
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        log.log_end(Topic::IncidentEvents).await.unwrap(),
        end,
        "rejected commands append nothing"
    );
    app.stop().await;
}

#[tokio::test]
async fn resolving_twice_is_a_conflict() {
    let app = spawn_app().await;
    let log = log_of(&app).await;
    let (reporter_id, reporter) = app
        .user_with_role("neville@hogwarts.edu", Role::Student)
        .await;
    let (id, _) = report(&app, &reporter).await;
    let path = format!("/api/incidents/{id}/resolve");

    let (status, body, offset) = app
        .command(
            Method::PATCH,
            &path,
            &reporter,
            Some(json!({"resolution": "Wingardium leviosa"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "RESOLVED");
    assert_eq!(body["resolvedBy"], reporter_id.to_string());
    assert_eq!(body["resolution"], "Wingardium leviosa");
    assert!(body["resolvedAt"].is_string());
    assert!(matches!(
        event_at(&log, offset.unwrap()).await.payload,
        EventPayload::IncidentResolved(_)
    ));

    let (status, body, _) = app
        .command(
            Method::PATCH,
            &path,
            &reporter,
            Some(json!({"resolution": "again"})),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["message"], "the incident is already resolved");
    let (status, body, _) = app
        .command(
            Method::PATCH,
            &path,
            &reporter,
            Some(json!({"resolution": ""})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["fields"]["resolution"],
        "resolution must not be empty"
    );
    app.stop().await;
}

#[tokio::test]
async fn anyone_may_raise_a_severity_but_only_a_prefect_may_lower_it() {
    let app = spawn_app().await;
    let log = log_of(&app).await;
    let (_, student) = app
        .user_with_role("seamus@hogwarts.edu", Role::Student)
        .await;
    let (_, other_student) = app.user_with_role("dean@hogwarts.edu", Role::Student).await;
    let (_, prefect) = app
        .user_with_role("penelope@hogwarts.edu", Role::Prefect)
        .await;
    let (id, _) = report(&app, &student).await;
    let path = format!("/api/incidents/{id}/severity");

    let (status, body, offset) = app
        .command(
            Method::PATCH,
            &path,
            &other_student,
            Some(json!({"severity": "CRITICAL"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["severity"], "CRITICAL");
    let data = event_at(&log, offset.unwrap()).await.to_envelope().data;
    assert_eq!(
        (data["oldSeverity"].as_str(), data["newSeverity"].as_str()),
        (Some("HIGH"), Some("CRITICAL"))
    );

    let (status, body, _) = app
        .command(
            Method::PATCH,
            &path,
            &student,
            Some(json!({"severity": "LOW"})),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, body, _) = app
        .command(
            Method::PATCH,
            &path,
            &prefect,
            Some(json!({"severity": "LOW"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["severity"], "LOW");
    let (status, _, _) = app
        .command(
            Method::PATCH,
            &path,
            &prefect,
            Some(json!({"severity": "lowish"})),
        )
        .await;
    assert_eq!(status, 400);
    app.stop().await;
}

#[tokio::test]
async fn only_the_reporter_or_a_professor_may_delete_and_then_the_incident_is_gone() {
    let app = spawn_app().await;
    let (_, reporter) = app.user_with_role("fred@hogwarts.edu", Role::Student).await;
    let (_, prefect) = app
        .user_with_role("percy.w@hogwarts.edu", Role::Prefect)
        .await;
    let (_, professor) = app
        .user_with_role("minerva@hogwarts.edu", Role::Professor)
        .await;
    let (first, _) = report(&app, &reporter).await;
    let (second, _) = report(&app, &reporter).await;

    let (status, _, _) = app
        .command(
            Method::DELETE,
            &format!("/api/incidents/{first}"),
            &prefect,
            None,
        )
        .await;
    assert_eq!(status, 403);
    let (status, body, offset) = app
        .command(
            Method::DELETE,
            &format!("/api/incidents/{first}"),
            &reporter,
            None,
        )
        .await;
    assert_eq!((status, body), (204, Value::Null));
    assert!(offset.is_some());
    let (status, _, _) = app
        .command(
            Method::DELETE,
            &format!("/api/incidents/{second}"),
            &professor,
            None,
        )
        .await;
    assert_eq!(status, 204);

    for (method, path, body) in [
        (
            Method::PUT,
            format!("/api/incidents/{first}"),
            Some(json!({"title": "back"})),
        ),
        (
            Method::PATCH,
            format!("/api/incidents/{first}/resolve"),
            Some(json!({"resolution": "r"})),
        ),
        (
            Method::POST,
            format!("/api/incidents/{first}/comments"),
            Some(json!({"body": "hello?"})),
        ),
        (Method::DELETE, format!("/api/incidents/{first}"), None),
    ] {
        let (status, body, _) = app.command(method, &path, &reporter, body).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    app.stop().await;
}

#[tokio::test]
async fn comments_are_appended_with_the_incident_id() {
    let app = spawn_app().await;
    let log = log_of(&app).await;
    let (_, reporter) = app.user_with_role("luna@hogwarts.edu", Role::Student).await;
    let (commenter, other) = app
        .user_with_role("ginny@hogwarts.edu", Role::Student)
        .await;
    let (id, _) = report(&app, &reporter).await;
    let path = format!("/api/incidents/{id}/comments");

    let (status, body, offset) = app
        .command(
            Method::POST,
            &path,
            &other,
            Some(json!({"body": "I saw it too"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["incidentId"], id);
    assert_eq!(body["authorId"], commenter.to_string());
    assert_eq!(body["body"], "I saw it too");
    let EventPayload::CommentAdded(comment) = event_at(&log, offset.unwrap()).await.payload else {
        panic!()
    };
    assert_eq!(
        (comment.id.to_string(), comment.version),
        (body["id"].as_str().unwrap().to_owned(), 2)
    );

    let (status, body, _) = app
        .command(Method::POST, &path, &other, Some(json!({"body": "   "})))
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["fields"]["body"], "body must not be empty");
    app.stop().await;
}

#[tokio::test]
async fn unknown_and_malformed_ids_are_not_found() {
    let app = spawn_app().await;
    let (_, token) = app
        .user_with_role("dobby@hogwarts.edu", Role::Student)
        .await;
    for id in [
        Uuid::now_v7().to_string(),
        "not-a-uuid".to_owned(),
        "42".to_owned(),
    ] {
        let (status, body, _) = app
            .command(
                Method::PUT,
                &format!("/api/incidents/{id}"),
                &token,
                Some(json!({"title": "t"})),
            )
            .await;
        assert_eq!(status, 404, "{id}: {body}");
        assert_eq!(body["error"]["code"], "not_found");
    }
    // Not even UTF-8: still the JSON error shape.
    let (status, body, _) = app
        .command(Method::DELETE, "/api/incidents/%FF", &token, None)
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "bad_request");
    app.stop().await;
}

/// Folds the whole log from scratch, as a new projector would.
async fn fold_of_the_log(log: &EventLog) -> IncidentFold {
    let mut fold = IncidentFold::default();
    for record in log.read(Topic::IncidentEvents, 0, 10_000).await.unwrap() {
        fold.apply(&Event::decode(&record.payload).unwrap());
    }
    fold
}

async fn race_two_resolves(first: &TestApp, second: &TestApp, token: &str, id: &str) -> Vec<u16> {
    let path = format!("/api/incidents/{id}/resolve");
    let (a, b) = tokio::join!(
        first.command(
            Method::PATCH,
            &path,
            token,
            Some(json!({"resolution": "Expelliarmus"}))
        ),
        second.command(
            Method::PATCH,
            &path,
            token,
            Some(json!({"resolution": "Stupefy"}))
        ),
    );
    let mut statuses = vec![a.0, b.0];
    statuses.sort();
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_racing_resolves_in_one_instance_exactly_one_wins() {
    let app = spawn_app().await;
    let (_, token) = app
        .user_with_role("cedric@hogwarts.edu", Role::Prefect)
        .await;
    for _ in 0..5 {
        let (id, _) = report(&app, &token).await;
        assert_eq!(race_two_resolves(&app, &app, &token, &id).await, [200, 409]);
    }
    assert_eq!(
        app.write_model.fold().await,
        fold_of_the_log(&log_of(&app).await).await
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_racing_commands_on_two_instances_exactly_one_wins_and_both_agree() {
    let first = spawn_app().await;
    let second = common::spawn_app_on(common::clone_database(&first.database).await, None, 0).await;
    let (_, token) = first
        .user_with_role("viktor@hogwarts.edu", Role::Prefect)
        .await;
    let log = log_of(&first).await;
    for _ in 0..5 {
        let (id, _) = report(&first, &token).await;
        assert_eq!(
            race_two_resolves(&first, &second, &token, &id).await,
            [200, 409]
        );
        // Racing updates of the same field: both may not be accepted.
        let path = format!("/api/incidents/{id}/comments");
        let (a, b) = tokio::join!(
            first.command(
                Method::POST,
                &path,
                &token,
                Some(json!({"body": "from the first"}))
            ),
            second.command(
                Method::POST,
                &path,
                &token,
                Some(json!({"body": "from the second"}))
            ),
        );
        let accepted = [a.0, b.0].iter().filter(|status| **status == 201).count();
        assert!(accepted >= 1, "at least one comment lands: {} {}", a.0, b.0);
        assert!(
            [a.0, b.0]
                .iter()
                .all(|status| *status == 201 || *status == 409)
        );
    }
    first.write_model.sync().await.unwrap();
    second.write_model.sync().await.unwrap();
    let truth = fold_of_the_log(&log).await;
    assert_eq!(
        first.write_model.fold().await,
        truth,
        "instance 1 agrees with the log"
    );
    assert_eq!(
        second.write_model.fold().await,
        truth,
        "instance 2 agrees with the log"
    );
    second.stop().await;
    first.stop().await;
}
