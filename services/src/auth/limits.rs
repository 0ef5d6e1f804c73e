//! Limits on logins and registrations under attack.
//!
//! Each limit counts events per key (an account, a client address) over a sliding window: once
//! `max` events fall within the last `window`, the key is refused until the oldest of them leaves
//! it, and told how long that is (429 with `Retry-After`). Only failed logins count against an
//! account or an address, so a guessing attacker is slowed while the account's owner, once the
//! window has passed, logs in from anywhere; a success clears the account's failures.
//! Registrations count per address, failed or not.
//!
//! The counts live in memory, per process: a limit holds per Auth instance.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::ServiceError;

/// How many events a key may have within a window; a `max` of 0 sets no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max: usize,
    pub window: Duration,
}

impl Limit {
    pub const fn new(max: usize, window: Duration) -> Self {
        Self { max, window }
    }
}

/// The limits of the Auth service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimits {
    /// Failed logins for one username.
    pub account: Limit,
    /// Failed logins from one client address, whatever the username.
    pub address: Limit,
    /// Registrations from one client address.
    pub register: Limit,
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self {
            account: Limit::new(5, Duration::from_secs(60)),
            address: Limit::new(20, Duration::from_secs(60)),
            register: Limit::new(10, Duration::from_secs(600)),
        }
    }
}

/// Keys kept at most; past that, keys whose events have all left the window are dropped first.
const MAX_KEYS: usize = 100_000;

/// Events per key over a sliding window.
#[derive(Debug)]
pub struct Window<K> {
    limit: Limit,
    events: Mutex<HashMap<K, VecDeque<Instant>>>,
}

impl<K: std::hash::Hash + Eq + Clone> Window<K> {
    pub fn new(limit: Limit) -> Self {
        Self { limit, events: Mutex::new(HashMap::new()) }
    }

    /// `Err(wait)` when `key` has used its events: it may try again after `wait`.
    pub fn check(&self, key: &K, now: Instant) -> Result<(), Duration> {
        if self.limit.max == 0 {
            return Ok(());
        }
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        let Some(times) = events.get_mut(key) else { return Ok(()) };
        self.forget_old(times, now);
        match times.front() {
            Some(&oldest) if times.len() >= self.limit.max => {
                Err((oldest + self.limit.window).saturating_duration_since(now))
            }
            _ => Ok(()),
        }
    }

    /// Counts one event of `key`.
    pub fn record(&self, key: K, now: Instant) {
        if self.limit.max == 0 {
            return;
        }
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if events.len() >= MAX_KEYS && !events.contains_key(&key) {
            let window = self.limit.window;
            events
                .retain(|_, times| times.back().is_some_and(|&t| now.saturating_duration_since(t) < window));
            if events.len() >= MAX_KEYS {
                // Still full of live keys: an attacker spreading over names. Start over rather
                // than grow without bound; the address limit still holds them back.
                events.clear();
            }
        }
        let times = events.entry(key).or_default();
        self.forget_old(times, now);
        times.push_back(now);
        while times.len() > self.limit.max {
            times.pop_front();
        }
    }

    pub fn clear(&self, key: &K) {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }

    fn forget_old(&self, times: &mut VecDeque<Instant>, now: Instant) {
        while times.front().is_some_and(|&t| now.saturating_duration_since(t) >= self.limit.window) {
            times.pop_front();
        }
    }
}

/// The Auth service's three windows.
#[derive(Debug)]
pub struct Limiter {
    account: Window<String>,
    address: Window<IpAddr>,
    register: Window<IpAddr>,
}

impl Limiter {
    pub fn new(limits: LoginLimits) -> Self {
        Self {
            account: Window::new(limits.account),
            address: Window::new(limits.address),
            register: Window::new(limits.register),
        }
    }

    /// Before checking a password: refused while the account or the address has too many failures.
    pub fn before_login(&self, username: &str, from: Option<IpAddr>) -> Result<(), ServiceError> {
        let now = Instant::now();
        if let Some(ip) = from {
            self.address.check(&ip, now).map_err(|wait| too_many("failed logins from this address", wait))?;
        }
        self.account
            .check(&username.to_owned(), now)
            .map_err(|wait| too_many("failed logins for this account", wait))
    }

    pub fn login_failed(&self, username: &str, from: Option<IpAddr>) {
        let now = Instant::now();
        self.account.record(username.to_owned(), now);
        if let Some(ip) = from {
            self.address.record(ip, now);
        }
    }

    pub fn login_succeeded(&self, username: &str) {
        self.account.clear(&username.to_owned());
    }

    /// Counts a registration from `from`, or refuses it.
    pub fn register(&self, from: Option<IpAddr>) -> Result<(), ServiceError> {
        let Some(ip) = from else { return Ok(()) };
        let now = Instant::now();
        self.register.check(&ip, now).map_err(|wait| too_many("registrations from this address", wait))?;
        self.register.record(ip, now);
        Ok(())
    }
}

fn too_many(what: &str, wait: Duration) -> ServiceError {
    // Whole seconds, rounded up, at least one: what `Retry-After` can say.
    let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    ServiceError::TooManyRequests {
        detail: format!("too many {what}; try again later"),
        retry_after: retry_after.max(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_refused_at_its_limit_until_its_oldest_event_leaves_the_window() {
        let window = Window::new(Limit::new(3, Duration::from_secs(60)));
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(window.check(&"ann", t0 + Duration::from_secs(i)), Ok(()));
            window.record("ann", t0 + Duration::from_secs(i));
        }
        assert_eq!(window.check(&"ann", t0 + Duration::from_secs(10)), Err(Duration::from_secs(50)));
        assert_eq!(window.check(&"bob", t0 + Duration::from_secs(10)), Ok(()), "another key is not held");
        assert_eq!(window.check(&"ann", t0 + Duration::from_secs(60)), Ok(()), "the oldest has left");
        window.clear(&"ann");
        window.record("ann", t0 + Duration::from_secs(61));
        assert_eq!(window.check(&"ann", t0 + Duration::from_secs(61)), Ok(()));
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        for (wait, secs) in
            [(Duration::from_millis(1), 1), (Duration::from_millis(1500), 2), (Duration::from_secs(7), 7)]
        {
            match too_many("x", wait) {
                ServiceError::TooManyRequests { retry_after, .. } => {
                    assert_eq!(retry_after, secs, "{wait:?}")
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
