//! The wire facade: parse, frame, validate and edit SIP messages (RFC 3261 §7, §16, §18, §20).
//!
//! The rest of `sip/` touches the wire only through this module, and this folder (with `txn`)
//! is the only place that names a `sipx_sip` type, so replacing the parser touches one folder
//! (`notes/sip-stack.md`). Everything here reads hostile input: nothing panics, an edit that
//! cannot be made returns an error and leaves the message as it was, and headers we do not
//! touch keep their exact bytes, so a forwarded message differs from what arrived only where
//! the proxy changed it.
//!
//! The parts: `framing` (TCP framing and what an unparseable message gets), `message` (reading,
//! editing and building messages), `validate` (the checks before the proxy acts), `uri`,
//! `branch` (our Via branches); fresh tags and Call-IDs are here.

pub mod auth;
pub mod branch;
mod framing;
mod message;
pub mod uri;
mod validate;

#[cfg(test)]
mod tests;

pub use framing::{error_response_for_unparseable, Frames, StreamFramer};
pub use message::{RPort, SipMessage, Via};
pub use validate::{validate_request, validate_response};

/// Largest datagram we parse; a UDP payload cannot be larger anyway.
pub const MAX_DATAGRAM_BYTES: usize = 64 * 1024;

/// Default bound on one message (head and body) read from a TCP/TLS stream.
pub const DEFAULT_STREAM_MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// The `Reason` value for CANCELs to losing branches, so phones log no missed call.
pub const REASON_COMPLETED_ELSEWHERE: &str = "SIP;cause=200;text=\"Call completed elsewhere\"";

/// Why bytes from the network did not become a usable message.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WireError {
    /// A request we cannot process but can answer: send `response` (then close a stream).
    #[error("unprocessable request: {status} {reason}")]
    BadRequest {
        /// The status we answer with (400, 413 or 513).
        status: u16,
        /// The reason phrase we answer with.
        reason: &'static str,
        /// The ready-made response, built from the headers we could recover.
        response: Box<SipMessage>,
    },
    /// A response, or a request without routable headers: drop it without a word.
    #[error("dropped: {cause}")]
    Drop {
        /// What was wrong, for a debug log line.
        cause: &'static str,
    },
}

impl WireError {
    /// The response to send back, if the bytes deserve one.
    pub fn response(&self) -> Option<&SipMessage> {
        match self {
            Self::BadRequest { response, .. } => Some(response),
            Self::Drop { .. } => None,
        }
    }
}

/// Why an edit or a read of a parsed message failed; the message is left unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// The header the edit needs is absent.
    #[error("no {0} header")]
    Missing(&'static str),
    /// The header the edit needs does not parse.
    #[error("malformed {0} header")]
    Malformed(&'static str),
    /// The value we were given would not be valid SIP (or would change framing).
    #[error("invalid {0}")]
    InvalidValue(&'static str),
    /// The value is already set and RFC 3261 forbids changing it.
    #[error("{0} is already set")]
    AlreadySet(&'static str),
    /// The edit only applies to requests.
    #[error("not a request")]
    NotARequest,
}

// ---- Small helpers shared by the parts ---------------------------------------------------

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn trim_bytes(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| !matches!(c, b' ' | b'\t'));
    let end = b.iter().rposition(|c| !matches!(c, b' ' | b'\t'));
    match (start, end) {
        (Some(s), Some(e)) => b.get(s..=e).unwrap_or_default(),
        _ => &[],
    }
}

// ---- Fresh identifiers ------------------------------------------------------------------

/// 64 random-enough bits for tags and Call-IDs: unique, not secret (digest nonces use HMAC).
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // RandomState is seeded from the OS once per thread and varies per instance.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(d.as_nanos());
    }
    h.finish()
}

/// A fresh From/To tag (RFC 3261 §19.3: at least 32 random bits; we use 64).
pub fn new_tag() -> String {
    format!("{:016x}", random_u64())
}

/// A fresh Call-ID (128 random bits, no host part so our address is not leaked).
pub fn new_call_id() -> String {
    format!("{:016x}{:016x}", random_u64(), random_u64())
}
