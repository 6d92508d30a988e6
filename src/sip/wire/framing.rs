//! Framing (RFC 3261 §18.3): cutting a TCP stream into messages by Content-Length, and what a
//! message that did not parse gets: a 400/413/513 built from the headers it carried, or
//! nothing (responses, ACKs, unroutable requests).

use bytes::Bytes;
use sipx_sip::error::{FramingError, HeaderSyntaxError, LimitKind, ParseError};
use sipx_sip::{HeaderName, Limits};

use super::{
    find, new_tag, trim_bytes, SipMessage, WireError, DEFAULT_STREAM_MAX_MESSAGE_BYTES,
    MAX_DATAGRAM_BYTES,
};

/// Messages completed by one `StreamFramer::push`, then the fatal error if framing broke.
#[derive(Debug, Default)]
pub struct Frames {
    /// Complete messages, in stream order (kept even when a later one broke framing).
    pub messages: Vec<SipMessage>,
    /// Set once framing is lost: send its response if any, then close the connection.
    pub error: Option<WireError>,
}

/// Cuts a TCP/TLS byte stream into messages (RFC 3261 §18.3: Content-Length is mandatory).
///
/// We frame ourselves and hand each exact message to the parser, instead of using sipx's
/// `StreamParser`, because that one discards messages completed earlier in the same chunk
/// when a later one fails, and cannot tell us which request to answer with 400.
#[derive(Debug)]
pub struct StreamFramer {
    buf: Vec<u8>,
    max_message_bytes: usize,
    scanned: usize,
    keepalives: usize,
    broken: bool,
    /// Bytes moved inside the buffer to drop what was consumed: the framer's work.
    #[cfg(test)]
    moved: usize,
}

impl Default for StreamFramer {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamFramer {
    /// A framer with `DEFAULT_STREAM_MAX_MESSAGE_BYTES`.
    pub fn new() -> Self {
        Self::with_limit(DEFAULT_STREAM_MAX_MESSAGE_BYTES)
    }

    /// A framer refusing any message (head + body) above `max_message_bytes`.
    pub fn with_limit(max_message_bytes: usize) -> Self {
        Self {
            buf: Vec::new(),
            max_message_bytes: max_message_bytes.max(64),
            scanned: 0,
            keepalives: 0,
            broken: false,
            #[cfg(test)]
            moved: 0,
        }
    }

    /// Bytes held for an incomplete message; time the peer out if this stays non-zero.
    pub fn pending_bytes(&self) -> usize {
        self.buf.len()
    }

    /// CRLF pairs seen between messages since the last call (RFC 5626 keep-alive ping/pong).
    pub fn take_keepalives(&mut self) -> usize {
        std::mem::take(&mut self.keepalives)
    }

    /// Whether framing was lost; the connection must be closed.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Append received bytes; returns the messages they completed and any fatal error.
    ///
    /// What is consumed is dropped from the buffer once, at the end: dropping each CRLF pair
    /// or message as it goes would move the rest of the buffer every time (quadratic).
    pub fn push(&mut self, chunk: &[u8]) -> Frames {
        let mut out = Frames::default();
        if self.broken {
            out.error = Some(WireError::Drop {
                cause: "stream framing already lost",
            });
            return out;
        }
        self.buf.extend_from_slice(chunk);
        // Start of what is not consumed yet; `scanned` counts from here.
        let mut pos = 0;
        loop {
            let pairs = self.buf[pos..]
                .chunks_exact(2)
                .take_while(|p| *p == b"\r\n")
                .count();
            if pairs > 0 {
                pos += 2 * pairs;
                self.keepalives += pairs;
                self.scanned = 0;
            }
            let rest = &self.buf[pos..];
            let Some(head_end) = find(rest, b"\r\n\r\n", self.scanned) else {
                self.scanned = rest.len().saturating_sub(3);
                if rest.len() > self.max_message_bytes {
                    out.error = Some(self.fail_drop("header section exceeds the size limit"));
                }
                break;
            };
            let head_len = head_end + 4;
            let declared = match content_length_of(&rest[..head_end]) {
                Ok(Some(n)) => n,
                Ok(None) => {
                    let err = salvage(&rest[..head_len], 400, "Missing Content-Length");
                    out.error = Some(self.fail(err));
                    break;
                }
                Err(reason) => {
                    let err = salvage(&rest[..head_len], 400, reason);
                    out.error = Some(self.fail(err));
                    break;
                }
            };
            let total = usize::try_from(declared)
                .ok()
                .and_then(|n| n.checked_add(head_len))
                .filter(|&t| t <= self.max_message_bytes);
            let Some(total) = total else {
                let err = salvage(&rest[..head_len], 413, "Request Entity Too Large");
                out.error = Some(self.fail(err));
                break;
            };
            if rest.len() < total {
                // Keep the terminator search from rescanning a head we already framed.
                self.scanned = head_end;
                break;
            }
            let raw = Bytes::copy_from_slice(&rest[..total]);
            pos += total;
            self.scanned = 0;
            let limits = Limits {
                max_message_bytes: self.max_message_bytes,
                max_body_bytes: self.max_message_bytes,
                ..Limits::stream()
            };
            match sipx_sip::parse_datagram(raw.clone(), &limits) {
                Ok(m) => out.messages.push(SipMessage::new(m)),
                Err(e) => {
                    out.error = Some(self.fail(reject(&raw, &e)));
                    break;
                }
            }
        }
        if !self.broken && pos > 0 {
            #[cfg(test)]
            {
                self.moved += self.buf.len() - pos;
            }
            self.buf.drain(..pos);
        }
        out
    }

