//! Checks of a parsed message before the proxy acts on it (RFC 3261 §8.2, §16.3 step 1,
//! §18.1.2): what to answer a broken request with, and which responses to drop.

use sipx_sip::headers as sh;
use sipx_sip::{HeaderName, Method};

use super::SipMessage;

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
    // Control bytes would travel on into logs, the call log and screen pops; nothing we
    // serve needs them, so they stop here, before any routing or event.
    if req
        .headers
        .iter()
        .any(|h| has_control_char(&h.value(), *h.name() != HeaderName::CallId))
    {
        return Err((400, "Control Character In Header"));
    }
    if let Some(f) = sipx_sip::validate_request(req)
        .into_iter()
        .find(|f| !f.is_repairable())
    {
        return Err((f.status(), finding_reason(&f)));
    }
    // sipx checks only the first hop; a broken lower hop would strand our response later.
    match via_hops(msg) {
        Hops::Malformed => return Err((400, "Malformed Via")),
        Hops::NotSip20 => return Err((400, "Unsupported Via Protocol")),
        Hops::Fine => {}
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
    match via_hops(msg) {
        Hops::Malformed => Err("Malformed Via"),
        Hops::NotSip20 => Err("Unsupported Via Protocol"),
        Hops::Fine => Ok(()),
    }
}

/// What the Via hops of a message are like, all of them read once (issue 17).
enum Hops {
    /// Every hop parses and says `SIP/2.0`.
    Fine,
    /// Some hop does not parse (this wins over `NotSip20`).
    Malformed,
    /// Every hop parses, and some hop's sent-protocol is not `SIP/2.0` (RFC 3261 §20.42:
    /// protocol name and version are those of the message; the transport may be anything,
    /// RFC 4475 §3.1.1.10).
    NotSip20,
}

fn via_hops(msg: &SipMessage) -> Hops {
    // Read through the message's memo: the proxy reads the same hops again to route.
    let vias = msg.via_memo();
    if vias.malformed {
        Hops::Malformed
    } else if vias.not_sip20 {
        Hops::NotSip20
    } else {
        Hops::Fine
    }
}

/// Whether a header value carries a control character (C0 but HTAB, or DEL) that RFC 3261
/// §25 does not allow there. With `quoted_pairs`, one escaped by a backslash inside a quoted
/// string is allowed (`quoted-pair`, as RFC 4475 §3.1.1.2 uses); Call-ID has no quoted
/// strings (its `"` and `\` are plain word characters), so it gets no such exception.
fn has_control_char(value: &[u8], quoted_pairs: bool) -> bool {
    let is_ctl = |b: u8| (b < 0x20 && b != b'\t') || b == 0x7f;
    let mut quoted = false;
    let mut bytes = value.iter().copied();
    while let Some(b) = bytes.next() {
        match b {
            b'"' if quoted_pairs => quoted = !quoted,
            b'\\' if quoted_pairs && quoted => {
                // quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F): anything but CR and LF.
                if matches!(bytes.next(), Some(b'\r' | b'\n')) {
                    return true;
                }
            }
            b if is_ctl(b) => return true,
            _ => {}
        }
    }
    false
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
