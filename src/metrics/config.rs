//! `[metrics]` of `madoguchi.toml`: who may read `/metrics`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::Deserialize;

/// `[metrics]`: a scraper is admitted when its address is in `allow`, or when it sends
/// `Authorization: Bearer <token>` with the configured token. Others get 403 (401 when a
/// token is configured, so the scraper knows it may present one).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Networks whose clients may read `/metrics` without a token; replaces the default
    /// (loopback only: `127.0.0.0/8` and `::1/128`). `[]` admits by token only.
    pub allow: Vec<IpNet>,
    /// A bearer token that admits a scraper from any address; unset = none.
    pub token: Option<String>,
}

/// The shortest token accepted: a guessable one would open the endpoint to anyone.
pub const TOKEN_MIN_CHARS: usize = 16;

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            allow: vec![
                IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(127, 0, 0, 0), 8)),
                IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::LOCALHOST, 128)),
            ],
            token: None,
        }
    }
}

impl MetricsConfig {
    /// Checks the section; `Err((key, problem))` names the first bad key.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if let Some(t) = &self.token {
            if t.chars().count() < TOKEN_MIN_CHARS {
                return Err((
                    "metrics.token",
                    format!("must be at least {TOKEN_MIN_CHARS} characters"),
                ));
            }
            if !t.chars().all(|c| c.is_ascii_graphic()) {
                return Err((
                    "metrics.token",
                    "must be printable ASCII without spaces (it travels in an HTTP header)".into(),
                ));
            }
        }
        Ok(())
    }

    /// Whether a client at `ip` is admitted by address.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.allow.iter().any(|net| net.contains(&ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only_by_default_and_a_short_token_is_refused() {
        let c = MetricsConfig::default();
        assert!(c.allows("127.0.0.1".parse().unwrap()));
        assert!(c.allows("127.3.2.1".parse().unwrap()));
        assert!(c.allows("::1".parse().unwrap()));
        assert!(c.allows("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!c.allows("10.1.2.3".parse().unwrap()));
        assert!(!c.allows("::2".parse().unwrap()));
        let short = MetricsConfig {
            token: Some("short".into()),
            ..MetricsConfig::default()
        };
        assert_eq!(short.validate().unwrap_err().0, "metrics.token");
        let spaced = MetricsConfig {
            token: Some("a token with spaces inside".into()),
            ..MetricsConfig::default()
        };
        assert!(spaced.validate().is_err());
    }
}
