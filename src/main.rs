//! The `marauders-map` binary: parses the command line and hands over to the
//! library. `serve` is the default.

use anyhow::Context;
use clap::{Parser, Subcommand};
use marauders_map::app::Application;
use marauders_map::config::{Config, ServeConfig};
use marauders_map::domain::Role;
use marauders_map::identity::accounts;
use marauders_map::log::iggy_user::{IggyCredentials, ServiceUserSetup, set_up_service_user};
use marauders_map::projections::Projections;
use marauders_map::{database, shutdown};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "marauders-map",
    version,
    about = "The Marauder's Map: real-time incidents for Hogwarts, event-sourced"
)]
struct Cli {
    #[command(flatten)]
    config: Config,
    #[command(flatten)]
    serve: ServeConfig,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP API (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Run one projector alone (read-model, notifications or audit) until
    /// Ctrl-C, e.g. while `serve --without-projectors` serves the API.
    Project { name: String },
    /// Operate on a projection.
    #[command(subcommand)]
    Projection(ProjectionCommand),
    /// Each projection's stored offset, log end, lag and dead letters.
    Projections,
    /// Operate on the log itself.
    #[command(subcommand)]
    Log(LogCommand),
    /// Administer Apache Iggy.
    #[command(subcommand)]
    Iggy(IggyCommand),
}

#[derive(Debug, Subcommand)]
enum LogCommand {
    /// Copy the embedded log (in DATABASE_URL) into an empty Apache Iggy
    /// stream as the same log — every offset, id and the log's identity
    /// kept — and verify the copy. Run it with the service stopped; then
    /// set IGGY_URL and start the service: projections continue where they
    /// were.
    Migrate {
        /// The Iggy server, e.g. iggy://user:password@127.0.0.1:8090.
        #[arg(long = "to")]
        to: String,
    },
}

#[derive(Debug, Subcommand)]
enum IggyCommand {
    /// As an Iggy administrator (e.g. the root user): create the stream and
    /// its topics if missing, and the service's own user — the one in
    /// IGGY_URL — with only the permissions it needs on that stream (or
    /// reset an existing one's to exactly those).
    Setup {
        /// The administrator's URL, e.g. `iggy://iggy:<root password>@host:8090`.
        #[arg(long, env = "IGGY_ADMIN_URL", hide_env_values = true)]
        admin_url: String,
    },
}

#[derive(Debug, Subcommand)]
enum ProjectionCommand {
    /// Replay the projection from offset 0 into fresh tables and switch over.
    Rebuild { name: String },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Grant a role (STUDENT, PREFECT or PROFESSOR) to the user with this email.
    Promote {
        email: String,
        #[arg(value_parser = parse_role)]
        role: Role,
    },
}

fn parse_role(value: &str) -> Result<Role, String> {
    value
        .to_ascii_uppercase()
        .parse::<Role>()
        .map_err(|error| error.to_string())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_new(&cli.config.log_level).unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    match cli.command {
        Some(Command::Migrate) => {
            let pool =
                database::connect(&cli.config.database_url, cli.config.database_timeout()).await?;
            database::run_migrations(&pool).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Some(Command::User(UserCommand::Promote { email, role })) => {
            let pool =
                database::connect(&cli.config.database_url, cli.config.database_timeout()).await?;
            database::run_migrations(&pool).await?;
            let (account, old_role) = accounts::change_role(&pool, &email, role).await?;
            if old_role == role {
                println!("{} is already {role}", account.email);
            } else {
                println!("{} is now {role} (was {old_role})", account.email);
            }
            Ok(())
        }
        Some(Command::Project { name }) => {
            let (pool, log) = marauders_map::app::connect_database_and_log(&cli.config).await?;
            let _log_user =
                marauders_map::log_migration::LogUserLock::acquire(&cli.config.database_url)
                    .await?;
            log.wait_until_ready(std::time::Duration::from_secs(30))
                .await?;
            let shutdown = shutdown::signal_token();
            marauders_map::app::run_projector(&name, log.clone(), pool, shutdown).await?;
            log.shutdown().await;
            Ok(())
        }
        Some(Command::Projection(ProjectionCommand::Rebuild { name })) => {
            let (pool, log) = marauders_map::app::connect_database_and_log(&cli.config).await?;
            log.wait_until_ready(std::time::Duration::from_secs(30))
                .await?;
            let projection = Projections::find(&name)?;
            let projections = Projections::new(log.clone(), pool);
            let progress = std::sync::Arc::new(marauders_projections::RebuildProgress::default());
            let rebuild = projections.rebuild_now(projection, progress.clone());
            tokio::pin!(rebuild);
            let mut ticks = tokio::time::interval(std::time::Duration::from_secs(2));
            ticks.tick().await;
            let report = loop {
                tokio::select! {
                    report = &mut rebuild => break report?,
                    _ = ticks.tick() => {
                        let estimate = progress.estimate();
                        eprintln!(
                            "{name}: {} of {} offsets, {:.0} events/s, {} left",
                            estimate.applied_offset,
                            estimate.log_end,
                            estimate.events_per_second,
                            estimate.seconds_left.map_or("?".to_owned(), |left| format!("{left:.0} s"))
                        );
                    }
                }
            };
            println!(
                "{name} rebuilt: {} events replayed, now at offset {}",
                report.events, report.next_offset
            );
            log.shutdown().await;
            Ok(())
        }
        Some(Command::Projections) => {
            let (pool, log) = marauders_map::app::connect_database_and_log(&cli.config).await?;
            log.wait_until_ready(std::time::Duration::from_secs(30))
                .await?;
            println!(
                "{:<14} {:<16} {:>10} {:>10} {:>8} {:>12}",
                "projection", "topic", "offset", "log end", "lag", "dead letters"
            );
            for status in Projections::new(log.clone(), pool).status().await? {
                println!(
                    "{:<14} {:<16} {:>10} {:>10} {:>8} {:>12}",
                    status.name,
                    status.topic,
                    status.stored_offset,
                    status.log_end,
                    status.lag,
                    status.dead_letters
                );
                if let Some(problem) = &status.problem {
                    println!("  {}: {problem}", status.name);
                }
            }
            log.shutdown().await;
            Ok(())
        }
        Some(Command::Log(LogCommand::Migrate { to })) => {
            let pool =
                database::connect(&cli.config.database_url, cli.config.database_timeout()).await?;
            database::run_migrations(&pool).await?;
            let mut target = marauders_map::log::iggy::IggyConfig::new(to.trim());
            target.stream = cli.config.iggy_stream.clone();
            let stream = target.stream.clone();
            let report = marauders_map::log_migration::migrate_embedded_log_to_iggy(
                &cli.config.database_url,
                &pool,
                target,
            )
            .await?;
            for (topic, count) in &report.copied {
                println!("{topic:<16} {count:>10} messages copied and verified");
            }
            println!(
                "{} consumer offsets copied; the log keeps its identity {}.",
                report.consumer_offsets, report.log_id
            );
            println!(
                "Now give the service a user of its own (`marauders-map iggy setup` with IGGY_ADMIN_URL={} and IGGY_URL naming that user), then start it with that IGGY_URL (and the same DATABASE_URL{}): projections continue from their offsets, no rebuild needed.",
                marauders_map::log::iggy::redact_password(&to),
                if stream == marauders_map::log::STREAM_NAME {
                    String::new()
                } else {
                    format!(", IGGY_STREAM={stream}")
                }
            );
            Ok(())
        }
        Some(Command::Iggy(IggyCommand::Setup { admin_url })) => {
            let service_url = cli
                .config
                .iggy_url
                .as_deref()
                .map(str::trim)
                .filter(|url| !url.is_empty())
                .context("set IGGY_URL to the service's URL, with the user to create in it")?;
            let stream = &cli.config.iggy_stream;
            let outcome = set_up_service_user(admin_url.trim(), stream, service_url).await?;
            let user = IggyCredentials::from_url(service_url)?.username;
            match outcome {
                ServiceUserSetup::Created => println!(
                    "created Iggy user {user} with the service's permissions on stream {stream}"
                ),
                ServiceUserSetup::PermissionsReset => println!(
                    "Iggy user {user} exists; its permissions are now exactly the service's on stream {stream}"
                ),
            }
            Ok(())
        }
        Some(Command::Serve) | None => serve_until_signal(&cli.config, &cli.serve).await,
    }
}

async fn serve_until_signal(config: &Config, serve: &ServeConfig) -> anyhow::Result<()> {
    let application = Application::build(config, serve).await?;
    application
        .run_until_stopped(shutdown::signal_token())
        .await
}
