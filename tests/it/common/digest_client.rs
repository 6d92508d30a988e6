//! A digest client (RFC 8760 / RFC 7616 answers to a challenge), for the test phones.

/// The `Authorization` value answering the first usable challenge among
/// `www_authenticate` (in order, as a phone that reads the top one does); `None` if no
/// challenge is usable.
pub fn authorization(
    www_authenticate: &[String],
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
    nc: u32,
    cnonce: &str,
) -> Option<String> {
    let challenges: Vec<_> = www_authenticate
        .iter()
        .filter_map(|v| sipx_sip::auth::Challenge::parse(v.as_bytes(), false))
        .collect();
    let first = sipx_sip::auth::topmost_supported(challenges)?;
    let creds = sipx_sip::auth::Credentials::new(username, password);
    Some(sipx_sip::auth::respond(
        &first, &creds, method, uri, nc, cnonce,
    ))
}
