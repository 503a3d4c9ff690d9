//! The real-time gateway's incident events, through a real Socket.IO
//! client: live delivery by audience, rooms, refused handshakes, replay on
//! reconnect (exactly the missed events, in order, under concurrent
//! appends), and two instances that share only the database and log (an
//! incident reported through one is joined through the other at once).
//! Tokens and sessions of open connections: `socket_sessions.rs`.
//! Presence, typing and notification pushes: `presence.rs`.

use std::collections::BTreeSet;
use std::time::Duration;

use marauders_map::domain::Role;
use marauders_map::events::Event;
use marauders_map::identity::tokens::{AccessClaims, JwtKeys};
use marauders_testkit::events::incident_created;
use marauders_testkit::{
    EVENTUALLY, IggyServer, ReportIncident, TEST_JWT_SECRET, TestApp, TestBackend, TestSocket,
    TestUser, eventually, incident_events,
};
use serde_json::{Value, json};
use uuid::Uuid;

/// Long enough that an event that was going to arrive would have.
pub const QUIET: Duration = Duration::from_millis(400);

async fn report(app: &TestApp, who: &TestUser, title: &str) -> (Uuid, u64) {
    let incident = app.reported(who, ReportIncident::new(title)).await;
    (incident.id, incident.offset)
}

async fn comment(app: &TestApp, who: &TestUser, incident: Uuid, body: &str) -> u64 {
    app.comment(who, incident, body)
        .await
        .assert_status(201)
        .event_offset()
}

#[tokio::test]
async fn a_created_incident_reaches_every_connected_client_with_its_offset() {
    let app = TestApp::spawn().await;
    let harry = app.user_named("harry", Role::Student).await;
    let ron = app.user_named("ron", Role::Student).await;
    let mut harrys = app.socket(&harry).await;
    let mut rons = app.socket(&ron).await;

    let (id, offset) = report(&app, &harry, "Troll in the dungeon").await;

    for socket in [&mut harrys, &mut rons] {
        let created = socket.next_named("incident:created").await;
        assert_eq!(created["offset"], offset);
        assert_eq!(created["eventType"], "incident.created");
        assert_eq!(created["userId"], harry.id.to_string());
        assert_eq!(created["data"]["id"], id.to_string());
        assert_eq!(created["data"]["title"], "Troll in the dungeon");
        assert!(created["eventId"].as_str().unwrap().parse::<Uuid>().is_ok());
        assert!(created["timestamp"].is_string());
    }
}

/// Harry's cursed necklace: an incident, and Harry's and Ron's sockets, with
/// Harry's in its room.
async fn a_necklace_with_harry_in_its_room() -> (
    TestApp,
    (TestUser, TestSocket),
    (TestUser, TestSocket),
    Uuid,
) {
    let app = TestApp::spawn().await;
    let harry = app.user_named("harry", Role::Student).await;
    let ron = app.user_named("ron", Role::Student).await;
    let (id, _) = report(&app, &harry, "Cursed necklace").await;
    let in_room = app.socket(&harry).await;
    let outside = app.socket(&ron).await;
    assert_eq!(
        in_room
            .request("incident:join", json!({ "incidentId": id }))
            .await,
        json!({"ok": true})
    );
    (app, (harry, in_room), (ron, outside), id)
}

#[tokio::test]
async fn a_client_in_an_incident_room_gets_its_updates_comments_and_escalations_in_order() {
    let (app, (harry, mut in_room), (ron, _), id) = a_necklace_with_harry_in_its_room().await;

    let updated_at = app
        .update(&harry, id, json!({"title": "Cursed opal necklace"}))
        .await
        .assert_status(200)
        .offset;
    let commented_at = comment(&app, &ron, id, "Don't touch it").await;
    let escalated_at = app
        .change_severity(&ron, id, marauders_map::domain::Severity::High)
        .await
        .assert_status(200)
        .offset;

    let seen = incident_events(in_room.drain(QUIET).await);
    let names: Vec<_> = seen
        .iter()
        .map(|(name, payload)| (name.as_str(), payload["offset"].as_u64()))
        .collect();
    assert_eq!(
        names,
        [
            ("incident:updated", updated_at),
            ("comment:added", Some(commented_at)),
            ("severity:escalated", escalated_at),
        ]
    );
}

