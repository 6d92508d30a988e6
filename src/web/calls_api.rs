//! The call log (R-LINE-3) and the SIP adapter's status. Every read of caller numbers is
//! audited (R-PII-4).

use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};

use crate::app::AppState;
use crate::calls::{CallFilter, CallRow};
use crate::privacy::{AuditEntry, Session};

use super::access::ClientIp;
use super::{ApiError, CurrentUser, QueryParams};

/// `GET /api/calls`: the call log, newest first, with date/outcome/cause filters and paging.
pub async fn list_calls(
    State(state): State<AppState>,
    CurrentUser(s): CurrentUser,
    ClientIp(ip): ClientIp,
    QueryParams(filter): QueryParams<CallFilter>,
) -> Result<Json<Value>, ApiError> {
    let rows = state
        .calls
        .list(&filter)
        .await
        .map_err(ApiError::internal)?;
    audit_call_reads(&state, &s, ip, &rows).await?;
    let next_before_id = rows.last().map(|r| r.id);
    Ok(Json(
        json!({ "calls": rows, "next_before_id": next_before_id }),
    ))
}

/// Records that `s` saw the caller numbers of `rows` (R-PII-4); nothing for number-less rows.
pub(super) async fn audit_call_reads(
    state: &AppState,
    s: &Session,
    ip: Option<String>,
    rows: &[CallRow],
) -> Result<(), ApiError> {
    let ids: Vec<i64> = rows
        .iter()
        .filter(|r| r.caller.e164.is_some())
        .map(|r| r.id)
        .collect();
    if !ids.is_empty() {
        state
            .audit
            .record(
                AuditEntry::new("call.read")
                    .actor(Some(s.user.id), &s.user.username)
                    .ip(ip)
                    .detail(json!({ "call_ids": ids })),
            )
            .await?;
    }
    Ok(())
}

/// `GET /api/calls/{id}`: one call, by row id or call key.
pub async fn get_call(
    State(state): State<AppState>,
    CurrentUser(s): CurrentUser,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = state
        .calls
        .resolve(&id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("call"))?;
    let row = state
        .calls
        .get(id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("call"))?;
    state
        .audit
        .record(
            AuditEntry::new("call.read")
                .actor(Some(s.user.id), &s.user.username)
                .target("call", id)
                .ip(ip.clone()),
        )
        .await?;
    Ok(Json(json!(row)))
}

/// `GET /api/sip/status`: registered phones, table sizes and counters of the adapter.
pub async fn sip_status(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let Some(sip) = &state.sip else {
        return Err(ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "sip_down",
            "SIP adapter is not running",
        ));
    };
    let status = sip
        .status()
        .await
        .ok_or_else(|| ApiError::internal("SIP core did not answer"))?;
    Ok(Json(json!(status)))
}
