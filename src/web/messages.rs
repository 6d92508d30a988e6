//! Every error code the API answers with, and the one Japanese message each stands for
//! (issue 18 item 1). A handler may send a more precise Japanese message; a message with no
//! Japanese in it (an axum rejection, an English domain text) never reaches a user: the
//! [`japanese_errors`] layer puts the code's message in its place. Unknown pages get a
//! Japanese HTML page for browsers, JSON for `/api/`.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};

crate::code_enum! {
    /// An API error code with its Japanese message (the `error` field of an error body).
    pub enum ErrorCode: "error_code" {
        /// The request itself is wrong.
        BadRequest = "bad_request" / "リクエストの内容が正しくありません。入力を確認してください。",
        /// A rule of the input is broken.
        Invalid = "invalid" / "入力内容に誤りがあります。確認してください。",
        /// No valid session.
        Unauthenticated = "unauthenticated" / "ログインが必要です。",
        /// The role may not do this.
        Forbidden = "forbidden" / "この操作の権限がありません。",
        /// The first password (or one an administrator set) must be changed first.
        PasswordChangeRequired = "password_change_required" / "パスワードの変更が必要です。新しいパスワードを設定してください。",
        /// No such record or page.
        NotFound = "not_found" / "お探しのページまたはデータが見つかりません。",
        /// The method is not allowed on this address.
        MethodNotAllowed = "method_not_allowed" / "この操作はこのアドレスでは行えません。",
        /// The body is not JSON.
        UnsupportedMediaType = "unsupported_media_type" / "送信データの形式（JSON）が正しくありません。",
        /// The body is too large.
        PayloadTooLarge = "payload_too_large" / "送信データが大きすぎます。",
        /// The request did not arrive in time.
        RequestTimeout = "request_timeout" / "リクエストが時間内に届きませんでした。もう一度お試しください。",
        /// A server fault.
        Internal = "internal" / "内部エラーが発生しました。",
        /// The same thing already exists.
        Duplicate = "duplicate" / "同じ内容が既に登録されています。画面を更新して確認してください。",
        /// The request conflicts with the record's state.
        Conflict = "conflict" / "データの状態と合わないため実行できません。画面を更新してください。",
        /// Anti-CSRF token or origin missing.
        Csrf = "csrf" / "ページの有効期限が切れました。ページを再読み込みしてください。",
        /// One's own account cannot be changed this way.
        SelfAccount = "self" / "自分のアカウントにはこの操作はできません。",
        /// Outcome on an unanswered call.
        NotAnswered = "not_answered" / "応答していない通話には対応記録を付けられません。",
        /// Outcome on someone else's call.
        NotYourCall = "not_your_call" / "この通話の対応記録は、応答したオペレーターか管理者だけが保存できます。",
        /// The callback is done or gone.
        NotOpen = "not_open" / "この折り返しは既に対応済みか、存在しません。",
        /// The booking slot was taken.
        SlotTaken = "slot_taken" / "この枠は既に埋まっています。別の枠を選んでください。",
        /// Sending mail failed.
        Mail = "mail" / "メールを送信できませんでした。",
        /// The report has not changed.
        Unchanged = "unchanged" / "前回送付した版から変わっていません。",
        /// The call is not an opinion.
        NotAnOpinion = "not_an_opinion" / "意見・苦情として記録された通話ではありません。",
        /// The account is locked after failed logins.
        AccountLocked = "account_locked" / "ログインの失敗が続いたため、アカウントがロックされています。",
        /// Too many failed logins from this address.
        TooManyAttempts = "too_many_attempts" / "ログインの失敗が続いています。しばらくお待ちください。",
        /// Wrong user name or password.
        InvalidCredentials = "invalid_credentials" / "ユーザー名またはパスワードが違います。",
        /// The SIP adapter is not running.
        SipDown = "sip_down" / "電話機能（SIP）が動作していません。",
        /// The share was changed by another operation.
        Changed = "changed" / "この共有は別の操作で変更されました。画面を更新してください。",
        /// The recipient is not on the allow-list.
        RecipientNotAllowed = "recipient_not_allowed" / "送付先リストにない宛先には送付できません。",
        /// The share is already sent.
        AlreadySent = "already_sent" / "この共有は送付済みです。",
        /// The share is not approved yet.
        NotApproved = "not_approved" / "まだ承認されていません。",
        /// The share was withdrawn.
        Withdrawn = "withdrawn" / "この共有は取り下げられました。",
        /// The preparer may not approve.
        SelfApproval = "self_approval" / "準備した本人は承認できません。",
        /// Only managers and admins approve.
        Role = "role" / "この操作の権限がありません。",
        /// Only a prepared share can be approved.
        NotPrepared = "not_prepared" / "この共有は承認できる状態ではありません。",
        /// Mail is configured: no download.
        SmtpConfigured = "smtp_configured" / "このサーバーはメールで送付します。ダウンロードはできません。",
        /// Only the preparer or approver downloads.
        NotInvolved = "not_involved" / "ダウンロードできるのは、この共有を準備した人か承認した人だけです。",
        /// Download before marking sent.
        NotDownloaded = "not_downloaded" / "アーカイブとパスワードをダウンロードしてから「送付済み」にしてください。",
        /// A send is running.
        SendInProgress = "send_in_progress" / "この共有は送信中です。画面を更新してください。",
        /// `/metrics` needs the bearer token from this address.
        MetricsTokenRequired = "metrics_token_required" / "メトリクスの取得にはトークン（Authorization: Bearer）が必要です。",
        /// `/metrics` is not open to this address.
        MetricsForbidden = "metrics_forbidden" / "このアドレスからはメトリクスを取得できません（[metrics] allow）。",
    }
}

