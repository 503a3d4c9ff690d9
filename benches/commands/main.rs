//! `scripts/bench commands`: what a command costs, as two builds of the
//! service compared in one run — the *baseline* (`BENCH_BASELINE`, by
//! default the commit before issue 16's write path) and *ours* (this
//! checkout) — so that a change is judged by ratios measured side by side
//! on the same noisy machine, not by numbers from another day.
//!
//! For each log backend (the embedded log always; Iggy, with an fsync on
//! every append, when an iggy-server is available) and each build, on a
//! database (and a stream) of its own:
//!
//! - the service runs as processes of its own: `serve --without-projectors`
//!   and `project <name>` for each projection ([`service`]);
//! - this process is the load: 1, 16 and 64 clients over HTTP in a closed
//!   loop, half reports and half comments on the client's own incidents,
//!   each with an `Idempotency-Key` ([`load`]);
//! - for each number of clients: commands/s, p50, p99, every answer that
//!   was not 2xx, and the CPU time per command of the service, of
//!   PostgreSQL, of the projectors and of iggy-server, from the kernel's
//!   counters (`marauders_testkit::cpu`).
//!
//! Then, per backend: the bound of one command per durable append (single
//! appends, one at a time, straight to the log), and the write model's
//! start-up over 100,000 events with and without a snapshot.
//!
//! A measurement, not a test: nothing asserts a time. docs/performance.md
//! says how CPU is counted and how to read the ratios.

mod load;
mod service;

use std::time::{Duration, Instant};

use marauders_map::commands::WriteModel;
use marauders_map::log::{EventLog, LogConfig, Topic};
use marauders_testkit::bench::{
    Align, Figure, format_duration, percentile, print_columns, print_figures,
};
use marauders_testkit::cpu::{PostgresProcesses, process_cpu_time};
use marauders_testkit::{
    IggyServer, LogLocation, TestBackend, TestDatabase, fresh_stream_name, iggy_available,
};
use uuid::Uuid;

use load::{Answers, Client, closed_loop};
use service::{Build, Builds, IggyStream, Service};

/// The numbers of clients sending commands at once.
const CLIENT_COUNTS: [usize; 3] = [1, 16, 64];
/// Load before each measured window, not counted: connections opened,
/// caches and pools warm.
const WARM_UP: Duration = Duration::from_secs(1);
/// How long the clients send commands in each measured window.
const WINDOW: Duration = Duration::from_secs(5);
/// Each backend's builds run this many times, in the order baseline,
/// ours, then ours, baseline, and so on: a machine that grows busier or
/// quieter during the run favours neither. Each row pools its rounds.
const ROUNDS: usize = 2;
/// Students the clients act as (client n is student n mod STUDENTS).
const STUDENTS: usize = 8;
/// How long single appends run, one after the other.
const SINGLE_APPENDS_FOR: Duration = Duration::from_secs(3);
const REBUILD_EVENTS: usize = 100_000;

const EMBEDDED: &str = "embedded (PostgreSQL)";
/// An iggy-server this bench started (`IggyServer::start`): every append
/// persisted and fsynced before it is acknowledged.
const IGGY_FSYNC: &str = "iggy, fsync every append";
/// The server at `IGGY_URL`, configured by whoever started it.
const IGGY_SHARED: &str = "iggy at IGGY_URL";

#[tokio::main]
async fn main() {
    let started = Instant::now();
    let staged = Builds::from_env();
    let builds = &staged.both;
    for build in builds {
        println!(
            "{:<8} {} ({})",
            build.name,
            build.revision,
            build.built_at.display()
        );
    }
    let with_iggy = match iggy_skip_reason() {
        None => true,
        Some(reason) => {
            println!("Iggy: skipped — {reason}");
            false
        }
    };

    let backends: &[Backend] = if with_iggy {
        &[Backend::Embedded, Backend::Iggy]
    } else {
        &[Backend::Embedded]
    };
    // Everything measured, by round.
    let mut rounds: Vec<Round> = (0..ROUNDS).map(|_| Round::default()).collect();
    for backend in backends {
        for (number, round) in rounds.iter_mut().enumerate() {
            let mut order = [&builds[0], &builds[1]];
            if number % 2 == 1 {
                order.reverse();
            }
            for build in order {
                measure_commands(*backend, build, number, round).await;
            }
        }
    }
    let pooled = Round::pool(&rounds);

    let mut figures = pooled.appends_figures();
    measure_rebuild_alone(EMBEDDED, TestBackend::postgres().await, &mut figures).await;
    if with_iggy {
        let server = IggyServer::start().await;
        let label = iggy_label(&server);
        let stream = fresh_stream_name();
        let backend = TestBackend::Iggy { server, stream };
        measure_rebuild_alone(label, backend, &mut figures).await;
    }

    print_command_rows(&pooled.windows);
    print_figures(&figures);
    print_figures(&ratios(&pooled, &rounds));
    println!(
        "\nthe whole bench took {:.0} s",
        started.elapsed().as_secs_f64()
    );
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Embedded,
    Iggy,
}

