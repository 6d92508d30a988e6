//! The login, session and lock-out policy from `[auth]` of `madoguchi.toml`.

use serde::Deserialize;

/// Login, session and lock-out policy (`[auth]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// A session unused for this long ends.
    pub session_idle_minutes: u32,
    /// A session ends this long after login whatever happens.
    pub session_max_hours: u32,
    /// Consecutive failed logins that lock an account.
    pub max_failed_logins: u32,
    /// How long a locked account stays locked.
    pub lockout_minutes: u32,
    /// Extra delay per earlier failure of the same client address (in its window), waited
    /// before the password is checked.
    pub failed_login_delay_ms: u64,
    /// Failed logins a client address may make within `address_window_minutes`; further
    /// attempts from it get 429 until the oldest leaves the window.
    pub max_failed_logins_per_address: u32,
    /// The sliding window of `max_failed_logins_per_address`.
    pub address_window_minutes: u32,
    /// How often an open screen-pop connection checks that its session is still live (a
    /// logout or disable in this process closes it at once; this finds expiry, and ends
    /// decided on another instance or by the command line).
    pub session_recheck_secs: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            session_idle_minutes: 30,
            session_max_hours: 12,
            max_failed_logins: 5,
            lockout_minutes: 15,
            failed_login_delay_ms: 300,
            max_failed_logins_per_address: 10,
            address_window_minutes: 15,
            session_recheck_secs: 15,
        }
    }
}
