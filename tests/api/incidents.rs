//! The write side over HTTP, against a real service, database and log:
//! each command's happy path, each rule's answer (status, code, `rule`),
//! the events appended (and that a rejected command appends nothing), and
//! races between conflicting commands — in one instance and across two.
//!
//! Which rule refuses what is specified in `core/tests/incident_rules.rs`;
//! here, that each reaches the client as its status and named rule.

use marauders_map::domain::{Role, Severity};
use marauders_map::events::EventPayload;
use marauders_map::incident::{IncidentFold, Rejection};
use marauders_map::log::Topic;
use marauders_testkit::{ApiResponse, ReportIncident, Reported, TestApp, TestUser};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

fn troll() -> Value {
    json!({"title": "Troll in the dungeon", "description": "Thought you ought to know", "severity": "HIGH", "location": "DUNGEONS"})
}

/// An app, a STUDENT who reported the troll, and the troll.
async fn app_with_a_reported_troll() -> (TestApp, TestUser, Reported) {
    let app = TestApp::spawn().await;
    let reporter = app.user_named("hermione", Role::Student).await;
    let response = app
        .report_incident(&reporter, troll())
        .await
        .assert_status(201);
    let troll = Reported {
        id: response.id(),
        offset: response.event_offset(),
        body: response.body,
    };
    (app, reporter, troll)
}

// ---- report -------------------------------------------------------------------

#[tokio::test]
async fn reporting_appends_incident_created_and_answers_with_the_incident_and_its_offset() {
    let app = TestApp::spawn().await;
    let harry = app.user(Role::Student).await;

    let answer = app
        .report_incident(&harry, troll())
        .await
        .assert_status(201);

    assert_eq!(answer.body["title"], "Troll in the dungeon");
    assert_eq!(answer.body["severity"], "HIGH");
    assert_eq!(answer.body["location"], "DUNGEONS");
    assert_eq!(answer.body["status"], "OPEN");
    assert_eq!(answer.body["reportedBy"], harry.id.to_string());
    for field in ["assignedTo", "resolvedBy", "resolution", "resolvedAt"] {
        assert_eq!(answer.body[field], Value::Null, "{field}");
    }
    let event = app.event_at(answer.event_offset()).await;
    assert_eq!(event.user_id, Some(harry.id));
    let EventPayload::IncidentCreated(created) = event.payload else {
        panic!("{event:?}")
    };
    assert_eq!(created.id, answer.id());
    assert_eq!(created.version, 1);
    assert_eq!(
        created.description.as_deref(),
        Some("Thought you ought to know")
    );
    app.stop().await;
}

#[tokio::test]
async fn an_invalid_report_names_each_bad_field() {
    let app = TestApp::spawn().await;
    let ron = app.user(Role::Student).await;

    let answer = app
        .report_incident(
            &ron,
            json!({"title": " ", "severity": "APOCALYPTIC", "location": "MORDOR"}),
        )
        .await
        .assert_error(400, "bad_request");

    assert_eq!(answer.field_error("title"), Some("title must not be empty"));
    assert_eq!(
        answer.field_error("severity"),
        Some("'APOCALYPTIC' is not a valid severity; expected one of LOW, MEDIUM, HIGH, CRITICAL")
    );
    assert!(
        answer
            .field_error("location")
            .unwrap()
            .starts_with("'MORDOR' is not a valid location")
    );
    app.stop().await;
}

#[tokio::test]
async fn a_report_without_a_severity_says_it_is_required() {
    let app = TestApp::spawn().await;
    let ron = app.user(Role::Student).await;

    let answer = app
        .report_incident(&ron, json!({}))
        .await
        .assert_status(400);

    assert_eq!(answer.field_error("severity"), Some("severity is required"));
    app.stop().await;
}

