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

const BATCH: u32 = 100;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Args { config, replay } = Args::parse();
    let (_pool, log) = marauders_map::app::connect_database_and_log(&config).await?;
    log.wait_until_ready(Duration::from_secs(10)).await?;
    let consumer = ConsumerName::parse("taste-test-consumer")?;
    let topic = Topic::IncidentEvents;

    // `--replay` = the seed's PollingStrategy::offset(0): read everything
    // again. Otherwise resume from the stored offset (PollingStrategy::next).
    let mut next_offset = if replay {
        0
    } else {
        log.load_consumer_offset(&consumer, topic).await?
    };
    println!(
        "{consumer} reading {topic} on the {} log from offset {next_offset}",
        log.backend_name()
    );

    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        let records = log.read(topic, next_offset, BATCH).await?;
        for record in &records {
            match Event::decode(&record.payload) {
                Ok(event) => println!(
                    "offset={} type={} id={} at={}",
                    record.offset,
                    event.event_type(),
                    event.event_id,
                    event.timestamp
                ),
                // Unknown or malformed messages are reported and skipped.
                Err(error) => eprintln!("offset={} skipped: {error}", record.offset),
            }
            next_offset = record.offset + 1;
        }
        if !records.is_empty() {
            // Stored after printing: at-least-once. A crash in between
            // prints a few events again on the next run, never skips one.
            log.store_consumer_offset(&consumer, topic, next_offset)
                .await?;
            continue;
        }
        // Caught up: sleep until the log grows (no busy polling) or Ctrl-C.
        tokio::select! {
            _ = &mut stop => break,
            _ = log.wait_for_new_events(topic, next_offset, Duration::from_secs(30)) => {}
        }
    }
    println!("stopped at offset {next_offset}");
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
