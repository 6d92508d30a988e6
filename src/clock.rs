//! Time source. Business rules read the clock through this trait so tests can pin "now".

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};

/// Where the application gets the current time from.
pub trait Clock: Send + Sync + 'static {
    /// The current instant in UTC.
    fn now(&self) -> DateTime<Utc>;
}

/// The real wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to; for tests and demos.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<Utc>>>,
}

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            now: Arc::new(Mutex::new(start)),
        }
    }

    /// Moves the clock to `t`.
    pub fn set(&self, t: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(|e| e.into_inner()) = t;
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *now += d;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The wall clock shifted to start at a chosen instant: time runs normally from there.
///
/// For demos and interop tests that must happen "on a weekday at 10:00" or "on a holiday"
/// whatever the real date is; durations stay real.
#[derive(Debug, Clone, Copy)]
pub struct OffsetClock {
    offset: Duration,
}

impl OffsetClock {
    /// A clock that reads `start` now and advances in real time.
    pub fn starting_at(start: DateTime<Utc>) -> Self {
        Self {
            offset: start - Utc::now(),
        }
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.offset
    }
}

/// Shared handle to the application's clock.
pub type SharedClock = Arc<dyn Clock>;

/// Formats an instant the way the store keeps it: RFC 3339, UTC, milliseconds, `Z`.
///
/// Fixed width, so the text sorts in time order on both database backends.
pub fn to_db_time(t: DateTime<Utc>) -> String {
    use chrono::{Datelike, Timelike};
    // Written digit by digit rather than through `format!` (let alone a strftime pattern,
    // parsed on every call): this runs several times for every call event (issue 17).
    let year = t.year();
    if !(0..=9999).contains(&year) {
        return t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    }
    let mut out = String::with_capacity(24);
    let mut put = |v: u32, width: u32, sep: char| {
        for i in (0..width).rev() {
            let digit = v / 10u32.pow(i) % 10;
            out.push(char::from_digit(digit, 10).unwrap_or('0'));
        }
        out.push(sep);
    };
    put(year.unsigned_abs(), 4, '-');
    put(t.month(), 2, '-');
    put(t.day(), 2, 'T');
    put(t.hour(), 2, ':');
    put(t.minute(), 2, ':');
    put(t.second(), 2, '.');
    put((t.nanosecond() % 1_000_000_000) / 1_000_000, 3, 'Z');
    out
}

/// Parses a time written by [`to_db_time`] (or any RFC 3339 instant).
pub fn from_db_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, TimeZone};

    #[test]
    fn db_time_round_trips_and_sorts() {
        let a = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap();
        let b = a + Duration::milliseconds(1500);
        assert_eq!(to_db_time(a), "2026-06-01T00:00:00.000Z");
        assert_eq!(from_db_time(&to_db_time(b)), Some(b));
        assert!(to_db_time(a) < to_db_time(b));
        // The same text as the strftime pattern it replaced, milliseconds cut, not rounded.
        let c = Utc.with_ymd_and_hms(2026, 12, 31, 23, 59, 59).unwrap()
            + Duration::nanoseconds(987_654_321);
        assert_eq!(to_db_time(c), "2026-12-31T23:59:59.987Z");
        assert_eq!(
            to_db_time(c),
            c.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
        );
        // Across years, months, hours and milliseconds: the pattern's text, digit for digit.
        let mut t = Utc.with_ymd_and_hms(1999, 1, 1, 0, 0, 0).unwrap();
        while t.year() < 2031 {
            assert_eq!(
                to_db_time(t),
                t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
            );
            t += Duration::milliseconds(3_217_337_123);
        }
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let start = Utc.with_ymd_and_hms(2026, 9, 22, 1, 0, 0).unwrap();
        let c = ManualClock::new(start);
        assert_eq!(c.now(), start);
        c.advance(Duration::minutes(5));
        assert_eq!(c.now(), start + Duration::minutes(5));
    }
}
