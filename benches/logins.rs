//! `scripts/bench logins`: what a burst of logins costs everyone else. The
//! p99 of a command (`POST /api/incidents`) and of `GET /health`, each
//! called back to back by one client, first alone and then while 200
//! logins — 200 accounts with their right passwords, each from an address
//! of its own, so the throttle lets every one through and only the bounded
//! hashing pool stands between the burst and the CPU — arrive at once,
//! again and again. The goal is that the burst costs the others at most
//! 3× at p99.
//!
//! The service runs in this process on the embedded log, first with
//! `serve`'s defaults (hashing workers: half the cores; a queue of 16),
//! then with no bound on hashing — every login hashed at once, as before
//! the pool — for comparison. A measurement, not a test: request loops are
//! bounded in count and time and only talk to 127.0.0.0/8.

use std::time::{Duration, Instant};

use marauders_map::config::AuthLimitsConfig;
use marauders_map::domain::{Location, Role};
use marauders_map::identity::HashingConfig;
use marauders_testkit::bench::{Figure, Row, percentile, print_figures, print_table};
use marauders_testkit::{ReportIncident, TEST_PASSWORD, TestApp, TestUser};
use serde_json::json;

/// Logins that arrive at once.
const BURST: usize = 200;
/// Bursts, one after the other (each login comes from its own address,
/// well within the throttle's budgets).
const BURSTS: usize = 5;
/// Calls of each measured operation without the burst.
const BASELINE_CALLS: usize = 500;

const BACKEND: &str = "embedded (PostgreSQL)";

#[tokio::main]
async fn main() {
    let (mut rows, mut figures) = (Vec::new(), Vec::new());
    let bounded = TestApp::spawn().await;
    measure(
        &bounded,
        "serve's defaults",
        HashingConfig::default(),
        &mut rows,
        &mut figures,
    )
    .await;
    bounded.stop().await;

    // What a burst cost before the pool: every login hashed at once on
    // the blocking threads, nothing refused.
    let unbounded_hashing = HashingConfig {
        workers: std::num::NonZeroUsize::new(BURST).expect("not zero"),
        queue: 0,
    };
    let unbounded = TestApp::builder()
        .auth_limits(AuthLimitsConfig {
            password_hash_workers: Some(unbounded_hashing.workers),
            password_hash_queue: unbounded_hashing.queue,
            ..AuthLimitsConfig::default()
        })
        .spawn()
        .await;
    measure(
        &unbounded,
        "no hashing bound",
        unbounded_hashing,
        &mut rows,
        &mut figures,
    )
    .await;
    unbounded.stop().await;

    print_table(&rows);
    print_figures(&figures);
}

/// The baseline, then `BURSTS` bursts with the measuring loops running
/// through each, on `app` (hashing configured as `hashing`, `label`).
async fn measure(
    app: &TestApp,
    label: &str,
    hashing: HashingConfig,
    rows: &mut Vec<Row>,
    figures: &mut Vec<Figure>,
) {
    let prefect = app.user_named("bench", Role::Prefect).await;
    let accounts = register_accounts(app).await;

    let baseline_commands = sequential_commands(app, &prefect, BASELINE_CALLS, None).await;
    let baseline_health = sequential_health(app, BASELINE_CALLS, None).await;

    let (mut commands, mut health) = (Calls::default(), Calls::default());
    let mut outcomes = Outcomes::default();
    let mut burst_durations = Vec::new();
    for _ in 0..BURSTS {
        let started = Instant::now();
        let burst = login_burst(app, &accounts);
        tokio::pin!(burst);
        let stop = Stop::default();
        let measured = futures::future::join(
            sequential_commands(app, &prefect, usize::MAX, Some(&stop)),
            sequential_health(app, usize::MAX, Some(&stop)),
        );
        tokio::pin!(measured);
        let burst_outcomes = tokio::select! {
            outcomes = &mut burst => outcomes,
            _ = &mut measured => unreachable!("the measuring loops run until stopped"),
        };
        burst_durations.push(started.elapsed());
        stop.set();
        let (burst_commands, burst_health) = measured.await;
        commands.extend(burst_commands);
        health.extend(burst_health);
        outcomes.add(burst_outcomes);
    }

    let failures = Figure {
        backend: BACKEND,
        metric: format!("{label}: commands / /health not answered 201 / 200 (alone; burst)"),
        value: format!(
            "{} / {}; {} / {}",
            baseline_commands.failed, baseline_health.failed, commands.failed, health.failed
        ),
    };
    let (baseline_commands, baseline_health) = (baseline_commands.samples, baseline_health.samples);
    let (commands, health) = (commands.samples, health.samples);
    rows.extend([
        row(
            &format!("{label}: command, alone"),
            baseline_commands.clone(),
        ),
        row(&format!("{label}: command, burst"), commands.clone()),
        row(&format!("{label}: /health, alone"), baseline_health.clone()),
        row(&format!("{label}: /health, burst"), health.clone()),
    ]);
    figures.push(failures);
    figures.extend([
        Figure {
            backend: BACKEND,
            metric: format!(
                "{label}: hashing workers / queue: {} / {}",
                hashing.workers, hashing.queue
            ),
            value: String::new(),
        },
        ratio(
            &format!("{label}: command p99, burst / alone"),
            &commands,
            &baseline_commands,
        ),
        ratio(
            &format!("{label}: /health p99, burst / alone"),
            &health,
            &baseline_health,
        ),
        Figure {
            backend: BACKEND,
            metric: format!("{label}: {BURSTS} bursts of {BURST} logins"),
            value: format!(
                "{} ok, {} 503, {} 429, {} other",
                outcomes.ok, outcomes.busy, outcomes.throttled, outcomes.other
            ),
        },
        Figure {
            backend: BACKEND,
            metric: format!("{label}: a burst, first sent → last answered, p50"),
            value: format!("{:.2} s", p50(burst_durations).as_secs_f64()),
        },
    ]);
}