    fn fail(&mut self, err: WireError) -> WireError {
        self.broken = true;
        self.buf = Vec::new();
        err
    }

    fn fail_drop(&mut self, cause: &'static str) -> WireError {
        self.fail(WireError::Drop { cause })
    }
}

/// Parse a datagram-shaped message and answer 400 if it is a broken request (for `send_to`).
///
/// Returns the bytes of the error response, or `None` when the bytes parse or must be dropped.
pub fn error_response_for_unparseable(buf: &[u8]) -> Option<Vec<u8>> {
    match SipMessage::parse_datagram(buf) {
        Err(WireError::BadRequest { response, .. }) => Some(response.to_bytes().to_vec()),
        _ => None,
    }
}

// ---- Parse-failure handling ----------------------------------------------------------------

/// Map a parse failure to what the proxy does about it: answer 400/413/513, or drop.
pub(super) fn reject(buf: &[u8], err: &ParseError) -> WireError {
    let (status, reason) = match err {
        ParseError::Framing(FramingError::NoHeaderTerminator) => {
            return WireError::Drop {
                cause: "no end of header section",
            }
        }
        ParseError::HeaderSyntax {
            kind: HeaderSyntaxError::BareNewline,
            ..
        } => {
            // Guessing line ends is how a body becomes a second request; do not answer.
            return WireError::Drop {
                cause: "bare CR or LF",
            };
        }
        ParseError::Framing(FramingError::BodyTruncated) => (400, "Content-Length Exceeds Body"),
        ParseError::Framing(FramingError::ContentLengthMalformed) => (400, "Bad Content-Length"),
        ParseError::Framing(FramingError::ContentLengthRepeated) => {
            (400, "Duplicate Content-Length")
        }
        ParseError::Framing(FramingError::ContentLengthRequired) => (400, "Missing Content-Length"),
        ParseError::Limit {
            limit: LimitKind::BodyBytes,
            ..
        } => (413, "Request Entity Too Large"),
        ParseError::Limit { .. } => (513, "Message Too Large"),
        ParseError::StartLine(_) => (400, "Bad Request-Line"),
        ParseError::HeaderSyntax { .. } => (400, "Bad Header Field"),
        _ => (400, "Bad Request"),
    };
    salvage(buf, status, reason)
}

/// Rebuild just enough of a broken request to answer it: its Via, From, To, Call-ID, CSeq.
///
/// A response is never answered (§18.1.2), so anything starting `SIP/` is dropped, as is a
/// request whose Via, From, To, Call-ID or CSeq cannot be recovered.
pub(super) fn salvage(buf: &[u8], status: u16, reason: &'static str) -> WireError {
    let scan = buf
        .get(..buf.len().min(MAX_DATAGRAM_BYTES))
        .unwrap_or_default();
    let Some(head_end) = find(scan, b"\r\n\r\n", 0) else {
        return WireError::Drop {
            cause: "no end of header section",
        };
    };
    let head = scan.get(..head_end).unwrap_or_default();
    let first_line_end = find(head, b"\r\n", 0).unwrap_or(head.len());
    let start = head.get(..first_line_end).unwrap_or_default();
    if start.len() >= 4
        && start
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
    {
        return WireError::Drop {
            cause: "malformed response",
        };
    }
    // An ACK is never answered (RFC 3261 §17.2.1), not even a broken one.
    if start.starts_with(b"ACK ") {
        return WireError::Drop {
            cause: "malformed ACK",
        };
    }
    let mut rebuilt = b"SALVAGE sip:invalid.invalid SIP/2.0".to_vec();
    for line in logical_lines(head.get(first_line_end..).unwrap_or_default()) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = trim_bytes(line.get(..colon).unwrap_or_default());
        let name = HeaderName::parse(&Bytes::copy_from_slice(name));
        if matches!(
            name,
            HeaderName::Via
                | HeaderName::From
                | HeaderName::To
                | HeaderName::CallId
                | HeaderName::CSeq
        ) {
            rebuilt.extend_from_slice(b"\r\n");
            rebuilt.extend_from_slice(line);
        }
    }
    rebuilt.extend_from_slice(b"\r\n\r\n");
    let Ok(partial) = sipx_sip::parse_datagram(Bytes::from(rebuilt), &Limits::datagram()) else {
        return WireError::Drop {
            cause: "malformed request without recoverable headers",
        };
    };
    let partial = SipMessage::new(partial);
    let recoverable = partial.top_via().is_some()
        && partial.call_id().is_some()
        && [HeaderName::From, HeaderName::To, HeaderName::CSeq]
            .iter()
            .all(|n| partial.headers().get(n).is_some());
    if !recoverable {
        return WireError::Drop {
            cause: "malformed request without recoverable headers",
        };
    }
    let tag = new_tag();
    let response = SipMessage::response_to(&partial, status, reason, Some(&tag));
    WireError::BadRequest {
        status,
        reason,
        response: Box::new(response),
    }
}

