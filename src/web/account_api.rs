//! Login/logout, the current account, staff accounts and the audit log.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::privacy::{AuditAction, AuditFilter, AuditRow, LoginFailure, NewUser, Role, User};

use super::access::{ClientIp, Staff, SESSION_COOKIE};
use super::{parse_id, ApiError, CurrentUser, Done, JsonBody, QueryParams};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    username: String,
    password: String,
}

#[derive(Serialize)]
struct SessionView<'a> {
    user: &'a User,
    role_label: &'static str,
    csrf_token: &'a str,
    expires_at: DateTime<Utc>,
}

fn session_cookie(state: &AppState, token: &str) -> HeaderValue {
    let secure = if state.config.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static("madoguchi_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

/// `POST /api/login`: checks the password under the lock-out policy and starts a session.
pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    JsonBody(req): JsonBody<LoginRequest>,
) -> Result<Response, ApiError> {
    let username = req.username.trim().to_string();
    let attempt = state
        .users
        .authenticate(&username, &req.password, ip.clone(), AuditAction::Login)
        .await?;
    match attempt.result {
        Ok(user) => {
            let (token, session) = state.sessions.create(&user, ip).await?;
            let body = SessionView {
                user: &session.user,
                role_label: session.user.role.label_ja(),
                csrf_token: &session.csrf_token,
                expires_at: session.expires_at,
            };
            let mut res = Json(body).into_response();
            res.headers_mut()
                .insert(header::SET_COOKIE, session_cookie(&state, &token));
            Ok(res)
        }
        Err(failure) => Err(login_refused(failure)),
    }
}

/// Why a login was refused, as the client is told it.
fn login_refused(failure: LoginFailure) -> ApiError {
    match failure {
        LoginFailure::Locked { until } => {
            let local = until.with_timezone(&chrono_tz::Asia::Tokyo).format("%H:%M");
            ApiError::new(
                StatusCode::LOCKED,
                "account_locked",
                format!("ログインの失敗が続いたため、{local} までロックされています。"),
            )
        }
        LoginFailure::Throttled { retry_after_secs } => {
            let minutes = retry_after_secs.div_ceil(60);
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_attempts",
                format!(
                    "この端末からのログインの失敗が続いています。{minutes} 分ほどお待ちください。"
                ),
            )
            .retry_after(retry_after_secs)
        }
        // One failure left: say so, so that a colleague can ask for help before the lock.
        LoginFailure::InvalidCredentials {
            remaining: Some(1), ..
        } => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "ユーザー名またはパスワードが違います。あと1回失敗するとアカウントがロックされます（残り1回）。",
        ),
        LoginFailure::InvalidCredentials { .. } => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "ユーザー名またはパスワードが違います。",
        ),
    }
}

/// `POST /api/logout`: ends the session.
pub async fn logout(
    State(state): State<AppState>,
    Staff { actor, session }: Staff,
) -> Result<Response, ApiError> {
    state.sessions.logout(&actor, session.id).await?;
    let mut res = Json(Done::OK).into_response();
    res.headers_mut().insert(header::SET_COOKIE, clear_cookie());
    Ok(res)
}

/// `GET /api/me`: the logged-in account and its anti-CSRF token.
pub async fn me(CurrentUser(s): CurrentUser) -> Response {
    Json(SessionView {
        user: &s.user,
        role_label: s.user.role.label_ja(),
        csrf_token: &s.csrf_token,
        expires_at: s.expires_at,
    })
    .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    current_password: String,
    new_password: String,
}

/// `POST /api/me/password`: changes one's own password; every session of the account ends.
pub async fn change_own_password(
    State(state): State<AppState>,
    Staff { actor, session }: Staff,
    JsonBody(req): JsonBody<ChangePassword>,
) -> Result<Response, ApiError> {
    let attempt = state
        .users
        .authenticate(
            &session.user.username,
            &req.current_password,
            actor.ip.clone(),
            AuditAction::UserPassword,
        )
        .await?;
    match attempt.result {
        Ok(_) => {}
        Err(f @ LoginFailure::Throttled { .. }) => return Err(login_refused(f)),
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "invalid_credentials",
                "現在のパスワードが違います。",
            ))
        }
    }
    state
        .users
        .set_password(&actor, session.user.id, &req.new_password)
        .await?;
    let mut res = Json(Done::OK).into_response();
    res.headers_mut().insert(header::SET_COOKIE, clear_cookie());
    Ok(res)
}

