//! Identity over HTTP against a real service and database: accounts,
//! sessions, token rotation and reuse detection, roles, and the outbox
//! invariant — one `auth-events` event per committed change, none for a
//! failed one, delivered in order even after a log outage.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use marauders_map::domain::Role;
use marauders_map::events::{Event, EventPayload, RevocationReason};
use marauders_map::identity::accounts;
use marauders_map::identity::tokens::{AccessClaims, JwtKeys};
use marauders_map::log::{EventLog, Topic};
use marauders_testkit::{
    EVENTUALLY, IggyServer, TEST_JWT_SECRET, TEST_PASSWORD, TestApp, TestUser, eventually,
};
use serde_json::{Value, json};
use uuid::Uuid;

// ---- register ---------------------------------------------------------------

#[tokio::test]
async fn register_creates_a_student_and_returns_a_token_pair() {
    let app = TestApp::spawn().await;

    let harry = app.register("harry@hogwarts.edu", "Harry Potter").await;

    assert_eq!(harry.profile["email"], "harry@hogwarts.edu");
    assert_eq!(harry.profile["displayName"], "Harry Potter");
    assert_eq!(harry.profile["role"], "STUDENT");
    assert!(harry.profile.get("passwordHash").is_none() && harry.profile.get("password").is_none());
    let me = app.me(&harry).await.assert_status(200);
    assert_eq!(me.body["user"], harry.profile);
    assert!(!harry.refresh_token.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn register_names_every_invalid_field() {
    let app = TestApp::spawn().await;

    let answer = app
        .post(
            "/api/auth/register",
            json!({"email": "not-an-email", "password": "short", "displayName": "  "}),
        )
        .await
        .assert_error(400, "bad_request");

    assert_eq!(
        answer.field_error("email"),
        Some("email must look like name@example.com")
    );
    assert_eq!(
        answer.field_error("password"),
        Some("password must be at least 8 characters")
    );
    assert_eq!(
        answer.field_error("displayName"),
        Some("displayName is required")
    );
    app.stop().await;
}

#[tokio::test]
async fn register_without_fields_says_each_is_required() {
    let app = TestApp::spawn().await;

    let answer = app
        .post("/api/auth/register", json!({}))
        .await
        .assert_status(400);

    assert_eq!(answer.field_error("email"), Some("email is required"));
    app.stop().await;
}

#[tokio::test]
async fn register_with_a_taken_email_is_a_conflict_whatever_its_case() {
    let app = TestApp::spawn().await;
    app.register("hermione@hogwarts.edu", "Hermione").await;

    let answer = app
        .post(
            "/api/auth/register",
            json!({"email": "Hermione@Hogwarts.EDU", "password": TEST_PASSWORD, "displayName": "Imposter"}),
        )
        .await
        .assert_error(409, "conflict");

    assert_eq!(
        answer.error_message(),
        "an account with this email already exists"
    );
    app.stop().await;
}

// ---- login ------------------------------------------------------------------

#[tokio::test]
async fn login_opens_a_new_session() {
    let app = TestApp::spawn().await;
    let ron = app.register("ron@hogwarts.edu", "Ron").await;

    let login = app
        .login("RON@hogwarts.edu", TEST_PASSWORD)
        .await
        .assert_status(200);

    assert_eq!(login.body["user"], ron.profile);
    assert_ne!(login.body["refreshToken"], ron.refresh_token.as_str());
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_email_and_a_wrong_password_get_the_same_401() {
    let app = TestApp::spawn().await;
    app.register("neville@hogwarts.edu", "Neville").await;

    let wrong_password = app
        .login("neville@hogwarts.edu", "mimbulus-mimbletonia")
        .await
        .assert_status(401);
    let unknown_email = app
        .login("voldemort@hogwarts.edu", TEST_PASSWORD)
        .await
        .assert_status(401);

    assert_eq!(
        wrong_password.body, unknown_email.body,
        "the two failures must be indistinguishable"
    );
    assert_eq!(wrong_password.error_message(), "invalid email or password");
    app.stop().await;
}

#[tokio::test]
async fn an_impossible_email_is_just_unknown() {
    let app = TestApp::spawn().await;
    app.register("neville@hogwarts.edu", "Neville").await;
    let unknown_email = app.login("voldemort@hogwarts.edu", TEST_PASSWORD).await;

    let with_nul = app
        .login("neville\u{0}@hogwarts.edu", TEST_PASSWORD)
        .await
        .assert_status(401);

    assert_eq!(with_nul.body, unknown_email.body);
    app.stop().await;
}

#[tokio::test]
async fn login_without_a_password_says_it_is_required() {
    let app = TestApp::spawn().await;

    let answer = app
        .post("/api/auth/login", json!({"email": ""}))
        .await
        .assert_status(400);

    assert_eq!(answer.field_error("password"), Some("password is required"));
    app.stop().await;
}

// ---- refresh and logout -------------------------------------------------------

#[tokio::test]
async fn refresh_rotates_the_refresh_token_and_the_new_access_token_works() {
    let app = TestApp::spawn().await;
    let ginny = app.register("ginny@hogwarts.edu", "Ginny").await;

    let rotated = app.refresh(&ginny.refresh_token).await.assert_status(200);

    assert_ne!(rotated.body["refreshToken"], ginny.refresh_token.as_str());
    let access_token = rotated.body["accessToken"].as_str().unwrap();
    app.me(access_token).await.assert_status(200);
    app.stop().await;
}

#[tokio::test]
async fn two_refreshes_of_one_token_at_once_both_get_working_tokens_and_the_session_survives() {
    let app = TestApp::spawn().await;
    let ginny = app.register("ginny@hogwarts.edu", "Ginny").await;

    // Two tabs notice the expired access token at the same moment.
    let (first, second) = futures::future::join(
        app.refresh(&ginny.refresh_token),
        app.refresh(&ginny.refresh_token),
    )
    .await;

    let (first, second) = (first.assert_status(200), second.assert_status(200));
    assert_eq!(
        first.body["refreshToken"], second.body["refreshToken"],
        "both get the one successor"
    );
    for tab in [&first, &second] {
        app.me(tab.body["accessToken"].as_str().unwrap())
            .await
            .assert_status(200);
    }
    // Either tab goes on refreshing, and the session lives.
    let successor = first.body["refreshToken"].as_str().unwrap();
    app.refresh(successor).await.assert_status(200);
    app.stop().await;
}

#[tokio::test]
async fn a_refresh_token_presented_again_within_the_grace_period_gets_the_same_successor() {
    let app = TestApp::spawn().await;
    let ginny = app.register("ginny@hogwarts.edu", "Ginny").await;
    let rotated = app.refresh(&ginny.refresh_token).await.assert_status(200);

    let again = app.refresh(&ginny.refresh_token).await.assert_status(200);

    assert_eq!(again.body["refreshToken"], rotated.body["refreshToken"]);
    app.stop().await;
}

#[tokio::test]
async fn a_reused_refresh_token_is_refused_and_revokes_its_whole_session() {
    let app = TestApp::spawn().await;
    let ginny = app.register("ginny@hogwarts.edu", "Ginny").await;
    let rotated = app.refresh(&ginny.refresh_token).await.assert_status(200);
    app.let_the_refresh_grace_pass().await;

    // The first token comes back: somebody copied it.
    let reused = app.refresh(&ginny.refresh_token).await.assert_status(401);

    assert_eq!(
        reused.error_message(),
        "the refresh token was already used; the session has been revoked"
    );
    // ...so the legitimate holder's newer token dies with the session.
    let newer = rotated.body["refreshToken"].as_str().unwrap();
    app.refresh(newer).await.assert_status(401);
    app.stop().await;
}

#[tokio::test]
async fn a_reused_refresh_token_leaves_the_users_other_sessions_alone() {
    let app = TestApp::spawn().await;
    let ginny = app.register("ginny@hogwarts.edu", "Ginny").await;
    let other_session = app
        .login("ginny@hogwarts.edu", TEST_PASSWORD)
        .await
        .assert_status(200);
    app.refresh(&ginny.refresh_token).await.assert_status(200);
    app.let_the_refresh_grace_pass().await;

    app.refresh(&ginny.refresh_token).await.assert_status(401);

    let other_token = other_session.body["refreshToken"].as_str().unwrap();
    app.refresh(other_token).await.assert_status(200);
    app.stop().await;
}

#[tokio::test]
async fn a_revocation_for_reuse_is_recorded_on_auth_events() {
    let app = TestApp::spawn().await;
    let ginny = app.register("ginny@hogwarts.edu", "Ginny").await;
    app.refresh(&ginny.refresh_token).await.assert_status(200);
    app.let_the_refresh_grace_pass().await;

    app.refresh(&ginny.refresh_token).await.assert_status(401);

    let events = auth_events_before_a_marker(&app).await;
    assert_eq!(
        event_types(&events),
        ["user.registered", "token.refreshed", "session.revoked"]
    );
    match &events[2].payload {
        EventPayload::SessionRevoked(revoked) => {
            assert_eq!(revoked.user_id, ginny.id);
            assert_eq!(revoked.reason, RevocationReason::RefreshTokenReused);
            assert_eq!(revoked.ip, "127.0.0.1");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(events[2].user_id, Some(ginny.id));
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_refresh_token_is_refused() {
    let app = TestApp::spawn().await;

    app.refresh("made-up").await.assert_status(401);
    app.stop().await;
}

#[tokio::test]
async fn a_refresh_without_a_token_says_it_is_required() {
    let app = TestApp::spawn().await;

    let answer = app
        .post("/api/auth/refresh", json!({}))
        .await
        .assert_status(400);

    assert_eq!(
        answer.field_error("refreshToken"),
        Some("refreshToken is required")
    );
    app.stop().await;
}

#[tokio::test]
async fn logout_ends_the_session_and_its_refresh_token() {
    let app = TestApp::spawn().await;
    let luna = app.register("luna@hogwarts.edu", "Luna").await;

    let logout = app.logout(&luna).await.assert_status(204);

    assert_eq!(logout.body, Value::Null);
    app.refresh(&luna.refresh_token).await.assert_status(401);
    app.stop().await;
}

#[tokio::test]
async fn logout_needs_an_access_token() {
    let app = TestApp::spawn().await;

    app.send(app.client.post(app.url("/api/auth/logout")))
        .await
        .assert_status(401);
    app.stop().await;
}

// ---- access tokens --------------------------------------------------------------

/// An access token for `user` claiming PROFESSOR, expiring at `exp`, signed
/// with `secret`.
fn token_signed_with(secret: &[u8], user: &TestUser, exp: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    JwtKeys::from_secret(secret).sign(&AccessClaims {
        sub: user.id,
        role: Role::Professor,
        sid: Uuid::now_v7(),
        iat: now - 7200,
        exp,
    })
}

#[tokio::test]
async fn a_request_without_an_access_token_is_401() {
    let app = TestApp::spawn().await;

    app.get("/api/auth/me")
        .await
        .assert_error(401, "unauthorized");
    app.stop().await;
}

#[tokio::test]
async fn a_forged_access_token_is_401() {
    let app = TestApp::spawn().await;
    let draco = app.register("draco@hogwarts.edu", "Draco").await;
    let in_ten_minutes = chrono::Utc::now().timestamp() + 600;
    let forged = token_signed_with(
        b"another-secret-another-secret-another-secret",
        &draco,
        in_ten_minutes,
    );

    app.me(forged.as_str()).await.assert_status(401);
    app.stop().await;
}

#[tokio::test]
async fn an_expired_access_token_is_401_asking_for_a_refresh() {
    let app = TestApp::spawn().await;
    let draco = app.register("draco@hogwarts.edu", "Draco").await;
    let ten_minutes_ago = chrono::Utc::now().timestamp() - 600;
    let expired = token_signed_with(TEST_JWT_SECRET.as_bytes(), &draco, ten_minutes_ago);

    let answer = app.me(expired.as_str()).await.assert_status(401);

    assert_eq!(
        answer.error_message(),
        "the access token has expired; refresh it"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_authorization_header_that_is_not_bearer_is_401() {
    let app = TestApp::spawn().await;

    app.send(
        app.client
            .get(app.url("/api/auth/me"))
            .header("Authorization", "Basic abc"),
    )
    .await
    .assert_status(401);
    app.stop().await;
}

// ---- roles ----------------------------------------------------------------------

/// Runs `marauders-map user promote <args>` against the app's database.
fn promote(app: &TestApp, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_marauders-map"))
        .args(["user", "promote"])
        .args(args)
        .env("DATABASE_URL", &app.database.url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the binary runs")
}

#[tokio::test]
async fn promote_grants_a_role_from_the_command_line() {
    let app = TestApp::spawn().await;
    app.register("minerva@hogwarts.edu", "Minerva McGonagall")
        .await;

    let output = promote(&app, &["minerva@hogwarts.edu", "professor"]);

    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "minerva@hogwarts.edu is now PROFESSOR (was STUDENT)"
    );
    let login = app.login("minerva@hogwarts.edu", TEST_PASSWORD).await;
    assert_eq!(login.body["user"]["role"], "PROFESSOR");
    app.stop().await;
}

#[tokio::test]
async fn promoting_an_unknown_email_fails_naming_it() {
    let app = TestApp::spawn().await;

    let output = promote(&app, &["nobody@hogwarts.edu", "PREFECT"]);

    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("no user with email nobody@hogwarts.edu")
    );
    app.stop().await;
}

#[tokio::test]
async fn promoting_to_a_role_that_does_not_exist_fails() {
    let app = TestApp::spawn().await;
    app.register("minerva@hogwarts.edu", "Minerva McGonagall")
        .await;

    let output = promote(&app, &["minerva@hogwarts.edu", "HEADMASTER"]);

    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a valid role"));
    app.stop().await;
}

// ---- the outbox -------------------------------------------------------------------

/// Registers a user of its own, whose `user.registered` marks a point in
/// the outbox's order, and returns the `auth-events` events before it once
/// it has arrived: the relay appends in commit order, so everything that
/// committed before it is there too.
async fn auth_events_before_a_marker(app: &TestApp) -> Vec<Event> {
    app.register("marker@hogwarts.edu", "Marker").await;
    eventually("the marker reaches auth-events", EVENTUALLY, || async {
        let events = app.events(Topic::AuthEvents).await;
        let at = events.iter().position(|event| {
            matches!(&event.payload, EventPayload::UserRegistered(data) if data.email == "marker@hogwarts.edu")
        })?;
        Some(events[..at].to_vec())
    })
    .await
}

fn event_types(events: &[Event]) -> Vec<&'static str> {
    events
        .iter()
        .map(|event| event.event_type().as_str())
        .collect()
}

#[tokio::test]
async fn every_committed_account_change_reaches_auth_events_once_in_order() {
    let app = TestApp::spawn().await;
    let percy = app.register("percy@hogwarts.edu", "Percy").await;
    let logged_in = app
        .login("percy@hogwarts.edu", TEST_PASSWORD)
        .await
        .assert_status(200);
    app.refresh(logged_in.body["refreshToken"].as_str().unwrap())
        .await
        .assert_status(200);
    app.logout(&percy).await.assert_status(204);
    accounts::change_role(&app.database.pool, "percy@hogwarts.edu", Role::Prefect)
        .await
        .unwrap();

    let events = auth_events_before_a_marker(&app).await;

    assert_eq!(
        event_types(&events),
        [
            "user.registered",
            "user.logged_in",
            "token.refreshed",
            "user.logged_out",
            "user.role_changed"
        ],
        "exactly one event per committed change, in commit order"
    );
    match &events[0].payload {
        EventPayload::UserRegistered(data) => assert_eq!(
            (data.user_id, data.email.as_str()),
            (percy.id, "percy@hogwarts.edu")
        ),
        other => panic!("unexpected {other:?}"),
    }
    match &events[1].payload {
        EventPayload::UserLoggedIn(data) => assert_eq!(data.ip, "127.0.0.1"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        events[..4]
            .iter()
            .all(|event| event.user_id == Some(percy.id))
    );
    assert_eq!(events[4].user_id, None, "promoted from the command line");
    app.stop().await;
}

#[tokio::test]
async fn a_change_that_did_not_happen_reaches_no_event() {
    let app = TestApp::spawn().await;
    let percy = app.register("percy@hogwarts.edu", "Percy").await;
    app.logout(&percy).await.assert_status(204);

    app.post(
        "/api/auth/register",
        json!({"email": "percy@hogwarts.edu", "password": TEST_PASSWORD, "displayName": "Again"}),
    )
    .await
    .assert_status(409);
    app.login("percy@hogwarts.edu", "wrong-password")
        .await
        .assert_status(401);
    app.logout(&percy).await; // the session has already ended

    let events = auth_events_before_a_marker(&app).await;
    assert_eq!(
        event_types(&events),
        ["user.registered", "user.logged_out"],
        "only what committed is told"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_log_is_paused_the_api_answers_and_events_arrive_in_order_after() {
    let app = TestApp::spawn().await;
    let log = app.log().await;
    // Pause the embedded log: hold the lock every auth-events append needs.
    let mut pause = app.database.pool.begin().await.unwrap();
    sqlx::query("SELECT next_offset FROM event_log_heads WHERE topic = 'auth-events' FOR UPDATE")
        .execute(&mut *pause)
        .await
        .unwrap();

    let started = Instant::now();
    for name in ["fred", "george", "lee"] {
        app.register(&format!("{name}@hogwarts.edu"), name).await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the API does not wait for the log"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        log.log_end(Topic::AuthEvents).await.unwrap(),
        0,
        "nothing reached the paused log"
    );

    pause.rollback().await.unwrap();
    let emails = eventually("three registrations arrive", EVENTUALLY, || async {
        let emails = registered_emails(app.events(Topic::AuthEvents).await);
        (emails.len() >= 3).then_some(emails)
    })
    .await;
    assert_eq!(
        emails,
        [
            "fred@hogwarts.edu",
            "george@hogwarts.edu",
            "lee@hogwarts.edu"
        ]
    );
    app.stop().await;
}

/// The emails of `user.registered` events, each event id once (the relay
/// may re-send a batch; consumers deduplicate by eventId, and so does
/// this).
fn registered_emails(events: Vec<Event>) -> Vec<String> {
    let mut seen = HashSet::new();
    events
        .into_iter()
        .filter(|event| seen.insert(event.event_id))
        .map(|event| match event.payload {
            EventPayload::UserRegistered(data) => data.email,
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs iggy-server on PATH (scripts/test runs it when it is)"]
async fn iggy_process_with_iggy_down_the_api_answers_and_events_arrive_in_order_after() {
    let mut server = IggyServer::start().await;
    let app = TestApp::builder().iggy(&server).spawn().await;
    app.register("before@hogwarts.edu", "Before").await;
    eventually("the first registration arrives", EVENTUALLY, || async {
        (!app.events(Topic::AuthEvents).await.is_empty()).then_some(())
    })
    .await;

    server.kill_9();
    for name in ["fred", "george"] {
        app.register(&format!("{name}@hogwarts.edu"), name).await;
    }
    server.restart().await;

    let log: &EventLog = app.log().await;
    let emails = eventually(
        "the registrations arrive after Iggy came back",
        Duration::from_secs(30),
        || async {
            let records = log
                .read(Topic::AuthEvents, 0, 100)
                .await
                .unwrap_or_default();
            let events = records
                .iter()
                .map(|record| Event::decode(&record.payload).unwrap())
                .collect();
            let emails = registered_emails(events);
            (emails.len() >= 3).then_some(emails)
        },
    )
    .await;
    assert_eq!(
        emails,
        [
            "before@hogwarts.edu",
            "fred@hogwarts.edu",
            "george@hogwarts.edu"
        ]
    );
    app.stop().await;
}

/// A row the relay can never publish (its topic is unknown) is set aside
/// with its error, visible to professors and in the metrics, and the rows
/// behind it are relayed as usual.
#[tokio::test]
async fn a_row_the_relay_cannot_publish_is_set_aside_and_the_rest_go_on() {
    let app = TestApp::spawn().await;
    sqlx::query(
        "INSERT INTO outbox (topic, event_id, payload) VALUES ('owl-post', gen_random_uuid(), '\\x7b7d')",
    )
    .execute(&app.database.pool)
    .await
    .unwrap();
    app.register("percy@hogwarts.edu", "Percy").await;

    let events = auth_events_before_a_marker(&app).await;

    assert_eq!(
        event_types(&events),
        ["user.registered"],
        "Percy's got through"
    );
    let hooch = app.user(Role::Professor).await;
    let outbox = app
        .get_as(&hooch, "/api/admin/outbox")
        .await
        .assert_status(200);
    let set_aside = outbox.body["setAside"].as_array().unwrap();
    assert_eq!(set_aside.len(), 1, "{}", outbox.body);
    assert_eq!(set_aside[0]["topic"], "owl-post");
    assert_eq!(set_aside[0]["error"], "names an unknown topic 'owl-post'");
    assert!(app.metrics().await.contains("marauders_outbox_set_aside 1"));
    let student = app.user(Role::Student).await;
    app.get_as(&student, "/api/admin/outbox")
        .await
        .assert_error(403, "forbidden");
    app.stop().await;
}

/// Published rows are pruned once they are a day old; younger ones, and
/// those not yet published, stay.
#[tokio::test]
async fn the_relay_prunes_rows_published_a_day_ago() {
    let app = TestApp::spawn().await;
    app.register("percy@hogwarts.edu", "Percy").await;
    auth_events_before_a_marker(&app).await;
    let published: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NOT NULL")
            .fetch_one(&app.database.pool)
            .await
            .unwrap();
    assert_eq!(published, 2, "Percy's registration and the marker's");
    sqlx::query(
        "UPDATE outbox SET published_at = now() - interval '25 hours'
          WHERE event_id = (SELECT event_id FROM outbox ORDER BY id LIMIT 1)",
    )
    .execute(&app.database.pool)
    .await
    .unwrap();

    eventually("the day-old row is pruned", EVENTUALLY, || async {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(&app.database.pool)
            .await
            .unwrap();
        (left == 1).then_some(())
    })
    .await;
    app.stop().await;
}
