//! `GET /api/events/replay`: the seed's replay cases, paging, who may read
//! which topic (`role_needed_to_replay`), old events served in today's
//! shape, and every bad parameter answered with a 400 naming it.

use bytes::Bytes;
use marauders_map::domain::Role;
use marauders_map::events::{Event, connection_id_of_socket_id};
use marauders_map::log::{LogMessage, Topic};
use marauders_testkit::events::user_joined_room;
use marauders_testkit::{ApiResponse, TestApp, TestUser};
use serde_json::json;
use uuid::Uuid;

async fn append_presence_events(app: &TestApp, count: usize) -> Vec<Event> {
    let events: Vec<Event> = (0..count)
        .map(|n| user_joined_room(&format!("incident:{n}")))
        .collect();
    for chunk in events.chunks(500) {
        let messages: Vec<LogMessage> = chunk.iter().map(Event::to_log_message).collect();
        app.log()
            .await
            .append(Topic::PresenceEvents, &messages)
            .await
            .unwrap();
    }
    events
}

fn offsets(page: &ApiResponse) -> Vec<u64> {
    page.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["offset"].as_u64().unwrap())
        .collect()
}

fn next_and_caught_up(page: &ApiResponse) -> (Option<u64>, Option<bool>) {
    (
        page.body["nextOffset"].as_u64(),
        page.body["caughtUp"].as_bool(),
    )
}

#[tokio::test]
async fn a_client_at_offset_5_of_10_gets_6_to_9_in_order() {
    let app = TestApp::spawn().await;
    let percy = app.user(Role::Prefect).await;
    let events = append_presence_events(&app, 10).await;

    let page = app
        .replay(&percy, "topic=presence-events&fromOffset=6")
        .await
        .assert_status(200);

    assert_eq!(page.body["topic"], "presence-events");
    assert_eq!(offsets(&page), [6, 7, 8, 9]);
    assert_eq!(
        page.body["events"][0]["event"]["eventId"],
        events[6].event_id.to_string()
    );
    assert_eq!(
        page.body["events"][0]["event"]["eventType"],
        "user.joined_room"
    );
    assert_eq!(next_and_caught_up(&page), (Some(10), Some(true)));
    app.stop().await;
}

#[tokio::test]
async fn a_client_at_the_end_gets_nothing_and_is_caught_up() {
    let app = TestApp::spawn().await;
    let percy = app.user(Role::Prefect).await;
    append_presence_events(&app, 10).await;

    let page = app
        .replay(&percy, "topic=presence-events&fromOffset=10")
        .await
        .assert_status(200);

    assert_eq!(offsets(&page), Vec::<u64>::new());
    assert_eq!(next_and_caught_up(&page), (Some(10), Some(true)));
    app.stop().await;
}

#[tokio::test]
async fn pages_default_to_100_events() {
    let app = TestApp::spawn().await;
    let penelope = app.user(Role::Prefect).await;
    append_presence_events(&app, 150).await;

    let page = app.replay(&penelope, "topic=presence-events").await;

    assert_eq!(offsets(&page).len(), 100);
    assert_eq!(next_and_caught_up(&page), (Some(100), Some(false)));
    app.stop().await;
}

#[tokio::test]
async fn a_page_is_capped_at_1000_events() {
    let app = TestApp::spawn().await;
    let penelope = app.user(Role::Prefect).await;
    append_presence_events(&app, 1100).await;

    let page = app
        .replay(&penelope, "topic=presence-events&fromOffset=50&limit=5000")
        .await;

    let got = offsets(&page);
    assert_eq!((got.len(), got[0], got[999]), (1000, 50, 1049));
    app.stop().await;
}

/// Asserts what `who` may replay: 200 for each topic in `allowed`, 403
/// with the JSON error naming the topic for every other.
async fn assert_replays_only(app: &TestApp, who: &TestUser, allowed: &[Topic]) {
    for topic in Topic::ALL {
        let answer = app.replay(who, &format!("topic={topic}")).await;
        if allowed.contains(&topic) {
            answer.assert_status(200);
        } else {
            let refused = answer.assert_error(403, "forbidden");
            assert!(
                refused.body["error"]["message"]
                    .as_str()
                    .is_some_and(|message| message.contains(topic.name())),
                "{}",
                refused.body
            );
        }
    }
}

