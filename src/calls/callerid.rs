//! Caller-ID normalisation for calls from Japanese SIP trunks (R-LINE-3, R-LINE-4).
//!
//! The rules follow `notes/japan-telephony.md`: a withheld call never yields a number,
//! even when the network still puts one in P-Asserted-Identity; otherwise the number
//! comes from P-Asserted-Identity, then the From URI user, then an all-digit From
//! display name, and is stored as E.164 and shown in national format with hyphens.

use phonenumber::{Mode, PhoneNumber};

/// E.164 allows 15 digits; two more leave room for a national or international prefix.
/// Anything longer is not a phone number, and phonenumber never sees it.
const MAX_PARSE_DIGITS: usize = 17;

/// Cap on what an unparsable number keeps, so a hostile header cannot bloat logs and rows.
const MAX_RAW_DIGITS: usize = 32;

/// Header values of an incoming INVITE, already extracted as strings by the SIP layer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallerHeaders {
    /// The From display name, with or without its quotes.
    pub from_display_name: Option<String>,
    /// The From URI, e.g. `sip:0134324111@trunk.example;user=phone`.
    pub from_uri: String,
    /// Every P-Asserted-Identity value, in header order.
    pub pai: Vec<String>,
    /// The Privacy header value, e.g. `id` or `header;id`.
    pub privacy: Option<String>,
}

/// Who is calling, as far as the network lets us know.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum CallerId {
    /// A valid number: stored as E.164, shown in national format.
    Number {
        /// E.164 form, e.g. `+81134324111`.
        e164: String,
        /// National format with hyphens, e.g. `0134-32-4111`; international format abroad.
        display: String,
    },
    /// Digits that do not form a valid number, kept so the call is never anonymous by accident.
    Unparsed {
        /// The digits as received (a leading `+` kept), at most 32 characters.
        raw_digits: String,
    },
    /// No number may be shown, stored or called back.
    Withheld {
        /// What the network said about why.
        reason: WithheldReason,
    },
}

crate::code_enum! {
    /// Why the caller's number is not shown.
    pub enum WithheldReason: "withheld_reason" {
        /// The caller withheld the number (184 prefix or line setting): 非通知.
        Anonymous = "anonymous" / "非通知",
        /// A public phone: 公衆電話.
        Payphone = "payphone" / "公衆電話",
        /// The network could not deliver the number (international, some IP phones): 表示圏外.
        Unavailable = "unavailable" / "表示圏外",
    }
}

impl WithheldReason {
    /// The reason carried by a withheld call's From display name (TTC / NTT NGN convention).
    pub fn from_display_name(name: Option<&str>) -> Self {
        // Carriers differ in case and spacing ("Coin line / payphone"), so compare a
        // squeezed lower-case form; anything unknown is treated as a plain 非通知.
        let squeezed: String = name
            .map(strip_quotes)
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_whitespace())
            .flat_map(char::to_lowercase)
            .collect();
        match squeezed.as_str() {
            "coinline/payphone" => Self::Payphone,
            "unavailable" | "interactionwithotherservice" => Self::Unavailable,
            _ => Self::Anonymous,
        }
    }
}

impl CallerId {
    /// Applies the note's rules to the headers of one INVITE.
    pub fn from_headers(headers: &CallerHeaders) -> Self {
        if is_withheld(headers) {
            // Decided before any number is looked at, so none can leak from PAI.
            return Self::Withheld {
                reason: WithheldReason::from_display_name(headers.from_display_name.as_deref()),
            };
        }

        let display_name = headers
            .from_display_name
            .as_deref()
            .map(strip_quotes)
            .map(str::to_string);
        let candidates = headers
            .pai
            .iter()
            .filter_map(|value| uri_user(value))
            .chain(uri_user(&headers.from_uri))
            .chain(display_name);

        // A valid number anywhere in the order wins; failing that, the first digits seen
        // are kept so that the call log still says what the network sent.
        let mut first_raw: Option<String> = None;
        for candidate in candidates {
            let Some(clean) = clean_number(&candidate) else {
                continue;
            };
            if let Some((e164, display)) = parsed(&clean) {
                return Self::Number { e164, display };
            }
            if first_raw.is_none() {
                first_raw = Some(clean.chars().take(MAX_RAW_DIGITS).collect());
            }
        }
        match first_raw {
            Some(raw_digits) => Self::Unparsed { raw_digits },
            // Nothing number-like was delivered (e.g. a SIP URI with a name as user):
            // that is what 表示圏外 means to an operator.
            None => Self::Withheld {
                reason: WithheldReason::Unavailable,
            },
        }
    }

