//! The SIP adapter's settings: `[sip]` of `madoguchi.toml`, and the trunk and phone files in
//! `sip-config/` (`trunk.toml`, `phones.toml`). Validated once at start-up.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::carrier::{self, CarrierSettings, KeepaliveFile, RegistrationFile};

/// What the adapter does with a request it will not serve from an address that is not ours
/// to serve (an INVITE from outside the trunk, a scanner's OPTIONS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RejectMode {
    /// Answer `403 Forbidden`.
    #[default]
    #[serde(rename = "403")]
    Forbidden,
    /// Say nothing at all.
    Drop,
}

/// `sip-config/trunk.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkFile {
    /// The carrier's trunk.
    pub trunk: TrunkSettings,
}

/// `[trunk]`: who the carrier is and which numbers are our line.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkSettings {
    /// The carrier's addresses: IPs or CIDRs (`203.0.113.10`, `203.0.113.0/28`).
    pub addresses: Vec<String>,
    /// Numbers that mean "our line" (the 0120 number and what the carrier may deliver instead).
    pub line_numbers: Vec<String>,
    /// What a non-trunk INVITE gets: `"403"` (default) or `"drop"`.
    #[serde(default)]
    pub reject: RejectMode,
    /// `[trunk.registration]`: register our number with the carrier (off when absent).
    #[serde(default)]
    pub registration: Option<RegistrationFile>,
    /// `[trunk.keepalive]`: OPTIONS towards the trunk (off when absent).
    #[serde(default)]
    pub keepalive: Option<KeepaliveFile>,
}

/// `sip-config/phones.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhonesFile {
    /// Registrar policy.
    #[serde(default)]
    pub registrar: RegistrarSettings,
    /// The operators' phones.
    #[serde(default)]
    pub phone: Vec<PhoneSettings>,
}

/// `[registrar]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrarSettings {
    /// Digest realm.
    pub realm: String,
    /// Shortest registration accepted (`423` below it).
    pub min_expires: u32,
    /// Longest registration granted.
    pub max_expires: u32,
    /// Granted when the phone asks for none.
    pub default_expires: u32,
    /// How long a nonce is good for before `stale=true`.
    pub nonce_lifetime_secs: u64,
}

impl Default for RegistrarSettings {
    fn default() -> Self {
        Self {
            realm: "madoguchi".into(),
            min_expires: 60,
            max_expires: 3600,
            default_expires: 600,
            nonce_lifetime_secs: 300,
        }
    }
}

/// `[[phone]]`: one operator phone.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhoneSettings {
    /// SIP username (the AOR user and the digest username).
    pub username: String,
    /// Digest password.
    pub password: String,
    /// Digest algorithms offered to this phone, strongest first (`SHA-256`, `MD5`).
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// The madoguchi operator account using this phone.
    #[serde(default)]
    pub operator: Option<String>,
}

fn default_algorithms() -> Vec<String> {
    vec!["SHA-256".into(), "MD5".into()]
}

/// `[sip]` of `madoguchi.toml` beyond the addresses: the RFC 3261 timers and the limits.
#[derive(Debug, Clone, Default)]
pub struct SipTuning {
    /// T1, T2, T4.
    pub timers: SipTimers,
    /// What one peer, or all of them together, may hold of the adapter.
    pub limits: SipLimits,
}

/// The RFC 3261 timer constants as configured.
#[derive(Debug, Clone)]
pub struct SipTimers {
    /// RFC 3261 T1 (RTT estimate), milliseconds.
    pub t1_ms: u64,
    /// RFC 3261 T2 (longest retransmit interval), milliseconds.
    pub t2_ms: u64,
    /// RFC 3261 T4 (longest a message stays in the network), milliseconds.
    pub t4_ms: u64,
}

impl Default for SipTimers {
    fn default() -> Self {
        Self {
            t1_ms: 500,
            t2_ms: 4000,
            t4_ms: 5000,
        }
    }
}

/// The limits that keep a flood, a slow peer or a password guesser from exhausting the
/// adapter or locking others out (`[sip]` keys of the same names; see
/// `madoguchi.example.toml`). Shown by the status API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SipLimits {
    /// TCP connections one IP address may hold at once (the global cap is
    /// `max_tcp_connections`).
    pub max_tcp_connections_per_address: usize,
    /// A TCP connection with no complete message and no keep-alive for this long is closed.
    pub tcp_idle_timeout_secs: u64,
    /// A message must arrive whole within this long of its first byte.
    pub tcp_message_timeout_secs: u64,
    /// Bytes queued for one TCP connection that is not reading; beyond them it is closed.
    pub tcp_write_queue_bytes: usize,
    /// Server transactions held at once; sources outside the trunk may fill half of them.
    pub max_server_transactions: usize,
    /// Messages per second one source address outside the trunk may send (bursts of twice
    /// that); over UDP the rest are dropped unanswered, over TCP they are read no faster.
    pub source_messages_per_sec: u32,
    /// Messages per second one trunk address may send (bursts of twice that); beyond it
    /// requests get 503 with Retry-After.
    pub trunk_messages_per_sec: u32,
    /// Failed digest attempts from one source address within the window that lock it out.
    pub register_max_failures: u32,
    /// Failed digest attempts for one phone (from anywhere) within the window that lock the
    /// phone out, except from addresses it is registered from.
    pub register_max_failures_per_user: u32,
    /// The window the failures are counted in, seconds.
    pub register_failure_window_secs: u64,
    /// How long a lock-out lasts (every REGISTER gets 403), seconds.
    pub register_lockout_secs: u64,
}