#[tokio::test]
async fn a_student_may_replay_incident_events_only() {
    let app = TestApp::spawn().await;
    let lavender = app.user(Role::Student).await;

    assert_replays_only(&app, &lavender, &[Topic::IncidentEvents]).await;
    app.stop().await;
}

#[tokio::test]
async fn a_prefect_may_replay_incident_and_presence_events_but_not_the_audit_log() {
    let app = TestApp::spawn().await;
    let cormac = app.user(Role::Prefect).await;

    assert_replays_only(
        &app,
        &cormac,
        &[Topic::IncidentEvents, Topic::PresenceEvents],
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_professor_may_replay_every_topic() {
    let app = TestApp::spawn().await;
    let flitwick = app.user(Role::Professor).await;

    assert_replays_only(&app, &flitwick, &Topic::ALL).await;
    app.stop().await;
}

#[tokio::test]
async fn the_default_topic_is_incident_events_which_a_student_may_replay() {
    let app = TestApp::spawn().await;
    let lavender = app.user(Role::Student).await;

    let page = app.replay(&lavender, "").await.assert_status(200);

    assert_eq!(page.body["topic"], "incident-events");
    app.stop().await;
}

#[tokio::test]
async fn a_version_1_presence_event_is_served_without_its_socket_id() {
    let app = TestApp::spawn().await;
    let minerva = app.user(Role::Professor).await;
    // As version 1 wrote it: the connection named by its Socket.IO id.
    let version_1 = format!(
        r#"{{"eventId":"{id}","eventType":"user.connected","timestamp":"2024-10-31T18:59:00Z","source":"gryffindor-api","userId":"{user}","data":{{"role":"STUDENT","socketId":"Xk3_still-a-secret","userId":"{user}"}}}}"#,
        id = Uuid::now_v7(),
        user = minerva.id,
    );
    app.log()
        .await
        .append(
            Topic::PresenceEvents,
            &[LogMessage {
                id: Uuid::now_v7(),
                payload: Bytes::from(version_1),
            }],
        )
        .await
        .unwrap();

    let page = app
        .replay(&minerva, "topic=presence-events")
        .await
        .assert_status(200);

    let data = &page.body["events"][0]["event"]["data"];
    assert_eq!(
        data,
        &json!({
            "userId": minerva.id,
            "connectionId": connection_id_of_socket_id("Xk3_still-a-secret"),
            "role": "STUDENT",
        })
    );
    assert!(!page.body.to_string().contains("Xk3_still-a-secret"));
    app.stop().await;
}

#[tokio::test]
async fn replay_needs_an_access_token() {
    let app = TestApp::spawn().await;

    app.get("/api/events/replay").await.assert_status(401);
    app.stop().await;
}

#[tokio::test]
async fn bad_parameters_are_400_naming_the_parameter() {
    let app = TestApp::spawn().await;
    let zacharias = app.user(Role::Student).await;
    for (query, field) in [
        ("fromOffset=-1", "fromOffset"),
        ("fromOffset=abc", "fromOffset"),
        ("fromOffset=99999999999999999999999", "fromOffset"),
        ("fromOffset=9223372036854775808", "fromOffset"),
        ("limit=0", "limit"),
        ("limit=-5", "limit"),
        ("limit=lots", "limit"),
        ("topic=notification-events", "topic"),
    ] {
        let answer = app.replay(&zacharias, query).await.assert_status(400);
        assert!(
            answer.field_error(field).is_some(),
            "{query}: {}",
            answer.body
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn an_undecodable_message_is_skipped_but_paging_moves_past_it() {
    let app = TestApp::spawn().await;
    let cedric = app.user(Role::Prefect).await;
    append_presence_events(&app, 1).await;
    let garbage = LogMessage {
        id: Uuid::now_v7(),
        payload: Bytes::from_static(b"garbage"),
    };
    app.log()
        .await
        .append(Topic::PresenceEvents, &[garbage])
        .await
        .unwrap();

    let page = app
        .replay(&cedric, "topic=presence-events")
        .await
        .assert_status(200);

    assert_eq!(offsets(&page), [0]);
    assert_eq!(page.body["nextOffset"], 2);
    app.stop().await;
}
