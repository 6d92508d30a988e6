//! The telephone line's rules from the profile's `[line]` (R-LINE-1, R-LINE-2).

use serde::Deserialize;

/// `[line]` of the profile.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LineProfile {
    /// The free-dial number as shown to people, e.g. `0120-000-000`.
    pub free_dial: String,
    /// Calls handled at once; one more gets busy (R-LINE-2).
    pub max_concurrent_calls: u32,
    /// How long the operators' phones ring before the caller gets "no answer".
    pub ring_timeout_secs: u32,
    /// Final status for a call outside the hours (R-HOURS-1), with Retry-After.
    pub closed_status: u16,
    /// The service level counts calls answered within this many seconds of ringing.
    pub service_level_secs: u32,
    /// An answered call with no BYE after this long is ended in the log, freeing the line.
    pub max_call_minutes: u32,
    /// WAV played as early media to a call outside the hours or on a weekend, relative to
    /// the profile directory; empty: a bare final response.
    pub closed_announcement: String,
    /// WAV for a national holiday, the year-end closure or a day the city closed.
    pub holiday_announcement: String,
    /// WAV for a call outside the call-center period (before it starts or after it ended).
    pub period_ended_announcement: String,
    /// Longest an announcement plays before the final response goes out.
    pub announcement_max_secs: u32,
    /// Announcements playing at once; a closed call beyond it gets the bare final response.
    pub max_announcements: u32,
}

impl Default for LineProfile {
    fn default() -> Self {
        Self {
            free_dial: String::new(),
            max_concurrent_calls: 1,
            ring_timeout_secs: 30,
            closed_status: 480,
            service_level_secs: 20,
            max_call_minutes: 120,
            closed_announcement: String::new(),
            holiday_announcement: String::new(),
            period_ended_announcement: String::new(),
            announcement_max_secs: 30,
            max_announcements: 8,
        }
    }
}
