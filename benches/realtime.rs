//! `scripts/bench`: the real-time gateway. Command acknowledged → client
//! receipt latency with 1, 100 and 1,000 connected Socket.IO clients; the
//! replay of 100 missed events to a reconnecting client; the server's
//! memory per connected client.
//!
//! The service runs as its own process (the release `marauders-map`
//! binary), so its memory is measured apart from the clients'. Clients are
//! real Socket.IO clients (`rust_socketio`) in this process; on a small
//! machine they share the CPU with the server, which the numbers include.
//! A measurement, not a test; it only talks to 127.0.0.1.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use marauders_testkit::bench::{Figure, Row, print_figures, print_table};
use marauders_testkit::{TEST_JWT_SECRET, TestDatabase, free_port};
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Payload, TransportType};
use serde_json::{Value, json};

const CLIENT_COUNTS: [usize; 3] = [1, 100, 1000];
const REPLAY_RUNS: usize = 40;
const BACKEND: &str = "embedded (PostgreSQL)";

#[tokio::main]
async fn main() {
    run().await;
}

/// When each client received the incident event at each offset.
type Receipts = Arc<Mutex<HashMap<u64, Vec<Instant>>>>;

struct Server {
    process: Child,
    address: String,
    http: reqwest::Client,
}

impl Server {
    async fn start(database_url: &str) -> Server {
        let port = free_port();
        let process = Command::new(env!("CARGO_BIN_EXE_marauders-map"))
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env("PORT", port.to_string())
            .env("METRICS_ADDRESS", "127.0.0.1:0")
            .env("JWT_SECRET", TEST_JWT_SECRET)
            .env("MARAUDERS_DATA_DIR", std::env::temp_dir())
            .env("RUST_LOG", "warn")
            .env_remove("IGGY_URL")
            .stdout(Stdio::null())
            .spawn()
            .expect("the service binary starts");
        let server = Server {
            process,
            address: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(response) = server.http.get(server.url("/health")).send().await
                && response.status() == 200
            {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the service did not become healthy");
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Resident memory of the service process.
    fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.process.id()))
            .expect("/proc is readable");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| {
                value
                    .trim()
                    .trim_end_matches(" kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .expect("VmRSS is reported")
            * 1024
    }

    async fn token(&self, email: &str) -> String {
        let response = self
            .http
            .post(self.url("/api/auth/register"))
            .json(&json!({"email": email, "password": "alohomora-123", "displayName": email}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        body["accessToken"].as_str().unwrap().to_owned()
    }

    /// Reports an incident; returns its offset and when the answer came.
    async fn report(&self, token: &str, title: &str) -> (u64, Instant) {
        let response = self
            .http
            .post(self.url("/api/incidents"))
            .bearer_auth(token)
            .json(&json!({"title": title, "severity": "LOW", "location": "OWLERY"}))
            .send()
            .await
            .unwrap();
        let acknowledged = Instant::now();
        assert_eq!(response.status(), 201);
        let offset = response.headers()["Event-Offset"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        (offset, acknowledged)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// A live client that notes when each `incident:created` arrives, and
/// signals `replay:complete`.
async fn client(
    server: &Server,
    auth: Value,
    receipts: Receipts,
    replayed: Option<tokio::sync::mpsc::UnboundedSender<Instant>>,
) -> Client {
    ClientBuilder::new(server.address.clone())
        .transport_type(TransportType::Websocket)
        .reconnect(false)
        .auth(auth)
        .on_any(move |event, payload, _| {
            let now = Instant::now();
            let name = String::from(event);
            if name == "incident:created"
                && let Payload::Text(values) = &payload
                && let Some(offset) = values.first().and_then(|v| v["offset"].as_u64())
            {
                receipts
                    .lock()
                    .unwrap()
                    .entry(offset)
                    .or_default()
                    .push(now);
            }
            if name == "replay:complete"
                && let Some(replayed) = &replayed
            {
                let _ = replayed.send(now);
            }
            async {}.boxed()
        })
        .connect()
        .await
        .expect("the client connects")
}

async fn run() {
    let database = TestDatabase::fresh().await;
    let server = Server::start(&database.url).await;
    let token = server.token("bench@hogwarts.edu").await;
    let (mut rows, mut figures) = (Vec::new(), Vec::new());

    // Warm up the service and its pools.
    for n in 0..20 {
        server.report(&token, &format!("warm-up {n}")).await;
    }
    let rss_before = server.rss_bytes();
    let receipts: Receipts = Arc::default();
    let mut clients = Vec::new();
    for &count in &CLIENT_COUNTS {
        while clients.len() < count {
            clients.push(client(&server, json!({"token": token}), receipts.clone(), None).await);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        if count == 1000 {
            let per_client = server.rss_bytes().saturating_sub(rss_before) / count as u64;
            figures.push(Figure {
                backend: BACKEND,
                metric: "service memory per connected client".into(),
                value: format!("{:.1} KiB", per_client as f64 / 1024.0),
            });
        }
        let commands = match count {
            1 => 200,
            100 => 100,
            _ => 40,
        };
        let (mut samples, mut early) = (Vec::new(), 0usize);
        for n in 0..commands {
            let (offset, acknowledged) = server.report(&token, &format!("live {n}")).await;
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let arrived = receipts
                    .lock()
                    .unwrap()
                    .get(&offset)
                    .map_or(0, |times| times.len());
                if arrived >= count || Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            let times = receipts.lock().unwrap().remove(&offset).unwrap_or_default();
            assert_eq!(times.len(), count, "every client receives every event");
            for received in times {
                // The push can beat the HTTP answer to the client: count it
                // as zero latency.
                if received < acknowledged {
                    early += 1;
                }
                samples.push(received.saturating_duration_since(acknowledged));
            }
        }
        rows.push(Row {
            backend: BACKEND,
            metric: format!("ack → receipt, {count} clients"),
            samples,
        });
        figures.push(Figure {
            backend: BACKEND,
            metric: format!("receipts before the ack, {count} clients"),
            value: format!("{early}"),
        });
    }
    for client in clients.drain(..) {
        let _ = client.disconnect().await;
    }

    // Replay: a client that missed 100 events reconnects; against one that
    // missed none, the difference is the replay itself.
    for n in 0..100 {
        server.report(&token, &format!("missed {n}")).await;
    }
    let (end, _) = server.report(&token, "the last one").await;
    for (missed, label) in [
        (100u64, "connect + replay of 100 events"),
        (0, "connect, nothing to replay"),
    ] {
        let mut samples = Vec::new();
        for _ in 0..REPLAY_RUNS {
            let (sender, mut replayed) = tokio::sync::mpsc::unbounded_channel();
            let started = Instant::now();
            let socket = client(
                &server,
                json!({"token": token, "lastOffset": end - missed}),
                Arc::default(),
                Some(sender),
            )
            .await;
            let done = replayed.recv().await.unwrap();
            samples.push(done - started);
            let _ = socket.disconnect().await;
        }
        rows.push(Row {
            backend: BACKEND,
            metric: label.into(),
            samples,
        });
    }
    print_table(&rows);
    print_figures(&figures);
}
