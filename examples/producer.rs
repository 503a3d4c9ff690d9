//! The seed's "5-minute taste test", producer half, in this project's terms:
//! append 5 batches of 10 `incident.created` events to `incident-events`.
//!
//! ```text
//! # embedded log (PostgreSQL):
//! DATABASE_URL=postgres://postgres@127.0.0.1:54329/marauders_map cargo run --example producer
//! # Apache Iggy:
//! IGGY_URL=iggy://iggy:iggy@127.0.0.1:8090 cargo run --example producer
//! ```
//!
//! Then run the consumer example — twice. The messages are still there the
//! second time: a log, not a queue.

use std::time::Duration;

use chrono::Utc;
use clap::Parser;
use marauders_map::config::Config;
use marauders_map::domain::{IncidentStatus, Location, Severity};
use marauders_map::events::{Event, EventPayload, IncidentCreated};
use marauders_map::log::{EventLog, Topic};
use uuid::Uuid;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // 1. Connect to the log: Iggy when IGGY_URL is set, else the embedded
    //    log in the PostgreSQL database at DATABASE_URL.
    let log = open_log_from_env().await?;
    println!("connected to the {} log", log.backend_name());

    // 2. The stream and topics are created on first use; nothing to do.
    // 3. Send 5 batches of 10 events. Each batch is acknowledged as a whole
    //    and we get back the offset every event landed at.
    for batch_number in 0..5 {
        let batch: Vec<Event> = (0..10)
            .map(|n| sample_incident(batch_number * 10 + n))
            .collect();
        let messages: Vec<_> = batch.iter().map(Event::to_log_message).collect();
        let offsets = log.append(Topic::IncidentEvents, &messages).await?;
        println!(
            "batch {batch_number}: offsets {}..={} on {}",
            offsets[0],
            offsets[offsets.len() - 1],
            Topic::IncidentEvents
        );
    }
    log.shutdown().await;
    Ok(())
}

fn sample_incident(n: usize) -> Event {
    let now = Utc::now();
    let incident = IncidentCreated {
        id: Uuid::now_v7(),
        title: format!("Suspicious activity near the Room of Requirement (#{n})"),
        description: Some("Reported from the taste test producer".into()),
        severity: Severity::ALL[n % Severity::ALL.len()],
        location: Location::RoomOfRequirement,
        status: IncidentStatus::Open,
        reported_by: Uuid::nil(),
        assigned_to: None,
        resolved_by: None,
        resolution: None,
        created_at: now,
        updated_at: now,
        resolved_at: None,
        version: 1,
    };
    Event::new(EventPayload::IncidentCreated(incident), None)
}

/// Connects to PostgreSQL and the log as the service does (flags or
/// DATABASE_URL / IGGY_URL).
async fn open_log_from_env() -> anyhow::Result<EventLog> {
    let Args { config } = Args::parse();
    let (_pool, log) = marauders_map::app::connect_database_and_log(&config).await?;
    log.wait_until_ready(Duration::from_secs(10)).await?;
    Ok(log)
}

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    config: Config,
}
