//! `GET /metrics` in the Prometheus text format: projector offsets and lag
//! (in events, and the age of the oldest unapplied event), dead letters,
//! outbox backlog, and HTTP request counts and latency histograms.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ErrorResponse;
use super::openapi::tags;
use super::{ApiError, AppState};
use crate::events::Event;
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

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(metrics))
}

/// Prometheus metrics: projector offsets and lag, dead letters, outbox
/// backlog, HTTP request counts and latencies.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = tags::SERVICE,
    responses(
        (status = 200, description = "The Prometheus text format (version 0.0.4)", body = String, content_type = "text/plain"),
        (status = 503, description = "The database or the log is unavailable", body = ErrorResponse),
    ),
)]
async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let mut out = String::new();
    if let Some(breaker) = state.log.breaker() {
        out.push_str("# HELP marauders_breaker_state Each dependency's circuit breaker: 1 for its current state.\n# TYPE marauders_breaker_state gauge\n");
        for candidate in [
            BreakerState::Closed,
            BreakerState::Open,
            BreakerState::HalfOpen,
        ] {
            let _ = writeln!(
                out,
                "marauders_breaker_state{{dependency=\"{}\",state=\"{}\"}} {}",
                state.log.backend_name(),
                candidate.as_str(),
                u8::from(breaker.state == candidate)
            );
        }
    }
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
    let backlog: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        .fetch_one(&state.pool)
        .await?;
    let _ = writeln!(
        out,
        "# HELP marauders_outbox_backlog Account events committed but not yet on the log.\n# TYPE marauders_outbox_backlog gauge\nmarauders_outbox_backlog {backlog}"
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
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out))
}