fn iggy_skip_reason() -> Option<String> {
    if iggy_available() {
        return None;
    }
    Some(match std::env::var_os("IGGY_SERVER") {
        Some(program) => format!("IGGY_SERVER={} is not a file", program.display()),
        None => "no iggy-server on PATH, and IGGY_SERVER and IGGY_URL are unset".to_owned(),
    })
}

fn iggy_label(server: &IggyServer) -> &'static str {
    if server.pid().is_some() {
        IGGY_FSYNC
    } else {
        IGGY_SHARED
    }
}

/// One build, one backend, one number of clients: a measured window, or
/// the windows of every round pooled.
#[derive(Clone)]
struct CommandRow {
    backend: &'static str,
    build: &'static str,
    clients: usize,
    /// The windows' answers, and the warm-ups' failures with them.
    answers: Answers,
    /// From each window's start to its last answer, added up.
    elapsed: Duration,
    /// Each round's commands/s, to show how much they differ (one, for a
    /// single window).
    per_second_by_round: Vec<f64>,
    /// Used in the window: `serve` until the window's last answer, the
    /// others until the projectors had applied all it appended.
    cpu: CpuTimes,
}

/// CPU time used, by whom: so far, or between two readings.
#[derive(Debug, Clone, Copy)]
struct CpuTimes {
    /// `serve`.
    service: Duration,
    /// Every `project` process together.
    projectors: Duration,
    /// The whole server; `None` when it is not a process on this machine.
    postgres: Option<Duration>,
    /// `None` unless this bench started the iggy-server.
    iggy: Option<Duration>,
}

impl CpuTimes {
    /// # Panics
    ///
    /// When one of the processes is gone.
    fn read(
        service: &Service,
        postgres: Option<PostgresProcesses>,
        iggy_pid: Option<u32>,
    ) -> CpuTimes {
        CpuTimes {
            service: process_cpu_time(service.serve_pid()).expect("serve runs"),
            projectors: service
                .projector_pids()
                .into_iter()
                .map(|pid| process_cpu_time(pid).expect("the projectors run"))
                .sum(),
            postgres: postgres.map(|server| server.cpu_time().expect("PostgreSQL runs")),
            iggy: iggy_pid.map(|pid| process_cpu_time(pid).expect("iggy-server runs")),
        }
    }

    fn plus(self, other: CpuTimes) -> CpuTimes {
        let plus = |one: Option<Duration>, other: Option<Duration>| Some(one? + other?);
        CpuTimes {
            service: self.service + other.service,
            projectors: self.projectors + other.projectors,
            postgres: plus(self.postgres, other.postgres),
            iggy: plus(self.iggy, other.iggy),
        }
    }

    fn since(self, before: CpuTimes) -> CpuTimes {
        let since = |after: Option<Duration>, before: Option<Duration>| {
            Some(after?.saturating_sub(before?))
        };
        CpuTimes {
            service: self.service.saturating_sub(before.service),
            projectors: self.projectors.saturating_sub(before.projectors),
            postgres: since(self.postgres, before.postgres),
            iggy: since(self.iggy, before.iggy),
        }
    }
}

impl CommandRow {
    fn is_same_as(&self, other: &CommandRow) -> bool {
        (self.backend, self.build, self.clients) == (other.backend, other.build, other.clients)
    }

