//! Events are forever: a log written by the code of an earlier version must
//! still fold to the same state.
//!
//! `tests/fixtures/log-v1.jsonl` holds messages of every event type of the
//! catalog as version 1 wrote them — byte for byte, on all three topics,
//! including a lost race, a re-sent duplicate and an out-of-order version.
//! Each line is `{topic, offset, messageId, payload}`, the payload being the
//! exact bytes on the log as a JSON string. `log-v1.expected.json` is what
//! they fold to: the write model's incidents and which event won each
//! version, the read model, comments, notifications and audit log as the
//! API answers them, the online list, and what the replay API returns.
//!
//! The test appends the fixture verbatim to a fresh log (on both backends),
//! runs the real readers — the write model's rebuild, each projector, the
//! presence fold, the queries — and compares. The expected state is
//! contained in what is observed: a later version may add fields, never
//! lose or change one.
//!
//! When a change to the envelope or the catalog breaks this test, the old
//! events must be upcast when read (see ARCHITECTURE.md, "Events are
//! forever"). Never edit the fixture to make it pass; a new shape gets a new
//! fixture beside this one.
//!
//! `log-v2.jsonl` is the second: comments that commute (they claim no
//! version; docs/events.md) — two decided on the same state, one after a
//! resolve, a re-sent copy, one folded after its incident's delete — and a
//! state change that lost its race to the resolve.

use std::collections::BTreeMap;

use bytes::Bytes;
use marauders_map::domain::Role;
use marauders_map::events::Event;
use marauders_map::incident::{Claim, incident_and_claim, incident_and_version};
use marauders_map::log::{EventLog, LogMessage, Topic};
use marauders_map::realtime::presence::OnlineUsers;
use marauders_projections::{
    AuditProjector, NotificationsProjector, Projector, ProjectorRunner, ReadModelProjector,
    StepOutcome,
};
use marauders_testkit::{TestApp, TestBackend, TestDatabase};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

/// A fixture log and what it must fold to.
struct Fixture {
    name: &'static str,
    log: &'static str,
    expected: &'static str,
    /// The online list a new connection sees: the fixture's online users
    /// and the connection itself (display name, role).
    online: &'static [(&'static str, &'static str)],
}

const VERSION_1: Fixture = Fixture {
    name: "log-v1",
    log: include_str!("../fixtures/log-v1.jsonl"),
    expected: include_str!("../fixtures/log-v1.expected.json"),
    online: &[
        ("Harry Potter", "STUDENT"),
        ("Hermione Granger", "PREFECT"),
        ("Minerva McGonagall", "PROFESSOR"),
    ],
};

const VERSION_2: Fixture = Fixture {
    name: "log-v2",
    log: include_str!("../fixtures/log-v2.jsonl"),
    expected: include_str!("../fixtures/log-v2.expected.json"),
    online: &[("Minerva McGonagall", "PROFESSOR")],
};

/// One line of the fixture.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FixtureMessage {
    topic: String,
    offset: u64,
    message_id: Uuid,
    /// The message's bytes, exactly (they are UTF-8 JSON).
    payload: String,
}

fn fixture_messages(fixture: &Fixture) -> Vec<FixtureMessage> {
    fixture
        .log
        .lines()
        .enumerate()
        .map(|(n, line)| {
            serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("{}.jsonl line {}: {error}", fixture.name, n + 1))
        })
        .collect()
}

/// The accounts the fixture's `auth-events` describe, as the identity
/// tables hold them (they are not in the log: the notifications projector
/// finds professors there, the gateway display names and accounts).
const ACCOUNTS: [(&str, &str, &str, Role); 4] = [
    (
        "01930000-0000-7000-8000-00000000b001",
        "harry@hogwarts.edu",
        "Harry Potter",
        Role::Student,
    ),
    (
        "01930000-0000-7000-8000-00000000b002",
        "hermione@hogwarts.edu",
        "Hermione Granger",
        Role::Prefect,
    ),
    (
        "01930000-0000-7000-8000-00000000b003",
        "ron@hogwarts.edu",
        "Ron Weasley",
        Role::Student,
    ),
    (
        "01930000-0000-7000-8000-00000000b004",
        "minerva@hogwarts.edu",
        "Minerva McGonagall",
        Role::Professor,
    ),
];