impl Default for SipLimits {
    fn default() -> Self {
        Self {
            max_tcp_connections_per_address: 64,
            tcp_idle_timeout_secs: 600,
            tcp_message_timeout_secs: 30,
            tcp_write_queue_bytes: 256 * 1024,
            max_server_transactions: 65_536,
            source_messages_per_sec: 50,
            trunk_messages_per_sec: 20_000,
            register_max_failures: 10,
            register_max_failures_per_user: 30,
            register_failure_window_secs: 600,
            register_lockout_secs: 900,
        }
    }
}

impl SipLimits {
    /// The first limit out of its range: (key, problem).
    pub fn check(&self) -> Result<(), (String, String)> {
        let l = self;
        let checks: [(&str, bool, &str); 11] = [
            (
                "max_tcp_connections_per_address",
                (1..=65_536).contains(&l.max_tcp_connections_per_address),
                "must be between 1 and 65536",
            ),
            (
                "tcp_idle_timeout_secs",
                (1..=86_400).contains(&l.tcp_idle_timeout_secs),
                "must be between 1 and 86400",
            ),
            (
                "tcp_message_timeout_secs",
                (1..=600).contains(&l.tcp_message_timeout_secs),
                "must be between 1 and 600",
            ),
            (
                "tcp_write_queue_bytes",
                (4096..=64 * 1024 * 1024).contains(&l.tcp_write_queue_bytes),
                "must be between 4096 and 67108864",
            ),
            (
                "max_server_transactions",
                (16..=1_000_000).contains(&l.max_server_transactions),
                "must be between 16 and 1000000",
            ),
            (
                "source_messages_per_sec",
                (1..=1_000_000).contains(&l.source_messages_per_sec),
                "must be between 1 and 1000000",
            ),
            (
                "trunk_messages_per_sec",
                (1..=1_000_000).contains(&l.trunk_messages_per_sec),
                "must be between 1 and 1000000",
            ),
            (
                "register_max_failures",
                (1..=10_000).contains(&l.register_max_failures),
                "must be between 1 and 10000",
            ),
            (
                "register_max_failures_per_user",
                (1..=10_000).contains(&l.register_max_failures_per_user),
                "must be between 1 and 10000",
            ),
            (
                "register_failure_window_secs",
                (1..=86_400).contains(&l.register_failure_window_secs),
                "must be between 1 and 86400",
            ),
            (
                "register_lockout_secs",
                (1..=86_400).contains(&l.register_lockout_secs),
                "must be between 1 and 86400",
            ),
        ];
        match checks.iter().find(|(_, ok, _)| !ok) {
            Some((key, _, problem)) => Err((format!("sip.{key}"), (*problem).to_string())),
            None => Ok(()),
        }
    }
}

/// Everything the SIP adapter runs on, validated.
#[derive(Debug, Clone)]
pub struct SipSettings {
    /// Carrier networks.
    pub trunk_nets: Vec<IpNet>,
    /// Our line's numbers, digits only.
    pub line_numbers: Vec<String>,
    /// Reply to non-trunk INVITEs.
    pub reject: RejectMode,
    /// Registrar policy.
    pub registrar: RegistrarSettings,
    /// Operator phones.
    pub phones: Vec<PhoneSettings>,
    /// T1.
    pub t1: Duration,
    /// T2.
    pub t2: Duration,
    /// T4.
    pub t4: Duration,
    /// Limits against floods, slow peers and password guessing.
    pub limits: SipLimits,
    /// Registration with the carrier and OPTIONS keep-alive (both off by default).
    pub carrier: CarrierSettings,
}

/// The passwords the demo `sip-config/phones.toml` ships with: public, so no phone may use
/// one (or one made the same way) where the adapter is reachable from a network.
const SHIPPED_DEMO_PASSWORDS: &[&str] = &["demo-password-op1", "demo-password-op2"];

impl SipSettings {
    /// The first phone whose password is a shipped demo one.
    pub fn phone_with_demo_password(&self) -> Option<&str> {
        self.phones
            .iter()
            .find(|p| {
                SHIPPED_DEMO_PASSWORDS.contains(&p.password.as_str())
                    || p.password.starts_with("demo-password")
            })
            .map(|p| p.username.as_str())
    }

