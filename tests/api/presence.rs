//! The gateway's other channels, through a real Socket.IO client: presence
//! (appended to `presence-events` and folded back into the online list),
//! typing indicators, notification pushes, and the disconnects a shutting
//! down server logs.

use std::collections::BTreeSet;
use std::time::Duration;

use marauders_map::domain::Role;
use marauders_map::events::Event;
use marauders_map::http::replay::role_needed_to_replay;
use marauders_map::log::Topic;
use marauders_testkit::{
    EVENTUALLY, IggyServer, PollingSocket, ReportIncident, TestApp, TestSocket, TestUser,
    eventually,
};
use serde_json::{Value, json};

use crate::realtime::QUIET;

/// `(eventType, data)` of each presence event of `user`.
fn presence_of(events: &[Event], user: uuid::Uuid) -> Vec<(String, Value)> {
    events
        .iter()
        .filter(|event| event.user_id == Some(user))
        .map(|event| {
            let envelope = event.to_envelope();
            (envelope.event_type, envelope.data)
        })
        .collect()
}

fn count_of(events: &[(String, Value)], event_type: &str) -> usize {
    events.iter().filter(|(kind, _)| kind == event_type).count()
}

#[tokio::test]
async fn the_online_list_shows_each_user_once_however_many_tabs() {
    let app = TestApp::spawn().await;
    let harry = app.user_named("harry", Role::Student).await;
    let ron = app.user_named("ron", Role::Student).await;
    let mut watcher = app.socket(&ron).await;

    let _first_tab = app.socket(&harry).await;
    let _second_tab = app.socket(&harry).await;

    let online = watcher.online_users_when(|users| users.len() == 2).await;
    let ids: BTreeSet<String> = online
        .iter()
        .map(|user| user["userId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        ids,
        BTreeSet::from([harry.id.to_string(), ron.id.to_string()])
    );
    assert!(online.iter().any(|user| user["displayName"] == "harry"));
}

#[tokio::test]
async fn a_user_stays_online_until_their_last_tab_closes() {
    let app = TestApp::spawn().await;
    let harry = app.user_named("harry", Role::Student).await;
    let ron = app.user_named("ron", Role::Student).await;
    let mut watcher = app.socket(&ron).await;
    let first_tab = app.socket(&harry).await;
    let second_tab = app.socket(&harry).await;
    watcher.online_users_when(|users| users.len() == 2).await;

    first_tab.close().await;
    tokio::time::sleep(QUIET).await;
    let after_one = watcher.drain(QUIET).await;
    second_tab.close().await;

    assert!(
        after_one
            .iter()
            .filter(|(name, _)| name == "presence:online")
            .all(|(_, payload)| payload["users"].as_array().unwrap().len() == 2),
        "one tab closing leaves harry online: {after_one:?}"
    );
    let online = watcher.online_users_when(|users| users.len() == 1).await;
    assert_eq!(online[0]["userId"], ron.id.to_string());
}

#[tokio::test]
async fn connections_room_changes_and_disconnects_are_appended_to_presence_events() {
    let app = TestApp::spawn().await;
    let harry = app.user_named("harry", Role::Student).await;
    let incident = app
        .reported(&harry, ReportIncident::new("Invisibility cloak missing"))
        .await;
    let first_tab = app.socket(&harry).await;
    let second_tab = app.socket(&harry).await;
    first_tab
        .request("incident:join", json!({ "incidentId": incident.id }))
        .await;

    first_tab.close().await;
    second_tab.close().await;

    let of_harry = eventually("both disconnects are logged", EVENTUALLY, || async {
        let of_harry = presence_of(&app.events(Topic::PresenceEvents).await, harry.id);
        (count_of(&of_harry, "user.disconnected") == 2).then_some(of_harry)
    })
    .await;
    assert_eq!(count_of(&of_harry, "user.connected"), 2);
    assert!(of_harry.contains(&(
        "user.joined_room".to_owned(),
        json!({"userId": harry.id, "room": format!("incident:{}", incident.id)})
    )));
    let connected = &of_harry
        .iter()
        .find(|(kind, _)| kind == "user.connected")
        .unwrap()
        .1;
    assert_eq!(connected["role"], "STUDENT");
    let connection_ids: BTreeSet<&str> = of_harry
        .iter()
        .filter(|(kind, _)| kind == "user.connected" || kind == "user.disconnected")
        .map(|(_, data)| data["connectionId"].as_str().unwrap())
        .collect();
    assert_eq!(connection_ids.len(), 2, "one id per tab: {of_harry:#?}");
    assert!(
        connection_ids
            .iter()
            .all(|id| id.parse::<uuid::Uuid>().is_ok()),
        "{connection_ids:?}"
    );
}

/// Every page of `topic` that `who` may read, from offset 0, as the bytes
/// the API answered.
async fn replay_everything(app: &TestApp, who: &TestUser, topic: Topic) -> String {
    let mut bytes = String::new();
    let mut from = 0;
    loop {
        let page = app
            .replay(who, &format!("topic={topic}&fromOffset={from}&limit=1000"))
            .await
            .assert_status(200);
        bytes.push_str(&page.body.to_string());
        from = page.body["nextOffset"].as_u64().unwrap();
        if page.body["caughtUp"] == true {
            return bytes;
        }
    }
}

#[tokio::test]
async fn no_topic_anyone_may_replay_holds_a_connections_socket_io_or_engine_io_id() {
    let app = TestApp::spawn().await;
    let harry = app.user_named("harry", Role::Student).await;
    let percy = app.user_named("percy", Role::Prefect).await;
    let minerva = app.user_named("minerva", Role::Professor).await;
    let incident = app
        .reported(&harry, ReportIncident::new("Polyjuice potion brewing"))
        .await;
    // Over long-polling, as the page starts, so the test holds what the
    // transport handed out: the engine.io session id and the Socket.IO id.
    let tab = PollingSocket::connect(
        &app.address,
        json!({"token": harry.token, "rooms": [incident.id]}),
    )
    .await;
    let secrets = [tab.engine_io_sid.clone(), tab.socket_io_id.clone()];
    tab.close().await;
    // The connection's whole life is on the log: connected, joined, gone.
    eventually("harry's connection is logged", EVENTUALLY, || async {
        let of_harry = presence_of(&app.events(Topic::PresenceEvents).await, harry.id);
        (count_of(&of_harry, "user.connected") == 1
            && count_of(&of_harry, "user.joined_room") == 1
            && count_of(&of_harry, "user.disconnected") == 1)
            .then_some(())
    })
    .await;

    for who in [&harry, &percy, &minerva] {
        for topic in Topic::ALL {
            if who.role < role_needed_to_replay(topic) {
                continue;
            }
            let served = replay_everything(&app, who, topic).await;
            for secret in &secrets {
                assert!(
                    !served.contains(secret.as_str()),
                    "{topic} as replayed by a {} holds {secret}",
                    who.role
                );
            }
        }
    }
    for topic in Topic::ALL {
        for record in app.records(topic).await {
            let bytes = String::from_utf8_lossy(&record.payload);
            for secret in &secrets {
                assert!(
                    !bytes.contains(secret.as_str()),
                    "{topic} holds {secret} at {}",
                    record.offset
                );
            }
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn a_server_shutting_down_logs_the_disconnect_of_every_open_connection() {
    let app = TestApp::spawn().await;
    let harry = app.user(Role::Student).await;
    let _first = app.socket(&harry).await;
    let _second = app.socket(&harry).await;
    // Both connects are in the log before the shutdown begins.
    eventually("both connects are logged", EVENTUALLY, || async {
        (app.records(Topic::PresenceEvents).await.len() >= 2).then_some(())
    })
    .await;

    let stopped = app.stop().await;

    let log = stopped.open_log().await;
    let records = log.read(Topic::PresenceEvents, 0, 1000).await.unwrap();
    let events: Vec<Event> = records
        .iter()
        .map(|record| Event::decode(&record.payload).unwrap())
        .collect();
    let of_harry = presence_of(&events, harry.id);
    let reasons: Vec<&Value> = of_harry
        .iter()
        .filter(|(kind, _)| kind == "user.disconnected")
        .map(|(_, data)| &data["reason"])
        .collect();
    assert_eq!(reasons, [&json!("shutting_down"); 2], "{of_harry:#?}");
    log.shutdown().await;
}

// ---- typing -------------------------------------------------------------------

/// Harry types on the howler's incident; Ron reads it in the room; Luna is
/// connected but not in the room.
struct Howler {
    harry: TestUser,
    incident: uuid::Uuid,
    typist: TestSocket,
    reader: TestSocket,
    outsider: TestSocket,
    _app: TestApp,
}

async fn a_howler_with_a_typist_and_a_reader() -> Howler {
    let app = TestApp::spawn().await;
    let harry = app.user_named("harry", Role::Student).await;
    let ron = app.user_named("ron", Role::Student).await;
    let luna = app.user_named("luna", Role::Student).await;
    let incident = app
        .reported(&harry, ReportIncident::new("Howler in the Great Hall"))
        .await
        .id;
    let typist = app.socket(&harry).await;
    let reader = app.socket(&ron).await;
    let outsider = app.socket(&luna).await;
    for socket in [&typist, &reader] {
        socket
            .request("incident:join", json!({ "incidentId": incident }))
            .await;
    }
    Howler {
        harry,
        incident,
        typist,
        reader,
        outsider,
        _app: app,
    }
}

impl Howler {
    /// Harry starts typing; Ron sees it.
    async fn harry_starts_typing(&mut self) {
        assert_eq!(
            self.typist
                .request("typing:start", json!({ "incidentId": self.incident }))
                .await,
            json!({"ok": true})
        );
        assert_eq!(self.reader.next_named("typing").await["typing"], true);
    }
}

#[tokio::test]
async fn typing_reaches_the_others_in_the_room_until_it_stops() {
    let Howler {
        harry,
        incident,
        typist,
        mut reader,
        ..
    } = a_howler_with_a_typist_and_a_reader().await;

    typist
        .request("typing:start", json!({ "incidentId": incident }))
        .await;
    assert_eq!(
        reader.next_named("typing").await,
        json!({"incidentId": incident, "userId": harry.id, "displayName": "harry", "typing": true})
    );
    typist
        .request("typing:stop", json!({ "incidentId": incident }))
        .await;
    assert_eq!(reader.next_named("typing").await["typing"], false);
}

#[tokio::test]
async fn a_typist_who_vanishes_without_typing_stop_stops_typing() {
    let mut howler = a_howler_with_a_typist_and_a_reader().await;
    howler.harry_starts_typing().await;

    howler.typist.close().await;

    assert_eq!(howler.reader.next_named("typing").await["typing"], false);
}

#[tokio::test]
async fn typing_does_not_reach_a_client_outside_the_room() {
    let mut howler = a_howler_with_a_typist_and_a_reader().await;

    howler.harry_starts_typing().await;

    let outside: Vec<_> = howler
        .outsider
        .drain(QUIET)
        .await
        .into_iter()
        .filter(|(name, _)| name == "typing")
        .collect();
    assert!(outside.is_empty(), "{outside:?}");
}

#[tokio::test]
async fn an_indicator_that_is_not_renewed_expires_within_a_few_seconds() {
    let mut howler = a_howler_with_a_typist_and_a_reader().await;
    howler.harry_starts_typing().await;
    let reader = &mut howler.reader;

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

// ---- notification pushes ----------------------------------------------------------

/// Harry's flying car, and Harry and Ron; Ron will comment on it.
async fn harrys_flying_car() -> (TestApp, TestUser, TestUser, uuid::Uuid) {
    let app = TestApp::spawn().await;
    let harry = app.user(Role::Student).await;
    let ron = app.user(Role::Student).await;
    let car = app
        .reported(
            &harry,
            ReportIncident::new("Flying car in the Whomping Willow"),
        )
        .await;
    (app, harry, ron, car.id)
}

#[tokio::test]
async fn a_new_notification_reaches_its_owners_connections() {
    let (app, harry, ron, car) = harrys_flying_car().await;
    let mut harrys = app.socket(&harry).await;

    app.comment(&ron, car, "Sorry about the car")
        .await
        .assert_status(201);

    let pushed = harrys.next_named("notification:new").await;
    assert_eq!(pushed["kind"], "comment");
    assert_eq!(pushed["incidentId"], car.to_string());
    assert!(pushed["readAt"].is_null());
    let listed = app.notifications(&harry, "").await;
    assert_eq!(listed.body["items"][0]["id"], pushed["id"]);
}

#[tokio::test]
async fn a_new_notification_reaches_nobody_else() {
    let (app, harry, ron, car) = harrys_flying_car().await;
    let mut harrys = app.socket(&harry).await;
    let mut rons = app.socket(&ron).await;

    app.comment(&ron, car, "Sorry about the car")
        .await
        .assert_status(201);
    harrys.next_named("notification:new").await;

    let rons_events: Vec<_> = rons
        .drain(QUIET)
        .await
        .into_iter()
        .filter(|(name, _)| name == "notification:new")
        .collect();
    assert!(rons_events.is_empty());
}

// ---- presence while Iggy is down ----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs iggy-server on PATH (scripts/test runs it when it is)"]
async fn iggy_process_presence_waits_out_a_dead_log_and_live_clients_miss_nothing() {
    let mut server = IggyServer::start().await;
    let app = TestApp::builder().iggy(&server).spawn().await;
    let harry = app.user(Role::Student).await;
    let mut staying = app.socket(&harry).await;
    let leaving = app.socket(&harry).await;
    let before = app
        .reported(&harry, ReportIncident::new("Before the outage"))
        .await;
    assert_eq!(
        staying.next_named("incident:created").await["offset"],
        before.offset
    );
    app.log().await; // opened while the server is up

    // The log dies; a connection closes meanwhile (its disconnect waits in
    // the buffer), and the socket that stays open is not dropped.
    server.kill_9();
    leaving.close().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.restart().await;

    // Commands work again and the live client gets them, after nothing lost.
    let after = eventually("commands work again", Duration::from_secs(30), || async {
        let answer = app
            .report_incident(&harry, ReportIncident::new("After the outage"))
            .await;
        (answer.status == 201).then(|| answer.event_offset())
    })
    .await;
    assert_eq!(
        staying.next_named("incident:created").await["offset"],
        after
    );

    // The buffered disconnect reached the log once it was back.
    let log = app.log().await;
    let types = eventually(
        "the disconnect reaches the log",
        Duration::from_secs(30),
        || async {
            let records = log
                .read(Topic::PresenceEvents, 0, 100)
                .await
                .unwrap_or_default();
            let events: Vec<Event> = records
                .iter()
                .map(|record| Event::decode(&record.payload).unwrap())
                .collect();
            let of_harry = presence_of(&events, harry.id);
            (count_of(&of_harry, "user.disconnected") >= 1).then_some(of_harry)
        },
    )
    .await;
    assert_eq!(count_of(&types, "user.connected"), 2);
    app.stop().await;
}
