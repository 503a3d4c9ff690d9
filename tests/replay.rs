//! `GET /api/events/replay`: the seed's replay cases, paging, who may read
//! which topic, and every bad parameter answered with a 400 naming it.

mod common;

use bytes::Bytes;
use common::{TestApp, spawn_app};
use marauders_map::domain::Role;
use marauders_map::events::{Event, EventPayload, UserJoinedRoom};
use marauders_map::log::{EventLog, LogConfig, LogMessage, Topic};
use serde_json::Value;
use uuid::Uuid;

async fn append_presence_events(app: &TestApp, count: usize) -> Vec<Event> {
    let log = EventLog::open(LogConfig::Postgres(app.database.pool.clone()))
        .await
        .unwrap();
    let events: Vec<Event> = (0..count)
        .map(|n| {
            let payload = EventPayload::UserJoinedRoom(UserJoinedRoom {
                user_id: Uuid::now_v7(),
                room: format!("incident:{n}"),
            });
            Event::new(payload, None)
        })
        .collect();
    for chunk in events.chunks(500) {
        let messages: Vec<LogMessage> = chunk.iter().map(Event::to_log_message).collect();
        log.append(Topic::PresenceEvents, &messages).await.unwrap();
    }
    log.shutdown().await;
    events
}

fn offsets(page: &Value) -> Vec<u64> {
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["offset"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn a_client_at_offset_5_of_10_gets_6_to_9_in_order_and_a_client_at_9_gets_nothing() {
    let app = spawn_app().await;
    let (_, token) = app
        .user_with_role("draco@hogwarts.edu", Role::Student)
        .await;
    let events = append_presence_events(&app, 10).await;

    let (status, page) = app
        .get_as(
            "/api/events/replay?topic=presence-events&fromOffset=6",
            &token,
        )
        .await;

    assert_eq!(status, 200, "{page}");
    assert_eq!(page["topic"], "presence-events");
    assert_eq!(offsets(&page), [6, 7, 8, 9]);
    assert_eq!(
        page["events"][0]["event"]["eventId"],
        events[6].event_id.to_string()
    );
    assert_eq!(page["events"][0]["event"]["eventType"], "user.joined_room");
    assert_eq!(
        (page["nextOffset"].as_u64(), page["caughtUp"].as_bool()),
        (Some(10), Some(true))
    );

    let (status, page) = app
        .get_as(
            "/api/events/replay?topic=presence-events&fromOffset=10",
            &token,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(offsets(&page), Vec::<u64>::new());
    assert_eq!(
        (page["nextOffset"].as_u64(), page["caughtUp"].as_bool()),
        (Some(10), Some(true))
    );
    app.stop().await;
}

#[tokio::test]
async fn pages_default_to_100_and_are_capped_at_1000() {
    let app = spawn_app().await;
    let (_, token) = app
        .user_with_role("goyle@hogwarts.edu", Role::Student)
        .await;
    append_presence_events(&app, 1100).await;

    let (_, page) = app
        .get_as("/api/events/replay?topic=presence-events", &token)
        .await;
    assert_eq!(offsets(&page).len(), 100);
    assert_eq!(
        (page["nextOffset"].as_u64(), page["caughtUp"].as_bool()),
        (Some(100), Some(false))
    );

    let (_, page) = app
        .get_as(
            "/api/events/replay?topic=presence-events&fromOffset=50&limit=5000",
            &token,
        )
        .await;
    let got = offsets(&page);
    assert_eq!((got.len(), got[0], got[999]), (1000, 50, 1049));
    app.stop().await;
}

#[tokio::test]
async fn the_audit_topic_is_for_professors_only() {
    let app = spawn_app().await;
    let (_, student) = app
        .user_with_role("lavender@hogwarts.edu", Role::Student)
        .await;
    let (_, prefect) = app
        .user_with_role("cormac@hogwarts.edu", Role::Prefect)
        .await;
    let (_, professor) = app
        .user_with_role("flitwick@hogwarts.edu", Role::Professor)
        .await;

    for token in [&student, &prefect] {
        let (status, body) = app
            .get_as("/api/events/replay?topic=auth-events", token)
            .await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["error"]["code"], "forbidden");
    }
    let (status, page) = app
        .get_as("/api/events/replay?topic=auth-events", &professor)
        .await;
    assert_eq!(status, 200, "{page}");
    let (status, _) = app
        .get_as("/api/events/replay?topic=presence-events", &student)
        .await;
    assert_eq!(status, 200);
    let (status, _) = app.get("/api/events/replay").await;
    assert_eq!(status, 401);
    app.stop().await;
}

#[tokio::test]
async fn bad_parameters_are_400_naming_the_parameter() {
    let app = spawn_app().await;
    let (_, token) = app
        .user_with_role("zacharias@hogwarts.edu", Role::Student)
        .await;
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
        let (status, body) = app
            .get_as(&format!("/api/events/replay?{query}"), &token)
            .await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(
            body["error"]["fields"][field].is_string(),
            "{query}: {body}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn an_undecodable_message_is_skipped_but_paging_moves_past_it() {
    let app = spawn_app().await;
    let (_, token) = app
        .user_with_role("hannah@hogwarts.edu", Role::Student)
        .await;
    append_presence_events(&app, 1).await;
    let log = EventLog::open(LogConfig::Postgres(app.database.pool.clone()))
        .await
        .unwrap();
    log.append(
        Topic::PresenceEvents,
        &[LogMessage {
            id: Uuid::now_v7(),
            payload: Bytes::from_static(b"garbage"),
        }],
    )
    .await
    .unwrap();

    let (status, page) = app
        .get_as("/api/events/replay?topic=presence-events", &token)
        .await;
    assert_eq!(status, 200);
    assert_eq!(offsets(&page), [0]);
    assert_eq!(page["nextOffset"], 2);
    log.shutdown().await;
    app.stop().await;
}