/// `BURST` accounts, each registered from the address it will log in from.
async fn register_accounts(app: &TestApp) -> Vec<(reqwest::Client, String)> {
    let mut accounts = Vec::with_capacity(BURST);
    for n in 0..BURST {
        let client = app.client_from(&address(n));
        let email = format!("burst{n}@hogwarts.edu");
        let request = client.post(app.url("/api/auth/register")).json(&json!({
            "email": email, "password": TEST_PASSWORD, "displayName": format!("Burst {n}")
        }));
        app.send_via(&client, request).await.assert_status(201);
        accounts.push((client, email));
    }
    accounts
}

/// 127.0.1.1, 127.0.1.2, …: Linux routes all of 127.0.0.0/8 to loopback.
fn address(n: usize) -> String {
    format!("127.0.{}.{}", 1 + n / 250, 1 + n % 250)
}

#[derive(Default)]
struct Outcomes {
    ok: usize,
    busy: usize,
    throttled: usize,
    other: usize,
}

impl Outcomes {
    fn add(&mut self, other: Outcomes) {
        self.ok += other.ok;
        self.busy += other.busy;
        self.throttled += other.throttled;
        self.other += other.other;
    }
}

/// Every account logs in at once, each login a task of its own (so the
/// measuring loops are not polled behind them); the answers, by status.
async fn login_burst(app: &TestApp, accounts: &[(reqwest::Client, String)]) -> Outcomes {
    let url = app.url("/api/auth/login");
    let logins: Vec<_> = accounts
        .iter()
        .map(|(client, email)| {
            let request = client
                .post(&url)
                .json(&json!({"email": email, "password": TEST_PASSWORD}));
            tokio::spawn(async move { request.send().await.map(|answer| answer.status()) })
        })
        .collect();
    let mut outcomes = Outcomes::default();
    for login in logins {
        match login
            .await
            .expect("the login task ends")
            .map(|status| status.as_u16())
        {
            Ok(200) => outcomes.ok += 1,
            Ok(503) => outcomes.busy += 1,
            Ok(429) => outcomes.throttled += 1,
            _ => outcomes.other += 1,
        }
    }
    outcomes
}

/// Tells the measuring loops to end after their current call.
#[derive(Default)]
struct Stop(std::sync::atomic::AtomicBool);

impl Stop {
    fn set(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn is_set(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Latencies of calls, and how many were not answered with success (a 503
/// under the burst is part of what it costs, so it is counted, not fatal).
#[derive(Default)]
struct Calls {
    samples: Vec<Duration>,
    failed: usize,
}

impl Calls {
    fn extend(&mut self, other: Calls) {
        self.samples.extend(other.samples);
        self.failed += other.failed;
    }
}

async fn sequential_commands(
    app: &TestApp,
    prefect: &TestUser,
    calls: usize,
    stop: Option<&Stop>,
) -> Calls {
    let report = ReportIncident::new("Bench incident").location(Location::GreatHall);
    let mut measured = Calls::default();
    while measured.samples.len() < calls && !stop.is_some_and(Stop::is_set) {
        let started = Instant::now();
        let answer = app.report_incident(prefect, report.clone()).await;
        measured.samples.push(started.elapsed());
        measured.failed += usize::from(answer.status != 201);
    }
    measured
}

async fn sequential_health(app: &TestApp, calls: usize, stop: Option<&Stop>) -> Calls {
    let mut measured = Calls::default();
    while measured.samples.len() < calls && !stop.is_some_and(Stop::is_set) {
        let started = Instant::now();
        let answer = app.get("/health").await;
        measured.samples.push(started.elapsed());
        measured.failed += usize::from(answer.status != 200);
    }
    measured
}

fn row(metric: &str, samples: Vec<Duration>) -> Row {
    Row {
        backend: BACKEND,
        metric: metric.into(),
        samples,
    }
}

fn ratio(metric: &str, burst: &[Duration], alone: &[Duration]) -> Figure {
    let p99 = |samples: &[Duration]| {
        let mut sorted = samples.to_vec();
        sorted.sort();
        percentile(&sorted, 0.99)
    };
    let (burst, alone) = (p99(burst), p99(alone));
    Figure {
        backend: BACKEND,
        metric: metric.into(),
        value: format!("{:.2}×", burst.as_secs_f64() / alone.as_secs_f64()),
    }
}

fn p50(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    percentile(&samples, 0.5)
}
