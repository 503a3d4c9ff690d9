//! The credential endpoints under abuse: throttling per (account, address)
//! and per address — identical for unknown emails, never a lockout from
//! everywhere, each lockout audited once — and password hashing bounded to
//! a fixed pool that refuses at once when full while the rest of the API
//! goes on.

use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

use argon2::password_hash::PasswordHasher;
use argon2::{Algorithm, Argon2, Params, Version};
use marauders_map::config::AuthLimitsConfig;
use marauders_map::domain::Role;
use marauders_testkit::{
    ApiResponse, EVENTUALLY, ReportIncident, TEST_PASSWORD, TestApp, TestUser, eventually,
};
use serde_json::json;

/// The defaults `serve` has: 5 attempts a minute per (account, address).
const PER_ACCOUNT_AND_ADDRESS: usize = 5;

fn retry_after(response: &ApiResponse) -> u64 {
    response
        .headers
        .get("Retry-After")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "{}: no Retry-After in {:?}",
                response.request, response.headers
            )
        })
}

/// `count` logins with a wrong password from the default client
/// (127.0.0.1): their statuses, and the last answer.
async fn wrong_logins(app: &TestApp, email: &str, count: usize) -> (Vec<u16>, ApiResponse) {
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..count {
        let answer = app.login(email, "not-the-password").await;
        statuses.push(answer.status.as_u16());
        last = Some(answer);
    }
    (statuses, last.expect("at least one attempt"))
}

#[tokio::test]
async fn a_burst_of_logins_for_one_account_from_one_address_is_refused_with_429_and_retry_after() {
    let app = TestApp::spawn().await;
    app.register("neville@hogwarts.edu", "Neville").await;

    let (statuses, refused) =
        wrong_logins(&app, "neville@hogwarts.edu", PER_ACCOUNT_AND_ADDRESS + 3).await;

    assert_eq!(
        statuses,
        [[401; PER_ACCOUNT_AND_ADDRESS].as_slice(), &[429; 3]].concat()
    );
    let refused = refused.assert_error(429, "too_many_requests");
    assert!(
        (1..=60).contains(&retry_after(&refused)),
        "{:?}",
        refused.headers
    );
    assert_eq!(
        refused.error_message(),
        "too many attempts; try again later"
    );
    // Even the right password waits now, from here.
    app.login("neville@hogwarts.edu", TEST_PASSWORD)
        .await
        .assert_status(429);
    app.stop().await;
}