    /// The E.164 number, only for a valid, non-withheld number (for history and callbacks).
    pub fn e164(&self) -> Option<&str> {
        match self {
            Self::Number { e164, .. } => Some(e164),
            _ => None,
        }
    }

    /// True when the number must not be shown, stored or called back.
    pub fn is_withheld(&self) -> bool {
        matches!(self, Self::Withheld { .. })
    }
}

/// The E.164 form of a Japanese number in national (`0134-32-4111`) or `+81` form, if valid.
pub fn to_e164(input: &str) -> Option<String> {
    let clean = clean_number(input)?;
    parsed(&clean).map(|(e164, _)| e164)
}

/// National format with hyphens for an E.164 number: `+81134324111` → `0134-32-4111`.
// Foreign numbers get international format, and an invalid input comes back unchanged so
// that a screen never shows an empty cell.
pub fn display_national(e164: &str) -> String {
    clean_number(e164)
        .and_then(|clean| parsed(&clean))
        .map(|(_, display)| display)
        .unwrap_or_else(|| e164.to_string())
}

type Memo = std::sync::Mutex<std::collections::HashMap<String, Option<(String, String)>>>;
static MEMO: std::sync::OnceLock<Memo> = std::sync::OnceLock::new();

/// Forgets the numbers the parse remembers (after a purge of personal data, R-PII-5: the
/// memo holds the numbers of recent callers).
pub fn forget_numbers() {
    if let Some(Ok(mut m)) = MEMO.get().map(|m| m.lock()) {
        m.clear();
        m.shrink_to_fit();
    }
}

/// Numbers whose parse is remembered; past this the memo starts afresh.
const MEMO_MAX: usize = 4096;

/// (E.164, display) of a cleaned number if it is valid, remembered (issue 17): the parse
/// (phonenumber's metadata and regular expressions) costs some 100,000 instructions, and the
/// same few numbers come back on every call, history row and callback of a day.
fn parsed(clean: &str) -> Option<(String, String)> {
    if clean.len() > MAX_PARSE_DIGITS + 1 {
        return None; // never a number (see parse_valid), and not worth a memo entry
    }
    let memo = MEMO.get_or_init(Default::default);
    if let Some(hit) = memo.lock().ok().and_then(|m| m.get(clean).cloned()) {
        return hit;
    }
    let result = parse_valid(clean).map(|n| (e164_of(&n), display_of(&n)));
    if let Ok(mut m) = memo.lock() {
        if m.len() >= MEMO_MAX {
            m.clear();
        }
        m.insert(clean.to_string(), result.clone());
    }
    result
}

fn is_withheld(headers: &CallerHeaders) -> bool {
    // RFC 3323 separates priv-values with ';', and folded header lines join with ','.
    let privacy_id = headers.privacy.as_deref().is_some_and(|p| {
        p.split([',', ';'])
            .any(|token| token.trim().eq_ignore_ascii_case("id"))
    });
    let anonymous_user = uri_user(&headers.from_uri)
        .is_some_and(|user| user.trim().eq_ignore_ascii_case("anonymous"));
    privacy_id || anonymous_user
}

fn e164_of(number: &PhoneNumber) -> String {
    number.format().mode(Mode::E164).to_string()
}