#[tokio::test]
async fn a_client_outside_the_room_hears_only_what_everyone_hears() {
    let (app, (harry, _), (ron, mut outside), id) = a_necklace_with_harry_in_its_room().await;

    app.update(&harry, id, json!({"title": "Cursed opal necklace"}))
        .await
        .assert_status(200);
    comment(&app, &ron, id, "Don't touch it").await;
    app.change_severity(&ron, id, marauders_map::domain::Severity::High)
        .await
        .assert_status(200);

    let seen = incident_events(outside.drain(QUIET).await);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].0, "severity:escalated");
}

#[tokio::test]
async fn after_leaving_a_room_its_events_stop() {
    let (app, (_, mut in_room), (ron, _), id) = a_necklace_with_harry_in_its_room().await;

    assert_eq!(
        in_room
            .request("incident:leave", json!({ "incidentId": id }))
            .await,
        json!({"ok": true})
    );
    comment(&app, &ron, id, "Told you").await;

    assert!(incident_events(in_room.drain(QUIET).await).is_empty());
}

#[tokio::test]
async fn joining_the_room_of_an_unknown_incident_is_refused_not_found() {
    let app = TestApp::spawn().await;
    let neville = app.user(Role::Student).await;
    let socket = app.socket(&neville).await;

    let unknown = socket
        .request("incident:join", json!({"incidentId": Uuid::now_v7()}))
        .await;

    assert_eq!(unknown["error"]["code"], "not_found");
}

#[tokio::test]
async fn a_join_without_an_incident_id_is_refused_invalid_payload() {
    let app = TestApp::spawn().await;
    let neville = app.user(Role::Student).await;
    let socket = app.socket(&neville).await;

    let malformed = socket
        .request("incident:join", json!({"incidentId": "the-dungeons"}))
        .await;

    assert_eq!(malformed["error"]["code"], "invalid_payload");
}

#[tokio::test]
async fn typing_outside_a_room_is_refused_not_in_room() {
    let app = TestApp::spawn().await;
    let neville = app.user(Role::Student).await;
    let socket = app.socket(&neville).await;

    let typing_outside = socket
        .request("typing:start", json!({"incidentId": Uuid::now_v7()}))
        .await;

    assert_eq!(typing_outside["error"]["code"], "not_in_room");
}

#[tokio::test]
async fn a_connection_joins_at_most_100_rooms_and_leaving_one_makes_room() {
    let app = TestApp::spawn().await;
    let neville = app.user(Role::Student).await;
    let socket = app.socket(&neville).await;
    let mut incidents = Vec::new();
    for n in 0..101 {
        incidents.push(report(&app, &neville, &format!("Room {n}")).await.0);
    }
    for incident in &incidents[..100] {
        let joined = socket
            .request("incident:join", json!({ "incidentId": incident }))
            .await;
        assert_eq!(joined, json!({"ok": true}));
    }

    let one_too_many = socket
        .request("incident:join", json!({"incidentId": incidents[100]}))
        .await;
    assert_eq!(one_too_many["error"]["code"], "too_many_rooms");

    socket
        .request("incident:leave", json!({"incidentId": incidents[0]}))
        .await;
    let after_leaving = socket
        .request("incident:join", json!({"incidentId": incidents[100]}))
        .await;
    assert_eq!(after_leaving, json!({"ok": true}));
}

// ---- handshakes ---------------------------------------------------------------

/// Connects with `auth` and checks the refusal mentions `expected`.
pub async fn assert_refused(app: &TestApp, auth: Value, expected: &str) {
    let refused = app
        .connect_socket(auth.clone())
        .await
        .err()
        .unwrap_or_else(|| panic!("{auth} was accepted"));
    assert!(
        refused.0.contains(expected),
        "{auth}: expected '{expected}' in {refused:?}"
    );
}

/// A token for `user` claiming PROFESSOR, signed with `secret`, expiring at
/// `exp`.
pub fn token(user: &TestUser, secret: &str, exp: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    JwtKeys::from_secret(secret.as_bytes()).sign(&AccessClaims {
        sub: user.id,
        role: Role::Professor,
        sid: Uuid::now_v7(),
        iat: now - 3600,
        exp,
    })
}

#[tokio::test]
async fn a_handshake_without_auth_is_refused() {
    let app = TestApp::spawn().await;

    assert_refused(&app, json!({}), "handshake needs auth").await;
}

#[tokio::test]
async fn a_handshake_with_a_forged_token_is_refused_and_the_real_one_works() {
    let app = TestApp::spawn().await;
    let draco = app.user(Role::Student).await;
    let in_ten_minutes = chrono::Utc::now().timestamp() + 600;
    let forged = token(
        &draco,
        "not-the-secret-not-the-secret-not-the-secret",
        in_ten_minutes,
    );

    assert_refused(&app, json!({ "token": forged }), "invalid").await;
    app.socket(&draco).await;
}