/// The incidents of the fixture.
const INCIDENTS: [&str; 3] = [
    "01930000-0000-7000-8000-00000000a001",
    "01930000-0000-7000-8000-00000000a002",
    "01930000-0000-7000-8000-00000000a003",
];

const MINERVA: usize = 3;

fn account(n: usize) -> (Uuid, Role) {
    (ACCOUNTS[n].0.parse().unwrap(), ACCOUNTS[n].3)
}

async fn create_accounts(database: &TestDatabase) {
    for (id, email, display_name, role) in ACCOUNTS {
        sqlx::query(
            "INSERT INTO users (id, email, display_name, password_hash, role) VALUES ($1, $2, $3, 'no password: a fixture account', $4)",
        )
        .bind(id.parse::<Uuid>().unwrap())
        .bind(email)
        .bind(display_name)
        .bind(role.as_str())
        .execute(&database.pool)
        .await
        .expect("the account is created");
    }
}

/// Appends every fixture message verbatim, topic by topic, checking each
/// lands at its offset (the log is fresh).
async fn append_fixture(log: &EventLog, fixture: &Fixture) {
    let mut by_topic: BTreeMap<String, Vec<FixtureMessage>> = BTreeMap::new();
    for message in fixture_messages(fixture) {
        by_topic
            .entry(message.topic.clone())
            .or_default()
            .push(message);
    }
    for (topic, messages) in by_topic {
        let topic: Topic = topic.parse().unwrap_or_else(|_| panic!("topic {topic}"));
        let batch: Vec<LogMessage> = messages
            .iter()
            .map(|message| LogMessage {
                id: message.message_id,
                payload: Bytes::from(message.payload.clone()),
            })
            .collect();
        let offsets = log
            .append(topic, &batch)
            .await
            .expect("the fixture is appended");
        let expected: Vec<u64> = messages.iter().map(|message| message.offset).collect();
        assert_eq!(offsets, expected, "{topic} lands at the fixture's offsets");
    }
}

/// Runs `projector` until it has applied the whole topic.
async fn project<P: Projector>(projector: P, app: &TestApp) {
    let runner = ProjectorRunner::new(
        projector,
        app.log().await.clone(),
        app.database.pool.clone(),
    );
    while let StepOutcome::Advanced { .. } = runner.poll_once().await.expect("the projector steps")
    {
    }
}