fn display_of(number: &PhoneNumber) -> String {
    let mode = if number.code().value() == 81 {
        Mode::National
    } else {
        Mode::International
    };
    number.format().mode(mode).to_string()
}

/// Parses a cleaned `[+]digits` string as a Japanese-context number; only valid ones count.
fn parse_valid(clean: &str) -> Option<PhoneNumber> {
    let digits = clean.strip_prefix('+').unwrap_or(clean);
    if digits.is_empty() || digits.len() > MAX_PARSE_DIGITS {
        return None;
    }
    // Japanese national numbers always start with 0; a bare "81…" is E.164 without its
    // '+', as some trunks send it. Anything else would make phonenumber guess.
    if !(clean.starts_with('+') || digits.starts_with('0') || digits.starts_with("81")) {
        return None;
    }
    phonenumber::parse(Some(phonenumber::country::JP), clean)
        .ok()
        .filter(|n| n.is_valid())
}

/// Reduces a number as people and carriers write it to `[+]digits`, or `None` if it is
/// not one: full-width digits (０１３４) and visual separators are accepted, letters are not.
fn clean_number(input: &str) -> Option<String> {
    let mut out = String::new();
    for c in input.trim().chars() {
        let c = match c {
            '０'..='９' => char::from_u32(u32::from(c) - u32::from('０') + u32::from('0'))?,
            '＋' => '+',
            _ => c,
        };
        match c {
            '0'..='9' => out.push(c),
            '+' if out.is_empty() => out.push('+'),
            ' ' | '-' | '.' | '(' | ')' | '\u{3000}' | '－' | '‐' | '−' | 'ー' | '（' | '）' =>
                {}
            _ => return None,
        }
    }
    out.chars().any(|c| c.is_ascii_digit()).then_some(out)
}

/// The user part of a `tel:`/`sip:`/`sips:` URI inside a header value, without parameters.
fn uri_user(value: &str) -> Option<String> {
    let uri = angle_addr(value).unwrap_or(value).trim();
    let (scheme, rest) = match uri.split_once(':') {
        Some((scheme, rest)) => (scheme.trim().to_ascii_lowercase(), rest),
        // Some extractors hand over just the user; take it as is.
        None => return Some(percent_decode(cut_params(uri))),
    };
    let user = match scheme.as_str() {
        "tel" => rest,
        "sip" | "sips" => rest.split_once('@')?.0,
        _ => return None,
    };
    Some(percent_decode(cut_params(user)))
}

/// Drops `;cpc=…`, `;phone-context=…` and `?headers` from a URI user or tel number.
fn cut_params(s: &str) -> &str {
    s.split([';', '?']).next().unwrap_or_default().trim()
}

/// The URI between `<` and `>` of a name-addr, skipping a quoted display name that may
/// itself contain `<`.
fn angle_addr(value: &str) -> Option<&str> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in value.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '<' if !in_quotes => {
                let rest = value.get(i + 1..)?;
                let end = rest.find('>').unwrap_or(rest.len());
                return rest.get(..end);
            }
            _ => {}
        }
    }
    None
}

