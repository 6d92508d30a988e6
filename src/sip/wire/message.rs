//! SIP messages as the proxy sees them (RFC 3261 §7, §8.2.6, §16.6, §20): reading headers,
//! editing Via, Max-Forwards, Route and Record-Route in place, and building responses,
//! CANCELs and non-2xx ACKs. Headers we do not touch keep their exact bytes.

use std::net::IpAddr;
use std::sync::OnceLock;

use bytes::Bytes;
use sipx_sip::error::{LimitKind, ParseError};
use sipx_sip::headers as sh;
use sipx_sip::{
    Header, HeaderName, Headers, Limits, Message, Method, Request, Response, StatusCode,
};

use super::framing::{reject, salvage};
use super::{branch, lossy, trim_bytes, uri, EditError, WireError, MAX_DATAGRAM_BYTES};

/// One SIP request or response, as parsed or as we built it.
///
/// What the proxy reads of every message (Call-ID, CSeq, the tags, the Via hops) is parsed
/// once and remembered until an edit changes the header it came from (issue 17: a message used
/// to be re-parsed on each of a dozen reads).
#[derive(Debug, Clone)]
pub struct SipMessage(pub(super) Message, pub(super) Memo);

/// What has been read of a message, kept until an edit of the headers it came from.
#[derive(Debug, Clone, Default)]
pub(super) struct Memo {
    ids: OnceLock<Box<Ids>>,
    vias: OnceLock<Box<Vias>>,
}

/// The dialog and transaction identifiers (RFC 3261 §8.1.1, §12).
#[derive(Debug, Clone)]
struct Ids {
    call_id: Option<String>,
    cseq: Option<(u32, String)>,
    from_tag: Option<String>,
    to_tag: Option<String>,
}

/// The Via hops, all read once (for validation, routing and loop detection alike).
#[derive(Debug, Clone)]
pub(super) struct Vias {
    /// The first hop of the first row (`None` if absent or malformed).
    top: Option<Via>,
    /// Every hop that parses, in order.
    hops: Vec<Via>,
    /// Some row does not parse.
    pub(super) malformed: bool,
    /// Some hop's sent-protocol is not `SIP/2.0`.
    pub(super) not_sip20: bool,
}

/// Which remembered reads an edit of the headers makes stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Touches {
    /// Only Via rows change.
    Via,
    /// No header the memo reads (Max-Forwards, Route, Record-Route, Content-*, others).
    Other,
    /// Anything may change.
    All,
}

impl Touches {
    fn of(name: &HeaderName) -> Self {
        match name {
            HeaderName::Via => Touches::Via,
            HeaderName::CallId | HeaderName::CSeq | HeaderName::From | HeaderName::To => {
                Touches::All
            }
            _ => Touches::Other,
        }
    }
}

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

impl SipMessage {
    /// Wraps a crate message (for `txn`, the other half of the facade).
    pub(in crate::sip) fn from_inner(m: Message) -> Self {
        Self::new(m)
    }

    pub(super) fn new(m: Message) -> Self {
        SipMessage(m, Memo::default())
    }

    /// The crate message inside (for `txn`).
    pub(in crate::sip) fn inner(&self) -> &Message {
        &self.0
    }

    /// Unwraps the crate message (for `txn`).
    pub(in crate::sip) fn into_inner(self) -> Message {
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
            Ok(m) => Ok(Self::new(m)),
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
        self.ids().call_id.clone()
    }

    /// CSeq number and method (`None` if absent or malformed, e.g. above 2^31-1).
    pub fn cseq(&self) -> Option<(u32, String)> {
        self.ids().cseq.clone()
    }

    /// The From tag (`None` for RFC 2543 peers that send none).
    pub fn from_tag(&self) -> Option<String> {
        self.ids().from_tag.clone()
    }

    /// The To tag (`None` outside a dialog).
    pub fn to_tag(&self) -> Option<String> {
        self.ids().to_tag.clone()
    }

    /// Whether the To carries a tag (a request inside a dialog), without a copy of it.
    pub fn has_to_tag(&self) -> bool {
        self.ids().to_tag.is_some()
    }

