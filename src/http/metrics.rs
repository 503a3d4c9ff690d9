//! `GET /metrics` in the Prometheus text format: projector offsets and lag
//! (in events, and the age of the oldest unapplied event), dead letters,
//! outbox backlog, HTTP request counts and latency histograms, password
//! hashing load and throttled attempts, group commit's appends and the
//! commands waiting for their incident.
//!
//! Served on a listener of its own (`--metrics-address`, loopback by
//! default), not on the public port: metrics tell an outsider too much
//! (routes, load, lag) to be public. It is not part of the OpenAPI
//! document, which describes the public API.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{ApiError, AppState};
use crate::events::Event;
use crate::identity::throttle::ThrottleCounts;
use crate::log::Topic;
use crate::log::breaker::BreakerState;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

/// Request counts and latencies, per method, route template and status.
#[derive(Default)]
pub struct HttpMetrics {
    series: Mutex<BTreeMap<(String, String, u16), Series>>,
}

#[derive(Default, Clone)]
struct Series {
    count: u64,
    sum_seconds: f64,
    buckets: [u64; BUCKETS.len()],
}

impl HttpMetrics {
    fn record(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let mut series = self.series.lock().expect("metrics lock is never poisoned");
        let entry = series
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default();
        entry.count += 1;
        entry.sum_seconds += seconds;
        for (bucket, bound) in entry.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
    }
}

/// Middleware: times every request under its route template (not its
/// concrete path, so ids do not explode the series).
pub async fn record_request(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |path| path.as_str())
        .to_owned();
    // Only standard methods become labels: made-up ones must not grow the
    // series without bound.
    let method = match request.method().as_str() {
        known @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS") => {
            known.to_owned()
        }
        _ => "OTHER".to_owned(),
    };
    let started = Instant::now();
    let response = next.run(request).await;
    state.http_metrics.record(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// The metrics listener's whole router: `GET /metrics`, and the JSON 404
/// for anything else.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route(METRICS_PATH, get(metrics))
        .fallback(super::error::route_not_found)
        .with_state(state)
}

pub const METRICS_PATH: &str = "/metrics";

