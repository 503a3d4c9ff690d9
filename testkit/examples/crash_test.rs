//! `crash-test`: the promise "never lost, never doubled", shown with kill -9.
//!
//! Run by `scripts/crash-test` (and `.ci/run`). It starts the real
//! `marauders-map` binary ($MARAUDERS_MAP_BIN) as a process of its own on a
//! fresh database — and, with `--iggy`, its own `iggy-server` with an fsync
//! on every append — puts it under load from eight clients that send every
//! command with an `Idempotency-Key`, and then:
//!
//! 1. kills the service with SIGKILL mid-load, restarts it, and retries
//!    every request that got no answer, with its key, until it is answered;
//! 2. with `--iggy`: kills the log server with SIGKILL mid-load (the
//!    service stays up and answers 503), restarts it, and retries likewise.
//!
//! A kill that found no request in flight proves nothing, so that round is
//! repeated (a bounded number of times). Then it checks, from the log
//! itself, that every request took effect exactly once — counting
//! *accepted* events by title and by comment body with the same fold every
//! reader uses (re-sent copies of an event may be on the log, voided) — and
//! that the read model equals the fold. It prints the counts and exits
//! non-zero on any loss or doubling. It only ever signals processes it
//! started itself, by their pid.

use std::collections::{BTreeMap, HashMap};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use marauders_map::events::{Event, EventPayload};
use marauders_map::incident::{FoldOutcome, IncidentFold};
use marauders_map::log::STREAM_NAME;
use marauders_map::log::{EventLog, LogConfig, Topic};
use marauders_testkit::{IggyServer, TEST_JWT_SECRET, TestDatabase, free_port, service_user_url};
use serde_json::{Value, json};
use tokio::sync::Mutex;

const CLIENTS: usize = 8;
/// Each process is killed this many times, at a random moment of the load:
/// one kill may land between an append and its answer, or may not.
const KILLS_PER_TARGET: usize = 3;
/// Rounds whose kill found nothing in flight are repeated up to this often.
const MAX_ATTEMPTS_PER_KILL: usize = 5;
/// How long the load runs before the kill, at most (a random part of it).
const LOAD_BEFORE_KILL: Duration = Duration::from_millis(1_500);

/// One request the load sent, and what became of it.
#[derive(Debug, Clone)]
struct Request {
    key: String,
    kind: RequestKind,
    /// Set once the request got a definite answer (2xx, or a 4xx).
    answered: Option<u16>,
}

#[derive(Debug, Clone)]
enum RequestKind {
    Report { title: String },
    Comment { incident: String, body: String },
}

struct Service {
    binary: String,
    database_url: String,
    iggy_url: Option<String>,
    data_dir: tempdir::Dir,
    port: u16,
    child: Option<Child>,
}

mod tempdir {
    /// A directory removed when dropped.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Service {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn start(&mut self) -> anyhow::Result<()> {
        let mut command = Command::new(&self.binary);
        command
            .env("DATABASE_URL", &self.database_url)
            .env("PORT", self.port.to_string())
            .env("METRICS_ADDRESS", "127.0.0.1:0")
            .env("HOST", "127.0.0.1")
            .env("JWT_SECRET", TEST_JWT_SECRET)
            .env("MARAUDERS_DATA_DIR", &self.data_dir.0)
            .env("WEB_DIR", self.data_dir.0.join("no-web-page"))
            .env("RUST_LOG", "warn")
            .env_remove("IGGY_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(url) = &self.iggy_url {
            command.env("IGGY_URL", url);
        }
        self.child = Some(command.spawn().context("start the service")?);
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(response) = client.get(self.url("/health")).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "the service did not become healthy in 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL, by the pid of the process this program started.
    fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill_9();
    }
}

#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

/// What one attempt at a request got.
enum Attempt {
    Answer(u16, Value),
    /// No answer: the connection broke, or the service said 503 (it may or
    /// may not have taken effect; the key makes the retry safe).
    NoAnswer,
}

impl Client {
    async fn send(&self, request: &Request) -> Attempt {
        let (path, body) = match &request.kind {
            RequestKind::Report { title } => (
                "/api/incidents".to_owned(),
                json!({"title": title, "severity": "HIGH", "location": "DUNGEONS"}),
            ),
            RequestKind::Comment { incident, body } => (
                format!("/api/incidents/{incident}/comments"),
                json!({ "body": body }),
            ),
        };
        let sent = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("Idempotency-Key", &request.key)
            .json(&body)
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        let Ok(response) = sent else {
            return Attempt::NoAnswer;
        };
        let status = response.status().as_u16();
        if status == 503 {
            return Attempt::NoAnswer;
        }
        let body = response.json::<Value>().await.unwrap_or(Value::Null);
        Attempt::Answer(status, body)
    }
}

