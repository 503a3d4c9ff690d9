//! Waiting for a condition with a generous deadline, instead of sleeping
//! and hoping: projectors and the outbox relay are asynchronous.

use std::future::Future;
use std::time::{Duration, Instant};

/// How long [`eventually`] waits unless told otherwise: far beyond what a
/// healthy run needs on a busy two-core machine.
pub const EVENTUALLY: Duration = Duration::from_secs(20);

/// Polls `check` every 50 ms until it returns `Some`, and returns that.
///
/// # Panics
///
/// When `within` passes first, naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
