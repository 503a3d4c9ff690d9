//! Exactly once under retries: `Idempotency-Key`, ids derived from it, and
//! appends whose answer was lost. Each rule on both log backends where the
//! log matters; the crash test (`scripts/crash-test`) adds kill -9.

use marauders_map::domain::{Role, Severity};
use marauders_map::events::{Event, EventPayload};
use marauders_map::idempotency::{IdempotencyKey, derived_comment_id, derived_incident_id};
use marauders_map::incident::{FoldOutcome, IncidentFold};
use marauders_map::log::Topic;
use marauders_testkit::{ApiResponse, ReportIncident, TestApp, TestBackend};
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

/// The events of `incident-events` the version rule accepts: copies and
/// lost races are on the log, but count for nothing.
async fn accepted_events(app: &TestApp) -> Vec<Event> {
    let mut fold = IncidentFold::default();
    app.events(Topic::IncidentEvents)
        .await
        .into_iter()
        .filter(|event| fold.apply(event) == FoldOutcome::Applied)
        .collect()
}

async fn accepted_reports_titled(app: &TestApp, title: &str) -> usize {
    accepted_events(app)
        .await
        .iter()
        .filter(|event| matches!(&event.payload, EventPayload::IncidentCreated(created) if created.title == title))
        .count()
}

/// The parts of an answer a retry must get again.
fn answer(response: &ApiResponse) -> (u16, serde_json::Value, Option<u64>) {
    (
        response.status.as_u16(),
        response.body.clone(),
        response.offset,
    )
}

async fn the_same_key_twice_reports_once_with_the_same_answer(backend: &TestBackend) {
    let app = TestApp::builder().on(backend).spawn().await;
    let harry = app.user(Role::Student).await;
    let troll = ReportIncident::new("Troll in the dungeon");

    let first = app
        .report_incident_with_key(&harry, troll.clone(), "report-1")
        .await
        .assert_status(201);
    let retry = app
        .report_incident_with_key(&harry, troll, "report-1")
        .await;

    assert_eq!(answer(&retry), answer(&first));
    assert_eq!(
        accepted_reports_titled(&app, "Troll in the dungeon").await,
        1
    );
    app.stop().await;
}

async fn every_command_retried_with_its_key_takes_effect_once(backend: &TestBackend) {
    let app = TestApp::builder().on(backend).spawn().await;
    let hermione = app.user(Role::Prefect).await;
    let troll = app.reported(&hermione, ReportIncident::new("Troll")).await;
    let path = format!("/api/incidents/{}", troll.id);
    let commands = [
        (
            Method::POST,
            format!("{path}/comments"),
            Some(json!({"body": "On my way"})),
        ),
        (
            Method::PUT,
            path.clone(),
            Some(json!({"title": "Mountain troll"})),
        ),
        (
            Method::PATCH,
            format!("{path}/severity"),
            Some(json!({"severity": "CRITICAL"})),
        ),
        (
            Method::PATCH,
            format!("{path}/resolve"),
            Some(json!({"resolution": "Levitated"})),
        ),
        (Method::DELETE, path.clone(), None),
    ];

    for (n, (method, path, body)) in commands.into_iter().enumerate() {
        let key = format!("command-{n}");
        let before = app.events(Topic::IncidentEvents).await.len();
        let first = app
            .request_with_key(method.clone(), &hermione, &path, body.clone(), &key)
            .await;
        assert!(first.status.is_success(), "{method} {path}: {}", first.body);
        let retry = app
            .request_with_key(method.clone(), &hermione, &path, body, &key)
            .await;

        assert_eq!(answer(&retry), answer(&first), "{method} {path}");
        assert_eq!(
            app.events(Topic::IncidentEvents).await.len(),
            before + 1,
            "{method} {path}: one event, however often it is sent"
        );
    }
    app.stop().await;
}

