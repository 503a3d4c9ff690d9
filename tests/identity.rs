//! Identity over HTTP against a real service and database: accounts,
//! sessions, token rotation and reuse detection, roles, the error contract,
//! and the outbox invariant — one `auth-events` event per committed change,
//! none for a failed one, delivered in order even after a log outage.

mod common;

use std::time::{Duration, Instant};

use common::{TEST_JWT_SECRET, TestApp, spawn_app};
use marauders_map::domain::Role;
use marauders_map::events::{Event, EventPayload};
use marauders_map::identity::accounts;
use marauders_map::identity::tokens::{AccessClaims, JwtKeys};
use marauders_map::log::{EventLog, LogConfig, Topic};
use serde_json::{Value, json};
use uuid::Uuid;

fn token(body: &Value, name: &str) -> String {
    body[name]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} in {body}"))
        .to_owned()
}

async fn login(app: &TestApp, email: &str, password: &str) -> (u16, Value) {
    app.post_json(
        "/api/auth/login",
        json!({"email": email, "password": password}),
    )
    .await
}

// ---- register ---------------------------------------------------------------

#[tokio::test]
async fn register_creates_a_student_and_returns_a_token_pair() {
    let app = spawn_app().await;

    let body = app.register("harry@hogwarts.edu", "Harry Potter").await;

    assert_eq!(body["user"]["email"], "harry@hogwarts.edu");
    assert_eq!(body["user"]["displayName"], "Harry Potter");
    assert_eq!(body["user"]["role"], "STUDENT");
    assert!(Uuid::parse_str(body["user"]["id"].as_str().unwrap()).is_ok());
    assert!(body["user"].get("passwordHash").is_none() && body["user"].get("password").is_none());
    let (status, me) = app
        .get_as("/api/auth/me", &token(&body, "accessToken"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(me["user"], body["user"]);
    assert!(!token(&body, "refreshToken").is_empty());
    app.stop().await;
}

#[tokio::test]
async fn register_names_every_invalid_field() {
    let app = spawn_app().await;

    let (status, body) = app
        .post_json(
            "/api/auth/register",
            json!({"email": "not-an-email", "password": "short", "displayName": "  "}),
        )
        .await;

    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "bad_request");
    let fields = &body["error"]["fields"];
    assert_eq!(fields["email"], "email must look like name@example.com");
    assert_eq!(fields["password"], "password must be at least 8 characters");
    assert_eq!(fields["displayName"], "displayName is required");

    let (status, body) = app.post_json("/api/auth/register", json!({})).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["fields"]["email"], "email is required");
    app.stop().await;
}

#[tokio::test]
async fn register_with_a_taken_email_is_a_conflict_whatever_its_case() {
    let app = spawn_app().await;
    app.register("hermione@hogwarts.edu", "Hermione").await;

    let (status, body) = app
        .post_json(
            "/api/auth/register",
            json!({"email": "Hermione@Hogwarts.EDU", "password": "alohomora-123", "displayName": "Imposter"}),
        )
        .await;

    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "conflict");
    assert_eq!(
        body["error"]["message"],
        "an account with this email already exists"
    );
    app.stop().await;
}

// ---- login ------------------------------------------------------------------

#[tokio::test]
async fn login_opens_a_new_session() {
    let app = spawn_app().await;
    let registered = app.register("ron@hogwarts.edu", "Ron").await;

    let (status, body) = login(&app, "RON@hogwarts.edu", "alohomora-123").await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"], registered["user"]);
    assert_ne!(
        token(&body, "refreshToken"),
        token(&registered, "refreshToken")
    );
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_email_and_a_wrong_password_get_the_same_401() {
    let app = spawn_app().await;
    app.register("neville@hogwarts.edu", "Neville").await;

    let (wrong_password_status, wrong_password) =
        login(&app, "neville@hogwarts.edu", "mimbulus-mimbletonia").await;
    let (unknown_email_status, unknown_email) =
        login(&app, "voldemort@hogwarts.edu", "alohomora-123").await;

    assert_eq!((wrong_password_status, unknown_email_status), (401, 401));
    assert_eq!(
        wrong_password, unknown_email,
        "the two failures must be indistinguishable"
    );
    assert_eq!(
        wrong_password["error"]["message"],
        "invalid email or password"
    );

    let (status, nul) = login(&app, "neville\u{0}@hogwarts.edu", "alohomora-123").await;
    assert_eq!(
        (status, &nul),
        (401, &unknown_email),
        "an impossible email is just unknown"
    );

    let (status, body) = app.post_json("/api/auth/login", json!({"email": ""})).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["fields"]["password"], "password is required");
    app.stop().await;
}

