use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::booking::BookingError;
use crate::calls::callbacks::CallbackError;
use crate::calls::{CallsError, OutcomeError};
use crate::privacy::PrivacyError;
use crate::reports::ReportsError;
use crate::sharing::SharingError;

/// An API error: a status and the JSON body `{"error": code, "message": text}`.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Human-readable explanation (Japanese where users see it).
    pub message: String,
    /// Seconds to wait before trying again, sent as `Retry-After`.
    pub retry_after: Option<u64>,
    /// More for the client, as one extra field of the body (e.g. `alternatives`).
    pub extra: Option<(&'static str, serde_json::Value)>,
}

impl ApiError {
    /// Any status with a code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            extra: None,
        }
    }

    /// Tells the client when to try again (`Retry-After`, seconds).
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// 400: the request itself is wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 401: no valid session.
    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "ログインが必要です。",
        )
    }

    /// 403: the role may not do this.
    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "この操作の権限がありません。",
        )
    }

    /// 404: no such record.
    pub fn not_found(what: &str) -> Self {
        let message = match what_ja(what) {
            Some(w) => format!("{w}が見つかりません。"),
            None => super::messages::message_for("not_found").to_string(),
        };
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 500: logged with its cause; the client learns nothing internal.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "内部エラーが発生しました。",
        )
    }

    /// 422: the input is well-formed but breaks a rule.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
    }

    /// 409: the request conflicts with the record's state.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// The one mapping of a database error: a unique-constraint violation (another request
    /// or instance got there first) is a 409; anything else is a 500.
    pub fn from_db(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => Self::conflict(
                "duplicate",
                "同じ内容が既に登録されています。画面を更新して確認してください。",
            ),
            _ => Self::internal(e),
        }
    }
}

/// The Japanese name of a kind of record a 404 is about.
fn what_ja(what: &str) -> Option<&'static str> {
    Some(match what {
        "call" => "通話",
        "user" => "利用者",
        "booking" => "予約",
        "facility request" => "施設の申込み",
        "reception number" => "受付番号",
        "recipient" => "送付先",
        "report version" => "報告書の版",
        "share" => "共有",
        "travel override" => "移動時間の補正",
        "visit day" => "訪問日",
        "route" => "ページ",
        _ => return None,
    })
}

/// The JSON body of every error.
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
    #[serde(flatten)]
    extra: Option<serde_json::Map<String, serde_json::Value>>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let extra = self.extra.map(|(k, v)| {
            let mut m = serde_json::Map::new();
            m.insert(k.to_string(), v);
            m
        });
        let body = ErrorBody {
            error: self.code,
            message: &self.message,
            extra,
        };
        let mut res = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        Self::from_db(e)
    }
}

impl From<PrivacyError> for ApiError {
    fn from(e: PrivacyError) -> Self {
        match e {
            PrivacyError::DuplicateUsername(name) => Self::conflict(
                "duplicate",
                format!("ユーザー名「{name}」は既に使われています。別の名前にしてください。"),
            ),
            PrivacyError::UnknownUser => Self::not_found("user"),
            PrivacyError::SelfDisable => {
                Self::conflict("self", "自分のアカウントは無効にできません。")
            }
            PrivacyError::Invalid(m) => Self::invalid(m),
            PrivacyError::Store(e) => Self::from_db(e),
            PrivacyError::Hash => Self::internal(e),
        }
    }
}

impl From<CallsError> for ApiError {
    fn from(e: CallsError) -> Self {
        match e {
            CallsError::Store(e) => Self::from_db(e),
        }
    }
}

impl From<OutcomeError> for ApiError {
    fn from(e: OutcomeError) -> Self {
        match e {
            OutcomeError::Invalid(m) => Self::invalid(m),
            OutcomeError::NotFound => Self::not_found("call"),
            OutcomeError::NotAnswered => Self::conflict(
                "not_answered",
                "応答していない通話には対応記録を付けられません。",
            ),
            OutcomeError::NotYours => Self::new(
                StatusCode::FORBIDDEN,
                "not_your_call",
                "この通話の対応記録は、応答したオペレーターか管理者だけが保存できます。",
            ),
            OutcomeError::Calls(e) => e.into(),
        }
    }
}

impl From<CallbackError> for ApiError {
    fn from(e: CallbackError) -> Self {
        match e {
            CallbackError::Invalid(m) => Self::invalid(m),
            CallbackError::NotOpen => {
                Self::conflict("not_open", "この折り返しは既に対応済みか、存在しません。")
            }
            CallbackError::Calls(e) => e.into(),
        }
    }
}

