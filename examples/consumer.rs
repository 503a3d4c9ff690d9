//! The seed's "5-minute taste test", consumer half: read `incident-events`
//! from where this consumer left off, print each event, store the offset,
//! and wait for more.
//!
//! ```text
//! cargo run --example consumer               # resume from the stored offset
//! cargo run --example consumer -- --replay   # start again from offset 0
//! ```
//!
//! Same environment as the producer example (IGGY_URL or DATABASE_URL).
//! Ctrl-C stops it after storing the offset of the last printed event.

use std::time::Duration;

use clap::Parser;
use marauders_map::config::Config;
use marauders_map::events::Event;
use marauders_map::log::{ConsumerName, Topic};
use marauders_projections::{EventHandler, LogConsumer};
use tokio_util::sync::CancellationToken;

/// Prints each event; malformed ones never reach it (the consumer logs and
/// skips them).
struct PrintEvents;

impl EventHandler for PrintEvents {
    type Error = std::convert::Infallible;

    async fn handle(&mut self, offset: u64, event: &Event) -> Result<(), Self::Error> {
        println!(
            "offset={offset} type={} id={} at={}",
            event.event_type(),
            event.event_id,
            event.timestamp
        );
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Args { config, replay } = Args::parse();
    let (_pool, log) = marauders_map::app::connect_database_and_log(&config).await?;
    log.wait_until_ready(Duration::from_secs(10)).await?;
    let name = ConsumerName::parse("taste-test-consumer")?;
    let topic = Topic::IncidentEvents;
    println!("{name} reading {topic} on the {} log", log.backend_name());

    // `--replay` = the seed's PollingStrategy::offset(0): read everything
    // again. Otherwise resume from the stored offset (PollingStrategy::next).
    let mut consumer = LogConsumer::new(log.clone(), name, topic);
    if replay {
        consumer = consumer.starting_at(0);
    }
    // Ctrl-C stops the loop after the batch in hand, with its offset stored.
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
    });
    consumer.run(&mut PrintEvents, shutdown).await;
    log.shutdown().await;
    Ok(())
}

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    config: Config,
    /// Start again from offset 0 instead of the stored offset.
    #[arg(long)]
    replay: bool,
}