/// Everything the readers make of the log, as JSON.
async fn observed_state(app: &TestApp) -> Value {
    let minerva = {
        let (id, role) = account(MINERVA);
        app.act_as(id, role)
    };
    let mut state = serde_json::Map::new();

    // The write model, rebuilt from the log when the service started.
    app.write_model
        .sync()
        .await
        .expect("the write model catches up");
    let fold = app.write_model.fold();
    let mut incidents: Vec<_> = fold.incidents().cloned().collect();
    incidents.sort_by_key(|incident| incident.id);
    let mut accepted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut comments: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for record in app.records(Topic::IncidentEvents).await {
        let Ok(event) = Event::decode(&record.payload) else {
            continue;
        };
        if let Some((incident, version)) = incident_and_version(&event.payload)
            && fold.was_accepted(incident, version, event.event_id)
        {
            let versions = accepted.entry(incident.to_string()).or_default();
            if versions.len() as u64 == version - 1 {
                versions.push(event.event_id.to_string());
            }
        }
        if let Some((incident, Claim::Commutes)) = incident_and_claim(&event.payload)
            && fold.was_accepted_as(incident, Claim::Commutes, event.event_id)
        {
            let accepted = comments.entry(incident.to_string()).or_default();
            if !accepted.contains(&event.event_id.to_string()) {
                accepted.push(event.event_id.to_string());
            }
        }
    }
    state.insert(
        "writeModel".into(),
        json!({
            "incidents": incidents,
            "acceptedEventIds": accepted,
            "acceptedCommentEventIds": comments,
        }),
    );

    // The read model, through the queries.
    let list = app
        .list_incidents(&minerva, "limit=100")
        .await
        .assert_status(200);
    let mut by_id = serde_json::Map::new();
    let mut comments = serde_json::Map::new();
    for id in INCIDENTS {
        let incident = app.get_incident(&minerva, id).await;
        by_id.insert(
            id.into(),
            found_or_null(incident.status.as_u16(), incident.body),
        );
        let page = app.comments(&minerva, id, "").await;
        comments.insert(
            id.into(),
            found_or_null(page.status.as_u16(), page.body["items"].clone()),
        );
    }
    state.insert(
        "readModel".into(),
        json!({"list": list.body["items"], "incidents": by_id, "comments": comments}),
    );

    // Notifications, as each user reads them.
    let mut notifications = serde_json::Map::new();
    for n in 0..ACCOUNTS.len() {
        let (id, role) = account(n);
        let theirs = app
            .notifications(&app.act_as(id, role), "")
            .await
            .assert_status(200);
        notifications.insert(
            id.to_string(),
            json!({"items": theirs.body["items"], "unreadCount": theirs.body["unreadCount"]}),
        );
    }
    state.insert("notifications".into(), notifications.into());

    // The audit log.
    let audit = app.audit(&minerva, "limit=100").await.assert_status(200);
    state.insert("audit".into(), audit.body["items"].clone());

    // Presence: the fold every instance makes of presence-events at start.
    let mut online = OnlineUsers::default();
    for record in app.records(Topic::PresenceEvents).await {
        if let Ok(event) = Event::decode(&record.payload) {
            online.apply(&event);
        }
    }
    let presence: Vec<Value> = online
        .users()
        .map(|(user, role)| {
            json!({"userId": user, "role": role, "connections": online.connections_of(user)})
        })
        .collect();
    state.insert("presence".into(), presence.into());

    // The log itself, as the replay API serves it.
    let mut replay = serde_json::Map::new();
    for topic in Topic::ALL {
        let page = app
            .replay(&minerva, &format!("topic={topic}&limit=1000"))
            .await
            .assert_status(200);
        let events: Vec<Value> = page.body["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| {
                json!({
                    "offset": entry["offset"],
                    "eventId": entry["event"]["eventId"],
                    "eventType": entry["event"]["eventType"],
                })
            })
            .collect();
        replay.insert(topic.to_string(), events.into());
    }
    state.insert("replay".into(), replay.into());
    state.into()
}

fn found_or_null(status: u16, body: Value) -> Value {
    match status {
        200 => body,
        404 => Value::Null,
        other => panic!("unexpected {other}: {body}"),
    }
}

/// Where `actual` does not contain `expected`: every expected object key
/// present with a contained value, every expected array as long with
/// contained elements, every other value equal.
fn differences(expected: &Value, actual: &Value, path: &str, found: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(expected), Value::Object(actual)) => {
            for (key, value) in expected {
                match actual.get(key) {
                    Some(actual) => differences(value, actual, &format!("{path}.{key}"), found),
                    None => found.push(format!("{path}.{key}: missing")),
                }
            }
        }
        (Value::Array(expected), Value::Array(actual)) if expected.len() == actual.len() => {
            for (n, (expected, actual)) in expected.iter().zip(actual).enumerate() {
                differences(expected, actual, &format!("{path}[{n}]"), found);
            }
        }
        (expected, actual) if expected != actual => {
            found.push(format!("{path}: expected {expected}, found {actual}"));
        }
        _ => {}
    }
}