// ---- refresh and logout -------------------------------------------------------

#[tokio::test]
async fn refresh_rotates_and_a_reused_token_revokes_the_whole_session() {
    let app = spawn_app().await;
    let registered = app.register("ginny@hogwarts.edu", "Ginny").await;
    let first = token(&registered, "refreshToken");

    let (status, rotated) = app
        .post_json("/api/auth/refresh", json!({"refreshToken": first}))
        .await;
    assert_eq!(status, 200, "{rotated}");
    let second = token(&rotated, "refreshToken");
    assert_ne!(first, second);
    let (status, _) = app
        .get_as("/api/auth/me", &token(&rotated, "accessToken"))
        .await;
    assert_eq!(status, 200);

    // The first token comes back: somebody copied it.
    let (status, body) = app
        .post_json("/api/auth/refresh", json!({"refreshToken": first}))
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        body["error"]["message"],
        "the refresh token was already used; the session has been revoked"
    );
    // ...so the legitimate holder's newer token dies with the session.
    let (status, _) = app
        .post_json("/api/auth/refresh", json!({"refreshToken": second}))
        .await;
    assert_eq!(status, 401);

    // Other sessions of the same user are untouched.
    let (status, other) = login(&app, "ginny@hogwarts.edu", "alohomora-123").await;
    assert_eq!(status, 200);
    let (status, _) = app
        .post_json(
            "/api/auth/refresh",
            json!({"refreshToken": token(&other, "refreshToken")}),
        )
        .await;
    assert_eq!(status, 200);
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_or_missing_refresh_token_is_refused() {
    let app = spawn_app().await;
    let (status, body) = app
        .post_json("/api/auth/refresh", json!({"refreshToken": "made-up"}))
        .await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = app.post_json("/api/auth/refresh", json!({})).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["fields"]["refreshToken"],
        "refreshToken is required"
    );
    app.stop().await;
}

#[tokio::test]
async fn logout_ends_the_session_and_its_refresh_token() {
    let app = spawn_app().await;
    let registered = app.register("luna@hogwarts.edu", "Luna").await;

    let (status, body) = app
        .post_as(
            "/api/auth/logout",
            &token(&registered, "accessToken"),
            json!({}),
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(body, Value::Null);

    let (status, _) = app
        .post_json(
            "/api/auth/refresh",
            json!({"refreshToken": token(&registered, "refreshToken")}),
        )
        .await;
    assert_eq!(status, 401);
    let (status, _) = app.send(app.client.post(app.url("/api/auth/logout"))).await;
    assert_eq!(status, 401, "logout needs an access token");
    app.stop().await;
}

// ---- access tokens --------------------------------------------------------------

#[tokio::test]
async fn missing_forged_and_expired_access_tokens_are_refused() {
    let app = spawn_app().await;
    let registered = app.register("draco@hogwarts.edu", "Draco").await;
    let user_id = Uuid::parse_str(registered["user"]["id"].as_str().unwrap()).unwrap();
    let now = chrono::Utc::now().timestamp();
    let claims = |exp| AccessClaims {
        sub: user_id,
        role: Role::Professor,
        sid: Uuid::now_v7(),
        iat: now - 7200,
        exp,
    };
    let forged = JwtKeys::from_secret(b"another-secret-another-secret-another-secret")
        .sign(&claims(now + 600));
    let expired = JwtKeys::from_secret(TEST_JWT_SECRET.as_bytes()).sign(&claims(now - 600));

    let (status, body) = app.get("/api/auth/me").await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "unauthorized");
    let (status, _) = app.get_as("/api/auth/me", &forged).await;
    assert_eq!(status, 401);
    let (status, body) = app.get_as("/api/auth/me", &expired).await;
    assert_eq!(status, 401);
    assert_eq!(
        body["error"]["message"],
        "the access token has expired; refresh it"
    );
    let (status, _) = app
        .send(
            app.client
                .get(app.url("/api/auth/me"))
                .header("Authorization", "Basic abc"),
        )
        .await;
    assert_eq!(status, 401);
    app.stop().await;
}

