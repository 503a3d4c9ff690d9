//! Group commit (`src/commands/group_commit.rs`): the events of commands
//! decided while an append is in flight share the next append; a command
//! on an incident whose previous event is still unconfirmed waits for it;
//! racing instances still leave exactly one winner per version.

use std::collections::HashSet;

use marauders_map::domain::{Role, Severity};
use marauders_map::events::{Event, EventPayload};
use marauders_map::incident::{FoldOutcome, IncidentFold, Rule, incident_and_version};
use marauders_map::log::Topic;
use marauders_testkit::{EVENTUALLY, ReportIncident, TestApp, TestBackend, TestUser, eventually};
use uuid::Uuid;

async fn group_commit_counts(app: &TestApp) -> (f64, f64) {
    (
        app.metric("marauders_group_commit_appends_total").await,
        app.metric("marauders_group_commit_events_total").await,
    )
}

async fn events_queued(app: &TestApp, count: f64, what: &str) {
    eventually(what, EVENTUALLY, || async {
        (app.metric("marauders_group_commit_queued").await == count).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_decided_while_an_append_is_held_share_one_append() {
    let app = TestApp::spawn().await;
    let harry = app.user(Role::Student).await;
    let before = group_commit_counts(&app).await;

    app.faults.hold_appends();
    {
        let reports = futures::future::join_all((0..5).map(|n| {
            app.report_incident(&harry, ReportIncident::new(&format!("Pixie number {n}")))
        }));
        tokio::pin!(reports);
        let queued = events_queued(&app, 5.0, "five reports wait for one append");
        tokio::select! {
            biased;
            () = queued => {}
            answers = &mut reports => panic!("the reports were answered while appends were held: {answers:?}"),
        }
        app.faults.release_appends();
        let offsets: Vec<u64> = reports
            .await
            .into_iter()
            .map(|answer| answer.assert_status(201).offset.expect("Event-Offset"))
            .collect();

        let after = group_commit_counts(&app).await;
        assert_eq!(after.0 - before.0, 1.0, "one append");
        assert_eq!(after.1 - before.1, 5.0, "for all five events");
        let distinct: HashSet<u64> = offsets.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            5,
            "each report has its own offset: {offsets:?}"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_on_an_incident_with_an_unconfirmed_event_waits_and_is_decided_on_the_confirmed_state()
 {
    let app = TestApp::spawn().await;
    let (percy, penelope) = (app.user(Role::Prefect).await, app.user(Role::Prefect).await);
    let troll = app.reported(&percy, ReportIncident::new("Troll")).await;

    app.faults.hold_appends();
    let first = app.change_severity(&percy, troll.id, Severity::High);
    let second = async {
        events_queued(&app, 1.0, "the first change waits for its append").await;
        let second = app.change_severity(&penelope, troll.id, Severity::High);
        tokio::pin!(second);
        let waiting = eventually(
            "the second change waits for the first",
            EVENTUALLY,
            || async {
                (app.metric("marauders_commands_waiting_for_incident").await == 1.0).then_some(())
            },
        );
        tokio::select! {
            biased;
            () = waiting => {}
            answer = &mut second => panic!("the second change was answered while the first was unconfirmed: {answer:?}"),
        }
        // Waiting means not decided: nothing more was handed to the log.
        assert_eq!(app.metric("marauders_group_commit_queued").await, 1.0);
        app.faults.release_appends();
        second.await
    };
    let (first, second) = tokio::join!(first, second);

    let first = first.assert_status(200);
    assert_eq!(first.body["version"], 2);
    // Decided on the confirmed state, where the severity already is HIGH:
    // nothing to change, and no event — not a second event, and not a lost
    // race against an event it could not see.
    let second = second.assert_status(200);
    assert_eq!(second.body["version"], 2);
    assert_eq!(second.body["severity"], "HIGH");
    let changes = app
        .events(Topic::IncidentEvents)
        .await
        .into_iter()
        .filter(|event| {
            !matches!(event.payload, EventPayload::IncidentCreated(_))
                && incident_and_version(&event.payload).is_some_and(|(id, _)| id == troll.id)
        })
        .count();
    assert_eq!(changes, 1, "one event for the two changes");
    app.stop().await;
}

/// How many commands each client sends in the hammering test.
const COMMANDS_PER_CLIENT: usize = 12;
const CLIENTS_PER_INSTANCE: usize = 4;
const INCIDENTS: usize = 3;

/// A state change or a comment on one of `incidents`, picked by `n`: its
/// status, and for a success the offset it names (its event's, or for a
/// change that changed nothing the incident's latest).
async fn one_command(
    app: &TestApp,
    who: &TestUser,
    incidents: &[Uuid],
    n: usize,
) -> (u16, Option<u64>) {
    let id = incidents[n % incidents.len()];
    let severities = [Severity::Low, Severity::Medium, Severity::High];
    let answer = match n % 3 {
        0 => app.change_severity(who, id, severities[(n / 3) % 3]).await,
        1 => app.comment(who, id, &format!("comment {n}")).await,
        _ => {
            app.update(
                who,
                id,
                serde_json::json!({ "description": format!("seen at {n}") }),
            )
            .await
        }
    };
    let (status, offset) = (answer.status.as_u16(), answer.offset);
    if status == 409 {
        answer.assert_rule(409, Rule::LostRace);
    }
    (status, offset)
}

async fn two_instances_hammering_the_same_incidents_leave_one_winner_per_version(
    backend: &TestBackend,
) {
    let first = TestApp::builder().on(backend).spawn().await;
    let second = first.second_instance().await;
    let percy = first.user(Role::Prefect).await;
    let mut incidents = Vec::new();
    for n in 0..INCIDENTS {
        incidents.push(
            first
                .reported(&percy, ReportIncident::new(&format!("Dungbomb {n}")))
                .await
                .id,
        );
    }
    let created_before = first.log_end(Topic::IncidentEvents).await;

    let clients = (0..CLIENTS_PER_INSTANCE * 2).map(|client| {
        let app = if client % 2 == 0 { &first } else { &second };
        let (percy, incidents) = (&percy, &incidents);
        async move {
            let mut answers = Vec::new();
            for step in 0..COMMANDS_PER_CLIENT {
                answers.push(one_command(app, percy, incidents, client * 7 + step).await);
            }
            answers
        }
    });
    let answers: Vec<(u16, Option<u64>)> = futures::future::join_all(clients)
        .await
        .into_iter()
        .flatten()
        .collect();
    for (status, _) in &answers {
        assert!(
            [200, 201, 409].contains(status),
            "every command is applied, unchanged or a lost race: {status}"
        );
    }
    let answered: HashSet<u64> = answers
        .iter()
        .filter(|(status, _)| *status != 409)
        .map(|(_, offset)| offset.expect("a success names its Event-Offset"))
        .collect();

    // The fold of the log is the truth every reader must agree with.
    let mut truth = IncidentFold::default();
    let mut winners: HashSet<(Uuid, u64)> = HashSet::new();
    let mut accepted: HashSet<u64> = HashSet::new();
    for record in first.records(Topic::IncidentEvents).await {
        let event = Event::decode(&record.payload).expect("the log holds events");
        if truth.apply(&event) != FoldOutcome::Applied {
            continue;
        }
        accepted.insert(record.offset);
        // Comments commute and claim no version; every other event does.
        if let Some(claim) = incident_and_version(&event.payload) {
            assert!(
                winners.insert(claim),
                "one accepted event per version: {claim:?}"
            );
        }
    }
    // What clients were told matches the log both ways: every success
    // names an accepted event, and every accepted change was a success —
    // none was answered 409.
    for offset in &answered {
        assert!(
            accepted.contains(offset),
            "offset {offset} was answered and is accepted"
        );
    }
    for offset in accepted.iter().filter(|offset| **offset >= created_before) {
        assert!(
            answered.contains(offset),
            "the change at {offset} was answered as a success"
        );
    }
    assert!(accepted.len() > INCIDENTS, "some changes took effect");

    first.assert_write_model_agrees(&truth, "instance 1").await;
    second.assert_write_model_agrees(&truth, "instance 2").await;
    // And the read model, once its projector has reached the log's end.
    let end = first.log_end(Topic::IncidentEvents).await;
    for id in &incidents {
        let read = first
            .get_incident_as_of(&percy, id, end - 1)
            .await
            .assert_status(200);
        assert_eq!(
            read.body["version"].as_u64(),
            truth.get(*id).map(|incident| incident.version),
            "the read model agrees with the log on {id}"
        );
    }
    second.stop().await;
    first.stop().await;
}

marauders_testkit::on_both_backends!(
    two_instances_hammering_the_same_incidents_leave_one_winner_per_version,
);
