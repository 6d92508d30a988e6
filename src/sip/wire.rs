//! The wire facade: parse, frame, validate and edit SIP messages (RFC 3261 §7, §16, §18, §20).
//!
//! The rest of `sip/` touches the wire only through this module, and this is the only module
//! that names a `sipx_sip` type, so replacing the parser touches one file
//! (`notes/sip-stack.md`). Everything here reads hostile input: nothing panics, an edit that
//! cannot be made returns an error and leaves the message as it was, and headers we do not
//! touch keep their exact bytes, so a forwarded message differs from what arrived only where
//! the proxy changed it.

use std::net::IpAddr;

use bytes::Bytes;
use sipx_sip::error::{FramingError, HeaderSyntaxError, LimitKind, ParseError};
use sipx_sip::headers as sh;
use sipx_sip::{
    Header, HeaderName, Headers, Limits, Message, Method, Request, Response, StatusCode,
};

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

/// One SIP request or response, as parsed or as we built it.
#[derive(Debug, Clone)]
pub struct SipMessage(Message);

/// A `Via` hop, decoded (RFC 3261 §20.42, RFC 3581).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// Transport token as sent (`UDP`, `TCP`, `TLS`, or anything else).
    pub transport: String,
    /// Sent-by host; an IPv6 address keeps its brackets.
    pub host: String,
    /// Sent-by port, if stated.
    pub port: Option<u16>,
    /// The `branch` parameter (transaction id), if any; RFC 2543 peers send none.
    pub branch: Option<String>,
    /// The `received` parameter, if any.
    pub received: Option<String>,
    /// The `rport` parameter (RFC 3581).
    pub rport: RPort,
    /// The `maddr` parameter, if any.
    pub maddr: Option<String>,
}

/// State of a Via `rport` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RPort {
    /// No `rport`: answer to the sent-by port.
    Absent,
    /// `rport` without a value: the client asks us to fill in its source port.
    Requested,
    /// `rport=N`: the source port seen by the previous hop.
    Port(u16),
    /// `rport=` with something that is not a port; treat as absent when routing.
    Invalid,
}

impl Via {
    /// `host[:port]` as written in the Via.
    pub fn sent_by(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.clone(),
        }
    }

    /// Whether the branch carries the RFC 3261 magic cookie (else §17.2.3 legacy matching).
    pub fn is_rfc3261(&self) -> bool {
        self.branch
            .as_deref()
            .is_some_and(|b| b.starts_with(branch::MAGIC_COOKIE))
    }

    /// Where a response goes (RFC 3261 §18.2.2 + RFC 3581): `received`/`rport` win over sent-by.
    ///
    /// `maddr` is not honoured (multicast replies are not something our phones ask for).
    pub fn response_target(&self) -> (String, u16) {
        let host = match &self.received {
            Some(r) => r.clone(),
            None => self
                .host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
        };
        let default = if self.transport.eq_ignore_ascii_case("TLS") {
            5061
        } else {
            5060
        };
        let port = match self.rport {
            RPort::Port(p) => p,
            _ => self.port.unwrap_or(default),
        };
        (host, port)
    }
}

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
    pub fn push(&mut self, chunk: &[u8]) -> Frames {
        let mut out = Frames::default();
        if self.broken {
            out.error = Some(WireError::Drop {
                cause: "stream framing already lost",
            });
            return out;
        }
        self.buf.extend_from_slice(chunk);
        loop {
            while self.buf.starts_with(b"\r\n") {
                self.buf.drain(..2);
                self.keepalives += 1;
                self.scanned = 0;
            }
            let Some(head_end) = find(&self.buf, b"\r\n\r\n", self.scanned) else {
                self.scanned = self.buf.len().saturating_sub(3);
                if self.buf.len() > self.max_message_bytes {
                    out.error = Some(self.fail_drop("header section exceeds the size limit"));
                }
                return out;
            };
            let head_len = head_end + 4;
            let declared = match content_length_of(&self.buf[..head_end]) {
                Ok(Some(n)) => n,
                Ok(None) => {
                    let err = salvage(&self.buf[..head_len], 400, "Missing Content-Length");
                    out.error = Some(self.fail(err));
                    return out;
                }
                Err(reason) => {
                    let err = salvage(&self.buf[..head_len], 400, reason);
                    out.error = Some(self.fail(err));
                    return out;
                }
            };
            let total = usize::try_from(declared)
                .ok()
                .and_then(|n| n.checked_add(head_len))
                .filter(|&t| t <= self.max_message_bytes);
            let Some(total) = total else {
                let err = salvage(&self.buf[..head_len], 413, "Request Entity Too Large");
                out.error = Some(self.fail(err));
                return out;
            };
            if self.buf.len() < total {
                // Keep the terminator search from rescanning a head we already framed.
                self.scanned = head_end;
                return out;
            }
            let raw: Vec<u8> = self.buf.drain(..total).collect();
            self.scanned = 0;
            let limits = Limits {
                max_message_bytes: self.max_message_bytes,
                max_body_bytes: self.max_message_bytes,
                ..Limits::stream()
            };
            match sipx_sip::parse_datagram(Bytes::from(raw.clone()), &limits) {
                Ok(m) => out.messages.push(SipMessage(m)),
                Err(e) => {
                    out.error = Some(self.fail(reject(&raw, &e)));
                    return out;
                }
            }
        }
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

/// Check a parsed request as RFC 3261 §8.2 / §16.3 step 1 require: `Err((status, reason))`.
///
/// A missing Max-Forwards passes (a proxy adds it, §16.6 step 3); URI scheme (416),
/// Max-Forwards 0 (483), loops (482) and Proxy-Require (420) are the proxy core's checks.
/// Without a Via the 400 cannot be routed; the transport drops it (`top_via()` is `None`).
pub fn validate_request(msg: &SipMessage) -> Result<(), (u16, &'static str)> {
    let Some(req) = msg.0.as_request() else {
        return Err((400, "Not A Request"));
    };
    if !req.version.is_supported() {
        return Err((505, "Version Not Supported"));
    }
    if let Some(f) = sipx_sip::validate_request(req)
        .into_iter()
        .find(|f| !f.is_repairable())
    {
        return Err((f.status(), finding_reason(&f)));
    }
    // sipx checks only the first hop; a broken lower hop would strand our response later.
    if req.headers.typed_all::<sh::Via>().any(|v| v.is_err()) {
        return Err((400, "Malformed Via"));
    }
    if req.method == Method::Register
        && req
            .headers
            .typed_all::<sh::ContactValue>()
            .any(|c| c.is_err())
    {
        return Err((400, "Malformed Contact"));
    }
    Ok(())
}

/// Check a parsed response; `Err` means drop it silently (RFC 3261 §18.1.2, RFC 4475 §3.1.2.5).
pub fn validate_response(msg: &SipMessage) -> Result<(), &'static str> {
    let Some(resp) = msg.0.as_response() else {
        return Err("not a response");
    };
    if let Some(f) = sipx_sip::validate_response(resp).first() {
        return Err(finding_reason(f));
    }
    if resp.headers.typed_all::<sh::Via>().any(|v| v.is_err()) {
        return Err("Malformed Via");
    }
    Ok(())
}

fn finding_reason(f: &sipx_sip::Finding) -> &'static str {
    use sipx_sip::Finding as F;
    match f {
        F::UnsupportedVersion => "Version Not Supported",
        F::CSeqMethodMismatch => "CSeq Method Mismatch",
        F::RequestUriHasHeaders => "Request-URI Has Headers",
        F::MissingRequiredHeader(h) => match *h {
            "To" => "Missing To",
            "From" => "Missing From",
            "Call-ID" => "Missing Call-ID",
            "CSeq" => "Missing CSeq",
            "Via" => "Missing Via",
            _ => "Missing Header",
        },
        F::MalformedRequiredHeader(h) => match *h {
            "To" => "Malformed To",
            "From" => "Malformed From",
            "Call-ID" => "Malformed Call-ID",
            "CSeq" => "Malformed CSeq",
            "Max-Forwards" => "Malformed Max-Forwards",
            "Via" => "Malformed Via",
            _ => "Malformed Header",
        },
        F::RepeatedSingleValueHeader(h) => match *h {
            "To" => "Duplicate To",
            "From" => "Duplicate From",
            "Call-ID" => "Duplicate Call-ID",
            "CSeq" => "Duplicate CSeq",
            "Max-Forwards" => "Duplicate Max-Forwards",
            _ => "Duplicate Header",
        },
        _ => "Bad Request",
    }
}

impl SipMessage {
    /// Wraps a crate message (for `txn`, the other half of the facade).
    pub(super) fn from_inner(m: Message) -> Self {
        SipMessage(m)
    }

    /// The crate message inside (for `txn`).
    pub(super) fn inner(&self) -> &Message {
        &self.0
    }

    /// Unwraps the crate message (for `txn`).
    pub(super) fn into_inner(self) -> Message {
        self.0
    }

    /// Parse one UDP datagram; without Content-Length the body runs to the end (§18.3).
    ///
    /// Octets after a Content-Length body are ignored (RFC 4475 §3.1.1.8), not forwarded.
    pub fn parse_datagram(buf: &[u8]) -> Result<Self, WireError> {
        let limits = Limits::datagram();
        if buf.len() > MAX_DATAGRAM_BYTES {
            return Err(WireError::Drop {
                cause: "datagram exceeds the size limit",
            });
        }
        match sipx_sip::parse_datagram(Bytes::copy_from_slice(buf), &limits) {
            Ok(m) => Ok(Self(m)),
            // In a datagram the body can only be what arrived: a larger Content-Length means
            // the body is short (RFC 3261 §18.3: 400), not that it is too large to take.
            Err(ParseError::Limit {
                limit: LimitKind::BodyBytes,
                ..
            }) => Err(salvage(buf, 400, "Content-Length Exceeds Body")),
            Err(e) => Err(reject(buf, &e)),
        }
    }

    /// Serialise; an unmodified parsed message gives back exactly the bytes that framed it.
    pub fn to_bytes(&self) -> Bytes {
        self.0.to_bytes()
    }

    /// Whether this is a request.
    pub fn is_request(&self) -> bool {
        matches!(self.0, Message::Request(_))
    }

    /// The request method token, case-sensitive (unknown methods included).
    pub fn method(&self) -> Option<&str> {
        self.0
            .as_request()
            .and_then(|r| std::str::from_utf8(r.method.as_bytes()).ok())
    }

    /// The response status code.
    pub fn status(&self) -> Option<u16> {
        self.0.as_response().map(|r| r.status.code())
    }

    /// The response reason phrase (may be empty, may be UTF-8).
    pub fn reason(&self) -> Option<String> {
        self.0.as_response().map(|r| lossy(&r.reason))
    }

    /// The Request-URI, decoded.
    pub fn request_uri(&self) -> Option<uri::SipUri> {
        self.0.as_request().map(|r| uri::SipUri::from_sipx(&r.uri))
    }

    /// The Request-URI exactly as it will be written.
    pub fn request_uri_text(&self) -> Option<String> {
        self.0.as_request().map(|r| lossy(&r.uri.to_bytes()))
    }

    /// Retarget the request; only the URI bytes of the request line change.
    pub fn set_request_uri(&mut self, text: &str) -> Result<(), EditError> {
        let Message::Request(r) = &mut self.0 else {
            return Err(EditError::NotARequest);
        };
        let u = sipx_sip::Uri::parse(Bytes::copy_from_slice(text.as_bytes()))
            .map_err(|_| EditError::InvalidValue("Request-URI"))?;
        r.set_uri(u)
            .map_err(|_| EditError::InvalidValue("Request-URI"))
    }

    /// The Call-ID (compared byte for byte; `None` if absent or empty).
    pub fn call_id(&self) -> Option<String> {
        match self.headers().typed::<sh::CallId>() {
            Some(Ok(c)) => Some(lossy(&c.0)),
            _ => None,
        }
    }

    /// CSeq number and method (`None` if absent or malformed, e.g. above 2^31-1).
    pub fn cseq(&self) -> Option<(u32, String)> {
        match self.headers().typed::<sh::CSeq>() {
            Some(Ok(c)) => Some((c.sequence, lossy(c.method.as_bytes()))),
            _ => None,
        }
    }

    /// The From tag (`None` for RFC 2543 peers that send none).
    pub fn from_tag(&self) -> Option<String> {
        match self.headers().typed::<sh::From>() {
            Some(Ok(f)) => f.0.tag().map(lossy),
            _ => None,
        }
    }

    /// The To tag (`None` outside a dialog).
    pub fn to_tag(&self) -> Option<String> {
        match self.headers().typed::<sh::To>() {
            Some(Ok(t)) => t.0.tag().map(lossy),
            _ => None,
        }
    }

    /// Add a To tag (RFC 3261 §8.2.6.2); refuses to change an existing one.
    pub fn set_to_tag(&mut self, tag: &str) -> Result<(), EditError> {
        if tag.is_empty() || !tag.bytes().all(is_token_char) {
            return Err(EditError::InvalidValue("tag"));
        }
        let value = match self.headers().typed::<sh::To>() {
            None => return Err(EditError::Missing("To")),
            Some(Err(_)) => return Err(EditError::Malformed("To")),
            Some(Ok(t)) if t.0.tag().is_some() => return Err(EditError::AlreadySet("To tag")),
            Some(Ok(_)) => self.headers().value(&HeaderName::To).map(|v| lossy(&v)),
        };
        let value = value.ok_or(EditError::Missing("To"))?;
        let header = build_header(HeaderName::To, &format!("{value};tag={tag}"))?;
        replace_first(self.headers_mut(), &HeaderName::To, header);
        Ok(())
    }

