//! A circuit breaker: one per dependency, so that once it is known to be
//! down, callers fail at once instead of each waiting out its deadline.
//!
//! - **Closed**: calls go ahead. A failure that proves the dependency down
//!   (it cannot be connected to, or a connection stopped answering) opens it.
//! - **Open**: calls are refused at once, for a backoff that doubles with
//!   each failure in a row (from `base_backoff` up to `max_backoff`).
//! - **Half-open**: the backoff has passed. One caller is let through as the
//!   probe; everyone else is still refused until it reports. Its success
//!   closes the breaker, its failure opens it again for a longer backoff.
//!
//! A call that merely ran past its caller's deadline is not a failure: a
//! busy dependency is not a dead one. Whoever owns the connection decides
//! (see `iggy.rs`, which pings a connection that let a deadline pass).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

/// When the breaker refuses a call, and after a failure, how long to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// The backoff after the first failure in a row.
    pub base_backoff: Duration,
    /// The longest backoff, however many failures in a row.
    pub max_backoff: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        }
    }
}

/// What `/health` and `/metrics` show of a breaker: `closed` while the
/// dependency answers; `open` once it was found down (calls fail at once
/// until `retryInMs` has passed); `half-open` while one probe finds out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BreakerReport {
    pub state: BreakerState,
    /// Failures in a row; 0 when closed.
    pub failures: u32,
    /// The last failure, while not closed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub reason: Option<String>,
    /// Until the next probe may go, while open.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub retry_in_ms: Option<u64>,
}

/// When an operation began, as far as the breaker is concerned (see
/// [`Breaker::epoch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epoch(u64);

/// Why a call was refused without being tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub reason: String,
    pub retry_in: Duration,
}

/// A call the breaker let through; `probe` when it is the half-open probe,
/// whose outcome decides for everyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    pub probe: bool,
}

#[derive(Debug)]
pub struct Breaker {
    settings: BreakerSettings,
    state: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// How many times the dependency has answered after a failure: an
    /// operation that began before the last recovery cannot reopen it.
    recoveries: u64,
    failures: u32,
    /// Set while open (and half-open, once the instant has passed).
    open_until: Option<Instant>,
    /// A half-open probe is out.
    probing: bool,
    reason: Option<String>,
}

impl Breaker {
    pub fn new(settings: BreakerSettings) -> Breaker {
        Breaker {
            settings,
            state: Mutex::new(Inner::default()),
        }
    }

    /// May a call go ahead now?
    pub fn admit(&self) -> Result<Admitted, Refused> {
        let mut inner = self.lock();
        let Some(open_until) = inner.open_until else {
            return Ok(Admitted { probe: false });
        };
        let now = Instant::now();
        let reason = || {
            inner
                .reason
                .clone()
                .unwrap_or_else(|| "the dependency failed".to_owned())
        };
        if now < open_until {
            return Err(Refused {
                reason: reason(),
                retry_in: open_until - now,
            });
        }
        if inner.probing {
            // Half-open with a probe out: wait for its verdict.
            return Err(Refused {
                reason: reason(),
                retry_in: self.settings.base_backoff,
            });
        }
        inner.probing = true;
        Ok(Admitted { probe: true })
    }

    /// The dependency answered: close.
    pub fn succeeded(&self) {
        let mut inner = self.lock();
        let recoveries = inner.recoveries + u64::from(inner.open_until.is_some());
        *inner = Inner {
            recoveries,
            ..Inner::default()
        };
    }

    /// Where the breaker stands, for an operation about to start: pass it to
    /// [`Breaker::failed`] when that operation fails.
    pub fn epoch(&self) -> Epoch {
        Epoch(self.lock().recoveries)
    }

    /// An operation that began at `epoch` found the dependency down: open,
    /// for a backoff that grows with each failure in a row — unless the
    /// dependency has recovered since the operation began (a connect
    /// attempt or ping from before a thaw that only now gives up says
    /// nothing about the dependency now).
    pub fn failed(&self, epoch: Epoch, reason: impl Into<String>) {
        let mut inner = self.lock();
        if inner.recoveries != epoch.0 {
            return;
        }
        inner.failures = inner.failures.saturating_add(1);
        let doublings = inner.failures.saturating_sub(1).min(16);
        let backoff = self
            .settings
            .base_backoff
            .saturating_mul(1 << doublings)
            .min(self.settings.max_backoff);
        inner.open_until = Some(Instant::now() + backoff);
        inner.probing = false;
        inner.reason = Some(reason.into());
    }

