//! The carrier side of the trunk, as `sip-config/trunk.toml` configures it: registering our
//! number with the carrier's registrar (`[trunk.registration]`) and OPTIONS keep-alive towards
//! the trunk (`[trunk.keepalive]`). Validated once at start-up; the state machine that acts on
//! it is the proxy core's UAC (`proxy/uac.rs`).

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use serde::Deserialize;

use super::proxy::Transport;
use super::wire::uri;

/// `[trunk.registration]` as written.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationFile {
    /// The carrier's registrar: `host:port` or a `sip:` URI.
    pub registrar: String,
    /// The user we register (the AOR user; usually the DID).
    pub username: String,
    /// The digest password.
    #[serde(default)]
    pub password: Option<String>,
    /// The digest username when it differs from `username`.
    #[serde(default)]
    pub auth_username: Option<String>,
    /// Only challenges of this realm are answered.
    #[serde(default)]
    pub realm: Option<String>,
    /// The AOR domain (default: the registrar's host).
    #[serde(default)]
    pub domain: Option<String>,
    /// Registration lifetime asked for, seconds.
    #[serde(default = "default_expires")]
    pub expires: u32,
    /// `udp` or `tcp`.
    #[serde(default)]
    pub transport: TransportName,
    /// The user part of our Contact (the DID; default: `username`).
    #[serde(default)]
    pub contact_user: Option<String>,
    /// First retry after a failure, seconds (doubled each time, with jitter).
    #[serde(default = "default_retry")]
    pub retry_secs: u64,
    /// Longest wait between retries, seconds; a refusal (403/404) waits this long.
    #[serde(default = "default_retry_max")]
    pub retry_max_secs: u64,
}

impl std::fmt::Debug for RegistrationFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistrationFile")
            .field("registrar", &self.registrar)
            .field("username", &self.username)
            .field("password", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

/// `[trunk.keepalive]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeepaliveFile {
    /// Where OPTIONS go: `host:port` or `sip:` URIs (default: the registrar).
    #[serde(default)]
    pub targets: Vec<String>,
    /// Seconds between two OPTIONS.
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    /// Seconds an OPTIONS may wait for its answer (default 5, at most `interval_secs`).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// Unanswered OPTIONS in a row that mean the trunk is down.
    #[serde(default = "default_failures")]
    pub failures: u32,
    /// `udp` or `tcp`.
    #[serde(default)]
    pub transport: TransportName,
}

/// A transport as written in `trunk.toml`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportName {
    /// UDP.
    #[default]
    Udp,
    /// TCP.
    Tcp,
}

impl From<TransportName> for Transport {
    fn from(t: TransportName) -> Self {
        match t {
            TransportName::Udp => Transport::Udp,
            TransportName::Tcp => Transport::Tcp,
        }
    }
}

fn default_expires() -> u32 {
    3600
}
fn default_retry() -> u64 {
    30
}
fn default_retry_max() -> u64 {
    600
}
fn default_interval() -> u64 {
    30
}
fn default_failures() -> u32 {
    3
}

/// Registration with the carrier, validated.
#[derive(Clone)]
pub struct Registration {
    /// Where REGISTERs go.
    pub registrar: SocketAddr,
    /// The registrar's host and port as written.
    pub registrar_host: String,
    /// The Request-URI of our REGISTERs (`sip:` the domain, or the registrar).
    pub request_uri: String,
    /// The AOR domain.
    pub domain: String,
    /// The AOR user.
    pub username: String,
    /// Digest username.
    pub auth_username: String,
    /// Digest password.
    pub password: String,
    /// Only this realm's challenges are answered.
    pub realm: Option<String>,
    /// Lifetime asked for.
    pub expires: u32,
    /// UDP or TCP.
    pub transport: Transport,
    /// The user part of our Contact.
    pub contact_user: String,
    /// First retry after a failure.
    pub retry: Duration,
    /// Longest wait between retries.
    pub retry_max: Duration,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("registrar", &self.registrar)
            .field("username", &self.username)
            .field("password", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

/// OPTIONS keep-alive, validated.
#[derive(Debug, Clone)]
pub struct Keepalive {
    /// Where OPTIONS go, with the host as written (for the Request-URI).
    pub targets: Vec<(SocketAddr, String)>,
    /// Between two OPTIONS to one target.
    pub interval: Duration,
    /// How long an OPTIONS waits for its answer.
    pub timeout: Duration,
    /// Misses in a row that mean down.
    pub failures: u32,
    /// UDP or TCP.
    pub transport: Transport,
}

/// The carrier side of the trunk, validated: both parts optional.
#[derive(Debug, Clone, Default)]
pub struct CarrierSettings {
    /// `[trunk.registration]`.
    pub registration: Option<Registration>,
    /// `[trunk.keepalive]`.
    pub keepalive: Option<Keepalive>,
}

impl CarrierSettings {
    /// Whether nothing is configured.
    pub fn is_empty(&self) -> bool {
        self.registration.is_none() && self.keepalive.is_none()
    }
}

/// `host:port`, `host` or a `sip:` URI → (address, host as written).
fn resolve(key: &str, text: &str) -> Result<(SocketAddr, String), (String, String)> {
    let bad = |why: &str| (key.to_string(), format!("'{text}': {why}"));
    let t = text.trim();
    let (host, port) = if t.starts_with("sip:") || t.starts_with("sips:") {
        let u = uri::parse(t).map_err(|_| bad("not a SIP URI"))?;
        (u.host.clone(), u.port.unwrap_or(5060))
    } else {
        match t.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') || h.ends_with(']') => (
                h.to_string(),
                p.parse::<u16>().map_err(|_| bad("bad port"))?,
            ),
            _ => (t.to_string(), 5060),
        }
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.is_empty() || port == 0 {
        return Err(bad("need host:port"));
    }
    let addr = (bare, port)
        .to_socket_addrs()
        .map_err(|e| bad(&format!("cannot be resolved ({e})")))?
        .next()
        .ok_or_else(|| bad("cannot be resolved"))?;
    Ok((addr, host))
}

