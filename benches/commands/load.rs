//! The load: clients in a closed loop over HTTP — send a command, wait for
//! its answer, send the next — as browsers would, each with an
//! `Idempotency-Key` of its own on every command.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use marauders_map::domain::Location;
use marauders_testkit::{ReportIncident, TEST_PASSWORD};
use serde_json::{Value, json};

/// The longest the bench waits for one answer; past it the command counts
/// as failed ("no answer").
const ANSWER_LIMIT: Duration = Duration::from_secs(10);

/// One client: a connection of its own, a student's token, and the
/// incident it reported last, which its next comment goes to. It reports
/// and comments in turn, so half the commands are each, and no two
/// clients ever touch the same incident: nothing contends but the service
/// itself.
pub struct Client {
    http: reqwest::Client,
    base_url: String,
    token: String,
    own_incident: Option<String>,
}

/// What the clients' commands were answered, all of them.
#[derive(Clone, Default)]
pub struct Answers {
    /// The latency of every command answered 2xx.
    pub succeeded: Vec<Duration>,
    /// Every other outcome, by status ("503") or "no answer".
    pub failed: BTreeMap<String, usize>,
}

impl Answers {
    pub fn failures(&self) -> usize {
        self.failed.values().sum()
    }

    pub fn add(&mut self, other: Answers) {
        self.succeeded.extend(other.succeeded);
        for (outcome, count) in other.failed {
            *self.failed.entry(outcome).or_default() += count;
        }
    }
}

impl Client {
    pub fn new(base_url: &str, token: &str) -> Client {
        Client {
            http: reqwest::Client::new(),
            base_url: base_url.to_owned(),
            token: token.to_owned(),
            own_incident: None,
        }
    }

    /// The next command: a comment on the incident this client reported
    /// last, or else a report.
    async fn send_next_command(&mut self) -> Result<Duration, String> {
        let (path, body) = match self.own_incident.take() {
            Some(incident) => (
                format!("/api/incidents/{incident}/comments"),
                json!({"body": "Mischief managed"}),
            ),
            None => (
                "/api/incidents".to_owned(),
                Value::from(ReportIncident::new("Bench incident").location(Location::GreatHall)),
            ),
        };
        let reporting = path == "/api/incidents";
        let started = Instant::now();
        let answer = self
            .http
            .post(format!("{}{path}", self.base_url))
            .bearer_auth(&self.token)
            .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
            .json(&body)
            .timeout(ANSWER_LIMIT)
            .send()
            .await
            .map_err(|_| "no answer".to_owned())?;
        let status = answer.status();
        let body = answer.bytes().await.map_err(|_| "no answer".to_owned())?;
        let took = started.elapsed();
        if !status.is_success() {
            return Err(status.as_u16().to_string());
        }
        if reporting {
            let report: Value = serde_json::from_slice(&body).unwrap_or_default();
            let id = report["id"].as_str().ok_or("2xx without an incident id")?;
            self.own_incident = Some(id.to_owned());
        }
        Ok(took)
    }
}

/// Every client in a closed loop, each a task of its own, until `duration`
/// has passed; a command in flight then is answered and counted too.
/// Returns the clients (with their incidents), every answer, and the time
/// from the start to the last answer.
pub async fn closed_loop(
    clients: Vec<Client>,
    duration: Duration,
) -> (Vec<Client>, Answers, Duration) {
    let started = Instant::now();
    let stop_sending_at = started + duration;
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            tokio::spawn(async move {
                let mut answers = Answers::default();
                while Instant::now() < stop_sending_at {
                    match client.send_next_command().await {
                        Ok(took) => answers.succeeded.push(took),
                        Err(outcome) => *answers.failed.entry(outcome).or_default() += 1,
                    }
                }
                (client, answers)
            })
        })
        .collect();
    let (mut clients, mut answers) = (Vec::new(), Answers::default());
    for task in tasks {
        let (client, client_answers) = task.await.expect("a client task does not panic");
        clients.push(client);
        answers.add(client_answers);
    }
    (clients, answers, started.elapsed())
}

/// Registers an account over HTTP and returns its access token.
///
/// # Panics
///
/// Unless the registration is answered 201 with a token.
pub async fn register(base_url: &str, email: &str) -> String {
    let answer = reqwest::Client::new()
        .post(format!("{base_url}/api/auth/register"))
        .json(&json!({"email": email, "password": TEST_PASSWORD, "displayName": "Bench"}))
        .send()
        .await
        .expect("the service answers a registration");
    assert_eq!(answer.status(), 201, "register {email}");
    token_of(answer).await
}

/// Logs in over HTTP and returns the access token.
///
/// # Panics
///
/// Unless the login is answered 200 with a token.
pub async fn log_in(base_url: &str, email: &str) -> String {
    let answer = reqwest::Client::new()
        .post(format!("{base_url}/api/auth/login"))
        .json(&json!({"email": email, "password": TEST_PASSWORD}))
        .send()
        .await
        .expect("the service answers a login");
    assert_eq!(answer.status(), 200, "log in {email}");
    token_of(answer).await
}

async fn token_of(answer: reqwest::Response) -> String {
    let body: Value = answer.json().await.expect("a JSON body");
    body["accessToken"]
        .as_str()
        .expect("an access token")
        .to_owned()
}