#[tokio::test]
async fn a_report_with_a_title_over_200_characters_is_refused() {
    let app = TestApp::spawn().await;
    let ron = app.user(Role::Student).await;

    let answer = app
        .report_incident(&ron, ReportIncident::new(&"x".repeat(201)))
        .await
        .assert_status(400);

    assert_eq!(
        answer.field_error("title"),
        Some("title must be at most 200 characters")
    );
    app.stop().await;
}

#[tokio::test]
async fn a_report_with_control_characters_is_refused() {
    let app = TestApp::spawn().await;
    let ron = app.user(Role::Student).await;

    // A NUL would stall every projector (PostgreSQL text cannot hold it).
    let answer = app
        .report_incident(
            &ron,
            ReportIncident::new("Troll\u{0}").description("a\u{0}b"),
        )
        .await
        .assert_status(400);

    assert_eq!(
        answer.field_error("title"),
        Some("title must not contain control characters")
    );
    assert_eq!(
        answer.field_error("description"),
        Some("description must not contain control characters")
    );
    app.stop().await;
}

#[tokio::test]
async fn a_report_without_an_access_token_is_401() {
    let app = TestApp::spawn().await;

    app.post("/api/incidents", troll()).await.assert_status(401);
    app.stop().await;
}

#[tokio::test]
async fn an_invalid_report_appends_nothing() {
    let app = TestApp::spawn().await;
    let ron = app.user(Role::Student).await;

    for invalid in [
        json!({}),
        json!({"title": " ", "severity": "LOW", "location": "LIBRARY"}),
        ReportIncident::new("Troll\u{0}").into(),
    ] {
        app.report_incident(&ron, invalid).await.assert_status(400);
    }
    app.post("/api/incidents", troll()).await.assert_status(401);

    assert_eq!(app.log_end(Topic::IncidentEvents).await, 0);
    app.stop().await;
}

// ---- update -------------------------------------------------------------------

