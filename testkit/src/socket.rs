//! A real Socket.IO client (the `rust_socketio` crate) for tests: every
//! event it receives goes into a channel the test reads in order. Open one
//! with [`crate::TestApp::socket`] (live, past its replay) or
//! [`crate::TestApp::connect_socket`] (any handshake).

use std::time::Duration;

use futures::FutureExt;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Event, Payload, TransportType};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

/// How long a test waits for an event it expects.
pub const EXPECT_WITHIN: Duration = Duration::from_secs(5);

/// The name under which [`TestSocket`] reports that the connection closed.
pub const CLOSED: &str = "#close";

pub struct TestSocket {
    client: Client,
    /// The event [`connect`] waited for, not yet read by the test.
    first: Option<(String, Value)>,
    received: mpsc::UnboundedReceiver<(String, Value)>,
}

/// Why a connection did not come up.
#[derive(Debug)]
pub struct Refused(pub String);

/// Connects with `auth` and waits until the server has finished the
/// connection's replay (its `replay:complete` or `replay:incomplete`, which
/// stays the first event in [`TestSocket::next`]). A refused handshake is
/// `Err` with the server's `connect_error` message.
pub async fn connect(address: &str, auth: Value) -> Result<TestSocket, Refused> {
    let (sender, mut received) = mpsc::unbounded_channel();
    let events = sender.clone();
    let closes = sender.clone();
    let errors = sender;
    let client = ClientBuilder::new(address)
        .transport_type(TransportType::Websocket)
        .reconnect(false)
        .auth(auth)
        .on_any(move |event, payload, _| {
            let events = events.clone();
            async move {
                let _ = events.send((String::from(event), first_value(payload)));
            }
            .boxed()
        })
        // The server closed the connection (namespace disconnect or
        // transport gone): a pseudo-event, after everything it sent.
        .on(Event::Close, move |_, _| {
            let closes = closes.clone();
            async move {
                let _ = closes.send((CLOSED.to_owned(), Value::Null));
            }
            .boxed()
        })
        .on(Event::Error, move |payload, _| {
            let errors = errors.clone();
            async move {
                let _ = errors.send(("#error".to_owned(), first_value(payload)));
            }
            .boxed()
        })
        .connect()
        .await
        .map_err(|error| Refused(error.to_string()))?;
    // Wait for the first event without consuming it from the test's view.
    let first = tokio::time::timeout(EXPECT_WITHIN, received.recv())
        .await
        .map_err(|_| Refused("no event within 5s of connecting".into()))?
        .ok_or_else(|| Refused("the connection closed".into()))?;
    if first.0 == "#error" {
        let _ = client.disconnect().await;
        return Err(Refused(first.1.to_string()));
    }
    Ok(TestSocket {
        client,
        first: Some(first),
        received,
    })
}

fn first_value(payload: Payload) -> Value {
    match payload {
        Payload::Text(mut values) if !values.is_empty() => values.remove(0),
        Payload::Text(_) => Value::Null,
        #[allow(deprecated)]
        Payload::String(text) => serde_json::from_str(&text).unwrap_or(Value::String(text)),
        Payload::Binary(bytes) => json!(bytes.to_vec()),
    }
}

impl TestSocket {
    /// The next event (name and payload), or `None` if none arrives within
    /// `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Option<(String, Value)> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        tokio::time::timeout(wait, self.received.recv())
            .await
            .ok()
            .flatten()
    }

    /// The next event; fails the test if none arrives in time.
    pub async fn next(&mut self) -> (String, Value) {
        self.next_within(EXPECT_WITHIN)
            .await
            .expect("an event arrives within 5s")
    }

    /// The next event called `name`, skipping others (presence updates and
    /// the like); fails the test if it does not arrive in time.
    pub async fn next_named(&mut self, name: &str) -> Value {
        let deadline = tokio::time::Instant::now() + EXPECT_WITHIN;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_within(left).await {
                Some((event, payload)) if event == name => return payload,
                Some(_) => continue,
                None => panic!("no {name} within 5s"),
            }
        }
    }

    /// The users of the first `presence:online` for which `settled` holds
    /// (the list changes as connections come and go).
    pub async fn online_users_when(&mut self, settled: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + EXPECT_WITHIN;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_within(left).await {
                Some((name, payload)) if name == "presence:online" => {
                    let users = payload["users"].as_array().cloned().unwrap_or_default();
                    if settled(&users) {
                        return users;
                    }
                }
                Some(_) => {}
                None => panic!("presence:online never settled within 5s"),
            }
        }
    }

    /// Waits up to `within` for the server to close the connection, and
    /// returns the `connection:closing {reason, message}` it sent first.
    ///
    /// # Panics
    ///
    /// If the connection stays open, or closes without saying why.
    pub async fn closed_by_server(&mut self, within: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        let mut closing = None;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_within(left).await {
                Some((name, payload)) if name == "connection:closing" => closing = Some(payload),
                Some((name, _)) if name == CLOSED => {
                    return closing.expect("connection:closing before the connection closed");
                }
                Some(_) => {}
                None => panic!("the connection was not closed within {within:?}"),
            }
        }
    }

    /// Every event that arrives within `wait` of the previous one.
    pub async fn drain(&mut self, wait: Duration) -> Vec<(String, Value)> {
        let mut all = Vec::new();
        while let Some(event) = self.next_within(wait).await {
            all.push(event);
        }
        all
    }

    /// Emits and waits for the server's acknowledgement.
    pub async fn request(&self, event: &str, data: Value) -> Value {
        let (sender, answer) = oneshot::channel();
        let sender = std::sync::Mutex::new(Some(sender));
        self.client
            .emit_with_ack(event, data, EXPECT_WITHIN, move |payload, _| {
                if let Some(sender) = sender.lock().unwrap().take() {
                    // rust_socketio hands an acknowledgement over as the
                    // array of its arguments.
                    let answer = match first_value(payload) {
                        Value::Array(mut arguments) if arguments.len() == 1 => arguments.remove(0),
                        other => other,
                    };
                    let _ = sender.send(answer);
                }
                async {}.boxed()
            })
            .await
            .expect("the event is sent");
        tokio::time::timeout(EXPECT_WITHIN, answer)
            .await
            .expect("an acknowledgement within 5s")
            .expect("an acknowledgement")
    }

    /// Emits without waiting for an acknowledgement.
    pub async fn emit(&self, event: &str, data: Value) {
        self.client
            .emit(event, data)
            .await
            .expect("the event is sent");
    }

    pub async fn close(self) {
        let _ = self.client.disconnect().await;
    }
}

/// Incident events and replay markers only: presence, typing and
/// notifications interleave freely with them.
pub fn incident_events(events: Vec<(String, Value)>) -> Vec<(String, Value)> {
    events
        .into_iter()
        .filter(|(name, _)| {
            !name.starts_with("presence:")
                && name != "typing"
                && name != "notification:new"
                && name != CLOSED
        })
        .collect()
}
