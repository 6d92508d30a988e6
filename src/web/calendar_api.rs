//! The visit calendar over HTTP (R-CAL-1..3): read with counts and warnings, export, propose,
//! import, fix, and the manager's day edits. The rules live in [`crate::booking::calendar`].

use super::download;
use axum::extract::{Path, State};

use axum::response::Response;
use axum::Json;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::booking::calendar::{self, Counts, Problem, ReplaceSource, Season, VisitDay};
use crate::booking::VisitDayKind;
use crate::hours::OpeningHours;

use super::access::Staff;
use super::{ApiError, JsonBody, QueryParams};

fn season(state: &AppState) -> Result<Season, ApiError> {
    let profile = &state.config.profile;
    Ok(Season {
        rules: profile.booking.clone(),
        start: profile.period.visits_start,
        end: profile.period.visits_end,
        hours: OpeningHours::new(&profile.hours).map_err(ApiError::internal)?,
    })
}

fn parse_date(raw: &str) -> Result<NaiveDate, ApiError> {
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .map_err(|_| ApiError::bad_request(format!("'{raw}' は日付（YYYY-MM-DD）ではありません。")))
}

/// The visit period and the targets the calendar is checked against.
#[derive(Serialize)]
pub struct SeasonView {
    start: NaiveDate,
    end: NaiveDate,
    home_days: u32,
    facility_days: u32,
    min_days_per_week: u32,
    max_days_per_week: u32,
}

/// `GET /api/calendar`: the calendar with its state, counts and warnings.
#[derive(Serialize)]
pub struct CalendarView {
    fixed: bool,
    fixed_at: Option<DateTime<Utc>>,
    fixed_by: Option<String>,
    season: SeasonView,
    days: Vec<DayView>,
    counts: Counts,
    problems: Vec<Problem>,
}

/// One visit day with its weekday for the screen.
#[derive(Serialize)]
pub struct DayView {
    #[serde(flatten)]
    day: VisitDay,
    weekday: &'static str,
}

async fn view(state: &AppState) -> Result<CalendarView, ApiError> {
    let season = season(state)?;
    let cal = calendar::load(&state.db).await?;
    let pairs = cal.pairs();
    Ok(CalendarView {
        fixed: cal.is_fixed(),
        fixed_at: cal.fixed_at,
        fixed_by: cal.fixed_by.clone(),
        season: SeasonView {
            start: season.start,
            end: season.end,
            home_days: season.rules.home_days,
            facility_days: season.rules.facility_days,
            min_days_per_week: season.rules.min_days_per_week,
            max_days_per_week: season.rules.max_days_per_week,
        },
        counts: calendar::counts(&pairs, &season),
        problems: season.check(&pairs),
        days: cal
            .days
            .into_iter()
            .map(|day| DayView {
                weekday: calendar::weekday_ja(day.date),
                day,
            })
            .collect(),
    })
}

/// `GET /api/calendar`.
pub async fn get_calendar(State(state): State<AppState>) -> Result<Json<CalendarView>, ApiError> {
    Ok(Json(view(&state).await?))
}

/// `?format=csv|json`.
#[derive(Deserialize)]
pub struct ExportQuery {
    #[serde(default)]
    format: Option<String>,
}

/// `GET /api/calendar/export?format=csv|json`: CSV (UTF-8 with BOM) or a JSON array of
/// `{"date","kind"}`, as a download.
pub async fn export(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<ExportQuery>,
) -> Result<Response, ApiError> {
    let days = calendar::load(&state.db).await?.pairs();
    let (body, mime, ext) = match q.format.as_deref().unwrap_or("csv") {
        "csv" => (
            calendar::export_csv(&days),
            "text/csv; charset=utf-8",
            "csv",
        ),
        "json" => (
            serde_json::to_string(&calendar::export_json(&days)).map_err(ApiError::internal)?,
            "application/json",
            "json",
        ),
        other => {
            return Err(ApiError::bad_request(format!(
                "format '{other}' は csv か json にしてください。"
            )))
        }
    };
    Ok(download::attachment(
        body,
        mime,
        &format!("visit-calendar.{ext}"),
    ))
}

/// The answer of a change: the calendar after it, and the warnings.
#[derive(Serialize)]
pub struct Changed {
    warnings: Vec<Problem>,
    calendar: CalendarView,
}

async fn changed(state: &AppState, warnings: Vec<Problem>) -> Result<Json<Changed>, ApiError> {
    Ok(Json(Changed {
        warnings,
        calendar: view(state).await?,
    }))
}

/// `POST /api/calendar/propose`: stores the system's proposal as the draft.
pub async fn propose(
    State(state): State<AppState>,
    Staff { actor, .. }: Staff,
) -> Result<Json<Changed>, ApiError> {
    let season = season(&state)?;
    let days = season.propose()?;
    let warnings = calendar::replace(
        &state.db,
        &actor,
        &season,
        &days,
        ReplaceSource::Proposal,
        state.clock.now(),
    )
    .await?;
    changed(&state, warnings).await
}

/// `POST /api/calendar/import`: replaces the draft with the body, a JSON array of
/// `{"date","kind"}` (or `{"days": [...]}`) or CSV text; any error changes nothing.
pub async fn import(
    State(state): State<AppState>,
    Staff { actor, .. }: Staff,
    body: String,
) -> Result<Json<Changed>, ApiError> {
    let season = season(&state)?;
    let days = calendar::parse_import(&body).map_err(|problems| {
        let lines: Vec<String> = problems.into_iter().map(|p| p.message).collect();
        ApiError::invalid(format!(
            "取り込めません（何も変更していません）：\n{}",
            lines.join("\n")
        ))
    })?;
    let warnings = calendar::replace(
        &state.db,
        &actor,
        &season,
        &days,
        ReplaceSource::Import,
        state.clock.now(),
    )
    .await?;
    changed(&state, warnings).await
}

/// `POST /api/calendar/fix`.
pub async fn fix(
    State(state): State<AppState>,
    Staff { actor, .. }: Staff,
) -> Result<Json<Changed>, ApiError> {
    calendar::fix(&state.db, &actor, state.clock.now()).await?;
    changed(&state, Vec::new()).await
}

/// The body of `PUT /api/calendar/days/{date}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DayInput {
    kind: VisitDayKind,
    #[serde(default)]
    pm_extra_open: bool,
}

/// `PUT /api/calendar/days/{date}`: adds or changes a day (kind, the PM-3rd switch).
pub async fn put_day(
    State(state): State<AppState>,
    Staff { actor, .. }: Staff,
    Path(date): Path<String>,
    JsonBody(input): JsonBody<DayInput>,
) -> Result<Json<Changed>, ApiError> {
    let date = parse_date(&date)?;
    let season = season(&state)?;
    let warnings = calendar::set_day(
        &state.db,
        &actor,
        &season,
        date,
        input.kind,
        input.pm_extra_open,
        state.clock.now(),
    )
    .await?;
    changed(&state, warnings).await
}

/// `DELETE /api/calendar/days/{date}`.
pub async fn delete_day(
    State(state): State<AppState>,
    Staff { actor, .. }: Staff,
    Path(date): Path<String>,
) -> Result<Json<Changed>, ApiError> {
    let date = parse_date(&date)?;
    let season = season(&state)?;
    let warnings =
        calendar::remove_day(&state.db, &actor, &season, date, state.clock.now()).await?;
    changed(&state, warnings).await
}
