//! Throttling of the credential endpoints — login, registration, refresh —
//! with `governor`'s keyed GCRA limiters, two per action:
//!
//! - **per (account, address)**: the email (or the refresh token) with the
//!   client's address. It slows guessing one account's password from one
//!   place to a few tries a minute.
//! - **per address**: every attempt of that action from one address, whatever
//!   the account. It bounds credential stuffing across many accounts.
//!
//! There is deliberately **no limit per account alone**: whoever could
//! exhaust it — anyone who knows an email — could lock its owner out from
//! everywhere. Guessing one account from many addresses is therefore bounded
//! only by how many addresses the attacker has; the hashing pool
//! ([`super::passwords`]) bounds what that costs us, and each lockout is in
//! the audit log for a person to notice.
//!
//! The account key is the email as typed (trimmed, lower-cased) — never
//! whether an account has it — so an unknown email is throttled exactly like
//! a known one and the limiter reveals nothing. Keys are hashed, so a long
//! email costs the table no more than a short one. IPv6 addresses count by
//! their /64, which one subscriber usually holds whole.
//!
//! **Per instance, in memory.** Limits are not shared between instances:
//! with N instances behind a balancer an attacker gets at most N times the
//! budget, which is still a few guesses a minute. Sharing them through
//! PostgreSQL would put a write on the database for every attempt — the very
//! load a burst of logins should not reach — and the CPU a burst costs is
//! per instance anyway. A restart forgets the counts (it also takes the
//! attacker's budget back to one burst, no more).
//!
//! **Lockouts are coalesced.** A lockout of a key starts with its first
//! refused attempt and lasts while refused attempts keep coming less than a
//! quiet period apart (the time the key needs to refill its whole burst);
//! only its start is told ([`Throttled::lockout_started`]), so the audit log
//! gets one `auth.locked_out` per lockout, not one event per attempt.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use sha2::{Digest, Sha256};

pub use crate::events::{AuthAction, ThrottleScope};

/// How many attempts per minute each limiter allows; each may also come all
/// at once (the burst is the same number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleConfig {
    pub per_account_and_address_per_minute: NonZeroU32,
    pub per_address_per_minute: NonZeroU32,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            per_account_and_address_per_minute: NonZeroU32::new(5).expect("not zero"),
            per_address_per_minute: NonZeroU32::new(60).expect("not zero"),
        }
    }
}

/// A refused attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    /// Which limiter refused it.
    pub scope: ThrottleScope,
    /// When the key may try again.
    pub retry_after: Duration,
    /// True for the first refusal of a lockout: the caller records the
    /// lockout (and calls [`AuthThrottle::forget_lockout`] if it could not).
    pub lockout_started: bool,
}

/// The address part of a key: an IPv4 address, or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct AddressKey(IpAddr);

impl AddressKey {
    fn of(address: IpAddr) -> AddressKey {
        match address.to_canonical() {
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                AddressKey(IpAddr::V6(prefix.into()))
            }
            v4 => AddressKey(v4),
        }
    }
}

/// SHA-256 of the account as typed (trimmed, lower-cased).
type AccountKey = [u8; 32];

type KeyedLimiter<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>;

struct ActionLimiters {
    per_address: KeyedLimiter<AddressKey>,
    per_account_and_address: KeyedLimiter<(AddressKey, AccountKey)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct LockoutKey {
    action: AuthAction,
    address: AddressKey,
    /// `None` for a lockout of the whole address.
    account: Option<AccountKey>,
}

/// Stale keys are dropped every this many checks, so a flood of made-up
/// emails cannot grow the tables without bound.
const HOUSEKEEPING_EVERY: u64 = 1024;

/// The limiters of every credential endpoint (one per service instance).
pub struct AuthThrottle {
    config: ThrottleConfig,
    login: ActionLimiters,
    register: ActionLimiters,
    refresh: ActionLimiters,
    /// Each active lockout and when its last refused attempt came.
    lockouts: Mutex<HashMap<LockoutKey, Instant>>,
    checks: AtomicU64,
    /// Refused attempts and started lockouts, per action and scope (see
    /// [`AuthThrottle::counts`]).
    refused: [AtomicU64; COUNTERS],
    lockouts_started: [AtomicU64; COUNTERS],
}

/// Refused attempts and lockouts of one action and scope since start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleCounts {
    pub action: AuthAction,
    pub scope: ThrottleScope,
    pub refused: u64,
    pub lockouts: u64,
}

