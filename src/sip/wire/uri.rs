//! URIs (RFC 3261 §19.1, RFC 3966): SIP, SIPS, tel and unknown schemes, decoded into parts
//! and written back.

use std::fmt;
use std::net::IpAddr;

use bytes::Bytes;
use sipx_sip::headers as sh;

use super::{lossy, EditError};

/// A URI scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    /// `sip:`
    Sip,
    /// `sips:`
    Sips,
    /// `tel:` (RFC 3966)
    Tel,
    /// Anything else (a proxy answers 416 to it in a Request-URI).
    Other(String),
}

/// A decoded URI; `to_string()` writes it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    /// The scheme.
    pub scheme: Scheme,
    /// User part, still percent-encoded; for `tel:` the subscriber number.
    pub user: Option<String>,
    /// Password (RFC 3261 §19.1.1 discourages it, but it parses).
    pub password: Option<String>,
    /// Host; an IPv6 reference keeps its brackets. Empty for `tel:` and unknown schemes.
    pub host: String,
    /// Port, if stated.
    pub port: Option<u16>,
    /// URI parameters (`;name[=value]`) in order, values still percent-encoded.
    pub params: Vec<(String, Option<String>)>,
    /// URI headers (`?name=value&…`) in order.
    pub headers: Vec<(String, String)>,
    /// Everything after `scheme:` for unknown schemes.
    pub opaque: Option<String>,
}

/// Parse a bare URI (no `<>`), e.g. `sip:0134001234@[2001:db8::1]:5070;transport=tcp`.
pub fn parse(text: &str) -> Result<SipUri, EditError> {
    let u = sipx_sip::Uri::parse(Bytes::copy_from_slice(text.trim().as_bytes()))
        .map_err(|_| EditError::InvalidValue("URI"))?;
    Ok(SipUri::from_sipx(&u))
}

/// The URI of a name-addr or addr-spec (`"Name" <sip:u@h;x=y>;tag=…`).
pub fn name_addr_uri(value: &str) -> Option<SipUri> {
    sh::Address::parse(value.as_bytes(), "Address")
        .ok()
        .map(|a| SipUri::from_sipx(&a.uri))
}

/// The user part of a name-addr, still percent-encoded (the tel number for `tel:`).
pub fn user_part(value: &str) -> Option<String> {
    name_addr_uri(value).and_then(|u| u.user)
}

/// The display name of a name-addr, unquoted and unescaped.
pub fn display_name(value: &str) -> Option<String> {
    sh::Address::parse(value.as_bytes(), "Address")
        .ok()
        .and_then(|a| a.display_name)
        .map(|d| lossy(&d))
}

/// Decode `%XX` escapes (invalid escapes are kept as written).
pub fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let hex = |x: Option<&u8>| x.and_then(|x| (*x as char).to_digit(16));
        if c == b'%' {
            if let (Some(h), Some(l)) = (hex(b.get(i + 1)), hex(b.get(i + 2))) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

impl SipUri {
    pub(super) fn from_sipx(u: &sipx_sip::Uri) -> SipUri {
        let scheme = match u.scheme() {
            sipx_sip::Scheme::Sip => Scheme::Sip,
            sipx_sip::Scheme::Sips => Scheme::Sips,
            sipx_sip::Scheme::Tel => Scheme::Tel,
            other => Scheme::Other(lossy(other.as_bytes()).to_ascii_lowercase()),
        };
        let mut out = SipUri {
            scheme,
            user: None,
            password: None,
            host: String::new(),
            port: None,
            params: Vec::new(),
            headers: Vec::new(),
            opaque: None,
        };
        match out.scheme {
            Scheme::Sip | Scheme::Sips => {
                out.user = u.user().map(lossy);
                out.password = u.password().map(lossy);
                out.host = u.host().map(|h| h.to_string()).unwrap_or_default();
                out.port = u.port();
                if let Some(p) = u.params() {
                    out.params = p
                        .iter()
                        .map(|p| (lossy(p.name()), p.value().map(lossy)))
                        .collect();
                }
                if let Some(h) = u.headers() {
                    out.headers = h
                        .iter()
                        .map(|p| (lossy(p.name()), p.value().map(lossy).unwrap_or_default()))
                        .collect();
                }
            }
            Scheme::Tel => {
                let body = lossy(u.opaque().unwrap_or_default());
                let mut parts = body.split(';');
                out.user = parts.next().map(str::to_owned);
                out.params = parts
                    .filter(|p| !p.is_empty())
                    .map(|p| match p.split_once('=') {
                        Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
                        None => (p.to_owned(), None),
                    })
                    .collect();
            }
            Scheme::Other(_) => out.opaque = u.opaque().map(lossy),
        }
        out
    }

    /// A parameter: `None` if absent, `Some(None)` for a flag like `lr`.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    /// Whether a parameter is present (with or without value).
    pub fn has_param(&self, name: &str) -> bool {
        self.param(name).is_some()
    }

    /// Set (or replace) a parameter.
    pub fn set_param(&mut self, name: &str, value: Option<&str>) {
        let value = value.map(str::to_owned);
        match self
            .params
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(slot) => slot.1 = value,
            None => self.params.push((name.to_owned(), value)),
        }
    }

    /// The `transport` parameter, lower-cased.
    pub fn transport(&self) -> Option<String> {
        self.param("transport")
            .flatten()
            .map(|t| t.to_ascii_lowercase())
    }

    /// Whether this is a loose-routing URI (`;lr`, RFC 3261 §16.4).
    pub fn is_loose_route(&self) -> bool {
        self.has_param("lr")
    }

    /// The user part with `%XX` decoded.
    pub fn user_decoded(&self) -> Option<Vec<u8>> {
        self.user.as_deref().map(percent_decode)
    }

    /// The host as an IP address, if it is one.
    pub fn host_ip(&self) -> Option<IpAddr> {
        self.host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()
    }
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let write_params = |f: &mut fmt::Formatter<'_>| -> fmt::Result {
            for (n, v) in &self.params {
                match v {
                    Some(v) => write!(f, ";{n}={v}")?,
                    None => write!(f, ";{n}")?,
                }
            }
            Ok(())
        };
        match &self.scheme {
            Scheme::Sip | Scheme::Sips => {
                f.write_str(if self.scheme == Scheme::Sip {
                    "sip:"
                } else {
                    "sips:"
                })?;
                if let Some(u) = &self.user {
                    f.write_str(u)?;
                    if let Some(p) = &self.password {
                        write!(f, ":{p}")?;
                    }
                    f.write_str("@")?;
                }
                f.write_str(&self.host)?;
                if let Some(p) = self.port {
                    write!(f, ":{p}")?;
                }
                write_params(f)?;
                for (i, (n, v)) in self.headers.iter().enumerate() {
                    write!(f, "{}{n}={v}", if i == 0 { '?' } else { '&' })?;
                }
                Ok(())
            }
            Scheme::Tel => {
                write!(f, "tel:{}", self.user.as_deref().unwrap_or_default())?;
                write_params(f)
            }
            Scheme::Other(s) => write!(f, "{s}:{}", self.opaque.as_deref().unwrap_or_default()),
        }
    }
}
