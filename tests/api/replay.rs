//! `GET /api/events/replay`: the seed's replay cases, paging, who may read
//! which topic, and every bad parameter answered with a 400 naming it.

use bytes::Bytes;
use marauders_map::domain::Role;
use marauders_map::events::Event;
use marauders_map::log::{LogMessage, Topic};
use marauders_testkit::events::user_joined_room;
use marauders_testkit::{ApiResponse, TestApp};
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
    let draco = app.user(Role::Student).await;
    let events = append_presence_events(&app, 10).await;

    let page = app
        .replay(&draco, "topic=presence-events&fromOffset=6")
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
    let draco = app.user(Role::Student).await;
    append_presence_events(&app, 10).await;

    let page = app
        .replay(&draco, "topic=presence-events&fromOffset=10")
        .await
        .assert_status(200);

    assert_eq!(offsets(&page), Vec::<u64>::new());
    assert_eq!(next_and_caught_up(&page), (Some(10), Some(true)));
    app.stop().await;
}

#[tokio::test]
async fn pages_default_to_100_events() {
    let app = TestApp::spawn().await;
    let goyle = app.user(Role::Student).await;
    append_presence_events(&app, 150).await;

    let page = app.replay(&goyle, "topic=presence-events").await;

    assert_eq!(offsets(&page).len(), 100);
    assert_eq!(next_and_caught_up(&page), (Some(100), Some(false)));
    app.stop().await;
}

#[tokio::test]
async fn a_page_is_capped_at_1000_events() {
    let app = TestApp::spawn().await;
    let goyle = app.user(Role::Student).await;
    append_presence_events(&app, 1100).await;

    let page = app
        .replay(&goyle, "topic=presence-events&fromOffset=50&limit=5000")
        .await;

    let got = offsets(&page);
    assert_eq!((got.len(), got[0], got[999]), (1000, 50, 1049));
    app.stop().await;
}

#[tokio::test]
async fn auth_events_are_for_professors_only() {
    let app = TestApp::spawn().await;
    let lavender = app.user(Role::Student).await;
    let cormac = app.user(Role::Prefect).await;
    let flitwick = app.user(Role::Professor).await;

    for who in [&lavender, &cormac] {
        app.replay(who, "topic=auth-events")
            .await
            .assert_error(403, "forbidden");
    }
    app.replay(&flitwick, "topic=auth-events")
        .await
        .assert_status(200);
    app.stop().await;
}

#[tokio::test]
async fn anyone_may_replay_presence_events() {
    let app = TestApp::spawn().await;
    let lavender = app.user(Role::Student).await;

    app.replay(&lavender, "topic=presence-events")
        .await
        .assert_status(200);
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
    let hannah = app.user(Role::Student).await;
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
        .replay(&hannah, "topic=presence-events")
        .await
        .assert_status(200);

    assert_eq!(offsets(&page), [0]);
    assert_eq!(page.body["nextOffset"], 2);
    app.stop().await;
}