#[tokio::test]
async fn a_handshake_with_an_expired_token_is_refused() {
    let app = TestApp::spawn().await;
    let draco = app.user(Role::Student).await;
    let a_minute_ago = chrono::Utc::now().timestamp() - 60;

    let expired = token(&draco, TEST_JWT_SECRET, a_minute_ago);
    assert_refused(&app, json!({ "token": expired }), "expired").await;
}

#[tokio::test]
async fn a_handshake_with_a_negative_last_offset_is_refused() {
    let app = TestApp::spawn().await;
    let draco = app.user(Role::Student).await;

    assert_refused(
        &app,
        json!({"token": draco.token, "lastOffset": -1}),
        "lastOffset",
    )
    .await;
}

#[tokio::test]
async fn a_handshake_rejoining_more_than_100_rooms_is_refused() {
    let app = TestApp::spawn().await;
    let draco = app.user(Role::Student).await;

    assert_refused(
        &app,
        json!({"token": draco.token, "rooms": vec![Uuid::now_v7(); 101]}),
        "at most 100",
    )
    .await;
}

// ---- replay on reconnect --------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_client_gets_exactly_what_it_missed_in_order_while_appends_go_on() {
    let app = TestApp::spawn().await;
    let hermione = app.user(Role::Student).await;
    let ginny = app.user(Role::Student).await;
    let (watched, _) = report(&app, &ginny, "Chamber opened").await;

    let mut first = app
        .connect_socket(json!({ "token": hermione.token }))
        .await
        .unwrap();
    let (_, complete) = first.next().await;
    let last_offset = complete["toOffset"].as_u64().unwrap();
    first.close().await;

    // Missed while offline: incidents for everyone, comments on a room
    // the client rejoins, and comments on a room it does not.
    let (other, other_created_at) = report(&app, &ginny, "Not watched").await;
    let mut expected = BTreeSet::from([other_created_at]);
    for n in 0..10 {
        expected.insert(report(&app, &ginny, &format!("Missed {n}")).await.1);
        expected.insert(comment(&app, &ginny, watched, &format!("Note {n}")).await);
        comment(&app, &ginny, other, "unseen").await;
    }
    // More appends, from three writers, while clients reconnect one after
    // another and replay: each switch-over from replay to live happens
    // while the broadcaster is sending.
    let appending: Vec<_> = (0..3)
        .map(|writer_number| {
            let (address, writer) = (app.address.clone(), ginny.token.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut offsets = Vec::new();
                for n in 0..30 {
                    let response = client
                        .post(format!("{address}/api/incidents"))
                        .bearer_auth(&writer)
                        .json(&json!({"title": format!("Concurrent {writer_number}.{n}"), "severity": "LOW", "location": "OWLERY"}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), 201);
                    offsets.push(
                        response.headers()["Event-Offset"]
                            .to_str()
                            .unwrap()
                            .parse::<u64>()
                            .unwrap(),
                    );
                }
                offsets
            })
        })
        .collect();
    let mut reconnected = Vec::new();
    for _ in 0..8 {
        reconnected.push(
            app.connect_socket(
                json!({"token": hermione.token, "lastOffset": last_offset, "rooms": [watched]}),
            )
            .await
            .unwrap(),
        );
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    for writer in appending {
        expected.extend(writer.await.unwrap());
    }

    // Each got everything it missed and everything since, once each, in
    // offset order, with replay:complete at the switch-over.
    for mut socket in reconnected {
        let events = incident_events(socket.drain(Duration::from_secs(1)).await);
        let complete_at = events
            .iter()
            .position(|(name, _)| name == "replay:complete")
            .expect("replay:complete");
        let complete = &events[complete_at].1;
        let offsets: Vec<u64> = events
            .iter()
            .filter(|(name, _)| !name.starts_with("replay:"))
            .map(|(_, payload)| payload["offset"].as_u64().unwrap())
            .collect();
        assert!(
            offsets.windows(2).all(|pair| pair[0] < pair[1]),
            "in order, no duplicates: {offsets:?}"
        );
        assert_eq!(offsets.iter().copied().collect::<BTreeSet<_>>(), expected);
        assert_eq!(complete["fromOffset"], last_offset + 1);
        assert_eq!(complete["count"], complete_at as u64);
        let to_offset = complete["toOffset"].as_u64().unwrap();
        assert!(
            offsets[..complete_at].iter().all(|o| *o <= to_offset)
                && offsets[complete_at..].iter().all(|o| *o > to_offset),
            "replayed up to {to_offset}, live after: {offsets:?}"
        );
    }
}