// ---- the error contract ---------------------------------------------------------

#[tokio::test]
async fn bad_bodies_get_json_errors_with_the_right_status() {
    let app = spawn_app().await;
    let register = app.url("/api/auth/register");
    let json_request = || {
        app.client
            .post(&register)
            .header("Content-Type", "application/json")
    };

    let (status, body) = app.send(json_request().body("{\"email\": ")).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("malformed JSON"),
        "{body}"
    );

    let (status, body) = app
        .send(json_request().body(r#"{"email": 42, "password": [], "displayName": {}}"#))
        .await;
    assert_eq!(status, 400, "wrong types: {body}");
    assert_eq!(body["error"]["code"], "bad_request");

    let (status, body) = app
        .send(
            app.client
                .post(&register)
                .header("Content-Type", "text/plain")
                .body("hello"),
        )
        .await;
    assert_eq!(status, 415);
    assert_eq!(body["error"]["code"], "unsupported_media_type");

    let huge = format!(r#"{{"email": "{}"}}"#, "x".repeat(100 * 1024));
    let (status, body) = app.send(json_request().body(huge)).await;
    assert_eq!(status, 413);
    assert_eq!(body["error"]["code"], "payload_too_large");

    let (status, body) = app.send(app.client.delete(&register)).await;
    assert_eq!(status, 405);
    assert_eq!(body["error"]["code"], "method_not_allowed");
    app.stop().await;
}

// ---- roles ----------------------------------------------------------------------

#[tokio::test]
async fn promote_grants_a_role_from_the_command_line() {
    let app = spawn_app().await;
    app.register("minerva@hogwarts.edu", "Minerva McGonagall")
        .await;
    let promote = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_marauders-map"))
            .args(["user", "promote"])
            .args(args)
            .env("DATABASE_URL", &app.database.url)
            .env("RUST_LOG", "warn")
            .output()
            .expect("the binary runs")
    };

    let output = promote(&["minerva@hogwarts.edu", "professor"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "minerva@hogwarts.edu is now PROFESSOR (was STUDENT)"
    );
    let (_, body) = login(&app, "minerva@hogwarts.edu", "alohomora-123").await;
    assert_eq!(body["user"]["role"], "PROFESSOR");

    let unknown = promote(&["nobody@hogwarts.edu", "PREFECT"]);
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no user with email nobody@hogwarts.edu")
    );
    let bad_role = promote(&["minerva@hogwarts.edu", "HEADMASTER"]);
    assert!(!bad_role.status.success());
    assert!(String::from_utf8_lossy(&bad_role.stderr).contains("not a valid role"));
    app.stop().await;
}

// ---- the outbox -------------------------------------------------------------------

async fn auth_events(log: &EventLog, count: usize) -> Vec<Event> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let records = log.read(Topic::AuthEvents, 0, 100).await.unwrap();
        if records.len() >= count {
            return records
                .iter()
                .map(|record| Event::decode(&record.payload).unwrap())
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {count} auth events arrived",
            records.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn event_types(events: &[Event]) -> Vec<&'static str> {
    events
        .iter()
        .map(|event| event.event_type().as_str())
        .collect()
}

#[tokio::test]
async fn every_committed_account_change_reaches_auth_events_once_in_order() {
    let app = spawn_app().await;
    let log = EventLog::open(LogConfig::Postgres(app.database.pool.clone()))
        .await
        .unwrap();

    let registered = app.register("percy@hogwarts.edu", "Percy").await;
    let (_, logged_in) = login(&app, "percy@hogwarts.edu", "alohomora-123").await;
    let (status, _) = app
        .post_json(
            "/api/auth/refresh",
            json!({"refreshToken": token(&logged_in, "refreshToken")}),
        )
        .await;
    assert_eq!(status, 200);
    app.post_as(
        "/api/auth/logout",
        &token(&registered, "accessToken"),
        json!({}),
    )
    .await;
    accounts::change_role(&app.database.pool, "percy@hogwarts.edu", Role::Prefect)
        .await
        .unwrap();
    // Changes that did not happen must not be told:
    let (status, _) = app
        .post_json("/api/auth/register", json!({"email": "percy@hogwarts.edu", "password": "alohomora-123", "displayName": "Again"}))
        .await;
    assert_eq!(status, 409);
    let (status, _) = login(&app, "percy@hogwarts.edu", "wrong-password").await;
    assert_eq!(status, 401);
    app.post_as(
        "/api/auth/logout",
        &token(&registered, "accessToken"),
        json!({}),
    )
    .await; // already ended

    let events = auth_events(&log, 5).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let settled = log.read(Topic::AuthEvents, 0, 100).await.unwrap();
    assert_eq!(settled.len(), 5, "exactly one event per committed change");
    assert_eq!(
        event_types(&events),
        [
            "user.registered",
            "user.logged_in",
            "token.refreshed",
            "user.logged_out",
            "user.role_changed"
        ]
    );
    let user_id = Uuid::parse_str(registered["user"]["id"].as_str().unwrap()).unwrap();
    match &events[0].payload {
        EventPayload::UserRegistered(data) => assert_eq!(
            (data.user_id, data.email.as_str()),
            (user_id, "percy@hogwarts.edu")
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
            .all(|event| event.user_id == Some(user_id))
    );
    assert_eq!(events[4].user_id, None, "promoted from the command line");
    log.shutdown().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_log_is_paused_the_api_answers_and_events_arrive_in_order_after() {
    let app = spawn_app().await;
    let log = EventLog::open(LogConfig::Postgres(app.database.pool.clone()))
        .await
        .unwrap();
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
    let events = auth_events(&log, 3).await;
    let emails: Vec<String> = events
        .iter()
        .map(|event| match &event.payload {
            EventPayload::UserRegistered(data) => data.email.clone(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        emails,
        [
            "fred@hogwarts.edu",
            "george@hogwarts.edu",
            "lee@hogwarts.edu"
        ]
    );
    log.shutdown().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs iggy-server on PATH (scripts/test runs it when it is)"]
async fn iggy_process_with_iggy_down_the_api_answers_and_events_arrive_in_order_after() {
    let common::TestBackend::Iggy { mut server, .. } = common::TestBackend::iggy().await else {
        unreachable!()
    };
    let app = common::spawn_app_with_iggy(Some(server.url.clone())).await;
    let reader = EventLog::open(LogConfig::Iggy(
        server.config(marauders_map::log::STREAM_NAME),
    ))
    .await
    .unwrap();
    reader
        .wait_until_ready(Duration::from_secs(20))
        .await
        .unwrap();
    app.register("before@hogwarts.edu", "Before").await;
    auth_events(&reader, 1).await;

    server.kill_9();
    for name in ["fred", "george"] {
        app.register(&format!("{name}@hogwarts.edu"), name).await;
    }
    server.restart().await;

    // The relay may re-send a batch whose append the server took just as it
    // died; consumers deduplicate by eventId, and so does this check.
    let deadline = Instant::now() + Duration::from_secs(30);
    let emails = loop {
        let records = reader
            .read(Topic::AuthEvents, 0, 100)
            .await
            .unwrap_or_default();
        let mut seen = std::collections::HashSet::new();
        let emails: Vec<String> = records
            .iter()
            .map(|record| Event::decode(&record.payload).unwrap())
            .filter(|event| seen.insert(event.event_id))
            .map(|event| match event.payload {
                EventPayload::UserRegistered(data) => data.email,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        if emails.len() >= 3 {
            break emails;
        }
        assert!(
            Instant::now() < deadline,
            "events did not arrive after Iggy came back: {emails:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        emails,
        [
            "before@hogwarts.edu",
            "fred@hogwarts.edu",
            "george@hogwarts.edu"
        ]
    );
    reader.shutdown().await;
    app.stop().await;
}