#[tokio::test]
async fn an_update_appends_only_the_fields_that_changed() {
    let (app, reporter, troll) = app_with_a_reported_troll().await;

    let answer = app
        .update(
            &reporter,
            troll.id,
            json!({"title": "Troll in the girls' bathroom", "location": "DUNGEONS"}),
        )
        .await
        .assert_status(200);

    assert_eq!(answer.body["title"], "Troll in the girls' bathroom");
    let data = app.event_at(answer.event_offset()).await.to_envelope().data;
    assert_eq!(
        data,
        json!({"id": troll.id, "version": 2, "title": "Troll in the girls' bathroom"}),
        "location did not change"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_update_by_a_student_who_did_not_report_it_is_403_update_needs_reporter_or_staff() {
    let (app, _, troll) = app_with_a_reported_troll().await;
    let crabbe = app.user(Role::Student).await;

    app.update(&crabbe, troll.id, json!({"title": "mine now"}))
        .await
        .assert_rejected(403, Rejection::UpdateNeedsReporterOrStaff)
        .assert_error(403, "forbidden");

    assert_eq!(
        app.log_end(Topic::IncidentEvents).await,
        1,
        "nothing appended"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_prefect_may_assign_an_incident_and_unassign_it_with_null() {
    let (app, _, troll) = app_with_a_reported_troll().await;
    let percy = app.user(Role::Prefect).await;

    let assigned = app
        .update(
            &percy,
            troll.id,
            json!({"status": "INVESTIGATING", "assignedTo": percy.id}),
        )
        .await
        .assert_status(200);
    assert_eq!(assigned.body["assignedTo"], percy.id.to_string());
    assert_eq!(assigned.body["status"], "INVESTIGATING");

    let unassigned = app
        .update(&percy, troll.id, json!({"assignedTo": null}))
        .await
        .assert_status(200);
    assert_eq!(unassigned.body["assignedTo"], Value::Null);
    app.stop().await;
}

#[tokio::test]
async fn clearing_a_description_with_null_or_an_empty_string_appends_one_event_that_says_so() {
    let app = TestApp::spawn().await;
    let harry = app.user(Role::Student).await;
    for cleared in [Value::Null, json!(""), json!("   ")] {
        let troll = app
            .reported(
                &harry,
                ReportIncident::new("Troll").description("Big, grey, smelly"),
            )
            .await;

        let answer = app
            .update(&harry, troll.id, json!({ "description": cleared }))
            .await
            .assert_status(200);

        assert_eq!(answer.body["description"], Value::Null);
        let data = app.event_at(answer.event_offset()).await.to_envelope().data;
        assert_eq!(
            data,
            json!({"id": troll.id, "version": 2, "description": null}),
            "cleared with {cleared}"
        );
        let read = app
            .get_incident_as_of(&harry, troll.id, answer.event_offset())
            .await
            .assert_status(200);
        assert_eq!(read.body["description"], Value::Null, "the read model too");

        // Clearing it again changes nothing.
        let again = app
            .update(&harry, troll.id, json!({ "description": null }))
            .await
            .assert_status(200);
        assert_eq!(again.offset, Some(answer.event_offset()));
    }
    app.stop().await;
}

#[tokio::test]
async fn an_update_that_changes_nothing_answers_200_with_the_latest_offset_and_appends_nothing() {
    let (app, reporter, troll) = app_with_a_reported_troll().await;

    let answer = app
        .update(&reporter, troll.id, json!({"status": "OPEN"}))
        .await
        .assert_status(200);

    assert_eq!(
        answer.offset,
        Some(troll.offset),
        "the incident's latest event"
    );
    assert_eq!(
        app.log_end(Topic::IncidentEvents).await,
        1,
        "nothing appended"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_update_to_status_resolved_is_a_400_that_points_to_resolve() {
    let (app, reporter, troll) = app_with_a_reported_troll().await;

    let answer = app
        .update(&reporter, troll.id, json!({"status": "RESOLVED"}))
        .await
        .assert_status(400);

    assert_eq!(
        answer.field_error("status"),
        Some("use PATCH /api/incidents/{id}/resolve to resolve")
    );
    assert_eq!(
        app.log_end(Topic::IncidentEvents).await,
        1,
        "nothing appended"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_update_with_nothing_to_change_is_a_400() {
    let (app, reporter, troll) = app_with_a_reported_troll().await;

    app.update(&reporter, troll.id, json!({}))
        .await
        .assert_error(400, "bad_request");

    assert_eq!(
        app.log_end(Topic::IncidentEvents).await,
        1,
        "nothing appended"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_update_setting_a_title_location_or_status_to_null_is_a_400_naming_it() {
    let (app, reporter, troll) = app_with_a_reported_troll().await;

    for field in ["title", "location", "status"] {
        let answer = app
            .update(&reporter, troll.id, json!({ field: null }))
            .await
            .assert_error(400, "bad_request");
        assert_eq!(
            answer.field_error(field),
            Some(format!("{field} cannot be null; leave it out to keep it").as_str())
        );
    }
    assert_eq!(
        app.log_end(Topic::IncidentEvents).await,
        1,
        "nothing appended"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_update_of_a_resolved_incident_is_409_resolved_cannot_be_updated() {
    let (app, reporter, troll) = app_with_a_reported_troll().await;
    app.resolve(&reporter, troll.id, "Wingardium leviosa")
        .await
        .assert_status(200);

    app.update(&reporter, troll.id, json!({"status": "OPEN"}))
        .await
        .assert_rejected(409, Rejection::ResolvedCannotBeUpdated);
    app.stop().await;
}

// ---- resolve ------------------------------------------------------------------

#[tokio::test]
async fn resolving_answers_with_the_resolver_the_resolution_and_the_time() {
    let (app, reporter, troll) = app_with_a_reported_troll().await;

    let answer = app
        .resolve(&reporter, troll.id, "Wingardium leviosa")
        .await
        .assert_status(200);

    assert_eq!(answer.body["status"], "RESOLVED");
    assert_eq!(answer.body["resolvedBy"], reporter.id.to_string());
    assert_eq!(answer.body["resolution"], "Wingardium leviosa");
    assert!(answer.body["resolvedAt"].is_string());
    assert!(matches!(
        app.event_at(answer.event_offset()).await.payload,
        EventPayload::IncidentResolved(_)
    ));
    app.stop().await;
}

#[tokio::test]
async fn resolving_a_resolved_incident_is_409_already_resolved() {
    let (app, reporter, troll) = app_with_a_reported_troll().await;
    app.resolve(&reporter, troll.id, "Wingardium leviosa")
        .await
        .assert_status(200);

    app.resolve(&reporter, troll.id, "again")
        .await
        .assert_rejected(409, Rejection::AlreadyResolved)
        .assert_error(409, "conflict");
    app.stop().await;
}

#[tokio::test]
async fn a_resolve_by_a_student_who_did_not_report_it_is_403_resolve_needs_reporter_or_staff() {
    let (app, _, troll) = app_with_a_reported_troll().await;
    let neville = app.user(Role::Student).await;

    app.resolve(&neville, troll.id, "Mine")
        .await
        .assert_rejected(403, Rejection::ResolveNeedsReporterOrStaff);
    app.stop().await;
}

#[tokio::test]
async fn a_resolution_must_not_be_empty() {
    let (app, reporter, troll) = app_with_a_reported_troll().await;

    let answer = app
        .resolve(&reporter, troll.id, "")
        .await
        .assert_status(400);

    assert_eq!(
        answer.field_error("resolution"),
        Some("resolution must not be empty")
    );
    app.stop().await;
}

// ---- severity -----------------------------------------------------------------

#[tokio::test]
async fn anyone_may_raise_a_severity_and_the_event_has_old_and_new() {
    let (app, _, troll) = app_with_a_reported_troll().await;
    let dean = app.user(Role::Student).await;

    let answer = app
        .change_severity(&dean, troll.id, Severity::Critical)
        .await
        .assert_status(200);

    assert_eq!(answer.body["severity"], "CRITICAL");
    let data = app.event_at(answer.event_offset()).await.to_envelope().data;
    assert_eq!(
        (data["oldSeverity"].as_str(), data["newSeverity"].as_str()),
        (Some("HIGH"), Some("CRITICAL"))
    );
    app.stop().await;
}

#[tokio::test]
async fn a_student_lowering_a_severity_is_403_lowering_severity_needs_staff() {
    let (app, reporter, troll) = app_with_a_reported_troll().await;

    app.change_severity(&reporter, troll.id, Severity::Low)
        .await
        .assert_rejected(403, Rejection::LoweringSeverityNeedsStaff);
    app.stop().await;
}

#[tokio::test]
async fn a_prefect_may_lower_a_severity() {
    let (app, _, troll) = app_with_a_reported_troll().await;
    let penelope = app.user(Role::Prefect).await;

    let answer = app
        .change_severity(&penelope, troll.id, Severity::Low)
        .await
        .assert_status(200);

    assert_eq!(answer.body["severity"], "LOW");
    app.stop().await;
}

#[tokio::test]
async fn a_severity_change_on_a_resolved_incident_is_409_resolved_severity_is_final() {
    let (app, reporter, troll) = app_with_a_reported_troll().await;
    app.resolve(&reporter, troll.id, "Wingardium leviosa")
        .await
        .assert_status(200);

    app.change_severity(&reporter, troll.id, Severity::Critical)
        .await
        .assert_rejected(409, Rejection::ResolvedSeverityIsFinal);
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_severity_is_a_400() {
    let (app, reporter, troll) = app_with_a_reported_troll().await;

    app.request_as(
        Method::PATCH,
        &reporter,
        &format!("/api/incidents/{}/severity", troll.id),
        Some(json!({"severity": "lowish"})),
    )
    .await
    .assert_error(400, "bad_request");
    app.stop().await;
}

// ---- delete -------------------------------------------------------------------

#[tokio::test]
async fn a_delete_by_a_prefect_who_did_not_report_it_is_403_delete_needs_reporter_or_professor() {
    let (app, _, troll) = app_with_a_reported_troll().await;
    let percy = app.user(Role::Prefect).await;

    app.delete(&percy, troll.id)
        .await
        .assert_rejected(403, Rejection::DeleteNeedsReporterOrProfessor);
    app.stop().await;
}

#[tokio::test]
async fn the_reporter_may_delete_and_gets_204_with_the_events_offset() {
    let (app, reporter, troll) = app_with_a_reported_troll().await;

    let answer = app.delete(&reporter, troll.id).await.assert_status(204);

    assert_eq!(answer.body, Value::Null);
    assert!(matches!(
        app.event_at(answer.event_offset()).await.payload,
        EventPayload::IncidentDeleted(_)
    ));
    app.stop().await;
}

#[tokio::test]
async fn a_professor_may_delete_anyones_incident() {
    let (app, _, troll) = app_with_a_reported_troll().await;
    let minerva = app.user(Role::Professor).await;

    app.delete(&minerva, troll.id).await.assert_status(204);
    app.stop().await;
}

#[tokio::test]
async fn every_command_on_a_deleted_incident_is_404_not_found() {
    let (app, reporter, troll) = app_with_a_reported_troll().await;
    app.delete(&reporter, troll.id).await.assert_status(204);

    for answer in [
        app.update(&reporter, troll.id, json!({"title": "back"}))
            .await,
        app.resolve(&reporter, troll.id, "r").await,
        app.comment(&reporter, troll.id, "hello?").await,
        app.delete(&reporter, troll.id).await,
    ] {
        answer.assert_rejected(404, Rejection::NotFound);
    }
    app.stop().await;
}

// ---- comments -----------------------------------------------------------------

#[tokio::test]
async fn a_comment_is_appended_with_its_incident_id_and_no_version() {
    let (app, _, troll) = app_with_a_reported_troll().await;
    let ginny = app.user(Role::Student).await;

    let answer = app
        .comment(&ginny, troll.id, "I saw it too")
        .await
        .assert_status(201);

    assert_eq!(answer.body["incidentId"], troll.id.to_string());
    assert_eq!(answer.body["authorId"], ginny.id.to_string());
    assert_eq!(answer.body["body"], "I saw it too");
    let EventPayload::CommentAdded(comment) = app.event_at(answer.event_offset()).await.payload
    else {
        panic!("not a comment")
    };
    assert_eq!(
        (comment.id, comment.version),
        (answer.id(), None),
        "a comment commutes: it claims no version"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_comment_must_not_be_empty() {
    let (app, reporter, troll) = app_with_a_reported_troll().await;

    let answer = app
        .comment(&reporter, troll.id, "   ")
        .await
        .assert_status(400);

    assert_eq!(answer.field_error("body"), Some("body must not be empty"));
    app.stop().await;
}

// ---- ids ----------------------------------------------------------------------

#[tokio::test]
async fn a_command_on_an_unknown_incident_is_404_not_found() {
    let app = TestApp::spawn().await;
    let dobby = app.user(Role::Student).await;

    app.update(&dobby, Uuid::now_v7(), json!({"title": "t"}))
        .await
        .assert_rejected(404, Rejection::NotFound)
        .assert_error(404, "not_found");
    app.stop().await;
}

#[tokio::test]
async fn an_id_that_is_not_a_uuid_names_no_incident_and_is_404() {
    let app = TestApp::spawn().await;
    let dobby = app.user(Role::Student).await;

    for id in ["not-a-uuid", "42"] {
        app.update(&dobby, id, json!({"title": "t"}))
            .await
            .assert_error(404, "not_found");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_path_that_is_not_even_utf8_keeps_the_json_error_shape() {
    let app = TestApp::spawn().await;
    let dobby = app.user(Role::Student).await;

    app.delete(&dobby, "%FF")
        .await
        .assert_error(400, "bad_request");
    app.stop().await;
}

// ---- races --------------------------------------------------------------------

/// Folds the whole log from scratch, as a new projector would.
async fn fold_of_the_log(app: &TestApp) -> IncidentFold {
    let mut fold = IncidentFold::default();
    for event in app.events(Topic::IncidentEvents).await {
        fold.apply(&event);
    }
    fold
}

/// Resolves `id` on both apps at once; the statuses, sorted.
async fn race_two_resolves(
    first: &TestApp,
    second: &TestApp,
    who: &TestUser,
    id: Uuid,
) -> Vec<u16> {
    let (a, b) = tokio::join!(
        first.resolve(who, id, "Expelliarmus"),
        second.resolve(who, id, "Stupefy"),
    );
    let mut statuses = vec![a.status.as_u16(), b.status.as_u16()];
    statuses.sort();
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_racing_resolves_in_one_instance_exactly_one_wins() {
    let app = TestApp::spawn().await;
    let cedric = app.user(Role::Prefect).await;
    for _ in 0..5 {
        let incident = app.reported(&cedric, ReportIncident::new("Dragon")).await;
        assert_eq!(
            race_two_resolves(&app, &app, &cedric, incident.id).await,
            [200, 409]
        );
    }
    assert_eq!(app.write_model.fold(), fold_of_the_log(&app).await);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_racing_resolves_on_two_instances_exactly_one_wins() {
    let first = TestApp::spawn().await;
    let second = first.second_instance().await;
    let viktor = first.user(Role::Prefect).await;
    for _ in 0..5 {
        let incident = first.reported(&viktor, ReportIncident::new("Dragon")).await;
        assert_eq!(
            race_two_resolves(&first, &second, &viktor, incident.id).await,
            [200, 409]
        );
    }
    second.stop().await;
    first.stop().await;
}

/// Comments on `id` through both apps at once.
async fn race_two_comments(
    first: &TestApp,
    second: &TestApp,
    who: &TestUser,
    id: Uuid,
) -> [ApiResponse; 2] {
    let (a, b) = tokio::join!(
        first.comment(who, id, "from the first"),
        second.comment(who, id, "from the second"),
    );
    [a, b]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_comments_at_once_on_two_instances_both_succeed() {
    let first = TestApp::spawn().await;
    let second = first.second_instance().await;
    let viktor = first.user(Role::Prefect).await;
    for _ in 0..5 {
        let incident = first.reported(&viktor, ReportIncident::new("Dragon")).await;
        let answers = race_two_comments(&first, &second, &viktor, incident.id).await;
        for answer in answers {
            answer.assert_status(201);
        }
        let newest = first.log_end(Topic::IncidentEvents).await - 1;
        let comments = first
            .comments(&viktor, incident.id, &format!("minOffset={newest}"))
            .await
            .assert_status(200);
        assert_eq!(
            comments.body["items"].as_array().map(Vec::len),
            Some(2),
            "both comments are there: {:?}",
            comments.body
        );
    }
    second.stop().await;
    first.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_races_on_two_instances_both_write_models_agree_with_the_log() {
    let first = TestApp::spawn().await;
    let second = first.second_instance().await;
    let viktor = first.user(Role::Prefect).await;
    for _ in 0..5 {
        let incident = first.reported(&viktor, ReportIncident::new("Dragon")).await;
        race_two_resolves(&first, &second, &viktor, incident.id).await;
        race_two_comments(&first, &second, &viktor, incident.id).await;
    }

    first.write_model.sync().await.unwrap();
    let truth = fold_of_the_log(&first).await;
    first.assert_write_model_agrees(&truth, "instance 1").await;
    second.assert_write_model_agrees(&truth, "instance 2").await;
    second.stop().await;
    first.stop().await;
}
