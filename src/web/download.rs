//! File downloads: one place that sets `Content-Type` and `Content-Disposition` (RFC 6266).

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// The spreadsheet MIME type.
pub const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
/// CSV as UTF-8.
pub const CSV: &str = "text/csv; charset=utf-8";

/// RFC 5987 `attr-char`: everything else is percent-encoded in `filename*`.
const NOT_ATTR_CHAR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// A download saved as `name`.
pub fn attachment(body: impl IntoResponse, mime: &'static str, name: &str) -> Response {
    with_disposition(body, mime, "attachment", name)
}

/// A file the browser shows itself (a report page), named `name` if saved.
pub fn inline(body: impl IntoResponse, mime: &'static str, name: &str) -> Response {
    with_disposition(body, mime, "inline", name)
}

fn with_disposition(
    body: impl IntoResponse,
    mime: &'static str,
    disposition: &str,
    name: &str,
) -> Response {
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    if let Ok(v) = HeaderValue::from_str(&disposition_value(disposition, name)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    res
}

/// `attachment; filename="…"`, with `filename*=UTF-8''…` beside an ASCII fallback when the
/// name is not plain ASCII (a Japanese facility name, say).
fn disposition_value(disposition: &str, name: &str) -> String {
    let plain = |c: char| c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ';
    if name.chars().all(plain) {
        return format!("{disposition}; filename=\"{name}\"");
    }
    let fallback: String = name
        .chars()
        .map(|c| if plain(c) { c } else { '_' })
        .collect();
    let encoded = utf8_percent_encode(name, NOT_ATTR_CHAR);
    format!("{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_names_are_quoted_as_they_are() {
        assert_eq!(
            disposition_value("attachment", "reception-list.xlsx"),
            "attachment; filename=\"reception-list.xlsx\""
        );
    }

    #[test]
    fn other_names_get_an_rfc_5987_form_and_a_fallback() {
        assert_eq!(
            disposition_value("attachment", "施設\"a\".zip"),
            "attachment; filename=\"___a_.zip\"; filename*=UTF-8''%E6%96%BD%E8%A8%AD%22a%22.zip"
        );
        // A header value must be visible ASCII: both forms are.
        let r = attachment(Vec::<u8>::new(), XLSX, "小樽 週報.xlsx");
        let v = r.headers()[header::CONTENT_DISPOSITION].to_str().unwrap();
        assert!(v.contains("filename*=UTF-8''%E5%B0%8F%E6%A8%BD%20"), "{v}");
    }
}