const ACTIONS: [AuthAction; 3] = [AuthAction::Login, AuthAction::Register, AuthAction::Refresh];
const SCOPES: [ThrottleScope; 2] = [ThrottleScope::AccountAndAddress, ThrottleScope::Address];

/// One counter per (action, scope).
const COUNTERS: usize = ACTIONS.len() * SCOPES.len();

/// Where (action, scope) counts: positions in [`ACTIONS`] and [`SCOPES`],
/// spelled out so that a new action or scope cannot compile without one.
fn counter_index(action: AuthAction, scope: ThrottleScope) -> usize {
    let action = match action {
        AuthAction::Login => 0,
        AuthAction::Register => 1,
        AuthAction::Refresh => 2,
    };
    let scope = match scope {
        ThrottleScope::AccountAndAddress => 0,
        ThrottleScope::Address => 1,
    };
    action * SCOPES.len() + scope
}

impl AuthThrottle {
    pub fn new(config: ThrottleConfig) -> Self {
        let limiters = || ActionLimiters {
            per_address: RateLimiter::keyed(Quota::per_minute(config.per_address_per_minute)),
            per_account_and_address: RateLimiter::keyed(Quota::per_minute(
                config.per_account_and_address_per_minute,
            )),
        };
        AuthThrottle {
            config,
            login: limiters(),
            register: limiters(),
            refresh: limiters(),
            lockouts: Mutex::new(HashMap::new()),
            checks: AtomicU64::new(0),
            refused: Default::default(),
            lockouts_started: Default::default(),
        }
    }

