//! `scripts/bench`: the read side. Projector throughput (events/s applied
//! to the read model), its lag under a sustained command load, rebuild time
//! for 100,000 events, and the replay API for 100 events.
//!
//! A measurement, not a test; loops are bounded in count and time and only
//! talk to 127.0.0.1.

use std::sync::Arc;
use std::time::{Duration, Instant};

use marauders_map::domain::{Location, Role, Severity};
use marauders_map::log::Topic;
use marauders_projections::{
    ProjectorRunner, READ_MODEL, ReadModelProjector, RebuildClaim, RebuildProgress, StepOutcome,
    rebuild_projection, stored_offset,
};
use marauders_testkit::bench::{Figure, Row, append_incident_history, print_figures, print_table};
use marauders_testkit::iggy::fresh_stream_name;
use marauders_testkit::{
    IggyServer, LogLocation, ReportIncident, TestApp, TestDatabase, iggy_available,
};

const EVENTS: usize = 100_000;
const LOAD_SECONDS: u64 = 5;
const LOAD_CLIENTS: usize = 8;
const REPLAYS: usize = 200;

#[tokio::main]
async fn main() {
    run().await;
}

async fn run() {
    let (mut rows, mut figures) = (Vec::new(), Vec::new());
    let app = TestApp::spawn().await;
    measure("embedded (PostgreSQL)", &app, None, &mut rows, &mut figures).await;
    app.stop().await;
    if iggy_available() {
        let server = IggyServer::start().await;
        let app = TestApp::builder().iggy(&server).spawn().await;
        measure(
            "iggy, fsync every append",
            &app,
            Some(&server),
            &mut rows,
            &mut figures,
        )
        .await;
        app.stop().await;
    } else {
        eprintln!("Iggy: skipped — no iggy-server on PATH and IGGY_URL is unset");
    }
    print_table(&rows);
    print_figures(&figures);
}

async fn measure(
    backend: &'static str,
    app: &TestApp,
    iggy: Option<&IggyServer>,
    rows: &mut Vec<Row>,
    figures: &mut Vec<Figure>,
) {
    let pool = app.database.pool.clone();
    let bench = app.user_named("bench", Role::Professor).await;

    // Lag under load: the service's own projectors run while clients post.
    let deadline = Instant::now() + Duration::from_secs(LOAD_SECONDS);
    let load = ReportIncident::new("Load")
        .severity(Severity::Low)
        .location(Location::Owlery);
    let clients = futures::future::join_all((0..LOAD_CLIENTS).map(|_| async {
        while Instant::now() < deadline {
            app.report_incident(&bench, load.clone()).await;
        }
    }));
    let log = app.log().await;
    let sampler = async {
        let mut lags = Vec::new();
        while Instant::now() < deadline {
            let end = log.log_end(Topic::IncidentEvents).await.unwrap();
            let stored = stored_offset(&pool, READ_MODEL, Topic::IncidentEvents)
                .await
                .unwrap();
            lags.push(end.saturating_sub(stored));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        lags
    };
    let ((), mut lags) = tokio::join!(
        async {
            clients.await;
        },
        sampler
    );
    lags.sort();
    figures.push(Figure {
        backend,
        metric: format!("read model lag under {LOAD_CLIENTS}-client load, p50/max"),
        value: format!("{} / {} events", lags[lags.len() / 2], lags[lags.len() - 1]),
    });

    // Replay API, 100 events per call.
    append_incident_history(log, 2_000).await;
    let mut samples = Vec::new();
    for n in 0..REPLAYS {
        let query = format!("fromOffset={}&limit=100", (n * 7) % 1_800);
        let started = Instant::now();
        let page = app.replay(&bench, &query).await;
        samples.push(started.elapsed());
        page.assert_status(200);
    }
    rows.push(Row {
        backend,
        metric: "GET /api/events/replay, 100 events".into(),
        samples,
    });

    // Throughput and rebuild over 100,000 events, on a separate database
    // (the service's projectors stay out of the way).
    let database = TestDatabase::fresh().await;
    let separate = match iggy {
        Some(server) => LogLocation::Iggy {
            url: server.url.clone(),
            stream: fresh_stream_name(),
        },
        None => LogLocation::Embedded,
    }
    .open(&database.pool)
    .await;
    append_incident_history(&separate, EVENTS).await;
    let runner = ProjectorRunner::new(ReadModelProjector, separate.clone(), database.pool.clone());
    let started = Instant::now();
    while let StepOutcome::Advanced { .. } = runner.poll_once().await.unwrap() {}
    let took = started.elapsed();
    figures.push(Figure {
        backend,
        metric: format!("read model projector, {EVENTS} events"),
        value: format!("{:.0} events/s", EVENTS as f64 / took.as_secs_f64()),
    });
    let started = Instant::now();
    let claim = RebuildClaim::take(&database.pool, READ_MODEL)
        .await
        .unwrap()
        .expect("no other rebuild runs");
    rebuild_projection(
        &claim,
        ReadModelProjector,
        separate.clone(),
        database.pool.clone(),
        Arc::new(RebuildProgress::default()),
    )
    .await
    .unwrap();
    claim.release().await;
    figures.push(Figure {
        backend,
        metric: format!("rebuild read model from offset 0, {EVENTS} events"),
        value: format!("{:.2} s", started.elapsed().as_secs_f64()),
    });
    separate.shutdown().await;
}
