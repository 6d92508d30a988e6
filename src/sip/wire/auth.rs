//! The client side of SIP digest (RFC 3261 §22, RFC 8760, RFC 7616): answering a
//! `WWW-Authenticate` or `Proxy-Authenticate` challenge. MD5 and SHA-256 (and their `-sess`
//! variants), `qop=auth` with nonce count and cnonce. The carrier registration uses it, and so
//! do the test phones: one implementation.

use sipx_sip::auth::{self, Challenge, Credentials};

/// An answer to a challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestAnswer {
    /// `Authorization` or `Proxy-Authorization`.
    pub header: &'static str,
    /// The header value.
    pub value: String,
    /// The realm answered.
    pub realm: String,
    /// Whether the server said only the nonce was stale (the password is still good).
    pub stale: bool,
}

/// The answer to the first usable challenge among `challenges` (header values, in order, from
/// `Proxy-Authenticate` when `from_proxy`), restricted to `realm` when one is given; `None`
/// when no challenge is usable.
#[allow(clippy::too_many_arguments)]
pub fn answer(
    challenges: &[String],
    from_proxy: bool,
    realm: Option<&str>,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
    nc: u32,
    cnonce: &str,
) -> Option<DigestAnswer> {
    let parsed: Vec<Challenge> = challenges
        .iter()
        .filter_map(|v| Challenge::parse(v.as_bytes(), from_proxy))
        .filter(|c| realm.is_none_or(|r| r == c.realm))
        .collect();
    let first = auth::topmost_supported(parsed)?;
    let creds = Credentials::new(username, password);
    Some(DigestAnswer {
        header: if from_proxy {
            "Proxy-Authorization"
        } else {
            "Authorization"
        },
        value: auth::respond(&first, &creds, method, uri, nc, cnonce),
        realm: first.realm.clone(),
        stale: first.stale,
    })
}

/// The `Authorization` value answering the first usable `WWW-Authenticate` challenge (as a
/// phone that reads the top one does); `None` if no challenge is usable.
pub fn authorization(
    www_authenticate: &[String],
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
    nc: u32,
    cnonce: &str,
) -> Option<String> {
    answer(
        www_authenticate,
        false,
        None,
        username,
        password,
        method,
        uri,
        nc,
        cnonce,
    )
    .map(|a| a.value)
}