#[tokio::test]
async fn a_client_without_a_last_offset_learns_where_it_stands() {
    let app = TestApp::spawn().await;
    let luna = app.user(Role::Student).await;
    let mut empty = app
        .connect_socket(json!({ "token": luna.token }))
        .await
        .unwrap();
    assert_eq!(
        empty.next().await,
        (
            "replay:complete".to_owned(),
            json!({"fromOffset": 0, "toOffset": null, "count": 0})
        )
    );
    let (_, offset) = report(&app, &luna, "Nargles").await;
    empty.next_named("incident:created").await;

    let mut later = app
        .connect_socket(json!({ "token": luna.token }))
        .await
        .unwrap();

    assert_eq!(
        later.next().await,
        (
            "replay:complete".to_owned(),
            json!({"fromOffset": offset + 1, "toOffset": offset, "count": 0})
        )
    );
}

#[tokio::test]
async fn a_last_offset_beyond_the_log_is_answered_with_replay_incomplete_and_goes_live() {
    let app = TestApp::spawn().await;
    let cedric = app.user(Role::Student).await;
    let (_, offset) = report(&app, &cedric, "Maze").await;

    let mut socket = app
        .connect_socket(json!({"token": cedric.token, "lastOffset": 500}))
        .await
        .unwrap();

    let (name, incomplete) = socket.next().await;
    assert_eq!(name, "replay:incomplete");
    assert_eq!(incomplete["fromOffset"], 501);
    assert_eq!(incomplete["toOffset"], offset);
    assert!(
        incomplete["reason"]
            .as_str()
            .unwrap()
            .contains("beyond the end")
    );
    // It is live all the same.
    report(&app, &cedric, "Portkey").await;
    socket.next_named("incident:created").await;
}

// ---- two instances ------------------------------------------------------------

