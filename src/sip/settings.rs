//! The SIP adapter's settings: `[sip]` of `madoguchi.toml`, and the trunk and phone files in
//! `sip-config/` (`trunk.toml`, `phones.toml`). Validated once at start-up.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

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

/// `[sip]` of `madoguchi.toml` beyond the address.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipTimersFile {
    /// RFC 3261 T1 (RTT estimate), milliseconds.
    pub t1_ms: u64,
    /// RFC 3261 T2 (longest retransmit interval), milliseconds.
    pub t2_ms: u64,
    /// RFC 3261 T4 (longest a message stays in the network), milliseconds.
    pub t4_ms: u64,
}

impl Default for SipTimersFile {
    fn default() -> Self {
        Self {
            t1_ms: 500,
            t2_ms: 4000,
            t4_ms: 5000,
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
}

impl SipSettings {
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
    timers: &SipTimersFile,
) -> Result<SipSettings, (String, String)> {
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
    Ok(SipSettings {
        trunk_nets,
        line_numbers,
        reject: trunk.trunk.reject,
        registrar: phones.registrar.clone(),
        phones: phones.phone.clone(),
        t1: Duration::from_millis(timers.t1_ms),
        t2: Duration::from_millis(timers.t2_ms),
        t4: Duration::from_millis(timers.t4_ms),
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
