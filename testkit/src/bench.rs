//! For the benches (`benches/*.rs`, `scripts/bench`): the result tables, and a
//! long incident history to replay. A measurement prints; it asserts no time.

use std::time::Duration;

use marauders_map::log::{EventLog, LogMessage, Topic};
use uuid::Uuid;

use crate::events::comment_added;

pub struct Row {
    pub backend: &'static str,
    pub metric: String,
    pub samples: Vec<Duration>,
}

/// The `p` quantile (0–1) of samples sorted in ascending order.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

pub fn print_table(rows: &[Row]) {
    println!();
    println!(
        "| backend                  | operation                      |   n |      p50 |      p99 |"
    );
    println!(
        "|--------------------------|--------------------------------|-----|----------|----------|"
    );
    for row in rows {
        let mut sorted = row.samples.clone();
        sorted.sort();
        println!(
            "| {:<24} | {:<30} | {:>3} | {:>8} | {:>8} |",
            row.backend,
            row.metric,
            sorted.len(),
            format_duration(percentile(&sorted, 0.50)),
            format_duration(percentile(&sorted, 0.99)),
        );
    }
}

pub fn format_duration(duration: Duration) -> String {
    let micros = duration.as_secs_f64() * 1e6;
    if micros < 1000.0 {
        format!("{micros:.0} µs")
    } else {
        format!("{:.2} ms", micros / 1000.0)
    }
}

/// One-number results (throughput, start-up times).
pub struct Figure {
    pub backend: &'static str,
    pub metric: String,
    pub value: String,
}

pub fn print_figures(figures: &[Figure]) {
    print_columns(
        &[
            ("backend", Align::Left),
            ("measurement", Align::Left),
            ("value", Align::Right),
        ],
        &figures
            .iter()
            .map(|figure| {
                vec![
                    figure.backend.to_owned(),
                    figure.metric.clone(),
                    figure.value.clone(),
                ]
            })
            .collect::<Vec<_>>(),
    );
}

/// How a column of [`print_columns`] lines up: text left, numbers right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A Markdown table of any shape, its columns padded to line up: one
/// title and alignment per column, then the rows (as many cells each).
pub fn print_columns(columns: &[(&str, Align)], rows: &[Vec<String>]) {
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(index, (title, _))| {
            rows.iter()
                .map(|row| row[index].chars().count())
                .chain([title.chars().count(), 3])
                .max()
                .unwrap_or(3)
        })
        .collect();
    let line = |cells: Vec<String>| println!("| {} |", cells.join(" | "));
    let pad = |text: &str, width: usize, align: Align| match align {
        Align::Left => format!("{text:<width$}"),
        Align::Right => format!("{text:>width$}"),
    };
    println!();
    line(
        columns
            .iter()
            .zip(&widths)
            .map(|((title, align), width)| pad(title, *width, *align))
            .collect(),
    );
    line(
        columns
            .iter()
            .zip(&widths)
            .map(|((_, align), width)| match align {
                Align::Left => "-".repeat(*width),
                Align::Right => format!("{}:", "-".repeat(width - 1)),
            })
            .collect(),
    );
    for row in rows {
        assert_eq!(row.len(), columns.len(), "a row of {} cells", row.len());
        line(
            row.iter()
                .zip(columns.iter().zip(&widths))
                .map(|(cell, ((_, align), width))| pad(cell, *width, *align))
                .collect(),
        );
    }
}

/// Appends valid incident events until `incident-events` holds `total`:
/// each incident is created, then commented on nine times.
pub async fn append_incident_history(log: &EventLog, total: usize) {
    let existing = log.log_end(Topic::IncidentEvents).await.unwrap() as usize;
    let mut batch: Vec<LogMessage> = Vec::new();
    let (mut incident, mut version) = (Uuid::now_v7(), 0u64);
    for n in existing..total {
        let event = if n % 10 == 0 {
            (incident, version) = (Uuid::now_v7(), 1);
            crate::events::incident_created(incident, Uuid::nil(), &format!("Incident {n}"))
        } else {
            version += 1;
            comment_added(incident, Uuid::nil(), version, "Mischief managed")
        };
        batch.push(event.to_log_message());
        if batch.len() == 1000 {
            log.append(Topic::IncidentEvents, &batch).await.unwrap();
            batch.clear();
        }
    }
    if !batch.is_empty() {
        log.append(Topic::IncidentEvents, &batch).await.unwrap();
    }
}
