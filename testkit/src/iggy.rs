//! A real Apache Iggy server for one test: the one at `IGGY_URL`, or a fresh
//! `iggy-server` process on a free port with its own data directory.
//!
//! Tests that need one are `#[ignore]`d with one of the reasons below (an
//! attribute takes a literal, so they spell it out; `tests/api/main.rs`
//! checks they all do), and `scripts/test` runs them with
//! `--include-ignored` when a server is available.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use marauders_map::log::iggy::IggyConfig;
use uuid::Uuid;

/// The `#[ignore]` reason of a test that needs an Iggy server, from
/// `IGGY_URL` or from `iggy-server` on PATH.
pub const IGGY_IGNORE_REASON: &str = "needs an Iggy server: put iggy-server on PATH or set IGGY_URL (scripts/test does this when it can)";

/// The `#[ignore]` reason of a test that kills and restarts its own server
/// ([`IggyServer::kill_9`], [`IggyServer::restart`]): it needs the binary,
/// an `IGGY_URL` is not enough. Such tests are named `iggy_process_…`, which
/// is how `scripts/test` skips them when only `IGGY_URL` is set.
pub const IGGY_PROCESS_IGNORE_REASON: &str =
    "needs iggy-server on PATH (scripts/test runs it when it is)";

/// Whether a server is available: `IGGY_URL` is set or there is an
/// `iggy-server` to start ([`iggy_server_program`]). The benches measure
/// Iggy only then.
pub fn iggy_available() -> bool {
    shared_server_url().is_some() || iggy_server_program().is_some()
}

/// The `iggy-server` binary [`IggyServer::start`] runs: the one `IGGY_SERVER`
/// names, else the first on PATH. `IGGY_SERVER` lets `cargo bench` or
/// `cargo test` use a server without running the build with another PATH.
pub fn iggy_server_program() -> Option<PathBuf> {
    if let Some(program) = std::env::var_os("IGGY_SERVER").filter(|value| !value.is_empty()) {
        return Some(PathBuf::from(program)).filter(|path| path.is_file());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("iggy-server"))
        .find(|program| program.is_file())
}

fn shared_server_url() -> Option<String> {
    std::env::var("IGGY_URL")
        .ok()
        .map(|url| url.trim().to_owned())
        .filter(|url| !url.is_empty())
}

/// The log's configuration for `stream` on the server at `url`.
pub fn iggy_config(url: &str, stream: &str) -> IggyConfig {
    let mut config = IggyConfig::new(url);
    config.stream = stream.to_owned();
    config
}

/// Gives the service a user of its own for `stream`, as `marauders-map
/// iggy setup` does in production: created by the administrator at
/// `admin_url` with only the service's permissions on that stream (and
/// the stream and topics created). Returns the URL the service connects
/// with.
///
/// # Panics
///
/// When the set-up fails.
pub async fn service_user_url(admin_url: &str, stream: &str) -> String {
    let suffix = stream.rsplit('-').next().unwrap_or(stream);
    let username = format!("svc-{}", &suffix[..suffix.len().min(40)]);
    // The same for every set-up of one stream: a test that starts the
    // service on a stream again finds the user it made and logs in as it.
    let password = format!("test-{}", &suffix[..suffix.len().min(40)]);
    let url = with_credentials(admin_url, &username, &password);
    marauders_map::log::iggy_user::set_up_service_user(admin_url, stream, &url)
        .await
        .unwrap_or_else(|error| panic!("set up the Iggy user {username}: {error}"));
    url
}

/// `url` with other credentials: `iggy://user:password@` + its host part.
pub fn with_credentials(url: &str, username: &str, password: &str) -> String {
    let host = url
        .rsplit_once('@')
        .map(|(_, host)| host)
        .or_else(|| url.split_once("://").map(|(_, host)| host))
        .unwrap_or(url);
    format!("iggy://{username}:{password}@{host}")
}

/// A stream no other test uses, so tests can share one server.
pub fn fresh_stream_name() -> String {
    format!("marauders-map-test-{}", Uuid::new_v4().simple())
}

/// A real Iggy server. Configured as in production: every append persisted
/// and fsynced before it is acknowledged. Dropping it kills a process it
/// started and removes its data.
pub struct IggyServer {
    pub url: String,
    process: Option<IggyProcess>,
}

struct IggyProcess {
    child: Child,
    data_dir: PathBuf,
    port: u16,
}

impl IggyServer {
    pub async fn start() -> IggyServer {
        Self::start_with(true).await
    }