    fn ids(&self) -> &Ids {
        self.1.ids.get_or_init(|| {
            let h = self.headers();
            Box::new(Ids {
                call_id: match h.typed::<sh::CallId>() {
                    Some(Ok(c)) => Some(lossy(&c.0)),
                    _ => None,
                },
                cseq: match h.typed::<sh::CSeq>() {
                    Some(Ok(c)) => Some((c.sequence, lossy(c.method.as_bytes()))),
                    _ => None,
                },
                from_tag: match h.typed::<sh::From>() {
                    Some(Ok(f)) => f.0.tag().map(lossy),
                    _ => None,
                },
                to_tag: match h.typed::<sh::To>() {
                    Some(Ok(t)) => t.0.tag().map(lossy),
                    _ => None,
                },
            })
        })
    }

    /// Every Via hop, read once: for validation, routing and loop detection.
    pub(super) fn via_memo(&self) -> &Vias {
        self.1.vias.get_or_init(|| {
            let mut hops = Vec::with_capacity(2);
            let (mut malformed, mut not_sip20) = (false, false);
            for v in self.headers().typed_all::<sh::Via>() {
                match v {
                    Err(_) => malformed = true,
                    Ok(v) => {
                        not_sip20 |=
                            !(v.protocol.eq_ignore_ascii_case(b"SIP") && v.version == b"2.0");
                        hops.push(via_from(&v));
                    }
                }
            }
            // A broken lower hop does not hide the top one, which routes the response.
            let top = if malformed {
                match self.headers().typed::<sh::Via>() {
                    Some(Ok(v)) => Some(via_from(&v)),
                    _ => None,
                }
            } else {
                hops.first().cloned()
            };
            Box::new(Vias {
                top,
                hops,
                malformed,
                not_sip20,
            })
        })
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
        let headers = self.edit(Touches::of(&name));
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
        Ok(self.edit(Touches::of(&name)).remove_all(&name))
    }

    /// Add a row above the existing rows of that header (or at the very top if there are none).
    pub fn add_header_top(&mut self, name: &str, value: &str) -> Result<(), EditError> {
        let name = editable_name(name)?;
        let header = build_header(name.clone(), value)?;
        let headers = self.edit(Touches::of(&name));
        let i = first_index(headers, &name).unwrap_or(0);
        headers.insert(i, header);
        Ok(())
    }

    /// Add a row after everything else but Content-Length (e.g. one WWW-Authenticate per algorithm).
    pub fn add_header(&mut self, name: &str, value: &str) -> Result<(), EditError> {
        let name = editable_name(name)?;
        let touches = Touches::of(&name);
        let header = build_header(name, value)?;
        push_before_content_length(self.edit(touches), header);
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
        let headers = self.edit(Touches::Other);
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
        self.via_memo().top.clone()
    }

    /// Every Via hop in order, across rows and comma-joined values.
    pub fn vias(&self) -> Result<&[Via], EditError> {
        let v = self.via_memo();
        if v.malformed {
            return Err(EditError::Malformed("Via"));
        }
        Ok(&v.hops)
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
        let headers = self.edit(Touches::Via);
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
        self.edit(Touches::Via).push_front(header);
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
        replace_first(self.edit(Touches::Via), &HeaderName::Via, header);
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
        let headers = self.edit(Touches::Other);
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
        self.edit(Touches::Other)
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
        let headers = self.edit(Touches::Other);
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
        let mut msg = SipMessage::new(Message::Response(resp));
        if let Some(tag) = to_tag {
            if !msg.has_to_tag() {
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

    pub(super) fn headers(&self) -> &Headers {
        self.0.headers()
    }

    /// The headers to edit; what the memo read from them is forgotten.
    pub(super) fn headers_mut(&mut self) -> &mut Headers {
        self.edit(Touches::All)
    }

    /// The headers to edit, forgetting only what an edit of the `touches` kind makes stale.
    fn edit(&mut self, touches: Touches) -> &mut Headers {
        match touches {
            Touches::Via => {
                self.1.vias.take();
            }
            Touches::Other => {}
            Touches::All => self.1 = Memo::default(),
        }
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
    Ok(SipMessage::new(Message::Request(out)))
}

// ---- Header helpers ------------------------------------------------------------------------

fn hname(name: &str) -> HeaderName {
    HeaderName::parse(&Bytes::copy_from_slice(name.trim().as_bytes()))
}

pub(super) fn is_token_char(b: u8) -> bool {
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