    /// Whether `ip` belongs to the carrier.
    pub fn is_trunk(&self, ip: IpAddr) -> bool {
        self.trunk_nets.iter().any(|n| n.contains(&ip))
    }
}

/// Keeps only the digits of a configured or dialled number (`0120-123-456` → `0120123456`),
/// turning `+81` into the national `0` so both forms match.
pub fn line_digits(s: &str) -> String {
    let d: String = s.chars().filter(|c| c.is_ascii_digit()).collect();
    match d.strip_prefix("81") {
        Some(rest) if s.trim_start().starts_with('+') => format!("0{rest}"),
        _ => d,
    }
}

/// Problems found in the SIP settings: (key, problem).
pub fn validate(
    trunk: &TrunkFile,
    phones: &PhonesFile,
    tuning: &SipTuning,
) -> Result<SipSettings, (String, String)> {
    let timers = &tuning.timers;
    let mut trunk_nets = Vec::new();
    for a in &trunk.trunk.addresses {
        let net = a
            .parse::<IpNet>()
            .or_else(|_| a.parse::<IpAddr>().map(IpNet::from))
            .map_err(|_| {
                (
                    "trunk.addresses".to_string(),
                    format!("'{a}' is not an IP address or CIDR"),
                )
            })?;
        trunk_nets.push(net);
    }
    if trunk_nets.is_empty() {
        return Err((
            "trunk.addresses".into(),
            "must list at least one carrier address".into(),
        ));
    }
    let line_numbers: Vec<String> = trunk
        .trunk
        .line_numbers
        .iter()
        .map(|n| line_digits(n))
        .collect();
    if let Some((i, _)) = line_numbers.iter().enumerate().find(|(_, n)| n.len() < 3) {
        return Err((
            "trunk.line_numbers".into(),
            format!("'{}' is not a phone number", trunk.trunk.line_numbers[i]),
        ));
    }
    if line_numbers.is_empty() {
        return Err((
            "trunk.line_numbers".into(),
            "must list at least one number".into(),
        ));
    }
    let r = &phones.registrar;
    if r.min_expires == 0
        || r.min_expires > r.max_expires
        || !(r.min_expires..=r.max_expires).contains(&r.default_expires)
    {
        return Err((
            "registrar".into(),
            "need 0 < min_expires <= default_expires <= max_expires".into(),
        ));
    }
    if r.nonce_lifetime_secs < 10 {
        return Err((
            "registrar.nonce_lifetime_secs".into(),
            "must be at least 10".into(),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for p in &phones.phone {
        let ok = !p.username.is_empty()
            && p.username
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c));
        if !ok {
            return Err((
                "phone.username".into(),
                format!("'{}' must be letters, digits or . _ - +", p.username),
            ));
        }
        if !seen.insert(p.username.clone()) {
            return Err((
                "phone.username".into(),
                format!("'{}' is listed twice", p.username),
            ));
        }
        if p.password.len() < 8 {
            return Err((
                "phone.password".into(),
                format!("phone '{}': at least 8 characters", p.username),
            ));
        }
        if p.algorithms.is_empty() {
            return Err((
                "phone.algorithms".into(),
                format!("phone '{}': list at least one", p.username),
            ));
        }
        for a in &p.algorithms {
            if !matches!(
                a.to_ascii_uppercase().as_str(),
                "MD5" | "SHA-256" | "MD5-SESS" | "SHA-256-SESS"
            ) {
                return Err((
                    "phone.algorithms".into(),
                    format!("phone '{}': unknown algorithm '{a}'", p.username),
                ));
            }
        }
    }
    if timers.t1_ms == 0 || timers.t2_ms < timers.t1_ms || timers.t4_ms == 0 {
        return Err((
            "sip.t1_ms".into(),
            "need 0 < t1_ms <= t2_ms and t4_ms > 0".into(),
        ));
    }
    tuning.limits.check()?;
    let carrier = carrier::validate(
        trunk.trunk.registration.as_ref(),
        trunk.trunk.keepalive.as_ref(),
    )?;
    Ok(SipSettings {
        trunk_nets,
        line_numbers,
        reject: trunk.trunk.reject,
        registrar: phones.registrar.clone(),
        phones: phones.phone.clone(),
        t1: Duration::from_millis(timers.t1_ms),
        t2: Duration::from_millis(timers.t2_ms),
        t4: Duration::from_millis(timers.t4_ms),
        limits: tuning.limits.clone(),
        carrier,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_numbers_match_in_any_notation() {
        assert_eq!(line_digits("0120-123-456"), "0120123456");
        assert_eq!(line_digits("+81120123456"), "0120123456");
        assert_eq!(line_digits("81120123456"), "81120123456");
    }
}
