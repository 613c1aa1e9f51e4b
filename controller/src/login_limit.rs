//! Bounds on login attempts: failures are counted per operator name and per client address
//! in a fixed window; past the limit, logins are refused with 429 until the window ends,
//! whether the password is right or not. Kept in this process's memory (each controller
//! limits on its own), in a map of bounded size.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Failures allowed per operator name in one window.
pub const FAILURES_PER_NAME: u32 = 5;
/// Failures allowed per client address in one window (several operators behind one NAT).
pub const FAILURES_PER_ADDRESS: u32 = 20;
/// The window, in milliseconds.
pub const WINDOW_MS: i64 = 5 * 60_000;
/// Most names and addresses tracked; when full, ended windows are dropped first, and if
/// none has ended, new names are refused until one does (failing closed).
const MAX_TRACKED: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Subject {
    Name(String),
    Address(IpAddr),
}

/// Counts of failed logins.
#[derive(Debug, Default)]
pub struct LoginLimiter {
    /// Subject → (window start, failures). A std mutex: held for a few map operations.
    failures: Mutex<HashMap<Subject, (i64, u32)>>,
}

impl LoginLimiter {
    fn subjects(name: &str, address: Option<IpAddr>) -> Vec<(Subject, u32)> {
        let mut subjects = vec![(Subject::Name(name.to_owned()), FAILURES_PER_NAME)];
        if let Some(address) = address {
            subjects.push((Subject::Address(address), FAILURES_PER_ADDRESS));
        }
        subjects
    }

    /// `Err(seconds to wait)` if this name or address is over its limit at `now_ms`.
    pub fn check(&self, name: &str, address: Option<IpAddr>, now_ms: i64) -> Result<(), u64> {
        let failures = self.lock();
        let mut wait_ms = 0;
        for (subject, limit) in Self::subjects(name, address) {
            if let Some(&(start, count)) = failures.get(&subject)
                && now_ms < start + WINDOW_MS
                && count >= limit
            {
                wait_ms = wait_ms.max(start + WINDOW_MS - now_ms);
            }
        }
        if wait_ms == 0 && failures.len() >= MAX_TRACKED {
            let tracked = Self::subjects(name, address)
                .iter()
                .all(|(subject, _)| failures.contains_key(subject));
            if !tracked {
                return Err(1);
            }
        }
        if wait_ms > 0 {
            return Err(u64::try_from(wait_ms).unwrap_or(1).div_ceil(1000));
        }
        Ok(())
    }

    /// Counts a failed login.
    pub fn failed(&self, name: &str, address: Option<IpAddr>, now_ms: i64) {
        let mut failures = self.lock();
        if failures.len() >= MAX_TRACKED {
            failures.retain(|_, (start, _)| now_ms < *start + WINDOW_MS);
        }
        for (subject, _) in Self::subjects(name, address) {
            if failures.len() >= MAX_TRACKED && !failures.contains_key(&subject) {
                continue;
            }
            let entry = failures.entry(subject).or_insert((now_ms, 0));
            if now_ms >= entry.0 + WINDOW_MS {
                *entry = (now_ms, 0);
            }
            entry.1 += 1;
        }
    }

    /// A successful login clears its name's failures (not its address's).
    pub fn succeeded(&self, name: &str) {
        self.lock().remove(&Subject::Name(name.to_owned()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Subject, (i64, u32)>> {
        // Every change is one insert or remove: the map stays consistent after a panic.
        self.failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_refused_after_its_failures_until_the_window_ends() {
        let limiter = LoginLimiter::default();
        let address = Some(IpAddr::from([127, 0, 0, 1]));
        for _ in 0..FAILURES_PER_NAME {
            assert_eq!(limiter.check("ada", address, 1_000), Ok(()));
            limiter.failed("ada", address, 1_000);
        }
        assert_eq!(limiter.check("ada", address, 1_000), Err(300));
        assert_eq!(limiter.check("bob", address, 1_000), Ok(()));
        assert_eq!(limiter.check("ada", address, 1_000 + WINDOW_MS), Ok(()));
    }

    #[test]
    fn an_address_is_refused_after_failures_across_names() {
        let limiter = LoginLimiter::default();
        let address = Some(IpAddr::from([10, 1, 2, 3]));
        for index in 0..FAILURES_PER_ADDRESS {
            limiter.failed(&format!("guess{index}"), address, 0);
        }
        assert!(limiter.check("someone", address, 10).is_err());
        assert!(limiter.check("someone", None, 10).is_ok());
    }

    #[test]
    fn success_clears_the_name() {
        let limiter = LoginLimiter::default();
        for _ in 0..FAILURES_PER_NAME {
            limiter.failed("ada", None, 0);
        }
        limiter.succeeded("ada");
        assert_eq!(limiter.check("ada", None, 0), Ok(()));
    }
}