/// Whether `s` holds any Japanese (kana or kanji) — a message a Japanese user can read.
pub fn has_japanese(s: &str) -> bool {
    s.chars().any(|c| {
        matches!(c as u32,
            0x3040..=0x30FF   // hiragana, katakana
            | 0x3400..=0x4DBF // CJK extension A
            | 0x4E00..=0x9FFF // CJK unified
            | 0xFF66..=0xFF9F // half-width katakana
        )
    })
}

/// The Japanese message of `code`; a code missing from the table gets the generic one (and a
/// log line, since every code must be in the table).
pub fn message_for(code: &str) -> &'static str {
    match crate::codes::parse::<ErrorCode>(code) {
        Ok(c) => c.label_ja(),
        Err(_) => {
            tracing::error!(code, "error code missing from the message table");
            "エラーが発生しました。"
        }
    }
}

/// The error code of a status for answers that came without one (axum's own rejections).
fn code_for_status(status: StatusCode) -> ErrorCode {
    match status {
        StatusCode::UNAUTHORIZED => ErrorCode::Unauthenticated,
        StatusCode::FORBIDDEN => ErrorCode::Forbidden,
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        StatusCode::REQUEST_TIMEOUT => ErrorCode::RequestTimeout,
        StatusCode::UNPROCESSABLE_ENTITY => ErrorCode::Invalid,
        StatusCode::CONFLICT => ErrorCode::Conflict,
        s if s.is_server_error() => ErrorCode::Internal,
        _ => ErrorCode::BadRequest,
    }
}

/// Largest error body the layer reads to check it (errors are small; anything bigger is
/// passed on untouched).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Middleware: every error answer a user can see is Japanese. JSON errors keep their code and
/// get the code's message when theirs has no Japanese (the original goes to `detail`, for
/// developers); errors that are not JSON (axum's plain-text rejections) become JSON errors
/// under `/api/` and a Japanese HTML page with a way back for browsers elsewhere.
pub async fn japanese_errors(req: Request, next: Next) -> Response {
    // The engineer's endpoints answer machines (Prometheus, a load balancer's health check):
    // their bodies (`/readyz`'s list of failed checks) are passed on as they are.
    if matches!(req.uri().path(), "/healthz" | "/readyz" | "/metrics") {
        return next.run(req).await;
    }
    let api = req.uri().path().starts_with("/api/");
    let wants_html = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    let res = next.run(req).await;
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    let is_html = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/html"));
    if is_html {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_ERROR_BODY).await else {
        return ApiError::new(status, code_for_status(status).as_str(), "").into_response();
    };
    let (code, message, extra) = if is_json {
        match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(serde_json::Value::Object(mut m)) => {
                let code = m
                    .remove("error")
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_else(|| code_for_status(status).as_str().to_string());
                let message = m
                    .remove("message")
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                if has_japanese(&message)
                    && !(wants_html && !api && status == StatusCode::NOT_FOUND)
                {
                    // Already fine: hand back as it was.
                    parts.headers.remove(header::CONTENT_LENGTH);
                    return Response::from_parts(parts, Body::from(bytes));
                }
                (code, message, m)
            }
            _ => {
                parts.headers.remove(header::CONTENT_LENGTH);
                return Response::from_parts(parts, Body::from(bytes));
            }
        }
    } else {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        (
            code_for_status(status).as_str().to_string(),
            text,
            serde_json::Map::new(),
        )
    };
    if wants_html && !api {
        let mut page = error_page(status, &code).into_response();
        copy_security_headers(&parts.headers, page.headers_mut());
        return page;
    }
    let japanese = if has_japanese(&message) {
        message.clone()
    } else {
        message_for(&code).to_string()
    };
    let mut body = serde_json::Map::new();
    body.insert("error".into(), code.into());
    body.insert("message".into(), japanese.into());
    if !message.is_empty() && !has_japanese(&message) && !extra.contains_key("detail") {
        // For developers reading the network tab; the UI shows `message` only.
        body.insert("detail".into(), message.into());
    }
    body.extend(extra);
    let mut out = (status, axum::Json(serde_json::Value::Object(body))).into_response();
    copy_security_headers(&parts.headers, out.headers_mut());
    out
}

fn copy_security_headers(from: &axum::http::HeaderMap, to: &mut axum::http::HeaderMap) {
    for (name, value) in from {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            to.insert(name.clone(), value.clone());
        }
    }
}

use super::ApiError;

/// A Japanese error page for a browser, with a way back to the screens.
fn error_page(status: StatusCode, code: &str) -> Response {
    let (title, text) = if status == StatusCode::NOT_FOUND {
        (
            "ページが見つかりません",
            "お探しのページは見つかりませんでした。アドレスをご確認ください。",
        )
    } else {
        ("エラーが発生しました", message_for(code))
    };
    let html = format!(
        "<!doctype html>\n<html lang=\"ja\"><head><meta charset=\"utf-8\">\
         <title>{title}｜まどぐち</title>\
         <link rel=\"stylesheet\" href=\"/assets/style.css\"></head>\
         <body class=\"error-page\"><main><h1>{title}</h1><p>{text}</p>\
         <p><a href=\"/\">トップ画面へ戻る</a>　<a href=\"/login\">ログイン画面へ</a></p>\
         <p class=\"muted\">（コード: {status_num}）</p></main></body></html>\n",
        status_num = status.as_u16()
    );
    let mut res = (status, Html(html)).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_japanese_message() {
        for c in ErrorCode::ALL {
            assert!(has_japanese(c.label_ja()), "{}", c.as_str());
        }
        assert!(!has_japanese("call not found"));
        assert!(has_japanese("通話"));
    }
}
