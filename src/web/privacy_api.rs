//! Visits done and the city's week, the purge, the monthly handling report (issue 15 items
//! 4–6). Translation only: the rules live in `booking` (visits, purge) and `privacy`
//! (handling report).

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use crate::app::AppState;
use crate::booking::purge::{PurgePlan, PurgeScope};
use crate::booking::visits::{IsoWeek, VisitDone, VisitDoneInput, VisitWeek};

use super::access::Staff;
use super::{download, parse_id, ApiError, JsonBody, QueryParams};

/// `?week=2026-W30` (default: the current week).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeekQuery {
    week: Option<String>,
}

/// `GET /api/visits?week=…`: the week's visits with names, addresses and phones for the
/// city staff (a read of personal data, recorded).
pub async fn visit_week(
    State(state): State<AppState>,
    Staff { actor, .. }: Staff,
    QueryParams(q): QueryParams<WeekQuery>,
) -> Result<Json<VisitWeek>, ApiError> {
    let now = state.clock.now();
    let week = match q.week.as_deref() {
        Some(w) => IsoWeek::parse(w)?,
        None => IsoWeek::of(state.bookings.today(now)),
    };
    Ok(Json(state.bookings.visit_week(&actor, now, week).await?))
}

/// `POST /api/visits/{booking_id}/done`: marks the visit ended (a second mark is `409`
/// unless it says `correction: true`).
pub async fn visit_done(
    State(state): State<AppState>,
    Staff { actor, .. }: Staff,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<VisitDoneInput>,
) -> Result<Json<VisitDone>, ApiError> {
    let id = parse_id(&id)?;
    let now = state.clock.now();
    Ok(Json(
        state
            .bookings
            .mark_visit_done(&actor, now, id, &input)
            .await?,
    ))
}

/// `POST /api/purge` body and `GET /api/purge/preview` query.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    /// Only list what would go (the same as the preview).
    #[serde(default)]
    dry_run: bool,
}

/// `GET /api/purge/preview`: the bookings (ids, dates) and counts the purge would delete now.
pub async fn purge_preview(
    State(state): State<AppState>,
    Staff { .. }: Staff,
) -> Result<Json<PurgePlan>, ApiError> {
    Ok(Json(state.bookings.purge_preview(PurgeScope::Due).await?))
}

/// `POST /api/purge`: deletes the personal data of every booking shared and done (R-PII-5).
pub async fn purge(
    State(state): State<AppState>,
    Staff { actor, .. }: Staff,
    JsonBody(req): JsonBody<PurgeRequest>,
) -> Result<Json<PurgePlan>, ApiError> {
    if req.dry_run {
        return Ok(Json(state.bookings.purge_preview(PurgeScope::Due).await?));
    }
    let now = state.clock.now();
    let plan = state.bookings.purge(&actor, now, PurgeScope::Due).await?;
    // Numbers purged from the callback list no longer wait; cached histories go too, and so
    // do the numbers the caller-ID parse remembers.
    state.hub.callbacks_changed();
    crate::calls::callerid::forget_numbers();
    Ok(Json(plan))
}

/// `?month=2026-07&format=json|xlsx`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonthQuery {
    month: String,
    format: Option<String>,
}

/// `GET /api/reports/handling`: the monthly handling report (取扱状況報告, 第15).
pub async fn handling_report(
    State(state): State<AppState>,
    Staff { actor, .. }: Staff,
    QueryParams(q): QueryParams<MonthQuery>,
) -> Result<Response, ApiError> {
    let format = q.format.as_deref().unwrap_or("json");
    if !matches!(format, "json" | "xlsx") {
        return Err(ApiError::invalid(format!(
            "出力形式「{format}」は指定できません（json、xlsx のいずれか）。"
        )));
    }
    let report = state
        .audit
        .handling_report(&actor, &q.month, state.bookings.tz())
        .await?;
    if format == "json" {
        return Ok(Json(report).into_response());
    }
    let bytes = report.xlsx().map_err(ApiError::internal)?;
    Ok(download::attachment(
        bytes,
        download::XLSX,
        &format!("handling-{}.xlsx", report.month),
    ))
}