/// `GET /api/users`: the staff list with roles (R-PII-1), each with its linked phone and
/// whether it is locked now.
pub async fn list_users(
    State(state): State<AppState>,
) -> Result<Json<Vec<UserWithPhone>>, ApiError> {
    let now = state.clock.now();
    let phones = &state.config.sip.phones;
    let users = state.users.list().await?;
    Ok(Json(
        users
            .into_iter()
            .map(|user| {
                let phone = phones
                    .iter()
                    .filter(|p| p.operator.as_deref() == Some(user.username.as_str()))
                    .map(|p| p.username.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                let locked = user.locked_until.is_some_and(|u| u > now);
                UserWithPhone {
                    user,
                    phone,
                    locked,
                }
            })
            .collect(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    username: String,
    #[serde(default)]
    display_name: String,
    role: Role,
    password: String,
    /// The account chooses its own password at its first login (the default).
    #[serde(default = "yes")]
    must_change_password: bool,
}

fn yes() -> bool {
    true
}

/// `POST /api/users`: adds a staff account.
pub async fn create_user(
    State(state): State<AppState>,
    Staff { actor, .. }: Staff,
    JsonBody(req): JsonBody<CreateUser>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let user = state
        .users
        .create(
            &actor,
            NewUser {
                username: req.username,
                display_name: req.display_name,
                role: req.role,
                password: req.password,
                must_change_password: req.must_change_password,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(user)))
}

/// `POST /api/users/{id}/disable`: disables an account, ends its sessions and unregisters
/// its phones.
pub async fn disable_user(
    State(state): State<AppState>,
    Staff { actor, .. }: Staff,
    Path(id): Path<String>,
) -> Result<Json<User>, ApiError> {
    let user = state.users.disable(&actor, parse_id(&id)?).await?;
    // Their phone must stop answering citizens too (phones.toml links phones to accounts).
    if let Some(sip) = &state.sip {
        sip.disable_operators(vec![user.username.clone()]).await;
    }
    // The other instances' phones of this account too (several instances).
    crate::instances::registrations::announce_accounts(&state.db).await;
    Ok(Json(user))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetPassword {
    /// The temporary password; a generated one when absent.
    #[serde(default)]
    password: Option<String>,
}

/// The answer of a reset: the temporary password to hand over (once).
#[derive(Serialize)]
pub struct ResetDone {
    ok: bool,
    temporary_password: String,
}

/// `POST /api/users/{id}/password`: an admin sets a temporary password (also unlocks); the
/// account must change it at its next login.
pub async fn reset_password(
    State(state): State<AppState>,
    Staff { actor, .. }: Staff,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<ResetPassword>,
) -> Result<Json<ResetDone>, ApiError> {
    let password = req
        .password
        .unwrap_or_else(crate::privacy::generate_password);
    state
        .users
        .set_password(&actor, parse_id(&id)?, &password)
        .await?;
    Ok(Json(ResetDone {
        ok: true,
        temporary_password: password,
    }))
}

/// `POST /api/users/{id}/unlock`: an admin lifts the lock after failed logins.
pub async fn unlock_user(
    State(state): State<AppState>,
    Staff { actor, .. }: Staff,
    Path(id): Path<String>,
) -> Result<Json<User>, ApiError> {
    Ok(Json(state.users.unlock(&actor, parse_id(&id)?).await?))
}

/// The input limits the server enforces, so the forms match them (one source).
#[derive(Serialize)]
pub struct Limits {
    /// A call's outcome note.
    call_note_max: usize,
    /// A callback's note.
    callback_note_max: usize,
    /// An opinion's follow-up.
    follow_up_max: usize,
    /// A display name.
    display_name_max: usize,
    /// Password length.
    password_min: usize,
    /// Password length.
    password_max: usize,
    /// The user-name rule in Japanese, shown next to the field.
    username_rule: &'static str,
    /// Failed logins before the lock.
    max_failed_logins: u32,
}

/// `GET /api/limits`.
pub async fn limits(State(state): State<AppState>) -> Json<Limits> {
    Json(Limits {
        call_note_max: crate::calls::NOTE_MAX_CHARS,
        callback_note_max: crate::calls::callbacks::NOTE_MAX_CHARS,
        follow_up_max: crate::reports::opinions::FOLLOW_UP_MAX_CHARS,
        display_name_max: crate::privacy::DISPLAY_NAME_MAX_CHARS,
        password_min: crate::privacy::PASSWORD_MIN_CHARS,
        password_max: crate::privacy::PASSWORD_MAX_CHARS,
        username_rule: crate::privacy::USERNAME_RULE_JA,
        max_failed_logins: state.config.auth.max_failed_logins,
    })
}

/// One account with the phone `sip-config/phones.toml` links to it (read-only).
#[derive(Serialize)]
pub struct UserWithPhone {
    #[serde(flatten)]
    user: User,
    /// The SIP username of the linked phone(s), comma-separated; empty when none.
    phone: String,
    /// Locked now (after failed logins).
    locked: bool,
}

/// A page of the audit log.
#[derive(Serialize)]
pub struct AuditPage {
    rows: Vec<AuditRow>,
    /// Pass as `before_id` for the next (older) page.
    next_before_id: Option<i64>,
}

/// `GET /api/audit`: the audit log, newest first, filtered; reading it is itself audited.
pub async fn audit_log(
    State(state): State<AppState>,
    Staff { actor, .. }: Staff,
    QueryParams(filter): QueryParams<AuditFilter>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    if let Some(subject) = &filter.subject {
        // The handling record of one booking or number (R-PII-4, R-PII-6).
        let subject = state.bookings.subject(subject).await?;
        let record = state.audit.about(&actor, subject).await?;
        return Ok(Json(record).into_response());
    }
    let rows = state.audit.read(&actor, &filter).await?;
    let next_before_id = rows.last().map(|r| r.id);
    Ok(Json(AuditPage {
        rows,
        next_before_id,
    })
    .into_response())
}
