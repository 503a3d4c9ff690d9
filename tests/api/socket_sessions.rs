//! Connections that obey their token: a Socket.IO connection is closed,
//! with `connection:closing {reason}` first, when its access token expires
//! or its session ends (logout, a reused refresh token) — on every
//! instance — and a client that refreshes and reconnects with its
//! `lastOffset` misses nothing.
//!
//! The product's bounds (15-minute tokens, a logout reaching the sockets
//! within 5 s) are defaults; these tests configure seconds and
//! milliseconds and assert with a wide margin.

use std::time::Duration;

use marauders_map::domain::Role;
use marauders_map::events::Event;
use marauders_map::identity::tokens::JwtKeys;
use marauders_map::log::Topic;
use marauders_testkit::{
    EVENTUALLY, ReportIncident, TEST_JWT_SECRET, TEST_PASSWORD, TestApp, TestAppBuilder,
    TestSocket, TestUser, eventually, incident_events,
};
use serde_json::{Value, json};

use crate::realtime::{QUIET, assert_refused, token};

/// How often the gateway looks at its connections in these tests.
const CHECK_EVERY: Duration = Duration::from_millis(100);

/// The product's bound for a logout to reach the session's sockets: far
/// beyond [`CHECK_EVERY`].
const WITHIN_FIVE_SECONDS: Duration = Duration::from_secs(5);

/// Short enough to wait for, long enough for a test to connect first on a
/// busy machine.
const SHORT_LIFETIME: Duration = Duration::from_secs(4);

/// The service, its gateway looking at its connections every
/// [`CHECK_EVERY`].
fn checking_often() -> TestAppBuilder {
    TestApp::builder().session_check_interval(CHECK_EVERY)
}

/// Asserts the server closes `socket` within the product's 5 s, saying
/// `reason` first.
async fn assert_closed_within_five_seconds_as(socket: &mut TestSocket, reason: &str) {
    let closing = socket.closed_by_server(WITHIN_FIVE_SECONDS).await;
    assert_eq!(closing["reason"], reason, "{closing}");
}

/// `user` with a fresh access token (logged in again).
async fn logged_in_again(app: &TestApp, user: &TestUser) -> TestUser {
    let answer = app
        .login(&user.email, TEST_PASSWORD)
        .await
        .assert_status(200);
    TestUser {
        token: answer.body["accessToken"].as_str().unwrap().to_owned(),
        refresh_token: answer.body["refreshToken"].as_str().unwrap().to_owned(),
        ..user.clone()
    }
}

/// The `exp` claim of an access token.
fn expiry_of(user: &TestUser) -> i64 {
    JwtKeys::from_secret(TEST_JWT_SECRET.as_bytes())
        .verify_access_token(&user.token)
        .expect("a valid token")
        .exp
}

/// The `reason` of each `user.disconnected` of `user`.
async fn disconnect_reasons(app: &TestApp, user: &TestUser) -> Vec<String> {
    app.events(Topic::PresenceEvents)
        .await
        .iter()
        .filter(|event| event.user_id == Some(user.id))
        .map(Event::to_envelope)
        .filter(|envelope| envelope.event_type == "user.disconnected")
        .map(|envelope| envelope.data["reason"].as_str().unwrap().to_owned())
        .collect()
}

/// Asserts `socket` stays open (it may receive presence updates).
async fn assert_still_open(socket: &mut TestSocket) {
    let events = socket.drain(QUIET).await;
    assert!(
        events
            .iter()
            .all(|(name, _)| name != "connection:closing" && name != "#close"),
        "{events:?}"
    );
}

// ---- token lifetime -------------------------------------------------------------

#[tokio::test]
async fn a_socket_is_closed_when_its_access_token_expires_saying_token_expired() {
    let app = checking_often()
        .access_token_lifetime(SHORT_LIFETIME)
        .spawn()
        .await;
    let harry = app.user(Role::Student).await;
    let mut socket = app.socket(&harry).await;

    let closing = socket.closed_by_server(EVENTUALLY).await;

    assert!(
        chrono::Utc::now().timestamp() >= expiry_of(&harry),
        "not before the token expired"
    );
    assert_eq!(closing["reason"], "token_expired");
    assert!(closing["message"].as_str().unwrap().contains("refresh"));
    let reasons = eventually("the disconnect is logged", EVENTUALLY, || async {
        let reasons = disconnect_reasons(&app, &harry).await;
        (!reasons.is_empty()).then_some(reasons)
    })
    .await;
    assert_eq!(reasons, ["token_expired"]);
    app.stop().await;
}