/// Prometheus metrics: projector offsets and lag, dead letters, outbox
/// backlog, HTTP request counts and latencies, hashing and throttling.
/// 200 in the Prometheus text format (version 0.0.4), also while the
/// database or the log is down: then the series they hold are left out,
/// and `marauders_metrics_complete` is 0.
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut out = String::new();
    out.push_str("# HELP marauders_breaker_state Each dependency's circuit breaker: 1 for its current state.\n# TYPE marauders_breaker_state gauge\n");
    let log_breaker = state
        .log
        .breaker()
        .map(|report| (state.log.backend_name(), report));
    for (dependency, breaker) in
        std::iter::once(("database", state.database_breaker.report())).chain(log_breaker)
    {
        for candidate in [
            BreakerState::Closed,
            BreakerState::Open,
            BreakerState::HalfOpen,
        ] {
            let _ = writeln!(
                out,
                "marauders_breaker_state{{dependency=\"{dependency}\",state=\"{}\"}} {}",
                candidate.as_str(),
                u8::from(breaker.state == candidate)
            );
        }
    }
    let group_commit = state.commands.group_commit_stats();
    let _ = writeln!(
        out,
        "# HELP marauders_group_commit_appends_total Appends of incident events made by group commit.\n# TYPE marauders_group_commit_appends_total counter\nmarauders_group_commit_appends_total {}",
        group_commit.appends
    );
    let _ = writeln!(
        out,
        "# HELP marauders_group_commit_events_total Incident events those appends carried (their ratio is the mean batch).\n# TYPE marauders_group_commit_events_total counter\nmarauders_group_commit_events_total {}",
        group_commit.events
    );
    let _ = writeln!(
        out,
        "# HELP marauders_group_commit_queued Incident events decided and waiting for the next append.\n# TYPE marauders_group_commit_queued gauge\nmarauders_group_commit_queued {}",
        group_commit.queued
    );
    let _ = writeln!(
        out,
        "# HELP marauders_commands_waiting_for_incident Commands waiting for the previous command on their incident to be confirmed.\n# TYPE marauders_commands_waiting_for_incident gauge\nmarauders_commands_waiting_for_incident {}",
        state.commands.waiting_for_incident()
    );
    // What the database and the log must answer, within the database
    // timeout: while either is down, the rest (the breakers above all) is
    // still served, and `marauders_metrics_complete` says what is missing.
    let stored = tokio::time::timeout(state.deadlines.database, write_stored(&state)).await;
    let complete = match stored {
        Ok(Ok(section)) => {
            out.push_str(&section);
            true
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "metrics served without the projector and outbox series");
            false
        }
        Err(_) => {
            tracing::warn!(
                "metrics served without the projector and outbox series: no answer in time"
            );
            false
        }
    };
    let _ = writeln!(
        out,
        "# HELP marauders_metrics_complete 1 when every series below could be read; 0 when the database or the log did not answer, and the projector and outbox series are missing.\n# TYPE marauders_metrics_complete gauge\nmarauders_metrics_complete {}",
        u8::from(complete)
    );
    out.push_str("# HELP marauders_http_requests_total HTTP requests by method, route and status.\n# TYPE marauders_http_requests_total counter\n");
    let series = state
        .http_metrics
        .series
        .lock()
        .expect("metrics lock is never poisoned")
        .clone();
    for ((method, route, status), data) in &series {
        let _ = writeln!(
            out,
            "marauders_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {}",
            data.count
        );
    }
    out.push_str("# HELP marauders_http_request_duration_seconds HTTP request latency.\n# TYPE marauders_http_request_duration_seconds histogram\n");
    for ((method, route, status), data) in &series {
        let labels = format!("method=\"{method}\",route=\"{route}\",status=\"{status}\"");
        for (bound, count) in BUCKETS.iter().zip(data.buckets) {
            let _ = writeln!(
                out,
                "marauders_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "marauders_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
            data.count
        );
        let _ = writeln!(
            out,
            "marauders_http_request_duration_seconds_sum{{{labels}}} {}",
            data.sum_seconds
        );
        let _ = writeln!(
            out,
            "marauders_http_request_duration_seconds_count{{{labels}}} {}",
            data.count
        );
    }
    write_auth_limits(&mut out, &state);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

/// The series read from the database and the log: projector offsets, lag
/// and dead letters, and the outbox backlog.
async fn write_stored(state: &AppState) -> Result<String, ApiError> {
    let mut out = String::new();
    let statuses = state
        .projections
        .status()
        .await
        .map_err(|error| ApiError::Unavailable(error.to_string()))?;
    out.push_str("# HELP marauders_projector_offset Next offset each projector will apply.\n# TYPE marauders_projector_offset gauge\n");
    for status in &statuses {
        let _ = writeln!(
            out,
            "marauders_projector_offset{{projector=\"{}\",topic=\"{}\"}} {}",
            status.name, status.topic, status.stored_offset
        );
    }
    out.push_str("# HELP marauders_projector_lag_events Events on the log not yet applied.\n# TYPE marauders_projector_lag_events gauge\n");
    for status in &statuses {
        let _ = writeln!(
            out,
            "marauders_projector_lag_events{{projector=\"{}\"}} {}",
            status.name, status.lag
        );
    }
    out.push_str("# HELP marauders_projector_lag_seconds Age of the oldest event not yet applied (0 when caught up).\n# TYPE marauders_projector_lag_seconds gauge\n");
    for status in &statuses {
        let topic: Topic = status
            .topic
            .parse()
            .map_err(|e: String| ApiError::Internal(anyhow::anyhow!(e)))?;
        let age = if status.lag == 0 {
            0.0
        } else {
            let oldest = state.log.read(topic, status.stored_offset, 1).await?;
            oldest
                .first()
                .and_then(|record| Event::decode(&record.payload).ok())
                .map_or(0.0, |event| {
                    (chrono::Utc::now() - event.timestamp)
                        .num_milliseconds()
                        .max(0) as f64
                        / 1000.0
                })
        };
        let _ = writeln!(
            out,
            "marauders_projector_lag_seconds{{projector=\"{}\"}} {age}",
            status.name
        );
    }
    out.push_str("# HELP marauders_dead_letters Messages a projector could not decode.\n# TYPE marauders_dead_letters gauge\n");
    for status in &statuses {
        let _ = writeln!(
            out,
            "marauders_dead_letters{{projector=\"{}\"}} {}",
            status.name, status.dead_letters
        );
    }
    let backlog = crate::outbox::backlog(&state.pool).await?;
    let set_aside = crate::outbox::set_aside_count(&state.pool).await?;
    let _ = writeln!(
        out,
        "# HELP marauders_outbox_backlog Account events committed but not yet on the log.\n# TYPE marauders_outbox_backlog gauge\nmarauders_outbox_backlog {backlog}"
    );
    let _ = writeln!(
        out,
        "# HELP marauders_outbox_set_aside Account events the relay could not publish and set aside (GET /api/admin/outbox).\n# TYPE marauders_outbox_set_aside gauge\nmarauders_outbox_set_aside {set_aside}"
    );
    Ok(out)
}

fn write_auth_limits(out: &mut String, state: &AppState) {
    let load = state.auth_limits.hashing.load();
    let _ = writeln!(
        out,
        "# HELP marauders_password_hashing_running Argon2 computations running.\n# TYPE marauders_password_hashing_running gauge\nmarauders_password_hashing_running {}",
        load.running
    );
    let _ = writeln!(
        out,
        "# HELP marauders_password_hashing_queued Logins and registrations waiting for a hashing worker.\n# TYPE marauders_password_hashing_queued gauge\nmarauders_password_hashing_queued {}",
        load.queued
    );
    let _ = writeln!(
        out,
        "# HELP marauders_password_hashing_rejected_total Requests answered 503 because hashing was at capacity.\n# TYPE marauders_password_hashing_rejected_total counter\nmarauders_password_hashing_rejected_total {}",
        load.rejected_total
    );
    let counts = state.auth_limits.throttle.counts();
    let per_action_and_scope =
        |out: &mut String, name: &str, help: &str, value: fn(&ThrottleCounts) -> u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for count in &counts {
                let _ = writeln!(
                    out,
                    "{name}{{action=\"{}\",scope=\"{}\"}} {}",
                    count.action.as_str(),
                    count.scope.as_str(),
                    value(count)
                );
            }
        };
    per_action_and_scope(
        out,
        "marauders_auth_throttled_total",
        "Attempts answered 429, by endpoint and limit.",
        |count| count.refused,
    );
    per_action_and_scope(
        out,
        "marauders_auth_lockouts_total",
        "Lockouts started (each is one auth.locked_out event), by endpoint and limit.",
        |count| count.lockouts,
    );
}