/// Header lines of a head (after the start line), continuation lines joined to their field.
fn logical_lines(after_start: &[u8]) -> Vec<&[u8]> {
    let mut lines: Vec<&[u8]> = Vec::new();
    let mut start: Option<usize> = None;
    let mut i = 0usize;
    // `after_start` begins with the CRLF that ends the start line.
    while let Some(pos) = find(after_start, b"\r\n", i) {
        let next = pos + 2;
        let continues = matches!(after_start.get(next), Some(b' ' | b'\t'));
        if !continues {
            if let Some(s) = start.take() {
                if let Some(line) = after_start.get(s..pos) {
                    lines.push(line);
                }
            }
            start = Some(next);
        }
        i = next;
    }
    if let Some(s) = start {
        if let Some(line) = after_start.get(s..) {
            if !line.is_empty() {
                lines.push(line);
            }
        }
    }
    lines
}

/// The Content-Length of a head (without its final CRLFCRLF): `Ok(None)` when absent.
fn content_length_of(head: &[u8]) -> Result<Option<u64>, &'static str> {
    let first_line_end = find(head, b"\r\n", 0).unwrap_or(head.len());
    let mut found = None;
    for line in logical_lines(head.get(first_line_end..).unwrap_or_default()) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = trim_bytes(line.get(..colon).unwrap_or_default());
        if !(name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l")) {
            continue;
        }
        if found.is_some() {
            return Err("Duplicate Content-Length");
        }
        let value: Vec<u8> = line
            .get(colon + 1..)
            .unwrap_or_default()
            .iter()
            .copied()
            .filter(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
            .collect();
        if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
            return Err("Bad Content-Length");
        }
        let mut n: u64 = 0;
        for b in value {
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(b - b'0')))
                .ok_or("Bad Content-Length")?;
        }
        found = Some(n);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGISTER: &str = "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5070;branch=z9hG4bK1\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:a@127.0.0.1>\r\nCall-ID: k\r\nCSeq: 1 REGISTER\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn ten_thousand_crlf_keep_alives_are_framed_in_linear_work() {
        let mut f = StreamFramer::new();
        let mut stream = b"\r\n".repeat(10_000);
        stream.extend_from_slice(REGISTER.as_bytes());
        stream.extend_from_slice(&b"\r\n".repeat(10_000));
        stream.extend_from_slice(REGISTER.as_bytes());
        let frames = f.push(&stream);
        assert!(frames.error.is_none());
        assert_eq!(frames.messages.len(), 2);
        assert_eq!(f.take_keepalives(), 20_000);
        assert_eq!(f.pending_bytes(), 0);
        // Each byte is moved at most once (today: once per CRLF pair before it).
        assert!(
            f.moved <= stream.len(),
            "{} bytes moved for {} pushed",
            f.moved,
            stream.len()
        );
        // The same, a pair at a time.
        let mut f = StreamFramer::new();
        for _ in 0..10_000 {
            assert!(f.push(b"\r\n").messages.is_empty());
        }
        assert_eq!(f.push(REGISTER.as_bytes()).messages.len(), 1);
        assert_eq!(f.take_keepalives(), 10_000);
        assert_eq!(f.pending_bytes(), 0);
    }
}