#[tokio::test]
async fn an_account_locked_out_from_one_address_still_logs_in_from_another() {
    let app = TestApp::spawn().await;
    app.register("neville@hogwarts.edu", "Neville").await;
    wrong_logins(&app, "neville@hogwarts.edu", PER_ACCOUNT_AND_ADDRESS + 1).await;

    let elsewhere = app.client_from("127.0.0.2");
    let login = app
        .login_via(&elsewhere, "neville@hogwarts.edu", TEST_PASSWORD)
        .await
        .assert_status(200);

    assert_eq!(login.body["user"]["email"], "neville@hogwarts.edu");
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_email_is_throttled_exactly_like_a_known_one() {
    let app = TestApp::spawn().await;
    app.register("neville@hogwarts.edu", "Neville").await;

    let (known, known_refusal) =
        wrong_logins(&app, "neville@hogwarts.edu", PER_ACCOUNT_AND_ADDRESS + 2).await;
    let (unknown, unknown_refusal) =
        wrong_logins(&app, "nobody@hogwarts.edu", PER_ACCOUNT_AND_ADDRESS + 2).await;

    assert_eq!(known, unknown, "the same answers, attempt by attempt");
    assert_eq!(known_refusal.status, 429);
    assert_eq!(known_refusal.body, unknown_refusal.body);
    let header_names = |response: &ApiResponse| {
        let mut names: Vec<_> = response
            .headers
            .keys()
            .map(|name| name.as_str().to_owned())
            .collect();
        names.retain(|name| name != "date");
        names.sort();
        names
    };
    assert_eq!(header_names(&known_refusal), header_names(&unknown_refusal));
    app.stop().await;
}

#[tokio::test]
async fn an_address_is_refused_past_its_own_limit_whatever_the_accounts() {
    let app = TestApp::builder()
        .auth_limits(AuthLimitsConfig {
            auth_throttle_per_address: NonZeroU32::new(3).unwrap(),
            ..AuthLimitsConfig::default()
        })
        .spawn()
        .await;
    let stuffing = app.client_from("127.0.0.3");

    let mut statuses = Vec::new();
    for name in ["harry", "ron", "hermione", "ginny"] {
        let email = format!("{name}@hogwarts.edu");
        statuses.push(
            app.login_via(&stuffing, &email, "password1")
                .await
                .status
                .as_u16(),
        );
    }

    assert_eq!(statuses, [401, 401, 401, 429]);
    // Other addresses are not affected.
    app.login("ginny@hogwarts.edu", "password1")
        .await
        .assert_status(401);
    app.stop().await;
}

#[tokio::test]
async fn registering_one_email_again_and_again_is_throttled_too() {
    let app = TestApp::spawn().await;
    let register = || {
        app.post(
            "/api/auth/register",
            json!({"email": "percy@hogwarts.edu", "password": TEST_PASSWORD, "displayName": "Percy"}),
        )
    };

    let mut statuses = Vec::new();
    for _ in 0..=PER_ACCOUNT_AND_ADDRESS {
        statuses.push(register().await.status.as_u16());
    }

    assert_eq!(statuses, [201, 409, 409, 409, 409, 429]);
    app.stop().await;
}

#[tokio::test]
async fn refreshing_with_one_token_again_and_again_is_throttled_too() {
    let app = TestApp::spawn().await;

    let mut statuses = Vec::new();
    for _ in 0..=PER_ACCOUNT_AND_ADDRESS {
        statuses.push(app.refresh("made-up-token").await.status.as_u16());
    }

    assert_eq!(statuses, [401, 401, 401, 401, 401, 429]);
    app.stop().await;
}

/// The `auth.locked_out` entries of the audit log once everything up to a
/// marker registration is projected.
async fn lockouts_in_the_audit_log(app: &TestApp, professor: &TestUser) -> Vec<serde_json::Value> {
    app.register("marker@hogwarts.edu", "Marker").await;
    eventually("the marker reaches the audit log", EVENTUALLY, || async {
        let page = app
            .audit(professor, "eventType=user.registered&limit=100")
            .await
            .assert_status(200);
        page.items()
            .iter()
            .any(|item| item["data"]["email"] == "marker@hogwarts.edu")
            .then_some(())
    })
    .await;
    app.audit(professor, "eventType=auth.locked_out&limit=100")
        .await
        .assert_status(200)
        .items()
        .clone()
}

#[tokio::test]
async fn a_lockout_reaches_the_audit_log_once_however_many_attempts_it_refuses() {
    let app = TestApp::spawn().await;
    let minerva = app.user(Role::Professor).await;
    let neville = app.register("neville@hogwarts.edu", "Neville").await;

    let (statuses, _) =
        wrong_logins(&app, "neville@hogwarts.edu", PER_ACCOUNT_AND_ADDRESS + 10).await;
    assert_eq!(statuses.iter().filter(|status| **status == 429).count(), 10);

    let lockouts = lockouts_in_the_audit_log(&app, &minerva).await;
    assert_eq!(lockouts.len(), 1, "one event per lockout: {lockouts:?}");
    let lockout = &lockouts[0];
    assert_eq!(lockout["userId"], neville.id.to_string());
    assert_eq!(lockout["data"]["action"], "login", "{lockout}");
    assert_eq!(lockout["data"]["scope"], "account_and_address");
    assert_eq!(lockout["data"]["ip"], "127.0.0.1");
    assert_eq!(lockout["data"]["email"], "neville@hogwarts.edu");
    assert!(
        lockout["data"]["retryAfterSeconds"]
            .as_u64()
            .is_some_and(|s| s >= 1)
    );
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_emails_lockout_is_audited_without_an_account() {
    let app = TestApp::spawn().await;
    let minerva = app.user(Role::Professor).await;

    wrong_logins(&app, "voldemort@hogwarts.edu", PER_ACCOUNT_AND_ADDRESS + 3).await;

    let lockouts = lockouts_in_the_audit_log(&app, &minerva).await;
    assert_eq!(lockouts.len(), 1, "{lockouts:?}");
    assert_eq!(lockouts[0]["userId"], serde_json::Value::Null);
    assert_eq!(lockouts[0]["data"]["email"], "voldemort@hogwarts.edu");
    app.stop().await;
}

// ---- bounded password hashing -------------------------------------------------

/// An argon2id hash of `password` so expensive to check (many passes) that
/// a login with it keeps a hashing worker busy for a while: a stronger hash
/// from an older configuration, say. Verification reads the parameters from
/// the stored hash.
fn slow_hash(password: &str) -> String {
    let params = Params::new(19 * 1024, 60, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password.as_bytes())
        .expect("hashing succeeds")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_hashing_pool_full_the_next_login_is_503_at_once_while_commands_go_on() {
    let app = TestApp::builder()
        .auth_limits(AuthLimitsConfig {
            password_hash_workers: Some(NonZeroUsize::MIN),
            password_hash_queue: 1,
            ..AuthLimitsConfig::default()
        })
        // The second slow login waits for the first one's hash and then
        // hashes itself: on a loaded machine that can pass the default
        // 4.5 s, and a 503 from the deadline is not what this test is about.
        .request_deadline(Duration::from_secs(60))
        .spawn()
        .await;
    let harry = app.user_named("harry", Role::Student).await;
    app.register("lockhart@hogwarts.edu", "Gilderoy").await;
    let hash = tokio::task::spawn_blocking(|| slow_hash(TEST_PASSWORD))
        .await
        .unwrap();
    sqlx::query("UPDATE users SET password_hash = $1 WHERE email = 'lockhart@hogwarts.edu'")
        .bind(hash)
        .execute(&app.database.pool)
        .await
        .unwrap();

    {
        // Two slow logins: one runs, one waits in the queue.
        let slow_logins = futures::future::join(
            app.login("lockhart@hogwarts.edu", TEST_PASSWORD),
            app.login("lockhart@hogwarts.edu", TEST_PASSWORD),
        );
        tokio::pin!(slow_logins);
        let refused_while_full = async {
            eventually("one login hashes and one waits", EVENTUALLY, || async {
                let running = app.metric("marauders_password_hashing_running").await;
                let queued = app.metric("marauders_password_hashing_queued").await;
                (running == 1.0 && queued == 1.0).then_some(())
            })
            .await;
            app.login(&harry.email, TEST_PASSWORD).await
        };
        let refused = tokio::select! {
            biased;
            refused = refused_while_full => refused,
            _ = &mut slow_logins => panic!("the slow logins ended before the pool was seen full"),
        };
        let refused = refused.assert_error(503, "unavailable");
        assert!(retry_after(&refused) >= 1);

        // A command sent while the pool is still full is served: hashing holds
        // a pool of its own, not the runtime or the database.
        let command = app.report_incident(&harry, ReportIncident::new("Pixies in the classroom"));
        let ((first, second), command) = futures::future::join(slow_logins, command).await;
        command.assert_status(201);
        first.assert_status(200);
        second.assert_status(200);
    }
    assert_eq!(
        app.metric("marauders_password_hashing_rejected_total")
            .await,
        1.0
    );
    app.stop().await;
}

#[tokio::test]
async fn hashing_load_and_throttling_are_in_the_metrics() {
    let app = TestApp::spawn().await;
    wrong_logins(&app, "nobody@hogwarts.edu", PER_ACCOUNT_AND_ADDRESS + 2).await;

    let throttled =
        "marauders_auth_throttled_total{action=\"login\",scope=\"account_and_address\"}";
    let lockouts = "marauders_auth_lockouts_total{action=\"login\",scope=\"account_and_address\"}";
    assert_eq!(app.metric(throttled).await, 2.0);
    assert_eq!(app.metric(lockouts).await, 1.0);
    // The attempts have been answered: nothing hashes or waits any more.
    assert_eq!(app.metric("marauders_password_hashing_running").await, 0.0);
    assert_eq!(app.metric("marauders_password_hashing_queued").await, 0.0);
    assert_eq!(
        app.metric("marauders_password_hashing_rejected_total")
            .await,
        0.0
    );
    app.stop().await;
}