/// The fixture through today's readers on `backend`.
async fn the_fixture_log_folds_to_the_expected_state(fixture: &Fixture, backend: TestBackend) {
    let log = backend.open_log().await;
    append_fixture(&log, fixture).await;
    log.shutdown().await;
    let database = match &backend {
        TestBackend::Postgres(database) => database.connect_again().await,
        TestBackend::Iggy { .. } => TestDatabase::fresh().await,
    };
    create_accounts(&database).await;
    // The service rebuilds its write model and folds presence at start; the
    // projectors are stepped here, one after another, to the log's end.
    let app = TestApp::builder()
        .on(&backend)
        .database(database)
        .without_projectors()
        .spawn()
        .await;
    project(ReadModelProjector, &app).await;
    project(NotificationsProjector, &app).await;
    project(AuditProjector, &app).await;

    let observed = observed_state(&app).await;

    let expected: Value =
        serde_json::from_str(fixture.expected).expect("the expected state is JSON");
    for section in [
        "writeModel",
        "readModel",
        "notifications",
        "audit",
        "presence",
        "replay",
    ] {
        assert!(
            expected.get(section).is_some(),
            "{}.expected.json lacks {section}",
            fixture.name
        );
    }
    let mut found = Vec::new();
    differences(&expected, &observed, "$", &mut found);
    if !found.is_empty() {
        let written =
            std::env::temp_dir().join(format!("{}.observed-{}.json", fixture.name, Uuid::new_v4()));
        std::fs::write(&written, serde_json::to_string_pretty(&observed).unwrap()).unwrap();
        panic!(
            "the fixture log no longer folds to {}.expected.json ({} differences; all it \
             folds to now is in {}). Upcast the old events; never edit the fixture.\n{}",
            fixture.name,
            found.len(),
            written.display(),
            found.join("\n")
        );
    }

    // Last, through a live connection: the gateway's online list, folded
    // from presence-events at start, names the fixture's online users.
    let (minerva_id, role) = account(MINERVA);
    let mut socket = app.socket(&app.act_as(minerva_id, role)).await;
    let online = socket
        .online_users_when(|users| users.len() == fixture.online.len())
        .await;
    let mut names: Vec<(&str, &str)> = online
        .iter()
        .map(|user| {
            (
                user["displayName"].as_str().unwrap(),
                user["role"].as_str().unwrap(),
            )
        })
        .collect();
    names.sort();
    assert_eq!(
        names, fixture.online,
        "the fixture's online users, and the connection just opened"
    );
    socket.close().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fixture_log_folds_to_the_expected_state_on_the_embedded_log() {
    the_fixture_log_folds_to_the_expected_state(&VERSION_1, TestBackend::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an Iggy server: put iggy-server on PATH or set IGGY_URL (scripts/test does this when it can)"]
async fn the_fixture_log_folds_to_the_expected_state_on_iggy() {
    the_fixture_log_folds_to_the_expected_state(&VERSION_1, TestBackend::iggy().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_v2_fixture_log_of_commuting_comments_folds_to_its_state_on_the_embedded_log() {
    the_fixture_log_folds_to_the_expected_state(&VERSION_2, TestBackend::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an Iggy server: put iggy-server on PATH or set IGGY_URL (scripts/test does this when it can)"]
async fn the_v2_fixture_log_of_commuting_comments_folds_to_its_state_on_iggy() {
    the_fixture_log_folds_to_the_expected_state(&VERSION_2, TestBackend::iggy().await).await;
}

/// The fixture itself, read as plain JSON (no code of today's catalog): it
/// holds every event type version 1 had, each on its topic, so every
/// reader is exercised.
#[test]
fn the_fixture_log_has_every_event_type_of_version_1_on_its_topic() {
    let version_1: [(&str, &str); 15] = [
        ("incident.created", "incident-events"),
        ("incident.updated", "incident-events"),
        ("incident.resolved", "incident-events"),
        ("incident.deleted", "incident-events"),
        ("comment.added", "incident-events"),
        ("severity.escalated", "incident-events"),
        ("user.connected", "presence-events"),
        ("user.disconnected", "presence-events"),
        ("user.joined_room", "presence-events"),
        ("user.left_room", "presence-events"),
        ("user.logged_in", "auth-events"),
        ("user.logged_out", "auth-events"),
        ("user.registered", "auth-events"),
        ("token.refreshed", "auth-events"),
        ("user.role_changed", "auth-events"),
    ];
    let mut seen = std::collections::BTreeSet::new();
    for message in fixture_messages(&VERSION_1) {
        let envelope: Value = serde_json::from_str(&message.payload).expect("a JSON payload");
        let event_type = envelope["eventType"]
            .as_str()
            .expect("an eventType")
            .to_owned();
        assert_eq!(
            envelope["eventId"].as_str(),
            Some(message.message_id.to_string().as_str()),
            "the message id is the event id"
        );
        seen.insert((event_type, message.topic));
    }
    let expected: std::collections::BTreeSet<(String, String)> = version_1
        .iter()
        .map(|(event_type, topic)| (event_type.to_string(), topic.to_string()))
        .collect();
    assert_eq!(seen, expected);
}