    /// First value of a header (unfolded), by any spelling: case-insensitive, compact forms mapped.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers().value(&hname(name)).map(|v| lossy(&v))
    }

    /// Every row of a header in order (unfolded); a comma-joined row stays one string.
    pub fn headers_all(&self, name: &str) -> Vec<String> {
        let name = hname(name);
        self.headers()
            .get_all(&name)
            .map(|h| lossy(&h.value()))
            .collect()
    }

    /// Replace every row of a header with one row in the place of the first.
    pub fn set_header(&mut self, name: &str, value: &str) -> Result<(), EditError> {
        let name = editable_name(name)?;
        let header = build_header(name.clone(), value)?;
        let headers = self.headers_mut();
        match first_index(headers, &name) {
            Some(i) => {
                headers.remove_all(&name);
                headers.insert(i, header);
            }
            None => push_before_content_length(headers, header),
        }
        Ok(())
    }

    /// Remove every row of a header; returns how many went.
    pub fn remove_header(&mut self, name: &str) -> Result<usize, EditError> {
        let name = editable_name(name)?;
        Ok(self.headers_mut().remove_all(&name))
    }

    /// Add a row above the existing rows of that header (or at the very top if there are none).
    pub fn add_header_top(&mut self, name: &str, value: &str) -> Result<(), EditError> {
        let name = editable_name(name)?;
        let header = build_header(name.clone(), value)?;
        let headers = self.headers_mut();
        let i = first_index(headers, &name).unwrap_or(0);
        headers.insert(i, header);
        Ok(())
    }

    /// Add a row after everything else but Content-Length (e.g. one WWW-Authenticate per algorithm).
    pub fn add_header(&mut self, name: &str, value: &str) -> Result<(), EditError> {
        let name = editable_name(name)?;
        let header = build_header(name, value)?;
        push_before_content_length(self.headers_mut(), header);
        Ok(())
    }

    /// The body (empty if none).
    pub fn body(&self) -> &[u8] {
        self.0.body()
    }

    /// Replace the body, keeping Content-Length and Content-Type in step with it.
    pub fn set_body(&mut self, content_type: Option<&str>, body: &[u8]) -> Result<(), EditError> {
        let ct = content_type
            .map(|v| build_header(HeaderName::ContentType, v))
            .transpose()?;
        let cl = build_header(HeaderName::ContentLength, &body.len().to_string())?;
        let headers = self.headers_mut();
        headers.remove_all(&HeaderName::ContentType);
        if let Some(ct) = ct {
            push_before_content_length(headers, ct);
        }
        headers.remove_all(&HeaderName::ContentLength);
        headers.push(cl);
        let body = Bytes::copy_from_slice(body);
        match &mut self.0 {
            Message::Request(r) => r.set_body(body),
            Message::Response(r) => r.set_body(body),
        }
        Ok(())
    }

    // ---- Via ----------------------------------------------------------------------------

    /// The topmost Via hop (first value of the first row), decoded.
    pub fn top_via(&self) -> Option<Via> {
        match self.headers().typed::<sh::Via>() {
            Some(Ok(v)) => Some(via_from(&v)),
            _ => None,
        }
    }

    /// Every Via hop in order, across rows and comma-joined values.
    pub fn vias(&self) -> Result<Vec<Via>, EditError> {
        self.headers()
            .typed_all::<sh::Via>()
            .map(|v| {
                v.map(|v| via_from(&v))
                    .map_err(|_| EditError::Malformed("Via"))
            })
            .collect()
    }

    /// How many Via hops the message carries (malformed hops count as one per row).
    pub fn via_count(&self) -> usize {
        self.headers().typed_all::<sh::Via>().count()
    }

    /// Remove only the first Via *value* (§16.7 step 3); the row goes when it was the only one.
    ///
    /// Returns false (and changes nothing) when there is no Via or the row cannot be rebuilt.
    pub fn pop_top_via_value(&mut self) -> bool {
        let Some(row) = self.headers().get(&HeaderName::Via) else {
            return false;
        };
        // `value()` is unfolded: folds (CRLF SP) would be refused by `Header::build`.
        let value = row.value().into_owned();
        let end = sh::first_hop_end(&value);
        let rest = value.get(end..).unwrap_or_default();
        let rest = trim_bytes(rest.strip_prefix(b",").unwrap_or(rest));
        let headers = self.headers_mut();
        if rest.is_empty() {
            headers.remove_first(&HeaderName::Via);
            return true;
        }
        match Header::build(HeaderName::Via, Bytes::copy_from_slice(rest)) {
            Ok(h) => {
                replace_first(headers, &HeaderName::Via, h);
                true
            }
            Err(_) => false,
        }
    }

    /// Push our own Via as a row of its own at the top (a combined row would confuse ACK matching).
    pub fn push_via(&mut self, value: &str) -> Result<(), EditError> {
        let bytes = value.as_bytes();
        if sh::first_hop_end(bytes) != bytes.len() || sh::Via::parse_one(bytes).is_err() {
            return Err(EditError::InvalidValue("Via"));
        }
        let header = build_header(HeaderName::Via, value)?;
        self.headers_mut().push_front(header);
        Ok(())
    }

    /// Stamp `received`/`rport` on the top hop (RFC 3261 §18.2.1, RFC 3581 §4).
    ///
    /// `received` is added when the source differs from sent-by or `rport` was requested;
    /// an empty `rport` gets the source port. Returns whether the message changed.
    pub fn set_received_rport(
        &mut self,
        source_ip: IpAddr,
        source_port: u16,
    ) -> Result<bool, EditError> {
        let Some(row) = self.headers().get(&HeaderName::Via) else {
            return Err(EditError::Missing("Via"));
        };
        let value = row.value().into_owned();
        let end = sh::first_hop_end(&value);
        let hop = trim_bytes(value.get(..end).unwrap_or_default());
        let rest = value.get(end..).unwrap_or_default();
        let parsed = sh::Via::parse_one(hop).map_err(|_| EditError::Malformed("Via"))?;
        let rport_present = parsed.rport().is_some();
        let rport_empty = matches!(parsed.rport(), Some(None));
        let same_host = matches!(&parsed.host, sipx_sip::Host::Ip(ip) if *ip == source_ip);
        let want_received = !same_host || rport_present;
        if !want_received && !rport_empty {
            return Ok(false);
        }
        let segments = split_params(hop);
        let mut out: Vec<u8> = Vec::with_capacity(hop.len() + 40);
        let mut saw_received = false;
        for (i, seg) in segments.iter().enumerate() {
            if i == 0 {
                out.extend_from_slice(seg);
                continue;
            }
            let name = trim_bytes(seg.split(|&b| b == b'=').next().unwrap_or_default());
            let has_value = seg.contains(&b'=');
            out.push(b';');
            if want_received && name.eq_ignore_ascii_case(b"received") {
                saw_received = true;
                out.extend_from_slice(format!("received={source_ip}").as_bytes());
            } else if name.eq_ignore_ascii_case(b"rport") && !has_value {
                out.extend_from_slice(format!("rport={source_port}").as_bytes());
            } else {
                out.extend_from_slice(seg);
            }
        }
        if want_received && !saw_received {
            out.extend_from_slice(format!(";received={source_ip}").as_bytes());
        }
        out.extend_from_slice(rest);
        let header = Header::build(HeaderName::Via, Bytes::from(out))
            .map_err(|_| EditError::InvalidValue("Via"))?;
        replace_first(self.headers_mut(), &HeaderName::Via, header);
        Ok(true)
    }

    // ---- Max-Forwards -------------------------------------------------------------------

    /// The hop limit; 70 when absent (§16.6 step 3), `None` when present but malformed.
    pub fn max_forwards(&self) -> Option<u8> {
        match self.headers().typed::<sh::MaxForwards>() {
            None => Some(70),
            Some(Ok(m)) => Some(m.0),
            Some(Err(_)) => None,
        }
    }

    /// Whether the hop limit is used up (answer 483, or 200 to an OPTIONS addressed to us).
    pub fn max_forwards_is_zero(&self) -> bool {
        self.max_forwards() == Some(0)
    }

    /// Decrement the hop limit (inserting 69 when absent); returns the new value.
    pub fn decrement_max_forwards(&mut self) -> Result<u8, EditError> {
        let current = self
            .max_forwards()
            .ok_or(EditError::Malformed("Max-Forwards"))?;
        let next = current
            .checked_sub(1)
            .ok_or(EditError::InvalidValue("Max-Forwards of 0"))?;
        let header = build_header(HeaderName::MaxForwards, &next.to_string())?;
        let headers = self.headers_mut();
        if first_index(headers, &HeaderName::MaxForwards).is_some() {
            replace_first(headers, &HeaderName::MaxForwards, header);
        } else {
            push_before_content_length(headers, header);
        }
        Ok(next)
    }

    // ---- Route / Record-Route -----------------------------------------------------------

    /// Route values in order (rows and comma-joined values), as URIs with their params.
    pub fn routes(&self) -> Result<Vec<uri::SipUri>, EditError> {
        self.headers()
            .typed_all::<sh::Route>()
            .map(|r| {
                r.map(|r| uri::SipUri::from_sipx(&r.0.uri))
                    .map_err(|_| EditError::Malformed("Route"))
            })
            .collect()
    }

    /// Remove the first Route value (loose routing, §16.4); false when there is none.
    pub fn remove_first_route(&mut self) -> Result<bool, EditError> {
        if self.headers().get(&HeaderName::Route).is_none() {
            return Ok(false);
        }
        self.headers_mut()
            .remove_address_value(&HeaderName::Route, 0)
            .map(|()| true)
            .map_err(|_| EditError::Malformed("Route"))
    }

    /// Record-Route values in order: the route set a 2xx/1xx establishes (§12.1).
    pub fn record_routes(&self) -> Result<Vec<uri::SipUri>, EditError> {
        self.headers()
            .typed_all::<sh::RecordRoute>()
            .map(|r| {
                r.map(|r| uri::SipUri::from_sipx(&r.0.uri))
                    .map_err(|_| EditError::Malformed("Record-Route"))
            })
            .collect()
    }

    /// Add our Record-Route value above the others (§16.6 step 4); a bare URI gets `<>`.
    pub fn add_record_route(&mut self, value: &str) -> Result<(), EditError> {
        let value = if value.trim_start().starts_with('<') {
            value.to_owned()
        } else {
            format!("<{value}>")
        };
        if sh::Address::parse(value.as_bytes(), "Record-Route").is_err() {
            return Err(EditError::InvalidValue("Record-Route"));
        }
        let header = build_header(HeaderName::RecordRoute, &value)?;
        let headers = self.headers_mut();
        let i = first_index(headers, &HeaderName::RecordRoute).unwrap_or(0);
        headers.insert(i, header);
        Ok(())
    }

    // ---- Building messages --------------------------------------------------------------

    /// A response to `request` (§8.2.6): Via (all, in order), From, To, Call-ID, CSeq copied.
    ///
    /// `to_tag` is added only when the To has none. A status outside 100..=699 becomes 500,
    /// and CR/LF/NUL are removed from the reason. Content-Length is 0.
    pub fn response_to(
        request: &SipMessage,
        status: u16,
        reason: &str,
        to_tag: Option<&str>,
    ) -> SipMessage {
        let code = StatusCode::new(status)
            .or_else(|| StatusCode::new(500))
            .expect("500 is a valid status code");
        let reason: String = reason
            .chars()
            .filter(|c| !matches!(c, '\r' | '\n' | '\0'))
            .collect();
        let mut resp = Response::new(code, Bytes::from(reason));
        let src = request.headers();
        for name in [
            HeaderName::Via,
            HeaderName::From,
            HeaderName::To,
            HeaderName::CallId,
            HeaderName::CSeq,
        ] {
            for h in src.get_all(&name) {
                resp.headers.push(h.clone());
            }
        }
        if status == 100 {
            // §8.2.6.1: a 100 echoes Timestamp so the client can measure round trips.
            for h in src.get_all(&HeaderName::Timestamp) {
                resp.headers.push(h.clone());
            }
        }
        if let Ok(cl) = Header::build(HeaderName::ContentLength, Bytes::from_static(b"0")) {
            resp.headers.push(cl);
        }
        let mut msg = SipMessage(Message::Response(resp));
        if let Some(tag) = to_tag {
            if msg.to_tag().is_none() {
                // A malformed To cannot take a tag; the response still goes out without one.
                let _ = msg.set_to_tag(tag);
            }
        }
        msg
    }

    /// The CANCEL for `invite` as we sent it on a branch (§9.1): same Request-URI, top Via value
    /// only (so the same branch), Route/From/To/Call-ID rows copied byte for byte, CSeq number
    /// with CANCEL; `reason` is a whole Reason value.
    pub fn cancel_for(invite: &SipMessage, reason: Option<&str>) -> Result<SipMessage, EditError> {
        let mut msg = derived_request(invite, Method::Cancel, None)?;
        if let Some(r) = reason {
            let h = build_header(HeaderName::Reason, r)?;
            push_before_content_length(msg.headers_mut(), h);
        }
        Ok(msg)
    }

    /// The ACK for a non-2xx final `response` to `invite` (§17.1.1.3): To from the response.
    pub fn ack_for_non2xx(
        invite: &SipMessage,
        response: &SipMessage,
    ) -> Result<SipMessage, EditError> {
        let to = response
            .headers()
            .get(&HeaderName::To)
            .ok_or(EditError::Missing("To"))?;
        derived_request(invite, Method::Ack, Some(to))
    }

    fn headers(&self) -> &Headers {
        self.0.headers()
    }

    fn headers_mut(&mut self) -> &mut Headers {
        self.0.headers_mut()
    }
}

/// CANCEL and non-2xx ACK share their shape (§9.1, §17.1.1.3); only To and the method differ.
fn derived_request(
    invite: &SipMessage,
    method: Method,
    to: Option<&Header>,
) -> Result<SipMessage, EditError> {
    let Some(req) = invite.0.as_request() else {
        return Err(EditError::NotARequest);
    };
    let src = &req.headers;
    let (seq, _) = invite.cseq().ok_or(EditError::Malformed("CSeq"))?;
    let top = src.get(&HeaderName::Via).ok_or(EditError::Missing("Via"))?;
    let top_value = top.value();
    let end = sh::first_hop_end(&top_value);
    let via = if end == top_value.len() {
        top.clone()
    } else {
        let hop = trim_bytes(top_value.get(..end).unwrap_or_default());
        Header::build(HeaderName::Via, Bytes::copy_from_slice(hop))
            .map_err(|_| EditError::Malformed("Via"))?
    };
    let mut out = Request::new(method.clone(), req.uri.clone());
    out.headers.push(via);
    for h in src.get_all(&HeaderName::Route) {
        out.headers.push(h.clone());
    }
    out.headers
        .push(build_header(HeaderName::MaxForwards, "70")?);
    out.headers.push(
        src.get(&HeaderName::From)
            .ok_or(EditError::Missing("From"))?
            .clone(),
    );
    let to = match to {
        Some(t) => t.clone(),
        None => src
            .get(&HeaderName::To)
            .ok_or(EditError::Missing("To"))?
            .clone(),
    };
    out.headers.push(to);
    out.headers.push(
        src.get(&HeaderName::CallId)
            .ok_or(EditError::Missing("Call-ID"))?
            .clone(),
    );
    out.headers.push(build_header(
        HeaderName::CSeq,
        &format!("{seq} {}", lossy(method.as_bytes())),
    )?);
    out.headers
        .push(build_header(HeaderName::ContentLength, "0")?);
    Ok(SipMessage(Message::Request(out)))
}

// ---- Parse-failure handling ----------------------------------------------------------------

