//! `[sharing]` of `madoguchi.toml`: how the weekly share reaches the city (SMTP), owned by
//! the sharing domain; `config` only reads and composes it.

use serde::{Deserialize, Serialize};

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (port 587); refused if the server cannot.
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS, port 465).
    Tls,
    /// No encryption: only for a relay on the same host or a test sink on loopback.
    None,
}

/// `[sharing]`: without `smtp_host` the approved archive and password are downloaded
/// instead of mailed.
#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SharingConfig {
    /// The SMTP server (relay) to send through; unset = no mail, downloads instead.
    pub smtp_host: Option<String>,
    /// Its port (default 587 for STARTTLS, 465 for TLS, 25 for none).
    pub smtp_port: Option<u16>,
    /// `starttls` (default), `tls` or `none`.
    pub smtp_tls: SmtpTls,
    /// The sender address of both mails.
    pub from: Option<String>,
    /// SMTP AUTH user name, when the relay wants one.
    pub smtp_username: Option<String>,
    /// SMTP AUTH password.
    pub smtp_password: Option<String>,
    /// Seconds to wait for the SMTP server before giving up on a send (default 30).
    pub smtp_timeout_secs: Option<u64>,
}

impl SharingConfig {
    /// Whether the shares go out by mail.
    pub fn smtp_enabled(&self) -> bool {
        self.smtp_host.is_some()
    }

    /// The port in use.
    pub fn port(&self) -> u16 {
        self.smtp_port.unwrap_or(match self.smtp_tls {
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        })
    }

    /// Checks the section; `Err((key, problem))` names the first bad key.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if let Some(h) = &self.smtp_host {
            if h.trim().is_empty() || h.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(("sharing.smtp_host", format!("'{h}' is not a host name")));
            }
            match &self.from {
                None => {
                    return Err((
                        "sharing.from",
                        "is required when sharing.smtp_host is set".into(),
                    ))
                }
                Some(f) if f.parse::<lettre::Address>().is_err() => {
                    return Err(("sharing.from", format!("'{f}' is not a mail address")))
                }
                Some(_) => {}
            }
        }
        if self.smtp_port == Some(0) {
            return Err(("sharing.smtp_port", "must be between 1 and 65535".into()));
        }
        if self.smtp_username.is_some() != self.smtp_password.is_some() {
            return Err((
                "sharing.smtp_username",
                "smtp_username and smtp_password go together".into(),
            ));
        }
        if matches!(self.smtp_timeout_secs, Some(t) if !(1..=600).contains(&t)) {
            return Err((
                "sharing.smtp_timeout_secs",
                "must be between 1 and 600".into(),
            ));
        }
        Ok(())
    }
}