    /// Adds another round's window of the same build, backend and clients.
    fn pool(&mut self, other: CommandRow) {
        self.answers.add(other.answers);
        self.elapsed += other.elapsed;
        self.per_second_by_round.extend(other.per_second_by_round);
        self.cpu = self.cpu.plus(other.cpu);
    }

    fn commands(&self) -> usize {
        self.answers.succeeded.len()
    }

    fn commands_per_second(&self) -> f64 {
        self.commands() as f64 / self.elapsed.as_secs_f64()
    }

    fn latency(&self, quantile: f64) -> Option<Duration> {
        let mut sorted = self.answers.succeeded.clone();
        sorted.sort();
        (!sorted.is_empty()).then(|| percentile(&sorted, quantile))
    }

    /// µs of `cpu` per successful command.
    fn per_command(&self, cpu: Duration) -> Option<f64> {
        (self.commands() > 0).then(|| cpu.as_secs_f64() * 1e6 / self.commands() as f64)
    }

    fn cells(&self) -> Vec<String> {
        let micros = |cpu: Option<Duration>| {
            cpu.and_then(|cpu| self.per_command(cpu))
                .map_or("—".to_owned(), |us| format!("{us:.0}"))
        };
        let latency = |quantile| {
            self.latency(quantile).map_or("—".to_owned(), |latency| {
                format!("{:.2}", latency.as_secs_f64() * 1e3)
            })
        };
        let failed = match self.answers.failures() {
            0 => "0".to_owned(),
            total => format!(
                "{total} ({})",
                self.answers
                    .failed
                    .iter()
                    .map(|(outcome, count)| format!("{outcome}: {count}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        vec![
            self.backend.to_owned(),
            self.build.to_owned(),
            self.clients.to_string(),
            format!("{:.0}", self.commands_per_second()),
            self.per_second_by_round
                .iter()
                .map(|per_second| format!("{per_second:.0}"))
                .collect::<Vec<_>>()
                .join(", "),
            failed,
            latency(0.50),
            latency(0.99),
            micros(Some(self.cpu.service)),
            micros(self.cpu.postgres),
            micros(Some(self.cpu.projectors)),
            micros(self.cpu.iggy),
        ]
    }
}

/// The service of `build` on `backend`, on a fresh database (and stream),
/// under each number of clients in turn, with the single appends measured
/// beside it: its part of round `number`.
async fn measure_commands(backend: Backend, build: &Build, number: usize, round: &mut Round) {
    // Empty, not migrated: each build applies the migrations it knows.
    let database = TestDatabase::empty().await;
    let postgres = PostgresProcesses::serving(&database.pool).await;
    let iggy_server = match backend {
        Backend::Embedded => None,
        // A server of its own per build, so neither inherits the other's
        // files.
        Backend::Iggy => Some(IggyServer::start().await),
    };
    let label = iggy_server.as_ref().map_or(EMBEDDED, iggy_label);
    let iggy_pid = iggy_server.as_ref().and_then(IggyServer::pid);
    let stream = iggy_server.as_ref().map(IggyStream::fresh_on);
    let mut service = Service::start(build, &database.url, stream.as_ref()).await;

    let professor = professor_token(&service).await;
    let mut students = Vec::new();
    for n in 0..STUDENTS {
        students.push(load::register(&service.base_url, &format!("student{n}@hogwarts.edu")).await);
    }

    flush_pending_writes(&database.pool).await;
    round
        .appends
        .push(single_appends_beside(label, iggy_server.as_ref()).await);

    for clients in CLIENT_COUNTS {
        let load: Vec<Client> = (0..clients)
            .map(|n| Client::new(&service.base_url, &students[n % STUDENTS]))
            .collect();
        flush_pending_writes(&database.pool).await;
        let (load, warm_up, _) = closed_loop(load, WARM_UP).await;
        service.wait_until_projections_caught_up(&professor).await;

        let before = CpuTimes::read(&service, postgres, iggy_pid);
        let (_, mut answers, elapsed) = closed_loop(load, WINDOW).await;
        let service_at_last_answer = process_cpu_time(service.serve_pid()).expect("serve runs");
        service.wait_until_projections_caught_up(&professor).await;
        let after = CpuTimes {
            service: service_at_last_answer,
            ..CpuTimes::read(&service, postgres, iggy_pid)
        };

        for (outcome, count) in warm_up.failed {
            *answers
                .failed
                .entry(format!("{outcome} in the warm-up"))
                .or_default() += count;
        }
        let per_second = answers.succeeded.len() as f64 / elapsed.as_secs_f64();
        round.windows.push(CommandRow {
            backend: label,
            build: build.name,
            clients,
            answers,
            elapsed,
            per_second_by_round: vec![per_second],
            cpu: after.since(before),
        });
        eprintln!(
            "{label}, {}, round {}: {}, {per_second:.0} commands/s",
            build.name,
            number + 1,
            clients_label(clients)
        );
    }

    service.stop().await;
    if let Some(stream) = stream {
        stream.remove().await;
    }
    drop(iggy_server);
    database.drop_database().await;
}

/// Writes out what earlier windows left to write — PostgreSQL's dirty
/// buffers (`CHECKPOINT`) and the kernel's dirty pages (`sync`) — so that
/// a window does not pay for the one before it, or for the other build's.
/// Without it, the first Iggy window, right after the embedded log's, was
/// the slowest in every run; writeback delaying its fsyncs is the likely
/// cause.
async fn flush_pending_writes(pool: &sqlx::PgPool) {
    sqlx::query("CHECKPOINT")
        .execute(pool)
        .await
        .expect("CHECKPOINT (TEST_DATABASE_URL is a superuser's)");
    let synced = std::process::Command::new("sync").status();
    assert!(synced.is_ok_and(|status| status.success()), "sync");
}

/// A PROFESSOR's token, to read the projections' lag: registered over
/// HTTP, promoted with the build's own `user promote`, logged in again.
async fn professor_token(service: &Service) -> String {
    let email = "professor@hogwarts.edu";
    load::register(&service.base_url, email).await;
    service.run_to_completion(&["user", "promote", email, "PROFESSOR"], &[]);
    load::log_in(&service.base_url, email).await
}

fn print_command_rows(rows: &[CommandRow]) {
    println!(
        "\nCommands over HTTP, closed loop, {}s window after {}s warm-up, {ROUNDS} rounds pooled; CPU in µs per successful command:",
        WINDOW.as_secs(),
        WARM_UP.as_secs()
    );
    if rows.iter().any(|row| row.backend == IGGY_FSYNC) {
        println!(
            "`{IGGY_FSYNC}`: a fresh iggy-server per build, started with IGGY_SYSTEM_PARTITION_MESSAGES_REQUIRED_TO_SAVE=1 and IGGY_SYSTEM_PARTITION_ENFORCE_FSYNC=true: each append persisted and fsynced before it is acknowledged."
        );
    }
    println!(
        "service: `serve` during the window. PostgreSQL (the whole server, the projectors' own database work included), projectors (every `project` process) and iggy-server: from the window's start until the projectors had applied all it appended."
    );
    let (left, right) = (Align::Left, Align::Right);
    print_columns(
        &[
            ("backend", left),
            ("build", left),
            ("clients", right),
            ("commands/s", right),
            ("by round", left),
            ("failed", left),
            ("p50 ms", right),
            ("p99 ms", right),
            ("service µs/cmd", right),
            ("PostgreSQL µs/cmd", right),
            ("projectors µs/cmd", right),
            ("iggy-server µs/cmd", right),
        ],
        &rows.iter().map(CommandRow::cells).collect::<Vec<_>>(),
    );
}

/// What one round measured: every window, and the single appends beside
/// each build's windows.
#[derive(Default)]
struct Round {
    windows: Vec<CommandRow>,
    appends: Vec<SingleAppends>,
}

impl Round {
    /// Every round's windows of one build, backend and number of clients
    /// pooled into one row, in the order they were first measured; the
    /// single appends of every round together.
    fn pool(rounds: &[Round]) -> Round {
        let mut pooled = Round::default();
        for round in rounds {
            for window in &round.windows {
                match pooled.windows.iter_mut().find(|row| row.is_same_as(window)) {
                    Some(row) => row.pool(window.clone()),
                    None => pooled.windows.push(window.clone()),
                }
            }
            pooled.appends.extend(round.appends.iter().cloned());
        }
        pooled
    }

    fn window(&self, backend: &str, build: &str, clients: usize) -> Option<&CommandRow> {
        self.windows
            .iter()
            .find(|row| row.backend == backend && row.build == build && row.clients == clients)
    }

    /// Single appends on `backend`, pooled: their latencies, sorted, and
    /// how many per second.
    fn appends_on(&self, backend: &str) -> Option<(Vec<Duration>, f64)> {
        let measured: Vec<&SingleAppends> = self
            .appends
            .iter()
            .filter(|appends| appends.backend == backend)
            .collect();
        let elapsed: Duration = measured.iter().map(|appends| appends.elapsed).sum();
        let mut samples: Vec<Duration> = measured
            .iter()
            .flat_map(|appends| appends.samples.iter().copied())
            .collect();
        samples.sort();
        (!samples.is_empty()).then(|| {
            let per_second = samples.len() as f64 / elapsed.as_secs_f64();
            (samples, per_second)
        })
    }

    fn appends_figures(&self) -> Vec<Figure> {
        each_once(self.appends.iter().map(|appends| appends.backend))
            .into_iter()
            .filter_map(|backend| {
                let (samples, per_second) = self.appends_on(backend)?;
                Some(Figure {
                    backend,
                    metric: format!(
                        "single durable appends, one at a time, p50 {}",
                        format_duration(percentile(&samples, 0.5))
                    ),
                    value: format!("{per_second:.0} /s"),
                })
            })
            .collect()
    }
}

/// The backends named, each once, in the order they first appear.
fn each_once(backends: impl Iterator<Item = &'static str>) -> Vec<&'static str> {
    let mut once = Vec::new();
    for backend in backends {
        if !once.contains(&backend) {
            once.push(backend);
        }
    }
    once
}

/// "1 client", "64 clients".
fn clients_label(clients: usize) -> String {
    match clients {
        1 => "1 client".to_owned(),
        n => format!("{n} clients"),
    }
}

/// A ratio the write path is judged by, and how to compute it from what a
/// round (or all of them) measured.
type Ratio<'a> = (String, Box<dyn Fn(&Round) -> Option<f64> + 'a>);

/// The ratios the write path is judged by, per backend: each build's
/// commands/s against single durable appends at 1 and at 64 clients, how
/// each build scales from one client to 64, and ours against the baseline.
/// Each over everything (`pooled`), then over each of the `rounds` alone,
/// so that a ratio whose rounds disagree is seen to.
fn ratios(pooled: &Round, rounds: &[Round]) -> Vec<Figure> {
    let (fewest, most) = (CLIENT_COUNTS[0], CLIENT_COUNTS[CLIENT_COUNTS.len() - 1]);
    let backends = each_once(pooled.windows.iter().map(|row| row.backend));
    let mut figures = Vec::new();
    for backend in backends {
        let ours_over_baseline = move |clients: usize, value: fn(&CommandRow) -> Option<f64>| {
            move |round: &Round| {
                Some(
                    value(round.window(backend, "ours", clients)?)?
                        / value(round.window(backend, "baseline", clients)?)?,
                )
            }
        };
        let mut judged: Vec<Ratio> = Vec::new();
        for clients in [fewest, most] {
            for build in ["ours", "baseline"] {
                // With one client, at most about 1: its command waits for a
                // durable append of its own and cannot outrun the log alone.
                // With many, above 1 only if commands share appends.
                judged.push((
                    format!(
                        "{build}: commands/s at {} ÷ single durable appends/s",
                        clients_label(clients)
                    ),
                    Box::new(move |round: &Round| {
                        Some(
                            round.window(backend, build, clients)?.commands_per_second()
                                / round.appends_on(backend)?.1,
                        )
                    }),
                ));
            }
        }
        for build in ["ours", "baseline"] {
            judged.push((
                format!("{build}: commands/s, {most} clients ÷ {fewest}"),
                Box::new(move |round: &Round| {
                    Some(
                        round.window(backend, build, most)?.commands_per_second()
                            / round.window(backend, build, fewest)?.commands_per_second(),
                    )
                }),
            ));
        }
        judged.push((
            format!("p50 at {}, ours ÷ baseline", clients_label(fewest)),
            Box::new(ours_over_baseline(fewest, |row| {
                Some(row.latency(0.5)?.as_secs_f64())
            })),
        ));
        judged.push((
            format!("commands/s at {most} clients, ours ÷ baseline"),
            Box::new(ours_over_baseline(most, |row| {
                Some(row.commands_per_second())
            })),
        ));
        judged.push((
            format!("service CPU per command at {most} clients, ours ÷ baseline"),
            Box::new(ours_over_baseline(most, |row| {
                row.per_command(row.cpu.service)
            })),
        ));
        let ratio =
            |value: Option<f64>| value.map_or("—".to_owned(), |value| format!("{value:.2}×"));
        for (metric, of) in judged {
            let by_round: Vec<String> = rounds.iter().map(|round| ratio(of(round))).collect();
            figures.push(Figure {
                backend,
                metric,
                value: format!("{} (rounds: {})", ratio(of(pooled)), by_round.join(", ")),
            });
        }
    }
    figures
}

/// Single appends, one at a time, on one backend.
#[derive(Clone)]
struct SingleAppends {
    backend: &'static str,
    samples: Vec<Duration>,
    elapsed: Duration,
}

/// Single appends on a log of their own beside the service's — a fresh
/// database on the same PostgreSQL, or a fresh stream on the same
/// iggy-server — just before the build's windows, so that the bound and the
/// commands are measured minutes apart at most, as the machine was then.
async fn single_appends_beside(
    backend: &'static str,
    iggy_server: Option<&IggyServer>,
) -> SingleAppends {
    match iggy_server {
        None => {
            let side = TestDatabase::fresh().await;
            let log = LogLocation::Embedded.open(&side.pool).await;
            let appends = single_appends(backend, &log).await;
            log.shutdown().await;
            side.drop_database().await;
            appends
        }
        Some(server) => {
            let stream = fresh_stream_name();
            let log = EventLog::open(LogConfig::Iggy(server.config(&stream)))
                .await
                .expect("the log opens");
            log.wait_until_ready(Duration::from_secs(20))
                .await
                .expect("the log becomes ready");
            let appends = single_appends(backend, &log).await;
            log.shutdown().await;
            service::delete_iggy_stream(&server.url, &stream).await;
            appends
        }
    }
}

/// Appends of one event each, one after the other, straight to the log,
/// for `SINGLE_APPENDS_FOR`: the most commands per second a write path
/// that appends once per command can reach.
async fn single_appends(backend: &'static str, log: &EventLog) -> SingleAppends {
    let mut samples = Vec::new();
    let started = Instant::now();
    while started.elapsed() < SINGLE_APPENDS_FOR {
        let event =
            marauders_testkit::events::incident_created(Uuid::now_v7(), Uuid::nil(), "Single");
        let message = event.to_log_message();
        let appending = Instant::now();
        log.append(Topic::IncidentEvents, &[message])
            .await
            .expect("the log appends");
        samples.push(appending.elapsed());
    }
    SingleAppends {
        backend,
        samples,
        elapsed: started.elapsed(),
    }
}

/// The write model's start-up, on a log of its own without the service.
async fn measure_rebuild_alone(
    label: &'static str,
    backend: TestBackend,
    figures: &mut Vec<Figure>,
) {
    let log = backend.open_log().await;
    // The write model keeps its snapshots in PostgreSQL: beside the
    // embedded log, or in a database of their own beside Iggy.
    let (snapshots, iggy_server) = match backend {
        TestBackend::Postgres(database) => (database, None),
        TestBackend::Iggy { server, .. } => (TestDatabase::fresh().await, Some(server)),
    };
    measure_rebuild(label, &log, &snapshots.pool, figures).await;
    log.shutdown().await;
    snapshots.drop_database().await;
    drop(iggy_server);
}

/// Tops `incident-events` up to 100,000 events (a created and comments
/// per incident), then rebuilds a write model from offset 0 and from a
/// snapshot.
async fn measure_rebuild(
    backend: &'static str,
    log: &EventLog,
    pool: &sqlx::PgPool,
    figures: &mut Vec<Figure>,
) {
    marauders_testkit::bench::append_incident_history(log, REBUILD_EVENTS).await;

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