#[derive(Default)]
struct Ledger {
    requests: Vec<Request>,
}

struct Counts {
    in_flight_at_kills: usize,
    /// Tries of those requests it took until each got an answer.
    retry_attempts: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let with_iggy = std::env::args().any(|arg| arg == "--iggy");
    let binary = std::env::var("MARAUDERS_MAP_BIN")
        .context("MARAUDERS_MAP_BIN must name the built marauders-map binary")?;
    let database = TestDatabase::fresh().await;
    let mut iggy = if with_iggy {
        Some(IggyServer::start().await)
    } else {
        None
    };
    let data_dir =
        std::env::temp_dir().join(format!("marauders-crash-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&data_dir)?;
    let mut service = Service {
        binary,
        database_url: database.url.clone(),
        // As in production: a user of its own, never root.
        iggy_url: match &iggy {
            Some(server) => Some(service_user_url(&server.url, STREAM_NAME).await),
            None => None,
        },
        data_dir: tempdir::Dir(data_dir),
        port: free_port(),
        child: None,
    };
    service.start().await?;
    let clients = register_clients(&service).await?;
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut counts = Counts {
        in_flight_at_kills: 0,
        retry_attempts: 0,
    };

    let service = Arc::new(Mutex::new(service));
    for kill in 1..=KILLS_PER_TARGET {
        // The service killed mid-load.
        let hit = kill_under_load(
            &clients,
            &ledger,
            &mut counts,
            async || service.lock().await.kill_9(),
            async || service.lock().await.start().await,
        )
        .await?;
        println!("service SIGKILL {kill}: {hit} requests were in flight");
    }
    // The log server killed mid-load, the service staying up.
    if let Some(server) = iggy.as_mut() {
        let server = Arc::new(Mutex::new(server));
        for kill in 1..=KILLS_PER_TARGET {
            let hit = kill_under_load(
                &clients,
                &ledger,
                &mut counts,
                async || server.lock().await.kill_9(),
                async || {
                    server.lock().await.restart().await;
                    Ok(())
                },
            )
            .await?;
            println!("iggy-server SIGKILL {kill}: {hit} requests were in flight");
        }
    }
    // The service stays up for the check: its projector builds the read
    // model that is compared with the fold.
    check_exactly_once(&database, iggy.as_ref(), &ledger, &counts).await
}

async fn register_clients(service: &Service) -> anyhow::Result<Vec<Client>> {
    let http = reqwest::Client::new();
    let mut clients = Vec::new();
    for n in 0..CLIENTS {
        let email = format!("crash-{n}-{}@hogwarts.edu", uuid::Uuid::new_v4().simple());
        let response = http
            .post(service.url("/api/auth/register"))
            .json(&json!({"email": email, "password": "alohomora-123", "displayName": format!("Client {n}")}))
            .send()
            .await?;
        ensure!(response.status() == 201, "register: {}", response.status());
        let body: Value = response.json().await?;
        clients.push(Client {
            http: http.clone(),
            base: service.url(""),
            token: body["accessToken"].as_str().context("a token")?.to_owned(),
        });
    }
    Ok(clients)
}

/// Runs the load, kills (with `kill`) after a random moment, revives (with
/// `revive`), retries every unanswered request with its key until answered.
/// Repeats when the kill hit nothing in flight. Returns how many requests
/// were in flight at the kill.
async fn kill_under_load(
    clients: &[Client],
    ledger: &Arc<Mutex<Ledger>>,
    counts: &mut Counts,
    kill: impl AsyncFn(),
    revive: impl AsyncFn() -> anyhow::Result<()>,
) -> anyhow::Result<usize> {
    for attempt in 1..=MAX_ATTEMPTS_PER_KILL {
        let stop = tokio_util::sync::CancellationToken::new();
        let round = format!("{}-{attempt}", uuid::Uuid::new_v4().simple());
        let load: Vec<_> = clients
            .iter()
            .cloned()
            .enumerate()
            .map(|(n, client)| {
                let (ledger, stop, round) = (ledger.clone(), stop.clone(), round.clone());
                tokio::spawn(async move { run_client(n, client, ledger, stop, round).await })
            })
            .collect();
        let pause = Duration::from_millis(200 + (uuid::Uuid::new_v4().as_u128() % 1000) as u64)
            .min(LOAD_BEFORE_KILL);
        tokio::time::sleep(pause).await;
        kill().await;
        // Let every client notice, then stop the load.
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.cancel();
        for client in load {
            client.await?;
        }
        let unanswered: Vec<usize> = {
            let ledger = ledger.lock().await;
            (0..ledger.requests.len())
                .filter(|index| ledger.requests[*index].answered.is_none())
                .collect()
        };
        revive().await?;
        if unanswered.is_empty() {
            println!("kill attempt {attempt} found no request in flight; repeating");
            continue;
        }
        counts.in_flight_at_kills += unanswered.len();
        retry_until_answered(clients, ledger, &unanswered, counts).await?;
        return Ok(unanswered.len());
    }
    bail!("{MAX_ATTEMPTS_PER_KILL} kills in a row found no request in flight")
}

/// One client: report an incident, comment on it, again, until stopped.
/// A request without an answer stays in the ledger for the retry.
async fn run_client(
    n: usize,
    client: Client,
    ledger: Arc<Mutex<Ledger>>,
    stop: tokio_util::sync::CancellationToken,
    round: String,
) {
    for sequence in 0.. {
        if stop.is_cancelled() {
            return;
        }
        let report = Request {
            key: format!("report-{round}-{n}-{sequence}"),
            kind: RequestKind::Report {
                title: format!("Crash {round} client {n} number {sequence}"),
            },
            answered: None,
        };
        let index = push(&ledger, report.clone()).await;
        let Attempt::Answer(status, body) = client.send(&report).await else {
            return; // the service is gone; the retry will finish it
        };
        ledger.lock().await.requests[index].answered = Some(status);
        let Some(incident) = body["id"].as_str().filter(|_| status == 201) else {
            continue;
        };
        let comment = Request {
            key: format!("comment-{round}-{n}-{sequence}"),
            kind: RequestKind::Comment {
                incident: incident.to_owned(),
                body: format!("Comment {round} client {n} number {sequence}"),
            },
            answered: None,
        };
        let index = push(&ledger, comment.clone()).await;
        let Attempt::Answer(status, _) = client.send(&comment).await else {
            return;
        };
        ledger.lock().await.requests[index].answered = Some(status);
    }
}

async fn push(ledger: &Mutex<Ledger>, request: Request) -> usize {
    let mut ledger = ledger.lock().await;
    ledger.requests.push(request);
    ledger.requests.len() - 1
}

/// Every unanswered request again, with its key, until it gets an answer.
async fn retry_until_answered(
    clients: &[Client],
    ledger: &Mutex<Ledger>,
    unanswered: &[usize],
    counts: &mut Counts,
) -> anyhow::Result<()> {
    let client = &clients[0];
    let deadline = Instant::now() + Duration::from_secs(120);
    for index in unanswered {
        let request = ledger.lock().await.requests[*index].clone();
        // The key is per user: retry as the client that sent it.
        let owner = owner_of(clients, &request);
        loop {
            ensure!(
                Instant::now() < deadline,
                "retries did not get answers within 120 s"
            );
            counts.retry_attempts += 1;
            match owner.unwrap_or(client).send(&request).await {
                Attempt::Answer(status, _) => {
                    ledger.lock().await.requests[*index].answered = Some(status);
                    break;
                }
                Attempt::NoAnswer => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
    Ok(())
}

/// Keys name their client: `report-<round>-<n>-<sequence>`.
fn owner_of<'a>(clients: &'a [Client], request: &Request) -> Option<&'a Client> {
    let n: usize = request.key.rsplit('-').nth(1)?.parse().ok()?;
    clients.get(n)
}

async fn check_exactly_once(
    database: &TestDatabase,
    iggy: Option<&IggyServer>,
    ledger: &Mutex<Ledger>,
    counts: &Counts,
) -> anyhow::Result<()> {
    let log = match iggy {
        Some(server) => {
            let log = EventLog::open(LogConfig::Iggy(
                server.config(marauders_map::log::STREAM_NAME),
            ))
            .await?;
            log.wait_until_ready(Duration::from_secs(30)).await?;
            log
        }
        None => EventLog::open(LogConfig::Postgres(database.pool.clone())).await?,
    };
    // The fold every reader uses: accepted events only.
    let mut fold = IncidentFold::default();
    let (mut titles, mut bodies) = (
        HashMap::<String, usize>::new(),
        HashMap::<String, usize>::new(),
    );
    let (mut copies, mut next) = (0usize, 0u64);
    let end = log.log_end(Topic::IncidentEvents).await?;
    while next < end {
        let page = log.read_page(Topic::IncidentEvents, next, 1000).await?;
        if page.next_offset == next {
            break;
        }
        next = page.next_offset;
        for record in page.records {
            let event = Event::decode(&record.payload)?;
            if fold.apply(&event) != FoldOutcome::Applied {
                copies += 1;
                continue;
            }
            match &event.payload {
                EventPayload::IncidentCreated(created) => {
                    *titles.entry(created.title.clone()).or_default() += 1
                }
                EventPayload::CommentAdded(comment) => {
                    *bodies.entry(comment.body.clone()).or_default() += 1
                }
                _ => {}
            }
        }
    }
    let ledger = ledger.lock().await;
    let (mut lost, mut doubled) = (Vec::new(), Vec::new());
    let (mut reports, mut comments) = (0, 0);
    for request in &ledger.requests {
        let (seen, name) = match &request.kind {
            RequestKind::Report { title } => {
                reports += 1;
                (titles.get(title).copied().unwrap_or(0), title)
            }
            RequestKind::Comment { body, .. } => {
                comments += 1;
                (bodies.get(body).copied().unwrap_or(0), body)
            }
        };
        match (request.answered, seen) {
            (Some(201), 1) => {}
            (Some(201), 0) => lost.push(name.clone()),
            (_, n) if n > 1 => doubled.push(name.clone()),
            (Some(status), 0) if status != 201 => {}
            (answered, n) => bail!(
                "request {} answered {answered:?} but {n} accepted events",
                request.key
            ),
        }
    }
    let read_model_differs = compare_read_model(&fold, database).await?;
    println!();
    println!("| measurement | count |");
    println!("|---|---|");
    println!(
        "| requests sent (reports + comments) | {} ({reports} + {comments}) |",
        ledger.requests.len()
    );
    println!(
        "| unanswered at the kills, then retried with their keys | {} |",
        counts.in_flight_at_kills
    );
    println!(
        "| tries of those until each was answered | {} |",
        counts.retry_attempts
    );
    println!(
        "| accepted incidents on the log | {} |",
        titles.values().sum::<usize>()
    );
    println!(
        "| accepted comments on the log | {} |",
        bodies.values().sum::<usize>()
    );
    println!("| voided copies and lost races on the log | {copies} |");
    println!("| lost (acknowledged, not on the log) | {} |", lost.len());
    println!(
        "| doubled (more than one accepted event) | {} |",
        doubled.len()
    );
    println!("| read-model rows that differ from the fold | {read_model_differs} |");
    log.shutdown().await;
    ensure!(lost.is_empty(), "lost: {lost:?}");
    ensure!(doubled.is_empty(), "doubled: {doubled:?}");
    ensure!(
        read_model_differs == 0,
        "the read model differs from the fold of the log"
    );
    println!("\nevery request took effect exactly once");
    Ok(())
}

/// Waits for the read model to catch up with the log, then counts rows that
/// differ from the fold.
async fn compare_read_model(fold: &IncidentFold, database: &TestDatabase) -> anyhow::Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows: Vec<(uuid::Uuid, String, i64, String, bool)> =
            sqlx::query_as("SELECT id, title, version, status, deleted FROM read_incidents")
                .fetch_all(&database.pool)
                .await?;
        let read: BTreeMap<_, _> = rows
            .into_iter()
            .map(|(id, title, version, status, deleted)| {
                (id, (title, version as u64, status, deleted))
            })
            .collect();
        let folded: BTreeMap<_, _> = fold
            .incidents()
            .map(|i| {
                (
                    i.id,
                    (
                        i.title.clone(),
                        i.version,
                        i.status.as_str().to_owned(),
                        i.deleted,
                    ),
                )
            })
            .collect();
        let differing = folded
            .iter()
            .filter(|(id, row)| read.get(id) != Some(row))
            .count()
            + read.keys().filter(|id| !folded.contains_key(id)).count();
        if differing == 0 || Instant::now() > deadline {
            return Ok(differing);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
