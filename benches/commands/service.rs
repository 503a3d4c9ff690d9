//! The service under measurement, as processes of its own: `serve
//! --without-projectors` and one `project <name>` per projection, started
//! from one of the two builds with the same environment for both, and
//! stopped by their pids.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use iggy::prelude::{Client, Identifier, IggyClient, StreamClient, UserClient};
use marauders_projections::Projection;
use marauders_testkit::{IggyServer, TEST_JWT_SECRET, free_port, fresh_stream_name};
use serde_json::Value;

/// How long the service may take to answer `/health` with 200.
const START_UP_LIMIT: Duration = Duration::from_secs(60);
/// How long a process may take to exit after SIGTERM before it is killed.
const STOP_LIMIT: Duration = Duration::from_secs(30);
/// How long the projectors may take to apply what a window appended.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(60);

/// One of the two release binaries compared, as `scripts/bench` built it.
pub struct Build {
    /// `baseline` or `ours`.
    pub name: &'static str,
    /// Where `scripts/bench` built it.
    pub built_at: PathBuf,
    /// The copy that runs (see [`Builds::from_env`]).
    pub binary: PathBuf,
    /// The commit it was built from; `+ uncommitted changes` when the
    /// working tree had some.
    pub revision: String,
}

/// Both builds, each copied to a path as long as the other's. The kernel
/// puts the path of the program, its arguments and its environment at the
/// top of a new process's stack, so their lengths shift its alignment: a
/// known source of bias of a few percent between identical programs. With
/// paths (and environments, see [`Service::start`]) of one length, neither
/// build gets a different start from where it was built.
pub struct Builds {
    pub both: [Build; 2],
    copies: PathBuf,
}

impl Builds {
    /// `BENCH_BASELINE_BIN` / `BENCH_BASELINE_REVISION` and
    /// `BENCH_OURS_BIN` / `BENCH_OURS_REVISION`, which `scripts/bench`
    /// sets after building both.
    ///
    /// # Panics
    ///
    /// When one is unset or its binary is missing.
    pub fn from_env() -> Builds {
        let copies = std::env::temp_dir().join(format!(
            "marauders-bench-binaries-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let build = |name: &'static str, prefix: &str, copy: &str| {
            let variable = |suffix: &str| {
                std::env::var(format!("{prefix}_{suffix}")).unwrap_or_else(|_| {
                    panic!(
                        "{prefix}_{suffix} is not set: run `scripts/bench commands`, which builds both binaries"
                    )
                })
            };
            let built_at = PathBuf::from(variable("BIN"));
            let binary = copies.join(copy).join("marauders-map");
            std::fs::create_dir_all(binary.parent().expect("a directory"))
                .and_then(|()| std::fs::copy(&built_at, &binary))
                .unwrap_or_else(|error| panic!("copy {}: {error}", built_at.display()));
            Build {
                name,
                built_at,
                binary,
                revision: variable("REVISION"),
            }
        };
        let both = [
            build("baseline", "BENCH_BASELINE", "1"),
            build("ours", "BENCH_OURS", "2"),
        ];
        Builds { both, copies }
    }
}

impl Drop for Builds {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.copies);
    }
}

/// A stream of its own on an Iggy server and the service's own user on it
/// (never root), both made by the build's own `iggy setup`.
pub struct IggyStream {
    admin_url: String,
    stream: String,
    username: String,
    /// What the service connects with.
    service_url: String,
}

impl IggyStream {
    pub fn fresh_on(server: &IggyServer) -> IggyStream {
        let stream = fresh_stream_name();
        let suffix = stream.rsplit('-').next().unwrap_or(&stream).to_owned();
        let username = format!("bench-{suffix}");
        let service_url =
            marauders_testkit::with_credentials(&server.url, &username, &format!("pw-{suffix}"));
        IggyStream {
            admin_url: server.url.clone(),
            stream,
            username,
            service_url,
        }
    }

    /// Deletes the stream and the user, as the administrator.
    ///
    /// # Panics
    ///
    /// When either cannot be deleted.
    pub async fn remove(self) {
        let admin = connect_as_administrator(&self.admin_url).await;
        admin
            .delete_user(&named(&self.username))
            .await
            .unwrap_or_else(|error| panic!("delete the Iggy user {}: {error}", self.username));
        let _ = admin.shutdown().await;
        delete_iggy_stream(&self.admin_url, &self.stream).await;
    }
}

