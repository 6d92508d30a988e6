//! Limits on password checking that do not depend on the account: failed logins per client
//! address in a sliding window, and how many Argon2 runs (19 MiB each) may run at once.
//!
//! An attempt takes its place in its address's window *before* any work, and gives it back
//! only when it succeeds: parallel requests from one address cannot make more guesses than
//! the window allows, however many arrive at once.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use tokio::sync::Semaphore;

/// Argon2 runs at once, process-wide; more wait their turn instead of allocating.
pub const PASSWORD_CHECKS_AT_ONCE: usize = 4;
/// Addresses tracked at most; beyond, the one idle longest is forgotten.
const MAX_ADDRESSES: usize = 10_000;

/// The attempts of one address still in its window: failed, or in flight.
#[derive(Default)]
struct Window {
    attempts: VecDeque<(u64, DateTime<Utc>)>,
    /// Whether a refusal was already reported since the address was last admitted.
    refusing: bool,
}

/// The per-address limit and the hashing cap, shared by every clone of `Users`.
pub struct LoginGuard {
    limit: usize,
    window: Duration,
    addresses: Mutex<HashMap<String, Window>>,
    next_id: AtomicU64,
    hashing: Arc<Semaphore>,
}

/// An admitted attempt's place in its address's window.
pub struct Ticket {
    key: String,
    id: u64,
    /// Failures (and attempts in flight) of the address before this one, in the window.
    pub earlier: usize,
}

/// Why an attempt was not admitted.
pub struct Refused {
    /// Seconds until the address may try again.
    pub retry_after_secs: u64,
    /// The first refusal since the address was last admitted (worth one audit row).
    pub first: bool,
}

/// The window's key: the address, an IPv6 address by its /64 (one host's usual share).
fn key(ip: Option<&str>) -> String {
    match ip.and_then(|s| s.parse::<IpAddr>().ok()) {
        Some(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Some(IpAddr::V6(v6)) => v6
            .to_ipv4_mapped()
            .map(|v4| v4.to_string())
            .unwrap_or_default(),
        Some(IpAddr::V4(v4)) => v4.to_string(),
        None => ip.unwrap_or("(none)").to_string(),
    }
}

impl LoginGuard {
    /// At most `limit` failed logins per address within `window`.
    pub fn new(limit: u32, window: Duration) -> Self {
        LoginGuard {
            limit: limit.max(1) as usize,
            window,
            addresses: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            hashing: Arc::new(Semaphore::new(PASSWORD_CHECKS_AT_ONCE)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Window>> {
        self.addresses.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits an attempt from `ip` at `now`, or says how long the address must wait.
    pub fn admit(&self, ip: Option<&str>, now: DateTime<Utc>) -> Result<Ticket, Refused> {
        let key = key(ip);
        let since = now - self.window;
        let mut map = self.lock();
        if !map.contains_key(&key) && map.len() >= MAX_ADDRESSES {
            map.retain(|_, w| w.attempts.back().is_some_and(|(_, t)| *t > since));
            if map.len() >= MAX_ADDRESSES {
                let idle = map
                    .iter()
                    .min_by_key(|(_, w)| w.attempts.back().map(|(_, t)| *t))
                    .map(|(k, _)| k.clone());
                if let Some(k) = idle {
                    map.remove(&k);
                }
            }
        }
        let w = map.entry(key.clone()).or_default();
        while w.attempts.front().is_some_and(|(_, t)| *t <= since) {
            w.attempts.pop_front();
        }
        if w.attempts.len() >= self.limit {
            let oldest = w.attempts.front().map_or(now, |(_, t)| *t);
            let wait = (oldest + self.window - now).num_seconds().max(1);
            let first = !w.refusing;
            w.refusing = true;
            return Err(Refused {
                retry_after_secs: u64::try_from(wait).unwrap_or(1),
                first,
            });
        }
        w.refusing = false;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let earlier = w.attempts.len();
        w.attempts.push_back((id, now));
        Ok(Ticket { key, id, earlier })
    }

    /// The attempt succeeded: it no longer counts against its address.
    pub fn succeeded(&self, ticket: Ticket) {
        let mut map = self.lock();
        if let Some(w) = map.get_mut(&ticket.key) {
            w.attempts.retain(|(id, _)| *id != ticket.id);
            if w.attempts.is_empty() {
                map.remove(&ticket.key);
            }
        }
    }

    /// Runs an Argon2 computation off the async workers once one of the
    /// [`PASSWORD_CHECKS_AT_ONCE`] places is free; the place is held until it has finished,
    /// even if the request that asked is gone.
    pub async fn argon2<T, F>(&self, work: F) -> Option<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let place = self.hashing.clone().acquire_owned().await.ok()?;
        tokio::task::spawn_blocking(move || {
            let result = work();
            drop(place);
            result
        })
        .await
        .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    #[test]
    fn an_address_gets_its_allowance_then_waits_for_the_oldest_to_leave_the_window() {
        let g = LoginGuard::new(3, Duration::minutes(15));
        let ip = Some("192.0.2.1");
        for i in 0..3 {
            let t = g.admit(ip, t0() + Duration::minutes(i)).ok().unwrap();
            assert_eq!(t.earlier, i as usize);
        }
        let r = g.admit(ip, t0() + Duration::minutes(5)).err().unwrap();
        assert_eq!(r.retry_after_secs, 10 * 60);
        assert!(r.first);
        assert!(
            !g.admit(ip, t0() + Duration::minutes(6))
                .err()
                .unwrap()
                .first
        );
        assert!(
            g.admit(Some("192.0.2.2"), t0()).is_ok(),
            "others are not held"
        );
        assert!(g.admit(ip, t0() + Duration::minutes(15)).is_ok());
    }

    #[test]
    fn a_success_gives_its_place_back() {
        let g = LoginGuard::new(1, Duration::minutes(15));
        let t = g.admit(Some("192.0.2.1"), t0()).ok().unwrap();
        g.succeeded(t);
        assert!(g.admit(Some("192.0.2.1"), t0()).is_ok());
        assert!(g.admit(Some("192.0.2.1"), t0()).is_err());
    }

    #[test]
    fn ipv6_addresses_share_their_64_and_mapped_v4_is_v4() {
        assert_eq!(key(Some("2001:db8:1:2:aaaa::1")), "2001:db8:1:2::/64");
        assert_eq!(key(Some("2001:db8:1:2:bbbb::9")), "2001:db8:1:2::/64");
        assert_eq!(key(Some("::ffff:192.0.2.1")), "192.0.2.1");
        assert_eq!(key(None), "(none)");
    }

    #[test]
    fn the_table_is_bounded() {
        let g = LoginGuard::new(5, Duration::minutes(15));
        for i in 0..(MAX_ADDRESSES + 50) {
            let ip = format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255);
            let _ = g.admit(Some(&ip), t0());
        }
        assert_eq!(
            g.lock().len(),
            MAX_ADDRESSES,
            "all in the window: one evicted each"
        );
        let _ = g.admit(Some("192.0.2.1"), t0() + Duration::minutes(16));
        assert_eq!(g.lock().len(), 1, "the window's end prunes the rest");
    }
}
