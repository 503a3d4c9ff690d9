//! Typing indicators: ephemeral, never logged, local to this instance.
//!
//! A `typing:start` lasts [`TYPING_TTL`] unless renewed (clients renew it
//! while the user keeps typing), so an indicator whose sender vanished
//! without a `typing:stop` goes out by itself.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use socketioxide::extract::SocketRef;
use socketioxide::socket::Sid;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::session::Client;
use super::wire::{Typing, incident_room};

/// How long a `typing:start` counts without being renewed.
pub const TYPING_TTL: Duration = Duration::from_secs(5);
/// How often expired indicators are looked for.
const SWEEP_EVERY: Duration = Duration::from_millis(500);

struct Indicator {
    socket: SocketRef,
    user: Client,
    expires: Instant,
}

#[derive(Default)]
pub struct TypingTracker {
    indicators: Mutex<HashMap<(Sid, Uuid), Indicator>>,
}

impl TypingTracker {
    /// Starts or renews an indicator; the others in the room hear of it
    /// when it starts.
    pub async fn start(&self, socket: &SocketRef, user: &Client, incident: Uuid) {
        let started = {
            let mut indicators = self.lock();
            let expires = Instant::now() + TYPING_TTL;
            match indicators.get_mut(&(socket.id, incident)) {
                Some(indicator) => {
                    indicator.expires = expires;
                    false
                }
                None => {
                    indicators.insert(
                        (socket.id, incident),
                        Indicator {
                            socket: socket.clone(),
                            user: user.clone(),
                            expires,
                        },
                    );
                    true
                }
            }
        };
        if started {
            announce(socket, user, incident, true).await;
        }
    }

    pub async fn stop(&self, socket: &SocketRef, incident: Uuid) {
        let stopped = self.lock().remove(&(socket.id, incident));
        if let Some(indicator) = stopped {
            announce(socket, &indicator.user, incident, false).await;
        }
    }

    /// A connection closed or left a room: its indicators go out.
    pub async fn stop_all(&self, socket: &SocketRef, only_incident: Option<Uuid>) {
        let stopped: Vec<(Uuid, Indicator)> = {
            let mut indicators = self.lock();
            let keys: Vec<(Sid, Uuid)> = indicators
                .keys()
                .filter(|(sid, incident)| {
                    *sid == socket.id && only_incident.is_none_or(|only| only == *incident)
                })
                .copied()
                .collect();
            keys.into_iter()
                .filter_map(|key| indicators.remove(&key).map(|i| (key.1, i)))
                .collect()
        };
        for (incident, indicator) in stopped {
            announce(&indicator.socket, &indicator.user, incident, false).await;
        }
    }

    /// Ends every indicator not renewed in time.
    pub async fn sweep(&self, now: Instant) -> usize {
        let expired: Vec<(Uuid, Indicator)> = {
            let mut indicators = self.lock();
            let keys: Vec<(Sid, Uuid)> = indicators
                .iter()
                .filter(|(_, indicator)| indicator.expires <= now)
                .map(|(key, _)| *key)
                .collect();
            keys.into_iter()
                .filter_map(|key| indicators.remove(&key).map(|i| (key.1, i)))
                .collect()
        };
        for (incident, indicator) in &expired {
            announce(&indicator.socket, &indicator.user, *incident, false).await;
        }
        expired.len()
    }

    pub async fn run_sweeper(&self, shutdown: CancellationToken) {
        let mut every = tokio::time::interval(SWEEP_EVERY);
        while !shutdown.is_cancelled() {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = every.tick() => { self.sweep(Instant::now()).await; }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(Sid, Uuid), Indicator>> {
        self.indicators
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Tells the others in the incident's room (not the typist's own socket).
async fn announce(socket: &SocketRef, user: &Client, incident: Uuid, typing: bool) {
    let payload = Typing {
        incident_id: incident,
        user_id: user.user_id,
        display_name: user.display_name.clone(),
        typing,
    };
    if let Err(error) = socket
        .to(incident_room(incident))
        .emit("typing", &payload)
        .await
    {
        tracing::debug!(%error, "a typing indicator did not reach every connection");
    }
}
