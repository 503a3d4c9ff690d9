//! argon2id password hashing, bounded. Hashing takes tens of milliseconds
//! of CPU and 19 MiB of memory on purpose, so it runs on the blocking pool,
//! never on the async runtime — and at most [`HashingConfig::workers`] at a
//! time, with a short queue behind them. A request that finds the queue full
//! is refused at once ([`HashingError::Overloaded`], a 503 with
//! `Retry-After`) rather than waiting: a burst of logins then costs a fixed
//! share of the CPU, and commands, queries and sockets keep the rest.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use argon2::password_hash::{PasswordHasher as _, PasswordVerifier};
use argon2::{Argon2, PasswordHash};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::values::Password;

/// How much hashing may happen at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashingConfig {
    /// Argon2 computations running at once.
    pub workers: NonZeroUsize,
    /// Requests that may wait for a worker; past them, 503 at once.
    pub queue: usize,
}

impl HashingConfig {
    /// Half the cores (at least one): the other half stays with the async
    /// runtime.
    pub fn default_workers() -> NonZeroUsize {
        let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        NonZeroUsize::new(cores / 2).unwrap_or(NonZeroUsize::MIN)
    }

    pub const DEFAULT_QUEUE: usize = 16;
}

impl Default for HashingConfig {
    fn default() -> Self {
        HashingConfig {
            workers: Self::default_workers(),
            queue: Self::DEFAULT_QUEUE,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HashingError {
    /// Every worker is busy and the queue is full: try again after this.
    #[error("password hashing is at capacity")]
    Overloaded { retry_after: Duration },
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// What the hashing pool is doing, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashingLoad {
    pub running: usize,
    pub queued: usize,
    /// Requests refused because the queue was full, since start-up.
    pub rejected_total: u64,
}

/// The bounded Argon2 pool: one per service instance.
pub struct PasswordHashing {
    config: HashingConfig,
    /// One permit per worker: held while a computation runs.
    workers: Arc<Semaphore>,
    /// One permit per worker and queue place: held from admission to the end
    /// of the computation, and never waited for.
    admissions: Arc<Semaphore>,
    rejected: AtomicU64,
}

/// What a refused request is told to wait: the queue drains in well under
/// a second; a second is the smallest `Retry-After` there is.
const RETRY_AFTER: Duration = Duration::from_secs(1);

impl PasswordHashing {
    pub fn new(config: HashingConfig) -> Self {
        let workers = config.workers.get();
        PasswordHashing {
            config,
            workers: Arc::new(Semaphore::new(workers)),
            admissions: Arc::new(Semaphore::new(workers + config.queue)),
            rejected: AtomicU64::new(0),
        }
    }

    /// A place in the pool for one computation, or [`HashingError::Overloaded`]
    /// at once when every worker is busy and the queue is full. Take it
    /// before any other work for the request (the account lookup), so a
    /// refused request costs nothing else either.
    pub fn admit(&self) -> Result<HashingSlot, HashingError> {
        match self.admissions.clone().try_acquire_owned() {
            Ok(admission) => Ok(HashingSlot {
                admission,
                workers: self.workers.clone(),
            }),
            Err(_) => {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                Err(HashingError::Overloaded {
                    retry_after: RETRY_AFTER,
                })
            }
        }
    }

    pub fn load(&self) -> HashingLoad {
        let workers = self.config.workers.get();
        let running = workers - self.workers.available_permits();
        let admitted = workers + self.config.queue - self.admissions.available_permits();
        HashingLoad {
            running,
            queued: admitted.saturating_sub(running),
            rejected_total: self.rejected.load(Ordering::Relaxed),
        }
    }
}

/// An admitted computation ([`PasswordHashing::admit`]): it waits for a
/// worker, then runs on the blocking pool.
pub struct HashingSlot {
    admission: OwnedSemaphorePermit,
    workers: Arc<Semaphore>,
}

impl HashingSlot {
    /// Hashes `password` into a PHC string (algorithm, parameters, salt,
    /// hash).
    pub async fn hash_password(self, password: Password) -> Result<String, HashingError> {
        self.run(move || {
            Argon2::default()
                .hash_password(password.expose().as_bytes())
                .map(|hash| hash.to_string())
                .map_err(|error| anyhow::anyhow!("Failed to hash a password: {error}"))
        })
        .await
    }

    /// Checks `candidate` against a stored hash. With no stored hash
    /// (unknown email) it checks against a dummy hash, so both failures take
    /// the same time and cannot be told apart by timing.
    pub async fn verify_password(
        self,
        candidate: String,
        stored_hash: Option<String>,
    ) -> Result<bool, HashingError> {
        self.run(move || {
            let known_user = stored_hash.is_some();
            let stored = stored_hash.unwrap_or_else(|| dummy_hash().to_owned());
            let parsed = PasswordHash::new(&stored)
                .map_err(|error| anyhow::anyhow!("Stored password hash is invalid: {error}"))?;
            let matches = Argon2::default()
                .verify_password(candidate.as_bytes(), &parsed)
                .is_ok();
            Ok(known_user && matches)
        })
        .await
    }

    /// Waits for a worker and runs `compute` on the blocking pool. Both
    /// permits move into the blocking task: if the request is dropped
    /// meanwhile, the computation still counts until it really ends.
    async fn run<T: Send + 'static>(
        self,
        compute: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> Result<T, HashingError> {
        let HashingSlot { admission, workers } = self;
        let worker = workers
            .acquire_owned()
            .await
            .map_err(|_| anyhow::anyhow!("the hashing pool is closed"))?;
        let result = tokio::task::spawn_blocking(move || {
            let result = compute();
            drop((worker, admission));
            result
        })
        .await
        .map_err(|error| anyhow::anyhow!("password hashing panicked: {error}"))?;
        Ok(result?)
    }
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        Argon2::default()
            .hash_password(b"not anybody's password")
            .map(|hash| hash.to_string())
            .expect("hashing a constant succeeds")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let pool = PasswordHashing::new(HashingConfig::default());
        let verify = |candidate: &str, stored: Option<String>| {
            pool.admit()
                .unwrap()
                .verify_password(candidate.into(), stored)
        };
        let hash = pool
            .admit()
            .unwrap()
            .hash_password(Password::parse("alohomora-123").unwrap())
            .await
            .unwrap();
        assert!(verify("alohomora-123", Some(hash.clone())).await.unwrap());
        assert!(!verify("colloportus", Some(hash)).await.unwrap());
        assert!(!verify("alohomora-123", None).await.unwrap());
        assert_eq!(pool.load().running + pool.load().queued, 0);
    }

    #[test]
    fn past_the_workers_and_the_queue_admission_is_refused_at_once() {
        let pool = PasswordHashing::new(HashingConfig {
            workers: NonZeroUsize::MIN,
            queue: 1,
        });
        let (first, second) = (pool.admit().unwrap(), pool.admit().unwrap());
        assert!(matches!(pool.admit(), Err(HashingError::Overloaded { .. })));
        assert_eq!(pool.load().rejected_total, 1);
        drop((first, second));
        assert!(pool.admit().is_ok(), "a place is free again");
    }
}