/// A command on either instance reaches the clients of both, in order.
async fn both_instances_deliver_every_event(first: &TestApp, second: &TestApp) {
    let fred = first.user(Role::Student).await;
    let mut on_first = first.socket(&fred).await;
    let mut on_second = second.socket(&fred).await;

    let (id, offset) = report(first, &fred, "Fireworks in the corridor").await;
    let (other_id, other_offset) = report(second, &fred, "Swamp on the fifth floor").await;

    for socket in [&mut on_first, &mut on_second] {
        let events = incident_events(socket.drain(Duration::from_secs(1)).await);
        let created: Vec<(u64, String)> = events
            .iter()
            .filter(|(name, _)| name == "incident:created")
            .map(|(_, p)| {
                (
                    p["offset"].as_u64().unwrap(),
                    p["data"]["id"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            created,
            [
                (offset, id.to_string()),
                (other_offset, other_id.to_string())
            ]
        );
    }
}

#[tokio::test]
async fn two_instances_sharing_only_the_database_and_log_both_deliver() {
    let first = TestApp::spawn().await;
    let second = first.second_instance().await;
    both_instances_deliver_every_event(&first, &second).await;
}

#[tokio::test]
#[ignore = "needs an Iggy server: put iggy-server on PATH or set IGGY_URL (scripts/test does this when it can)"]
async fn with_iggy_two_instances_sharing_only_the_database_and_log_both_deliver() {
    let server = IggyServer::start().await;
    let first = TestApp::builder().iggy(&server).spawn().await;
    let second = first.second_instance().await;
    both_instances_deliver_every_event(&first, &second).await;
}

// ---- rooms across instances ---------------------------------------------------

/// An incident reported through `first` is, at once, joinable through
/// `second` — its write model catches up with the log before it would
/// answer `not_found` — and its room events arrive there. Ten times, since
/// each time it is a race against `second` following the log by itself.
async fn an_incident_from_one_instance_is_joined_through_the_other_at_once(backend: &TestBackend) {
    let first = TestApp::builder().on(backend).spawn().await;
    let second = first.second_instance().await;
    let ginny = first.user(Role::Student).await;
    let mut on_second = second.socket(&ginny).await;

    for n in 0..10 {
        let (id, _) = report(&first, &ginny, &format!("Diary in the bathroom {n}")).await;

        let joined = on_second
            .request("incident:join", json!({ "incidentId": id }))
            .await;

        assert_eq!(joined, json!({"ok": true}), "incident {n}");
        let offset = comment(&first, &ginny, id, "It writes back").await;
        let comment = on_second.next_named("comment:added").await;
        assert_eq!(
            (
                comment["offset"].as_u64(),
                comment["data"]["incidentId"].as_str()
            ),
            (Some(offset), Some(id.to_string().as_str()))
        );
    }
    second.stop().await;
    first.stop().await;
}

/// The handshake's `rooms` too: a room of an incident reported through
/// `first` a moment ago is kept by `second`, not silently dropped.
async fn a_handshake_rejoins_an_incident_just_reported_through_another_instance(
    backend: &TestBackend,
) {
    let first = TestApp::builder().on(backend).spawn().await;
    let second = first.second_instance().await;
    let luna = first.user(Role::Student).await;

    for n in 0..10 {
        let (id, _) = report(&first, &luna, &format!("Crumple-horned snorkack {n}")).await;
        let mut on_second = second
            .connect_socket(json!({"token": luna.token, "rooms": [id]}))
            .await
            .expect("the connection is accepted");
        assert_eq!(on_second.next().await.0, "replay:complete");

        let offset = comment(&first, &luna, id, "Seen near the lake").await;

        let comment = on_second.next_named("comment:added").await;
        assert_eq!(comment["offset"].as_u64(), Some(offset), "incident {n}");
        on_second.close().await;
    }
    second.stop().await;
    first.stop().await;
}

marauders_testkit::on_both_backends!(
    an_incident_from_one_instance_is_joined_through_the_other_at_once,
    a_handshake_rejoins_an_incident_just_reported_through_another_instance,
);

/// Appends `event` to the embedded log as another process would, but with
/// its NOTIFY lost (as across a listener's reconnect): the app's follower
/// is not woken, so only a catch-up finds the event.
async fn append_unannounced(app: &TestApp, event: &Event) {
    sqlx::query(
        "WITH head AS (
             UPDATE event_log_heads SET next_offset = next_offset + 1
              WHERE topic = 'incident-events' AND partition_id = 0
          RETURNING next_offset)
         INSERT INTO event_log (topic, log_offset, message_id, payload)
         SELECT 'incident-events', head.next_offset - 1, $1, $2 FROM head",
    )
    .bind(event.event_id)
    .bind(event.encode().to_vec())
    .execute(&app.database.pool)
    .await
    .expect("the event is appended");
}

#[tokio::test]
async fn a_join_finds_an_incident_whose_append_this_instance_was_not_told_of() {
    let app = TestApp::spawn().await;
    let ginny = app.user(Role::Student).await;
    let socket = app.socket(&ginny).await;
    let id = Uuid::now_v7();
    append_unannounced(
        &app,
        &incident_created(id, ginny.id, "Diary in the bathroom"),
    )
    .await;

    let joined = socket
        .request("incident:join", json!({ "incidentId": id }))
        .await;

    assert_eq!(joined, json!({"ok": true}));
    app.stop().await;
}

#[tokio::test]
async fn a_handshake_keeps_the_room_of_an_incident_whose_append_it_was_not_told_of() {
    let app = TestApp::spawn().await;
    let ginny = app.user(Role::Student).await;
    let id = Uuid::now_v7();
    append_unannounced(
        &app,
        &incident_created(id, ginny.id, "Diary in the bathroom"),
    )
    .await;

    let mut socket = app
        .connect_socket(json!({"token": ginny.token, "rooms": [id]}))
        .await
        .expect("the connection is accepted");
    assert_eq!(socket.next().await.0, "replay:complete");
    let offset = comment(&app, &ginny, id, "It writes back").await;

    assert_eq!(
        socket.next_named("comment:added").await["offset"].as_u64(),
        Some(offset)
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs iggy-server on PATH (scripts/test runs it when it is)"]
async fn iggy_process_a_join_while_the_log_is_down_is_unavailable_not_not_found() {
    let mut server = IggyServer::start().await;
    let app = TestApp::builder().iggy(&server).spawn().await;
    let neville = app.user(Role::Student).await;
    let socket = app.socket(&neville).await;

    server.kill_9();
    let answer = socket
        .request("incident:join", json!({ "incidentId": Uuid::now_v7() }))
        .await;

    assert_eq!(answer["error"]["code"], "unavailable", "{answer}");
    server.restart().await;
    let answer = eventually("the log answers again", EVENTUALLY, || async {
        let answer = socket
            .request("incident:join", json!({ "incidentId": Uuid::now_v7() }))
            .await;
        (answer["error"]["code"] != "unavailable").then_some(answer)
    })
    .await;
    assert_eq!(answer["error"]["code"], "not_found", "{answer}");
    app.stop().await;
}