/// Map a parse failure to what the proxy does about it: answer 400/413/513, or drop.
fn reject(buf: &[u8], err: &ParseError) -> WireError {
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
fn salvage(buf: &[u8], status: u16, reason: &'static str) -> WireError {
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
    let partial = SipMessage(partial);
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

// ---- Small helpers ---------------------------------------------------------------------------

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn hname(name: &str) -> HeaderName {
    HeaderName::parse(&Bytes::copy_from_slice(name.trim().as_bytes()))
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

/// Content-Length belongs to framing; only `set_body` may touch it.
fn editable_name(name: &str) -> Result<HeaderName, EditError> {
    let n = hname(name);
    if name.trim().is_empty() || !name.trim().bytes().all(is_token_char) {
        return Err(EditError::InvalidValue("header name"));
    }
    if n == HeaderName::ContentLength {
        return Err(EditError::InvalidValue(
            "header name (Content-Length is set by set_body)",
        ));
    }
    Ok(n)
}

fn build_header(name: HeaderName, value: &str) -> Result<Header, EditError> {
    Header::build(name, Bytes::copy_from_slice(value.as_bytes()))
        .map_err(|_| EditError::InvalidValue("header value"))
}

fn first_index(headers: &Headers, name: &HeaderName) -> Option<usize> {
    headers.iter().position(|h| h.name() == name)
}

/// sipx has no replace-in-place; remove the first row and put the new one where it was.
fn replace_first(headers: &mut Headers, name: &HeaderName, new: Header) {
    match first_index(headers, name) {
        Some(i) => {
            headers.remove_first(name);
            headers.insert(i, new);
        }
        None => headers.push(new),
    }
}

fn push_before_content_length(headers: &mut Headers, header: Header) {
    match first_index(headers, &HeaderName::ContentLength) {
        Some(i) => headers.insert(i, header),
        None => headers.push(header),
    }
}

fn trim_bytes(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| !matches!(c, b' ' | b'\t'));
    let end = b.iter().rposition(|c| !matches!(c, b' ' | b'\t'));
    match (start, end) {
        (Some(s), Some(e)) => b.get(s..=e).unwrap_or_default(),
        _ => &[],
    }
}

/// Split a Via hop at the `;` that separate parameters, leaving quoted strings whole.
fn split_params(hop: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0usize;
    let mut i = 0usize;
    let mut quoted = false;
    while let Some(&b) = hop.get(i) {
        match b {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b';' if !quoted => {
                out.push(hop.get(start..i).unwrap_or_default());
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(hop.get(start..).unwrap_or_default());
    out
}

fn via_from(v: &sh::Via) -> Via {
    Via {
        transport: lossy(&v.transport),
        host: v.host.to_string(),
        port: v.port,
        branch: v.branch().map(lossy),
        received: v.received().map(lossy),
        rport: match v.rport() {
            None => RPort::Absent,
            Some(None) => RPort::Requested,
            Some(Some(p)) => std::str::from_utf8(p)
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse().ok())
                .map_or(RPort::Invalid, RPort::Port),
        },
        maddr: v.maddr().map(lossy),
    }
}

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

/// URIs: SIP, SIPS, tel and unknown schemes, decoded into parts and written back.
pub mod uri {
    use super::{lossy, sh, EditError};
    use bytes::Bytes;
    use std::fmt;
    use std::net::IpAddr;

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
}

/// RFC 3261 branches that carry our transaction slot, so a reply finds its branch in O(1).
///
/// Like Kamailio's `tm`: the branch names the table slot, a per-use generation (so a reply to
/// a reused slot's previous tenant does not match) and the fork branch number.
pub mod branch {
    /// The RFC 3261 magic cookie every compliant branch starts with (§8.1.1.7).
    pub const MAGIC_COOKIE: &str = "z9hG4bK";

    /// Our marker after the cookie; the `1` is the encoding version.
    const OURS: &str = "z9hG4bKmdg1.";

    /// What we encode in a branch.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct BranchId {
        /// Transaction table slot.
        pub slot: u32,
        /// Generation of the slot's current tenant (start it from `random_generation()`).
        pub generation: u32,
        /// Fork branch number within the transaction.
        pub branch: u16,
    }

    /// Encode, e.g. `z9hG4bKmdg1.2a.5f3e9c01.0`.
    pub fn encode(id: BranchId) -> String {
        format!("{OURS}{:x}.{:x}.{:x}", id.slot, id.generation, id.branch)
    }

    /// Decode one of our branches; `None` for anyone else's (or a tampered one).
    pub fn decode(branch: &str) -> Option<BranchId> {
        let rest = branch.strip_prefix(OURS)?;
        let mut it = rest.split('.');
        let slot = hex32(it.next()?)?;
        let generation = hex32(it.next()?)?;
        let branch = u16::try_from(hex32(it.next()?)?).ok()?;
        if it.next().is_some() {
            return None;
        }
        Some(BranchId {
            slot,
            generation,
            branch,
        })
    }

    /// Whether a branch has the RFC 3261 magic cookie.
    pub fn is_rfc3261(branch: &str) -> bool {
        branch.starts_with(MAGIC_COOKIE)
    }

    /// A random starting generation, so branches stay unique across restarts (§8.1.1.7).
    pub fn random_generation() -> u32 {
        (super::random_u64() >> 32) as u32
    }

    // `from_str_radix` accepts a leading `+`; a branch from the network must be plain hex.
    fn hex32(s: &str) -> Option<u32> {
        if s.is_empty() || s.len() > 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(s, 16).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test messages are written with `\n`; SIP wants CRLF. `{CL}` becomes the body length.
    fn wire(s: &str) -> Vec<u8> {
        let s = s.replace('\n', "\r\n");
        let body_len = s.find("\r\n\r\n").map_or(0, |i| s.len() - i - 4);
        s.replace("{CL}", &body_len.to_string()).into_bytes()
    }

    /// What the proxy does with a datagram: process it, answer with a status, or drop it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Outcome {
        Process,
        Answer(u16),
        Drop,
    }
    use Outcome::{Answer, Drop, Process};

    fn outcome(raw: &[u8]) -> Outcome {
        match SipMessage::parse_datagram(raw) {
            Err(WireError::BadRequest { status, .. }) => Answer(status),
            Err(WireError::Drop { .. }) => Drop,
            Ok(m) if m.is_request() => match validate_request(&m) {
                Ok(()) => Process,
                Err((status, _)) => Answer(status),
            },
            Ok(m) => match validate_response(&m) {
                Ok(()) => Process,
                Err(_) => Drop,
            },
        }
    }

    fn parse(s: &str) -> SipMessage {
        SipMessage::parse_datagram(&wire(s)).expect("test message parses")
    }

    const SDP: &str = "v=0
o=madoguchi 29739 7272939 IN IP4 192.0.2.3
s=-
c=IN IP4 192.0.2.4
t=0 0
m=audio 49217 RTP/AVP 0 8
a=rtpmap:0 PCMU/8000
";

    // ---- RFC 4475 §3.1.1: valid messages, modelled with our numbers --------------------

    const WSINV: &str = r#"INVITE sip:0134001234@madoguchi.example.jp SIP/2.0
TO :
 sip:0134001234@madoguchi.example.jp ;   tag    = 1918181833n
from   : "Otaru \"City\" Hall" <sip:0134009999@trunk.example.net>
  ;
  tag = 98asjd8
MaX-fOrWaRdS: 0068
Call-ID: wsinv.ndaksdj@192.0.2.1
Content-Length   : {CL}
cseq: 0009
  INVITE
Via  : SIP  /   2.0
 /UDP
    192.0.2.2;rport;branch=390skdjuw
s :
NewFangledHeader:   newfangled value
 continued newfangled value
UnknownHeaderWithUnusualValue: ;;,,;;,;
Content-Type: application/sdp
Route:
 <sip:madoguchi.example.jp;lr;unknownwith=value;unknown-no-value>
v:  SIP  / 2.0  / TCP     spindle.example.net   ;
  branch  =   z9hG4bK9ikj8  ,
 SIP  /    2.0   / UDP  192.168.255.111   ; branch=
 z9hG4bK30239
m:"Quoted string \"\"" <sip:0134009999@192.0.2.5> ; newparam =
      newvalue ;
  secondparam ; q = 0.33

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.3
s=-
c=IN IP4 192.0.2.4
t=0 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
"#;

    const INTMETH: &str = "!interesting-Method0123456789_*+`.%indeed'~ sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@madoguchi.example.jp SIP/2.0
Via: SIP/2.0/TCP host1.example.net;branch=z9hG4bK-.!%66*_+`'~
To: \"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7F\" <sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@madoguchi.example.jp>
From: token1~` token2'+_ token3*%!.- <sip:mundane@example.net>;fromParam''~+*_!.-%=\"\u{440}\u{430}\u{431}\u{43e}\u{442}\u{430}\u{44e}\u{449}\u{438}\u{439}\";tag=_token~1'+`*%!-.
Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{
Max-Forwards: 255
CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~
extensionHeader-!.%*+_`'~: \u{feff}\u{5927}\u{505c}\u{96fb}
Content-Length: 0

";

    const ESC01: &str = "INVITE sip:sips%3A0134001234%40example.net@madoguchi.example.jp SIP/2.0
To: sip:%61lice@madoguchi.example.jp
From: <sip:%61lice@madoguchi.example.jp>;tag=d3kx
Max-Forwards: 87
i: esc01.239409asdfakjkn23onasd0-3234
CSeq: 234234 INVITE
Via: SIP/2.0/UDP host5.example.net;rport;branch=z9hG4bKkdjuw
C: application/sdp
Contact:
  <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>
Content-Length: {CL}

v=0
o=- 1 1 IN IP4 192.0.2.5
s=-
c=IN IP4 192.0.2.5
t=0 0
m=audio 5000 RTP/AVP 0
";

    const ESCNULL: &str = "REGISTER sip:madoguchi.example.jp SIP/2.0
To: sip:null-%00-null@madoguchi.example.jp
From: sip:null-%00-null@madoguchi.example.jp;tag=839923423
Max-Forwards: 70
Call-ID: escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd
CSeq: 14398234 REGISTER
Via: SIP/2.0/UDP host5.example.net;rport;branch=z9hG4bKkdjuw
Contact: <sip:%00@host5.example.net>
Contact: <sip:%00%00@host5.example.net>
L:0

";

    const ESC02: &str = "RE%47IST%45R sip:madoguchi.example.jp SIP/2.0
To: \"%Z%45\" <sip:resource@madoguchi.example.jp>
From: \"%Z%45\" <sip:resource@madoguchi.example.jp>;tag=f232jadfj23
Call-ID: esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf
Via: SIP/2.0/TCP host.example.net;rport;branch=z9hG4bK209%fzsnel234
CSeq: 29344 RE%47IST%45R
Max-Forwards: 70
Contact: <sip:alias1@host1.example.net>
C%6Fntact: <sip:alias2@host2.example.net>
Contact: <sip:alias3@host3.example.net>
l: 0

";

    const LWSDISP: &str = "OPTIONS sip:0134001234@madoguchi.example.jp SIP/2.0
To: sip:0134001234@madoguchi.example.jp
From: caller<sip:caller@example.net>;tag=323
Max-Forwards: 70
Call-ID: lwsdisp.1234abcd@funky.example.net
CSeq: 60 OPTIONS
Via: SIP/2.0/UDP funky.example.net;branch=z9hG4bKkdjuw
l: 0

";

    const DBLREQ: &str = "REGISTER sip:madoguchi.example.jp SIP/2.0
To: sip:j.user@madoguchi.example.jp
From: sip:j.user@madoguchi.example.jp;tag=43251j3j324
Max-Forwards: 8
I: dblreq.0ha0isndaksdj99sdfafnl3lk233412
Contact: sip:j.user@host.example.net
CSeq: 8 REGISTER
Via: SIP/2.0/UDP 192.0.2.125;branch=z9hG4bKkdjuw23492
Content-Length: 0


INVITE sip:joe@madoguchi.example.jp SIP/2.0
t: sip:joe@madoguchi.example.jp
From: sip:caller@example.net;tag=141334
Max-Forwards: 8
Call-ID: dblreq.0ha0isnda977644900765@192.0.2.15
CSeq: 8 INVITE
Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw380234
Content-Type: application/sdp
Content-Length: 0

";

    const SEMIURI: &str = "OPTIONS sip:0134001234;par=u%40example.net@madoguchi.example.jp SIP/2.0
To: sip:j_user@madoguchi.example.jp
From: sip:caller@example.net;tag=33242
Max-Forwards: 3
Call-ID: semiuri.0ha0isndaksdj
CSeq: 8 OPTIONS
Accept: application/sdp, application/pkcs7-mime,
        multipart/mixed, multipart/signed,
        message/sip, message/sipfrag
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKkdjuw
l: 0

";

    const TRANSPORTS: &str = "OPTIONS sip:0134001234@madoguchi.example.jp SIP/2.0
To: sip:0134001234@madoguchi.example.jp
From: <sip:caller@example.net>;tag=323
Max-Forwards: 70
Call-ID: transports.kijh4akdnaqjkwendsasfdj
Accept: application/sdp
CSeq: 60 OPTIONS
Via: SIP/2.0/UDP t1.example.net;branch=z9hG4bKkdjuw
Via: SIP/2.0/SCTP t2.example.net;branch=z9hG4bKklasjdhf
Via: SIP/2.0/TLS t3.example.net;branch=z9hG4bK2980unddj
Via: SIP/2.0/UNKNOWN t4.example.net;branch=z9hG4bKasd0f3en
Via: SIP/2.0/TCP t5.example.net;branch=z9hG4bK0a9idfnee
l: 0

";

    const MPART01: &str = "MESSAGE sip:0134001234@madoguchi.example.jp SIP/2.0
Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bK3ef4a1
Max-Forwards: 70
From: <sip:0134009999@trunk.example.net>;tag=2k3hk
To: <sip:0134001234@madoguchi.example.jp>
Call-ID: mpart01.0ha0isndaksdjweiafasdk3
CSeq: 1 MESSAGE
Content-Type: multipart/mixed;boundary=7a9cbec02ceef655
MIME-Version: 1.0
Content-Length: {CL}

--7a9cbec02ceef655
Content-Type: text/plain

予約の確認です
--7a9cbec02ceef655
Content-Type: application/octet-stream
Content-Transfer-Encoding: binary

0123456789
--7a9cbec02ceef655--
";

    const UNREASON: &str = "SIP/2.0 200 = 2**3 * 5**2 \u{43d}\u{43e} \u{441}\u{442}\u{43e} \u{434}\u{435}\u{432}\u{44f}\u{43d}\u{43e}\u{441}\u{442}\u{43e} \u{434}\u{435}\u{432}\u{44f}\u{442}\u{44c} - \u{43f}\u{440}\u{43e}\u{441}\u{442}\u{43e}\u{435}
Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923
Call-ID: unreason.1234ksdfak3j2erwedfsASdf
CSeq: 35 INVITE
From: sip:0134009999@trunk.example.net;tag=11141343
To: sip:0134001234@madoguchi.example.jp;tag=2229
Content-Length: 0

";

    const NOREASON: &str = "SIP/2.0 100 
Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe
Call-ID: noreason.asndj203insdf99223ndf
CSeq: 35 INVITE
From: <sip:0134009999@trunk.example.net>;tag=39ansfi3
To: <sip:0134001234@madoguchi.example.jp>;tag=902jndnke3
Content-Length: 0

";

    const IPV6: &str = "OPTIONS sip:[2001:db8::10]:5070 SIP/2.0
To: sip:0134001234@[2001:db8::10]
From: \"Desk 3\" <sip:desk3@[2001:db8::9]:5062>;tag=81x2
Via: SIP/2.0/UDP [2001:db8::9]:5062;rport;branch=z9hG4bKas3-111
Call-ID: ipv6.SSG9559905523997077@hlau_4100
Max-Forwards: 70
Contact: \"Desk 3\" <sip:desk3@[2001:db8::9]:5062>
CSeq: 98176 OPTIONS
Content-Length: 0

";

    const UNKSCM: &str = "OPTIONS nobodyKnowsThisScheme:totallyopaquecontent SIP/2.0
To: sip:0134001234@madoguchi.example.jp
From: sip:caller@example.net;tag=384
Max-Forwards: 3
Call-ID: unkscm.nasdfasser0q239nwsdfasdkl34
CSeq: 3923423 OPTIONS
Via: SIP/2.0/TCP host9.example.net;branch=z9hG4bKkdjuw39234
Content-Length: 0

";

    const NOVELSC: &str = "OPTIONS soap.beep://192.0.2.103:3002 SIP/2.0
To: sip:0134001234@madoguchi.example.jp
From: sip:caller@example.net;tag=384
Max-Forwards: 3
Call-ID: novelsc.asdfasser0q239nwsdfasdkl34
CSeq: 3923423 OPTIONS
Via: SIP/2.0/TCP host9.example.net;branch=z9hG4bKkdjuw39234
Content-Length: 0

";

    const UNKSM2: &str = "REGISTER sip:madoguchi.example.jp SIP/2.0
To: isbn:2983792873
From: <http://www.example.net>;tag=3234233
Call-ID: unksm2.daksdj@hyphenated-host.example.net
CSeq: 234902 REGISTER
Max-Forwards: 70
Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKkdjuw
Contact: <name:John_Smith>
l: 0

";

    const BEXT01: &str = "OPTIONS sip:0134001234@madoguchi.example.jp SIP/2.0
To: sip:0134001234@madoguchi.example.jp
From: sip:caller@example.net;tag=242etr
Max-Forwards: 6
Call-ID: bext01.0ha0isndaksdj
Require: nothingSupportsThis, nothingSupportsThisEither
Proxy-Require: noProxiesSupportThis, norDoAnyProxiesSupportThis
CSeq: 8 OPTIONS
Via: SIP/2.0/TLS fold-and-staple.example.net;branch=z9hG4bKkdjuw
Content-Length: 0

";

    const INVUT: &str = "INVITE sip:0134001234@madoguchi.example.jp SIP/2.0
Contact: <sip:caller@host5.example.net>
To: sip:0134001234@madoguchi.example.jp
From: sip:caller@example.net;tag=8392034
Max-Forwards: 70
Call-ID: invut.0ha0isndaksdjadsfij34n23d
CSeq: 235448 INVITE
Via: SIP/2.0/UDP somehost.example.net;branch=z9hG4bKkdjuw
Content-Type: application/unknownformat
Content-Length: {CL}

<audio>
 <pcmu port=\"443\"/>
</audio>
";

    const REGAUT01: &str = "REGISTER sip:madoguchi.example.jp SIP/2.0
To: sip:desk3@madoguchi.example.jp
From: sip:desk3@madoguchi.example.jp;tag=8ty6tt
Call-ID: regaut01.0ha0isndaksdj
CSeq: 9338 REGISTER
Via: SIP/2.0/UDP 192.0.2.253;branch=z9hG4bKkdjuw
Max-Forwards: 70
Authorization: NoOneKnowsThisScheme opaque-data=here
Content-Length: 0

";

    const BCAST: &str = "SIP/2.0 200 OK
Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923;received=255.255.255.255
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1324923
Call-ID: bcast.1234ksdfak3j2erwedfsASdf
CSeq: 35 INVITE
From: sip:0134009999@trunk.example.net;tag=11141343
To: sip:0134001234@madoguchi.example.jp;tag=2229
Content-Length: {CL}
Content-Type: application/sdp
Contact: <sip:desk3@192.0.2.198>

v=0
o=- 3 3 IN IP4 192.0.2.198
s=-
c=IN IP4 192.0.2.198
t=0 0
m=audio 3456 RTP/AVP 0
";

    const ZEROMF: &str = "OPTIONS sip:0134001234@madoguchi.example.jp SIP/2.0
Call-ID: zeromf.0ha0isndaksdj@192.0.2.1
CSeq: 0 OPTIONS
Via: SIP/2.0/UDP host1.example.net;branch=z9hG4bKkdjuw2395
From: sip:caller@example.net;tag=3ghsd41
To: sip:0134001234@madoguchi.example.jp
Max-Forwards: 0
Content-Length: 0

";

    const CPARAM01: &str = "REGISTER sip:madoguchi.example.jp SIP/2.0
Via: SIP/2.0/UDP saturn.example.net:5060;branch=z9hG4bKkdjuw
Max-Forwards: 70
From: sip:watson@madoguchi.example.jp;tag=DkfVgjkrtMwaerKKpe
To: sip:watson@madoguchi.example.jp
Call-ID: cparam01.70710@saturn.example.net
CSeq: 2 REGISTER
Contact: sip:+81134001234@gw1.example.net;unknownparam
l: 0

";

    const CPARAM02: &str = "REGISTER sip:madoguchi.example.jp SIP/2.0
Via: SIP/2.0/UDP saturn.example.net:5060;branch=z9hG4bKkdjuw
Max-Forwards: 70
From: sip:watson@madoguchi.example.jp;tag=838293
To: sip:watson@madoguchi.example.jp
Call-ID: cparam02.70710@saturn.example.net
CSeq: 3 REGISTER
Contact: <sip:+81134001234@gw1.example.net;unknownparam>
l: 0

";

    const REGESCRT: &str = "REGISTER sip:madoguchi.example.jp SIP/2.0
To: sip:desk3@madoguchi.example.jp
From: <sip:desk3@madoguchi.example.jp>;tag=8
Max-Forwards: 70
Call-ID: regescrt.k345asrl3fdbv@192.0.2.1
CSeq: 14398234 REGISTER
Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bKkdjuw
M: <sip:desk3@example.net?Route=%3Csip:sip.example.net%3E>
L:0

";

    const INV2543: &str = "INVITE sip:0134001234@madoguchi.example.jp SIP/2.0
Via: SIP/2.0/UDP 192.0.2.15
From: <sip:0134009999@trunk.example.net>
To: <sip:0134001234@madoguchi.example.jp>
Call-ID: inv2543.1717@trunk.example.net
CSeq: 1 INVITE
Content-Type: application/sdp
Content-Length: {CL}

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.5
s=-
c=IN IP4 192.0.2.5
t=0 0
m=audio 49217 RTP/AVP 0
";

    const BADBRANCH: &str = "OPTIONS sip:0134001234@madoguchi.example.jp SIP/2.0
To: sip:0134001234@madoguchi.example.jp
From: sip:caller@example.net;tag=3ghsd41
Call-ID: badbranch.sadonfo23i420jv0as0derf3j3n
CSeq: 8 OPTIONS
Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bK
Max-Forwards: 70
Content-Length: 0

";

    const ROUTES: &str = "INVITE sip:desk3@192.0.2.40:5062;transport=tcp SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKtrunk01
Route: <sip:madoguchi.example.jp;lr>, <sip:b.example.net;lr>
Record-Route: <sip:sbc.example.net;lr>
Route: <sip:c.example.net;lr;transport=tcp>
Max-Forwards: 69
From: \"0134-00-9999\" <sip:0134009999@trunk.example.net>;tag=tr1
To: <sip:0134001234@madoguchi.example.jp>
Call-ID: routes.a1b2c3@198.51.100.7
CSeq: 101 INVITE
Content-Length: 0

";

    const TELURI: &str = "INVITE tel:0134-00-1234;phone-context=+81-134 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKtel01
Max-Forwards: 70
From: <tel:090-0000-1111;phone-context=+81>;tag=t1
To: <tel:0134-00-1234;phone-context=+81-134>
Call-ID: teluri.88a7@198.51.100.7
CSeq: 1 INVITE
Content-Length: 0

";

    const NOCL: &str = "MESSAGE sip:0134001234@madoguchi.example.jp SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKnocl
Max-Forwards: 70
From: <sip:0134009999@trunk.example.net>;tag=nc1
To: <sip:0134001234@madoguchi.example.jp>
Call-ID: nocl.1@198.51.100.7
CSeq: 1 MESSAGE
Content-Type: text/plain

hello
world
";

    const FOLDED: &str = "OPTIONS sip:0134001234@madoguchi.example.jp SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKfold,
\t SIP/2.0/UDP 198.51.100.8;branch=z9hG4bKfold2
Max-Forwards:\t70
From:\t<sip:0134009999@trunk.example.net>
\t;tag=fold1
To:<sip:0134001234@madoguchi.example.jp>
Subject   :\t  predicted
 folded
\t subject
Call-ID:folded.1@198.51.100.7
CSeq:   7    OPTIONS
Content-Length:0

";

    const COMPACT180: &str = "SIP/2.0 180 Ringing
v: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKmdg1.2a.5f3e9c01.1
v: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKtrunk01;received=198.51.100.7
f: \"0134-00-9999\" <sip:0134009999@trunk.example.net>;tag=tr1
t: <sip:0134001234@madoguchi.example.jp>;tag=desk3a
i: compact.a1b2c3@198.51.100.7
CSeq: 101 INVITE
m: <sip:desk3@192.0.2.40:5062>
l: 0

";

    fn long_request() -> String {
        let tag = "t".repeat(1000);
        let mut s = format!(
            "INVITE sip:0134001234@madoguchi.example.jp SIP/2.0\n\
             To: \"{dn}\" <sip:0134001234@madoguchi.example.jp>\n\
             From: <sip:0134009999@trunk.example.net>;tag={tag}\n\
             Call-ID: longreq.{cid}\n\
             CSeq: 17 INVITE\n\
             Max-Forwards: 70\n\
             X-Unknown-Long: {x}\n",
            dn = "窓口".repeat(200),
            cid = "c".repeat(2000),
            x = "x".repeat(4000),
        );
        for i in 0..40 {
            s.push_str(&format!(
                "Via: SIP/2.0/TCP sip{i}.example.net;branch=z9hG4bK{i:03}{}\n",
                "b".repeat(100)
            ));
        }
        s.push_str("Content-Length: 0\n\n");
        s
    }

    // ---- RFC 4475 §3.1.2 (and §3.3): invalid messages ---------------------------------

    const BADINV01: &str = "INVITE sip:0134001234@madoguchi.example.jp SIP/2.0
To: sip:0134001234@madoguchi.example.jp
From: sip:caller@example.net;tag=134161461246
Max-Forwards: 7
Call-ID: badinv01.0ha0isndaksdjasdf3234nas
CSeq: 8 INVITE
Via: SIP/2.0/UDP 192.0.2.15;;,;,,
Contact: \"Joe\" <sip:joe@example.net>;;;;
Content-Length: 0

";

    const CLERR: &str = "INVITE sip:0134001234@madoguchi.example.jp SIP/2.0
Max-Forwards: 80
To: sip:0134001234@madoguchi.example.jp
From: sip:caller@example.net;tag=93942939o2
Contact: <sip:caller@hungry.example.net>
Call-ID: clerr.0ha0isndaksdjweiafasdk3
CSeq: 8 INVITE
Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bK-39234-23523
Content-Type: application/sdp
Content-Length: 9999

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.155
";

    const CLERR_RESPONSE: &str = "SIP/2.0 200 OK
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKmdg1.2a.5f3e9c01.0
From: <sip:0134009999@trunk.example.net>;tag=tr1
To: <sip:0134001234@madoguchi.example.jp>;tag=d3
Call-ID: clerr-resp.1@198.51.100.7
CSeq: 101 INVITE
Content-Length: 9999

v=0
";

    const NCL: &str = "INVITE sip:0134001234@madoguchi.example.jp SIP/2.0
Max-Forwards: 254
To: sip:0134001234@madoguchi.example.jp
From: sip:caller@example.net;tag=32394234
Call-ID: ncl.0ha0isndaksdj2193423r542w35
CSeq: 0 INVITE
Via: SIP/2.0/UDP 192.0.2.53;branch=z9hG4bKkdjuw
Contact: <sip:caller@example53.example.net>
Content-Type: application/sdp
Content-Length: -999

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.53
";

    const GARBAGE_CL: &str = "OPTIONS sip:0134001234@madoguchi.example.jp SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKgcl
Max-Forwards: 70
From: <sip:0134009999@trunk.example.net>;tag=g1
To: <sip:0134001234@madoguchi.example.jp>
Call-ID: garbagecl.1@198.51.100.7
CSeq: 1 OPTIONS
l: 3x

abc";

    const MCL01: &str = "OPTIONS sip:0134001234@madoguchi.example.jp SIP/2.0
Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bK293423
To: sip:0134001234@madoguchi.example.jp
From: sip:caller@example.net;tag=3543j4
Call-ID: mcl01.0ha0isndaksdj2193423r542w35
CSeq: 2 OPTIONS
Max-Forwards: 70
Content-Length: 0
Content-Length: 0
l: 0

";

    const SCALAR02: &str = "REGISTER sip:madoguchi.example.jp SIP/2.0
Via: SIP/2.0/TCP host129.example.net;branch=z9hG4bKzzxdiwo34sw;received=192.0.2.129
To: <sip:desk3@madoguchi.example.jp>
From: <sip:desk3@madoguchi.example.jp>;tag=239232jh3
CSeq: 36893488147419103232 REGISTER
Call-ID: scalar02.23o0pd9vanlq3wnrlnewofjas9ui32
Max-Forwards: 300
Expires: 1000000000000000000000000000000000000000000000000000000000000
Contact: <sip:desk3@host129.example.net>
  ;expires=280297596632815
Content-Length: 0

";

    const SCALARLG: &str = "SIP/2.0 503 Service Unavailable
Via: SIP/2.0/TCP host129.example.net;branch=z9hG4bKzzxdiwo34sw;received=192.0.2.129
To: <sip:0134001234@madoguchi.example.jp>
From: <sip:0134009999@trunk.example.net>;tag=2easdjfejw
CSeq: 9292394834772304023312 OPTIONS
Call-ID: scalarlg.noase0of0234hn2qofoaf0232aewf2394r
Retry-After: 949302838503028349304023988
Warning: 1812 overture \"In Progress\"
Content-Length: 0

";

    const QUOTBAL: &str = "INVITE sip:0134001234@madoguchi.example.jp SIP/2.0
To: \"Mr. J. User <sip:j.user@madoguchi.example.jp>
From: sip:caller@example.net;tag=93334
Max-Forwards: 10
Call-ID: quotbal.aksdj
Contact: <sip:caller@host59.example.net>
CSeq: 0 INVITE
Via: SIP/2.0/UDP 192.0.2.59:5050;branch=z9hG4bKkdjuw39234
Content-Type: application/sdp
Content-Length: 0

";

    const LTGTRURI: &str = "INVITE <sip:0134001234@madoguchi.example.jp> SIP/2.0
To: sip:0134001234@madoguchi.example.jp
From: sip:caller@example.net;tag=39291
Max-Forwards: 23
Call-ID: ltgtruri.1@192.0.2.5
CSeq: 1 INVITE
Via: SIP/2.0/UDP 192.0.2.5;branch=z9hG4bKkdjuw
Content-Length: 0

";

    const LWSRURI: &str = "INVITE sip:0134001234@madoguchi.example.jp; lr SIP/2.0
To: sip:0134001234@madoguchi.example.jp;tag=3xfe-9921883-z9f
From: sip:caller@example.net;tag=231413434
Max-Forwards: 5
Call-ID: lwsruri.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf
CSeq: 2130706432 INVITE
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKkdjuw2395
Content-Length: 0

";

    const LWSSTART: &str = "INVITE  sip:0134001234@madoguchi.example.jp  SIP/2.0
Max-Forwards: 8
To: sip:0134001234@madoguchi.example.jp
From: sip:caller@example.net;tag=8814
Call-ID: lwsstart.dfknq234oi243099adsdfnawe3@example.net
CSeq: 1893884 INVITE
Via: SIP/2.0/UDP host1.example.net;branch=z9hG4bKkdjuw3923
Content-Length: 0

";

    const TRWS: &str = "OPTIONS sip:0134001234@madoguchi.example.jp SIP/2.0 
Max-Forwards: 1
To: sip:0134001234@madoguchi.example.jp
From: sip:caller@example.net;tag=2342
Call-ID: trws.oij4asdfnq234ndfaj2kj3f
CSeq: 1 OPTIONS
Via: SIP/2.0/UDP host1.example.net;branch=z9hG4bK299342093
Content-Length: 0

";

    const ESCRURI: &str =
        "INVITE sip:0134001234@madoguchi.example.jp?Route=%3Csip:example.net%3E SIP/2.0
To: sip:0134001234@madoguchi.example.jp
From: sip:caller@example.net;tag=341518
Max-Forwards: 7
Contact: <sip:caller@host39923.example.net>
Call-ID: escruri.23940-asdfhj-aje3br-234q098w-fawerh2q-h4n5
CSeq: 39234321 INVITE
Via: SIP/2.0/UDP host1.example.net;branch=z9hG4bKkdjuw2349i
Content-Length: 0

";

    const BADDATE: &str = "INVITE sip:0134001234@madoguchi.example.jp SIP/2.0
To: sip:0134001234@madoguchi.example.jp
From: sip:caller@example.net;tag=2234923
Max-Forwards: 70
Call-ID: baddate.239423mnsadf3j23lj42--sedfnm234
CSeq: 1392934 INVITE
Via: SIP/2.0/UDP host.example.net;branch=z9hG4bKkdjuw
Date: Fri, 01 Jan 2010 16:00:00 EST
Contact: <sip:caller@host5.example.net>
Content-Length: 0

";

    const REGBADCT: &str = "REGISTER sip:madoguchi.example.jp SIP/2.0
To: sip:desk3@madoguchi.example.jp
From: sip:desk3@madoguchi.example.jp;tag=998332
Max-Forwards: 70
Call-ID: regbadct.k345asrl3fdbv@10.0.0.1
CSeq: 1 REGISTER
Via: SIP/2.0/UDP 135.180.130.133:5060;branch=z9hG4bKkdjuw
Contact: sip:desk3@example.net?Route=%3Csip:sip.example.net%3E
l: 0

";

    const BADASPEC: &str = "OPTIONS sip:0134001234@madoguchi.example.jp SIP/2.0
Via: SIP/2.0/UDP host4.example.net:5060;branch=z9hG4bKkdju43234
Max-Forwards: 70
From: \"Bell, Alexander\" <sip:a.g.bell@example.net>;tag=433423
To: \"Watson, Thomas\" < sip:t.watson@madoguchi.example.jp >
Call-ID: badaspec.sdf0234n2nds0a099u23h3hnnw009cdkne3
Accept: application/sdp
CSeq: 3923239 OPTIONS
l: 0

";

    const BADDN: &str = "OPTIONS sip:0134001234@madoguchi.example.jp SIP/2.0
Via: SIP/2.0/UDP host4.example.net:5060;branch=z9hG4bKkdju43234
Max-Forwards: 70
From: Bell, Alexander <sip:a.g.bell@example.net>;tag=43
To: Watson, Thomas <sip:t.watson@madoguchi.example.jp>
Call-ID: baddn.31415@c.example.net
Accept: application/sdp
CSeq: 3923239 OPTIONS
l: 0

";

    const BADVERS: &str = "OPTIONS sip:0134001234@madoguchi.example.jp SIP/7.0
Max-Forwards: 70
To: sip:0134001234@madoguchi.example.jp
From: sip:caller@example.net;tag=3ghsd41
Call-ID: badvers.0ha0isndaksdj
CSeq: 8 OPTIONS
Via: SIP/7.0/UDP 192.0.2.99;branch=z9hG4bKkdjuw
l: 0

";

    const MISMATCH01: &str = "OPTIONS sip:0134001234@madoguchi.example.jp SIP/2.0
To: sip:0134001234@madoguchi.example.jp
From: sip:caller@example.net;tag=34525
Max-Forwards: 6
Call-ID: mismatch01.sadonfo23i420jv0as0derf3j3n
CSeq: 8 INVITE
Via: SIP/2.0/UDP host.example.net;branch=z9hG4bKkdjuw
l: 0

";

    const MISMATCH02: &str = "NEWMETHOD sip:0134001234@madoguchi.example.jp SIP/2.0
To: sip:0134001234@madoguchi.example.jp
From: sip:caller@example.net;tag=34525
Max-Forwards: 6
Call-ID: mismatch02.sadonfo23i420jv0as0derf3j3n
CSeq: 8 INVITE
Contact: <sip:caller@host.example.net>
Via: SIP/2.0/UDP host.example.net;branch=z9hG4bKkdjuw
Content-Type: application/sdp
l: 0

";

    const BIGCODE: &str = "SIP/2.0 4294967301 better not break the receiver
Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe
Call-ID: bigcode.asdof3uj203asdnf3429uasdhfas3ehjasdfas9i
CSeq: 353494 INVITE
From: <sip:0134009999@trunk.example.net>;tag=39ansfi3
To: <sip:0134001234@madoguchi.example.jp>;tag=902jndnke3
Content-Length: 0

";

    const INSUF: &str = "INVITE sip:0134001234@madoguchi.example.jp SIP/2.0
CSeq: 193942 INVITE
Via: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf
Content-Type: application/sdp
l: 0

";

    const MULTI01: &str = "INVITE sip:0134001234@madoguchi.example.jp SIP/2.0
Via: SIP/2.0/UDP 192.0.2.25;branch=z9hG4bKkdjuw
Max-Forwards: 70
CSeq: 5 INVITE
Call-ID: multi01.98asdh@192.0.2.1
CSeq: 59 INVITE
Call-ID: multi01.98asdh@192.0.2.2
From: sip:caller@example.net;tag=3413415
To: sip:0134001234@madoguchi.example.jp
To: sip:0134009999@madoguchi.example.jp
From: sip:caller@example.net;tag=2342354
Content-Length: 0

";

    const NEGMF: &str = "OPTIONS sip:0134001234@madoguchi.example.jp SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKnegmf
Max-Forwards: -1
From: <sip:0134009999@trunk.example.net>;tag=n1
To: <sip:0134001234@madoguchi.example.jp>
Call-ID: negmf.1@198.51.100.7
CSeq: 1 OPTIONS
Content-Length: 0

";

    const GARBAGEMF: &str = "OPTIONS sip:0134001234@madoguchi.example.jp SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKgmf
Max-Forwards: seventy
From: <sip:0134009999@trunk.example.net>;tag=g1
To: <sip:0134001234@madoguchi.example.jp>
Call-ID: garbagemf.1@198.51.100.7
CSeq: 1 OPTIONS
Content-Length: 0

";

    const NOVIA: &str = "OPTIONS sip:0134001234@madoguchi.example.jp SIP/2.0
Max-Forwards: 70
From: <sip:0134009999@trunk.example.net>;tag=nv1
To: <sip:0134001234@madoguchi.example.jp>
Call-ID: novia.1@198.51.100.7
CSeq: 1 OPTIONS
Content-Length: 0

";

    const CSEQ_NO_METHOD: &str = "OPTIONS sip:0134001234@madoguchi.example.jp SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKcsq
Max-Forwards: 70
From: <sip:0134009999@trunk.example.net>;tag=c1
To: <sip:0134001234@madoguchi.example.jp>
Call-ID: cseqnomethod.1@198.51.100.7
CSeq: 1
Content-Length: 0

";

    const UNTERMINATED_FROM: &str = "BYE sip:desk3@192.0.2.40:5062 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKuq
Max-Forwards: 70
From: \"0134-00-9999 <sip:0134009999@trunk.example.net>;tag=u1
To: <sip:0134001234@madoguchi.example.jp>;tag=d3
Call-ID: unterminated.1@198.51.100.7
CSeq: 2 BYE
Content-Length: 0

";

    const RESPONSE_NO_CALLID: &str = "SIP/2.0 486 Busy Here
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKmdg1.2a.5f3e9c01.0
From: <sip:0134009999@trunk.example.net>;tag=tr1
To: <sip:0134001234@madoguchi.example.jp>;tag=d3
CSeq: 101 INVITE
Content-Length: 0

";

    const NO_COLON: &str = "INVITE sip:0134001234@madoguchi.example.jp SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKnocolon
Max-Forwards: 70
From: <sip:0134009999@trunk.example.net>;tag=nc1
To: <sip:0134001234@madoguchi.example.jp>
This line is not a header
Call-ID: nocolon.1@198.51.100.7
CSeq: 1 INVITE
Content-Length: 0

";

    /// Name, message, and what RFC 4475 (or RFC 3261) says our proxy does with it.
    const CASES: &[(&str, &str, Outcome)] = &[
        // §3.1.1 valid
        ("3.1.1.1 wsinv", WSINV, Process),
        ("3.1.1.2 intmeth", INTMETH, Process),
        ("3.1.1.3 esc01", ESC01, Process),
        ("3.1.1.4 escnull", ESCNULL, Process),
        ("3.1.1.5 esc02", ESC02, Process),
        ("3.1.1.6 lwsdisp", LWSDISP, Process),
        ("3.1.1.8 dblreq", DBLREQ, Process),
        ("3.1.1.9 semiuri", SEMIURI, Process),
        ("3.1.1.10 transports", TRANSPORTS, Process),
        ("3.1.1.11 mpart01", MPART01, Process),
        ("3.1.1.12 unreason", UNREASON, Process),
        ("3.1.1.13 noreason", NOREASON, Process),
        // §3.2 / §3.3 / §3.4 valid, and our own odd-but-valid traffic
        ("3.2.1 badbranch", BADBRANCH, Process),
        ("3.3.2 unkscm", UNKSCM, Process),
        ("3.3.3 novelsc", NOVELSC, Process),
        ("3.3.4 unksm2", UNKSM2, Process),
        ("3.3.5 bext01", BEXT01, Process),
        ("3.3.6 invut", INVUT, Process),
        ("3.3.7 regaut01", REGAUT01, Process),
        ("3.3.10 bcast", BCAST, Process),
        ("3.3.11 zeromf", ZEROMF, Process),
        ("3.3.12 cparam01", CPARAM01, Process),
        ("3.3.13 cparam02", CPARAM02, Process),
        ("3.3.14 regescrt", REGESCRT, Process),
        ("3.4.1 inv2543", INV2543, Process),
        ("ipv6 request-uri and via", IPV6, Process),
        ("combined and repeated Route", ROUTES, Process),
        ("tel request-uri", TELURI, Process),
        ("udp without content-length", NOCL, Process),
        ("tabs, folds, no space after colon", FOLDED, Process),
        ("compact 180", COMPACT180, Process),
        // §3.1.2 invalid
        ("3.1.2.1 badinv01", BADINV01, Answer(400)),
        ("3.1.2.2 clerr", CLERR, Answer(400)),
        ("3.1.2.2 clerr as a response", CLERR_RESPONSE, Drop),
        ("3.1.2.3 ncl", NCL, Answer(400)),
        ("garbage content-length", GARBAGE_CL, Answer(400)),
        ("3.1.2.4 scalar02", SCALAR02, Answer(400)),
        ("3.1.2.5 scalarlg", SCALARLG, Drop),
        ("3.1.2.6 quotbal", QUOTBAL, Answer(400)),
        ("3.1.2.7 ltgtruri", LTGTRURI, Answer(400)),
        ("3.1.2.8 lwsruri", LWSRURI, Answer(400)),
        ("3.1.2.9 lwsstart", LWSSTART, Answer(400)),
        ("3.1.2.10 trws", TRWS, Answer(400)),
        ("3.1.2.11 escruri", ESCRURI, Answer(400)),
        ("3.1.2.12 baddate", BADDATE, Process),
        ("3.1.2.13 regbadct", REGBADCT, Answer(400)),
        ("3.1.2.14 badaspec", BADASPEC, Answer(400)),
        ("3.1.2.15 baddn", BADDN, Answer(400)),
        ("3.1.2.16 badvers", BADVERS, Answer(505)),
        ("3.1.2.17 mismatch01", MISMATCH01, Answer(400)),
        ("3.1.2.18 mismatch02", MISMATCH02, Answer(400)),
        ("3.1.2.19 bigcode", BIGCODE, Drop),
        ("3.3.1 insuf", INSUF, Answer(400)),
        ("3.3.8 multi01", MULTI01, Answer(400)),
        ("3.3.9 mcl01", MCL01, Answer(400)),
        ("negative max-forwards", NEGMF, Answer(400)),
        ("garbage max-forwards", GARBAGEMF, Answer(400)),
        ("missing via", NOVIA, Answer(400)),
        ("cseq without method", CSEQ_NO_METHOD, Answer(400)),
        ("unterminated quote in from", UNTERMINATED_FROM, Answer(400)),
        ("response without call-id", RESPONSE_NO_CALLID, Drop),
        ("header line without colon", NO_COLON, Answer(400)),
    ];

    #[test]
    fn every_case_gets_what_the_rfc_asks_of_a_proxy() {
        let mut failures = Vec::new();
        for (name, text, want) in CASES {
            let got = outcome(&wire(text));
            if got != *want {
                failures.push(format!("{name}: want {want:?}, got {got:?}"));
            }
        }
        assert!(CASES.len() >= 40);
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn long_values_parse_and_round_trip() {
        let raw = wire(&long_request());
        assert_eq!(outcome(&raw), Process);
        let m = SipMessage::parse_datagram(&raw).unwrap();
        assert_eq!(m.via_count(), 40);
        assert_eq!(m.from_tag().unwrap().len(), 1000);
        assert_eq!(m.call_id().unwrap().len(), "longreq.".len() + 2000);
        assert_eq!(m.to_bytes().as_ref(), raw.as_slice());
    }

    #[test]
    fn processed_messages_round_trip_byte_for_byte() {
        for (name, text, want) in CASES {
            if *want != Process || *name == "3.1.1.8 dblreq" {
                continue;
            }
            let raw = wire(text);
            let m = SipMessage::parse_datagram(&raw).unwrap();
            assert_eq!(m.to_bytes().as_ref(), raw.as_slice(), "{name}");
        }
    }

    #[test]
    fn bad_requests_are_answered_from_what_they_carried() {
        for (name, text, want) in CASES {
            let Answer(status) = *want else { continue };
            let raw = wire(text);
            let resp = match SipMessage::parse_datagram(&raw) {
                Err(WireError::BadRequest { response, .. }) => *response,
                Err(WireError::Drop { cause }) => panic!("{name}: dropped ({cause})"),
                Ok(req) => {
                    let (s, reason) = validate_request(&req).unwrap_err();
                    assert_eq!(s, status, "{name}");
                    SipMessage::response_to(&req, s, reason, Some("mdg400"))
                }
            };
            assert_eq!(resp.status(), Some(status), "{name}");
            if ["missing via", "3.1.2.1 badinv01"].contains(name) {
                // No usable Via: the transport answers the packet's source or drops it.
                assert!(resp.top_via().is_none(), "{name}");
                continue;
            }
            let again = SipMessage::parse_datagram(&resp.to_bytes()).unwrap();
            assert!(
                again.top_via().is_some(),
                "{name}: the 400 must be routable"
            );
            let original = String::from_utf8_lossy(&raw).into_owned();
            let via = again.headers_all("Via");
            assert!(original.contains(via[0].as_str()), "{name}: Via copied");
            if let Some(cid) = again.call_id() {
                assert!(original.contains(&cid), "{name}: Call-ID copied");
            }
        }
    }

    // ---- Field checks on the valid messages ----------------------------------------------

    #[test]
    fn tortuous_invite_reads_right() {
        let m = parse(WSINV);
        assert_eq!(m.method(), Some("INVITE"));
        assert_eq!(m.call_id().as_deref(), Some("wsinv.ndaksdj@192.0.2.1"));
        assert_eq!(m.cseq(), Some((9, "INVITE".to_owned())));
        assert_eq!(m.max_forwards(), Some(68));
        assert_eq!(m.to_tag().as_deref(), Some("1918181833n"));
        assert_eq!(m.from_tag().as_deref(), Some("98asjd8"));
        let top = m.top_via().unwrap();
        assert_eq!(top.host, "192.0.2.2");
        assert_eq!(top.branch.as_deref(), Some("390skdjuw"));
        assert_eq!(top.rport, RPort::Requested);
        assert!(!top.is_rfc3261());
        let vias = m.vias().unwrap();
        assert_eq!(vias.len(), 3);
        assert_eq!(vias[1].transport, "TCP");
        assert_eq!(vias[2].branch.as_deref(), Some("z9hG4bK30239"));
        let routes = m.routes().unwrap();
        assert_eq!(routes.len(), 1);
        assert!(routes[0].is_loose_route());
        assert_eq!(routes[0].param("unknownwith"), Some(Some("value")));
        assert_eq!(
            uri::display_name(&m.header("from").unwrap()).as_deref(),
            Some("Otaru \"City\" Hall")
        );
        assert_eq!(
            m.header("newfangledheader").as_deref(),
            Some("newfangled value continued newfangled value")
        );
        assert_eq!(m.header("Contact"), m.header("m"));
        assert_eq!(m.header("subject").as_deref(), Some(""));
        assert!(m.body().starts_with(b"v=0\r\n"));
        assert!(m.body().ends_with(b"LPC\r\n"));
    }

    #[test]
    fn unusual_method_and_uri_characters_are_kept() {
        let m = parse(INTMETH);
        let method = "!interesting-Method0123456789_*+`.%indeed'~";
        assert_eq!(m.method(), Some(method));
        assert_eq!(m.cseq().unwrap().1, method);
        assert_eq!(m.max_forwards(), Some(255));
        let ruri = m.request_uri().unwrap();
        assert_eq!(ruri.host, "madoguchi.example.jp");
        assert!(ruri.user.unwrap().starts_with("1_unusual.URI~(to-be!sure)"));
        assert_eq!(m.from_tag().as_deref(), Some("_token~1'+`*%!-."));
        // A To with raw control characters cannot take a tag (we never write NUL)...
        let resp = SipMessage::response_to(&m, 501, "Not Implemented", Some("x1"));
        assert_eq!(resp.to_tag(), None);
        // ...but the copied row is byte-exact, so the UAC still matches the response.
        let raw = wire(INTMETH);
        let to_line = raw
            .split(|&b| b == b'\n')
            .find(|l| l.starts_with(b"To:"))
            .unwrap();
        let resp_bytes = resp.to_bytes();
        assert!(resp_bytes.windows(to_line.len()).any(|w| w == to_line));
    }

    #[test]
    fn escaped_uris_stay_escaped_until_asked() {
        let m = parse(ESC01);
        let ruri = m.request_uri().unwrap();
        assert_eq!(
            ruri.user.as_deref(),
            Some("sips%3A0134001234%40example.net")
        );
        assert_eq!(ruri.user_decoded().unwrap(), b"sips:0134001234@example.net");
        assert_eq!(
            uri::user_part(&m.header("To").unwrap()).as_deref(),
            Some("%61lice")
        );
        let null = parse(ESCNULL);
        let to_user = uri::name_addr_uri(&null.header("t").unwrap()).unwrap();
        assert_eq!(to_user.user_decoded().unwrap(), b"null-\0-null");
        assert_eq!(null.headers_all("Contact").len(), 2);
        let e2 = parse(ESC02);
        assert_eq!(e2.method(), Some("RE%47IST%45R"));
        assert_ne!(e2.method(), Some("REGISTER"));
        // `C%6Fntact` is not Contact: escapes do not apply to header names.
        assert_eq!(e2.headers_all("Contact").len(), 2);
    }

    #[test]
    fn display_name_without_space_and_semicolon_user() {
        let m = parse(LWSDISP);
        assert_eq!(
            uri::display_name(&m.header("From").unwrap()).as_deref(),
            Some("caller")
        );
        assert_eq!(m.from_tag().as_deref(), Some("323"));
        let s = parse(SEMIURI);
        let ruri = s.request_uri().unwrap();
        assert_eq!(ruri.user.as_deref(), Some("0134001234;par=u%40example.net"));
        assert_eq!(ruri.host, "madoguchi.example.jp");
        assert!(ruri.params.is_empty());
    }

    #[test]
    fn trailing_octets_in_a_datagram_are_not_forwarded() {
        let raw = wire(DBLREQ);
        let m = SipMessage::parse_datagram(&raw).unwrap();
        assert_eq!(m.method(), Some("REGISTER"));
        assert!(m.body().is_empty());
        let out = m.to_bytes();
        assert!(out.len() < raw.len());
        assert!(!String::from_utf8_lossy(&out).contains("INVITE"));
    }

    #[test]
    fn unknown_transports_and_schemes_parse() {
        let t = parse(TRANSPORTS);
        let kinds: Vec<String> = t.vias().unwrap().into_iter().map(|v| v.transport).collect();
        assert_eq!(kinds, ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
        let u = parse(UNKSCM).request_uri().unwrap();
        assert_eq!(u.scheme, uri::Scheme::Other("nobodyknowsthisscheme".into()));
        assert_eq!(u.opaque.as_deref(), Some("totallyopaquecontent"));
        let n = parse(NOVELSC).request_uri().unwrap();
        assert_eq!(n.scheme, uri::Scheme::Other("soap.beep".into()));
        let tel = parse(TELURI).request_uri().unwrap();
        assert_eq!(tel.scheme, uri::Scheme::Tel);
        assert_eq!(tel.user.as_deref(), Some("0134-00-1234"));
        assert_eq!(tel.param("phone-context"), Some(Some("+81-134")));
        assert_eq!(tel.to_string(), "tel:0134-00-1234;phone-context=+81-134");
        assert_eq!(
            uri::user_part(&parse(TELURI).header("From").unwrap()).as_deref(),
            Some("090-0000-1111")
        );
    }

    #[test]
    fn responses_with_odd_reasons() {
        let u = parse(UNREASON);
        assert_eq!(u.status(), Some(200));
        assert!(u.reason().unwrap().starts_with("= 2**3 * 5**2 но"));
        let n = parse(NOREASON);
        assert_eq!(n.status(), Some(100));
        assert_eq!(n.reason().as_deref(), Some(""));
        assert!(!n.is_request());
        assert_eq!(n.method(), None);
        let b = parse(BCAST);
        assert_eq!(
            b.top_via().unwrap().received.as_deref(),
            Some("255.255.255.255")
        );
    }

    #[test]
    fn multipart_and_unknown_bodies_are_carried_whole() {
        let m = parse(MPART01);
        assert!(m.body().ends_with(b"--7a9cbec02ceef655--\r\n"));
        assert!(String::from_utf8_lossy(m.body()).contains("予約の確認です"));
        let u = parse(INVUT);
        assert_eq!(u.header("c").as_deref(), Some("application/unknownformat"));
        assert!(u.body().starts_with(b"<audio>"));
    }

    #[test]
    fn udp_without_content_length_takes_the_rest_of_the_datagram() {
        let m = parse(NOCL);
        assert_eq!(m.body(), b"hello\r\nworld\r\n");
    }

    #[test]
    fn ipv6_references_parse_everywhere() {
        let m = parse(IPV6);
        let ruri = m.request_uri().unwrap();
        assert_eq!(ruri.host, "[2001:db8::10]");
        assert_eq!(ruri.port, Some(5070));
        assert_eq!(ruri.host_ip(), Some("2001:db8::10".parse().unwrap()));
        let via = m.top_via().unwrap();
        assert_eq!(via.host, "[2001:db8::9]");
        assert_eq!(via.sent_by(), "[2001:db8::9]:5062");
        assert_eq!(via.response_target(), ("2001:db8::9".to_owned(), 5062));
        let from = uri::name_addr_uri(&m.header("From").unwrap()).unwrap();
        assert_eq!(from.host, "[2001:db8::9]");
        assert_eq!(from.port, Some(5062));
    }

    #[test]
    fn headers_by_any_spelling() {
        let m = parse(COMPACT180);
        assert_eq!(m.header("Call-ID"), m.header("i"));
        assert_eq!(m.header("CALL-id"), m.header("I"));
        assert_eq!(m.headers_all("via").len(), 2);
        assert_eq!(m.headers_all("V").len(), 2);
        assert_eq!(m.header("x-absent"), None);
        let b = parse(BEXT01);
        assert_eq!(
            b.headers_all("proxy-require"),
            ["noProxiesSupportThis, norDoAnyProxiesSupportThis"]
        );
        let f = parse(FOLDED);
        assert_eq!(f.from_tag().as_deref(), Some("fold1"));
        assert_eq!(f.cseq(), Some((7, "OPTIONS".to_owned())));
        assert_eq!(f.via_count(), 2);
        assert_eq!(
            f.header("subject").as_deref(),
            Some("predicted folded subject")
        );
    }

    #[test]
    fn value_level_faults_name_their_header() {
        let reason = |t: &str| validate_request(&parse(t)).unwrap_err();
        assert_eq!(reason(BADINV01), (400, "Malformed Via"));
        assert_eq!(reason(SCALAR02).0, 400);
        assert_eq!(reason(QUOTBAL), (400, "Malformed To"));
        assert_eq!(reason(ESCRURI), (400, "Request-URI Has Headers"));
        assert_eq!(reason(REGBADCT), (400, "Malformed Contact"));
        assert_eq!(reason(BADVERS), (505, "Version Not Supported"));
        assert_eq!(reason(MISMATCH01), (400, "CSeq Method Mismatch"));
        assert_eq!(reason(MISMATCH02), (400, "CSeq Method Mismatch"));
        assert_eq!(reason(NOVIA), (400, "Missing Via"));
        assert_eq!(reason(NEGMF), (400, "Malformed Max-Forwards"));
        assert_eq!(reason(CSEQ_NO_METHOD), (400, "Malformed CSeq"));
        assert_eq!(validate_response(&parse(SCALARLG)), Err("Malformed CSeq"));
    }

    #[test]
    fn framing_faults_answer_400_with_the_request_headers() {
        for (text, reason) in [
            (CLERR, "Content-Length Exceeds Body"),
            (NCL, "Bad Content-Length"),
            (GARBAGE_CL, "Bad Content-Length"),
            (MCL01, "Duplicate Content-Length"),
        ] {
            let raw = wire(text);
            let Err(WireError::BadRequest {
                status,
                reason: got,
                response,
            }) = SipMessage::parse_datagram(&raw)
            else {
                panic!("{reason}: expected BadRequest");
            };
            assert_eq!((status, got), (400, reason));
            let req_cid = String::from_utf8_lossy(&raw)
                .lines()
                .find_map(|l| l.strip_prefix("Call-ID: ").map(str::to_owned))
                .unwrap();
            assert_eq!(response.call_id().as_deref(), Some(req_cid.trim()));
            assert!(
                response.to_tag().is_some(),
                "§8.2.6.2: our 400 carries a To tag"
            );
            let bytes = error_response_for_unparseable(&raw).unwrap();
            assert!(bytes.starts_with(format!("SIP/2.0 400 {reason}\r\n").as_bytes()));
        }
        assert!(error_response_for_unparseable(&wire(CLERR_RESPONSE)).is_none());
        assert!(error_response_for_unparseable(&wire(ZEROMF)).is_none());
    }

    #[test]
    fn garbage_and_truncation_are_dropped() {
        for raw in [
            &b""[..],
            b"\r\n\r\n",
            b"hello",
            b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\n",
            b"OPTIONS sip:x@y SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\nCall-ID: a\n\n",
            b"\0\0\0\0\r\n\r\n",
        ] {
            assert_eq!(outcome(raw), Drop, "{:?}", String::from_utf8_lossy(raw));
        }
        assert!(matches!(
            SipMessage::parse_datagram(&vec![b'a'; MAX_DATAGRAM_BYTES + 1]),
            Err(WireError::Drop { .. })
        ));
    }

    // ---- Pitfall 1: header forms on the routing path ----------------------------------------

    const COMBINED_VIA_RESPONSE: &str = "SIP/2.0 180 Ringing
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKmdg1.2a.5f3e9c01.1 , SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKtrunk01;received=198.51.100.7
Via: SIP/2.0/TCP 198.51.100.3;branch=z9hG4bKsbc
From: <sip:0134009999@trunk.example.net>;tag=tr1
To: <sip:0134001234@madoguchi.example.jp>;tag=desk3a
Call-ID: combined.1@198.51.100.7
CSeq: 101 INVITE
Content-Length: 0

";

    #[test]
    fn pitfall1_combined_via_loses_only_our_value() {
        let mut m = parse(COMBINED_VIA_RESPONSE);
        let ours = m.top_via().unwrap();
        assert_eq!(
            branch::decode(ours.branch.as_deref().unwrap()),
            Some(branch::BranchId {
                slot: 0x2a,
                generation: 0x5f3e9c01,
                branch: 1
            })
        );
        assert!(m.pop_top_via_value());
        let out = String::from_utf8(m.to_bytes().to_vec()).unwrap();
        assert!(out.contains(
            "\r\nVia: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKtrunk01;received=198.51.100.7\r\n"
        ));
        assert!(out.contains("\r\nVia: SIP/2.0/TCP 198.51.100.3;branch=z9hG4bKsbc\r\n"));
        assert!(!out.contains("z9hG4bKmdg1"));
        let vias = m.vias().unwrap();
        assert_eq!(vias.len(), 2);
        assert_eq!(vias[0].branch.as_deref(), Some("z9hG4bKtrunk01"));
        // Everything but the edited row is untouched.
        let before = String::from_utf8(wire(COMBINED_VIA_RESPONSE)).unwrap();
        let untouched = before.split_once("Via: SIP/2.0/TCP").unwrap().1;
        assert!(out.ends_with(untouched));
        // A single-value row goes away entirely.
        assert!(m.pop_top_via_value());
        assert!(m.pop_top_via_value());
        assert_eq!(m.via_count(), 0);
        assert!(!m.pop_top_via_value());
    }

    #[test]
    fn pitfall1_folded_combined_via_pops_cleanly() {
        let mut m = parse(FOLDED);
        assert!(m.pop_top_via_value());
        let top = m.top_via().unwrap();
        assert_eq!(top.branch.as_deref(), Some("z9hG4bKfold2"));
        assert_eq!(m.via_count(), 1);
        assert!(SipMessage::parse_datagram(&m.to_bytes()).is_ok());
    }

    #[test]
    fn pitfall1_compact_via_in_a_response_matches_our_branch() {
        let m = parse(COMPACT180);
        assert_eq!(validate_response(&m), Ok(()));
        let id = branch::decode(&m.top_via().unwrap().branch.unwrap()).unwrap();
        assert_eq!((id.slot, id.generation, id.branch), (0x2a, 0x5f3e9c01, 1));
        assert_eq!(m.call_id().as_deref(), Some("compact.a1b2c3@198.51.100.7"));
        assert_eq!(m.to_tag().as_deref(), Some("desk3a"));
        assert_eq!(m.cseq(), Some((101, "INVITE".to_owned())));
    }

    #[test]
    fn pitfall1_rfc2543_invite_gets_a_sensible_answer() {
        let m = parse(INV2543);
        assert_eq!(validate_request(&m), Ok(()));
        assert_eq!(m.max_forwards(), Some(70), "absent means 70");
        assert_eq!(m.from_tag(), None);
        let via = m.top_via().unwrap();
        assert_eq!(via.branch, None);
        assert!(!via.is_rfc3261());
        let r = SipMessage::response_to(&m, 486, "Busy Here", Some("mdgbusy"));
        let again = SipMessage::parse_datagram(&r.to_bytes()).unwrap();
        assert_eq!(again.status(), Some(486));
        assert_eq!(again.to_tag().as_deref(), Some("mdgbusy"));
        assert_eq!(
            again.header("Via").as_deref(),
            Some("SIP/2.0/UDP 192.0.2.15")
        );
        assert_eq!(again.call_id(), m.call_id());
        let mut fwd = m.clone();
        assert_eq!(fwd.decrement_max_forwards(), Ok(69));
        assert_eq!(fwd.header("Max-Forwards").as_deref(), Some("69"));
    }

    #[test]
    fn pitfall1_unknown_method_is_a_method() {
        let m = parse(
            MISMATCH02
                .replace("CSeq: 8 INVITE", "CSeq: 8 NEWMETHOD")
                .as_str(),
        );
        assert_eq!(validate_request(&m), Ok(()));
        assert_eq!(m.method(), Some("NEWMETHOD"));
        let r = SipMessage::response_to(&m, 501, "Not Implemented", Some("t501"));
        assert_eq!(r.cseq(), Some((8, "NEWMETHOD".to_owned())));
    }

    // ---- Pitfall 2: framing ---------------------------------------------------------------

    #[test]
    fn pitfall2_stream_frames_at_any_split_and_keeps_earlier_messages() {
        let one = wire(ESC01);
        let two = wire(COMPACT180);
        let mut stream = b"\r\n\r\n".to_vec();
        stream.extend_from_slice(&one);
        stream.extend_from_slice(&two);
        for split in 0..=stream.len() {
            let mut f = StreamFramer::new();
            let (a, b) = stream.split_at(split);
            let mut got = f.push(a).messages;
            let rest = f.push(b);
            assert!(rest.error.is_none(), "split {split}");
            got.extend(rest.messages);
            assert_eq!(got.len(), 2, "split {split}");
            assert_eq!(got[0].to_bytes().as_ref(), one.as_slice());
            assert_eq!(got[1].to_bytes().as_ref(), two.as_slice());
            assert_eq!(f.take_keepalives(), 2);
            assert_eq!(f.pending_bytes(), 0);
        }
    }

    #[test]
    fn pitfall2_stream_requires_content_length() {
        let mut f = StreamFramer::new();
        let mut bytes = wire(ZEROMF);
        bytes.extend_from_slice(&wire(NOCL));
        let frames = f.push(&bytes);
        assert_eq!(
            frames.messages.len(),
            1,
            "the good message before it survives"
        );
        let Some(WireError::BadRequest { status, reason, .. }) = frames.error else {
            panic!("expected a 400");
        };
        assert_eq!((status, reason), (400, "Missing Content-Length"));
        assert!(f.is_broken());
        assert!(matches!(
            f.push(&wire(ZEROMF)).error,
            Some(WireError::Drop { .. })
        ));
    }

    #[test]
    fn pitfall2_stream_limits_and_bad_lengths() {
        let mut f = StreamFramer::with_limit(1024);
        let frames = f.push(&wire(&CLERR.replace("9999", "5000")));
        assert!(matches!(
            frames.error,
            Some(WireError::BadRequest { status: 413, .. })
        ));
        let mut f = StreamFramer::with_limit(1024);
        let frames = f.push(&vec![b'A'; 2000]);
        assert!(matches!(frames.error, Some(WireError::Drop { .. })));
        for bad in [NCL, MCL01, GARBAGE_CL] {
            let mut f = StreamFramer::new();
            assert!(matches!(
                f.push(&wire(bad)).error,
                Some(WireError::BadRequest { status: 400, .. })
            ));
        }
        let mut f = StreamFramer::new();
        let resp = wire(CLERR_RESPONSE).replace_ascii("Content-Length: 9999", "Content-Length: x");
        assert!(matches!(f.push(&resp).error, Some(WireError::Drop { .. })));
        // A body still in flight is not an error.
        let mut f = StreamFramer::new();
        let frames = f.push(&wire(CLERR));
        assert!(frames.messages.is_empty() && frames.error.is_none());
        assert!(f.pending_bytes() > 0);
    }

    trait ReplaceAscii {
        fn replace_ascii(&self, from: &str, to: &str) -> Vec<u8>;
    }
    impl ReplaceAscii for Vec<u8> {
        fn replace_ascii(&self, from: &str, to: &str) -> Vec<u8> {
            String::from_utf8_lossy(self).replace(from, to).into_bytes()
        }
    }

    // ---- Pitfall 4: CANCEL copied exactly ---------------------------------------------------

    const FORKED_INVITE: &str = "INVITE sip:desk3@192.0.2.40:5062;transport=tcp SIP/2.0
Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bKmdg1.2a.5f3e9c01.1;rport
v: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKtrunk01;received=198.51.100.7
Route:   <sip:pbx-edge.example.net;lr> ,<sip:desk-gw.example.net;lr>
Max-Forwards: 69
f: \"0134-00-9999\"   <sip:0134009999@trunk.example.net;user=phone>;tag=tr1
t:<sip:0134001234@madoguchi.example.jp>
i: cancel.a1b2c3@198.51.100.7
CSeq: 101 INVITE
Contact: <sip:0134009999@198.51.100.7>
Content-Type: application/sdp
Content-Length: {CL}

v=0
";

    fn line_of<'a>(text: &'a str, prefix: &str) -> &'a str {
        text.split("\r\n").find(|l| l.starts_with(prefix)).unwrap()
    }

    #[test]
    fn pitfall4_cancel_copies_the_invite_headers_exactly() {
        let invite = parse(FORKED_INVITE);
        let cancel = SipMessage::cancel_for(&invite, Some(REASON_COMPLETED_ELSEWHERE)).unwrap();
        let text = String::from_utf8(cancel.to_bytes().to_vec()).unwrap();
        let inv = String::from_utf8(wire(FORKED_INVITE)).unwrap();
        assert!(text.starts_with("CANCEL sip:desk3@192.0.2.40:5062;transport=tcp SIP/2.0\r\n"));
        for prefix in ["Route:", "f:", "t:", "i:"] {
            assert!(
                text.contains(&format!("\r\n{}\r\n", line_of(&inv, prefix))),
                "{prefix} row copied byte for byte"
            );
        }
        assert_eq!(cancel.via_count(), 1, "top Via only");
        assert_eq!(
            cancel.header("Via").as_deref(),
            Some("SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bKmdg1.2a.5f3e9c01.1;rport")
        );
        assert_eq!(cancel.cseq(), Some((101, "CANCEL".to_owned())));
        assert_eq!(cancel.max_forwards(), Some(70));
        assert_eq!(
            cancel.header("Reason").as_deref(),
            Some(REASON_COMPLETED_ELSEWHERE)
        );
        assert!(cancel.body().is_empty());
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
        let back = SipMessage::parse_datagram(text.as_bytes()).unwrap();
        assert_eq!(validate_request(&back), Ok(()));
        assert_eq!(back.routes().unwrap().len(), 2);
        assert!(!text.contains("Contact"), "§9.1 copies no Contact");
    }

    #[test]
    fn pitfall4_cancel_of_a_combined_top_via_takes_the_first_value_only() {
        let invite = parse(
            COMBINED_VIA_RESPONSE
                .replace("SIP/2.0 180 Ringing", "INVITE sip:desk3@192.0.2.40 SIP/2.0")
                .as_str(),
        );
        let cancel = SipMessage::cancel_for(&invite, None).unwrap();
        assert_eq!(cancel.via_count(), 1);
        assert_eq!(
            cancel.top_via().unwrap().branch.as_deref(),
            Some("z9hG4bKmdg1.2a.5f3e9c01.1")
        );
        assert_eq!(cancel.header("Reason"), None);
        assert!(SipMessage::cancel_for(&parse(COMPACT180), None).is_err());
    }

    #[test]
    fn ack_for_a_non_2xx_takes_to_from_the_response() {
        let invite = parse(FORKED_INVITE);
        let mut busy = SipMessage::response_to(&invite, 486, "Busy Here", Some("d3busy"));
        assert!(busy.pop_top_via_value());
        let ack = SipMessage::ack_for_non2xx(&invite, &busy).unwrap();
        assert_eq!(ack.method(), Some("ACK"));
        assert_eq!(ack.request_uri_text(), invite.request_uri_text());
        assert_eq!(ack.to_tag().as_deref(), Some("d3busy"));
        assert_eq!(ack.from_tag().as_deref(), Some("tr1"));
        assert_eq!(ack.cseq(), Some((101, "ACK".to_owned())));
        assert_eq!(ack.via_count(), 1);
        assert_eq!(ack.top_via(), invite.top_via());
        assert_eq!(ack.routes().unwrap().len(), 2);
        assert_eq!(validate_request(&ack), Ok(()));
    }

    // ---- Proxy edits ------------------------------------------------------------------------

    #[test]
    fn received_and_rport_follow_rfc3581() {
        let src: IpAddr = "203.0.113.9".parse().unwrap();
        // rport requested: both stamped even when the host matches.
        let mut m = parse(ESC01);
        assert_eq!(m.set_received_rport(src, 40123), Ok(true));
        let v = m.top_via().unwrap();
        assert_eq!(v.received.as_deref(), Some("203.0.113.9"));
        assert_eq!(v.rport, RPort::Port(40123));
        assert_eq!(v.response_target(), ("203.0.113.9".to_owned(), 40123));
        // Same host, no rport: nothing to say.
        let mut same = parse(INV2543);
        assert_eq!(
            same.set_received_rport("192.0.2.15".parse().unwrap(), 5060),
            Ok(false)
        );
        assert_eq!(same.to_bytes().as_ref(), wire(INV2543).as_slice());
        // Different host, no rport: received only.
        let mut diff = parse(INV2543);
        assert_eq!(diff.set_received_rport(src, 5070), Ok(true));
        let v = diff.top_via().unwrap();
        assert_eq!(v.received.as_deref(), Some("203.0.113.9"));
        assert_eq!(v.rport, RPort::Absent);
        assert_eq!(v.response_target(), ("203.0.113.9".to_owned(), 5060));
        // Same host with rport: received is still added (RFC 3581 §4).
        let mut v6 = parse(IPV6);
        let ip6: IpAddr = "2001:db8::9".parse().unwrap();
        assert_eq!(v6.set_received_rport(ip6, 5062), Ok(true));
        assert_eq!(
            v6.header("Via").as_deref(),
            Some("SIP/2.0/UDP [2001:db8::9]:5062;rport=5062;branch=z9hG4bKas3-111;received=2001:db8::9")
        );
        // A stale received is replaced, and only the first value of a combined row changes.
        let mut c = parse(COMBINED_VIA_RESPONSE);
        assert_eq!(c.set_received_rport(src, 5060), Ok(true));
        let vias = c.vias().unwrap();
        assert_eq!(vias[0].received.as_deref(), Some("203.0.113.9"));
        assert_eq!(vias[1].received.as_deref(), Some("198.51.100.7"));
        assert_eq!(vias.len(), 3);
        let mut stale = parse(BCAST);
        assert_eq!(stale.set_received_rport(src, 5060), Ok(true));
        assert_eq!(
            stale.top_via().unwrap().received.as_deref(),
            Some("203.0.113.9")
        );
        assert_eq!(stale.headers_all("Via")[0].matches("received").count(), 1);
        // The tortuous spacing survives and stays parseable.
        let mut w = parse(WSINV);
        assert_eq!(w.set_received_rport(src, 1), Ok(true));
        assert_eq!(w.top_via().unwrap().rport, RPort::Port(1));
        assert!(SipMessage::parse_datagram(&w.to_bytes()).is_ok());
        assert_eq!(
            parse(NOVIA).set_received_rport(src, 1),
            Err(EditError::Missing("Via"))
        );
    }

    #[test]
    fn max_forwards_reads_decrements_and_stops_at_zero() {
        let mut m = parse(WSINV);
        assert_eq!(m.decrement_max_forwards(), Ok(67));
        assert_eq!(m.header("max-forwards").as_deref(), Some("67"));
        let mut z = parse(ZEROMF);
        assert!(z.max_forwards_is_zero());
        assert!(z.decrement_max_forwards().is_err());
        assert_eq!(z.to_bytes().as_ref(), wire(ZEROMF).as_slice());
        let mut g = parse(GARBAGEMF);
        assert_eq!(g.max_forwards(), None);
        assert_eq!(
            g.decrement_max_forwards(),
            Err(EditError::Malformed("Max-Forwards"))
        );
        assert!(!g.max_forwards_is_zero());
    }

    #[test]
    fn route_and_record_route_edits() {
        let mut m = parse(ROUTES);
        let hosts = |m: &SipMessage| -> Vec<String> {
            m.routes().unwrap().into_iter().map(|u| u.host).collect()
        };
        assert_eq!(
            hosts(&m),
            ["madoguchi.example.jp", "b.example.net", "c.example.net"]
        );
        assert_eq!(m.routes().unwrap()[2].transport().as_deref(), Some("tcp"));
        assert_eq!(m.remove_first_route(), Ok(true));
        assert_eq!(hosts(&m), ["b.example.net", "c.example.net"]);
        assert!(m
            .to_bytes()
            .windows(33)
            .any(|w| w == b"\r\nRoute: <sip:b.example.net;lr>\r\n"));
        m.add_record_route("sip:192.0.2.1:5060;transport=udp;lr")
            .unwrap();
        m.add_record_route("<sip:192.0.2.1:5061;transport=tcp;lr>")
            .unwrap();
        let rr = m.record_routes().unwrap();
        assert_eq!(rr.len(), 3);
        assert_eq!(rr[0].port, Some(5061));
        assert_eq!(rr[1].transport().as_deref(), Some("udp"));
        assert_eq!(rr[2].host, "sbc.example.net");
        assert!(m.add_record_route("<sip:bad host>").is_err());
        assert_eq!(m.remove_first_route(), Ok(true));
        assert_eq!(m.remove_first_route(), Ok(true));
        assert_eq!(m.remove_first_route(), Ok(false));
        assert!(SipMessage::parse_datagram(&m.to_bytes()).is_ok());
        let resp = parse(BCAST);
        assert!(resp.record_routes().unwrap().is_empty());
    }

    #[test]
    fn request_uri_and_via_pushes() {
        let mut m = parse(WSINV);
        m.set_request_uri("sip:desk3@192.0.2.40:5062;transport=tcp")
            .unwrap();
        assert!(m
            .to_bytes()
            .starts_with(b"INVITE sip:desk3@192.0.2.40:5062;transport=tcp SIP/2.0\r\nTO :\r\n"));
        assert_eq!(m.request_uri().unwrap().transport().as_deref(), Some("tcp"));
        assert!(m.set_request_uri("sip:bad host").is_err());
        let ours = branch::encode(branch::BranchId {
            slot: 7,
            generation: 1,
            branch: 0,
        });
        m.push_via(&format!("SIP/2.0/TCP 192.0.2.1:5060;branch={ours};rport"))
            .unwrap();
        assert_eq!(m.top_via().unwrap().branch.as_deref(), Some(ours.as_str()));
        assert_eq!(m.via_count(), 4);
        assert!(m
            .push_via("SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b")
            .is_err());
        assert!(m.push_via("garbage").is_err());
        assert!(m.push_via("SIP/2.0/UDP a\r\nX: injected").is_err());
        assert!(m.to_bytes().starts_with(b"INVITE sip:desk3@192.0.2.40:5062;transport=tcp SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bKmdg1.7.1.0;rport\r\n"));
        assert_eq!(outcome(&m.to_bytes()), Process);
    }

    #[test]
    fn responses_carry_what_rfc3261_8_2_6_copies() {
        let inv = parse(FORKED_INVITE);
        let mut r = SipMessage::response_to(&inv, 480, "Temporarily Unavailable", Some("mdg480"));
        r.add_header("Retry-After", "600").unwrap();
        r.add_header(
            "WWW-Authenticate",
            "Digest realm=\"otaru\", algorithm=SHA-256, nonce=\"a\"",
        )
        .unwrap();
        r.add_header(
            "WWW-Authenticate",
            "Digest realm=\"otaru\", algorithm=MD5, nonce=\"b\"",
        )
        .unwrap();
        r.add_header("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS")
            .unwrap();
        r.add_header("Supported", "path, outbound").unwrap();
        let text = String::from_utf8(r.to_bytes().to_vec()).unwrap();
        assert!(text.starts_with("SIP/2.0 480 Temporarily Unavailable\r\n"));
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
        let back = SipMessage::parse_datagram(text.as_bytes()).unwrap();
        assert_eq!(validate_response(&back), Ok(()));
        assert_eq!(back.via_count(), 2, "every Via, in order");
        assert_eq!(back.vias().unwrap(), inv.vias().unwrap());
        assert_eq!(back.to_tag().as_deref(), Some("mdg480"));
        assert_eq!(back.from_tag().as_deref(), Some("tr1"));
        assert_eq!(back.call_id(), inv.call_id());
        assert_eq!(back.cseq(), Some((101, "INVITE".to_owned())));
        assert_eq!(back.headers_all("www-authenticate").len(), 2);
        assert_eq!(back.header("Retry-After").as_deref(), Some("600"));
        // An existing To tag is never replaced, and a bad status or reason cannot break the line.
        let again = SipMessage::response_to(&back, 999, "Bad\r\nInjected: 1", Some("other"));
        assert_eq!(again.to_tag().as_deref(), Some("mdg480"));
        assert_eq!(again.status(), Some(500));
        assert_eq!(again.reason().as_deref(), Some("BadInjected: 1"));
        // A 100 echoes Timestamp and may go without a tag.
        let mut with_ts = inv.clone();
        with_ts.add_header("Timestamp", "54").unwrap();
        let trying = SipMessage::response_to(&with_ts, 100, "Trying", None);
        assert_eq!(trying.header("Timestamp").as_deref(), Some("54"));
        assert_eq!(trying.to_tag(), None);
    }

    #[test]
    fn generic_header_edits_refuse_framing_and_injection() {
        let mut m = parse(ROUTES);
        assert!(m.set_header("Content-Length", "5").is_err());
        assert!(m.set_header("l", "5").is_err());
        assert!(m.remove_header("content-length").is_err());
        assert!(m.set_header("Subject", "a\r\nVia: evil").is_err());
        assert!(m.set_header("Bad Name", "x").is_err());
        m.set_header("Max-Forwards", "10").unwrap();
        assert_eq!(m.max_forwards(), Some(10));
        assert_eq!(m.remove_header("Record-Route"), Ok(1));
        m.add_header_top("Route", "<sip:first.example.net;lr>")
            .unwrap();
        assert_eq!(m.routes().unwrap()[0].host, "first.example.net");
        m.set_body(
            Some("application/sdp"),
            SDP.replace('\n', "\r\n").as_bytes(),
        )
        .unwrap();
        let back = SipMessage::parse_datagram(&m.to_bytes()).unwrap();
        assert_eq!(back.body(), SDP.replace('\n', "\r\n").as_bytes());
        assert_eq!(
            back.header("Content-Type").as_deref(),
            Some("application/sdp")
        );
        let mut tagged = parse(ZEROMF);
        tagged.set_to_tag("abc").unwrap();
        assert_eq!(tagged.to_tag().as_deref(), Some("abc"));
        assert_eq!(
            tagged.set_to_tag("def"),
            Err(EditError::AlreadySet("To tag"))
        );
        assert_eq!(
            parse(ZEROMF).set_to_tag("a b"),
            Err(EditError::InvalidValue("tag"))
        );
    }

    // ---- uri, branch, ids --------------------------------------------------------------------

    #[test]
    fn uris_parse_and_write_back() {
        for text in [
            "sip:0134001234@madoguchi.example.jp",
            "sips:desk3@[2001:db8::1]:5061;transport=tls",
            "sip:192.0.2.1:5060;transport=udp;lr",
            "sip:desk3:secret@example.net;maddr=192.0.2.9?Subject=hi&Priority=urgent",
            "tel:+81-134-00-1234",
            "sip:%61lice@example.net;n%61me=v%61lue",
        ] {
            assert_eq!(uri::parse(text).unwrap().to_string(), text);
        }
        let u = uri::parse("sip:[::1]:5060;lr").unwrap();
        assert_eq!(u.host, "[::1]");
        assert_eq!(u.host_ip(), Some("::1".parse().unwrap()));
        assert!(u.is_loose_route());
        let mut u = uri::parse("sip:desk3@192.0.2.40").unwrap();
        u.set_param("transport", Some("tcp"));
        u.port = Some(5062);
        assert_eq!(u.to_string(), "sip:desk3@192.0.2.40:5062;transport=tcp");
        assert!(uri::parse("sip:a b@c").is_err());
        assert!(uri::parse("<sip:a@b>").is_err());
        let na = "\"Otaru \\\"Desk\\\" 3\" <sip:desk3@madoguchi.example.jp;user=phone>;tag=9x";
        assert_eq!(uri::display_name(na).as_deref(), Some("Otaru \"Desk\" 3"));
        assert_eq!(uri::user_part(na).as_deref(), Some("desk3"));
        assert_eq!(
            uri::name_addr_uri(na).unwrap().param("user"),
            Some(Some("phone"))
        );
        assert_eq!(
            uri::user_part("sip:0901234@example.net;tag=1").as_deref(),
            Some("0901234")
        );
        assert_eq!(uri::display_name("<sip:a@b>"), None);
        assert_eq!(uri::user_part("\"unterminated <sip:a@b>"), None);
    }

    #[test]
    fn branches_round_trip_and_reject_strangers() {
        for id in [
            branch::BranchId {
                slot: 0,
                generation: 0,
                branch: 0,
            },
            branch::BranchId {
                slot: u32::MAX,
                generation: u32::MAX,
                branch: u16::MAX,
            },
            branch::BranchId {
                slot: 4095,
                generation: branch::random_generation(),
                branch: 3,
            },
        ] {
            let b = branch::encode(id);
            assert!(branch::is_rfc3261(&b));
            assert!(b.bytes().all(is_token_char));
            assert_eq!(branch::decode(&b), Some(id));
        }
        for foreign in [
            "z9hG4bKtrunk01",
            "z9hG4bKmdg1.",
            "z9hG4bKmdg1.1.2",
            "z9hG4bKmdg1.1.2.3.4",
            "z9hG4bKmdg1.+1.2.3",
            "z9hG4bKmdg1.1.2.10000",
            "z9hG4bKmdg1.123456789.2.3",
            "Z9HG4BKMDG1.1.2.3",
            "390skdjuw",
            "",
        ] {
            assert_eq!(branch::decode(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn tags_and_call_ids_are_fresh() {
        let tags: std::collections::HashSet<String> = (0..1000).map(|_| new_tag()).collect();
        assert_eq!(tags.len(), 1000);
        let id = new_call_id();
        assert_eq!(id.len(), 32);
        assert_ne!(id, new_call_id());
        assert!(tags
            .iter()
            .all(|t| t.len() == 16 && t.bytes().all(is_token_char)));
    }

    #[test]
    fn messages_and_errors_cross_tasks() {
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<SipMessage>();
        shareable::<WireError>();
        shareable::<StreamFramer>();
        shareable::<uri::SipUri>();
    }

    // ---- No panic on arbitrary bytes ---------------------------------------------------------

    /// Every accessor and edit, on whatever parsed; none may panic.
    fn exercise(m: &SipMessage) {
        let mut m = m.clone();
        let _ = (
            m.method(),
            m.status(),
            m.reason(),
            m.request_uri(),
            m.request_uri_text(),
        );
        let _ = (
            m.call_id(),
            m.cseq(),
            m.from_tag(),
            m.to_tag(),
            m.top_via(),
            m.vias(),
        );
        let _ = (
            m.via_count(),
            m.routes(),
            m.record_routes(),
            m.max_forwards(),
            m.body().len(),
        );
        let _ = (m.header("via"), m.headers_all("route"));
        let _ = validate_request(&m);
        let _ = validate_response(&m);
        if let Some(f) = m.header("From") {
            let _ = (uri::user_part(&f), uri::display_name(&f));
        }
        let r = SipMessage::response_to(&m, 400, "Bad Request", Some("fz"));
        let _ = SipMessage::parse_datagram(&r.to_bytes());
        let _ = SipMessage::cancel_for(&m, Some(REASON_COMPLETED_ELSEWHERE));
        let _ = SipMessage::ack_for_non2xx(&m, &r);
        let _ = m.set_received_rport("192.0.2.1".parse().unwrap(), 5060);
        let _ = m.decrement_max_forwards();
        let _ = m.remove_first_route();
        let _ = m.add_record_route("sip:192.0.2.1;lr");
        let _ = m.set_to_tag("t");
        let _ = m.pop_top_via_value();
        let _ = m.push_via("SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx");
        let _ = SipMessage::parse_datagram(&m.to_bytes());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let seeds: Vec<Vec<u8>> = CASES.iter().map(|(_, t, _)| wire(t)).collect();
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        const TOKENS: &[&[u8]] = &[
            b"\r\n",
            b"\r\n ",
            b",",
            b";",
            b"\"",
            b"<",
            b">",
            b":",
            b"%",
            b"%0",
            b"\0",
            b"\n",
            b"\r",
            b"[",
            b"]",
            b"=",
            b" ",
            b"\t",
            b"SIP/2.0",
            b"l: 99999\r\n",
            b"\xff\xfe",
            b"z9hG4bKmdg1.",
            b"Via: ",
            b"v:",
        ];
        let mut parsed = 0;
        for i in 0..4000 {
            let mut buf = seeds[i % seeds.len()].clone();
            for _ in 0..(1 + next() % 6) {
                let pos = if buf.is_empty() {
                    0
                } else {
                    (next() as usize) % buf.len()
                };
                match next() % 5 {
                    0 => {
                        if !buf.is_empty() {
                            buf[pos] = next() as u8;
                        }
                    }
                    1 => {
                        let end = (pos + (next() as usize % 16)).min(buf.len());
                        buf.drain(pos..end);
                    }
                    2 => {
                        let t = TOKENS[(next() as usize) % TOKENS.len()];
                        buf.splice(pos..pos, t.iter().copied());
                    }
                    3 => buf.truncate(pos),
                    _ => {
                        let end = (pos + (next() as usize % 32)).min(buf.len());
                        let chunk = buf[pos..end].to_vec();
                        buf.splice(pos..pos, chunk);
                    }
                }
            }
            match SipMessage::parse_datagram(&buf) {
                Ok(m) => {
                    parsed += 1;
                    exercise(&m);
                }
                Err(e) => {
                    if let Some(r) = e.response() {
                        exercise(r);
                    }
                }
            }
            let mut f = StreamFramer::with_limit(4096);
            let cut = if buf.is_empty() {
                0
            } else {
                (next() as usize) % buf.len()
            };
            let frames = f.push(&buf[..cut]);
            for m in frames
                .messages
                .iter()
                .chain(f.push(&buf[cut..]).messages.iter())
            {
                exercise(m);
            }
            let _ = error_response_for_unparseable(&buf);
        }
        assert!(
            parsed > 500,
            "the mutations should not all be fatal ({parsed})"
        );
    }
}

/// A digest client, for our SHA-256 test phone and (later) registering with a carrier.
pub mod digest_client {
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
}
