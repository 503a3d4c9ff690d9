//! A Socket.IO client that speaks the protocol by hand over HTTP
//! long-polling — the transport every browser starts on — so that a test
//! sees what the transport hands a client: the engine.io session id (the
//! `sid` of the OPEN packet, which is what authenticates every later poll)
//! and the Socket.IO id (the `sid` of the CONNECT answer). `rust_socketio`
//! ([`crate::TestSocket`]) keeps both to itself.
//!
//! Engine.io v4 over polling: `GET /socket.io/?EIO=4&transport=polling`
//! answers `0{"sid": …}`; every later request carries `&sid=`; a POST
//! sends packets, a GET waits for the server's, several joined by `\x1e`
//! (`2` is the server's ping, answered `3`; `1` closes the session).
//! Socket.IO packets ride in engine.io messages (`4`): `40` connect, `41`
//! disconnect, `42` event, `44` connect error.

use std::time::Duration;

use serde_json::Value;

/// The engine.io record separator between packets of one polling payload.
const SEPARATOR: char = '\u{1e}';

/// A connection made over long-polling, connected to namespace `/`.
pub struct PollingSocket {
    client: reqwest::Client,
    /// The polling URL with this session's `sid`.
    url: String,
    /// The engine.io session id: whoever has it can poll and post as this
    /// connection.
    pub engine_io_sid: String,
    /// The Socket.IO id of the connection in namespace `/`.
    pub socket_io_id: String,
    /// Events received with the CONNECT answer or since (`[name, payload]`).
    pub events: Vec<Value>,
}

impl PollingSocket {
    /// Opens an engine.io session and connects to `/` with `auth`.
    ///
    /// # Panics
    ///
    /// If the server refuses the handshake or answers something else than
    /// the protocol says.
    pub async fn connect(address: &str, auth: Value) -> PollingSocket {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTP client");
        let open = client
            .get(format!("{address}/socket.io/?EIO=4&transport=polling"))
            .send()
            .await
            .expect("the engine.io handshake is answered")
            .text()
            .await
            .expect("an OPEN packet");
        let handshake: Value = open
            .strip_prefix('0')
            .and_then(|json| serde_json::from_str(json).ok())
            .unwrap_or_else(|| panic!("not an engine.io OPEN packet: {open}"));
        let engine_io_sid = handshake["sid"]
            .as_str()
            .unwrap_or_else(|| panic!("no sid in {handshake}"))
            .to_owned();
        let mut socket = PollingSocket {
            url: format!("{address}/socket.io/?EIO=4&transport=polling&sid={engine_io_sid}"),
            client,
            engine_io_sid,
            socket_io_id: String::new(),
            events: Vec::new(),
        };
        socket.post(&format!("40{auth}")).await;
        while socket.socket_io_id.is_empty() {
            for packet in socket.poll().await {
                if let Some(connected) = packet.strip_prefix("40") {
                    let connected: Value =
                        serde_json::from_str(connected).expect("a CONNECT answer");
                    socket.socket_io_id = connected["sid"]
                        .as_str()
                        .unwrap_or_else(|| panic!("no sid in {connected}"))
                        .to_owned();
                } else if let Some(refused) = packet.strip_prefix("44") {
                    panic!("the handshake was refused: {refused}");
                } else {
                    socket.keep_if_event(&packet);
                }
            }
        }
        socket
    }

    /// Waits for the server's next packets (answering its pings) and keeps
    /// the events among them in [`PollingSocket::events`].
    pub async fn receive(&mut self) {
        for packet in self.poll().await {
            self.keep_if_event(&packet);
        }
    }

    /// Leaves namespace `/` and ends the engine.io session, as a closing
    /// tab does.
    pub async fn close(self) {
        self.post("41").await;
        self.post("1").await;
    }

    fn keep_if_event(&mut self, packet: &str) {
        if let Some(event) = packet.strip_prefix("42")
            && let Ok(event) = serde_json::from_str(event)
        {
            self.events.push(event);
        }
    }

    /// One long-poll: the packets the server had for us, pings answered
    /// (and left out).
    async fn poll(&self) -> Vec<String> {
        let payload = self
            .client
            .get(&self.url)
            .send()
            .await
            .expect("a poll is answered")
            .text()
            .await
            .expect("a polling payload");
        let mut packets = Vec::new();
        for packet in payload.split(SEPARATOR) {
            if packet == "2" {
                self.post("3").await;
            } else {
                packets.push(packet.to_owned());
            }
        }
        packets
    }

    /// Sends one packet, as it goes on the wire (`40{…}`, `3`, …).
    async fn post(&self, packet: &str) {
        let answer = self
            .client
            .post(&self.url)
            .header("content-type", "text/plain;charset=UTF-8")
            .body(packet.to_owned())
            .send()
            .await
            .expect("a post is answered");
        assert!(
            answer.status().is_success(),
            "posting {packet}: {}",
            answer.status()
        );
    }
}