    /// Refusals and lockouts so far, for `/metrics`.
    pub fn counts(&self) -> Vec<ThrottleCounts> {
        ACTIONS
            .iter()
            .flat_map(|action| SCOPES.iter().map(move |scope| (*action, *scope)))
            .map(|(action, scope)| {
                let index = counter_index(action, scope);
                ThrottleCounts {
                    action,
                    scope,
                    refused: self.refused[index].load(Ordering::Relaxed),
                    lockouts: self.lockouts_started[index].load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// Counts one attempt of `action` on `account` (an email, or a refresh
    /// token) from `address`, or refuses it. The address is checked first,
    /// so an attempt refused for the address does not use up the account's
    /// budget.
    pub fn check(
        &self,
        action: AuthAction,
        address: IpAddr,
        account: &str,
    ) -> Result<(), Throttled> {
        if self
            .checks
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(HOUSEKEEPING_EVERY)
        {
            self.drop_stale_keys();
        }
        let limiters = self.limiters(action);
        let address = AddressKey::of(address);
        let account = account_key(account);
        let clock = limiters.per_address.clock();
        if let Err(not_until) = limiters.per_address.check_key(&address) {
            let key = LockoutKey {
                action,
                address,
                account: None,
            };
            return Err(self.refused(
                key,
                ThrottleScope::Address,
                not_until.wait_time_from(clock.now()),
            ));
        }
        if let Err(not_until) = limiters
            .per_account_and_address
            .check_key(&(address, account))
        {
            let key = LockoutKey {
                action,
                address,
                account: Some(account),
            };
            return Err(self.refused(
                key,
                ThrottleScope::AccountAndAddress,
                not_until.wait_time_from(clock.now()),
            ));
        }
        Ok(())
    }

    /// The lockout `throttled` started could not be recorded: the next
    /// refused attempt starts it again, so it is recorded then.
    pub fn forget_lockout(
        &self,
        action: AuthAction,
        address: IpAddr,
        account: &str,
        scope: ThrottleScope,
    ) {
        let key = LockoutKey {
            action,
            address: AddressKey::of(address),
            account: match scope {
                ThrottleScope::Address => None,
                ThrottleScope::AccountAndAddress => Some(account_key(account)),
            },
        };
        self.lockouts_table().remove(&key);
    }

    fn refused(&self, key: LockoutKey, scope: ThrottleScope, wait: Duration) -> Throttled {
        let now = Instant::now();
        let quiet_period = self.quiet_period(scope);
        let previous = self.lockouts_table().insert(key, now);
        let lockout_started = previous.is_none_or(|last| now.duration_since(last) >= quiet_period);
        let index = counter_index(key.action, scope);
        self.refused[index].fetch_add(1, Ordering::Relaxed);
        if lockout_started {
            self.lockouts_started[index].fetch_add(1, Ordering::Relaxed);
        }
        Throttled {
            scope,
            // Retry-After is in whole seconds: round up, never to 0.
            retry_after: Duration::from_secs(wait.as_secs_f64().ceil().max(1.0) as u64),
            lockout_started,
        }
    }

    /// How long a key needs to refill its whole burst: a lockout ends once
    /// that long passes without a refused attempt.
    fn quiet_period(&self, scope: ThrottleScope) -> Duration {
        let per_minute = match scope {
            ThrottleScope::Address => self.config.per_address_per_minute,
            ThrottleScope::AccountAndAddress => self.config.per_account_and_address_per_minute,
        };
        Quota::per_minute(per_minute).burst_size_replenished_in()
    }

    fn limiters(&self, action: AuthAction) -> &ActionLimiters {
        match action {
            AuthAction::Login => &self.login,
            AuthAction::Register => &self.register,
            AuthAction::Refresh => &self.refresh,
        }
    }

    fn lockouts_table(&self) -> std::sync::MutexGuard<'_, HashMap<LockoutKey, Instant>> {
        self.lockouts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn drop_stale_keys(&self) {
        for limiters in [&self.login, &self.register, &self.refresh] {
            limiters.per_address.retain_recent();
            limiters.per_address.shrink_to_fit();
            limiters.per_account_and_address.retain_recent();
            limiters.per_account_and_address.shrink_to_fit();
        }
        let now = Instant::now();
        let longest = self
            .quiet_period(ThrottleScope::Address)
            .max(self.quiet_period(ThrottleScope::AccountAndAddress));
        self.lockouts_table()
            .retain(|_, last| now.duration_since(*last) < longest);
    }
}

fn account_key(account: &str) -> AccountKey {
    Sha256::digest(account.trim().to_lowercase().as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(per_pair: u32, per_address: u32) -> AuthThrottle {
        AuthThrottle::new(ThrottleConfig {
            per_account_and_address_per_minute: NonZeroU32::new(per_pair).unwrap(),
            per_address_per_minute: NonZeroU32::new(per_address).unwrap(),
        })
    }

    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
    const AWAY: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

    #[test]
    fn a_burst_for_one_account_and_address_is_refused_past_its_size_once_as_a_lockout() {
        let throttle = throttle(3, 100);
        for _ in 0..3 {
            throttle
                .check(AuthAction::Login, HOME, "harry@hogwarts.edu")
                .unwrap();
        }
        let first = throttle
            .check(AuthAction::Login, HOME, "Harry@Hogwarts.edu ")
            .unwrap_err();
        let second = throttle
            .check(AuthAction::Login, HOME, "harry@hogwarts.edu")
            .unwrap_err();
        assert_eq!(first.scope, ThrottleScope::AccountAndAddress);
        assert!(first.lockout_started && !second.lockout_started);
        assert!(first.retry_after >= Duration::from_secs(1));
        // Another address, another account, another action: unaffected.
        throttle
            .check(AuthAction::Login, AWAY, "harry@hogwarts.edu")
            .unwrap();
        throttle
            .check(AuthAction::Login, HOME, "ron@hogwarts.edu")
            .unwrap();
        throttle
            .check(AuthAction::Register, HOME, "harry@hogwarts.edu")
            .unwrap();
    }

    #[test]
    fn an_address_is_refused_past_its_own_limit_whatever_the_account() {
        let throttle = throttle(5, 4);
        for n in 0..4 {
            throttle
                .check(AuthAction::Login, HOME, &format!("user{n}@hogwarts.edu"))
                .unwrap();
        }
        let refused = throttle
            .check(AuthAction::Login, HOME, "new@hogwarts.edu")
            .unwrap_err();
        assert_eq!(refused.scope, ThrottleScope::Address);
        throttle
            .check(AuthAction::Login, AWAY, "new@hogwarts.edu")
            .unwrap();
    }

    #[test]
    fn ipv6_addresses_count_by_their_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(AddressKey::of(a), AddressKey::of(b));
        assert_ne!(AddressKey::of(a), AddressKey::of(c));
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(AddressKey::of(mapped), AddressKey::of(HOME));
    }

    #[test]
    fn a_lockout_that_could_not_be_recorded_starts_again_on_the_next_refusal() {
        let throttle = throttle(1, 100);
        throttle.check(AuthAction::Refresh, HOME, "token").unwrap();
        let refused = throttle
            .check(AuthAction::Refresh, HOME, "token")
            .unwrap_err();
        assert!(refused.lockout_started);
        throttle.forget_lockout(AuthAction::Refresh, HOME, "token", refused.scope);
        let again = throttle
            .check(AuthAction::Refresh, HOME, "token")
            .unwrap_err();
        assert!(again.lockout_started);
    }
}