    /// A probe that ended without a verdict (its caller gave up): let the
    /// next caller probe.
    pub fn probe_abandoned(&self) {
        self.lock().probing = false;
    }

    pub fn report(&self) -> BreakerReport {
        let inner = self.lock();
        let now = Instant::now();
        let (state, retry_in_ms) = match inner.open_until {
            None => (BreakerState::Closed, None),
            Some(until) if now < until => (
                BreakerState::Open,
                Some(u64::try_from((until - now).as_millis()).unwrap_or(u64::MAX)),
            ),
            Some(_) => (BreakerState::HalfOpen, None),
        };
        BreakerReport {
            state,
            failures: inner.failures,
            reason: inner.reason.clone(),
            retry_in_ms,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves plain data behind; carry on.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The half-open probe's call, while it runs. Dropped before it finishes —
/// its caller gave up (a command's deadline, a request's) — it lets the
/// next caller probe; otherwise the breaker would wait for a verdict that
/// never comes, and refuse every call until a restart.
pub struct ProbeInFlight<'a> {
    pub breaker: &'a Breaker,
    /// Whether this call is the probe and has no verdict yet.
    pub armed: bool,
}

impl Drop for ProbeInFlight<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.breaker.probe_abandoned();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick() -> Breaker {
        Breaker::new(BreakerSettings {
            base_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(60),
        })
    }

    #[test]
    fn a_closed_breaker_admits_everyone() {
        let breaker = quick();
        assert_eq!(breaker.admit(), Ok(Admitted { probe: false }));
        assert_eq!(breaker.admit(), Ok(Admitted { probe: false }));
        assert_eq!(breaker.report().state, BreakerState::Closed);
    }

    #[test]
    fn a_failure_refuses_callers_at_once_with_the_reason() {
        let breaker = quick();
        breaker.failed(breaker.epoch(), "no connection within 1s");
        let refused = breaker.admit().unwrap_err();
        assert_eq!(refused.reason, "no connection within 1s");
        assert!(refused.retry_in <= Duration::from_millis(20));
        let report = breaker.report();
        assert_eq!(report.state, BreakerState::Open);
        assert_eq!(report.failures, 1);
    }

    #[test]
    fn after_the_backoff_one_probe_goes_and_the_others_wait_for_its_verdict() {
        let breaker = quick();
        breaker.failed(breaker.epoch(), "down");
        std::thread::sleep(Duration::from_millis(25));
        assert_eq!(breaker.report().state, BreakerState::HalfOpen);
        assert_eq!(breaker.admit(), Ok(Admitted { probe: true }));
        assert!(breaker.admit().is_err(), "one probe at a time");
        breaker.succeeded();
        assert_eq!(breaker.admit(), Ok(Admitted { probe: false }));
        assert_eq!(breaker.report().failures, 0);
    }

    #[test]
    fn a_failed_probe_opens_for_longer_up_to_the_maximum() {
        let breaker = quick();
        breaker.failed(breaker.epoch(), "down");
        breaker.failed(breaker.epoch(), "still down");
        assert!(breaker.admit().unwrap_err().retry_in > Duration::from_millis(20));
        for _ in 0..10 {
            breaker.failed(breaker.epoch(), "still down");
        }
        assert!(breaker.admit().unwrap_err().retry_in <= Duration::from_millis(60));
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_caller_probe() {
        let breaker = quick();
        breaker.failed(breaker.epoch(), "down");
        std::thread::sleep(Duration::from_millis(25));
        assert_eq!(breaker.admit(), Ok(Admitted { probe: true }));
        breaker.probe_abandoned();
        assert_eq!(breaker.admit(), Ok(Admitted { probe: true }));
    }

    #[test]
    fn a_failure_from_before_a_recovery_does_not_reopen_the_breaker() {
        let breaker = quick();
        breaker.failed(breaker.epoch(), "down");
        // A connect attempt starts while it is down, and outlives the thaw.
        let stale = breaker.epoch();
        std::thread::sleep(Duration::from_millis(25));
        breaker.succeeded();
        breaker.failed(stale, "no connection within 1s");
        assert_eq!(breaker.report().state, BreakerState::Closed);
        assert_eq!(breaker.admit(), Ok(Admitted { probe: false }));
        // A failure that began after the recovery still counts.
        breaker.failed(breaker.epoch(), "down again");
        assert_eq!(breaker.report().state, BreakerState::Open);
    }
}
