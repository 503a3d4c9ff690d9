//! `scripts/bench`: the write side. `POST /api/incidents` latency (what the
//! seed's "publishing adds under 5 ms" budget is about) and sustained
//! throughput, and the write model's start-up rebuild over 100,000 events
//! with and without a snapshot — on the embedded log and on Iggy with
//! per-append fsync.
//!
//! A measurement, not a test. Request loops are bounded in count and time
//! and only talk to 127.0.0.1.

use std::time::{Duration, Instant};

use marauders_map::commands::WriteModel;
use marauders_map::domain::{Location, Role};
use marauders_map::log::EventLog;
use marauders_testkit::bench::{Figure, Row, append_incident_history, print_figures, print_table};
use marauders_testkit::{IggyServer, ReportIncident, TestApp, iggy_available};

const LATENCY_REQUESTS: usize = 300;
const THROUGHPUT_CLIENTS: usize = 8;
const THROUGHPUT_SECONDS: u64 = 5;
const REBUILD_EVENTS: usize = 100_000;

#[tokio::main]
async fn main() {
    run().await;
}

async fn run() {
    let (mut rows, mut figures) = (Vec::new(), Vec::new());
    let app = TestApp::spawn().await;
    measure_commands("embedded (PostgreSQL)", &app, &mut rows, &mut figures).await;
    let stopped = app.stop().await;
    let log = stopped.open_log().await;
    measure_rebuild(
        "embedded (PostgreSQL)",
        &log,
        &stopped.database.pool,
        &mut figures,
    )
    .await;
    log.shutdown().await;

    if iggy_available() {
        let server = IggyServer::start().await;
        let app = TestApp::builder().iggy(&server).spawn().await;
        measure_commands("iggy, fsync every append", &app, &mut rows, &mut figures).await;
        let stopped = app.stop().await;
        let log = stopped.open_log().await;
        measure_rebuild(
            "iggy, fsync every append",
            &log,
            &stopped.database.pool,
            &mut figures,
        )
        .await;
        log.shutdown().await;
    } else {
        eprintln!("Iggy: skipped — no iggy-server on PATH and IGGY_URL is unset");
    }
    print_table(&rows);
    print_figures(&figures);
}

async fn measure_commands(
    backend: &'static str,
    app: &TestApp,
    rows: &mut Vec<Row>,
    figures: &mut Vec<Figure>,
) {
    let bench = app.user_named("bench", Role::Prefect).await;
    let report = ReportIncident::new("Bench incident").location(Location::GreatHall);
    let mut samples = Vec::new();
    for _ in 0..LATENCY_REQUESTS {
        let started = Instant::now();
        let answer = app.report_incident(&bench, report.clone()).await;
        samples.push(started.elapsed());
        answer.assert_status(201);
    }
    rows.push(Row {
        backend,
        metric: "POST /api/incidents".into(),
        samples,
    });

    let deadline = Instant::now() + Duration::from_secs(THROUGHPUT_SECONDS);
    let started = Instant::now();
    let clients = (0..THROUGHPUT_CLIENTS).map(|_| {
        let (bench, report) = (&bench, report.clone());
        async move {
            let mut done = 0u64;
            while Instant::now() < deadline {
                app.report_incident(bench, report.clone())
                    .await
                    .assert_status(201);
                done += 1;
            }
            done
        }
    });
    let total: u64 = futures::future::join_all(clients).await.into_iter().sum();
    figures.push(Figure {
        backend,
        metric: format!("POST /api/incidents, {THROUGHPUT_CLIENTS} clients, sustained"),
        value: format!(
            "{:.0} cmd/s",
            total as f64 / started.elapsed().as_secs_f64()
        ),
    });
}

/// Appends 100,000 incident events (a created and comments per incident),
/// then rebuilds a write model from offset 0 and from a snapshot.
async fn measure_rebuild(
    backend: &'static str,
    log: &EventLog,
    pool: &sqlx::PgPool,
    figures: &mut Vec<Figure>,
) {
    append_incident_history(log, REBUILD_EVENTS).await;

    let model = WriteModel::new(log.clone(), pool.clone());
    model.delete_snapshot().await.unwrap();
    let cold = model.rebuild(false).await.unwrap();
    model.take_snapshot().await.unwrap();
    let warm = WriteModel::new(log.clone(), pool.clone())
        .rebuild(true)
        .await
        .unwrap();
    figures.push(Figure {
        backend,
        metric: format!(
            "write model start-up, {} events, no snapshot",
            cold.events_replayed
        ),
        value: format!("{:.2} s", cold.took.as_secs_f64()),
    });
    figures.push(Figure {
        backend,
        metric: "write model start-up from a snapshot".into(),
        value: format!("{:.2} s", warm.took.as_secs_f64()),
    });
}