/// Deletes `stream` on the Iggy server at `admin_url` (an administrator's).
///
/// # Panics
///
/// When it cannot be deleted.
pub async fn delete_iggy_stream(admin_url: &str, stream: &str) {
    let admin = connect_as_administrator(admin_url).await;
    admin
        .delete_stream(&named(stream))
        .await
        .unwrap_or_else(|error| panic!("delete the stream {stream}: {error}"));
    let _ = admin.shutdown().await;
}

async fn connect_as_administrator(admin_url: &str) -> IggyClient {
    let admin = IggyClient::from_connection_string(admin_url).expect("an Iggy URL");
    admin
        .connect()
        .await
        .expect("connect to Iggy as its administrator");
    admin
}

fn named(name: &str) -> Identifier {
    Identifier::named(name).expect("a valid Iggy name")
}

/// The service's processes, running. Dropping it kills what still runs
/// (SIGKILL, by pid) and removes its data directory; [`Service::stop`] is
/// the orderly way.
pub struct Service {
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
    environment: Vec<(&'static str, String)>,
    binary: PathBuf,
    data_dir: PathBuf,
    /// `serve` first, then a projector per projection.
    processes: Vec<ServiceProcess>,
}

struct ServiceProcess {
    /// `serve`, or the projection's name.
    name: String,
    child: Child,
}

impl Service {
    /// Migrates the (empty) database with the build's own migrations,
    /// sets Iggy up when given, starts `serve --without-projectors` and
    /// one `project <name>` per projection, and waits until `/health`
    /// answers 200.
    ///
    /// # Panics
    ///
    /// When a step fails or a process exits; the message carries its log.
    pub async fn start(build: &Build, database_url: &str, iggy: Option<&IggyStream>) -> Service {
        // Named alike for both builds: the environment below holds it,
        // and must be as long for one as for the other.
        let data_dir =
            std::env::temp_dir().join(format!("marauders-bench-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&data_dir).expect("create the service's data directory");
        let port = free_port();
        // Everything the processes see: the environment is cleared, so
        // both builds run with exactly this and nothing inherited.
        let mut environment = vec![
            ("DATABASE_URL", database_url.to_owned()),
            ("JWT_SECRET", TEST_JWT_SECRET.to_owned()),
            ("MARAUDERS_DATA_DIR", data_dir.display().to_string()),
            ("HOST", "127.0.0.1".to_owned()),
            ("PORT", port.to_string()),
            ("METRICS_ADDRESS", "127.0.0.1:0".to_owned()),
            (
                "WEB_DIR",
                data_dir.join("no-web-page").display().to_string(),
            ),
            // Warnings and errors only: the measure is the write path, not
            // the formatting of a log line per request.
            ("RUST_LOG", "warn".to_owned()),
        ];
        if let Some(iggy) = iggy {
            environment.push(("IGGY_URL", iggy.service_url.clone()));
            environment.push(("IGGY_STREAM", iggy.stream.clone()));
        }
        let mut service = Service {
            base_url: format!("http://127.0.0.1:{port}"),
            environment,
            binary: build.binary.clone(),
            data_dir,
            processes: Vec::new(),
        };
        service.run_to_completion(&["migrate"], &[]);
        if let Some(iggy) = iggy {
            service.run_to_completion(&["iggy", "setup"], &[("IGGY_ADMIN_URL", &iggy.admin_url)]);
        }
        service.spawn("serve", &["serve", "--without-projectors"]);
        for projection in Projection::ALL {
            service.spawn(projection.name(), &["project", projection.name()]);
        }
        service.wait_until_healthy().await;
        service
    }

    /// Runs the build's binary with `arguments` (a one-off subcommand such
    /// as `user promote`) in the service's environment, to completion.
    ///
    /// # Panics
    ///
    /// When it fails.
    pub fn run_to_completion(&self, arguments: &[&str], extra: &[(&str, &str)]) {
        let log_path = self.data_dir.join(format!("{}.log", arguments.join("-")));
        let status = self
            .command(&log_path)
            .args(arguments)
            .envs(extra.iter().copied())
            .status()
            .unwrap_or_else(|error| panic!("run {}: {error}", self.binary.display()));
        assert!(
            status.success(),
            "`marauders-map {}` failed ({status}):\n{}",
            arguments.join(" "),
            log_tail(&log_path)
        );
    }

    fn command(&self, log_path: &std::path::Path) -> Command {
        let log = std::fs::File::create(log_path).expect("create a process log");
        let mut command = Command::new(&self.binary);
        command
            .env_clear()
            .envs(self.environment.iter().map(|(name, value)| (name, value)))
            .current_dir(&self.data_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log);
        command
    }

    fn spawn(&mut self, name: &str, arguments: &[&str]) {
        let child = self
            .command(&self.log_path(name))
            .args(arguments)
            .spawn()
            .unwrap_or_else(|error| panic!("start {}: {error}", self.binary.display()));
        self.processes.push(ServiceProcess {
            name: name.to_owned(),
            child,
        });
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.data_dir.join(format!("{name}.log"))
    }

    async fn wait_until_healthy(&mut self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + START_UP_LIMIT;
        loop {
            self.assert_running();
            if let Ok(answer) = client.get(self.url("/health")).send().await
                && answer.status().is_success()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the service did not answer /health with 200 within {START_UP_LIMIT:?}:\n{}",
                log_tail(&self.log_path("serve"))
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// # Panics
    ///
    /// When one of the processes has exited; with its log.
    pub fn assert_running(&mut self) {
        for process in &mut self.processes {
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!(
                    "`{}` exited ({status}):\n{}",
                    process.name,
                    log_tail(&self.data_dir.join(format!("{}.log", process.name)))
                );
            }
        }
    }

    /// The pid of `serve`.
    pub fn serve_pid(&self) -> u32 {
        self.processes[0].child.id()
    }

    /// The pids of the projector processes.
    pub fn projector_pids(&self) -> Vec<u32> {
        self.processes[1..]
            .iter()
            .map(|process| process.child.id())
            .collect()
    }

    /// Waits until every projection has applied the whole log, as
    /// `GET /api/admin/projections` (a PROFESSOR's `token`) reports it.
    ///
    /// # Panics
    ///
    /// When they do not within a minute.
    pub async fn wait_until_projections_caught_up(&mut self, token: &str) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + CATCH_UP_LIMIT;
        loop {
            self.assert_running();
            let answer = client
                .get(self.url("/api/admin/projections"))
                .bearer_auth(token)
                .send()
                .await
                .expect("the service answers");
            assert!(
                answer.status().is_success(),
                "GET /api/admin/projections: {}",
                answer.status()
            );
            let statuses: Vec<Value> = answer.json().await.expect("a list of projections");
            let behind: Vec<String> = statuses
                .iter()
                .filter(|status| status["lag"].as_u64() != Some(0))
                .map(|status| format!("{} (lag {})", status["name"], status["lag"]))
                .collect();
            if behind.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "projections still behind after {CATCH_UP_LIMIT:?}: {}",
                behind.join(", ")
            );
            // Each look costs PostgreSQL a few queries, which the window's
            // PostgreSQL figure then includes: not too often.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM to every process (by the pid this bench started it with),
    /// then waits for each; one still running after 30 s is killed. Says
    /// so on stderr when a process did not exit cleanly.
    pub async fn stop(mut self) {
        for process in &self.processes {
            signal(process.child.id(), "-TERM");
        }
        for process in &mut self.processes {
            let outcome = wait_for_exit(&mut process.child, STOP_LIMIT).await;
            if !outcome.is_some_and(|status| status.success()) {
                eprintln!(
                    "warning: `{}` did not exit cleanly after SIGTERM ({outcome:?}):\n{}",
                    process.name,
                    log_tail(&self.data_dir.join(format!("{}.log", process.name)))
                );
            }
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        for process in &mut self.processes {
            if let Ok(None) = process.child.try_wait() {
                let _ = process.child.kill();
                let _ = process.child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status();
}

/// The exit status, or `None` when the process was still running after
/// `limit` and was killed.
async fn wait_for_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// The last lines of a process's log, for a failure message.
fn log_tail(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