/// Decodes `%XX` escapes that stand for ASCII (`%2B` for '+'); anything else is kept.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = (bytes[i] == b'%')
            .then(|| s.get(i + 1..i + 3))
            .flatten()
            .filter(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            .filter(u8::is_ascii);
        match decoded {
            Some(b) => {
                out.push(char::from(b));
                i += 3;
            }
            None => {
                let Some(c) = s.get(i..).and_then(|rest| rest.chars().next()) else {
                    break;
                };
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    out
}

fn strip_quotes(s: &str) -> &str {
    let t = s.trim();
    t.strip_prefix('"')
        .and_then(|inner| inner.strip_suffix('"'))
        .unwrap_or(t)
        .trim()
}

// R-LINE-3 / R-LINE-4: the call log and the screen pop show exactly what these tests pin.
// Every number below is made up.
#[cfg(test)]
mod tests {
    use super::*;

    fn from(uri: &str) -> CallerHeaders {
        CallerHeaders {
            from_uri: uri.to_string(),
            ..CallerHeaders::default()
        }
    }

    fn number(e164: &str, display: &str) -> CallerId {
        CallerId::Number {
            e164: e164.into(),
            display: display.into(),
        }
    }

    fn withheld(reason: WithheldReason) -> CallerId {
        CallerId::Withheld { reason }
    }

    fn anonymous_from(display: Option<&str>) -> CallerHeaders {
        CallerHeaders {
            from_display_name: display.map(str::to_string),
            from_uri: "sip:anonymous@anonymous.invalid".into(),
            privacy: Some("id".into()),
            ..CallerHeaders::default()
        }
    }

    #[test]
    fn otaru_fixed_line_from_sip_user() {
        let h = from("sip:0134324111@ngn.example;user=phone");
        assert_eq!(
            CallerId::from_headers(&h),
            number("+81134324111", "0134-32-4111")
        );
    }

    #[test]
    fn mobile_numbers_090_080_070() {
        for (national, e164, display) in [
            ("09012345678", "+819012345678", "090-1234-5678"),
            ("08023456789", "+818023456789", "080-2345-6789"),
            ("07034567890", "+817034567890", "070-3456-7890"),
        ] {
            let h = from(&format!("sip:{national}@ngn.example"));
            assert_eq!(
                CallerId::from_headers(&h),
                number(e164, display),
                "{national}"
            );
        }
    }

    #[test]
    fn ip_phone_050() {
        let h = from("sip:05012345678@ngn.example");
        assert_eq!(
            CallerId::from_headers(&h),
            number("+815012345678", "050-1234-5678")
        );
    }

    #[test]
    fn toll_free_0120_and_0800() {
        assert_eq!(to_e164("0120123456").as_deref(), Some("+81120123456"));
        assert_eq!(display_national("+81120123456"), "0120-123-456");
        assert_eq!(to_e164("08001234567").as_deref(), Some("+818001234567"));
        assert_eq!(display_national("+818001234567"), "0800-123-4567");
    }

    #[test]
    fn plus_81_input_in_tel_pai() {
        let h = CallerHeaders {
            pai: vec!["<tel:+81134324111>".into()],
            from_uri: "sip:trunk@ngn.example".into(),
            ..CallerHeaders::default()
        };
        assert_eq!(
            CallerId::from_headers(&h),
            number("+81134324111", "0134-32-4111")
        );
        assert_eq!(
            to_e164("+81 90-1234-5678").as_deref(),
            Some("+819012345678")
        );
        assert_eq!(to_e164("%2B81134324111"), None);
        assert_eq!(
            uri_user("sip:%2B81134324111@h").as_deref(),
            Some("+81134324111")
        );
    }

    #[test]
    fn pai_wins_over_from_and_params_are_stripped() {
        let h = CallerHeaders {
            from_display_name: Some("\"09099999999\"".into()),
            from_uri: "sip:0134320000@ngn.example".into(),
            pai: vec!["\"Otaru <x>\" <sip:0134324111;cpc=ordinary@ngn.example;user=phone>".into()],
            privacy: Some("none".into()),
        };
        assert_eq!(
            CallerId::from_headers(&h),
            number("+81134324111", "0134-32-4111")
        );
        let tel = from("tel:0134324111;phone-context=+81");
        assert_eq!(
            CallerId::from_headers(&tel),
            number("+81134324111", "0134-32-4111")
        );
    }

    #[test]
    fn all_digit_display_name_is_the_last_resort() {
        let h = CallerHeaders {
            from_display_name: Some("\"09012345678\"".into()),
            from_uri: "sip:trunk-gw@ngn.example".into(),
            ..CallerHeaders::default()
        };
        assert_eq!(
            CallerId::from_headers(&h),
            number("+819012345678", "090-1234-5678")
        );
        // A display name with words is never taken for a number.
        let named = CallerHeaders {
            from_display_name: Some("Otaru 0134324111".into()),
            from_uri: "sip:trunk-gw@ngn.example".into(),
            ..CallerHeaders::default()
        };
        assert_eq!(
            CallerId::from_headers(&named),
            withheld(WithheldReason::Unavailable)
        );
    }

    #[test]
    fn withheld_with_a_number_in_pai_shows_no_number() {
        let h = CallerHeaders {
            pai: vec![
                "<tel:+819012345678>".into(),
                "<sip:09012345678@ngn.example;user=phone>".into(),
            ],
            ..anonymous_from(Some("Anonymous"))
        };
        let id = CallerId::from_headers(&h);
        assert_eq!(id, withheld(WithheldReason::Anonymous));
        assert_eq!(id.e164(), None);
        assert!(id.is_withheld());
        assert!(!format!("{id:?}").contains("1234"));
        // Privacy alone is enough, whatever From says.
        let privacy_only = CallerHeaders {
            from_uri: "sip:09012345678@ngn.example".into(),
            pai: vec!["<tel:+819012345678>".into()],
            privacy: Some("header;ID".into()),
            ..CallerHeaders::default()
        };
        assert_eq!(
            CallerId::from_headers(&privacy_only),
            withheld(WithheldReason::Anonymous)
        );
    }

    #[test]
    fn privacy_id_anywhere_in_a_list_case_insensitive() {
        for privacy in ["id", "ID", "user, id", "header;Id", " critical ,  id ;user"] {
            let h = CallerHeaders {
                privacy: Some(privacy.into()),
                ..from("sip:0134324111@ngn.example")
            };
            assert!(CallerId::from_headers(&h).is_withheld(), "{privacy}");
        }
        for privacy in ["none", "identity", "header", ""] {
            let h = CallerHeaders {
                privacy: Some(privacy.into()),
                ..from("sip:0134324111@ngn.example")
            };
            assert!(!CallerId::from_headers(&h).is_withheld(), "{privacy}");
        }
    }

    #[test]
    fn anonymous_from_user_without_privacy_is_withheld() {
        let h = CallerHeaders {
            from_display_name: Some("Anonymous".into()),
            from_uri: "<sip:Anonymous@anonymous.invalid>".into(),
            pai: vec!["<tel:+81134324111>".into()],
            privacy: None,
        };
        assert_eq!(
            CallerId::from_headers(&h),
            withheld(WithheldReason::Anonymous)
        );
    }

    #[test]
    fn each_display_name_reason() {
        let cases = [
            (Some("\"Anonymous\""), WithheldReason::Anonymous),
            (Some("\"Coin line/payphone\""), WithheldReason::Payphone),
            (Some("coin line / PAYPHONE"), WithheldReason::Payphone),
            (Some("\"Unavailable\""), WithheldReason::Unavailable),
            (
                Some("\"Interaction with other service\""),
                WithheldReason::Unavailable,
            ),
            (Some("\"Somebody\""), WithheldReason::Anonymous),
            (None, WithheldReason::Anonymous),
        ];
        for (display, reason) in cases {
            assert_eq!(
                CallerId::from_headers(&anonymous_from(display)),
                withheld(reason),
                "{display:?}"
            );
        }
    }

    #[test]
    fn reason_labels_and_codes_round_trip() {
        for (reason, ja, code) in [
            (WithheldReason::Anonymous, "非通知", "anonymous"),
            (WithheldReason::Payphone, "公衆電話", "payphone"),
            (WithheldReason::Unavailable, "表示圏外", "unavailable"),
        ] {
            assert_eq!(reason.label_ja(), ja);
            assert_eq!(reason.as_str(), code);
            assert_eq!(code.parse::<WithheldReason>(), Ok(reason));
        }
        assert!("非通知".parse::<WithheldReason>().is_err());
    }

    #[test]
    fn unparsable_digits_are_kept_not_dropped() {
        let short = from("sip:110@ngn.example");
        assert_eq!(
            CallerId::from_headers(&short),
            CallerId::Unparsed {
                raw_digits: "110".into()
            }
        );
        // A broken PAI is kept only if nothing later gives a valid number.
        let h = CallerHeaders {
            pai: vec!["<sip:0134@ngn.example>".into()],
            from_uri: "sip:09012345678@ngn.example".into(),
            ..CallerHeaders::default()
        };
        assert_eq!(
            CallerId::from_headers(&h),
            number("+819012345678", "090-1234-5678")
        );
        let h = CallerHeaders {
            pai: vec!["<sip:0134@ngn.example>".into()],
            from_uri: "sip:0000000000@ngn.example".into(),
            ..CallerHeaders::default()
        };
        assert_eq!(
            CallerId::from_headers(&h),
            CallerId::Unparsed {
                raw_digits: "0134".into()
            }
        );
        let long = from(&format!("sip:{}@h", "9".repeat(100)));
        assert_eq!(
            CallerId::from_headers(&long),
            CallerId::Unparsed {
                raw_digits: "9".repeat(32)
            }
        );
    }

    #[test]
    fn to_e164_accepts_what_people_type() {
        assert_eq!(to_e164("0134-32-4111").as_deref(), Some("+81134324111"));
        assert_eq!(
            to_e164("０１３４－３２－４１１１").as_deref(),
            Some("+81134324111")
        );
        assert_eq!(to_e164("(0134) 32 4111").as_deref(), Some("+81134324111"));
        assert_eq!(to_e164("81134324111").as_deref(), Some("+81134324111"));
        assert_eq!(to_e164("0570-123-456").as_deref(), Some("+81570123456"));
        // Missing trunk prefix, letters, wrong length, emergency numbers: not numbers.
        for bad in [
            "134324111",
            "0120-ABC-123",
            "090123456",
            "110",
            "",
            "+",
            "0134",
        ] {
            assert_eq!(to_e164(bad), None, "{bad}");
        }
    }

    #[test]
    fn display_national_formats_and_falls_back() {
        assert_eq!(display_national("+81134324111"), "0134-32-4111");
        assert_eq!(display_national("+819012345678"), "090-1234-5678");
        assert_eq!(display_national("+815012345678"), "050-1234-5678");
        assert_eq!(display_national("+16502530000"), "+1 650-253-0000");
        assert_eq!(display_national("not a number"), "not a number");
    }

    #[test]
    fn garbage_never_panics_and_never_invents_a_number() {
        let junk = [
            "",
            "<",
            ">",
            "<>",
            "\"",
            "\"<sip:0134324111@h>",
            "sip:",
            "sip:@",
            "tel:",
            "tel:;",
            "mailto:0134324111@h",
            "sip:%",
            "sip:%2@h",
            "sip:%+2B81134324111@h",
            "sip:%E3%81%82@h",
            "sip:小樽@h",
            "\u{0}\u{7f}\u{FEFF}",
            "sip:0134324111",
            "192.0.2.1:5060",
        ];
        for s in junk {
            let h = CallerHeaders {
                from_display_name: Some(s.to_string()),
                from_uri: s.to_string(),
                pai: vec![s.to_string(), s.to_string()],
                privacy: Some(s.to_string()),
            };
            let id = CallerId::from_headers(&h);
            assert_eq!(id.e164(), None, "{s:?} gave {id:?}");
            let _ = to_e164(s);
            let _ = display_national(s);
        }
        // Every 1..=17-digit shape with every leading digit goes through phonenumber safely.
        for len in 1..=20 {
            for lead in 0..=9 {
                let digits = format!("{lead}{}", "7".repeat(len - 1));
                let _ = to_e164(&digits);
                let _ = to_e164(&format!("+{digits}"));
                let _ = display_national(&format!("+{digits}"));
            }
        }
    }
}