    /// `fsync_every_append = false` runs the server with Iggy's defaults
    /// (buffered appends), for the benchmark's comparison.
    pub async fn start_with(fsync_every_append: bool) -> IggyServer {
        if let Some(url) = shared_server_url() {
            return IggyServer { url, process: None };
        }
        let data_dir =
            std::env::temp_dir().join(format!("marauders-iggy-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&data_dir).expect("create the Iggy data directory");
        let port = free_port();
        let child = spawn_iggy_server(&data_dir, port, fsync_every_append);
        let mut server = IggyServer {
            url: format!("iggy://iggy:iggy@127.0.0.1:{port}"),
            process: Some(IggyProcess {
                child,
                data_dir,
                port,
            }),
        };
        server.wait_until_listening().await;
        server
    }

    /// The log's configuration for `stream` on this server.
    pub fn config(&self, stream: &str) -> IggyConfig {
        iggy_config(&self.url, stream)
    }

    /// The process id of the server this harness started (`None` for the
    /// one at `IGGY_URL`), e.g. to read its CPU time.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(|process| process.child.id())
    }

    /// `kill -9`: no chance to flush anything.
    ///
    /// # Panics
    ///
    /// On a server this test did not start (`IGGY_URL`).
    pub fn kill_9(&mut self) {
        let process = self
            .process
            .as_mut()
            .expect("kill_9 needs a local iggy-server process");
        let _ = process.child.kill();
        let _ = process.child.wait();
    }

    /// SIGSTOP (`thaw` sends SIGCONT): the kernel still accepts
    /// connections; nothing answers. Only this test's own process.
    ///
    /// # Panics
    ///
    /// On a server this test did not start (`IGGY_URL`).
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let process = self
            .process
            .as_ref()
            .expect("signals need a local iggy-server process");
        let status = std::process::Command::new("kill")
            .args([signal, &process.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {}", process.child.id());
    }

    /// `host:port` of this server, e.g. to put a proxy in front of it.
    pub fn address(&self) -> String {
        self.url
            .rsplit('@')
            .next()
            .unwrap_or(&self.url)
            .trim_end_matches('/')
            .to_owned()
    }

    /// Starts the server again on the same port and data directory.
    ///
    /// # Panics
    ///
    /// On a server this test did not start (`IGGY_URL`).
    pub async fn restart(&mut self) {
        let process = self
            .process
            .as_mut()
            .expect("restart needs a local iggy-server process");
        process.child = spawn_iggy_server(&process.data_dir, process.port, true);
        self.wait_until_listening().await;
    }

    /// Leaves the data directory as `kill -9` does when it strikes between
    /// the two writes of an append: Iggy writes a batch's messages, then
    /// their index entries, so the last `lost` messages of the partition
    /// holding `messages_in_partition` keep their bytes but lose their
    /// entries. Call it while the server is down (after
    /// [`IggyServer::kill_9`]).
    ///
    /// # Panics
    ///
    /// On a server this test did not start, or unless exactly one partition
    /// holds that many messages.
    pub fn tear_last_appends(&mut self, messages_in_partition: usize, lost: usize) {
        // (relative offset u32, end position u32, timestamp u64)
        const INDEX_ENTRY: u64 = 16;
        let process = self
            .process
            .as_mut()
            .expect("tear_last_appends needs a local iggy-server process");
        let mut indexes = Vec::new();
        let mut pending = vec![process.data_dir.join("data")];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).expect("read the Iggy data directory") {
                let path = entry.expect("a directory entry").path();
                if path.is_dir() {
                    pending.push(path);
                } else if path.extension().is_some_and(|ext| ext == "index") {
                    indexes.push(path);
                }
            }
        }
        let wanted = messages_in_partition as u64 * INDEX_ENTRY;
        let matching: Vec<_> = indexes
            .into_iter()
            .filter(|path| std::fs::metadata(path).is_ok_and(|meta| meta.len() == wanted))
            .collect();
        let [index_path] = matching.as_slice() else {
            panic!(
                "expected one partition with {messages_in_partition} messages, found {matching:?}"
            );
        };
        let kept = (messages_in_partition - lost) as u64 * INDEX_ENTRY;
        std::fs::OpenOptions::new()
            .write(true)
            .open(index_path)
            .and_then(|index| index.set_len(kept))
            .expect("truncate the index file");
    }

    async fn wait_until_listening(&mut self) {
        let Some(process) = self.process.as_mut() else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!(
                    "iggy-server exited with {status} during start-up; see {}",
                    process.data_dir.join("server.log").display()
                );
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", process.port))
                .await
                .is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "iggy-server did not listen within 60s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for IggyServer {
    fn drop(&mut self) {
        if let Some(process) = self.process.as_mut() {
            let _ = process.child.kill();
            let _ = process.child.wait();
            let _ = std::fs::remove_dir_all(&process.data_dir);
        }
    }
}

fn spawn_iggy_server(data_dir: &Path, port: u16, fsync_every_append: bool) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data_dir.join("server.log"))
        .expect("open the Iggy server log");
    let program = iggy_server_program().expect(
        "no iggy-server: IGGY_SERVER is unset and none is on PATH (these tests are #[ignore]d unless there is one, or IGGY_URL is set)",
    );
    let mut command = Command::new(program);
    command
        .current_dir(data_dir)
        .env("IGGY_ROOT_USERNAME", "iggy")
        .env("IGGY_ROOT_PASSWORD", "iggy")
        .env("IGGY_SYSTEM_PATH", data_dir.join("data"))
        .env("IGGY_TCP_ADDRESS", format!("127.0.0.1:{port}"))
        .env("IGGY_HTTP_ENABLED", "false")
        .env("IGGY_QUIC_ENABLED", "false")
        .env("IGGY_WEBSOCKET_ENABLED", "false")
        .env("IGGY_SYSTEM_SHARDING_CPU_ALLOCATION", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone the log handle"))
        .stderr(log);
    if fsync_every_append {
        command
            .env("IGGY_SYSTEM_PARTITION_MESSAGES_REQUIRED_TO_SAVE", "1")
            .env("IGGY_SYSTEM_PARTITION_ENFORCE_FSYNC", "true");
    }
    command.spawn().expect("start iggy-server")
}

/// A port nothing listens on right now (also for "an unreachable server").
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("find a free port")
}
