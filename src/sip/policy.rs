//! The line's business rules for a new call: open or closed, busy, staffed, shutting down.
//!
//! The proxy core knows SIP, not the call center: it asks a [`RoutingPolicy`] what to do with
//! each new call and turns the answer into a final response or a fork. [`LinePolicy`] is the
//! standard one, built from the profile's opening hours and `[line]`.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::calls::LineProfile;
use crate::hours::{ClosedReason, OpenState, OpeningHours};

/// Retry-After of the 503 a new call gets while the process shuts down.
pub const DRAIN_RETRY_AFTER_SECS: u32 = 30;

/// What the proxy knows of the line when a new call arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineNow {
    /// When the call arrived.
    pub now: DateTime<Utc>,
    /// Calls in progress: ringing, or answered and not yet hung up.
    pub active_calls: usize,
    /// Operator phones registered now.
    pub registered_phones: usize,
    /// Whether the process is shutting down.
    pub draining: bool,
    /// Whether the call log is too far behind to take a new call's events.
    pub log_backlogged: bool,
}

/// What happens to a new call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Ring every registered phone at once, for this long.
    Ring {
        /// The ring timeout; then the caller gets 480 and the call ends as no answer.
        ring_for: Duration,
    },
    /// Outside the opening hours.
    Closed {
        /// The final status for the caller.
        status: u16,
        /// The rule that closed the line, logged with the call.
        reason: ClosedReason,
        /// Seconds to the next opening, for a Retry-After header.
        retry_after_secs: Option<u64>,
    },
    /// Every concurrent call of the line is in use: 486.
    Busy,
    /// No operator phone is registered: 480.
    Unstaffed,
    /// Shutting down: 503 with Retry-After, so the carrier retries or fails over. The call is
    /// neither counted nor logged.
    Draining {
        /// Seconds for the Retry-After header.
        retry_after_secs: u32,
    },
    /// The call log is far behind (the database stalls, or a flood): 503 with Retry-After
    /// until it catches up, so memory stays bounded and no accepted call goes unlogged. The
    /// call is counted, not logged.
    Overloaded {
        /// Seconds for the Retry-After header.
        retry_after_secs: u32,
    },
}

/// Retry-After of the 503 a new call gets while the call log catches up.
pub const OVERLOAD_RETRY_AFTER_SECS: u32 = 5;

/// Decides what happens to a new call; the proxy core holds no business rule itself.
pub trait RoutingPolicy {
    /// What to do with a new call for our line, given the state of the line.
    fn route(&self, line: &LineNow) -> Route;

    /// How long an answered call may last in our books without a BYE, so a lost BYE does not
    /// hold the line forever.
    fn max_call_duration(&self) -> Duration;
}

/// The standard policy: the profile's opening hours and `[line]` (R-HOURS-1, R-LINE-1, R-LINE-2).
#[derive(Debug, Clone)]
pub struct LinePolicy {
    hours: OpeningHours,
    line: LineProfile,
}

impl LinePolicy {
    /// A policy from the profile's opening hours and line settings.
    pub fn new(hours: OpeningHours, line: LineProfile) -> Self {
        Self { hours, line }
    }
}

impl RoutingPolicy for LinePolicy {
    fn route(&self, state: &LineNow) -> Route {
        if state.draining {
            return Route::Draining {
                retry_after_secs: DRAIN_RETRY_AFTER_SECS,
            };
        }
        if state.log_backlogged {
            return Route::Overloaded {
                retry_after_secs: OVERLOAD_RETRY_AFTER_SECS,
            };
        }
        if let OpenState::Closed { reason } = self.hours.is_open_at(state.now) {
            return Route::Closed {
                status: self.line.closed_status,
                reason,
                retry_after_secs: self.hours.retry_after_secs(state.now),
            };
        }
        if state.active_calls >= self.line.max_concurrent_calls as usize {
            return Route::Busy;
        }
        if state.registered_phones == 0 {
            return Route::Unstaffed;
        }
        Route::Ring {
            ring_for: Duration::from_secs(u64::from(self.line.ring_timeout_secs)),
        }
    }

    fn max_call_duration(&self) -> Duration {
        Duration::from_secs(u64::from(self.line.max_call_minutes) * 60)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::hours::HoursConfig;

    fn policy() -> LinePolicy {
        let hours = OpeningHours::new(&HoursConfig::default()).unwrap();
        LinePolicy::new(hours, LineProfile::default())
    }

    /// Wednesday 2026-11-25, 10:00 in Tokyo: the line is open.
    fn open_line() -> LineNow {
        LineNow {
            now: Utc.with_ymd_and_hms(2026, 11, 25, 1, 0, 0).unwrap(),
            active_calls: 0,
            registered_phones: 2,
            draining: false,
            log_backlogged: false,
        }
    }

    #[test]
    fn an_open_staffed_free_line_rings_for_the_ring_timeout() {
        assert_eq!(
            policy().route(&open_line()),
            Route::Ring {
                ring_for: Duration::from_secs(30)
            }
        );
        assert_eq!(policy().max_call_duration(), Duration::from_secs(120 * 60));
    }

    #[test]
    fn closed_says_why_and_when_it_opens() {
        // 18:00 in Tokyo: closed until 09:00 the next morning.
        let evening = LineNow {
            now: Utc.with_ymd_and_hms(2026, 11, 25, 9, 0, 0).unwrap(),
            ..open_line()
        };
        assert_eq!(
            policy().route(&evening),
            Route::Closed {
                status: 480,
                reason: ClosedReason::OutsideHours,
                retry_after_secs: Some(15 * 3600),
            }
        );
    }

    #[test]
    fn busy_and_unstaffed() {
        let busy = LineNow {
            active_calls: 1,
            ..open_line()
        };
        assert_eq!(policy().route(&busy), Route::Busy);
        let nobody = LineNow {
            registered_phones: 0,
            ..open_line()
        };
        assert_eq!(policy().route(&nobody), Route::Unstaffed);
    }

    #[test]
    fn draining_comes_first_even_when_closed() {
        let state = LineNow {
            now: Utc.with_ymd_and_hms(2026, 11, 25, 9, 0, 0).unwrap(),
            active_calls: 5,
            registered_phones: 0,
            draining: true,
            log_backlogged: true,
        };
        assert_eq!(
            policy().route(&state),
            Route::Draining {
                retry_after_secs: DRAIN_RETRY_AFTER_SECS
            }
        );
    }

    #[test]
    fn a_call_log_far_behind_refuses_new_calls_for_a_while() {
        let state = LineNow {
            log_backlogged: true,
            ..open_line()
        };
        assert_eq!(
            policy().route(&state),
            Route::Overloaded {
                retry_after_secs: OVERLOAD_RETRY_AFTER_SECS
            }
        );
    }
}