fn token_ok(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.!~*'()&=+$,;?/".contains(c))
}

/// Validates `[trunk.registration]` and `[trunk.keepalive]`: (key, problem) on the first error.
pub fn validate(
    registration: Option<&RegistrationFile>,
    keepalive: Option<&KeepaliveFile>,
) -> Result<CarrierSettings, (String, String)> {
    let err = |k: &str, m: &str| Err((format!("trunk.{k}"), m.to_string()));
    let registration = match registration {
        None => None,
        Some(r) => {
            let (addr, host) = resolve("trunk.registration.registrar", &r.registrar)?;
            if !token_ok(&r.username) {
                return err(
                    "registration.username",
                    "must be a SIP user (letters, digits, - _ . + …)",
                );
            }
            let Some(password) = r.password.clone().filter(|p| !p.is_empty()) else {
                return err(
                    "registration.password",
                    "missing: the carrier's digest password is required",
                );
            };
            if r.expires > 86_400 || r.expires < 2 {
                return err("registration.expires", "must be between 2 and 86400");
            }
            if r.retry_secs == 0 || r.retry_max_secs < r.retry_secs || r.retry_max_secs > 86_400 {
                return err(
                    "registration.retry_secs",
                    "need 0 < retry_secs <= retry_max_secs <= 86400",
                );
            }
            let contact_user = r.contact_user.clone().unwrap_or_else(|| r.username.clone());
            if !token_ok(&contact_user) {
                return err("registration.contact_user", "must be a SIP user");
            }
            let request_uri = match &r.domain {
                Some(d) => format!("sip:{d}"),
                None => format!("sip:{host}:{}", addr.port()),
            };
            let domain = r.domain.clone().unwrap_or_else(|| host.clone());
            if domain.is_empty() || domain.contains(|c: char| c.is_whitespace() || c == '@') {
                return err("registration.domain", "must be a host name");
            }
            Some(Registration {
                registrar: addr,
                registrar_host: format!("{host}:{}", addr.port()),
                request_uri,
                domain,
                username: r.username.clone(),
                auth_username: r
                    .auth_username
                    .clone()
                    .unwrap_or_else(|| r.username.clone()),
                password,
                realm: r.realm.clone(),
                expires: r.expires,
                transport: r.transport.into(),
                contact_user,
                retry: Duration::from_secs(r.retry_secs),
                retry_max: Duration::from_secs(r.retry_max_secs),
            })
        }
    };
    let keepalive = match keepalive {
        None => None,
        Some(k) => {
            let mut targets = Vec::new();
            for t in &k.targets {
                targets.push(resolve("trunk.keepalive.targets", t)?);
            }
            if targets.is_empty() {
                match &registration {
                    Some(r) => targets.push((r.registrar, r.registrar_host.clone())),
                    None => {
                        return err(
                            "keepalive.targets",
                            "list the trunk's host:port (there is no registrar to default to)",
                        )
                    }
                }
            }
            if !(1..=3600).contains(&k.interval_secs) {
                return err("keepalive.interval_secs", "must be between 1 and 3600");
            }
            let timeout_secs = k.timeout_secs.unwrap_or(5.min(k.interval_secs));
            if timeout_secs == 0 || timeout_secs > k.interval_secs {
                return err(
                    "keepalive.timeout_secs",
                    "must be at least 1 and at most interval_secs",
                );
            }
            if !(1..=100).contains(&k.failures) {
                return err("keepalive.failures", "must be between 1 and 100");
            }
            Some(Keepalive {
                targets,
                interval: Duration::from_secs(k.interval_secs),
                timeout: Duration::from_secs(timeout_secs),
                failures: k.failures,
                transport: k.transport.into(),
            })
        }
    };
    Ok(CarrierSettings {
        registration,
        keepalive,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(toml_text: &str) -> RegistrationFile {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn registration_without_password_is_refused_clearly() {
        let r = reg("registrar = \"127.0.0.1:5070\"\nusername = \"0120000000\"");
        let (key, msg) = validate(Some(&r), None).unwrap_err();
        assert_eq!(key, "trunk.registration.password");
        assert!(msg.contains("password"), "{msg}");
    }

    #[test]
    fn registrar_as_uri_or_host_port_and_keepalive_defaults_to_it() {
        for text in ["sip:127.0.0.1:5070", "127.0.0.1:5070"] {
            let r = reg(&format!(
                "registrar = \"{text}\"\nusername = \"0120000000\"\npassword = \"secret-pw\""
            ));
            let k: KeepaliveFile = toml::from_str("interval_secs = 10").unwrap();
            let c = validate(Some(&r), Some(&k)).unwrap();
            let r = c.registration.unwrap();
            assert_eq!(r.registrar, "127.0.0.1:5070".parse().unwrap());
            assert_eq!(r.expires, 3600);
            assert_eq!(r.contact_user, "0120000000");
            let k = c.keepalive.unwrap();
            assert_eq!(k.targets[0].0, r.registrar);
            assert_eq!(k.interval, Duration::from_secs(10));
        }
    }

    #[test]
    fn keepalive_without_target_or_registrar_is_refused() {
        let k: KeepaliveFile = toml::from_str("").unwrap();
        let (key, _) = validate(None, Some(&k)).unwrap_err();
        assert_eq!(key, "trunk.keepalive.targets");
        let k: KeepaliveFile = toml::from_str("targets = [\"127.0.0.1:0\"]").unwrap();
        assert!(validate(None, Some(&k)).is_err());
    }
}
