//! The authorisation layer every API route goes through.
//!
//! A route can only be added through [`super::routes`]'s table, and each table entry must
//! name an [`Access`] rule, so a route without a rule does not compile. A test walks the
//! table and proves each rule against the running server.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::privacy::{Actor, AuditAction, AuditEntry, AuditOutcome, Role, Session};

use super::error::ApiError;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "madoguchi_session";
/// Header the UI echoes the session's anti-CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, logged in or not (health check, login).
    Public,
    /// A logged-in account with one of these roles.
    Roles(&'static [Role]),
}

impl Access {
    /// Every logged-in account.
    pub const STAFF: Access = Access::Roles(Role::ALL);

    /// Whether `role` passes this rule.
    pub fn admits(self, role: Role) -> bool {
        match self {
            Access::Public => true,
            Access::Roles(rs) => rs.contains(&role),
        }
    }
}

/// The logged-in account of the request, put there by the authorisation layer.
#[derive(Debug, Clone)]
pub struct CurrentUser(pub Session);

impl<S: Send + Sync> FromRequestParts<S> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<CurrentUser>()
            .cloned()
            .ok_or_else(ApiError::unauthenticated)
    }
}

/// The logged-in account of the request as the domains see it: the [`Actor`] every domain
/// operation takes, and the session.
#[derive(Debug, Clone)]
pub struct Staff {
    /// Who acts, from where.
    pub actor: Actor,
    /// The session (user, role, anti-CSRF token).
    pub session: Session,
}

impl<S: Send + Sync> FromRequestParts<S> for Staff {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let CurrentUser(session) = CurrentUser::from_request_parts(parts, state).await?;
        Ok(Staff {
            actor: Actor::user(&session.user, client_ip(&parts.extensions)),
            session,
        })
    }
}

/// The client's IP address (see [`super::client_addr`]), for audit rows; never rejects.
#[derive(Debug, Clone)]
pub struct ClientIp(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(&parts.extensions)))
    }
}

/// The client's address: the one [`super::client_addr`] decided (the peer, or the client
/// behind a trusted proxy), else the socket's.
pub fn client_ip(parts_ext: &axum::http::Extensions) -> Option<String> {
    if let Some(super::client_addr::ClientAddr(ip)) = parts_ext.get() {
        return Some(ip.to_string());
    }
    parts_ext
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
}

/// Reads one cookie from the `Cookie` headers.
pub fn cookie(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn is_unsafe(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// A cross-site form or script sends its own `Origin`; ours always matches `Host`.
fn origin_matches_host(req: &Request) -> bool {
    let Some(origin) = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
    else {
        return true;
    };
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok());
    let origin_host = origin
        .split_once("://")
        .map(|(_, h)| h.trim_end_matches('/'));
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

/// Middleware: enforces the route's [`Access`] and the anti-CSRF rules.
pub async fn authorize(
    State((state, access)): State<(AppState, Access)>,
    mut req: Request,
    next: Next,
) -> Response {
    if is_unsafe(req.method()) && !origin_matches_host(&req) {
        return ApiError::new(StatusCode::FORBIDDEN, "csrf", "Origin が一致しません。")
            .into_response();
    }
    let Access::Roles(roles) = access else {
        return next.run(req).await;
    };
    let Some(token) = cookie(req.headers(), SESSION_COOKIE) else {
        return ApiError::unauthenticated().into_response();
    };
    let session = match state.sessions.lookup(&token).await {
        Ok(Some(s)) => s,
        Ok(None) => return ApiError::unauthenticated().into_response(),
        Err(e) => return ApiError::internal(e).into_response(),
    };
    if !roles.contains(&session.user.role) {
        let actor = Actor::user(&session.user, client_ip(req.extensions()));
        // The route's pattern (`/api/calls/{id}`), not the path as sent: a path segment can
        // be anything typed, a phone number too, and the audit log keeps no personal data.
        let path = req
            .extensions()
            .get::<axum::extract::MatchedPath>()
            .map_or("(unmatched)", |m| m.as_str())
            .to_string();
        let entry = AuditEntry::new(AuditAction::Access)
            .outcome(AuditOutcome::Denied)
            .detail(serde_json::json!({ "method": req.method().as_str(), "path": path }));
        if let Err(e) = state.audit.record(&actor, entry).await {
            return ApiError::internal(e).into_response();
        }
        return ApiError::forbidden().into_response();
    }
    if is_unsafe(req.method()) {
        let sent = req
            .headers()
            .get(CSRF_HEADER)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if !constant_time_eq(sent, session.csrf_token.as_bytes()) {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf",
                "CSRF トークンがありません。ページを再読み込みしてください。",
            )
            .into_response();
        }
    }
    if session.user.must_change_password && !allowed_before_password_change(&req) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "password_change_required",
            "初回ログインまたはパスワードの再設定のあとは、まず新しいパスワードを設定してください。",
        )
        .into_response();
    }
    req.extensions_mut().insert(CurrentUser(session));
    next.run(req).await
}

/// What an account whose password an administrator set may still do: change it, see who it
/// is (the screen needs that to ask for the change), read the labels, and log out.
fn allowed_before_password_change(req: &Request) -> bool {
    let path = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or(req.uri().path(), |m| m.as_str());
    matches!(
        (req.method().as_str(), path),
        ("POST", "/api/me/password")
            | ("GET", "/api/me")
            | ("GET", "/api/labels")
            | ("GET", "/api/limits")
            | ("POST", "/api/logout")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_is_found_among_others() {
        let mut h = axum::http::HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; madoguchi_session=tok; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("tok"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn staff_admits_every_role_and_lists_only_theirs() {
        assert!(Role::ALL.iter().all(|r| Access::STAFF.admits(*r)));
        assert!(!Access::Roles(&[Role::Admin]).admits(Role::Operator));
    }
}