#[tokio::test]
async fn after_token_expired_a_client_with_a_fresh_token_and_its_last_offset_misses_nothing() {
    let app = checking_often()
        .access_token_lifetime(SHORT_LIFETIME)
        .spawn()
        .await;
    let harry = app.user(Role::Student).await;
    let ron = app.user(Role::Prefect).await;
    let mut socket = app.socket(&harry).await;
    let seen = app
        .reported(&ron, ReportIncident::new("Before the token expired"))
        .await;
    assert_eq!(
        socket.next_named("incident:created").await["offset"],
        seen.offset
    );
    socket.closed_by_server(EVENTUALLY).await;

    // While harry is away (his page refreshing its token), two reports.
    let ron = logged_in_again(&app, &ron).await;
    let missed = [
        app.reported(&ron, ReportIncident::new("Missed one")).await,
        app.reported(&ron, ReportIncident::new("Missed two")).await,
    ];
    let refreshed = app.refresh(&harry.refresh_token).await.assert_status(200);
    let mut again = app
        .connect_socket(json!({
            "token": refreshed.body["accessToken"],
            "lastOffset": seen.offset,
        }))
        .await
        .expect("the fresh token is accepted");

    let replayed = incident_events(again.drain(QUIET).await);
    let offsets: Vec<(String, Value)> = replayed
        .iter()
        .map(|(name, payload)| (name.clone(), payload["offset"].clone()))
        .collect();
    assert_eq!(
        offsets,
        [
            ("incident:created".to_owned(), json!(missed[0].offset)),
            ("incident:created".to_owned(), json!(missed[1].offset)),
            ("replay:complete".to_owned(), Value::Null),
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn a_handshake_with_a_token_that_expired_a_second_ago_is_refused_despite_the_leeway() {
    let app = TestApp::spawn().await;
    let harry = app.user(Role::Student).await;
    // Within the verifier's 5 s leeway, which the REST API allows.
    let a_second_ago = chrono::Utc::now().timestamp() - 1;
    let expired = token(&harry, TEST_JWT_SECRET, a_second_ago);

    assert_refused(&app, json!({ "token": expired }), "expired").await;
    app.stop().await;
}

// ---- sessions that end ---------------------------------------------------------------

#[tokio::test]
async fn logging_out_closes_the_sessions_sockets_on_every_instance_within_five_seconds() {
    let first = checking_often().spawn().await;
    let second = first.second_instance().await;
    let harry = first.user(Role::Student).await;
    let hermione = first.user(Role::Student).await;
    let mut on_first = first.socket(&harry).await;
    let mut on_second = second.socket(&harry).await;
    let mut other_session = first.socket(&hermione).await;

    first.logout(&harry).await.assert_status(204);

    for socket in [&mut on_first, &mut on_second] {
        assert_closed_within_five_seconds_as(socket, "logged_out").await;
    }
    assert_still_open(&mut other_session).await;
    // The token itself is valid for minutes yet, but not for a socket.
    assert_refused(&second, json!({ "token": harry.token }), "logged out").await;
    second.stop().await;
    first.stop().await;
}

#[tokio::test]
async fn a_reused_refresh_token_closes_the_sessions_sockets_as_revoked() {
    let app = checking_often().spawn().await;
    let harry = app.user(Role::Student).await;
    let mut socket = app.socket(&harry).await;
    // A rotation keeps the session, and the socket, alive.
    let rotated = app.refresh(&harry.refresh_token).await.assert_status(200);
    let mut rotated_socket = app
        .connect_socket(json!({ "token": rotated.body["accessToken"] }))
        .await
        .expect("the rotated token is accepted");
    assert_still_open(&mut socket).await;
    // Presented again after the grace period (within it, it would be a
    // second tab): somebody copied it.
    app.let_the_refresh_grace_pass().await;

    app.refresh(&harry.refresh_token).await.assert_status(401);

    for socket in [&mut socket, &mut rotated_socket] {
        assert_closed_within_five_seconds_as(socket, "session_revoked").await;
    }
    app.stop().await;
}