impl From<BookingError> for ApiError {
    fn from(e: BookingError) -> Self {
        match e {
            BookingError::Invalid(m) => Self::invalid(m),
            BookingError::NotFound(what) => Self::not_found(what),
            BookingError::Conflict(m) => Self::conflict("conflict", m),
            BookingError::SlotTaken(t) => {
                let mut err = Self::conflict("slot_taken", t.reason.clone());
                err.extra = Some((
                    "alternatives",
                    serde_json::to_value(&t.alternatives).unwrap_or_default(),
                ));
                err
            }
            BookingError::Store(e) => Self::from_db(e),
            BookingError::Scrub(m) => Self::internal(m),
            BookingError::Audit(e) => e.into(),
        }
    }
}

impl From<SharingError> for ApiError {
    fn from(e: SharingError) -> Self {
        match e {
            SharingError::Invalid(m) => Self::invalid(m),
            SharingError::NotFound(what) => Self::not_found(what),
            SharingError::Refused {
                code,
                message,
                forbidden,
            } => {
                let status = if forbidden {
                    StatusCode::FORBIDDEN
                } else if code == "recipient_not_allowed" {
                    StatusCode::UNPROCESSABLE_ENTITY
                } else {
                    StatusCode::CONFLICT
                };
                Self::new(status, code, message)
            }
            SharingError::Mail(m) => Self::new(StatusCode::BAD_GATEWAY, "mail", m),
            SharingError::Bundle(m) => Self::internal(m),
            SharingError::Store(e) => Self::from_db(e),
            SharingError::Audit(e) => e.into(),
        }
    }
}

impl From<ReportsError> for ApiError {
    fn from(e: ReportsError) -> Self {
        match e {
            ReportsError::Invalid(m) => Self::invalid(m),
            ReportsError::NotFound(what) => Self::not_found(what),
            ReportsError::Unchanged(v) => Self::conflict(
                "unchanged",
                format!("第{v}版を同じ数値で送付済みです。新しい版はありません。"),
            ),
            ReportsError::NotAnOpinion(_) => Self::conflict(
                "not_an_opinion",
                "意見・苦情として記録された通話ではありません。",
            ),
            ReportsError::Xlsx(m) => Self::internal(m),
            ReportsError::Calls(e) => e.into(),
            ReportsError::Store(e) => Self::from_db(e),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let detail = r.body_text();
        let (code, message) = match &r {
            JsonRejection::MissingJsonContentType(_) => (
                "unsupported_media_type",
                "送信データの形式が JSON ではありません（Content-Type: application/json）。"
                    .to_string(),
            ),
            JsonRejection::JsonDataError(_) => ("invalid", data_error_ja(&detail)),
            JsonRejection::JsonSyntaxError(_) => (
                "bad_request",
                "送信データ（JSON）の書き方に誤りがあります。".to_string(),
            ),
            _ if r.status() == StatusCode::PAYLOAD_TOO_LARGE => (
                "payload_too_large",
                super::messages::message_for("payload_too_large").to_string(),
            ),
            _ => (
                "bad_request",
                "送信データを読み取れませんでした。".to_string(),
            ),
        };
        let status = if code == "payload_too_large" {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            r.status()
        };
        let mut err = Self::new(status, code, message);
        // For developers reading the network tab; the UI shows `message` only.
        err.extra = Some(("detail", serde_json::Value::String(detail)));
        err
    }
}

/// A Japanese message for serde's "missing field `x`" / "unknown field `x`" / "invalid
/// type" texts, naming the field (its wire name) when serde does.
fn data_error_ja(detail: &str) -> String {
    let field = |marker: &str| {
        detail
            .split(marker)
            .nth(1)
            .and_then(|rest| rest.split('`').next())
            .map(str::to_string)
    };
    if let Some(f) = field("missing field `") {
        format!("必須の項目「{f}」がありません。")
    } else if let Some(f) = field("unknown field `") {
        format!("項目「{f}」は受け付けていません。")
    } else if detail.contains("unknown variant") {
        match detail.split(": ").nth(1).filter(|f| !f.contains(' ')) {
            Some(f) => format!("項目「{f}」の値が選択肢にありません。"),
            None => "選択肢にない値が送られました。".to_string(),
        }
    } else {
        match detail.split(": ").nth(1).filter(|f| !f.contains(' ')) {
            Some(f) => format!("項目「{f}」の値の形式が正しくありません。"),
            None => "入力の形式が正しくありません。".to_string(),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        let detail = r.body_text();
        let mut err = Self::bad_request(format!(
            "検索条件の指定に誤りがあります。{}",
            data_error_ja(&detail)
        ));
        err.extra = Some(("detail", serde_json::Value::String(detail)));
        err
    }
}

/// `Json<T>` whose rejections are JSON errors like every other error.
#[derive(axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct JsonBody<T>(pub T);

/// `Query<T>` whose rejections are JSON errors like every other error.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct QueryParams<T>(pub T);
