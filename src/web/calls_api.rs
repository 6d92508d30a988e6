//! The call log (R-LINE-3) and the SIP adapter's status. Every read of caller numbers is
//! audited by the calls domain (R-PII-4).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;

use crate::app::AppState;
use crate::calls::{CallFilter, CallRow};
use crate::sip::transport::SipStatus;

use super::access::Staff;
use super::{ApiError, QueryParams};

/// A page of the call log.
#[derive(Serialize)]
pub struct CallPage {
    calls: Vec<CallRow>,
    /// Pass as `before_id` for the next (older) page.
    next_before_id: Option<i64>,
}

/// `GET /api/calls`: the call log, newest first, with date/outcome/cause filters and paging.
pub async fn list_calls(
    State(state): State<AppState>,
    Staff { actor, .. }: Staff,
    QueryParams(filter): QueryParams<CallFilter>,
) -> Result<Json<CallPage>, ApiError> {
    let calls = state
        .calls
        .read_list(&actor, &filter, state.clock.now())
        .await?;
    let next_before_id = calls.last().map(|r| r.id);
    Ok(Json(CallPage {
        calls,
        next_before_id,
    }))
}

/// `GET /api/calls/{id}`: one call, by row id or call key.
pub async fn get_call(
    State(state): State<AppState>,
    Staff { actor, .. }: Staff,
    Path(id): Path<String>,
) -> Result<Json<CallRow>, ApiError> {
    let row = state
        .calls
        .read_one(&actor, &id, state.clock.now())
        .await?
        .ok_or_else(|| ApiError::not_found("call"))?;
    Ok(Json(row))
}

/// `GET /api/sip/status`: registered phones, table sizes and counters of the adapter.
pub async fn sip_status(State(state): State<AppState>) -> Result<Json<SipStatus>, ApiError> {
    let Some(sip) = &state.sip else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "sip_down",
            "電話機能（SIP）が動作していません。",
        ));
    };
    let status = sip
        .status()
        .await
        .ok_or_else(|| ApiError::internal("SIP core did not answer"))?;
    Ok(Json(status))
}

/// The dead-line alarms in force.
#[derive(serde::Serialize)]
pub struct AlarmList {
    alarms: Vec<crate::hub::AlarmView>,
}

/// `GET /api/alarms`: the dead-line alarms in force, as the managers' banner shows them.
pub async fn alarms(State(state): State<AppState>) -> Json<AlarmList> {
    Json(AlarmList {
        alarms: state.hub.alarms(),
    })
}
