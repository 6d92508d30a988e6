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
    /// Extra delay per consecutive failure before a failed login is answered.
    pub failed_login_delay_ms: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            session_idle_minutes: 30,
            session_max_hours: 12,
            max_failed_logins: 5,
            lockout_minutes: 15,
            failed_login_delay_ms: 300,
        }
    }
}
