//! Admission control: how much one source may send (a token bucket per IP address, the
//! trunk's far larger than a stranger's), and what an overloaded adapter answers.
//!
//! Sans-IO like the core: the caller passes the time, so the rules are tested without
//! sleeping.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use super::settings::SipLimits;
use super::wire::{self, SipMessage};

/// What an overloaded adapter puts in `Retry-After`: long enough for a burst to pass, short
/// enough that the carrier comes back soon.
pub const OVERLOAD_RETRY_AFTER_SECS: u32 = 5;
/// Source addresses tracked at once. A flood from more (spoofed UDP sources) shares one bucket
/// beyond this, so the table cannot grow without bound.
const MAX_TRACKED_SOURCES: usize = 65_536;
/// 503s sent per second for messages over their rate; beyond it they are dropped too, so a
/// flood with a forged trunk address cannot make us a reflector.
const OVERLOAD_REPLIES_PER_SEC: u32 = 200;

/// What to do with one message from a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Within its rate: handle it.
    Admit,
    /// Over its rate, from the trunk: answer 503 with Retry-After if it is a request.
    Refuse,
    /// Over its rate: drop it without a word.
    Drop,
}

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            at: now,
        }
    }

    fn refill(&mut self, rate: f64, burst: f64, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * rate).min(burst);
        self.at = now;
    }

    fn take(&mut self, rate: f64, burst: f64, now: Instant) -> bool {
        self.refill(rate, burst, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Per-source rates: every message from an address takes a token of its bucket.
#[derive(Debug)]
pub struct RateLimiter {
    trunk: Vec<IpNet>,
    source_rate: f64,
    trunk_rate: f64,
    buckets: HashMap<IpAddr, Bucket>,
    overflow: Bucket,
    replies: Bucket,
}

impl RateLimiter {
    /// A limiter for the carrier at `trunk` and everyone else, at the rates of `limits`.
    pub fn new(trunk: Vec<IpNet>, limits: &SipLimits, now: Instant) -> Self {
        let source_rate = f64::from(limits.source_messages_per_sec);
        Self {
            trunk,
            source_rate,
            trunk_rate: f64::from(limits.trunk_messages_per_sec),
            buckets: HashMap::new(),
            overflow: Bucket::full(2.0 * source_rate, now),
            replies: Bucket::full(f64::from(OVERLOAD_REPLIES_PER_SEC), now),
        }
    }

    /// Whether `ip` belongs to the carrier.
    pub fn is_trunk(&self, ip: IpAddr) -> bool {
        self.trunk.iter().any(|n| n.contains(&ip))
    }

    /// Takes a token for one message from `ip`.
    pub fn admit(&mut self, ip: IpAddr, now: Instant) -> Admission {
        let trunk = self.is_trunk(ip);
        let rate = if trunk {
            self.trunk_rate
        } else {
            self.source_rate
        };
        let burst = 2.0 * rate;
        if self.buckets.len() >= MAX_TRACKED_SOURCES && !self.buckets.contains_key(&ip) {
            self.forget_idle(now);
        }
        let bucket = if trunk || self.buckets.len() < MAX_TRACKED_SOURCES {
            self.buckets
                .entry(ip)
                .or_insert_with(|| Bucket::full(burst, now))
        } else {
            match self.buckets.get_mut(&ip) {
                Some(b) => b,
                None => &mut self.overflow,
            }
        };
        if bucket.take(rate, burst, now) {
            return Admission::Admit;
        }
        let replies = f64::from(OVERLOAD_REPLIES_PER_SEC);
        if trunk && self.replies.take(replies, replies, now) {
            Admission::Refuse
        } else {
            Admission::Drop
        }
    }

    /// Sources tracked now.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }

    /// Drops the buckets that have filled up again: a full bucket is what a new source gets.
    fn forget_idle(&mut self, now: Instant) {
        let (source_rate, trunk_rate) = (self.source_rate, self.trunk_rate);
        let trunk = self.trunk.clone();
        self.buckets.retain(|ip, b| {
            let rate = if trunk.iter().any(|n| n.contains(ip)) {
                trunk_rate
            } else {
                source_rate
            };
            let idle = now.saturating_duration_since(b.at);
            b.tokens + idle.as_secs_f64() * rate < 2.0 * rate
        });
    }
}

/// The answer to a request that came while we are overloaded: 503 with Retry-After; `None`
/// for an ACK or a response (never answered).
pub fn overload_response(req: &SipMessage) -> Option<SipMessage> {
    if !req.is_request() || req.method() == Some("ACK") {
        return None;
    }
    let mut r = SipMessage::response_to(req, 503, "Service Unavailable", Some(&wire::new_tag()));
    r.add_header("Retry-After", &OVERLOAD_RETRY_AFTER_SECS.to_string())
        .ok()?;
    Some(r)
}

/// The pause after the `n`-th accept failure in a row (out of file descriptors and the like):
/// doubling from 10 ms up to a second, so the acceptor neither spins nor stays deaf for long.
pub fn accept_backoff(failures_in_a_row: u32) -> Duration {
    let ms = 10u64.saturating_mul(1 << failures_in_a_row.min(7));
    Duration::from_millis(ms.min(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(source: u32, trunk: u32, now: Instant) -> RateLimiter {
        let limits = SipLimits {
            source_messages_per_sec: source,
            trunk_messages_per_sec: trunk,
            ..SipLimits::default()
        };
        RateLimiter::new(vec!["192.0.2.0/28".parse().unwrap()], &limits, now)
    }

    #[test]
    fn a_stranger_gets_a_burst_of_twice_its_rate_then_its_rate() {
        let t0 = Instant::now();
        let mut l = limiter(10, 1000, t0);
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        let admitted = (0..100)
            .filter(|_| l.admit(ip, t0) == Admission::Admit)
            .count();
        assert_eq!(admitted, 20);
        assert_eq!(
            l.admit(ip, t0),
            Admission::Drop,
            "strangers are never answered"
        );
        // A second later, ten more.
        let t1 = t0 + Duration::from_secs(1);
        let admitted = (0..100)
            .filter(|_| l.admit(ip, t1) == Admission::Admit)
            .count();
        assert_eq!(admitted, 10);
        // Another source is not affected.
        assert_eq!(
            l.admit("198.51.100.8".parse().unwrap(), t1),
            Admission::Admit
        );
    }

    #[test]
    fn the_trunk_has_its_own_rate_and_is_refused_not_dropped() {
        let t0 = Instant::now();
        let mut l = limiter(1, 50, t0);
        let trunk: IpAddr = "192.0.2.3".parse().unwrap();
        let admitted = (0..100)
            .filter(|_| l.admit(trunk, t0) == Admission::Admit)
            .count();
        assert_eq!(admitted, 100, "a burst of twice the rate");
        assert_eq!(l.admit(trunk, t0), Admission::Refuse);
        // The 503s themselves are limited.
        let refused = (0..1000)
            .filter(|_| l.admit(trunk, t0) == Admission::Refuse)
            .count();
        assert_eq!(refused, OVERLOAD_REPLIES_PER_SEC as usize - 1);
    }

    #[test]
    fn the_source_table_is_bounded_and_idle_sources_are_forgotten() {
        let t0 = Instant::now();
        let mut l = limiter(1, 1, t0);
        for i in 0..MAX_TRACKED_SOURCES as u32 + 10 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            l.admit(ip, t0);
        }
        assert_eq!(l.tracked(), MAX_TRACKED_SOURCES);
        // Three seconds on, every bucket is full again: a new source makes room.
        let t3 = t0 + Duration::from_secs(3);
        assert_eq!(l.admit("10.200.0.1".parse().unwrap(), t3), Admission::Admit);
        assert_eq!(l.tracked(), 1);
    }

    #[test]
    fn accept_backs_off_up_to_a_second() {
        assert_eq!(accept_backoff(0), Duration::from_millis(10));
        assert_eq!(accept_backoff(3), Duration::from_millis(80));
        assert_eq!(accept_backoff(40), Duration::from_secs(1));
    }
}
