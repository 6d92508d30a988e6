//! `/metrics`, `/healthz` and `/readyz`: for the operations engineer and the scraper, not for
//! staff. No session: `/metrics` is guarded by the `[metrics]` allow-list and token, the
//! health checks answer anyone and say nothing personal.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use subtle::ConstantTimeEq;

use crate::app::AppState;
use crate::metrics::{self, FailedCheck};

use super::access::ClientIp;
use super::ApiError;

/// `GET /metrics`: the Prometheus text format, to the allowed networks or the token holder.
pub async fn metrics(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
) -> Response {
    let cfg = &state.config.metrics;
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        // The scheme is case-insensitive (RFC 9110 §11.1).
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let by_token = match (&cfg.token, presented) {
        (Some(token), Some(given)) => bool::from(token.as_bytes().ct_eq(given.as_bytes())),
        _ => false,
    };
    let by_address = ip
        .as_deref()
        .and_then(|ip| ip.parse().ok())
        .is_some_and(|ip| cfg.allows(ip));
    if !(by_token || by_address) {
        if cfg.token.is_some() {
            let mut res = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "metrics_token_required",
                "メトリクスの取得にはトークン（Authorization: Bearer）が必要です。",
            )
            .into_response();
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"metrics\""),
            );
            return res;
        }
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "metrics_forbidden",
            "このアドレスからはメトリクスを取得できません（[metrics] allow）。",
        )
        .into_response();
    }
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        metrics::render(&state).await,
    )
        .into_response()
}

/// The health checks' answer.
#[derive(Serialize)]
pub struct Health {
    status: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    failed: Vec<FailedCheck>,
}

/// `GET /healthz`: the process is alive and serving HTTP (no database involved).
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok",
        failed: Vec::new(),
    })
}

/// `GET /readyz`: 200 when the database answers, the SIP core runs and the call-log writer
/// keeps up; else 503 with the failed checks.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let failed = metrics::readiness(&state).await;
    if failed.is_empty() {
        return Json(Health {
            status: "ready",
            failed,
        })
        .into_response();
    }
    let names: Vec<&str> = failed.iter().map(|f| f.check).collect();
    tracing::warn!(?names, "readiness check failed");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(Health {
            status: "not_ready",
            failed,
        }),
    )
        .into_response()
}
