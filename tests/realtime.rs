//! The real-time gateway, through a real Socket.IO client: live delivery by
//! audience, refused handshakes, replay on reconnect (exactly the missed
//! events, in order, under concurrent appends), presence, typing,
//! notifications, and two instances that share only the database and log.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::socket::{TestSocket, connect};
use common::{
    TEST_JWT_SECRET, TestApp, TestBackend, clone_database, spawn_app, spawn_app_on,
    spawn_app_with_iggy,
};
use marauders_map::domain::Role;
use marauders_map::identity::tokens::{AccessClaims, JwtKeys};
use marauders_map::log::Topic;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

/// Long enough that an event that was going to arrive would have.
const QUIET: Duration = Duration::from_millis(400);

async fn student(app: &TestApp, name: &str) -> (Uuid, String) {
    app.user_with_role(&format!("{name}@hogwarts.edu"), Role::Student)
        .await
}

async fn live(app: &TestApp, token: &str) -> TestSocket {
    let mut socket = connect(&app.address, json!({"token": token}))
        .await
        .expect("the connection is accepted");
    let (name, _) = socket.next().await;
    assert_eq!(name, "replay:complete");
    socket
}

async fn report(app: &TestApp, token: &str, title: &str) -> (Uuid, u64) {
    let (status, body, offset) = app
        .command(
            Method::POST,
            "/api/incidents",
            token,
            Some(json!({"title": title, "severity": "MEDIUM", "location": "LIBRARY"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    (
        body["id"].as_str().unwrap().parse().unwrap(),
        offset.unwrap(),
    )
}

async fn comment(app: &TestApp, token: &str, incident: Uuid, body: &str) -> u64 {
    let (status, answer, offset) = app
        .command(
            Method::POST,
            &format!("/api/incidents/{incident}/comments"),
            token,
            Some(json!({ "body": body })),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    offset.unwrap()
}

/// Incident events and replay markers only (presence, typing and
/// notifications interleave freely).
fn incident_events(events: Vec<(String, Value)>) -> Vec<(String, Value)> {
    events
        .into_iter()
        .filter(|(name, _)| {
            !name.starts_with("presence:") && name != "typing" && name != "notification:new"
        })
        .collect()
}

#[tokio::test]
async fn a_created_incident_reaches_every_connected_client_with_its_offset() {
    let app = spawn_app().await;
    let (harry, harry_token) = student(&app, "harry").await;
    let (_, ron_token) = student(&app, "ron").await;
    let mut harrys = live(&app, &harry_token).await;
    let mut rons = live(&app, &ron_token).await;

    let (id, offset) = report(&app, &harry_token, "Troll in the dungeon").await;

    for socket in [&mut harrys, &mut rons] {
        let created = socket.next_named("incident:created").await;
        assert_eq!(created["offset"], offset);
        assert_eq!(created["eventType"], "incident.created");
        assert_eq!(created["userId"], harry.to_string());
        assert_eq!(created["data"]["id"], id.to_string());
        assert_eq!(created["data"]["title"], "Troll in the dungeon");
        assert!(created["eventId"].as_str().unwrap().parse::<Uuid>().is_ok());
        assert!(created["timestamp"].is_string());
    }
}

#[tokio::test]
async fn updates_and_comments_reach_only_the_incident_room_and_everyone_hears_the_rest() {
    let app = spawn_app().await;
    let (_, harry_token) = student(&app, "harry").await;
    let (_, ron_token) = student(&app, "ron").await;
    let (id, _) = report(&app, &harry_token, "Cursed necklace").await;
    let mut in_room = live(&app, &harry_token).await;
    let mut outside = live(&app, &ron_token).await;
    assert_eq!(
        in_room
            .request("incident:join", json!({ "incidentId": id }))
            .await,
        json!({"ok": true})
    );

    let (status, _, updated_at) = app
        .command(
            Method::PUT,
            &format!("/api/incidents/{id}"),
            &harry_token,
            Some(json!({"title": "Cursed opal necklace"})),
        )
        .await;
    assert_eq!(status, 200);
    let commented_at = comment(&app, &ron_token, id, "Don't touch it").await;
    let (status, _, escalated_at) = app
        .command(
            Method::PATCH,
            &format!("/api/incidents/{id}/severity"),
            &ron_token,
            Some(json!({"severity": "HIGH"})),
        )
        .await;
    assert_eq!(status, 200);

    let seen_in_room = incident_events(in_room.drain(QUIET).await);
    let names: Vec<_> = seen_in_room
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
    let seen_outside = incident_events(outside.drain(QUIET).await);
    assert_eq!(seen_outside.len(), 1, "{seen_outside:?}");
    assert_eq!(seen_outside[0].0, "severity:escalated");

    // After leaving, the room's events stop.
    assert_eq!(
        in_room
            .request("incident:leave", json!({ "incidentId": id }))
            .await,
        json!({"ok": true})
    );
    comment(&app, &ron_token, id, "Told you").await;
    assert!(incident_events(in_room.drain(QUIET).await).is_empty());
}

#[tokio::test]
async fn joining_needs_an_existing_incident_and_a_well_formed_payload() {
    let app = spawn_app().await;
    let (_, token) = student(&app, "neville").await;
    let socket = live(&app, &token).await;
    let unknown = socket
        .request("incident:join", json!({"incidentId": Uuid::now_v7()}))
        .await;
    assert_eq!(unknown["error"]["code"], "not_found");
    let malformed = socket
        .request("incident:join", json!({"incidentId": "the-dungeons"}))
        .await;
    assert_eq!(malformed["error"]["code"], "invalid_payload");
    let typing_outside = socket
        .request("typing:start", json!({"incidentId": Uuid::now_v7()}))
        .await;
    assert_eq!(typing_outside["error"]["code"], "not_in_room");

    // At most 100 rooms per connection; leaving one makes room again.
    let mut incidents = Vec::new();
    for n in 0..101 {
        incidents.push(report(&app, &token, &format!("Room {n}")).await.0);
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

#[tokio::test]
async fn missing_forged_expired_and_malformed_handshakes_are_refused() {
    let app = spawn_app().await;
    let (user, token) = student(&app, "draco").await;
    let now = chrono::Utc::now().timestamp();
    let claims = |secret: &str, exp: i64| {
        JwtKeys::from_secret(secret.as_bytes()).sign(&AccessClaims {
            sub: user,
            role: Role::Professor,
            sid: Uuid::now_v7(),
            iat: now - 3600,
            exp,
        })
    };
    let forged = claims("not-the-secret-not-the-secret-not-the-secret", now + 600);
    let expired = claims(TEST_JWT_SECRET, now - 60);

    for (auth, expected) in [
        (json!({}), "handshake needs auth"),
        (json!({"token": forged}), "invalid"),
        (json!({"token": expired}), "expired"),
        (json!({"token": token, "lastOffset": -1}), "lastOffset"),
        (
            json!({"token": token, "rooms": vec![Uuid::now_v7(); 101]}),
            "at most 100",
        ),
    ] {
        let refused = connect(&app.address, auth.clone())
            .await
            .err()
            .unwrap_or_else(|| panic!("{auth} was accepted"));
        assert!(
            refused.0.contains(expected),
            "{auth}: expected '{expected}' in {refused:?}"
        );
    }
    // And the real token still works.
    live(&app, &token).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_client_gets_exactly_what_it_missed_in_order_while_appends_go_on() {
    let app = spawn_app().await;
    let (_, token) = student(&app, "hermione").await;
    let (_, writer) = student(&app, "ginny").await;
    let (watched, _) = report(&app, &writer, "Chamber opened").await;

    let mut first = connect(&app.address, json!({ "token": token }))
        .await
        .unwrap();
    let (_, complete) = first.next().await;
    let last_offset = complete["toOffset"].as_u64().unwrap();
    first.close().await;

    // Missed while offline: incidents for everyone, comments on a room
    // the client rejoins, and comments on a room it does not.
    let (other, other_created_at) = report(&app, &writer, "Not watched").await;
    let mut expected = BTreeSet::from([other_created_at]);
    for n in 0..10 {
        expected.insert(report(&app, &writer, &format!("Missed {n}")).await.1);
        expected.insert(comment(&app, &writer, watched, &format!("Note {n}")).await);
        comment(&app, &writer, other, "unseen").await;
    }
    // More appends, from three writers, while clients reconnect one after
    // another and replay: each switch-over from replay to live happens
    // while the broadcaster is sending.
    let appending: Vec<_> = (0..3)
        .map(|writer_number| {
            let (address, writer) = (app.address.clone(), writer.clone());
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
            connect(
                &app.address,
                json!({"token": token, "lastOffset": last_offset, "rooms": [watched]}),
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
    let app = spawn_app().await;
    let (_, token) = student(&app, "luna").await;
    let mut empty = connect(&app.address, json!({ "token": token }))
        .await
        .unwrap();
    assert_eq!(
        empty.next().await,
        (
            "replay:complete".to_owned(),
            json!({"fromOffset": 0, "toOffset": null, "count": 0})
        )
    );
    let (_, offset) = report(&app, &token, "Nargles").await;
    empty.next_named("incident:created").await;
    let mut later = connect(&app.address, json!({ "token": token }))
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
async fn a_last_offset_beyond_the_log_is_answered_with_replay_incomplete() {
    let app = spawn_app().await;
    let (_, token) = student(&app, "cedric").await;
    let (_, offset) = report(&app, &token, "Maze").await;
    let mut socket = connect(&app.address, json!({"token": token, "lastOffset": 500}))
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
    report(&app, &token, "Portkey").await;
    socket.next_named("incident:created").await;
}

#[tokio::test]
async fn presence_is_appended_to_the_log_and_lists_each_user_once_however_many_tabs() {
    let app = spawn_app().await;
    let (harry, token) = student(&app, "harry").await;
    let (ron, ron_token) = student(&app, "ron").await;
    let (id, _) = report(&app, &token, "Invisibility cloak missing").await;

    let mut watcher = live(&app, &ron_token).await;
    let first_tab = live(&app, &token).await;
    let second_tab = live(&app, &token).await;
    first_tab
        .request("incident:join", json!({ "incidentId": id }))
        .await;

    // The list settles on both users, each once.
    let online = wait_for_online(&mut watcher, |users| users.len() == 2).await;
    let ids: BTreeSet<String> = online
        .iter()
        .map(|user| user["userId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, BTreeSet::from([harry.to_string(), ron.to_string()]));
    assert!(
        online
            .iter()
            .any(|user| user["displayName"] == "harry@hogwarts.edu")
    );

    // One tab closing leaves harry online; the second takes him off.
    first_tab.close().await;
    tokio::time::sleep(QUIET).await;
    second_tab.close().await;
    let online = wait_for_online(&mut watcher, |users| users.len() == 1).await;
    assert_eq!(online[0]["userId"], ron.to_string());

    // The log has the whole story.
    let records = app_log(&app).await;
    let of_harry: Vec<(String, Value)> = records
        .into_iter()
        .filter(|event| event["userId"] == harry.to_string())
        .map(|event| {
            (
                event["eventType"].as_str().unwrap().to_owned(),
                event["data"].clone(),
            )
        })
        .collect();
    let types: Vec<&str> = of_harry.iter().map(|(kind, _)| kind.as_str()).collect();
    assert_eq!(
        types
            .iter()
            .filter(|kind| **kind == "user.connected")
            .count(),
        2
    );
    assert_eq!(
        types
            .iter()
            .filter(|kind| **kind == "user.disconnected")
            .count(),
        2
    );
    assert!(of_harry.contains(&(
        "user.joined_room".to_owned(),
        json!({"userId": harry, "room": format!("incident:{id}")})
    )));
    let connected = &of_harry
        .iter()
        .find(|(kind, _)| kind == "user.connected")
        .unwrap()
        .1;
    assert_eq!(connected["role"], "STUDENT");
    assert!(connected["socketId"].is_string());
}

/// Waits for a `presence:online` whose users satisfy `settled`.
async fn wait_for_online(
    socket: &mut TestSocket,
    settled: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match socket.next_within(left).await {
            Some((name, payload)) if name == "presence:online" => {
                let users = payload["users"].as_array().unwrap().clone();
                if settled(&users) {
                    return users;
                }
            }
            Some(_) => {}
            None => panic!("presence:online never settled"),
        }
    }
}

/// The presence-events topic, as envelopes.
async fn app_log(app: &TestApp) -> Vec<Value> {
    presence_events(&app.database.pool).await
}

/// The presence-events topic of the embedded log in `pool`, as envelopes.
async fn presence_events(pool: &sqlx::PgPool) -> Vec<Value> {
    let log =
        marauders_map::log::EventLog::open(marauders_map::log::LogConfig::Postgres(pool.clone()))
            .await
            .unwrap();
    log.read(Topic::PresenceEvents, 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|record| serde_json::from_slice(&record.payload).unwrap())
        .collect()
}

#[tokio::test]
async fn typing_reaches_the_others_in_the_room_only_and_ends_when_the_typist_leaves() {
    let app = spawn_app().await;
    let (harry, harry_token) = student(&app, "harry").await;
    let (_, ron_token) = student(&app, "ron").await;
    let (_, luna_token) = student(&app, "luna").await;
    let (id, _) = report(&app, &harry_token, "Howler in the Great Hall").await;
    let typist = live(&app, &harry_token).await;
    let mut reader = live(&app, &ron_token).await;
    let mut outsider = live(&app, &luna_token).await;
    for socket in [&typist, &reader] {
        socket
            .request("incident:join", json!({ "incidentId": id }))
            .await;
    }

    assert_eq!(
        typist
            .request("typing:start", json!({ "incidentId": id }))
            .await,
        json!({"ok": true})
    );
    assert_eq!(
        reader.next_named("typing").await,
        json!({"incidentId": id, "userId": harry, "displayName": "harry@hogwarts.edu", "typing": true})
    );
    typist
        .request("typing:stop", json!({ "incidentId": id }))
        .await;
    assert_eq!(reader.next_named("typing").await["typing"], false);

    // A typist who vanishes without typing:stop stops typing.
    typist
        .request("typing:start", json!({ "incidentId": id }))
        .await;
    assert_eq!(reader.next_named("typing").await["typing"], true);
    typist.close().await;
    assert_eq!(reader.next_named("typing").await["typing"], false);

    let outside: Vec<_> = outsider
        .drain(QUIET)
        .await
        .into_iter()
        .filter(|(name, _)| name == "typing")
        .collect();
    assert!(outside.is_empty(), "{outside:?}");
}

#[tokio::test]
async fn an_indicator_that_is_not_renewed_expires_within_a_few_seconds() {
    let app = spawn_app().await;
    let (_, harry_token) = student(&app, "harry").await;
    let (_, ron_token) = student(&app, "ron").await;
    let (id, _) = report(&app, &harry_token, "Slow typist").await;
    let typist = live(&app, &harry_token).await;
    let mut reader = live(&app, &ron_token).await;
    for socket in [&typist, &reader] {
        socket
            .request("incident:join", json!({ "incidentId": id }))
            .await;
    }
    typist
        .request("typing:start", json!({ "incidentId": id }))
        .await;
    assert_eq!(reader.next_named("typing").await["typing"], true);
    let started = tokio::time::Instant::now();
    let deadline = started + Duration::from_secs(8);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match reader.next_within(left).await {
            Some((name, payload)) if name == "typing" => {
                assert_eq!(payload["typing"], false);
                break;
            }
            Some(_) => {}
            None => panic!("the indicator never expired"),
        }
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(4),
        "expired too early: {took:?}"
    );
}

#[tokio::test]
async fn a_new_notification_reaches_its_owner_connections() {
    let app = spawn_app().await;
    let (_, harry_token) = student(&app, "harry").await;
    let (_, ron_token) = student(&app, "ron").await;
    let (id, _) = report(&app, &harry_token, "Flying car in the Whomping Willow").await;
    let mut harrys = live(&app, &harry_token).await;
    let mut rons = live(&app, &ron_token).await;

    comment(&app, &ron_token, id, "Sorry about the car").await;

    let pushed = harrys.next_named("notification:new").await;
    assert_eq!(pushed["kind"], "comment");
    assert_eq!(pushed["incidentId"], id.to_string());
    assert!(pushed["readAt"].is_null());
    let (_, listed) = app.get_as("/api/notifications", &harry_token).await;
    assert_eq!(listed["items"][0]["id"], pushed["id"]);
    let rons_events: Vec<_> = rons
        .drain(QUIET)
        .await
        .into_iter()
        .filter(|(name, _)| name == "notification:new")
        .collect();
    assert!(rons_events.is_empty());
}

#[tokio::test]
async fn two_instances_sharing_only_the_database_and_log_both_deliver() {
    let first = spawn_app().await;
    let second = spawn_app_on(clone_database(&first.database).await, None, 0).await;
    both_instances_deliver_every_event(&first, &second).await;
}

#[tokio::test]
#[ignore = "needs an Iggy server: put iggy-server on PATH or set IGGY_URL (scripts/test does this when it can)"]
async fn with_iggy_two_instances_sharing_only_the_database_and_log_both_deliver() {
    let TestBackend::Iggy { server, stream: _ } = TestBackend::iggy().await else {
        unreachable!()
    };
    let first = spawn_app_with_iggy(Some(server.url.clone())).await;
    let second = spawn_app_on(
        clone_database(&first.database).await,
        Some(server.url.clone()),
        10,
    )
    .await;
    both_instances_deliver_every_event(&first, &second).await;
}

/// A command on either instance reaches the clients of both, in order.
async fn both_instances_deliver_every_event(first: &TestApp, second: &TestApp) {
    let (_, token) = student(first, "fred").await;
    let mut on_first = live(first, &token).await;
    let mut on_second = live(second, &token).await;

    let (id, offset) = report(first, &token, "Fireworks in the corridor").await;
    let (other_id, other_offset) = report(second, &token, "Swamp on the fifth floor").await;

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
async fn a_server_shutting_down_logs_the_disconnect_of_every_open_connection() {
    let app = spawn_app().await;
    let (harry, token) = student(&app, "harry").await;
    let _first = live(&app, &token).await;
    let _second = live(&app, &token).await;
    // Both connects are in the log before the shutdown begins.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while app_log(&app).await.len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "connects logged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let (database, _) = app.stop().await;

    let events = presence_events(&database.pool).await;
    let disconnects: Vec<&Value> = events
        .iter()
        .filter(|event| event["eventType"] == "user.disconnected")
        .collect();
    assert_eq!(disconnects.len(), 2, "{events:#?}");
    assert!(
        disconnects
            .iter()
            .all(|event| event["userId"] == harry.to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs iggy-server on PATH (scripts/test runs it when it is)"]
async fn iggy_process_presence_waits_out_a_dead_log_and_live_clients_miss_nothing() {
    let TestBackend::Iggy { mut server, .. } = TestBackend::iggy().await else {
        unreachable!()
    };
    let app = spawn_app_with_iggy(Some(server.url.clone())).await;
    let (harry, token) = student(&app, "harry").await;
    let mut staying = live(&app, &token).await;
    let leaving = live(&app, &token).await;
    let (_, before) = report(&app, &token, "Before the outage").await;
    assert_eq!(
        staying.next_named("incident:created").await["offset"],
        before
    );

    // The log dies; a connection closes meanwhile (its disconnect waits in
    // the buffer), and the socket that stays open is not dropped.
    server.kill_9();
    leaving.close().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.restart().await;

    // Commands work again and the live client gets them, after nothing lost.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let after = loop {
        let (status, body, offset) = app
            .command(
                Method::POST,
                "/api/incidents",
                &token,
                Some(json!({"title": "After the outage", "severity": "LOW", "location": "OWLERY"})),
            )
            .await;
        if status == 201 {
            break offset.unwrap();
        }
        assert!(tokio::time::Instant::now() < deadline, "{status} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        staying.next_named("incident:created").await["offset"],
        after
    );

    // The buffered disconnect reached the log once it was back.
    let reader = marauders_map::log::EventLog::open(marauders_map::log::LogConfig::Iggy(
        server.config(marauders_map::log::STREAM_NAME),
    ))
    .await
    .unwrap();
    reader
        .wait_until_ready(Duration::from_secs(20))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let types: Vec<String> = reader
            .read(Topic::PresenceEvents, 0, 100)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|record| serde_json::from_slice::<Value>(&record.payload).unwrap())
            .filter(|event| event["userId"] == harry.to_string())
            .map(|event| event["eventType"].as_str().unwrap().to_owned())
            .collect();
        if types.iter().any(|kind| kind == "user.disconnected") {
            assert_eq!(
                types
                    .iter()
                    .filter(|kind| *kind == "user.connected")
                    .count(),
                2
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the disconnect never reached the log: {types:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