async fn the_same_key_with_another_request_is_422(backend: &TestBackend) {
    let app = TestApp::builder().on(backend).spawn().await;
    let harry = app.user(Role::Student).await;
    app.report_incident_with_key(&harry, ReportIncident::new("Troll"), "k")
        .await
        .assert_status(201);

    app.report_incident_with_key(&harry, ReportIncident::new("Basilisk"), "k")
        .await
        .assert_error(422, "idempotency_key_reused");

    assert_eq!(accepted_events(&app).await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn the_same_key_on_another_command_is_422() {
    let app = TestApp::spawn().await;
    let harry = app.user(Role::Student).await;
    let troll = app
        .report_incident_with_key(&harry, ReportIncident::new("Troll"), "k")
        .await
        .assert_status(201);

    app.request_with_key(
        Method::POST,
        &harry,
        &format!("/api/incidents/{}/comments", troll.id()),
        Some(json!({"body": "again?"})),
        "k",
    )
    .await
    .assert_error(422, "idempotency_key_reused");
    app.stop().await;
}

async fn ten_concurrent_requests_with_one_key_take_effect_once(backend: &TestBackend) {
    let app = TestApp::builder().on(backend).spawn().await;
    let harry = app.user(Role::Student).await;

    let answers = futures::future::join_all((0..10).map(|_| {
        app.report_incident_with_key(
            &harry,
            ReportIncident::new("Dementors at the gate"),
            "burst",
        )
    }))
    .await;

    for response in &answers {
        assert_eq!(answer(response), answer(&answers[0]));
    }
    assert_eq!(answers[0].status, 201, "{}", answers[0].body);
    assert_eq!(
        accepted_reports_titled(&app, "Dementors at the gate").await,
        1
    );
    app.stop().await;
}

async fn keys_are_per_user(backend: &TestBackend) {
    let app = TestApp::builder().on(backend).spawn().await;
    let (harry, ron) = (app.user(Role::Student).await, app.user(Role::Student).await);

    let by_harry = app
        .report_incident_with_key(&harry, ReportIncident::new("Spiders"), "same-key")
        .await
        .assert_status(201);
    let by_ron = app
        .report_incident_with_key(&ron, ReportIncident::new("Spiders"), "same-key")
        .await
        .assert_status(201);

    assert_ne!(by_harry.id(), by_ron.id());
    assert_eq!(accepted_reports_titled(&app, "Spiders").await, 2);
    app.stop().await;
}

async fn a_report_whose_answer_was_lost_takes_effect_once(backend: &TestBackend) {
    let app = TestApp::builder().on(backend).spawn().await;
    let harry = app.user(Role::Student).await;
    app.faults.lose_next_append_answers(1);

    let first = app
        .report_incident_with_key(&harry, ReportIncident::new("Boggart"), "lost")
        .await
        .assert_status(201);
    let retry = app
        .report_incident_with_key(&harry, ReportIncident::new("Boggart"), "lost")
        .await;

    assert_eq!(answer(&retry), answer(&first));
    assert_eq!(accepted_reports_titled(&app, "Boggart").await, 1);
    // The answer names the offset of the copy that counts.
    let event = app.event_at(first.event_offset()).await;
    assert!(matches!(event.payload, EventPayload::IncidentCreated(_)));
    app.stop().await;
}

#[tokio::test]
async fn a_command_without_a_key_whose_answer_was_lost_is_confirmed_from_the_log() {
    let app = TestApp::spawn().await;
    let harry = app.user(Role::Student).await;
    app.faults.lose_next_append_answers(1);

    app.report_incident(&harry, ReportIncident::new("Peeves"))
        .await
        .assert_status(201);

    assert_eq!(accepted_reports_titled(&app, "Peeves").await, 1);
    app.stop().await;
}

async fn a_restarted_service_still_recognises_a_key(backend: &TestBackend) {
    let app = TestApp::builder().on(backend).spawn().await;
    let harry = app.user(Role::Student).await;
    let first = app
        .report_incident_with_key(&harry, ReportIncident::new("Norbert"), "before-restart")
        .await
        .assert_status(201);

    let app = app.stop().await.restart().await;
    let retry = app
        .report_incident_with_key(&harry, ReportIncident::new("Norbert"), "before-restart")
        .await;

    assert_eq!(answer(&retry), answer(&first));
    assert_eq!(accepted_reports_titled(&app, "Norbert").await, 1);
    app.stop().await;
}

/// Appends the event at `offset` again, as a late original or a re-sent
/// copy would land; returns it and the copy's offset.
async fn append_a_copy_of_the_event_at(app: &TestApp, offset: u64) -> (Event, u64) {
    let original = app.event_at(offset).await;
    let offsets = app
        .log()
        .await
        .append(Topic::IncidentEvents, &[original.to_log_message()])
        .await
        .unwrap();
    (original, offsets[0])
}

async fn a_copy_of_an_accepted_event_on_the_log_changes_no_reader(backend: &TestBackend) {
    let app = TestApp::builder().on(backend).spawn().await;
    let hermione = app.user(Role::Prefect).await;
    let troll = app.reported(&hermione, ReportIncident::new("Troll")).await;
    let commented = app
        .comment(&hermione, troll.id, "Found it")
        .await
        .assert_status(201);
    // The original of a command whose answer was lost lands late, after
    // its re-sent copy: the log holds the comment twice.
    let (original, copied_at) = append_a_copy_of_the_event_at(&app, commented.event_offset()).await;

    let after = app
        .comments(&hermione, troll.id, &format!("minOffset={copied_at}"))
        .await
        .assert_status(200);
    assert_eq!(after.body["items"].as_array().unwrap().len(), 1);
    app.write_model.sync().await.unwrap();
    assert_eq!(
        app.write_model.accepted_offset(original.event_id),
        Some(commented.event_offset()),
        "the write model voids the copy too"
    );

    // The same for an event that claims a version.
    let raised = app
        .change_severity(&hermione, troll.id, Severity::High)
        .await
        .assert_status(200);
    let (_, copied_at) = append_a_copy_of_the_event_at(&app, raised.event_offset()).await;
    let incident = app
        .get_incident_as_of(&hermione, troll.id, copied_at)
        .await
        .assert_status(200);
    assert_eq!(incident.body["version"], 2);
    assert_eq!(
        app.write_model.incident(troll.id).unwrap().version,
        2,
        "the write model voids the copy too"
    );
    app.stop().await;
}

marauders_testkit::on_both_backends!(
    the_same_key_twice_reports_once_with_the_same_answer,
    every_command_retried_with_its_key_takes_effect_once,
    the_same_key_with_another_request_is_422,
    ten_concurrent_requests_with_one_key_take_effect_once,
    keys_are_per_user,
    a_report_whose_answer_was_lost_takes_effect_once,
    a_restarted_service_still_recognises_a_key,
    a_copy_of_an_accepted_event_on_the_log_changes_no_reader,
);

#[tokio::test]
async fn a_key_derives_the_ids_of_what_the_command_creates() {
    let app = TestApp::spawn().await;
    let harry = app.user(Role::Student).await;
    let key = IdempotencyKey::parse("derive-me").unwrap();

    let troll = app
        .report_incident_with_key(&harry, ReportIncident::new("Troll"), "derive-me")
        .await
        .assert_status(201);
    let comment = app
        .request_with_key(
            Method::POST,
            &harry,
            &format!("/api/incidents/{}/comments", troll.id()),
            Some(json!({"body": "Here"})),
            "comment-key",
        )
        .await
        .assert_status(201);

    assert_eq!(troll.id(), derived_incident_id(harry.id, &key));
    assert_eq!(
        comment.id(),
        derived_comment_id(harry.id, &IdempotencyKey::parse("comment-key").unwrap())
    );
    let event = app.event_at(troll.event_offset()).await;
    let record = event.idempotency.expect("the key travels with the event");
    assert_eq!(record.key, "derive-me");
    assert!(
        record.fingerprint.starts_with("sha256:"),
        "{}",
        record.fingerprint
    );
    app.stop().await;
}

#[tokio::test]
async fn the_quoted_form_of_a_key_is_the_same_key() {
    let app = TestApp::spawn().await;
    let harry = app.user(Role::Student).await;
    let plain = app
        .report_incident_with_key(&harry, ReportIncident::new("Troll"), "abc-123")
        .await
        .assert_status(201);

    let quoted = app
        .report_incident_with_key(&harry, ReportIncident::new("Troll"), "\"abc-123\"")
        .await;

    assert_eq!(answer(&quoted), answer(&plain));
    app.stop().await;
}

#[tokio::test]
async fn a_key_that_is_empty_too_long_or_not_visible_ascii_is_400_naming_the_header() {
    let app = TestApp::spawn().await;
    let harry = app.user(Role::Student).await;
    let too_long = "k".repeat(256);

    for bad in ["", "\"\"", "with space", &too_long, "\"unclosed"] {
        let response = app
            .report_incident_with_key(&harry, ReportIncident::new("Troll"), bad)
            .await
            .assert_error(400, "bad_request");
        assert!(
            response.body["error"]["fields"]["Idempotency-Key"].is_string(),
            "{bad:?}: {}",
            response.body
        );
    }
    assert!(
        accepted_events(&app).await.is_empty(),
        "nothing was appended"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_command_that_changed_nothing_is_decided_again_on_retry() {
    let app = TestApp::spawn().await;
    let (hermione, percy) = (app.user(Role::Prefect).await, app.user(Role::Prefect).await);
    let troll = app.reported(&hermione, ReportIncident::new("Troll")).await;
    let set_title = json!({"title": "Troll"});
    let path = format!("/api/incidents/{}", troll.id);
    // The title is already "Troll": nothing to append, nothing remembered.
    let unchanged = app
        .request_with_key(
            Method::PUT,
            &hermione,
            &path,
            Some(set_title.clone()),
            "title",
        )
        .await
        .assert_status(200);
    assert_eq!(unchanged.offset, Some(troll.offset));
    app.update(&percy, troll.id, json!({"title": "Two trolls"}))
        .await
        .assert_status(200);

    let retried = app
        .request_with_key(Method::PUT, &hermione, &path, Some(set_title), "title")
        .await
        .assert_status(200);

    assert_eq!(
        retried.body["title"], "Troll",
        "decided again, on today's state"
    );
    assert_eq!(retried.body["version"], 3);
    app.stop().await;
}

#[tokio::test]
async fn a_keyed_event_carries_the_time_its_decision_saw() {
    let app = TestApp::spawn().await;
    let harry = app.user(Role::Student).await;

    let troll = app
        .report_incident_with_key(&harry, ReportIncident::new("Troll"), "clock")
        .await
        .assert_status(201);

    let event = app.event_at(troll.event_offset()).await;
    let EventPayload::IncidentCreated(created) = &event.payload else {
        panic!("{event:?}")
    };
    assert_eq!(event.timestamp, created.created_at, "one clock per command");
    let raise = app
        .change_severity(&harry, troll.id(), Severity::Critical)
        .await
        .assert_status(200);
    let raised = app.event_at(raise.event_offset()).await;
    assert_eq!(
        raise.body["updatedAt"].as_str().map(str::to_owned),
        Some(
            serde_json::to_value(raised.timestamp)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        )
    );
    app.stop().await;
}

#[tokio::test]
async fn incidents_list_newest_first_by_where_they_were_created_even_with_derived_ids() {
    let app = TestApp::spawn().await;
    let harry = app.user(Role::Student).await;
    let mut offsets = Vec::new();
    for n in 0..5 {
        // Derived ids are name-based: their order says nothing.
        let reported = app
            .report_incident_with_key(
                &harry,
                ReportIncident::new(&format!("Incident {n}")),
                &Uuid::new_v4().to_string(),
            )
            .await
            .assert_status(201);
        offsets.push(reported.event_offset());
    }

    let first = app
        .list_incidents(&harry, &format!("limit=3&minOffset={}", offsets[4]))
        .await
        .assert_status(200);
    let titles = |page: &ApiResponse| -> Vec<String> {
        page.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["title"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(titles(&first), ["Incident 4", "Incident 3", "Incident 2"]);
    let cursor = first.body["nextCursor"].as_str().unwrap().to_owned();
    let second = app
        .list_incidents(&harry, &format!("limit=3&cursor={cursor}"))
        .await
        .assert_status(200);
    assert_eq!(titles(&second), ["Incident 1", "Incident 0"]);
    assert!(second.body["nextCursor"].is_null());
    app.list_incidents(&harry, "cursor=not-a-cursor")
        .await
        .assert_error(400, "bad_request");
    app.stop().await;
}
